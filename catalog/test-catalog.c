/* pullback - catalog/test-catalog.c: unit test of the SQLite catalog.
 *
 * Everything happens in a fresh mkdtemp directory, removed at the end.
 * Where the catalog API cannot show a property (journal mode, rows left
 * behind, a lock held by another process, damaged rows) the test opens the
 * file with SQLite directly.  PULLBACK_BUSY_TIMEOUT_MS is set low so the
 * lock test takes a fraction of a second.
 *
 * Prints one PASS/FAIL line per check; exit status 0 if all passed, 1 if
 * not (or 77, "skipped", if the temporary directory cannot be made).
 */
#include <config.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "errors.h"
#include "util.h"

#include "catalog.h"
#include "test.h"

static char dir[256];

/* The last error has class CLS and its message contains WANT. */
static bool
error_is (int cls, const char *want)
{
  return pb_get_errclass () == cls && strstr (pb_get_error (), want) != NULL;
}

static const char *
tpath (const char *name)
{
  static char buf[4][512];
  static int next;
  char *p = buf[next++ % 4];

  snprintf (p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

static int
raw_exec (const char *path, const char *sql)
{
  sqlite3 *db;
  int rc = sqlite3_open (path, &db);

  if (rc == SQLITE_OK)
    rc = sqlite3_exec (db, sql, NULL, NULL, NULL);
  sqlite3_close (db);
  return rc;
}

/* A consistent copy of the database SRC (even with a live WAL). */
static int
raw_copy (const char *src, const char *dst)
{
  char sql[600];

  snprintf (sql, sizeof sql, "VACUUM INTO '%s'", dst);
  return raw_exec (src, sql);
}

/* First column of the first row of SQL as text (static buffer), "" if
 * none or on error. */
static const char *
raw_text (const char *path, const char *sql)
{
  static char out[256];
  sqlite3 *db;
  sqlite3_stmt *s = NULL;

  out[0] = '\0';
  if (sqlite3_open (path, &db) == SQLITE_OK &&
      sqlite3_prepare_v2 (db, sql, -1, &s, NULL) == SQLITE_OK &&
      sqlite3_step (s) == SQLITE_ROW && sqlite3_column_text (s, 0))
    snprintf (out, sizeof out, "%s", sqlite3_column_text (s, 0));
  sqlite3_finalize (s);
  sqlite3_close (db);
  return out;
}

/* Distinct seeds give distinct ids. */
static void
make_id (uint8_t id[CATALOG_ID_LEN], unsigned seed)
{
  for (size_t i = 0; i < CATALOG_ID_LEN; i++)
    id[i] = (uint8_t) (i < 4 ? seed >> (8 * i) : i * 7 + 1);
}

static void
make_data (uint8_t *buf, size_t len, unsigned seed)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t) ((i * 2654435761u) >> 13) ^ (uint8_t) seed;
}

static int
put_node_seed (struct catalog *c, unsigned seed, size_t len)
{
  uint8_t id[CATALOG_ID_LEN];
  uint8_t *data = malloc (len + 1);
  int r;

  make_id (id, seed);
  make_data (data, len, seed);
  r = catalog_put_node (c, id, 1, data, len, NULL, 0);
  free (data);
  return r;
}

static void
make_disk (struct catalog_disk *d, const char *name, unsigned root_seed)
{
  *d = (struct catalog_disk) {
    .name = (char *) name, .size = (10ull << 30) + root_seed,
    .chunk_size = 65536 + root_seed, .map_levels = 1 + root_seed % 3,
    .bytes_read = 12345 + root_seed, .bytes_new = 678 + root_seed,
    .chunks_changed = 9 + root_seed,
  };
  make_id (d->map_root, root_seed);
  make_id (d->digest, root_seed + 1000);
}

/* A point of VM with two disks (given in reverse name order, to check
 * that reads sort them) whose roots are nodes ROOT and ROOT + 1. */
