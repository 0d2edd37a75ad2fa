/* pullback - catalog/space.c: reference counts, point removal, writer
 * leases and pins, garbage queries and totals (the space-management half
 * of catalog.h).
 *
 * Why reference counts on the content-addressed DAG rather than a mark
 * phase: removing a point must cost what that point changed, not the disk
 * size.  A node's refs counts the entries pointing at it from node rows
 * (and roots of points); counting every row, live or garbage, makes each
 * count a pure function of the rows present, so every change to it happens
 * in the same transaction as the row change that causes it and a crash
 * can never leave a count wrong.  Garbage collection deletes a garbage node
 * and lowers its children in one transaction, so garbage drains level by
 * level from the roots of removed points down to their chunks.
 *
 * Leases and pins close the race with running backups: a backup pins every
 * object it writes or finds already stored before relying on it, and its
 * lease names the base point whose tree it reuses, which may therefore not
 * be removed while it runs.  See docs/DESIGN.md ("Space").
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "errors.h"
#include "proc.h"
#include "util.h"

#include "catalog.h"
#include "schema.h"

/* ---- Small helpers ---- */

/* Run SQL with one integer parameter (and an optional second). */
static int
exec_int (struct catalog *c, const char *sql, int64_t a, int64_t b,
          const char *what)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;

  if (cat_prepare (c, sql, &s, what) == -1)
    return -1;
  sqlite3_bind_int64 (s, 1, a);
  if (sqlite3_bind_parameter_count (s) >= 2)
    sqlite3_bind_int64 (s, 2, b);
  return cat_step_done (c, s, what);
}

/* One integer result of SQL with an integer parameter (0 if no row). */
static int
query_int (struct catalog *c, const char *sql, int64_t a, int64_t *out,
           const char *what)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int r;

  *out = 0;
  if (cat_prepare (c, sql, &s, what) == -1)
    return -1;
  if (sqlite3_bind_parameter_count (s) >= 1)
    sqlite3_bind_int64 (s, 1, a);
  r = cat_step (c, s, what);
  if (r == 1)
    *out = sqlite3_column_int64 (s, 0);
  return r;
}

static int
point_exists (struct catalog *c, int64_t id)
{
  int64_t n;

  if (query_int (c, "SELECT count (*) FROM point WHERE id = ?1", id, &n,
                 "find point") == -1)
    return -1;
  if (n == 0) {
    set_error (PB_E_NOTFOUND, 0, "no point %" PRId64, id);
    return -1;
  }
  return 0;
}

bool
catalog_refs_valid (struct catalog *c)
{
  CLEANUP_FREE char *v = NULL;

  if (catalog_get_meta (c, "refs_valid", &v) == -1) {
    pb_clear_error ();
    return true;                /* created as version 2: always valid */
  }
  return strcmp (v, "1") == 0;
}

int
catalog_set_durable (struct catalog *c, bool full)
{
  return cat_exec (c, full ? "PRAGMA synchronous = FULL"
                   : "PRAGMA synchronous = NORMAL", "set synchronous");
}

/* ---- Points ---- */

int
catalog_set_protected (struct catalog *c, int64_t id, bool on)
{
  if (point_exists (c, id) == -1)
    return -1;
  return exec_int (c, "UPDATE point SET protected = ?2 WHERE id = ?1",
                   id, on, "protect point");
}

int
catalog_hide_point (struct catalog *c, int64_t id)
{
  return exec_int (c, "UPDATE point SET hidden = 1 WHERE id = ?1", id, 0,
                   "hide point");
}

int
catalog_remove_point (struct catalog *c, int64_t id)
{
  if (point_exists (c, id) == -1 ||
      /* Children keep a parent older than themselves: CHECK holds. */
      exec_int (c, "UPDATE point SET parent_id = "
                "(SELECT parent_id FROM point WHERE id = ?1) "
                "WHERE parent_id = ?1", id, 0, "re-parent children") == -1 ||
      exec_int (c, "UPDATE map_node SET refs = refs - (SELECT count (*) "
                "FROM point_disk d WHERE d.point_id = ?1 "
                "AND d.map_root = map_node.id) WHERE id IN "
                "(SELECT map_root FROM point_disk WHERE point_id = ?1)",
                id, 0, "release roots") == -1)
    return -1;
  if (exec_int (c, "INSERT INTO meta (key, value) VALUES "
                "('removed_max_id', ?1) ON CONFLICT (key) DO UPDATE SET value = "
                "max (CAST (value AS INTEGER), CAST (excluded.value AS INTEGER))",
                id, 0, "remember the id") == -1)
    return -1;
  return exec_int (c, "DELETE FROM point WHERE id = ?1", id, 0,
                   "remove point");
}

