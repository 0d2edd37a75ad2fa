/* pullback - fuzz/gen-corpus.c: writes the seed corpora of the fuzz
 * targets, fuzz/corpus/TARGET/valid-*, with the library's own encoders
 * (chunk_encode, store_config_write, store_key_save, store_key_paper).
 *
 *   fuzz/gen-corpus OUTDIR      (make fuzz-corpus: OUTDIR = fuzz/corpus)
 *
 * Deterministic except where the format wants randomness: sealed objects
 * carry a random nonce and wrapped key files a random salt, so those seeds
 * differ from one generation to the next (all remain valid).  Map nodes
 * (written by a static function of reader/maptree.c) and plan inputs (a
 * format of fuzz/fuzz-plan.c's own) are built here as docs/FORMAT.md part
 * 2.2 and fuzz-plan.c describe them.  Every valid-* seed must be accepted
 * by its target: make check proves it.
 */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json.h>
#include <libnbd.h>

#include "chunk.h"
#include "crypt.h"
#include "errors.h"
#include "fuzz.h"
#include "maptree.h"
#include "store-config.h"
#include "store.h"
#include "util.h"

static const char *outdir;

static void
fail (const char *what)
{
  fprintf (stderr, "gen-corpus: %s: %s\n", what, pb_get_error ());
  exit (1);
}

static void
write_seed (const char *target, const char *name, const void *buf,
            size_t len)
{
  char path[4096];
  FILE *f;

  snprintf (path, sizeof path, "%s/%s", outdir, target);
  if (mkdir (path, 0755) == -1 && errno != EEXIST) {
    perror (path);
    exit (1);
  }
  snprintf (path, sizeof path, "%s/%s/%s", outdir, target, name);
  f = fopen (path, "wb");
  if (f == NULL || fwrite (buf, 1, len, f) != len || fclose (f) != 0) {
    perror (path);
    exit (1);
  }
}

/* MODE byte + an object encoded by chunk_encode. */
static void
write_object (const char *target, const char *name, uint8_t mode,
              struct chunk_codec *c, enum chunk_type type, bool compress,
              const char *key, const void *plain, size_t len)
{
  void *obj;
  size_t objlen;
  uint8_t *seed;

  if (chunk_encode (c, type, compress, key, plain, len, &obj, &objlen) == -1)
    fail ("chunk_encode");
  seed = malloc (objlen + 1);
  if (seed == NULL)
    fail ("malloc");
  seed[0] = mode;
  memcpy (seed + 1, obj, objlen);
  write_seed (target, name, seed, objlen + 1);
  free (seed);
  free (obj);
}

/* ---- chunk ---- */

/* A plain chunk "tiny" with byte OFF set to V (checksum fixed up). */
static void
chunk_reject (struct chunk_codec *plain, const char *name, size_t off,
              uint8_t v)
{
  void *obj;
  size_t len;
  uint8_t seed[64];

  if (chunk_encode (plain, CHUNK_TYPE_CHUNK, false, FUZZ_CHUNK_NAME, "tiny", 4,
                    &obj, &len) == -1 || len + 2 > sizeof seed)
    fail ("chunk_encode");
  seed[0] = FUZZ_MODE_FIXSUM;
  memcpy (seed + 1, obj, len);
  if (off < len)
    seed[1 + off] = v;
  else
    seed[1 + len++] = v;      /* one byte after the payload */
  write_seed ("chunk", name, seed, len + 1);
  free (obj);
}

static void
gen_chunk_rejects (struct chunk_codec *plain)
{
  chunk_reject (plain, "reject-version", CHUNK_OFF_VERSION, 2);
  chunk_reject (plain, "reject-type", CHUNK_OFF_TYPE, 3);
  chunk_reject (plain, "reject-unknown-flag", CHUNK_OFF_FLAGS, 0x04);
  chunk_reject (plain, "reject-encrypted-flag", CHUNK_OFF_FLAGS, 0x02);
  chunk_reject (plain, "reject-raw-len", CHUNK_OFF_RAW_LEN, 5);
  chunk_reject (plain, "reject-raw-huge", CHUNK_OFF_RAW_LEN + 3, 0xff);
  chunk_reject (plain, "reject-payload-len", CHUNK_OFF_PAYLOAD_LEN, 3);
  chunk_reject (plain, "reject-trailing", 1000, 0);
}