static struct catalog_point
make_point (int64_t id, const char *vm, int64_t parent, const char *cp,
            const char *since, unsigned root, struct catalog_disk disks[2])
{
  struct catalog_point p = {
    .id = id, .vm = (char *) vm, .parent = parent,
    .mode = parent ? "incremental" : "full",
    .checkpoint = (char *) cp, .since = (char *) since,
    .started = 1700000000 + id, .finished = 1700000100 + id,
    .ndisks = 2, .disks = disks,
  };

  make_disk (&disks[0], "vdb", root + 1);
  make_disk (&disks[1], "vda", root);
  return p;
}

static bool
disk_equal (const struct catalog_disk *a, const struct catalog_disk *b)
{
  return strcmp (a->name, b->name) == 0 && a->size == b->size &&
    a->chunk_size == b->chunk_size && a->map_levels == b->map_levels &&
    memcmp (a->map_root, b->map_root, CATALOG_ID_LEN) == 0 &&
    memcmp (a->digest, b->digest, CATALOG_ID_LEN) == 0 &&
    a->bytes_read == b->bytes_read && a->bytes_new == b->bytes_new &&
    a->chunks_changed == b->chunks_changed;
}

/* GOT (read back) equals WANT (disks given in reverse order). */
static bool
point_equal (const struct catalog_point *got, const struct catalog_point *want)
{
  return got && got->id == want->id && strcmp (got->vm, want->vm) == 0 &&
    got->parent == want->parent && strcmp (got->mode, want->mode) == 0 &&
    strcmp (got->checkpoint ? got->checkpoint : "(null)",
            want->checkpoint ? want->checkpoint : "(null)") == 0 &&
    strcmp (got->since ? got->since : "(null)",
            want->since ? want->since : "(null)") == 0 &&
    got->started == want->started && got->finished == want->finished &&
    got->ndisks == 2 && disk_equal (&got->disks[0], &want->disks[1]) &&
    disk_equal (&got->disks[1], &want->disks[0]);
}

static void
test_create_open (void)
{
  struct catalog *c = catalog_create (tpath ("main.db"));
  char *v = NULL;

  check (c != NULL, "create a new catalog");
  catalog_close (c);
  c = catalog_open (tpath ("main.db"));
  check (c != NULL, "open it again");
  check (c && catalog_get_meta (c, "schema_version", &v) == 0 &&
         strcmp (v, "2") == 0, "schema_version is 2");
  free (v);
  catalog_close (c);
  catalog_close (NULL);                 /* must be harmless */
  check (strcmp (raw_text (tpath ("main.db"), "PRAGMA journal_mode"),
                 "wal") == 0, "the file is in WAL mode");
  check (strcmp (raw_text (tpath ("main.db"), "PRAGMA application_id"),
                 "1346521905") == 0, "application_id is set");
}

static void
test_open_refused (void)
{
  FILE *fp;

  check (catalog_create (tpath ("main.db")) == NULL &&
         error_is (PB_E_REPO, "already exists"),
         "create on an existing file refused with PB_E_REPO");
  check (catalog_open (tpath ("missing.db")) == NULL &&
         error_is (PB_E_REPO, "does not exist") &&
         access (tpath ("missing.db"), F_OK) == -1,
         "open of a missing file refused with PB_E_REPO, nothing created");
  fp = fopen (tpath ("text.db"), "w");
  for (int i = 0; fp && i < 500; i++)
    fprintf (fp, "this is not an SQLite database, line %d\n", i);
  if (fp)
    fclose (fp);
  check (catalog_open (tpath ("text.db")) == NULL &&
         error_is (PB_E_REPO, "is not a pullback catalog"),
         "open of a non-SQLite file refused with PB_E_REPO");
  check (catalog_open (dir) == NULL && error_is (PB_E_REPO, "not a regular"),
         "open of a directory refused with PB_E_REPO");
  raw_exec (tpath ("other.db"), "CREATE TABLE t (x)");
  check (catalog_open (tpath ("other.db")) == NULL &&
         error_is (PB_E_REPO, "is not a pullback catalog") &&
         strcmp (raw_text (tpath ("other.db"), "PRAGMA journal_mode"),
                 "delete") == 0,
         "another application's SQLite file refused (and not made WAL)");
}

