/* pullback - bench/gc-scale.c: garbage collection on a repository of N
 * chunks (issue "Space": at least one million).
 *
 * Builds a synthetic repository through libpullback's own internals: N
 * distinct small chunks (64 bytes each, so that the store holds N real
 * objects without writing N x 64 KiB) under one point's map tree, exactly
 * as a backup writes them (store objects, catalog rows in batches, the
 * map tree, the point).  Then times:
 *   stats, gc with nothing to free (the common nightly case),
 *   forget --point of the point, gc --dry-run, gc deleting all N chunks.
 * Not part of make check; run by bench/gc-scale.sh.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "maptree.h"
#include "util.h"

static double t0;

static void
lap (const char *what)
{
  double t = now_mono ();

  printf ("%-34s %8.2f s\n", what, t - t0);
  fflush (stdout);
  t0 = t;
}

static int
fill (struct pullback_repo *r, uint64_t n, struct catalog_disk *d)
{
  struct catalog_batch *b = catalog_batch_new (r->cat, r->store, 0);
  struct maptree_writer *w = maptree_writer_new (r, b, n);
  char buf[64];
  store_id id, root;
  uint64_t i, stored, nb = 0;

  for (i = 0; w && i < n; i++) {
    memset (buf, 0, sizeof buf);
    snprintf (buf, sizeof buf, "gc-scale chunk %" PRIu64, i);
    store_id_of (r->store, buf, sizeof buf, &id);
    if (store_put_chunk (r->store, &id, buf, sizeof buf, &stored) == -1 ||
        catalog_batch_chunk (b, &id, stored) == -1 ||
        maptree_writer_add (w, &id) == -1)
      return -1;
  }
  if (w == NULL ||
      maptree_writer_finish (w, &root, &d->map_levels, d->digest, &nb) == -1 ||
      catalog_batch_flush (b) == -1 || store_sync (r->store) == -1)
    return -1;
  memcpy (d->map_root, root.b, STORE_ID_LEN);
  maptree_writer_free (w);
  catalog_batch_free (b);
  return 0;
}

static int
add_point (struct pullback_repo *r, struct catalog_disk *d, uint64_t n)
{
  struct catalog_point p = { .id = 1, .vm = (char *) "bench",
                             .mode = (char *) "full", .started = 1,
                             .finished = 2, .ndisks = 1, .disks = d };

  d->name = (char *) "vda";
  d->chunk_size = pullback_repo_chunk_size (r);
  d->size = n * d->chunk_size;
  return catalog_add_point (r->cat, &p);
}

int
main (int argc, char **argv)
{
  struct pullback_forget_opts fo = { .point = 1,
    .rules = { -1, -1, -1, -1, -1, -1 } };
  struct pullback_forget_result *fr = NULL;
  struct pullback_gc_result g;
  struct pullback_stats st;
  struct catalog_disk d = { 0 };
  struct pullback_repo *r;
  uint64_t n;

  if (argc != 3) {
    fprintf (stderr, "usage: gc-scale NEW_REPO_DIR NCHUNKS\n");
    return 2;
  }
  n = strtoull (argv[2], NULL, 10);
  t0 = now_mono ();
  if ((r = pullback_repo_init (argv[1], 64 * 1024, NULL)) == NULL ||
      fill (r, n, &d) == -1 || add_point (r, &d, n) == -1)
    goto err;
  printf ("repository of %" PRIu64 " chunks, map tree of %u levels\n",
          n, d.map_levels);
  lap ("build (write N objects + catalog)");
  if (pullback_stats (r, &st) == -1)
    goto err;
  lap ("stats");
  if (pullback_gc (r, false, &g) == -1)
    goto err;
  printf ("  gc freed %" PRIu64 " chunks\n", g.chunks_deleted);
  lap ("gc, nothing to free");
  if (pullback_forget (r, &fo, &fr) == -1)
    goto err;
  pullback_forget_result_free (fr);
  lap ("forget --point (the only point)");
  if (pullback_gc (r, true, &g) == -1)
    goto err;
  printf ("  dry run: %" PRIu64 " chunks, %" PRIu64 " nodes, %" PRIu64
          " bytes\n", g.chunks_deleted, g.nodes_deleted, g.bytes_freed);
  lap ("gc --dry-run");
  if (pullback_gc (r, false, &g) == -1)
    goto err;
  printf ("  deleted %" PRIu64 " chunks, %" PRIu64 " nodes, %" PRIu64
          " bytes\n", g.chunks_deleted, g.nodes_deleted, g.bytes_freed);
  lap ("gc, deleting everything");
  pullback_repo_close (r);
  return g.chunks_deleted == n ? 0 : 1;
 err:
  fprintf (stderr, "gc-scale: %s\n", pb_get_error ());
  pullback_repo_close (r);
  return 1;
}
