/* pullback - reader/gc.c: garbage collection, what it would free, and
 * recounting references.
 *
 * The catalog counts references (catalog/space.c); what has none and is
 * not pinned by a running backup is garbage.  gc deletes garbage map nodes
 * first, a batch per transaction: each deletion lowers the counts of the
 * node's entries, so the garbage drains from the roots of removed points
 * down to their chunks, and then the garbage chunks go.  It reads the
 * catalog only, never chunk contents.
 *
 * Why the store objects are unlinked inside the catalog transaction that
 * deletes their rows: a backup pins an object in a transaction of its own
 * before it looks for it in the store (reader/batch.c).  The two
 * transactions are serialised, so either gc saw the pin and kept the
 * object, or the object was already gone when the backup looked and the
 * backup wrote it anew.  A crash between the unlinks and the commit
 * leaves rows of objects that are gone; they are garbage still (refs = 0),
 * and the next gc finishes the job.
 *
 * Each transaction holds the catalog's write lock for one batch only, so a
 * backup running meanwhile waits at most that long for its own rows.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "maptree.h"
#include "util.h"

#define GC_BATCH 256

/* Is ID also a live row of the other kind (a chunk whose bytes happen to
 * be a map node, or the reverse)?  Then its store object stays. */
static int
shared_object (struct pullback_repo *r, bool node, const uint8_t *id)
{
  int64_t refs;
  bool pinned;

  return catalog_object_refs (r->cat, !node, id, &refs, &pinned);
}

/* Delete one garbage object: lower its entries' counts, drop the row and
 * the store object, adding what it took to RES. */
static int
drop_object (struct pullback_repo *r, bool node,
             const struct catalog_garbage *g, struct pullback_gc_result *res)
{
  const uint8_t *entries;
  size_t n = 0;
  uint64_t size = 0;
  store_id id;
  int shared;

  if (node && (maptree_node_entries (g->data, g->len, &entries, &n) == -1 ||
               catalog_unref (r->cat, g->level > 0, entries, n) == -1))
    return -1;
  if (catalog_delete_object (r->cat, node, g->id) == -1 ||
      (shared = shared_object (r, node, g->id)) == -1)
    return -1;
  memcpy (id.b, g->id, STORE_ID_LEN);
  if (!shared && store_stat_chunk (r->store, &id, &size) == 1 &&
      store_delete_chunk (r->store, &id) == -1)
    return -1;
  res->bytes_freed += size;
  if (node)
    res->nodes_deleted++;
  else
    res->chunks_deleted++;
  return 0;
}

/* One batch in one transaction; 1 if there was garbage, 0 if none. */
static int
gc_batch (struct pullback_repo *r, bool nodes, struct pullback_gc_result *res)
{
  struct pullback_gc_result part = { 0 };
  struct catalog_garbage *g = NULL;
  size_t n = 0, i;
  int ret = -1;

  if (catalog_begin (r->cat) == -1)
    return -1;
  if (catalog_garbage (r->cat, nodes, GC_BATCH, &g, &n) == -1)
    goto out;
  for (i = 0; i < n; i++)
    if (drop_object (r, nodes, &g[i], &part) == -1)
      goto out;
  if (catalog_commit (r->cat) == 0)
    ret = n > 0;
 out:
  if (ret == -1)
    catalog_rollback (r->cat);
  else {
    res->chunks_deleted += part.chunks_deleted;
    res->nodes_deleted += part.nodes_deleted;
    res->bytes_freed += part.bytes_freed;
  }
  catalog_garbage_free (g, n);
  return ret;
}

static int
gc_all (struct pullback_repo *r, bool nodes, struct pullback_gc_result *res)
{
  int more;

  while ((more = gc_batch (r, nodes, res)) == 1)
    if (check_interrupt () == -1)
      return -1;
  return more;
}

/* ---- What gc would free, without freeing it ---- */