static void
test_open_version (void)
{
  const char *p = tpath ("newer.db");

  catalog_close (catalog_create (p));
  raw_exec (p, "UPDATE meta SET value = '3' WHERE key = 'schema_version'");
  check (catalog_open (p) == NULL && error_is (PB_E_REPO, "version 3"),
         "open of a newer schema_version refused with PB_E_REPO");
  raw_exec (p, "UPDATE meta SET value = 'x' WHERE key = 'schema_version'");
  check (catalog_open (p) == NULL && error_is (PB_E_REPO, "invalid"),
         "open of a garbled schema_version refused with PB_E_REPO");
  raw_exec (p, "DELETE FROM meta");
  check (catalog_open (p) == NULL &&
         error_is (PB_E_REPO, "is not a pullback catalog"),
         "open without schema_version refused with PB_E_REPO");
}

static void
test_meta (struct catalog *c)
{
  char *v = NULL;

  check (catalog_set_meta (c, "chunk_size", "262144") == 0 &&
         catalog_set_meta (c, "chunk_size", "65536") == 0 &&
         catalog_get_meta (c, "chunk_size", &v) == 0 &&
         strcmp (v, "65536") == 0, "meta set, set again (replaces), get");
  free (v);
  check (catalog_get_meta (c, "nope", &v) == -1 &&
         error_is (PB_E_NOTFOUND, "nope"), "missing meta key: PB_E_NOTFOUND");
  check (catalog_set_meta (c, "schema_version", "7") == -1,
         "schema_version cannot be overwritten through set_meta");
}

static void
test_nodes (struct catalog *c)
{
  uint8_t id[CATALOG_ID_LEN], want[65536];
  void *data = NULL;
  size_t len = 0;

  make_id (id, 1);
  check (put_node_seed (c, 1, 65536) == 0 &&
         catalog_put_node (c, id, 1, "other", 5, NULL, 0) == 0,
         "put a 64 KiB node, then other data under the same id");
  make_data (want, sizeof want, 1);
  check (catalog_get_node (c, id, &data, &len) == 0 && len == sizeof want &&
         memcmp (data, want, len) == 0,
         "get the first back byte-exact (the second put was ignored)");
  free (data);
  check (put_node_seed (c, 2, 0) == 0 && (make_id (id, 2), 1) &&
         catalog_get_node (c, id, &data, &len) == 0 && len == 0,
         "an empty node round-trips");
  free (data);
  make_id (id, 999);
  check (catalog_get_node (c, id, &data, &len) == -1 &&
         error_is (PB_E_NOTFOUND, "no map node"), "missing node: NOTFOUND");
  check (catalog_add_chunk (c, id, 4096) == 0 &&
         catalog_add_chunk (c, id, 4096) == 0, "add a chunk twice");
}

static struct catalog_disk d1[2], d2[2], d3[2], d4[2];
static struct catalog_point p1, p2, p3, p4;

static void
add_points (struct catalog *c)
{
  int64_t id = 0;

  for (unsigned s = 10; s < 18; s++)
    put_node_seed (c, s, 1000);
  check (catalog_next_point_id (c, &id) == 0 && id == 1,
         "next point id of an empty catalog is 1");
  p1 = make_point (1, "web1", 0, "cp1", NULL, 10, d1);
  check (catalog_add_point (c, &p1) == 0, "add full point 1 (web1, cp1)");
  check (catalog_begin (c) == 0 && catalog_next_point_id (c, &id) == 0 &&
         id == 2, "in a transaction, next point id is 2");
  p2 = make_point (id, "web1", 1, "cp2", "cp1", 12, d2);
  check (catalog_add_point (c, &p2) == 0 && catalog_commit (c) == 0,
         "add incremental point 2 (parent 1, cp2) and commit");
  p3 = make_point (3, "web1", 2, "cp2", "cp2", 14, d3);
  check (catalog_add_point (c, &p3) == 0,
         "add incremental point 3 reusing checkpoint name cp2");
  p4 = make_point (4, "db1", 0, "cp1", NULL, 16, d4);
  check (catalog_add_point (c, &p4) == 0, "add full point 4 (db1, cp1)");
}

