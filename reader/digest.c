/* pullback - reader/digest.c: the content digest of a disk image or export.
 *
 * The digest of a disk is SHA-256 over the ordered list of its chunk ids,
 * zero chunks included (docs/FORMAT.md).  Computing it from a live source
 * with the repository's chunk size and id function gives the same value
 * `show` prints for a point with the same content, so a user can prove that
 * a restored image equals what was backed up.  Zero extents reported by
 * base:allocation are not read: their ids are computed once per length.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "nbd.h"
#include "util.h"

struct digest {
  struct store *s;              /* id function; NULL = plain SHA-256 */
  uint32_t cs;
  uint64_t size;
  struct reader_plan *plan;
  void *buf;
  store_id zero_full, zero_tail;
  EVP_MD_CTX *ctx;
};

static size_t
len_of (struct digest *dg, uint64_t i)
{
  return MIN ((uint64_t) dg->cs, dg->size - i * dg->cs);
}

static const store_id *
zero_of (struct digest *dg, size_t len)
{
  return len == dg->cs ? &dg->zero_full : &dg->zero_tail;
}

static int
chunk_digest (struct digest *dg, enum reader_kind kind, uint64_t i)
{
  size_t len = len_of (dg, i);
  uint64_t nread;
  store_id id;

  if (kind == READER_ZERO)
    id = *zero_of (dg, len);
  else if (reader_read_chunk (dg->plan, i, dg->buf, len, &nread) == -1)
    return -1;
  else if (is_zero (dg->buf, len))
    id = *zero_of (dg, len);
  else
    store_id_of (dg->s, dg->buf, len, &id);
  EVP_DigestUpdate (dg->ctx, id.b, STORE_ID_LEN);
  return check_interrupt ();
}

static int
walk (struct digest *dg, struct reader_conn *c, uint8_t digest[32])
{
  struct reader_run run;
  uint64_t i;
  int r;

  dg->size = reader_size (c);
  memset (dg->buf, 0, dg->cs);
  store_id_of (dg->s, dg->buf, dg->cs, &dg->zero_full);
  store_id_of (dg->s, dg->buf, dg->size % dg->cs, &dg->zero_tail);
  dg->plan = reader_plan_new (c, dg->cs, NULL, 0);
  if (dg->plan == NULL)
    return -1;
  while ((r = reader_plan_next (dg->plan, &run)) == 1)
    for (i = run.first; i < run.first + run.count; i++)
      if (chunk_digest (dg, run.kind, i) == -1)
        return -1;
  if (r == 0 && EVP_DigestFinal_ex (dg->ctx, digest, NULL) != 1) {
    set_error (PB_E_FAIL, 0, "SHA-256 final failed");
    return -1;
  }
  return r;
}

static int
pick_chunk_size (struct pullback_repo *r, uint32_t chunk_size, uint32_t *cs)
{
  *cs = r ? pullback_repo_chunk_size (r)
          : chunk_size ? chunk_size : STORE_DEFAULT_CHUNK_SIZE;
  if (*cs < STORE_MIN_CHUNK_SIZE || *cs > STORE_MAX_CHUNK_SIZE ||
      !is_power_of_2 (*cs)) {
    set_error (PB_E_USAGE, 0, "chunk size %" PRIu32 " is not a power of two "
               "from 64 KiB to 16 MiB", *cs);
    return -1;
  }
  return 0;
}

static struct reader_conn *
open_source (const char *source)
{
  if (strstr (source, "://"))
    return reader_connect (source, NULL);
  return reader_open_image (source, NULL, false);
}

int
pullback_digest (const char *source, struct pullback_repo *r,
                 uint32_t chunk_size, uint8_t digest[PULLBACK_DIGEST_LEN],
                 uint64_t *size)
{
  struct digest dg = { .s = r ? r->store : NULL };
  struct reader_conn *c = NULL;
  int ret = -1;

  if (pick_chunk_size (r, chunk_size, &dg.cs) == -1)
    return -1;
  dg.buf = malloc (dg.cs);
  dg.ctx = EVP_MD_CTX_new ();
  if (dg.buf == NULL || dg.ctx == NULL ||
      EVP_DigestInit_ex (dg.ctx, EVP_sha256 (), NULL) != 1)
    set_error (PB_E_FAIL, errno, "out of memory");
  else if ((c = open_source (source)) != NULL && walk (&dg, c, digest) == 0) {
    if (size)
      *size = dg.size;
    ret = 0;
  }
  if (ret == -1)
    pb_prefix_error ("digest of %s", source);
  reader_plan_free (dg.plan);
  reader_close (c);
  EVP_MD_CTX_free (dg.ctx);
  free (dg.buf);
  return ret;
}