int
catalog_hidden_points (struct catalog *c, const char *vm, int64_t before,
                       int64_t **ids, size_t *n)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int64_t *v = NULL, *nv;
  size_t len = 0;
  int r;

  *ids = NULL;
  *n = 0;
  if (cat_prepare (c, "SELECT p.id FROM point p JOIN vm ON vm.id = p.vm_id "
                   "WHERE vm.name = ?1 AND p.hidden = 1 AND p.id < ?2 "
                   "ORDER BY p.id", &s, "hidden points") == -1)
    return -1;
  sqlite3_bind_text (s, 1, vm, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (s, 2, before);
  while ((r = cat_step (c, s, "hidden points")) == 1) {
    if ((nv = realloc (v, (len + 1) * sizeof *v)) == NULL) {
      set_error (PB_E_FAIL, errno, "realloc");
      free (v);
      return -1;
    }
    v = nv;
    v[len++] = sqlite3_column_int64 (s, 0);
  }
  if (r == -1) {
    free (v);
    return -1;
  }
  *ids = v;
  *n = len;
  return 0;
}

/* ---- Leases ---- */

struct lease_row {
  int64_t id, base, started;
  struct pb_proc_id owner;
};

#define SELECT_LEASE \
  "SELECT id, base_point, started, host, boot_id, pid, pid_start FROM lease "

static void
read_lease (sqlite3_stmt *s, struct lease_row *l)
{
  const char *host = (const char *) sqlite3_column_text (s, 3);
  const char *boot = (const char *) sqlite3_column_text (s, 4);

  memset (l, 0, sizeof *l);
  l->id = sqlite3_column_int64 (s, 0);
  l->base = sqlite3_column_int64 (s, 1);
  l->started = sqlite3_column_int64 (s, 2);
  snprintf (l->owner.host, sizeof l->owner.host, "%s", host ? host : "");
  snprintf (l->owner.boot_id, sizeof l->owner.boot_id, "%s", boot ? boot : "");
  l->owner.pid = sqlite3_column_int64 (s, 5);
  l->owner.start = sqlite3_column_int64 (s, 6);
}

static void
describe_lease (const struct lease_row *l, char *out, size_t len)
{
  char when[32];

  format_time (l->started, when, sizeof when);
  snprintf (out, len, "pid %" PRId64 " on %s, since %s", l->owner.pid,
            l->owner.host, when);
}

/* 1 and *L if VM has a lease, 0 if not. */
static int
find_lease (struct catalog *c, const char *vm, struct lease_row *l)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int r;

  if (cat_prepare (c, SELECT_LEASE "WHERE vm = ?1", &s, "find lease") == -1)
    return -1;
  sqlite3_bind_text (s, 1, vm, -1, SQLITE_STATIC);
  r = cat_step (c, s, "find lease");
  if (r == 1)
    read_lease (s, l);
  return r;
}

static int
insert_lease (struct catalog *c, const char *vm, int64_t *lease)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  struct pb_proc_id me;

  if (pb_proc_self (&me) == -1 ||
      cat_prepare (c, "INSERT INTO lease (vm, host, boot_id, pid, pid_start, "
                   "started) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &s,
                   "take lease") == -1)
    return -1;
  sqlite3_bind_text (s, 1, vm, -1, SQLITE_STATIC);
  sqlite3_bind_text (s, 2, me.host, -1, SQLITE_STATIC);
  sqlite3_bind_text (s, 3, me.boot_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (s, 4, me.pid);
  sqlite3_bind_int64 (s, 5, me.start);
  sqlite3_bind_int64 (s, 6, now_epoch ());
  if (cat_step_done (c, s, "take lease") == -1)
    return -1;
  *lease = sqlite3_last_insert_rowid (c->db);
  return 0;
}