static void
test_get_list (struct catalog *c)
{
  struct catalog_point *p, **v = NULL;
  size_t n = 0;

  p = catalog_get_point (c, 2);
  check (point_equal (p, &p2), "get point 2: every field, disks by name");
  catalog_point_free (p);
  check (catalog_get_point (c, 42) == NULL &&
         error_is (PB_E_NOTFOUND, "no point 42"), "get point 42: NOTFOUND");
  check (catalog_list_points (c, "web1", &v, &n) == 0 && n == 3 &&
         point_equal (v[0], &p1) && point_equal (v[1], &p2) &&
         point_equal (v[2], &p3), "list web1: points 1, 2, 3 in order");
  check (n == 3 && v[0]->parent == 0 && v[1]->parent == 1 && v[2]->parent == 2,
         "parent links 0 <- 1 <- 2");
  catalog_points_free (v, n);
  check (catalog_list_points (c, NULL, &v, &n) == 0 && n == 4 &&
         v[3]->id == 4 && strcmp (v[3]->vm, "db1") == 0, "list all: 4 points");
  catalog_points_free (v, n);
  check (catalog_list_points (c, "nobody", &v, &n) == 0 && n == 0 &&
         v == NULL, "list an unknown VM: empty");
  catalog_points_free (NULL, 0);
}

static void
test_find (struct catalog *c)
{
  int64_t id = 0;

  check (catalog_find_checkpoint (c, "web1", "cp2", &id) == 0 && id == 3,
         "find_checkpoint web1 cp2: the newest (3)");
  check (catalog_find_checkpoint (c, "web1", "cp1", &id) == 0 && id == 1,
         "find_checkpoint web1 cp1: 1");
  check (catalog_find_checkpoint (c, "db1", "cp1", &id) == 0 && id == 4,
         "find_checkpoint db1 cp1: 4 (per VM)");
  check (catalog_find_checkpoint (c, "web1", "cp9", &id) == -1 &&
         error_is (PB_E_CHECKPOINT, "VM 'web1' has no point with checkpoint "
                   "'cp9' (known: cp1, cp2)"),
         "unknown checkpoint: PB_E_CHECKPOINT listing the known ones");
  check (catalog_find_checkpoint (c, "ghost", "cp1", &id) == -1 &&
         error_is (PB_E_CHECKPOINT, "VM 'ghost' has no points"),
         "checkpoint of an unknown VM: PB_E_CHECKPOINT, no points");
  check (catalog_latest_point (c, "web1", &id) == 0 && id == 3,
         "latest point of web1 is 3");
  check (catalog_latest_point (c, NULL, &id) == 0 && id == 4,
         "latest point of all is 4");
  check (catalog_latest_point (c, "ghost", &id) == -1 &&
         error_is (PB_E_NOTFOUND, "ghost"), "unknown VM: NOTFOUND");
  check (catalog_next_point_id (c, &id) == 0 && id == 5, "next point id is 5");
}