struct sim {
  struct pullback_repo *r;
  struct idset *lowered[2];             /* [node?]: decrements so far */
  struct pullback_gc_result *res;
};

static int sim_node (struct sim *sm, const struct catalog_garbage *g);

static void
sim_count (struct sim *sm, bool node, const uint8_t *id)
{
  uint64_t size = 0;
  store_id sid;

  memcpy (sid.b, id, STORE_ID_LEN);
  if (shared_object (sm->r, node, id) == 0)
    store_stat_chunk (sm->r->store, &sid, &size);
  sm->res->bytes_freed += size;
  if (node)
    sm->res->nodes_deleted++;
  else
    sm->res->chunks_deleted++;
}

/* Entry ID of a garbage node loses a reference; when that was its last
 * (and it is not pinned), it is garbage too. */
static int
sim_lower (struct sim *sm, bool node, const uint8_t *id)
{
  struct catalog_garbage child = { .level = 0 };
  uint64_t *low;
  store_id sid;
  int64_t refs;
  bool pinned, added;
  int r;

  memcpy (sid.b, id, STORE_ID_LEN);
  if ((r = catalog_object_refs (sm->r->cat, node, id, &refs, &pinned)) != 1)
    return r;
  if ((low = idset_insert (sm->lowered[node], &sid, &added)) == NULL)
    return -1;
  if ((int64_t) ++*low != refs || pinned)
    return 0;
  if (!node) {
    sim_count (sm, false, id);
    return 0;
  }
  memcpy (child.id, id, STORE_ID_LEN);
  if (catalog_get_node (sm->r->cat, id, &child.data, &child.len) == -1)
    return -1;
  child.level = child.len > 5 ? ((uint8_t *) child.data)[5] : 0;
  r = sim_node (sm, &child);
  free (child.data);
  return r;
}

static int
sim_node (struct sim *sm, const struct catalog_garbage *g)
{
  const uint8_t *entries;
  size_t n, i;

  if (maptree_node_entries (g->data, g->len, &entries, &n) == -1)
    return -1;
  sim_count (sm, true, g->id);
  for (i = 0; i < n; i++)
    if (sim_lower (sm, g->level > 0, entries + i * STORE_ID_LEN) == -1)
      return -1;
  return 0;
}

static int
sim_node_cb (const struct catalog_garbage *g, void *opaque)
{
  return sim_node (opaque, g);
}

static int
sim_chunk_cb (const struct catalog_garbage *g, void *opaque)
{
  sim_count (opaque, false, g->id);
  return 0;
}

/* Chunks already garbage are counted before the walk so that a chunk
 * that becomes garbage during it (counted by sim_lower) is not one of
 * them: sim_lower only counts chunks whose refs reach 0 from above. */
int
repo_reclaimable (struct pullback_repo *r, struct pullback_gc_result *res)
{
  struct sim sm = { .r = r, .res = res };
  int ret = -1;

  sm.lowered[0] = idset_new ();
  sm.lowered[1] = idset_new ();
  if (sm.lowered[0] && sm.lowered[1] &&
      catalog_foreach_garbage (r->cat, false, sim_chunk_cb, &sm) == 0 &&
      catalog_foreach_garbage (r->cat, true, sim_node_cb, &sm) == 0)
    ret = 0;
  idset_free (sm.lowered[0]);
  idset_free (sm.lowered[1]);
  return ret;
}

/* ---- gc ---- */

static int
count_in_use (struct pullback_repo *r, uint64_t *n)
{
  struct catalog_totals t;

  if (catalog_totals (r->cat, &t) == -1)
    return -1;
  *n = t.pinned_garbage;
  return 0;
}

/* Temporary files of killed writers: all those older than this gc when
 * no backup is running (none can be writing them), else only those older
 * than an hour (no put takes that long). */