static void
gen_chunk (struct chunk_codec *plain, struct chunk_codec *sealed)
{
  static const char tiny[] = "tiny";
  char text[2048];
  size_t i;

  for (i = 0; i < sizeof text; i++)     /* compressible, not trivial */
    text[i] = "pullback fuzz seed "[i % 19] + (i / 512);
  write_object ("chunk", "valid-plain-tiny", FUZZ_MODE_FIXSUM, plain,
                CHUNK_TYPE_CHUNK, true, FUZZ_CHUNK_NAME, tiny, 4);
  write_object ("chunk", "valid-plain-empty", 0, plain, CHUNK_TYPE_CHUNK,
                true, FUZZ_CHUNK_NAME, "", 0);
  write_object ("chunk", "valid-plain-zstd", FUZZ_MODE_FIXSUM, plain,
                CHUNK_TYPE_CHUNK, true, FUZZ_CHUNK_NAME, text, sizeof text);
  write_object ("chunk", "valid-plain-record", FUZZ_MODE_RECORD, plain,
                CHUNK_TYPE_RECORD, false, FUZZ_RECORD_NAME, "hello", 5);
  write_object ("chunk", "valid-sealed-tiny", FUZZ_MODE_SEALED, sealed,
                CHUNK_TYPE_CHUNK, true, FUZZ_CHUNK_NAME, tiny, 4);
  write_object ("chunk", "valid-sealed-zstd",
                FUZZ_MODE_SEALED | FUZZ_MODE_FIXSUM, sealed,
                CHUNK_TYPE_CHUNK, true, FUZZ_CHUNK_NAME, text, sizeof text);
  gen_chunk_rejects (plain);
  write_object ("chunk", "valid-sealed-record",
                FUZZ_MODE_SEALED | FUZZ_MODE_RECORD, sealed,
                CHUNK_TYPE_RECORD, false, FUZZ_RECORD_NAME, "hello", 5);
}

/* ---- maptree ---- */

/* A level LEVEL node of N ids (FORMAT.md part 2.2), in a malloc'd buffer. */
static uint8_t *
make_node (unsigned level, unsigned n, size_t *len)
{
  uint8_t *node;
  unsigned i;

  *len = MAPTREE_HEADER + (size_t) n * STORE_ID_LEN;
  node = calloc (1, *len);
  if (node == NULL)
    fail ("calloc");
  memcpy (node, "PBMN", 4);
  node[4] = 1;
  node[5] = level;
  node[8] = n;
  node[9] = n >> 8;
  for (i = 0; i < n * STORE_ID_LEN; i++)
    node[MAPTREE_HEADER + i] = i * 7 + level;
  return node;
}

/* A leaf of 3 ids with byte OFF set to V. */
static void
maptree_reject (const char *name, size_t off, uint8_t v, size_t cut)
{
  size_t len;
  uint8_t *node = make_node (0, 3, &len), *raw = malloc (len + 1);

  if (raw == NULL)
    fail ("malloc");
  raw[0] = 0;
  memcpy (raw + 1, node, len);
  raw[1 + off] = v;
  write_seed ("maptree", name, raw, len + 1 - cut);
  free (raw);
  free (node);
}

static void
gen_maptree_rejects (void)
{
  maptree_reject ("reject-magic", 0, 'X', 0);
  maptree_reject ("reject-version", 4, 2, 0);
  maptree_reject ("reject-count", 8, 4, 0);
  maptree_reject ("reject-count-huge", 11, 0x80, 0);
  maptree_reject ("reject-truncated", 0, 'P', 1);
}

static void
gen_maptree (struct chunk_codec *plain)
{
  static const struct { const char *name; unsigned level, n; } nodes[] = {
    { "valid-leaf-3", 0, 3 }, { "valid-root-2", 1, 2 }, { "valid-empty", 0, 0 }
  };
  char name[64];
  size_t i, len;

  for (i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    uint8_t *node = make_node (nodes[i].level, nodes[i].n, &len);
    uint8_t *raw = malloc (len + 1);

    if (raw == NULL)
      fail ("malloc");
    raw[0] = 0;
    memcpy (raw + 1, node, len);
    write_seed ("maptree", nodes[i].name, raw, len + 1);
    snprintf (name, sizeof name, "%s-object", nodes[i].name);
    write_object ("maptree", name, 1 | FUZZ_MODE_FIXSUM, plain,
                  CHUNK_TYPE_CHUNK, true, FUZZ_CHUNK_NAME, node, len);
    free (raw);
    free (node);
  }
  gen_maptree_rejects ();
}

/* ---- record ---- */