static void
test_add_refused (struct catalog *c)
{
  struct catalog_disk d[2];
  struct catalog_point p = make_point (5, "newvm", 0, "x", NULL, 10, d);

  make_id (d[1].map_root, 777);      /* second disk's root is missing */
  check (catalog_add_point (c, &p) == -1 && error_is (PB_E_FAIL, "map root"),
         "add_point with a missing map_root fails");
  /* A row left behind would be committed: the call opened its own
   * transaction.  Look with another connection. */
  check (catalog_get_point (c, 5) == NULL &&
         strcmp (raw_text (tpath ("main.db"), "SELECT (SELECT count (*) FROM "
                           "vm WHERE name = 'newvm') + (SELECT count (*) FROM "
                           "point_disk WHERE point_id = 5)"), "0") == 0,
         "... leaving no point, disk or VM row behind");
  p = make_point (9, "web1", 7, "x", "cp2", 10, d);
  check (catalog_add_point (c, &p) == -1 &&
         error_is (PB_E_FAIL, "parent point is not in the catalog"),
         "add_point with an unknown parent fails");
  p = make_point (5, "db1", 1, "x", "cp1", 10, d);
  check (catalog_add_point (c, &p) == -1 && error_is (PB_E_FAIL, "another VM"),
         "add_point with a parent of another VM fails");
  p = make_point (3, "web1", 2, "x", "cp2", 10, d);
  check (catalog_add_point (c, &p) == -1 &&
         error_is (PB_E_FAIL, "insert point 3: UNIQUE"),
         "add_point with an existing id fails");
  p = make_point (5, "web1", 2, "x", NULL, 10, d);
  p.mode = "full";
  check (catalog_add_point (c, &p) == -1 &&
         error_is (PB_E_FAIL, "a full point has no parent"),
         "full point with a parent refused");
}

static void
test_rollback (struct catalog *c)
{
  struct catalog_disk d[2];
  struct catalog_point p = make_point (5, "web1", 3, "cp5", "cp2", 20, d);
  uint8_t id[CATALOG_ID_LEN];
  char *v = NULL;
  void *data;
  size_t len;

  check (catalog_begin (c) == 0 && put_node_seed (c, 20, 100) == 0 &&
         put_node_seed (c, 21, 100) == 0, "begin, put two nodes");
  make_id (d[1].map_root, 777);      /* fails after disk vdb went in */
  check (catalog_add_point (c, &p) == -1 && catalog_get_point (c, 5) == NULL &&
         error_is (PB_E_NOTFOUND, "no point 5"),
         "failing add_point inside a transaction undoes only itself");
  make_id (d[1].map_root, 20);
  check (catalog_add_point (c, &p) == 0 && catalog_set_meta (c, "k", "v") == 0,
         "... the transaction goes on: add point 5, set meta");
  check (catalog_rollback (c) == 0 && catalog_get_point (c, 5) == NULL &&
         error_is (PB_E_NOTFOUND, "no point 5"), "rollback discards the point");
  make_id (id, 20);
  check (catalog_get_node (c, id, &data, &len) == -1 &&
         catalog_get_meta (c, "k", &v) == -1,
         "... and the nodes and the meta key");
  check (catalog_rollback (c) == 0, "rollback without a transaction is fine");
  check (catalog_commit (c) == -1, "commit without a transaction fails");
  check (catalog_begin (c) == 0 && catalog_begin (c) == -1 &&
         catalog_rollback (c) == 0, "nested begin fails");
}

/* A transaction left open at close is rolled back. */
static void
test_close_open_tx (void)
{
  struct catalog *c = catalog_open (tpath ("main.db"));
  struct catalog_point *p;
  char *v = NULL;

  check (c && catalog_begin (c) == 0 && catalog_set_meta (c, "t", "1") == 0,
         "begin and write, then close without commit");
  catalog_close (c);
  c = catalog_open (tpath ("main.db"));
  check (c && catalog_get_meta (c, "t", &v) == -1 &&
         error_is (PB_E_NOTFOUND, "t"), "... the write is gone");
  p = c ? catalog_get_point (c, 3) : NULL;
  check (p && p->parent == 2, "... committed points are still there");
  catalog_point_free (p);
  catalog_close (c);
}

