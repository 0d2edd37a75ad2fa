/* pullback - store/test-common.h: helpers shared by the store/ unit tests.
 *
 * Each test program is one translation unit that includes this header:
 * check() from common/test.h (one line per assertion, failures counted), a
 * private temporary directory (test_start / test_end), whole-file I/O for
 * damaging objects behind the store's back, deterministic content
 * generators, and an independent implementation of the documented
 * container checksum (docs/FORMAT.md part 1, 4.2).
 */
#ifndef PB_TEST_COMMON_H
#define PB_TEST_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "errors.h"
#include "store.h"
#include "test.h"
#include "util.h"

#define HDR 24                  /* container header size */
#define CS (64 * 1024)          /* chunk size of the test stores */

static char tmpdir[256];

/* ---- helpers: paths, files, data ---- */

static inline const char *
path_in (const char *fmt, ...)
{
  static __thread char buf[1024];
  char rel[700];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (rel, sizeof rel, fmt, ap);
  va_end (ap);
  snprintf (buf, sizeof buf, "%s/%s", tmpdir, rel);
  return buf;
}

static inline uint8_t *
read_whole (const char *path, size_t *len)
{
  char *buf;

  if (read_file (path, &buf, len) == -1)
    return NULL;
  return (uint8_t *) buf;
}

static inline int
write_whole (const char *path, const void *buf, size_t len)
{
  int fd = open (path, O_WRONLY|O_CREAT|O_TRUNC, 0600);
  int r;

  if (fd == -1)
    return -1;
  r = full_write (fd, buf, len);
  close (fd);
  return r;
}

static inline uint64_t
xorshift (uint64_t *s)
{
  *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
  return *s;
}

static inline void
fill_random (uint8_t *buf, size_t len, uint64_t seed)
{
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = xorshift (&s) >> 56;
}

/* Text-like content zstd compresses well; SEED makes it unique. */
static inline void
fill_text (uint8_t *buf, size_t len, uint64_t seed)
{
  char line[80];
  size_t pos = 0, n;
  unsigned i = 0;

  while (pos < len) {
    n = snprintf (line, sizeof line, "%llu: line %u of a very compressible "
                  "test chunk\n", (unsigned long long) seed, i++);
    n = MIN (n, len - pos);
    memcpy (buf + pos, line, n);
    pos += n;
  }
}

static inline void
sha256 (const void *buf, size_t len, uint8_t out[32])
{
  EVP_Digest (buf, len, out, NULL, EVP_sha256 (), NULL);
}

static inline const char *
chunk_file (const store_id *id)
{
  char hex[65];

  store_id_hex (id, hex);
  return path_in ("repo/chunks/%.2s/%s", hex, hex);
}

static inline uint32_t
le32 (const uint8_t *p)
{
  return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
}

static inline void
put_le32 (uint8_t *p, uint32_t v)
{
  p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

/* The documented checksum, computed independently of chunk.c. */
static inline void
doc_checksum (const uint8_t *obj, size_t len, uint8_t out[8])
{
  uint8_t *copy = malloc (len), md[32];

  memcpy (copy, obj, len);
  memset (copy + 16, 0, 8);
  sha256 (copy, len, md);
  memcpy (out, md, 8);
  free (copy);
}

/* Put LEN bytes of BUF, returning the id (and r / stored). */
static inline int
put (struct store *s, const void *buf, size_t len, store_id *id,
     uint64_t *stored)
{
  store_id_of (s, buf, len, id);
  return store_put_chunk (s, id, buf, len, stored);
}

static inline int
get_equals (struct store *s, const store_id *id, const void *want, size_t wlen)
{
  uint8_t *buf = malloc (STORE_MAX_CHUNK_SIZE);
  size_t len = 0;
  int ok;

  ok = store_get_chunk (s, id, buf, STORE_MAX_CHUNK_SIZE, &len) == 0 &&
    len == wlen && memcmp (buf, want, wlen) == 0;
  free (buf);
  return ok;
}

/* Make the private directory under $TMPDIR (or /tmp).  0 or -1. */
static inline int
test_start (const char *name)
{
  const char *base = getenv ("TMPDIR");

  snprintf (tmpdir, sizeof tmpdir, "%s/%s.XXXXXX",
            base && *base ? base : "/tmp", name);
  if (mkdtemp (tmpdir) == NULL) {
    perror ("mkdtemp");
    return -1;
  }
  return 0;
}

/* Remove the directory, print the summary, give the exit status. */
static inline int
test_end (void)
{
  char cmd[300];

  snprintf (cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    fprintf (stderr, "warning: could not remove %s\n", tmpdir);
  return test_summary ();
}

#endif /* PB_TEST_COMMON_H */
