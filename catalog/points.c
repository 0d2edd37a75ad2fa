/* pullback - catalog/points.c: points (one backup of a whole VM) and their
 * disks: add, get, list, find by checkpoint, latest, next id.
 *
 * A point row says which VM, which parent (the point an incremental was
 * based on) and which checkpoints; each point_disk row names the root of
 * that disk's chunk-map tree.  The tree nodes are content-addressed and
 * shared between points (catalog.c stores them), so adding a point only
 * refers to nodes already put: catalog_add_point checks they are there.
 *
 * catalog_add_point is atomic on its own: outside a transaction it opens
 * one, inside the caller's it uses a savepoint, so a refused point never
 * leaves a VM row or some of its disks behind, and the caller's earlier
 * work in the transaction (the nodes) is kept for it to commit or roll
 * back.  Everything read back is validated (cat_col_*): a damaged row is
 * PB_E_CORRUPT, never a point with a garbage id in it.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "errors.h"
#include "util.h"

#include "catalog.h"
#include "schema.h"

#define SELECT_POINT                                                    \
  "SELECT p.id, v.name, p.parent_id, p.mode, p.checkpoint, p.since, "   \
  "p.started, p.finished, p.protected, p.hidden "                       \
  "FROM point p JOIN vm v ON v.id = p.vm_id "

/* How many checkpoint names an error message lists at most. */
#define KNOWN_MAX 20

/* ---- Freeing ---- */

void
catalog_point_free (struct catalog_point *p)
{
  size_t i;

  if (p == NULL)
    return;
  for (i = 0; p->disks && i < p->ndisks; i++)
    free (p->disks[i].name);
  free (p->disks);
  free (p->vm);
  free (p->mode);
  free (p->checkpoint);
  free (p->since);
  free (p);
}

void
catalog_points_free (struct catalog_point **points, size_t n)
{
  size_t i;

  for (i = 0; points && i < n; i++)
    catalog_point_free (points[i]);
  free (points);
}

/* ---- Validation before writing ---- */

static int
invalid (const struct catalog_point *p, const char *why)
{
  set_error (PB_E_FAIL, 0, "catalog: add point %" PRId64 ": %s", p->id, why);
  return -1;
}

static int
validate_disk (const struct catalog_point *p, const struct catalog_disk *d)
{
  if (d->name == NULL || d->name[0] == '\0')
    return invalid (p, "a disk has no name");
  if (d->chunk_size == 0 || d->map_levels == 0)
    return invalid (p, "a disk has a zero chunk size or map height");
  /* SQLite integers are signed: the top half of uint64_t cannot be kept. */
  if (d->size > INT64_MAX || d->bytes_read > INT64_MAX ||
      d->bytes_new > INT64_MAX || d->chunks_changed > INT64_MAX)
    return invalid (p, "a disk's size or counters are out of range");
  return 0;
}

static int
validate_point (const struct catalog_point *p)
{
  bool full = p->mode && strcmp (p->mode, "full") == 0;
  size_t i;

  if (p->id <= 0)
    return invalid (p, "point ids must be positive");
  if (p->vm == NULL || p->vm[0] == '\0')
    return invalid (p, "no VM name");
  if (!full && (p->mode == NULL || strcmp (p->mode, "incremental") != 0))
    return invalid (p, "mode must be 'full' or 'incremental'");
  /* An incremental may have no parent: its chain was removed, or a
   * catalog rebuild could not bring the parent back.  Its map is whole. */
  if (full && p->parent != 0)
    return invalid (p, "a full point has no parent");
  if (p->parent < 0 || p->parent >= p->id)
    return invalid (p, "the parent must be an older point");
  if ((p->checkpoint && !*p->checkpoint) || (p->since && !*p->since))
    return invalid (p, "empty checkpoint name");
  if (p->ndisks == 0 || p->disks == NULL)
    return invalid (p, "a point needs at least one disk");
  for (i = 0; i < p->ndisks; i++)
    if (validate_disk (p, &p->disks[i]) == -1)
      return -1;
  return 0;
}

/* ---- Adding ---- */

/* Make add_point atomic (see the top of the file).  *OWN: we opened a
 * transaction rather than a savepoint. */
static int
scope_begin (struct catalog *c, bool *own)
{
  *own = !cat_in_transaction (c);
  return cat_exec (c, *own ? "BEGIN IMMEDIATE" : "SAVEPOINT add_point",
                   "add point");
}

