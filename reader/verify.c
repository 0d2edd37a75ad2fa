/* pullback - reader/verify.c: checking that points can be restored.
 *
 * For every point asked for, every disk's map tree is walked: each map node
 * and each non-zero chunk is read from the store, decompressed and checked
 * against its id (store_get_chunk does the checking), once per distinct id
 * however many points share it.  A damaged or missing object becomes one
 * problem listing every point that needs it.  The content digest of each
 * disk is recomputed from its map, the point's record in the store must be
 * readable, and SQLite's integrity check runs on the catalog.
 *
 * A sample (--sample PERCENT) reads the contents of a share of the data
 * chunks only, chosen by a keyed hash of the id so that a seed always
 * picks the same chunks and successive seeds sweep the store; the others
 * are still stat'ed, so a missing chunk is found whatever the sample.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "maptree.h"
#include "util.h"

struct verify {
  struct pullback_repo *r;
  struct pullback_verify_result *res;
  struct idset *seen;           /* value: 0 = good, k = problems[k - 1] */
  int64_t point;                /* the point being checked */
  uint64_t threshold;           /* sampled if hash < this; UINT64_MAX: all */
  uint64_t seed;
  void *buf;                    /* one chunk */
  pullback_progress_fn progress;
  void *opaque;
};

static int
add_point_to (struct pullback_verify_problem *pr, int64_t point)
{
  int64_t *pts;

  if (pr->npoints > 0 && pr->points[pr->npoints - 1] == point)
    return 0;
  pts = realloc (pr->points, (pr->npoints + 1) * sizeof *pts);
  if (pts == NULL) {
    set_error (PB_E_FAIL, errno, "realloc");
    return -1;
  }
  pts[pr->npoints++] = point;
  pr->points = pts;
  return 0;
}

/* Record a problem with object ID (all-zero id: not about one object). */
static int
add_problem (struct verify *v, const store_id *id, const char *what)
{
  struct pullback_verify_result *res = v->res;
  struct pullback_verify_problem *p;

  p = realloc (res->problems, (res->nproblems + 1) * sizeof *p);
  if (p == NULL) {
    set_error (PB_E_FAIL, errno, "realloc");
    return -1;
  }
  res->problems = p;
  p = &p[res->nproblems++];
  memset (p, 0, sizeof *p);
  memcpy (p->chunk, id->b, STORE_ID_LEN);
  p->what = strdup (what);
  if (p->what == NULL) {
    set_error (PB_E_FAIL, errno, "strdup");
    return -1;
  }
  return add_point_to (p, v->point);
}

/* Operational failures stop verify; damage is a problem and verify goes on. */
static bool
is_damage (void)
{
  int c = pb_get_errclass ();

  return c == PB_E_CORRUPT || c == PB_E_NOTFOUND || c == PB_E_IO;
}

/* What is wrong with object ID, without the "chunk ID: " the store's
 * message starts with (the problem names the chunk already). */
static const char *
damage_of (const store_id *id)
{
  const char *msg = pb_get_error ();
  char hex[2 * STORE_ID_LEN + 1], prefix[2 * STORE_ID_LEN + 16];

  if (pb_get_errno () == ENOENT)
    return "missing";
  store_id_hex (id, hex);
  snprintf (prefix, sizeof prefix, "chunk %s: ", hex);
  if (strncmp (msg, prefix, strlen (prefix)) == 0)
    msg += strlen (prefix);
  return msg;
}

