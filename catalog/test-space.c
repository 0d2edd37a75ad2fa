/* pullback - catalog/test-space.c: unit test of reference counts, point
 * removal, writer leases, pins and garbage queries (catalog/space.c,
 * catalog/garbage.c).
 *
 * The catalog does not parse map nodes, so the test makes its own: a node
 * here is any blob, and its "children" are the ids passed beside it.  A
 * dead process for the stale-lease checks is a forked child that has
 * exited and been reaped.
 */
#include <config.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "errors.h"
#include "util.h"

#include "catalog.h"
#include "test.h"

static char dir[256];

static void
make_id (uint8_t id[CATALOG_ID_LEN], unsigned seed)
{
  for (size_t i = 0; i < CATALOG_ID_LEN; i++)
    id[i] = (uint8_t) (i < 4 ? seed >> (8 * i) : i * 3 + 5);
}

static int64_t
refs_of (struct catalog *c, bool node, unsigned seed)
{
  uint8_t id[CATALOG_ID_LEN];
  int64_t refs = -1;
  bool pinned;

  make_id (id, seed);
  if (catalog_object_refs (c, node, id, &refs, &pinned) != 1)
    return -1;
  return refs;
}

static size_t
garbage_count (struct catalog *c, bool nodes)
{
  struct catalog_garbage *g = NULL;
  size_t n = 0;

  if (catalog_garbage (c, nodes, 100, &g, &n) == -1)
    n = (size_t) -1;
  catalog_garbage_free (g, n == (size_t) -1 ? 0 : n);
  return n;
}

/* Node SEED at LEVEL whose entries are the ids of the seeds in KIDS. */
static int
put_node (struct catalog *c, unsigned seed, uint32_t level,
          const unsigned *kids, size_t n)
{
  uint8_t id[CATALOG_ID_LEN], ent[8 * CATALOG_ID_LEN];
  size_t i;

  make_id (id, seed);
  for (i = 0; i < n; i++)
    make_id (ent + i * CATALOG_ID_LEN, kids[i]);
  return catalog_put_node (c, id, level, ent, n * CATALOG_ID_LEN, ent, n);
}

static int
add_point (struct catalog *c, int64_t id, int64_t parent, unsigned root)
{
  struct catalog_disk d = { .name = (char *) "vda", .size = 1 << 20,
                            .chunk_size = 1 << 18, .map_levels = 2 };
  struct catalog_point p = { .id = id, .vm = (char *) "vm1",
                             .parent = parent,
                             .mode = (char *) (parent ? "incremental" : "full"),
                             .started = 1, .finished = 2,
                             .ndisks = 1, .disks = &d };

  make_id (d.map_root, root);
  return catalog_add_point (c, &p);
}

/* Chunks 1, 2, 3; leaf 10 = [1, 2, 1], leaf 11 = [3]; roots 20 = [10],
 * 21 = [10, 11] (point 2 shares leaf 10 with point 1). */
static void
test_counts (struct catalog *c)
{
  uint8_t id[CATALOG_ID_LEN];
  unsigned leaf10[] = { 1, 2, 1 }, leaf11[] = { 3 }, root20[] = { 10 },
    root21[] = { 10, 11 };

  for (unsigned s = 1; s <= 3; s++) {
    make_id (id, s);
    catalog_add_chunk (c, id, 100 * s);
  }
  check (put_node (c, 10, 0, leaf10, 3) == 0 && put_node (c, 11, 0, leaf11, 1) == 0 &&
         put_node (c, 20, 1, root20, 1) == 0 && put_node (c, 21, 1, root21, 2) == 0,
         "put four nodes");
  check (refs_of (c, false, 1) == 2 && refs_of (c, false, 2) == 1 &&
         refs_of (c, false, 3) == 1, "chunk refs count every entry (1: 2, 2: 1, 3: 1)");
  check (put_node (c, 10, 0, leaf10, 3) == 0 && refs_of (c, false, 1) == 2,
         "putting an existing node counts nothing again");
  check (refs_of (c, true, 10) == 2 && refs_of (c, true, 11) == 1 &&
         refs_of (c, true, 20) == 0, "node refs: leaf 10 in two roots");
  check (garbage_count (c, true) == 2, "roots without points are garbage");
  check (add_point (c, 1, 0, 20) == 0 && add_point (c, 2, 1, 21) == 0,
         "add points 1 and 2");
  check (refs_of (c, true, 20) == 1 && refs_of (c, true, 21) == 1 &&
         garbage_count (c, true) == 0 && garbage_count (c, false) == 0,
         "a point's disk is a reference to its root: no garbage");
}

static void
test_remove (struct catalog *c)
{
  struct catalog_point *p;

  check (catalog_begin (c) == 0 && catalog_remove_point (c, 1) == 0 &&
         catalog_commit (c) == 0, "remove point 1 (the full)");
  p = catalog_get_point (c, 2);
  check (p && p->parent == 0 && strcmp (p->mode, "incremental") == 0,
         "its child keeps its mode and has no parent now");
  catalog_point_free (p);
  check (refs_of (c, true, 20) == 0 && garbage_count (c, true) == 1,
         "the removed point's root is garbage, nothing else");
  check (refs_of (c, true, 10) == 2, "the shared leaf is untouched");
  check (catalog_begin (c) == 0 && catalog_remove_point (c, 1) == -1 &&
         pb_get_errclass () == PB_E_NOTFOUND, "removing it again: not found");
  catalog_rollback (c);
}