static int
scope_end (struct catalog *c, bool own, int r)
{
  if (r == 0)
    r = cat_exec (c, own ? "COMMIT" : "RELEASE add_point", "add point");
  if (r == -1)    /* keeps the first error: this is only tidying up */
    sqlite3_exec (c->db, own ? "ROLLBACK"
                  : "ROLLBACK TO add_point; RELEASE add_point",
                  NULL, NULL, NULL);
  return r;
}

/* 1 and *ID if VM is known, 0 if not, -1 on error. */
static int
find_vm (struct catalog *c, const char *vm, int64_t *id)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int r;

  if (cat_prepare (c, "SELECT id FROM vm WHERE name = ?1", &s, "find VM") == -1)
    return -1;
  if (sqlite3_bind_text (s, 1, vm, -1, SQLITE_STATIC) != SQLITE_OK)
    return cat_error (c, sqlite3_extended_errcode (c->db), "find VM");
  r = cat_step (c, s, "find VM");
  if (r == 1 && cat_col_int (s, 0, INT64_MIN, INT64_MAX, id, "vm") == -1)
    return -1;
  return r;
}

static int
ensure_vm (struct catalog *c, const char *vm, int64_t *id)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;

  if (cat_prepare (c, "INSERT INTO vm (name) VALUES (?1) "
                   "ON CONFLICT (name) DO NOTHING", &s, "add VM") == -1)
    return -1;
  if (sqlite3_bind_text (s, 1, vm, -1, SQLITE_STATIC) != SQLITE_OK)
    return cat_error (c, sqlite3_extended_errcode (c->db), "add VM");
  if (cat_step_done (c, s, "add VM") == -1)
    return -1;
  return find_vm (c, vm, id) == 1 ? 0 : -1;
}

static int
check_parent (struct catalog *c, const struct catalog_point *p, int64_t vm_id)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int r;

  if (p->parent == 0)
    return 0;
  if (cat_prepare (c, "SELECT vm_id FROM point WHERE id = ?1", &s,
                   "add point") == -1)
    return -1;
  sqlite3_bind_int64 (s, 1, p->parent);
  r = cat_step (c, s, "add point");
  if (r == 0)
    return invalid (p, "its parent point is not in the catalog");
  if (r == 1 && sqlite3_column_int64 (s, 0) != vm_id)
    return invalid (p, "its parent point belongs to another VM");
  return r == 1 ? 0 : -1;
}

static int
insert_point (struct catalog *c, const struct catalog_point *p, int64_t vm_id)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  char what[64];

  snprintf (what, sizeof what, "insert point %" PRId64, p->id);
  if (cat_prepare (c, "INSERT INTO point (id, vm_id, parent_id, mode, "
                   "checkpoint, since, started, finished) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &s, what) == -1)
    return -1;
  /* A NULL text pointer binds SQL NULL, as a 0 parent must. */
  if (sqlite3_bind_int64 (s, 1, p->id) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 2, vm_id) != SQLITE_OK ||
      (p->parent ? sqlite3_bind_int64 (s, 3, p->parent)
       : sqlite3_bind_null (s, 3)) != SQLITE_OK ||
      sqlite3_bind_text (s, 4, p->mode, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text (s, 5, p->checkpoint, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_text (s, 6, p->since, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 7, p->started) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 8, p->finished) != SQLITE_OK)
    return cat_error (c, sqlite3_extended_errcode (c->db), "%s", what);
  return cat_step_done (c, s, what);
}

/* The FOREIGN KEY would refuse a missing root too, but only with "FOREIGN
 * KEY constraint failed"; this names the disk and the node. */
static int
check_root (struct catalog *c, const struct catalog_point *p,
            const struct catalog_disk *d)
{
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, CAT_NODE_EXISTS, "SELECT 1 FROM map_node WHERE id = ?1");
  char hex[2 * CATALOG_ID_LEN + 1];
  int r;

  if (s == NULL)
    return -1;
  sqlite3_bind_blob (s, 1, d->map_root, CATALOG_ID_LEN, SQLITE_STATIC);
  r = cat_step (c, s, "add point");
  if (r != 0)
    return r == 1 ? 0 : -1;
  hex_encode (d->map_root, CATALOG_ID_LEN, hex);
  set_error (PB_E_FAIL, 0, "catalog: add point %" PRId64 ": disk %s: map "
             "root %s is not a node in the catalog", p->id, d->name, hex);
  return -1;
}

/* A point's disk is one more reference to its root node. */
static int
ref_root (struct catalog *c, const uint8_t root[CATALOG_ID_LEN],
          const char *what)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;

  if (cat_prepare (c, "UPDATE map_node SET refs = refs + 1 WHERE id = ?1",
                   &s, what) == -1)
    return -1;
  sqlite3_bind_blob (s, 1, root, CATALOG_ID_LEN, SQLITE_STATIC);
  return cat_step_done (c, s, what);
}