/* SplitMix64's finaliser: spreads the id's bits and the seed evenly. */
static uint64_t
mix (uint64_t x)
{
  x = (x ^ (x >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C (0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* Whether data chunk ID's contents are read under the sample. */
static bool
sampled (const struct verify *v, const store_id *id)
{
  uint64_t x;

  if (v->threshold == UINT64_MAX)
    return true;
  memcpy (&x, id->b, sizeof x);
  return mix (x ^ mix (v->seed)) < v->threshold;
}

/* A missing chunk; says so if an earlier verify moved a damaged copy aside. */
static int
missing (struct verify *v, const store_id *id)
{
  int q = store_chunk_quarantined (v->r->store, id);

  if (q == -1)
    return -1;
  return add_problem (v, id, q ? "missing (an earlier verify moved its damaged "
                      "copy to the store's quarantine/)" : "missing");
}

/* Damage found reading ID.  A damaged copy (not a missing one, nor an I/O
 * error that may pass) is moved aside, so that the next backup meeting
 * the same content stores a good copy again: the store heals. */
static int
damaged (struct verify *v, const store_id *id)
{
  char what[1200];
  struct pullback_verify_problem *p;

  if (!is_damage ())
    return -1;
  if (pb_get_errno () == ENOENT)
    return missing (v, id);
  snprintf (what, sizeof what, "%s", damage_of (id));
  if (pb_get_errclass () != PB_E_CORRUPT)
    return add_problem (v, id, what);
  if (store_quarantine_chunk (v->r->store, id) == -1) {
    size_t n = strlen (what);
    snprintf (what + n, sizeof what - n, " (could not be moved aside: %s)",
              pb_get_error ());
    return add_problem (v, id, what);
  }
  if (add_problem (v, id, what) == -1)
    return -1;
  p = &v->res->problems[v->res->nproblems - 1];
  p->quarantined = true;
  return 0;
}

/* Outside the sample: only that the chunk is there. */
static int
stat_object (struct verify *v, const store_id *id)
{
  int r = store_stat_chunk (v->r->store, id, NULL);

  if (r == 1) {
    v->res->chunks_not_read++;
    return 0;
  }
  if (r == 0)
    return missing (v, id);
  return damaged (v, id);
}

/* Read and check object ID (a data chunk if CHUNK), once per verify. */
static int
check_object (struct verify *v, const store_id *id, bool chunk)
{
  bool added;
  uint64_t *slot = idset_insert (v->seen, id, &added);
  size_t len, before = v->res->nproblems;

  if (slot == NULL)
    return -1;
  if (!added)
    return *slot ? add_point_to (&v->res->problems[*slot - 1], v->point) : 0;
  if (check_interrupt () == -1)
    return -1;
  if (chunk && !sampled (v, id)) {
    if (stat_object (v, id) == -1)
      return -1;
  }
  else if (store_get_chunk (v->r->store, id, v->buf,
                            pullback_repo_chunk_size (v->r), &len) == 0) {
    v->res->chunks_checked++;
    v->res->bytes_checked += len;
  }
  else if (damaged (v, id) == -1)
    return -1;
  if (v->res->nproblems > before)
    *slot = v->res->nproblems;
  return 0;
}

static int
check_node (const store_id *id, void *opaque)
{
  return check_object (opaque, id, false);
}

/* The tree itself could not be read: one problem for the disk's root. */
static int
tree_problem (struct verify *v, const struct catalog_disk *d)
{
  char msg[1200];

  if (!is_damage ())
    return -1;
  snprintf (msg, sizeof msg, "disk '%s' map: %s", d->name, pb_get_error ());
  return add_problem (v, (const store_id *) d->map_root, msg);
}

static int
check_chunks (struct verify *v, const struct catalog_disk *d,
              struct maptree_reader *t, uint8_t digest[32])
{
  uint64_t i, n = div_round_up (d->size, d->chunk_size);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  store_id id, zero;
  int r = 0;

  if (ctx == NULL || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
    EVP_MD_CTX_free (ctx);
    set_error (PB_E_FAIL, 0, "SHA-256 init failed");
    return -1;
  }
  for (i = 0; r == 0 && i < n; i++) {
    size_t len = MIN ((uint64_t) d->chunk_size, d->size - i * d->chunk_size);
    if ((r = maptree_reader_get (t, i, &id)) == -1) {
      r = tree_problem (v, d) == -1 ? -1 : 1;
      break;
    }
    EVP_DigestUpdate (ctx, id.b, STORE_ID_LEN);
    store_zero_id (v->r->store, len, &zero);
    if (memcmp (id.b, zero.b, STORE_ID_LEN) != 0)
      r = check_object (v, &id, true);
    if (v->progress)
      v->progress (v->opaque, d->name, i * d->chunk_size + len, d->size);
  }
  EVP_DigestFinal_ex (ctx, digest, NULL);
  EVP_MD_CTX_free (ctx);
  return r;
}

static int
check_disk (struct verify *v, const struct catalog_disk *d)
{
  store_id root;
  uint8_t digest[32];
  struct maptree_reader *t;
  int r;

  memcpy (root.b, d->map_root, STORE_ID_LEN);
  t = maptree_reader_new (v->r, &root, d->map_levels,
                          div_round_up (d->size, d->chunk_size));
  if (t == NULL)
    return tree_problem (v, d);
  r = maptree_reader_nodes (t, check_node, v);
  if (r == -1)
    r = tree_problem (v, d) == -1 ? -1 : 1;
  if (r == 0)
    r = check_chunks (v, d, t, digest);
  maptree_reader_free (t);
  if (r == 0 && memcmp (digest, d->digest, sizeof digest) != 0) {
    char msg[300];
    snprintf (msg, sizeof msg, "disk '%s': content digest of the map does "
              "not match the recorded digest", d->name);
    return add_problem (v, &root, msg);
  }
  return r == -1 ? -1 : 0;
}

/* The record must be readable and say what the catalog says. */
static int
check_record (struct verify *v, const struct catalog_point *p)
{
  store_id none = { { 0 } };

  if (point_record_check (v->r, p, NULL) == 0)
    return 0;
  if (!is_damage ())
    return -1;
  return add_problem (v, &none, pb_get_error ());
}

static int
check_point (struct verify *v, const struct catalog_point *p)
{
  size_t i;

  v->point = p->id;
  if (check_record (v, p) == -1)
    return -1;
  for (i = 0; i < p->ndisks; i++)
    if (check_disk (v, &p->disks[i]) == -1)
      return -1;
  v->res->points_checked++;
  return 0;
}

static int
points_to_check (struct verify *v, int64_t point,
                 struct catalog_point ***pts, size_t *n)
{
  if (point == 0)
    return catalog_list_points (v->r->cat, NULL, pts, n);
  *pts = calloc (1, sizeof **pts);
  if (*pts == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  (*pts)[0] = pullback_get_point (v->r, point);
  if ((*pts)[0] == NULL) {
    free (*pts);
    return -1;
  }
  *n = 1;
  return 0;
}

static int
run_verify (struct verify *v, int64_t point)
{
  struct catalog_point **pts = NULL;
  size_t i, n = 0;
  int r = 0;

  if (points_to_check (v, point, &pts, &n) == -1)
    return -1;
  for (i = 0; r == 0 && i < n; i++)
    r = check_point (v, pts[i]);
  catalog_points_free (pts, n);
  if (r == 0) {
    v->res->catalog_ok = catalog_check (v->r->cat) == 0;
    if (!v->res->catalog_ok && pb_get_errclass () != PB_E_CORRUPT)
      return -1;
  }
  return r;
}

/* The hash threshold for PERCENT of the id space (0 or >= 100: all). */
static uint64_t
threshold_of (double percent)
{
  if (percent <= 0 || percent >= 100)
    return UINT64_MAX;
  return (uint64_t) (percent / 100 * 18446744073709551616.0);   /* 2^64 */
}

int
pullback_verify (struct pullback_repo *r,
                 const struct pullback_verify_opts *opts,
                 pullback_progress_fn progress, void *progress_opaque,
                 struct pullback_verify_result **result)
{
  struct verify v = { .r = r, .progress = progress, .opaque = progress_opaque,
                      .threshold = threshold_of (opts->sample_percent),
                      .seed = opts->seed };
  int ret = -1;

  *result = NULL;
  if (!(opts->sample_percent >= 0 && opts->sample_percent <= 100)) {
    set_error (PB_E_USAGE, 0, "sample percentage %g is not in (0, 100]",
               opts->sample_percent);
    return -1;
  }
  v.res = calloc (1, sizeof *v.res);
  v.seen = idset_new ();
  v.buf = malloc (pullback_repo_chunk_size (r));
  if (v.res == NULL || v.buf == NULL)
    set_error (PB_E_FAIL, errno, "out of memory");
  else if (v.seen)
    ret = run_verify (&v, opts->point);
  if (ret == 0)
    *result = v.res;
  else
    pullback_verify_result_free (v.res);
  idset_free (v.seen);
  free (v.buf);
  return ret;
}

void
pullback_verify_result_free (struct pullback_verify_result *res)
{
  size_t i;

  if (res == NULL)
    return;
  for (i = 0; i < res->nproblems; i++) {
    free (res->problems[i].what);
    free (res->problems[i].points);
  }
  free (res->problems);
  free (res);
}