static json_object *
hex_string (const uint8_t *b)
{
  char hex[2 * CATALOG_ID_LEN + 1];

  hex_encode (b, CATALOG_ID_LEN, hex);
  return json_object_new_string (hex);
}

/* The record backup.c would write for the fixture point. */
static char *
record_text (void)
{
  const struct catalog_point *p = fuzz_point ();
  json_object *o = json_object_new_object (), *disks = json_object_new_array ();
  char *text;
  size_t i;

  json_object_object_add (o, "format", json_object_new_string ("pullback-point"));
  json_object_object_add (o, "version", json_object_new_int (1));
  json_object_object_add (o, "repository", json_object_new_string (FUZZ_REPO_UUID));
  json_object_object_add (o, "id", json_object_new_int64 (p->id));
  json_object_object_add (o, "vm", json_object_new_string (p->vm));
  json_object_object_add (o, "mode", json_object_new_string (p->mode));
  json_object_object_add (o, "parent", NULL);
  json_object_object_add (o, "checkpoint", NULL);
  json_object_object_add (o, "since", NULL);
  json_object_object_add (o, "started", json_object_new_int64 (p->started));
  json_object_object_add (o, "finished", json_object_new_int64 (p->finished));
  for (i = 0; i < p->ndisks; i++) {
    const struct catalog_disk *d = &p->disks[i];
    json_object *dj = json_object_new_object ();

    json_object_object_add (dj, "name", json_object_new_string (d->name));
    json_object_object_add (dj, "size", json_object_new_int64 (d->size));
    json_object_object_add (dj, "chunk_size", json_object_new_int64 (d->chunk_size));
    json_object_object_add (dj, "map_levels", json_object_new_int64 (d->map_levels));
    json_object_object_add (dj, "map_root", hex_string (d->map_root));
    json_object_object_add (dj, "digest", hex_string (d->digest));
    json_object_object_add (dj, "bytes_read", json_object_new_int64 (0));
    json_object_object_add (dj, "bytes_new", json_object_new_int64 (0));
    json_object_object_add (dj, "chunks_changed", json_object_new_int64 (0));
    json_object_array_add (disks, dj);
  }
  json_object_object_add (o, "disks", disks);
  text = strdup (json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
  json_object_put (o);
  if (text == NULL)
    fail ("strdup");
  return text;
}

static void
gen_record (struct chunk_codec *plain, struct chunk_codec *sealed)
{
  char *text = record_text ();

  write_object ("record", "valid-plain", FUZZ_MODE_FIXSUM, plain,
                CHUNK_TYPE_RECORD, false, FUZZ_RECORD_NAME, text, strlen (text));
  write_object ("record", "valid-plain-unfixed", 0, plain, CHUNK_TYPE_RECORD,
                false, FUZZ_RECORD_NAME, text, strlen (text));
  write_object ("record", "valid-plain-zstd", FUZZ_MODE_FIXSUM, plain,
                CHUNK_TYPE_RECORD, true, FUZZ_RECORD_NAME, text, strlen (text));
  write_object ("record", "valid-sealed", FUZZ_MODE_SEALED, sealed,
                CHUNK_TYPE_RECORD, false, FUZZ_RECORD_NAME, text,
                strlen (text));
  free (text);
}

/* ---- config ---- */

static void
write_config (const char *name, const struct store_config *cfg,
              const char *tmpdir)
{
  char path[4096];
  struct objstore *os = objstore_dir_open (tmpdir, 1);
  void *buf;
  size_t len;

  if (os == NULL || store_config_write (os, cfg) == -1 ||
      objstore_get (os, "config", &buf, &len) == -1)
    fail ("store_config_write");
  write_seed ("config", name, buf, len);
  free (buf);
  objstore_close (os);
  snprintf (path, sizeof path, "%s/config", tmpdir);
  unlink (path);
  rmdir (tmpdir);
}

static void
gen_config (const char *tmpdir)
{
  struct store_config cfg;

  if (store_config_init (&cfg, 262144) == -1)
    fail ("store_config_init");
  memcpy (cfg.uuid, FUZZ_REPO_UUID, sizeof cfg.uuid);
  write_config ("valid-plain", &cfg, tmpdir);
  cfg.encrypted = true;
  memcpy (cfg.key, "00112233445566778899aabbccddeeff", sizeof cfg.key);
  memset (cfg.mac, 0x5c, sizeof cfg.mac);
  write_config ("valid-encrypted", &cfg, tmpdir);
}

/* ---- key files and paper keys ---- */

static void
copy_file (const char *target, const char *name, const char *path)
{
  char buf[65536];
  FILE *f = fopen (path, "rb");
  size_t n;

  if (f == NULL) {
    perror (path);
    exit (1);
  }
  n = fread (buf, 1, sizeof buf, f);
  fclose (f);
  write_seed (target, name, buf, n);
  unlink (path);
}

static void
gen_keys (const char *tmpdir)
{
  static const uint8_t master[STORE_KEY_LEN] = "pullback fuzz corpus master key";
  struct store_key *k = crypt_key_new (master);
  char path[4200], *paper;

  if (k == NULL)
    fail ("crypt_key_new");
  snprintf (path, sizeof path, "%s.key", tmpdir);
  if (store_key_save (k, path, NULL, 0, true) == -1)
    fail ("store_key_save");
  copy_file ("key", "valid-clear", path);
  if (store_key_save (k, path, "fuzz passphrase", 14, true) == -1)
    fail ("store_key_save");
  copy_file ("key", "valid-wrapped", path);
  if (store_key_paper (k, &paper) == -1)
    fail ("store_key_paper");
  write_seed ("paper", "valid-paper", paper, strlen (paper));
  free (paper);
  store_key_free (k);
}

/* ---- plan ---- */

struct plan_input {
  uint8_t b[4096];
  size_t n;
};

static void
put (struct plan_input *in, uint64_t v, size_t width)
{
  size_t i;

  for (i = 0; i < width; i++)
    in->b[in->n++] = v >> (8 * i);
}

static void
plan_header (struct plan_input *in, uint8_t flags, unsigned shift,
             uint64_t size, uint64_t parent)
{
  in->n = 0;
  put (in, flags, 1);
  put (in, shift - 16, 1);
  put (in, size, 8);
  put (in, parent, 8);
}

/* A reply of context CTX (0 base:allocation, 1 bitmap) at the request's
 * offset with N extents (LENS, FLAGS). */
static void
plan_reply (struct plan_input *in, unsigned ctx, unsigned n,
            const uint32_t *lens, const uint8_t *flags)
{
  unsigned i;

  put (in, ctx, 1);
  put (in, 0, 1);
  put (in, n, 1);
  for (i = 0; i < n; i++) {
    put (in, lens[i], 4);
    put (in, flags[i], 1);
  }
}

/* What a server must not send: the plan refuses each (PB_E_NBD). */
static void
gen_plan_rejects (void)
{
  struct plan_input in;
  static const uint32_t past[] = { 2097152 }, zero[] = { 65536, 0 };
  static const uint32_t all[] = { 1048576 }, huge[] = { 0xffffffffu };
  static const uint8_t data[] = { 0, 0 };

  plan_header (&in, 1, 16, 1048576, 0);      /* past the end */
  put (&in, 1, 1);
  plan_reply (&in, 0, 1, past, data);
  write_seed ("plan", "reject-beyond-end", in.b, in.n);

  plan_header (&in, 1, 16, 1048576, 0);      /* a zero-length extent */
  put (&in, 1, 1);
  plan_reply (&in, 0, 2, zero, data);
  write_seed ("plan", "reject-zero-length", in.b, in.n);

  plan_header (&in, 1, 16, 1048576, 0);      /* overlapping: two replies */
  put (&in, 2, 1);
  plan_reply (&in, 0, 1, all, data);
  plan_reply (&in, 0, 1, all, data);
  write_seed ("plan", "reject-overlapping", in.b, in.n);

  plan_header (&in, 1, 16, 1048576, 0);      /* for another offset */
  put (&in, 1, 1);
  put (&in, 0, 1);
  put (&in, 1, 1);
  put (&in, 1, 1);
  put (&in, 65536, 4);
  put (&in, 0, 1);
  write_seed ("plan", "reject-other-offset", in.b, in.n);

  plan_header (&in, 1, 16, 1048576, 0);      /* an empty reply */
  put (&in, 1, 1);
  plan_reply (&in, 0, 0, all, data);
  write_seed ("plan", "reject-empty-reply", in.b, in.n);

  plan_header (&in, 3, 16, 1048576, 1048576); /* no bitmap reply at all */
  put (&in, 1, 1);
  plan_reply (&in, 0, 1, all, data);
  put (&in, 0, 1);
  write_seed ("plan", "reject-no-progress", in.b, in.n);

  plan_header (&in, 3, 16, 1048576, 1048576); /* the dirty bitmap past the end */
  put (&in, 2, 1);
  plan_reply (&in, 0, 1, all, data);
  plan_reply (&in, 1, 1, huge, data);
  write_seed ("plan", "reject-dirty-huge", in.b, in.n);

  plan_header (&in, 1, 24, INT64_MAX, 0);    /* an export of 8 EiB, cut */
  put (&in, 1, 1);
  plan_reply (&in, 0, 1, huge, data);
  write_seed ("plan", "reject-huge-export-cut", in.b, in.n);
}

/* A reply of N extents of 256 bytes, alternately data and zero, then
 * one data extent of LAST bytes. */
static void
plan_alternating (struct plan_input *in, unsigned n, uint32_t last)
{
  unsigned i;

  put (in, 0, 1);
  put (in, 0, 1);
  put (in, n + 1, 1);
  for (i = 0; i < n; i++) {
    put (in, 256, 4);
    put (in, i % 2 ? LIBNBD_STATE_ZERO : 0, 1);
  }
  put (in, last, 4);
  put (in, 0, 1);
}

/* One chunk of 200 data and zero pieces: more than reader_read_chunk
 * takes from one request (MAX_PIECES, 128), so it asks again from the
 * 129th. */
static void
gen_plan_pieces (void)
{
  struct plan_input in;

  plan_header (&in, 5, 16, 65536, 0);
  put (&in, 1, 1);
  plan_alternating (&in, 200, 65536 - 200 * 256);
  put (&in, 1, 1);
  plan_alternating (&in, 200, 65536 - 200 * 256);
  put (&in, 1, 1);
  plan_alternating (&in, 72, 65536 - 200 * 256);
  write_seed ("plan", "valid-many-pieces", in.b, in.n);
}

static void
gen_plan (void)
{
  struct plan_input in;
  static const uint32_t half[] = { 524288, 524288 };
  static const uint32_t mixed[] = { 32768, 32768, 983040 };
  static const uint32_t dirty[] = { 65536, 458752, 524288 };
  static const uint32_t piece[] = { 32768, 32768 };
  static const uint8_t data_zero[] = { 0, LIBNBD_STATE_ZERO | LIBNBD_STATE_HOLE };
  static const uint8_t data_zero_data[] = { 0, LIBNBD_STATE_ZERO, 0 };
  static const uint8_t dirty_clean_dirty[] = { 1, 0, 1 };

  /* A full backup of 1 MiB, 64 KiB chunks: data, then zeros. */
  plan_header (&in, 1, 16, 1048576, 0);
  put (&in, 1, 1);
  plan_reply (&in, 0, 2, half, data_zero);
  write_seed ("plan", "valid-full", in.b, in.n);

  /* Incremental: both contexts in one request. */
  plan_header (&in, 3, 16, 1048576, 1048576);
  put (&in, 2, 1);
  plan_reply (&in, 0, 2, half, data_zero);
  plan_reply (&in, 1, 3, dirty, dirty_clean_dirty);
  write_seed ("plan", "valid-incremental", in.b, in.n);

  /* A first chunk mixing data and zeros, read: a second request for it. */
  plan_header (&in, 5, 16, 1048576, 0);
  put (&in, 1, 1);
  plan_reply (&in, 0, 3, mixed, data_zero_data);
  put (&in, 1, 1);
  plan_reply (&in, 0, 2, piece, data_zero);
  write_seed ("plan", "valid-mixed-read", in.b, in.n);

  /* No base:allocation, no bitmap: no request at all; a short last chunk. */
  plan_header (&in, 4, 16, 150000, 0);
  write_seed ("plan", "valid-no-contexts", in.b, in.n);

  gen_plan_rejects ();
  gen_plan_pieces ();
}

int
main (int argc, char **argv)
{
  struct chunk_codec *plain = chunk_codec_new (), *sealed = chunk_codec_new ();
  char tmpdir[4096];

  if (argc != 2) {
    fprintf (stderr, "usage: gen-corpus OUTDIR\n");
    return 2;
  }
  outdir = argv[1];
  if (plain == NULL || sealed == NULL)
    fail ("chunk_codec_new");
  chunk_codec_set_key (sealed, fuzz_object_key);
  snprintf (tmpdir, sizeof tmpdir, "%s/.gen-corpus.tmp", outdir);
  gen_chunk (plain, sealed);
  gen_maptree (plain);
  gen_record (plain, sealed);
  gen_config (tmpdir);
  gen_keys (tmpdir);
  gen_plan ();
  chunk_codec_free (plain);
  chunk_codec_free (sealed);
  return 0;
}