static int
insert_disk (struct catalog *c, const struct catalog_point *p,
             const struct catalog_disk *d)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  char what[128];

  snprintf (what, sizeof what, "insert point %" PRId64 " disk %s",
            p->id, d->name);
  if (check_root (c, p, d) == -1 ||
      cat_prepare (c, "INSERT INTO point_disk (point_id, name, size, "
                   "chunk_size, map_levels, map_root, digest, bytes_read, "
                   "bytes_new, chunks_changed) VALUES "
                   "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                   &s, what) == -1)
    return -1;
  if (sqlite3_bind_int64 (s, 1, p->id) != SQLITE_OK ||
      sqlite3_bind_text (s, 2, d->name, -1, SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 3, (int64_t) d->size) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 4, d->chunk_size) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 5, d->map_levels) != SQLITE_OK ||
      sqlite3_bind_blob (s, 6, d->map_root, CATALOG_ID_LEN,
                         SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_blob (s, 7, d->digest, CATALOG_ID_LEN,
                         SQLITE_STATIC) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 8, (int64_t) d->bytes_read) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 9, (int64_t) d->bytes_new) != SQLITE_OK ||
      sqlite3_bind_int64 (s, 10, (int64_t) d->chunks_changed) != SQLITE_OK)
    return cat_error (c, sqlite3_extended_errcode (c->db), "%s", what);
  if (cat_step_done (c, s, what) == -1)
    return -1;
  return ref_root (c, d->map_root, what);
}

static int
add_point_rows (struct catalog *c, const struct catalog_point *p)
{
  int64_t vm_id;
  size_t i;

  if (ensure_vm (c, p->vm, &vm_id) == -1 ||
      check_parent (c, p, vm_id) == -1 ||
      insert_point (c, p, vm_id) == -1)
    return -1;
  for (i = 0; i < p->ndisks; i++)
    if (insert_disk (c, p, &p->disks[i]) == -1)
      return -1;
  return 0;
}

int
catalog_add_point (struct catalog *c, const struct catalog_point *p)
{
  bool own;

  if (validate_point (p) == -1 || scope_begin (c, &own) == -1)
    return -1;
  return scope_end (c, own, add_point_rows (c, p));
}

int
catalog_next_point_id (struct catalog *c, int64_t *id)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int64_t max = 0;

  /* Removed points leave their highest id in meta removed_max_id: ids are
   * never reused, so a vendor's record of "point 7" never names another
   * backup. */
  if (cat_prepare (c, "SELECT max ((SELECT coalesce (max (id), 0) FROM point), "
                   "(SELECT coalesce (max (CAST (value AS INTEGER)), 0) FROM meta "
                   "WHERE key = 'removed_max_id'))", &s, "next point id") == -1 ||
      cat_step (c, s, "next point id") == -1)
    return -1;
  if (sqlite3_column_type (s, 0) != SQLITE_NULL &&
      cat_col_int (s, 0, 0, INT64_MAX - 1, &max, "next point id") == -1)
    return -1;
  *id = max + 1;
  return 0;
}

/* ---- Reading ---- */

static int
read_disk (sqlite3_stmt *s, struct catalog_disk *d, const char *what)
{
  int64_t v[6];

  if (cat_col_text (s, 0, false, &d->name, what) == -1 ||
      cat_col_int (s, 1, 0, INT64_MAX, &v[0], what) == -1 ||
      cat_col_int (s, 2, 1, UINT32_MAX, &v[1], what) == -1 ||
      cat_col_int (s, 3, 1, UINT32_MAX, &v[2], what) == -1 ||
      cat_col_id (s, 4, d->map_root, what) == -1 ||
      cat_col_id (s, 5, d->digest, what) == -1 ||
      cat_col_int (s, 6, 0, INT64_MAX, &v[3], what) == -1 ||
      cat_col_int (s, 7, 0, INT64_MAX, &v[4], what) == -1 ||
      cat_col_int (s, 8, 0, INT64_MAX, &v[5], what) == -1)
    return -1;
  d->size = v[0];
  d->chunk_size = v[1];
  d->map_levels = v[2];
  d->bytes_read = v[3];
  d->bytes_new = v[4];
  d->chunks_changed = v[5];
  return 0;
}

/* Append a zeroed disk to P (points have a handful of disks). */
static struct catalog_disk *
new_disk (struct catalog_point *p)
{
  struct catalog_disk *d;

  d = realloc (p->disks, (p->ndisks + 1) * sizeof *d);
  if (d == NULL) {
    set_error (PB_E_FAIL, errno, "realloc");
    return NULL;
  }
  p->disks = d;
  memset (&d[p->ndisks], 0, sizeof *d);
  return &d[p->ndisks++];
}

