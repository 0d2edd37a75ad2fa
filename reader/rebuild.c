/* pullback - reader/rebuild.c: a new catalog from the store alone.
 *
 * The catalog is an index: every point has a record in the store
 * (docs/FORMAT.md part 3) and every map node is a store object, so a lost
 * or damaged catalog.db can be made again.  Each record, in id order, is
 * read (authenticated in encrypted repositories), checked against the
 * format, and its disks' trees walked from the store: every node read and
 * checked against its id and shape, every non-zero chunk found present,
 * the content digest recomputed from the ids.  Only then do the point, its
 * nodes and chunks go into the new catalog, in one transaction per point,
 * so a point whose tree is incomplete (a chunk gone, a node damaged) is
 * left out and named rather than indexed half.  Chunk contents are not
 * read: that is verify's job, which should follow a rebuild.
 *
 * The new catalog is written to catalog.db.rebuild and renamed over
 * catalog.db only when complete; the old file (and its WAL, which must not
 * be replayed into the new one) is kept as catalog.db.old-TIMESTAMP.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "maptree.h"
#include "util.h"

#define NAME_PREFIX "points/"

struct rebuild {
  struct pullback_repo nr;          /* the store and the new catalog */
  struct pullback_rebuild_result *res;
  struct idset *done;               /* objects indexed by committed points */
  struct idset *pending;            /* ... by the point being indexed */
  int64_t *ids;                     /* record ids found, sorted */
  size_t nids;
  int64_t *added;                   /* ids of indexed points, ascending */
  char **added_vm;
  size_t nadded;
};

/* ---- the records in the store ---- */

/* "points/0000000042" -> 42; anything else is not a point record. */
static int64_t
record_id (const char *name)
{
  const char *p = name + strlen (NAME_PREFIX);
  int64_t id = 0;
  size_t i;

  if (strncmp (name, NAME_PREFIX, strlen (NAME_PREFIX)) != 0 ||
      strlen (p) != 10)
    return 0;
  for (i = 0; i < 10; i++) {
    if (p[i] < '0' || p[i] > '9')
      return 0;
    id = id * 10 + (p[i] - '0');
  }
  return id;
}

static int
collect_id (const char *name, void *opaque)
{
  struct rebuild *rb = opaque;
  int64_t id = record_id (name), *ids;

  if (id <= 0) {
    rb->res->records_ignored++;
    return 0;
  }
  ids = realloc (rb->ids, (rb->nids + 1) * sizeof *ids);
  if (ids == NULL) {
    set_error (PB_E_FAIL, errno, "realloc");
    return -1;
  }
  ids[rb->nids++] = id;
  rb->ids = ids;
  return 0;
}

static int
cmp_id (const void *a, const void *b)
{
  int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

  return x < y ? -1 : x > y;
}

static int
list_records (struct rebuild *rb)
{
  if (store_list_records (rb->nr.store, NAME_PREFIX, collect_id, rb) == -1)
    return -1;
  if (rb->nids > 1)             /* qsort (NULL, 0, ...) is undefined */
    qsort (rb->ids, rb->nids, sizeof *rb->ids, cmp_id);
  rb->res->records = rb->nids;
  return 0;
}

/* ---- skipped points ---- */

static int
skip_point (struct rebuild *rb, int64_t id, const char *why)
{
  struct pullback_rebuild_skip *s;

  s = realloc (rb->res->skipped, (rb->res->nskipped + 1) * sizeof *s);
  if (s == NULL) {
    set_error (PB_E_FAIL, errno, "realloc");
    return -1;
  }
  rb->res->skipped = s;
  s = &s[rb->res->nskipped];
  s->point = id;
  s->why = strdup (why);
  if (s->why == NULL) {
    set_error (PB_E_FAIL, errno, "strdup");
    return -1;
  }
  rb->res->nskipped++;
  return 0;
}

