/* pullback - store/test-corrupt.c: damaged stores must be caught.
 *
 * Writes chunks and records through the store, then damages their files
 * behind its back in every way the decoder must notice: header fields,
 * flags, lengths, payload bits, truncation, trailing bytes, a consistent
 * checksum over bad content (as a buggy writer would produce), a valid
 * object under the wrong key, a record where a chunk should be, a missing
 * object.  Each must fail with PB_E_CORRUPT and a message naming the
 * object and the problem -- the same error from store_load_chunk,
 * restore's way, which skips the checksum of a chunk proven by its id
 * (and so takes one whose checksum field alone is damaged, which
 * store_get_chunk refuses).  Also checks the on-disk layout of fresh objects
 * field by field against docs/FORMAT.md (part 1).  Prints one line per
 * check; exit 0 pass, 1 fail.
 */
#include <config.h>

#include <zstd.h>

#include "test-common.h"

/* Check the object of ID field by field, as an independent reader would. */
static void
check_layout (const store_id *id, const uint8_t *plain, size_t len,
              int want_zstd, const char *what)
{
  size_t flen;
  uint8_t *f = read_whole (chunk_file (id), &flen), sum[8];
  uint8_t *out = malloc (len + 1);
  int ok = f && flen >= HDR && memcmp (f, "PBCK", 4) == 0 && f[4] == 1 &&
    f[5] == 1 && f[6] == (want_zstd ? 1 : 0) && f[7] == 0 &&
    le32 (f + 8) == len && le32 (f + 12) == flen - HDR;

  if (ok) {
    doc_checksum (f, flen, sum);
    ok = memcmp (sum, f + 16, 8) == 0;
  }
  if (ok && want_zstd)
    ok = ZSTD_decompress (out, len + 1, f + HDR, flen - HDR) == len &&
      memcmp (out, plain, len) == 0;
  else if (ok)
    ok = memcmp (f + HDR, plain, len) == 0;
  check (ok, "%s: file matches the documented layout", what);
  free (f);
  free (out);
}

static void
test_layout (struct store *s)
{
  uint8_t *buf = malloc (CS), *f, md[8];
  store_id id;
  size_t flen;

  fill_text (buf, CS, 1);
  put (s, buf, CS, &id, NULL);
  check_layout (&id, buf, CS, 1, "compressible chunk");
  fill_random (buf, CS, 2);
  put (s, buf, CS, &id, NULL);
  check_layout (&id, buf, CS, 0, "incompressible chunk");
  fill_text (buf, 1000, 3);
  put (s, buf, 1000, &id, NULL);
  check_layout (&id, buf, 1000, 1, "1000-byte tail chunk");
  put (s, "tiny", 4, &id, NULL);
  check_layout (&id, (const uint8_t *) "tiny", 4, 0, "4-byte chunk");

  store_put_record (s, "points/00000042", "{\"id\":42}", 9);
  f = read_whole (path_in ("repo/points/00000042"), &flen);
  if (f)
    doc_checksum (f, flen, md);
  check (f && flen == HDR + 9 && memcmp (f, "PBCK", 4) == 0 && f[5] == 2 &&
         f[6] == 0 && le32 (f + 8) == 9 && le32 (f + 12) == 9 &&
         memcmp (f + 16, md, 8) == 0 && memcmp (f + HDR, "{\"id\":42}", 9) == 0,
         "record file: type 2, uncompressed, documented checksum");
  free (f);
  free (buf);
}

/* ---- damage ---- */

static void
expect_corrupt (struct store *s, const store_id *id, const char *needle,
                const char *what)
{
  uint8_t *buf = malloc (CS);
  size_t len;
  char hex[65], msg[1024];
  int r = store_get_chunk (s, id, buf, CS, &len), cls = pb_get_errclass ();

  store_id_hex (id, hex);
  check (r == -1 && cls == PB_E_CORRUPT &&
         strstr (pb_get_error (), hex) != NULL &&
         (!needle || strstr (pb_get_error (), needle) != NULL),
         "%s -> %s", what, pb_get_error ());
  /* Restore's way (no checksum unless the id check fails): the same. */
  snprintf (msg, sizeof msg, "%s", pb_get_error ());
  r = store_load_chunk (s, id, buf, CS, &len);
  check (r == -1 && pb_get_errclass () == cls &&
         strcmp (pb_get_error (), msg) == 0,
         "%s, loaded for a restore -> the same error", what);
  free (buf);
}

