/* pullback - fuzz/common.c: helpers and fixtures of the fuzz targets (see
 * fuzz/fuzz.h): the accepted-input counter, the object key and point the
 * seeds are made with, the checksum fix-up, and a one-object in-memory
 * object store to feed store_config_read.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "chunk.h"
#include "errors.h"
#include "fuzz.h"

unsigned long fuzz_accepted;

void
fuzz_accept (void)
{
  fuzz_accepted++;
}

const uint8_t fuzz_object_key[32] = {
  0x70, 0x62, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d,
  0x6f, 0x62, 0x6a, 0x65, 0x63, 0x74, 0x2d, 0x6b,
  0x65, 0x79, 0x2d, 0x6e, 0x6f, 0x74, 0x2d, 0x61,
  0x2d, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x21
};

static struct catalog_disk fixture_disks[2] = {
  { .name = "vda", .size = 1048576, .chunk_size = 65536, .map_levels = 1,
    .map_root = { 0x11, 0x22, 0x33 }, .digest = { 0x44, 0x55, 0x66 } },
  { .name = "vdb", .size = 200000, .chunk_size = 65536, .map_levels = 2,
    .map_root = { 0x77 }, .digest = { 0x88 } }
};

static struct catalog_point fixture_point = {
  .id = 42, .vm = "fuzzvm", .mode = "full", .started = 1700000000,
  .finished = 1700000060, .ndisks = 2, .disks = fixture_disks
};

const struct catalog_point *
fuzz_point (void)
{
  return &fixture_point;
}

void
fuzz_fix_checksum (uint8_t *obj, size_t len)
{
  uint8_t hdr[CHUNK_HEADER_SIZE], md[EVP_MAX_MD_SIZE];
  EVP_MD_CTX *ctx;

  if (len < CHUNK_HEADER_SIZE || (ctx = EVP_MD_CTX_new ()) == NULL)
    return;
  memcpy (hdr, obj, CHUNK_HEADER_SIZE);
  memset (hdr + CHUNK_OFF_CHECKSUM, 0, CHUNK_CHECKSUM_LEN);
  if (EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) == 1 &&
      EVP_DigestUpdate (ctx, hdr, CHUNK_HEADER_SIZE) == 1 &&
      EVP_DigestUpdate (ctx, obj + CHUNK_HEADER_SIZE,
                        len - CHUNK_HEADER_SIZE) == 1 &&
      EVP_DigestFinal_ex (ctx, md, NULL) == 1)
    memcpy (obj + CHUNK_OFF_CHECKSUM, md, CHUNK_CHECKSUM_LEN);
  EVP_MD_CTX_free (ctx);
}

/* ---- a one-object store ---- */

struct memstore {
  struct objstore os;
  void *buf;
  size_t len;
};

static int
mem_get (struct objstore *os, const char *key, void **buf, size_t *len)
{
  struct memstore *m = (struct memstore *) os;

  if (strcmp (key, "config") != 0) {
    set_error (PB_E_NOTFOUND, ENOENT, "%s", key);
    errno = ENOENT;
    return -1;
  }
  /* Exactly LEN bytes, no terminating NUL: other backends need not add
   * one, and the sanitizers should see any read past the end. */
  *buf = malloc (m->len ? m->len : 1);
  if (*buf == NULL) {
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  memcpy (*buf, m->buf, m->len);
  *len = m->len;
  return 0;
}

static int
mem_refuse (void)
{
  set_error (PB_E_IO, EROFS, "the fuzz store is read-only");
  return -1;
}

static int
mem_put (struct objstore *os, const char *key, const void *buf, size_t len)
{
  return mem_refuse ();
}

static int
mem_stat (struct objstore *os, const char *key, uint64_t *size)
{
  struct memstore *m = (struct memstore *) os;

  if (strcmp (key, "config") != 0)
    return 0;
  *size = m->len;
  return 1;
}

static int
mem_del (struct objstore *os, const char *key)
{
  return mem_refuse ();
}

static int
mem_list (struct objstore *os, const char *prefix,
          int (*cb) (const char *key, void *opaque), void *opaque)
{
  return strncmp ("config", prefix, strlen (prefix)) == 0 ?
    cb ("config", opaque) : 0;
}

static int
mem_sync (struct objstore *os)
{
  return 0;
}

static void
mem_close (struct objstore *os)
{
  struct memstore *m = (struct memstore *) os;

  free (m->buf);
  free (m);
}

static const struct objstore_ops mem_ops = {
  .name = "fuzz-memory", .put = mem_put, .get = mem_get, .stat = mem_stat,
  .del = mem_del, .list = mem_list, .sync = mem_sync, .close = mem_close
};

struct objstore *
fuzz_memstore (const void *config, size_t len)
{
  struct memstore *m = calloc (1, sizeof *m);

  if (m == NULL || (m->buf = malloc (len ? len : 1)) == NULL) {
    free (m);
    return NULL;
  }
  memcpy (m->buf, config, len);
  m->len = len;
  m->os.ops = &mem_ops;
  return &m->os;
}