/* Damage (the point is skipped) or an operational failure (rebuild stops). */
static bool
is_damage (void)
{
  int c = pb_get_errclass ();

  return c == PB_E_CORRUPT || c == PB_E_NOTFOUND;
}

/* ---- indexing one disk's tree ---- */

struct disk_walk {
  struct rebuild *rb;
  store_id zero, zero_tail;         /* the ids of zero chunks */
};

/* Seen by a committed point or by this one; marks it for this one. */
static int
seen (struct rebuild *rb, const store_id *id, bool *was)
{
  bool added;

  if (idset_find (rb->done, id)) {
    *was = true;
    return 0;
  }
  if (idset_insert (rb->pending, id, &added) == NULL)
    return -1;
  *was = !added;
  return 0;
}

static int
index_chunk (struct disk_walk *w, const store_id *id)
{
  char hex[17];
  uint64_t size;
  bool was;
  int r;

  if (memcmp (id, &w->zero, sizeof *id) == 0 ||
      memcmp (id, &w->zero_tail, sizeof *id) == 0)
    return 0;
  if (seen (w->rb, id, &was) == -1)
    return -1;
  if (was)
    return 0;
  if ((r = store_stat_chunk (w->rb->nr.store, id, &size)) == -1)
    return -1;
  if (r == 0) {
    id_short (id, hex);
    set_error (PB_E_CORRUPT, ENOENT, "chunk %s is missing", hex);
    return -1;
  }
  return catalog_add_chunk (w->rb->nr.cat, id->b, size);
}

/* One node of the tree (top-down): its row, and its chunks if level 0.
 * The tree reader has already checked its id and shape. */
static int
index_node (const store_id *id, void *opaque)
{
  struct disk_walk *w = opaque;
  CLEANUP_FREE void *data = NULL;
  const uint8_t *e;
  size_t len, n, i;
  bool was;

  if (seen (w->rb, id, &was) == -1)
    return -1;
  if (was)
    return 0;
  if (store_get_chunk_alloc (w->rb->nr.store, id, &data, &len) == -1 ||
      maptree_node_entries (data, len, &e, &n) == -1 ||
      catalog_put_node (w->rb->nr.cat, id->b, ((uint8_t *) data)[5], data,
                        len, e, n) == -1)
    return -1;
  for (i = 0; ((uint8_t *) data)[5] == 0 && i < n; i++)
    if (index_chunk (w, (const store_id *) (e + i * STORE_ID_LEN)) == -1)
      return -1;
  return 0;
}

/* The content digest over the ids of disk D, as the tree lists them. */
static int
tree_digest (struct maptree_reader *t, uint64_t nchunks, uint8_t out[32])
{
  CLEANUP_FREE uint8_t *ids = NULL;
  store_id id;
  uint64_t i;
  int r = 0;

  if (nchunks > SIZE_MAX / STORE_ID_LEN ||
      (ids = malloc (nchunks ? nchunks * STORE_ID_LEN : 1)) == NULL) {
    set_error (PB_E_FAIL, errno, "out of memory for %" PRIu64 " ids", nchunks);
    return -1;
  }
  for (i = 0; r == 0 && i < nchunks; i++) {
    r = maptree_reader_get (t, i, &id);
    memcpy (ids + i * STORE_ID_LEN, id.b, STORE_ID_LEN);
  }
  if (r == 0)
    store_id_of (NULL, ids, nchunks * STORE_ID_LEN, (store_id *) out);
  return r;
}

static int
index_disk (struct rebuild *rb, const struct catalog_disk *d)
{
  struct disk_walk w = { .rb = rb };
  uint64_t n = div_round_up (d->size, d->chunk_size);
  struct maptree_reader *t;
  uint8_t digest[32];
  int r;

  store_zero_id (rb->nr.store, d->chunk_size, &w.zero);
  store_zero_id (rb->nr.store, d->size % d->chunk_size ? d->size % d->chunk_size
                 : d->chunk_size, &w.zero_tail);
  t = maptree_reader_new (&rb->nr, (const store_id *) d->map_root,
                          d->map_levels, n);
  if (t == NULL)
    return -1;
  r = maptree_reader_nodes (t, index_node, &w);
  if (r == 0)
    r = tree_digest (t, n, digest);
  maptree_reader_free (t);
  if (r == 0 && memcmp (digest, d->digest, sizeof digest) != 0) {
    set_error (PB_E_CORRUPT, 0, "disk '%s': the content digest of its map "
               "does not match the record", d->name);
    return -1;
  }
  if (r == -1)
    pb_prefix_error ("disk '%s'", d->name);
  return r;
}