static void expect_get_only (struct store *s, const store_id *id,
                             const uint8_t *want, uint8_t *back);

/* Only the checksum field damaged: the content still hashes to the id.
 * get (and so verify) refuses the object; a restore takes the content. */
static void
test_checksum_only (struct store *s)
{
  uint8_t *buf = malloc (CS), *back = malloc (CS), *f;
  store_id id;
  size_t flen, len = 0;

  fill_text (buf, CS, 300);
  put (s, buf, CS, &id, NULL);
  check (store_load_chunk (s, &id, back, CS, &len) == 0 && len == CS &&
         memcmp (back, buf, CS) == 0, "an intact chunk loads");
  f = read_whole (chunk_file (&id), &flen);
  f[16] ^= 0x01;
  write_whole (chunk_file (&id), f, flen);
  free (f);
  expect_get_only (s, &id, buf, back);
  free (buf);
  free (back);
}

enum damage {
  D_MAGIC, D_VERSION, D_TYPE, D_FLAG_UNKNOWN, D_FLAG_ENCRYPTED, D_FLAG_ZSTD,
  D_RAW_HUGE, D_RAW_PLUS1, D_PAYLOAD_BIT, D_TRUNC1, D_TRUNC_HDR, D_TRUNC0,
  D_TRAILING, D_ZSTD_MAGIC_RESUM, D_ZSTD_DATA_RESUM, D_RAW_MINUS1_RESUM, D_RAW_BIT_RESUM,
};

static const struct { enum damage d; int compressible; const char *needle, *what; }
damages[] = {
  { D_MAGIC, 1, "magic", "a flipped byte in the magic" },
  { D_VERSION, 1, "version", "version 2" },
  { D_TYPE, 1, "expected a chunk", "type 'record'" },
  { D_FLAG_UNKNOWN, 1, "unknown flags", "an unknown flag bit" },
  { D_FLAG_ENCRYPTED, 1, "encrypted", "the encryption flag" },
  { D_FLAG_ZSTD, 1, NULL, "the zstd flag cleared on a compressed chunk" },
  { D_RAW_HUGE, 1, "exceeds the limit", "plain length 0xffffffff" },
  { D_RAW_PLUS1, 1, "checksum mismatch", "plain length + 1" },
  { D_PAYLOAD_BIT, 1, "checksum mismatch", "a flipped payload bit" },
  { D_TRUNC1, 1, "truncated", "the last byte cut off" },
  { D_TRUNC_HDR, 1, "truncated", "cut to 10 bytes" },
  { D_TRUNC0, 1, "truncated", "an empty file" },
  { D_TRAILING, 1, "trailing garbage", "3 bytes appended" },
  { D_ZSTD_MAGIC_RESUM, 1, "zstd", "bad zstd frame, valid checksum" },
  { D_ZSTD_DATA_RESUM, 1, NULL, "zstd block bytes changed, valid checksum" },
  { D_RAW_MINUS1_RESUM, 1, "zstd frame holds", "length - 1, valid checksum" },
  { D_RAW_BIT_RESUM, 0, "does not match its id",
    "raw payload bit flipped, valid checksum" },
};