static void
test_busy (struct catalog *c)
{
  struct catalog_point *p;
  sqlite3 *db = NULL;
  double t;

  check (sqlite3_open (tpath ("main.db"), &db) == SQLITE_OK &&
         sqlite3_exec (db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK,
         "another connection holds BEGIN IMMEDIATE");
  t = now_mono ();
  check (catalog_begin (c) == -1 && error_is (PB_E_BUSY, "locked"),
         "catalog_begin fails with PB_E_BUSY");
  t = now_mono () - t;
  check (t >= 0.2 && t < 5, "... after the busy timeout (%.2f s)", t);
  check (put_node_seed (c, 30, 10) == -1 && error_is (PB_E_BUSY, "put node"),
         "a write outside a transaction fails with PB_E_BUSY too");
  p = catalog_get_point (c, 1);
  check (p != NULL, "readers are not blocked by the writer (WAL)");
  catalog_point_free (p);
  sqlite3_exec (db, "COMMIT", NULL, NULL, NULL);
  sqlite3_close (db);
  check (catalog_begin (c) == 0 && catalog_rollback (c) == 0,
         "begin works once the other writer is gone");
}

/* Overwrite 8 pages in the middle of PATH with garbage. */
static int
damage_middle (const char *path)
{
  static char junk[8 * 4096];
  struct stat st;
  int fd = open (path, O_WRONLY), r = -1;

  memset (junk, 0xa5, sizeof junk);
  if (fd != -1 && fstat (fd, &st) == 0 && st.st_size >= 64 * 4096)
    r = full_pwrite (fd, junk, sizeof junk, (st.st_size / 2) & ~4095);
  if (fd != -1)
    close (fd);
  return r;
}

static void
test_check_damaged (void)
{
  struct catalog *c = catalog_create (tpath ("big.db"));

  for (unsigned s = 100; c && s < 400; s++)
    put_node_seed (c, s, 3000);
  check (c && catalog_check (c) == 0, "catalog_check passes on 300 nodes");
  catalog_close (c);
  check (raw_copy (tpath ("big.db"), tpath ("bad.db")) == SQLITE_OK &&
         damage_middle (tpath ("bad.db")) == 0,
         "copy it, overwriting pages in the middle");
  c = catalog_open (tpath ("bad.db"));
  check (c && catalog_check (c) == -1 && pb_get_errclass () == PB_E_CORRUPT,
         "catalog_check fails with PB_E_CORRUPT on the damaged copy");
  catalog_close (c);
}

/* Rows that break the schema's rules, written behind the catalog's back:
 * reads must refuse them and catalog_check must find them. */
static void
test_check_rows (void)
{
  const char *p = tpath ("rows.db");
  struct catalog *c = catalog_open (tpath ("main.db"));

  check (c && catalog_check (c) == 0, "catalog_check passes on the main db");
  catalog_close (c);
  raw_copy (tpath ("main.db"), p);
  raw_exec (p, "PRAGMA ignore_check_constraints = ON; "
            "UPDATE point_disk SET digest = x'0102' WHERE point_id = 2");
  c = catalog_open (p);
  check (c && catalog_get_point (c, 2) == NULL &&
         error_is (PB_E_CORRUPT, "digest"),
         "a 2-byte digest is refused on read with PB_E_CORRUPT");
  check (c && catalog_check (c) == -1 && error_is (PB_E_CORRUPT, "CHECK"),
         "... and found by catalog_check");
  catalog_close (c);
  raw_exec (p, "UPDATE point_disk SET digest = zeroblob (32); "
            "DELETE FROM map_node WHERE id IN "
            "(SELECT map_root FROM point_disk WHERE point_id = 4)");
  c = catalog_open (p);
  check (c && catalog_check (c) == -1 && error_is (PB_E_CORRUPT, "map_node"),
         "a disk whose map root was deleted is found by catalog_check");
  catalog_close (c);
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
  struct catalog *c;

  snprintf (dir, sizeof dir, "%s/test-catalog.XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp (dir) == NULL) {
    perror ("mkdtemp");
    exit (77);
  }
  setenv ("PULLBACK_BUSY_TIMEOUT_MS", "300", 1);
  test_create_open ();
  test_open_refused ();
  test_open_version ();
  c = catalog_open (tpath ("main.db"));
  check (c != NULL, "open the main catalog");
  if (c) {
    test_meta (c);
    test_nodes (c);
    add_points (c);
    test_get_list (c);
    test_find (c);
    test_add_refused (c);
    test_rollback (c);
    test_busy (c);
    catalog_close (c);
  }
  test_close_open_tx ();
  test_check_rows ();
  test_check_damaged ();
  nftw (dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
  return test_summary ();
}