static int
sweep_temp (struct pullback_repo *r, int64_t started, uint64_t *removed)
{
  struct catalog_totals t;

  if (catalog_totals (r->cat, &t) == -1)
    return -1;
  return store_sweep_temp (r->store, t.leases ? started - 3600 : started,
                           removed);
}

int
pullback_gc (struct pullback_repo *r, bool dry_run,
             struct pullback_gc_result *res)
{
  double t0 = now_mono ();
  int64_t started = now_epoch ();

  memset (res, 0, sizeof *res);
  res->dry_run = dry_run;
  if (!catalog_refs_valid (r->cat)) {
    set_error (PB_E_FAIL, 0, "gc: the catalog's reference counts have not "
               "been computed (open the repository once with this pullback)");
    return -1;
  }
  if (!dry_run &&
      (catalog_clear_stale_leases (r->cat, &res->leases_cleared) == -1 ||
       sweep_temp (r, started, &res->temp_removed) == -1))
    return -1;
  if (dry_run ? repo_reclaimable (r, res) == -1
      : gc_all (r, true, res) == -1 || gc_all (r, false, res) == -1)
    return -1;
  if (count_in_use (r, &res->in_use) == -1)
    return -1;
  res->seconds = now_mono () - t0;
  return 0;
}

/* ---- Recounting (catalogs upgraded from version 1) ---- */

struct recount {
  struct idset *counts[2];              /* [node?] */
  struct catalog *cat;
  bool node;
};

static int
count_entries (const struct catalog_garbage *g, void *opaque)
{
  struct recount *rc = opaque;
  const uint8_t *entries;
  size_t n, i;
  store_id id;
  bool added;
  uint64_t *v;

  if (maptree_node_entries (g->data, g->len, &entries, &n) == -1)
    return -1;
  for (i = 0; i < n; i++) {
    memcpy (id.b, entries + i * STORE_ID_LEN, STORE_ID_LEN);
    if ((v = idset_insert (rc->counts[g->level > 0], &id, &added)) == NULL)
      return -1;
    ++*v;
  }
  return 0;
}

static int
count_root (const uint8_t id[CATALOG_ID_LEN], void *opaque)
{
  struct recount *rc = opaque;
  store_id sid;
  bool added;
  uint64_t *v;

  memcpy (sid.b, id, STORE_ID_LEN);
  if ((v = idset_insert (rc->counts[1], &sid, &added)) == NULL)
    return -1;
  ++*v;
  return 0;
}

static int
apply_count (const store_id *id, uint64_t value, void *opaque)
{
  struct recount *rc = opaque;

  return catalog_set_refs (rc->cat, rc->node, id->b, (int64_t) value);
}

static int
recount_in_transaction (struct pullback_repo *r, struct recount *rc)
{
  if (catalog_foreach_node (r->cat, count_entries, rc) == -1 ||
      catalog_foreach_root (r->cat, count_root, rc) == -1 ||
      catalog_zero_refs (r->cat) == -1)
    return -1;
  rc->node = false;
  if (idset_foreach (rc->counts[0], apply_count, rc) == -1)
    return -1;
  rc->node = true;
  if (idset_foreach (rc->counts[1], apply_count, rc) == -1)
    return -1;
  return catalog_mark_refs_valid (r->cat);
}

/* Memory: one idset slot per distinct id referenced (about 48 bytes). */
int
repo_recount (struct pullback_repo *r)
{
  struct recount rc = { .cat = r->cat };
  int ret = -1;

  rc.counts[0] = idset_new ();
  rc.counts[1] = idset_new ();
  if (rc.counts[0] && rc.counts[1] && catalog_begin (r->cat) == 0) {
    ret = recount_in_transaction (r, &rc);
    if (ret == 0)
      ret = catalog_commit (r->cat);
    if (ret == -1)
      catalog_rollback (r->cat);
  }
  if (ret == -1)
    pb_prefix_error ("counting references");
  idset_free (rc.counts[0]);
  idset_free (rc.counts[1]);
  return ret;
}