/* ---- indexing one point ---- */

/* The VM of indexed point ID, or NULL if it was not indexed. */
static const char *
vm_of (struct rebuild *rb, int64_t id)
{
  size_t lo = 0, hi = rb->nadded;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (rb->added[mid] == id)
      return rb->added_vm[mid];
    if (rb->added[mid] < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static int
note_added (struct rebuild *rb, const struct catalog_point *p)
{
  int64_t *a = realloc (rb->added, (rb->nadded + 1) * sizeof *a);
  char **v;

  if (a == NULL)
    goto oom;
  rb->added = a;
  v = realloc (rb->added_vm, (rb->nadded + 1) * sizeof *v);
  if (v == NULL)
    goto oom;
  rb->added_vm = v;
  if ((v[rb->nadded] = strdup (p->vm)) == NULL)
    goto oom;
  a[rb->nadded++] = p->id;
  return 0;
 oom:
  set_error (PB_E_FAIL, errno, "out of memory");
  return -1;
}

static int
merge_one (const store_id *id, uint64_t value, void *opaque)
{
  bool added;

  (void) value;
  return idset_insert (opaque, id, &added) ? 0 : -1;
}

/* A parent that was not indexed, or belongs to another VM, is dropped:
 * the point stays restorable (its map is complete), only the chain link
 * is lost, as when a parent is forgotten. */
static void
fix_parent (struct rebuild *rb, struct catalog_point *p)
{
  const char *pvm;

  if (p->parent == 0)
    return;
  pvm = vm_of (rb, p->parent);
  if (pvm == NULL || strcmp (pvm, p->vm) != 0) {
    p->parent = 0;
    rb->res->parents_dropped++;
  }
}

static int
index_point_tx (struct rebuild *rb, struct catalog_point *p)
{
  size_t i;

  for (i = 0; i < p->ndisks; i++)
    if (index_disk (rb, &p->disks[i]) == -1)
      return -1;
  fix_parent (rb, p);
  return catalog_add_point (rb->nr.cat, p);
}

static int
index_point (struct rebuild *rb, int64_t id)
{
  struct catalog_point *p;
  int r;

  if (check_interrupt () == -1)
    return -1;
  p = point_record_load (&rb->nr, id);
  if (p == NULL)
    return is_damage () ? skip_point (rb, id, pb_get_error ()) : -1;
  idset_free (rb->pending);
  if ((rb->pending = idset_new ()) == NULL || catalog_begin (rb->nr.cat) == -1) {
    catalog_point_free (p);
    return -1;
  }
  r = index_point_tx (rb, p);
  if (r == 0 && (r = catalog_commit (rb->nr.cat)) == 0) {
    r = idset_foreach (rb->pending, merge_one, rb->done);
    if (r == 0 && (r = note_added (rb, p)) == 0)
      rb->res->points++;
  }
  else {
    catalog_rollback (rb->nr.cat);
    if (is_damage ())
      r = skip_point (rb, id, pb_get_error ());
  }
  catalog_point_free (p);
  return r;
}

/* ---- the new catalog file ---- */

static int
remove_if_there (const char *path)
{
  if (unlink (path) == -1 && errno != ENOENT) {
    set_error (PB_E_IO, errno, "remove %s", path);
    return -1;
  }
  return 0;
}

/* PATH, PATH-wal and PATH-shm gone (a failed rebuild's leftovers). */
static int
remove_db (const char *path)
{
  char side[PATH_MAX];

  snprintf (side, sizeof side, "%s-wal", path);
  if (remove_if_there (side) == -1)
    return -1;
  snprintf (side, sizeof side, "%s-shm", path);
  if (remove_if_there (side) == -1)
    return -1;
  return remove_if_there (path);
}

/* Meta: the store it indexes, and the ids that must not be reused (the
 * highest record id, whether or not its point could be indexed). */
static int
write_meta (struct rebuild *rb)
{
  char v[32];

  if (catalog_set_meta (rb->nr.cat, "store_uuid",
                        store_uuid (rb->nr.store)) == -1)
    return -1;
  if (rb->nids == 0)
    return 0;
  snprintf (v, sizeof v, "%" PRId64, rb->ids[rb->nids - 1]);
  return catalog_set_meta (rb->nr.cat, "removed_max_id", v);
}

static int
fill_catalog (struct rebuild *rb, pullback_progress_fn progress, void *opaque)
{
  size_t i;

  if (list_records (rb) == -1)
    return -1;
  for (i = 0; i < rb->nids; i++) {
    if (index_point (rb, rb->ids[i]) == -1)
      return -1;
    if (progress)
      progress (opaque, "points", i + 1, rb->nids);
  }
  if (write_meta (rb) == -1 || repo_recount (&rb->nr) == -1)
    return -1;
  return 0;
}

/* DIR/catalog.db.old-STAMP[-N], a name not taken yet. */
static int
kept_name (const char *dir, char *out, size_t len)
{
  char stamp[32];
  int n;

  format_time (now_epoch (), stamp, sizeof stamp);
  for (char *s = stamp; *s; s++)
    if (*s == ':')
      *s = '-';
  for (n = 0; n < 100; n++) {
    if (n == 0)
      snprintf (out, len, "%s/catalog.db.old-%s", dir, stamp);
    else
      snprintf (out, len, "%s/catalog.db.old-%s-%d", dir, stamp, n);
    if (access (out, F_OK) == -1 && errno == ENOENT)
      return 0;
  }
  set_error (PB_E_IO, EEXIST, "too many old catalogs (catalog.db.old-*)");
  return -1;
}

/* Move the old catalog aside (its WAL first: it belongs to the old file
 * and SQLite would replay it into the new one), then rename the new one
 * in.  A crash in between leaves no catalog.db and the old one kept:
 * running rebuild again finishes the job. */
static int
swap_in (const char *dir, const char *tmp, char **old_kept)
{
  char cat[PATH_MAX], side[PATH_MAX + 8], kept[PATH_MAX], kept_wal[PATH_MAX + 8];
  struct stat st;

  snprintf (cat, sizeof cat, "%s/catalog.db", dir);
  if (lstat (cat, &st) == 0) {
    if (kept_name (dir, kept, sizeof kept) == -1)
      return -1;
    snprintf (side, sizeof side, "%s-wal", cat);
    snprintf (kept_wal, sizeof kept_wal, "%s-wal", kept);
    if (rename (side, kept_wal) == -1 && errno != ENOENT)
      goto io;
    snprintf (side, sizeof side, "%s-shm", cat);
    if (remove_if_there (side) == -1)
      return -1;
    if (link (cat, kept) == -1)
      goto io;
    if ((*old_kept = strdup (kept)) == NULL) {
      set_error (PB_E_FAIL, errno, "strdup");
      return -1;
    }
  }
  if (rename (tmp, cat) == -1)
    goto io;
  return fsync_dir (dir);
 io:
  set_error (PB_E_IO, errno, "moving the old catalog aside");
  return -1;
}

/* ---- the old catalog ---- */

/* Without FORCE an intact catalog is not replaced (a rebuild loses what
 * only the catalog knows: protection, hidden bases).  With or without,
 * a catalog that shows a running backup is not pulled away from it. */
static int
check_old (const char *dir, struct store *store, bool force)
{
  char cat[PATH_MAX];
  CLEANUP_FREE char *uuid = NULL;
  struct catalog_totals t;
  uint64_t cleared;
  struct catalog *c;
  bool intact;

  snprintf (cat, sizeof cat, "%s/catalog.db", dir);
  if (access (cat, F_OK) == -1)
    return 0;
  if ((c = catalog_open (cat)) == NULL)
    return pb_get_errclass () == PB_E_BUSY ? -1 : 0;
  intact = catalog_get_meta (c, "store_uuid", &uuid) == 0 &&
    strcmp (uuid, store_uuid (store)) == 0 && catalog_check (c) == 0;
  if (intact && catalog_clear_stale_leases (c, &cleared) == 0 &&
      catalog_totals (c, &t) == 0 && t.leases > 0) {
    catalog_close (c);
    set_error (PB_E_BUSY, 0, "a backup is running (%" PRIu64 " writer "
               "%s): rebuild the catalog when it is done", t.leases,
               t.leases == 1 ? "lease" : "leases");
    return -1;
  }
  catalog_close (c);
  if (intact && !force) {
    set_error (PB_E_USAGE, 0, "the catalog is intact (its integrity "
               "check passes): use --force to rebuild it anyway");
    return -1;
  }
  return 0;
}

/* ---- the operation ---- */

static int
rebuild_into (struct rebuild *rb, const char *dir, const char *tmp,
              pullback_progress_fn progress, void *opaque)
{
  int r;

  if (remove_db (tmp) == -1 || (rb->nr.cat = catalog_create (tmp)) == NULL)
    return -1;
  r = fill_catalog (rb, progress, opaque);
  catalog_close (rb->nr.cat);     /* checkpoints the WAL into the file */
  rb->nr.cat = NULL;
  if (r == 0)
    r = swap_in (dir, tmp, &rb->res->old_catalog);
  if (r == -1) {
    int e = errno;
    remove_db (tmp);
    errno = e;
  }
  return r;
}

static void
rebuild_free (struct rebuild *rb)
{
  size_t i;

  idset_free (rb->done);
  idset_free (rb->pending);
  for (i = 0; i < rb->nadded; i++)
    free (rb->added_vm[i]);
  free (rb->added_vm);
  free (rb->added);
  free (rb->ids);
  store_close (rb->nr.store);
}

int
pullback_catalog_rebuild (const char *dir, const struct store_key *key,
                          bool force, pullback_progress_fn progress,
                          void *opaque, struct pullback_rebuild_result **result)
{
  struct rebuild rb = { .nr.dir = (char *) dir };
  char sp[PATH_MAX], tmp[PATH_MAX];
  int r = -1;

  *result = NULL;
  if (strlen (dir) > PATH_MAX - 64) {
    set_error (PB_E_USAGE, ENAMETOOLONG, "repository path too long: %s", dir);
    return -1;
  }
  snprintf (sp, sizeof sp, "%s/store", dir);
  snprintf (tmp, sizeof tmp, "%s/catalog.db.rebuild", dir);
  rb.res = calloc (1, sizeof *rb.res);
  rb.done = idset_new ();
  if (rb.res == NULL || rb.done == NULL)
    set_error (PB_E_FAIL, errno, "out of memory");
  else if ((rb.nr.store = store_open (sp, key)) != NULL &&
           check_old (dir, rb.nr.store, force) == 0)
    r = rebuild_into (&rb, dir, tmp, progress, opaque);
  if (r == 0)
    *result = rb.res;
  else {
    pb_prefix_error ("rebuilding the catalog of %s", dir);
    pullback_rebuild_result_free (rb.res);
  }
  rebuild_free (&rb);
  return r;
}

void
pullback_rebuild_result_free (struct pullback_rebuild_result *res)
{
  size_t i;

  if (res == NULL)
    return;
  for (i = 0; i < res->nskipped; i++)
    free (res->skipped[i].why);
  free (res->skipped);
  free (res->old_catalog);
  free (res);
}