static int
load_disks (struct catalog *c, struct catalog_point *p, const char *what)
{
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, CAT_POINT_DISKS, "SELECT name, size, chunk_size, "
                "map_levels, map_root, digest, bytes_read, bytes_new, "
                "chunks_changed FROM point_disk WHERE point_id = ?1 "
                "ORDER BY name");
  struct catalog_disk *d;
  int r;

  if (s == NULL)
    return -1;
  sqlite3_bind_int64 (s, 1, p->id);
  while ((r = cat_step (c, s, what)) == 1)
    if ((d = new_disk (p)) == NULL || read_disk (s, d, what) == -1)
      return -1;
  if (r == 0 && p->ndisks == 0) {
    set_error (PB_E_CORRUPT, 0, "catalog: %s has no disks", what);
    return -1;
  }
  return r;
}

static int
read_point (sqlite3_stmt *s, struct catalog_point *p, const char *what)
{
  if (cat_col_int (s, 0, 1, INT64_MAX, &p->id, what) == -1 ||
      cat_col_text (s, 1, false, &p->vm, what) == -1 ||
      cat_col_text (s, 3, false, &p->mode, what) == -1 ||
      cat_col_text (s, 4, true, &p->checkpoint, what) == -1 ||
      cat_col_text (s, 5, true, &p->since, what) == -1 ||
      cat_col_int (s, 6, INT64_MIN, INT64_MAX, &p->started, what) == -1 ||
      cat_col_int (s, 7, INT64_MIN, INT64_MAX, &p->finished, what) == -1)
    return -1;
  p->is_protected = sqlite3_column_int (s, 8) != 0;
  p->hidden = sqlite3_column_int (s, 9) != 0;
  p->parent = 0;
  if (sqlite3_column_type (s, 2) != SQLITE_NULL &&
      cat_col_int (s, 2, 1, p->id - 1, &p->parent, what) == -1)
    return -1;
  if (strcmp (p->mode, "full") != 0 && strcmp (p->mode, "incremental") != 0) {
    set_error (PB_E_CORRUPT, 0, "catalog: %s: bad mode '%s'", what, p->mode);
    return -1;
  }
  return 0;
}

/* The point at the current row of S (a SELECT_POINT query), with disks. */
static struct catalog_point *
point_from_row (struct catalog *c, sqlite3_stmt *s)
{
  struct catalog_point *p = calloc (1, sizeof *p);
  char what[64];

  if (p == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  snprintf (what, sizeof what, "point %lld",
            (long long) sqlite3_column_int64 (s, 0));
  if (read_point (s, p, what) == -1 || load_disks (c, p, what) == -1) {
    catalog_point_free (p);
    return NULL;
  }
  return p;
}

struct catalog_point *
catalog_get_point (struct catalog *c, int64_t id)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int r;

  if (cat_prepare (c, SELECT_POINT "WHERE p.id = ?1", &s, "get point") == -1)
    return NULL;
  sqlite3_bind_int64 (s, 1, id);
  r = cat_step (c, s, "get point");
  if (r == 0)
    set_error (PB_E_NOTFOUND, 0, "no point %" PRId64, id);
  return r == 1 ? point_from_row (c, s) : NULL;
}

struct point_list {
  struct catalog_point **v;
  size_t n, cap;
};

static int
list_append (struct point_list *l, struct catalog_point *p)
{
  struct catalog_point **v;

  if (p == NULL)
    return -1;
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    v = realloc (l->v, l->cap * sizeof *v);
    if (v == NULL) {
      set_error (PB_E_FAIL, errno, "realloc");
      catalog_point_free (p);
      return -1;
    }
    l->v = v;
  }
  l->v[l->n++] = p;
  return 0;
}

int
catalog_list_points (struct catalog *c, const char *vm,
                     struct catalog_point ***points, size_t *n)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  struct point_list l = { NULL, 0, 0 };
  int r;

  *points = NULL;
  *n = 0;
  if (cat_prepare (c, vm ? SELECT_POINT "WHERE v.name = ?1 AND p.hidden = 0 "
                   "ORDER BY p.id"
                   : SELECT_POINT "WHERE p.hidden = 0 ORDER BY p.id", &s,
                   "list points") == -1)
    return -1;
  if (vm)
    sqlite3_bind_text (s, 1, vm, -1, SQLITE_STATIC);
  while ((r = cat_step (c, s, "list points")) == 1)
    if (list_append (&l, point_from_row (c, s)) == -1)
      break;
  if (r != 0) {
    catalog_points_free (l.v, l.n);
    return -1;
  }
  *points = l.v;
  *n = l.n;
  return 0;
}

