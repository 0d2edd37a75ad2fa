/* pullback - reader/space.c: protect, forget and stats.
 *
 * forget decides with the retention policy (reader/policy.c) which points
 * of each VM to keep, then removes the others in one catalog transaction
 * (synchronous=FULL: a removal the user was told about stays removed).
 * Removing a point costs its disks' root references, not its size
 * (catalog_remove_point); the space comes back with gc.
 *
 * Two kinds of point are never removed:
 *  - protected ones (pullback protect);
 *  - the base of a backup running now, whose tree that backup is reusing:
 *    its writer lease names it (catalog_point_in_use).
 * And one is removed only in name: the newest point of a VM with a
 * checkpoint is what the VM's next incremental (--since that checkpoint)
 * will be based on, so it is hidden -- gone from list, show and restore --
 * but its tree kept until the VM's next point is committed (reader/backup.c
 * drops it then).  Without that, forgetting the newest point would force
 * the next backup to be a full one.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "util.h"

int
pullback_protect (struct pullback_repo *r, int64_t point, bool on)
{
  struct catalog_point *p = pullback_get_point (r, point);

  if (p == NULL)
    return -1;
  catalog_point_free (p);
  if (catalog_begin (r->cat) == -1)
    return -1;
  if (catalog_set_protected (r->cat, point, on) == -1 ||
      catalog_commit (r->cat) == -1) {
    catalog_rollback (r->cat);
    return -1;
  }
  return 0;
}

/* ---- forget ---- */

struct forget {
  struct pullback_repo *r;
  const struct pullback_forget_opts *o;
  struct pullback_forget_result *res;
};

void
pullback_forget_result_free (struct pullback_forget_result *res)
{
  size_t i;

  if (res == NULL)
    return;
  for (i = 0; i < res->n; i++)
    free (res->items[i].vm);
  free (res->items);
  free (res);
}

static int
check_forget_opts (const struct pullback_forget_opts *o)
{
  bool rules = pullback_keep_rules_any (&o->rules);
  const int64_t *v = &o->rules.last;
  size_t i;

  for (i = 0; i < 6; i++)
    if (v[i] < 0 && v[i] != PULLBACK_KEEP_UNSET) {
      set_error (PB_E_USAGE, 0, "a --keep-* rule must be 0 or more");
      return -1;
    }
  if (o->point > 0 && rules) {
    set_error (PB_E_USAGE, 0, "--point removes one point: it cannot be "
               "combined with --keep-* rules");
    return -1;
  }
  if (o->point <= 0 && !rules) {
    set_error (PB_E_USAGE, 0, "no --keep-* rule given: refusing to remove "
               "every point (say --keep-last 0 if that is what you want)");
    return -1;
  }
  return 0;
}

/* The points forget looks at: one, or every visible point (of o->vm). */
static int
load_points (struct forget *f, struct catalog_point ***pts, size_t *n)
{
  struct catalog_point *p;

  if (f->o->point <= 0) {
    if (catalog_list_points (f->r->cat, f->o->vm, pts, n) == -1)
      return -1;
    if (f->o->vm && *n == 0) {
      set_error (PB_E_NOTFOUND, 0, "VM '%s' has no points", f->o->vm);
      return -1;
    }
    return 0;
  }
  if ((p = pullback_get_point (f->r, f->o->point)) == NULL)
    return -1;
  if (f->o->vm && strcmp (p->vm, f->o->vm) != 0) {
    set_error (PB_E_NOTFOUND, 0, "point %" PRId64 " belongs to VM '%s', "
               "not '%s'", p->id, p->vm, f->o->vm);
    catalog_point_free (p);
    return -1;
  }
  if ((*pts = malloc (sizeof **pts)) == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    catalog_point_free (p);
    return -1;
  }
  (*pts)[0] = p;
  *n = 1;
  return 0;
}