static size_t
apply (enum damage d, uint8_t *f, size_t len)
{
  switch (d) {
  case D_MAGIC: f[1] ^= 0x20; break;
  case D_VERSION: f[4] = 2; break;
  case D_TYPE: f[5] = 2; break;
  case D_FLAG_UNKNOWN: f[6] |= 0x08; break;
  case D_FLAG_ENCRYPTED: f[6] |= 0x02; break;
  case D_FLAG_ZSTD: f[6] &= ~1; break;
  case D_RAW_HUGE: put_le32 (f + 8, 0xffffffff); break;
  case D_RAW_PLUS1: put_le32 (f + 8, le32 (f + 8) + 1); break;
  case D_PAYLOAD_BIT: f[HDR + (len - HDR) / 2] ^= 0x10; break;
  case D_TRUNC1: return len - 1;
  case D_TRUNC_HDR: return 10;
  case D_TRUNC0: return 0;
  case D_TRAILING: memcpy (f + len, "xyz", 3); return len + 3;
  case D_ZSTD_MAGIC_RESUM: f[HDR] ^= 0xff; doc_checksum (f, len, f + 16); break;
  case D_ZSTD_DATA_RESUM:
    memset (f + HDR + 20, 0xa5, 16); doc_checksum (f, len, f + 16); break;
  case D_RAW_MINUS1_RESUM:
    put_le32 (f + 8, le32 (f + 8) - 1); doc_checksum (f, len, f + 16); break;
  case D_RAW_BIT_RESUM: f[HDR + 100] ^= 1; doc_checksum (f, len, f + 16); break;
  }
  return len;
}

static void
test_damage (struct store *s)
{
  uint8_t *buf = malloc (CS), *f;
  store_id id, a, b;
  size_t i, flen;
  char pa[1024];   /* path_in() returns a static buffer */

  for (i = 0; i < sizeof damages / sizeof damages[0]; i++) {
    (damages[i].compressible ? fill_text : fill_random) (buf, CS, 100 + i);
    put (s, buf, CS, &id, NULL);
    f = read_whole (chunk_file (&id), &flen);
    f = realloc (f, flen + 8);
    flen = apply (damages[i].d, f, flen);
    write_whole (chunk_file (&id), f, flen);
    free (f);
    expect_corrupt (s, &id, damages[i].needle, damages[i].what);
  }

  fill_text (buf, CS, 200);
  put (s, buf, CS, &a, NULL);
  fill_text (buf, CS, 201);
  put (s, buf, CS, &b, NULL);
  snprintf (pa, sizeof pa, "%s", chunk_file (&a));
  rename (pa, chunk_file (&b));
  expect_corrupt (s, &b, "does not match its id",
                  "chunk A's file renamed to chunk B's key");
  expect_corrupt (s, &a, "missing", "the chunk whose file is gone");
  check (pb_get_errno () == ENOENT, "a missing chunk has errno ENOENT");

  check (store_put_record (s, "points/00000001", "not a chunk", 11) == 0,
         "put a record");
  fill_text (buf, CS, 202);
  store_id_of (s, buf, CS, &id);
  put (s, buf, CS, &id, NULL);
  snprintf (pa, sizeof pa, "%s", path_in ("repo/points/00000001"));
  rename (pa, chunk_file (&id));
  expect_corrupt (s, &id, "expected a chunk", "a record at a chunk's key");
  free (buf);
}

static void
expect_get_only (struct store *s, const store_id *id, const uint8_t *want,
                 uint8_t *back)
{
  size_t len = 0;

  check (store_get_chunk (s, id, back, CS, &len) == -1 &&
         strstr (pb_get_error (), "checksum mismatch"),
         "checksum field damaged: get refuses it: %s", pb_get_error ());
  memset (back, 0, CS);
  check (store_load_chunk (s, id, back, CS, &len) == 0 && len == CS &&
         memcmp (back, want, CS) == 0,
         "checksum field damaged: a restore loads the right content");
}

static void
test_record_damage (struct store *s)
{
  uint8_t *f;
  size_t flen;
  void *buf;

  store_put_record (s, "points/00000050", "a record", 8);
  f = read_whole (path_in ("repo/points/00000050"), &flen);
  f[HDR + 2] ^= 4;
  write_whole (path_in ("repo/points/00000050"), f, flen);
  check (store_get_record (s, "points/00000050", &buf, &flen) == -1 &&
         pb_get_errclass () == PB_E_CORRUPT &&
         strstr (pb_get_error (), "record points/00000050: checksum mismatch"),
         "damaged record: %s", pb_get_error ());
  free (f);
}

int
main (void)
{
  struct store *s;

  if (test_start ("test-corrupt") == -1)
    return 1;
  s = store_create (path_in ("repo"), CS, NULL);
  check (s != NULL, "store_create");
  if (s) {
    test_layout (s);
    test_damage (s);
    test_record_damage (s);
    test_checksum_only (s);
    store_close (s);
  }
  return test_end ();
}