static void
test_drain (struct catalog *c)
{
  uint8_t kid[CATALOG_ID_LEN];
  struct catalog_garbage *g = NULL;
  size_t n = 0;

  check (catalog_begin (c) == 0 && catalog_garbage (c, true, 10, &g, &n) == 0 &&
         n == 1 && g[0].len == CATALOG_ID_LEN, "garbage node 20 comes with its data");
  if (n == 1) {
    memcpy (kid, g[0].data, CATALOG_ID_LEN);
    check (catalog_unref (c, true, kid, 1) == 0 &&
           catalog_delete_object (c, true, g[0].id) == 0 &&
           catalog_commit (c) == 0, "drop it, lowering its entry");
  }
  catalog_garbage_free (g, n);
  catalog_rollback (c);
  check (refs_of (c, true, 10) == 1 && refs_of (c, true, 20) == -1,
         "leaf 10 has one reference left; node 20 is gone");
  check (catalog_begin (c) == 0 && catalog_unref (c, true, kid, 1) == 0 &&
         catalog_unref (c, true, kid, 1) == -1,
         "a count going below zero is an error, not hidden");
  catalog_rollback (c);
}

static pid_t
dead_pid (void)
{
  pid_t pid = fork ();

  if (pid == 0)
    _exit (0);
  waitpid (pid, NULL, 0);
  return pid;
}

static void
test_leases (struct catalog *c)
{
  uint8_t id[CATALOG_ID_LEN];
  int64_t l1 = 0, l2 = 0;
  uint64_t cleared = 9;
  char who[256], sql[256];
  struct catalog_totals t;

  check (catalog_begin (c) == 0 && catalog_lease_take (c, "vm1", &l1) == 0 &&
         catalog_lease_set_base (c, l1, 2) == 0 && catalog_commit (c) == 0,
         "take vm1's lease with base point 2");
  check (catalog_begin (c) == 0 && catalog_lease_take (c, "vm1", &l2) == -1 &&
         pb_get_errclass () == PB_E_BUSY &&
         strstr (pb_get_error (), "another backup of VM 'vm1'") != NULL,
         "a second lease for vm1 while this process lives: busy");
  catalog_rollback (c);
  check (catalog_point_in_use (c, 2, who, sizeof who) == 1 &&
         strstr (who, "pid") != NULL, "point 2 is in use (%s)", who);
  /* Garbage pinned by the lease is not garbage. */
  check (catalog_begin (c) == 0 && catalog_remove_point (c, 2) == 0 &&
         catalog_commit (c) == 0 && garbage_count (c, true) == 1,
         "remove point 2: root 21 is garbage");
  make_id (id, 21);
  check (catalog_begin (c) == 0 && catalog_pin (c, l1, id) == 0 &&
         catalog_commit (c) == 0 && garbage_count (c, true) == 0,
         "pinned by the lease, it is not");
  /* Make the lease a dead process's: it is stale. */
  snprintf (sql, sizeof sql, "UPDATE lease SET pid = %d WHERE id = %lld",
            (int) dead_pid (), (long long) l1);
  {
    sqlite3 *db;
    sqlite3_open (getenv ("TEST_SPACE_DB"), &db);
    sqlite3_exec (db, sql, NULL, NULL, NULL);
    sqlite3_close (db);
  }
  check (catalog_point_in_use (c, 2, who, sizeof who) == 0,
         "a dead backup holds no base");
  check (catalog_clear_stale_leases (c, &cleared) == 0 && cleared == 1 &&
         catalog_totals (c, &t) == 0 && t.leases == 0,
         "clear the stale lease");
  check (garbage_count (c, true) == 1, "its pins went with it");
  check (catalog_begin (c) == 0 && catalog_lease_take (c, "vm1", &l2) == 0 &&
         catalog_commit (c) == 0, "vm1 can be backed up again");
  check (catalog_begin (c) == 0 && catalog_lease_drop (c, l2) == 0 &&
         catalog_commit (c) == 0, "drop the lease");
}

static void
test_totals (struct catalog *c)
{
  struct catalog_totals t;

  check (catalog_totals (c, &t) == 0 && t.points == 0 && t.leases == 0,
         "totals: no points left, no leases");
  check (catalog_refs_valid (c), "a new catalog's counts are valid");
}

static int
remove_one (const char *path, const struct stat *st, int flag, struct FTW *f)
{
  return remove (path);
}

int
main (void)
{
  const char *tmp = getenv ("TMPDIR");
  char path[512];
  struct catalog *c;

  snprintf (dir, sizeof dir, "%s/test-space.XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp (dir) == NULL) {
    perror ("mkdtemp");
    exit (77);
  }
  setenv ("PULLBACK_BUSY_TIMEOUT_MS", "300", 1);
  snprintf (path, sizeof path, "%s/space.db", dir);
  setenv ("TEST_SPACE_DB", path, 1);
  c = catalog_create (path);
  check (c != NULL, "create a catalog");
  if (c) {
    test_counts (c);
    test_remove (c);
    test_drain (c);
    test_leases (c);
    test_totals (c);
    check (catalog_check (c) == 0, "integrity check passes");
    catalog_close (c);
  }
  nftw (dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
  return test_summary ();
}