/* ---- Finding ---- */

/* One integer-or-NULL result of SQL with text parameters A and B (B may
 * be unused).  1 and *OUT if non-NULL, 0 if NULL or no row, -1 error. */
static int
query_id (struct catalog *c, const char *sql, const char *a, const char *b,
          int64_t *out, const char *what)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int r;

  if (cat_prepare (c, sql, &s, what) == -1)
    return -1;
  if (a)
    sqlite3_bind_text (s, 1, a, -1, SQLITE_STATIC);
  if (b)
    sqlite3_bind_text (s, 2, b, -1, SQLITE_STATIC);
  r = cat_step (c, s, what);
  if (r != 1 || sqlite3_column_type (s, 0) == SQLITE_NULL)
    return r == 1 ? 0 : r;
  return cat_col_int (s, 0, 1, INT64_MAX, out, what) == -1 ? -1 : 1;
}

/* "known: a, b" (oldest first; the newest KNOWN_MAX if there are more)
 * into BUF, or "" if VM_ID has no checkpoints. */
static int
known_checkpoints (struct catalog *c, int64_t vm_id, char *buf, size_t size)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  size_t len;
  int r;

  if (cat_prepare (c, "SELECT checkpoint, count (*) OVER () FROM "
                   "(SELECT checkpoint, max (id) AS last FROM point "
                   "WHERE vm_id = ?1 AND checkpoint IS NOT NULL "
                   "GROUP BY checkpoint) ORDER BY last",
                   &s, "list checkpoints") == -1)
    return -1;
  sqlite3_bind_int64 (s, 1, vm_id);
  buf[0] = '\0';
  for (int i = 0; (r = cat_step (c, s, "list checkpoints")) == 1; i++) {
    int64_t skip = sqlite3_column_int64 (s, 1) - KNOWN_MAX;
    if (i < skip)
      continue;
    len = strlen (buf);
    snprintf (buf + len, size - len, "%s%s",
              len ? ", " : skip > 0 ? "known: ..., " : "known: ",
              (const char *) sqlite3_column_text (s, 0));
  }
  return r;
}

static int
no_checkpoint (struct catalog *c, const char *vm, const char *checkpoint)
{
  char known[512];
  int64_t vm_id;
  int r = find_vm (c, vm, &vm_id);

  if (r == -1 || (r == 1 && known_checkpoints (c, vm_id, known,
                                                sizeof known) == -1))
    return -1;
  if (r == 0)
    snprintf (known, sizeof known, "VM '%s' has no points", vm);
  else if (known[0] == '\0')
    snprintf (known, sizeof known, "VM '%s' has no checkpoints", vm);
  set_error (PB_E_CHECKPOINT, 0, "VM '%s' has no point with checkpoint "
             "'%s' (%s)", vm, checkpoint, known);
  return -1;
}

int
catalog_find_checkpoint (struct catalog *c, const char *vm,
                         const char *checkpoint, int64_t *id)
{
  int r;

  if (vm == NULL || checkpoint == NULL) {
    set_error (PB_E_FAIL, 0, "catalog: find checkpoint: no VM or name");
    return -1;
  }
  /* Index point_vm_checkpoint: one seek, rows already in id order. */
  r = query_id (c, "SELECT id FROM point WHERE vm_id = "
                "(SELECT id FROM vm WHERE name = ?1) "
                "AND checkpoint = ?2 ORDER BY id DESC LIMIT 1",
                vm, checkpoint, id, "find checkpoint");
  if (r == 0)
    return no_checkpoint (c, vm, checkpoint);
  return r == 1 ? 0 : -1;
}

/* VM NULL: the newest point of all VMs (pullback_resolve_point needs it). */
int
catalog_latest_point (struct catalog *c, const char *vm, int64_t *id)
{
  /* Single-table max() over index point_vm: one seek, no scan. */
  int r = query_id (c, vm ? "SELECT max (id) FROM point WHERE vm_id = "
                    "(SELECT id FROM vm WHERE name = ?1) AND hidden = 0"
                    : "SELECT max (id) FROM point WHERE hidden = 0",
                    vm, NULL, id, "latest point");

  if (r == 0) {
    if (vm)
      set_error (PB_E_NOTFOUND, 0, "VM '%s' has no points", vm);
    else
      set_error (PB_E_NOTFOUND, 0, "the catalog has no points");
  }
  return r == 1 ? 0 : -1;
}