static int
fill_items (struct forget *f, struct catalog_point **pts, size_t n)
{
  size_t i;

  f->res->items = calloc (n ? n : 1, sizeof *f->res->items);
  if (f->res->items == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  for (i = 0; i < n; i++) {
    struct pullback_forget_item *it = &f->res->items[i];
    it->point = pts[i]->id;
    it->finished = pts[i]->finished;
    if ((it->vm = strdup (pts[i]->vm)) == NULL) {
      set_error (PB_E_FAIL, errno, "strdup");
      return -1;
    }
    f->res->n++;
  }
  return 0;
}

/* Apply the rules to the points of VM (items FIRST..FIRST+N-1 of one VM). */
static int
apply_rules (struct forget *f, struct catalog_point **pts, size_t first,
             size_t n)
{
  CLEANUP_FREE struct pullback_policy_item *pi = calloc (n ? n : 1, sizeof *pi);
  size_t i;

  if (pi == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  for (i = 0; i < n; i++) {
    pi[i].id = pts[first + i]->id;
    pi[i].time = pts[first + i]->finished;
    pi[i].is_protected = pts[first + i]->is_protected;
  }
  if (pullback_policy_apply (&f->o->rules, pi, n) == -1)
    return -1;
  for (i = 0; i < n; i++) {
    f->res->items[first + i].reasons = pi[i].reasons;
    f->res->items[first + i].keep = pi[i].reasons != 0;
  }
  return 0;
}

/* The rules, each VM on its own: items are in id order, so a VM's points
 * are not contiguous; group them by sorting a copy by (vm, id). */
static int
cmp_vm (const void *a, const void *b)
{
  const struct catalog_point *p = *(struct catalog_point *const *) a;
  const struct catalog_point *q = *(struct catalog_point *const *) b;
  int c = strcmp (p->vm, q->vm);

  return c ? c : (p->id > q->id) - (p->id < q->id);
}

static int
decide (struct forget *f, struct catalog_point **pts, size_t n)
{
  size_t i, j;

  if (f->o->point > 0)
    return 0;                   /* the one point: removed unless refused */
  if (n > 1)                    /* qsort (NULL, 0, ...) is undefined */
    qsort (pts, n, sizeof *pts, cmp_vm);
  if (fill_items (f, pts, n) == -1)
    return -1;
  for (i = 0; i < n; i = j) {
    for (j = i; j < n && strcmp (pts[j]->vm, pts[i]->vm) == 0; j++)
      ;
    if (apply_rules (f, pts, i, j - i) == -1)
      return -1;
  }
  return 0;
}

/* Refusals for an explicit --point; in a policy run the same conditions
 * keep the point (protected is the policy's own reason already). */
static int
check_removable (struct forget *f, struct pullback_forget_item *it,
                 const struct catalog_point *p)
{
  char who[512];
  int r;

  if (p->is_protected) {
    set_error (PB_E_PROTECTED, 0, "point %" PRId64 " is protected "
               "(pullback unprotect --point %" PRId64 " first)", p->id, p->id);
    return -1;
  }
  r = catalog_point_in_use (f->r->cat, p->id, who, sizeof who);
  if (r == 1 && f->o->point > 0) {
    set_error (PB_E_BUSY, 0, "point %" PRId64 " is the base of a backup "
               "running now (%s): try again when it has finished", p->id, who);
    return -1;
  }
  if (r == 1) {
    it->keep = true;
    it->reasons |= PULLBACK_KEEP_IN_USE;
  }
  return r == -1 ? -1 : 0;
}

static int
remove_item (struct forget *f, struct pullback_forget_item *it,
             const struct catalog_point *p)
{
  int64_t latest;

  if (check_removable (f, it, p) == -1)
    return -1;
  if (it->keep)
    return 0;
  if (catalog_latest_point (f->r->cat, p->vm, &latest) == -1)
    return -1;
  it->retained_as_base = latest == p->id && p->checkpoint != NULL;
  if (f->o->dry_run)
    return 0;
  return it->retained_as_base ? catalog_hide_point (f->r->cat, p->id)
    : catalog_remove_point (f->r->cat, p->id);
}

/* Remove in ascending id order: the newest point of a VM comes last, when
 * it is still the newest visible one.  PTS and the items are both in id
 * order (run_forget), so item I is point PTS[I]. */
static int
remove_all (struct forget *f, struct catalog_point **pts)
{
  size_t i;

  for (i = 0; i < f->res->n; i++) {
    struct pullback_forget_item *it = &f->res->items[i];
    if (it->keep && f->o->point <= 0)
      continue;
    if (remove_item (f, it, pts[i]) == -1)
      return -1;
  }
  return 0;
}

static int
cmp_id (const void *a, const void *b)
{
  const struct catalog_point *p = *(struct catalog_point *const *) a;
  const struct catalog_point *q = *(struct catalog_point *const *) b;

  return (p->id > q->id) - (p->id < q->id);
}

static int
sort_items (const void *a, const void *b)
{
  const struct pullback_forget_item *x = a, *y = b;

  return (x->point > y->point) - (x->point < y->point);
}

/* After the commit: the store no longer describes removed points. */
static void
delete_records (struct forget *f)
{
  size_t i;

  for (i = 0; i < f->res->n; i++) {
    struct pullback_forget_item *it = &f->res->items[i];
    if (!it->keep && !it->retained_as_base &&
        repo_delete_point_record (f->r, it->point) == -1)
      pb_clear_error ();        /* an orphan record; the point is gone */
  }
}

static int
run_forget (struct forget *f)
{
  struct catalog_point **pts = NULL;
  size_t n = 0;
  int r = -1;

  if (catalog_begin (f->r->cat) == -1)
    return -1;
  if (load_points (f, &pts, &n) == 0 && decide (f, pts, n) == 0 &&
      (f->o->point <= 0 || fill_items (f, pts, n) == 0)) {
    if (f->res->n > 1)
      qsort (f->res->items, f->res->n, sizeof *f->res->items, sort_items);
    if (n > 1)
      qsort (pts, n, sizeof *pts, cmp_id);
    r = remove_all (f, pts);
  }
  if (r == 0 && !f->o->dry_run)
    r = catalog_commit (f->r->cat);
  if (r == -1 || f->o->dry_run)
    catalog_rollback (f->r->cat);
  catalog_points_free (pts, n);
  if (r == 0 && !f->o->dry_run)
    delete_records (f);
  return r;
}

int
pullback_forget (struct pullback_repo *r,
                 const struct pullback_forget_opts *opts,
                 struct pullback_forget_result **result)
{
  struct forget f = { .r = r, .o = opts };

  *result = NULL;
  if (check_forget_opts (opts) == -1)
    return -1;
  if ((f.res = calloc (1, sizeof *f.res)) == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  if (run_forget (&f) == -1) {
    pullback_forget_result_free (f.res);
    return -1;
  }
  *result = f.res;
  return 0;
}

/* ---- stats ---- */

int
pullback_stats (struct pullback_repo *r, struct pullback_stats *st)
{
  struct pullback_gc_result g = { .dry_run = true };
  struct catalog_totals t;

  memset (st, 0, sizeof *st);
  if (catalog_totals (r->cat, &t) == -1 || repo_reclaimable (r, &g) == -1)
    return -1;
  st->vms = t.vms;
  st->points = t.points;
  st->logical_bytes = t.logical_bytes;
  st->chunks = t.chunks;
  st->unique_bytes = t.chunks * (uint64_t) pullback_repo_chunk_size (r);
  st->stored_bytes = t.all_bytes;
  st->reclaimable_chunks = g.chunks_deleted + g.nodes_deleted;
  st->reclaimable_bytes = g.bytes_freed;
  st->running_backups = t.leases;
  st->dedup_ratio = st->unique_bytes ? (double) st->logical_bytes
    / st->unique_bytes : 0;
  st->compression_ratio = t.chunk_bytes ? (double) st->unique_bytes
    / t.chunk_bytes : 0;
  return 0;
}