int
catalog_lease_take (struct catalog *c, const char *vm, int64_t *lease)
{
  struct lease_row l;
  char who[400];
  int r = find_lease (c, vm, &l);

  if (r == -1)
    return -1;
  if (r == 1 && pb_proc_alive (&l.owner)) {
    describe_lease (&l, who, sizeof who);
    set_error (PB_E_BUSY, 0, "another backup of VM '%s' is running (%s)",
               vm, who);
    return -1;
  }
  /* A dead owner's lease goes, and its pins with it (ON DELETE CASCADE):
   * what it wrote is garbage now, for gc to take. */
  if (r == 1 && catalog_lease_drop (c, l.id) == -1)
    return -1;
  return insert_lease (c, vm, lease);
}

int
catalog_lease_set_base (struct catalog *c, int64_t lease, int64_t point)
{
  return exec_int (c, "UPDATE lease SET base_point = ?2 WHERE id = ?1",
                   lease, point, "lease base");
}

/* What a backup pinned but never recorded a row for -- objects it wrote
 * before it failed or was killed -- becomes a garbage chunk row, so that
 * gc finds it (the catalog is gc's only list; it never walks the store).
 * After a commit every pin has its row and this finds nothing. */
int
catalog_lease_drop (struct catalog *c, int64_t lease)
{
  if (exec_int (c, "INSERT INTO chunk (id, stored_size, refs) "
                "SELECT id, 0, 0 FROM pin WHERE lease_id = ?1 "
                "AND NOT EXISTS (SELECT 1 FROM chunk WHERE chunk.id = pin.id) "
                "AND NOT EXISTS (SELECT 1 FROM map_node "
                "WHERE map_node.id = pin.id)", lease, 0,
                "keep what the backup wrote") == -1)
    return -1;
  return exec_int (c, "DELETE FROM lease WHERE id = ?1", lease, 0,
                   "drop lease");
}

/* The ids of leases whose owner is dead (read first, dropped after: the
 * caller deletes them once this statement is finished). */
static int
dead_leases (struct catalog *c, int64_t **ids, size_t *n)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  struct lease_row l;
  int64_t *nv;
  int r;

  *ids = NULL;
  *n = 0;
  if (cat_prepare (c, SELECT_LEASE, &s, "list leases") == -1)
    return -1;
  while ((r = cat_step (c, s, "list leases")) == 1) {
    read_lease (s, &l);
    if (pb_proc_alive (&l.owner))
      continue;
    if ((nv = realloc (*ids, (*n + 1) * sizeof *nv)) == NULL) {
      set_error (PB_E_FAIL, errno, "realloc");
      return -1;
    }
    *ids = nv;
    (*ids)[(*n)++] = l.id;
  }
  return r;
}

int
catalog_clear_stale_leases (struct catalog *c, uint64_t *cleared)
{
  CLEANUP_FREE int64_t *ids = NULL;
  size_t n = 0, i;

  *cleared = 0;
  if (catalog_begin (c) == -1)
    return -1;
  if (dead_leases (c, &ids, &n) == -1)
    goto err;
  for (i = 0; i < n; i++)
    if (catalog_lease_drop (c, ids[i]) == -1)
      goto err;
  if (catalog_commit (c) == -1)
    goto err;
  *cleared = n;
  return 0;
 err:
  catalog_rollback (c);
  return -1;
}

int
catalog_point_in_use (struct catalog *c, int64_t id, char *who, size_t len)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  struct lease_row l;
  char desc[400];
  int r;

  if (cat_prepare (c, SELECT_LEASE "WHERE base_point = ?1", &s,
                   "point in use") == -1)
    return -1;
  sqlite3_bind_int64 (s, 1, id);
  while ((r = cat_step (c, s, "point in use")) == 1) {
    read_lease (s, &l);
    if (!pb_proc_alive (&l.owner))
      continue;                 /* a dead backup does not hold its base */
    describe_lease (&l, desc, sizeof desc);
    snprintf (who, len, "%s", desc);
    return 1;
  }
  return r;
}

int
catalog_pin (struct catalog *c, int64_t lease, const uint8_t id[CATALOG_ID_LEN])
{
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, CAT_PIN, "INSERT INTO pin (id, lease_id) VALUES (?1, ?2) "
                "ON CONFLICT DO NOTHING");

  if (s == NULL)
    return -1;
  sqlite3_bind_blob (s, 1, id, CATALOG_ID_LEN, SQLITE_STATIC);
  sqlite3_bind_int64 (s, 2, lease);
  return cat_step_done (c, s, "pin");
}
