/* pullback - catalog/schema.c: the catalog's schema, its version, and the
 * connection settings every handle runs with.
 *
 * docs/FORMAT.md (part 4) describes the same schema for readers of the file;
 * keep the two in step.  The schema is created in one transaction, so a
 * crash during catalog_create leaves either nothing usable (the caller
 * removes the file) or a complete catalog, never half a schema.
 *
 * Versioning: meta.schema_version holds CATALOG_SCHEMA_VERSION of the
 * pullback that created (or last upgraded) the file.  A newer version is
 * refused rather than half-understood: an older pullback writing points
 * into a newer layout could silently break the invariants the newer one
 * relies on.  An older version is upgraded on open (schema_upgrade, after
 * schema_check), under BEGIN IMMEDIATE, bumping schema_version in the same
 * transaction as its DDL: 1 -> 2 adds space management.
 *
 * Integrity: the CHECK constraints below are what PRAGMA integrity_check
 * verifies row by row (catalog_check), so the 32-byte id columns, the
 * mode/parent pairing and the value ranges are all covered by it.
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

/* The version 2 point table under NAME (the upgrade builds it beside the
 * old one). */
#define POINT_TABLE(name) \
  "CREATE TABLE " name " (\n" \
  "  id         INTEGER PRIMARY KEY CHECK (id > 0),\n" \
  "  vm_id      INTEGER NOT NULL REFERENCES vm (id),\n" \
  "  parent_id  INTEGER REFERENCES point (id) CHECK (parent_id < id),\n" \
  "  mode       TEXT NOT NULL CHECK (mode IN ('full', 'incremental')),\n" \
  "  checkpoint TEXT CHECK (checkpoint <> ''),\n" \
  "  since      TEXT CHECK (since <> ''),\n" \
  "  started    INTEGER NOT NULL,\n" \
  "  finished   INTEGER NOT NULL,\n" \
  "  protected  INTEGER NOT NULL DEFAULT 0 CHECK (protected IN (0, 1)),\n" \
  "  hidden     INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),\n" \
  "  CHECK (mode = 'incremental' OR parent_id IS NULL)\n" \
  ");\n"

/* Writer leases and pins (new in version 2). */
#define LEASE_TABLES \
  "CREATE TABLE lease (\n" \
  "  id         INTEGER PRIMARY KEY,\n" \
  "  vm         TEXT NOT NULL UNIQUE CHECK (vm <> ''),\n" \
  "  base_point INTEGER,\n" \
  "  host       TEXT NOT NULL,\n" \
  "  boot_id    TEXT NOT NULL,\n" \
  "  pid        INTEGER NOT NULL,\n" \
  "  pid_start  INTEGER NOT NULL,\n" \
  "  started    INTEGER NOT NULL\n" \
  ");\n" \
  "CREATE TABLE pin (\n" \
  "  id       BLOB NOT NULL\n" \
  "           CHECK (typeof (id) = 'blob' AND length (id) = 32),\n" \
  "  lease_id INTEGER NOT NULL REFERENCES lease (id) ON DELETE CASCADE,\n" \
  "  PRIMARY KEY (id, lease_id)\n" \
  ") WITHOUT ROWID;\n" \
  "CREATE INDEX pin_lease ON pin (lease_id);\n"

/* Version 2 (version 1 plus space management: reference counts, point
 * protection and hidden bases, writer leases and pins; docs/FORMAT.md part
 * 4).  Integer columns that hold uint64_t values in catalog.h are limited
 * to 0 .. 2^63-1 (SQLite integers are signed 64-bit).  map_node is a rowid
 * table with a UNIQUE id because its rows are large (up to tens of KiB): in
 * a WITHOUT ROWID table they would bloat the key B-tree itself.  The
 * partial indexes on refs = 0 are what makes garbage collection a walk over
 * the garbage only, not over the whole catalog. */
static const char schema_v2[] =
  "CREATE TABLE meta (\n"
  "  key   TEXT PRIMARY KEY NOT NULL,\n"
  "  value TEXT NOT NULL\n"
  ");\n"
  "CREATE TABLE vm (\n"
  "  id   INTEGER PRIMARY KEY,\n"
  "  name TEXT NOT NULL UNIQUE CHECK (name <> '')\n"
  ");\n"
  POINT_TABLE ("point")
  "CREATE INDEX point_vm_checkpoint ON point (vm_id, checkpoint);\n"
  "CREATE INDEX point_vm ON point (vm_id, id);\n"
  "CREATE INDEX point_parent ON point (parent_id);\n"
  "CREATE TABLE map_node (\n"
  "  id    BLOB NOT NULL UNIQUE\n"
  "        CHECK (typeof (id) = 'blob' AND length (id) = 32),\n"
  "  level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 4294967295),\n"
  "  data  BLOB NOT NULL CHECK (typeof (data) = 'blob'),\n"
  "  refs  INTEGER NOT NULL DEFAULT 0 CHECK (refs >= 0)\n"
  ");\n"
  "CREATE INDEX map_node_garbage ON map_node (id) WHERE refs = 0;\n"
  "CREATE TABLE point_disk (\n"
  "  point_id       INTEGER NOT NULL\n"
  "                 REFERENCES point (id) ON DELETE CASCADE,\n"
  "  name           TEXT NOT NULL CHECK (name <> ''),\n"
  "  size           INTEGER NOT NULL CHECK (size >= 0),\n"
  "  chunk_size     INTEGER NOT NULL\n"
  "                 CHECK (chunk_size BETWEEN 1 AND 4294967295),\n"
  "  map_levels     INTEGER NOT NULL\n"
  "                 CHECK (map_levels BETWEEN 1 AND 4294967295),\n"
  "  map_root       BLOB NOT NULL REFERENCES map_node (id)\n"
  "                 CHECK (typeof (map_root) = 'blob'\n"
  "                        AND length (map_root) = 32),\n"
  "  digest         BLOB NOT NULL\n"
  "                 CHECK (typeof (digest) = 'blob'\n"
  "                        AND length (digest) = 32),\n"
  "  bytes_read     INTEGER NOT NULL CHECK (bytes_read >= 0),\n"
  "  bytes_new      INTEGER NOT NULL CHECK (bytes_new >= 0),\n"
  "  chunks_changed INTEGER NOT NULL CHECK (chunks_changed >= 0),\n"
  "  PRIMARY KEY (point_id, name)\n"
  ") WITHOUT ROWID;\n"
  "CREATE INDEX point_disk_root ON point_disk (map_root);\n"
  "CREATE TABLE chunk (\n"
  "  id          BLOB PRIMARY KEY NOT NULL\n"
  "              CHECK (typeof (id) = 'blob' AND length (id) = 32),\n"
  "  stored_size INTEGER NOT NULL CHECK (stored_size >= 0),\n"
  "  refs        INTEGER NOT NULL DEFAULT 0 CHECK (refs >= 0)\n"
  ") WITHOUT ROWID;\n"
  "CREATE INDEX chunk_garbage ON chunk (id) WHERE refs = 0;\n"
  LEASE_TABLES;

/* journal_mode is persistent in the file but set anyway: it is cheap when
 * already WAL, and a file copied in from elsewhere may not be.  The other
 * settings are per connection.  synchronous=FULL makes every COMMIT fsync
 * the WAL, so a committed point survives power loss; trusted_schema=OFF
 * keeps a hostile catalog file from running functions from its schema. */
static const char pragmas[] =
  "PRAGMA synchronous = FULL;\n"
  "PRAGMA foreign_keys = ON;\n"
  "PRAGMA trusted_schema = OFF;\n";

static int
set_wal (struct catalog *c)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  const char *mode;

  if (cat_prepare (c, "PRAGMA journal_mode = WAL", &s, "set WAL mode") == -1 ||
      cat_step (c, s, "set WAL mode") == -1)
    return -1;
  mode = (const char *) sqlite3_column_text (s, 0);
  /* SQLite answers with the mode in force: anything else means the file
   * system refused WAL (no shared memory), and we rely on WAL for
   * readers that never block the writer. */
  if (mode == NULL || strcmp (mode, "wal") != 0) {
    set_error (PB_E_IO, 0, "catalog %s: cannot use WAL mode "
               "(journal mode is %s)", c->path, mode ? mode : "unknown");
    return -1;
  }
  return 0;
}

int
schema_pragmas (struct catalog *c)
{
  if (set_wal (c) == -1)
    return -1;
  return cat_exec (c, pragmas, "set connection options");
}

static int
insert_meta (struct catalog *c, const char *key, const char *value)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int rc;

  if (cat_prepare (c, "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                   &s, "create schema") == -1)
    return -1;
  rc = sqlite3_bind_text (s, 1, key, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text (s, 2, value, -1, SQLITE_STATIC);
  if (rc != SQLITE_OK)
    return cat_error (c, rc, "create schema");
  return cat_step_done (c, s, "create schema");
}

static int
create_current (struct catalog *c)
{
  char num[64];

  if (cat_exec (c, schema_v2, "create schema") == -1)
    return -1;
  snprintf (num, sizeof num, "%d", CATALOG_SCHEMA_VERSION);
  if (insert_meta (c, "schema_version", num) == -1)
    return -1;
  snprintf (num, sizeof num, "%" PRId64, now_epoch ());
  if (insert_meta (c, "created", num) == -1 ||
      insert_meta (c, "refs_valid", "1") == -1)
    return -1;
  snprintf (num, sizeof num, "PRAGMA application_id = %d;",
            CATALOG_APPLICATION_ID);
  return cat_exec (c, num, "create schema");
}

int
schema_create (struct catalog *c)
{
  if (cat_exec (c, "BEGIN IMMEDIATE", "create schema") == -1)
    return -1;
  if (create_current (c) == -1 || cat_exec (c, "COMMIT", "create schema") == -1) {
    /* Keep the first error: the rollback is only tidying up. */
    sqlite3_exec (c->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  return 0;
}

/* Report a failure while identifying the file.  "Not a database" means
 * someone pointed us at another kind of file: a repository problem, not
 * damage to a catalog. */
static int
identify_error (struct catalog *c, int rc)
{
  if ((rc & 0xff) == SQLITE_NOTADB) {
    set_error (PB_E_REPO, 0, "%s is not a pullback catalog (%s)",
               c->path, sqlite3_errmsg (c->db));
    return -1;
  }
  return cat_error (c, rc, "open %s", c->path);
}

static int
check_application_id (struct catalog *c)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int rc;

  rc = sqlite3_prepare_v2 (c->db, "PRAGMA application_id", -1, &s, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step (s);
  if (rc != SQLITE_ROW)
    return identify_error (c, rc);
  if (sqlite3_column_int64 (s, 0) != CATALOG_APPLICATION_ID) {
    set_error (PB_E_REPO, 0, "%s is not a pullback catalog "
               "(SQLite database of another application)", c->path);
    return -1;
  }
  return 0;
}

/* *VERSION from meta; a missing table or row means the file is not (or
 * not yet) a catalog: catalog_create commits the row with the schema. */
static int
read_version (struct catalog *c, char **version)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int rc;

  rc = sqlite3_prepare_v2 (c->db, "SELECT value FROM meta "
                           "WHERE key = 'schema_version'", -1, &s, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step (s);
  if (rc == SQLITE_ROW)
    return cat_col_text (s, 0, false, version, "meta schema_version");
  if (rc == SQLITE_DONE || (rc & 0xff) == SQLITE_ERROR) {
    set_error (PB_E_REPO, 0, "%s is not a pullback catalog "
               "(no schema_version in its meta table)", c->path);
    return -1;
  }
  return identify_error (c, rc);
}

static int
check_version (struct catalog *c, const char *version)
{
  char *end;
  long long v;

  errno = 0;
  v = strtoll (version, &end, 10);
  if (errno != 0 || end == version || *end != '\0' || v < 1) {
    set_error (PB_E_REPO, 0, "catalog %s has an invalid schema_version '%s'",
               c->path, version);
    return -1;
  }
  if (v > CATALOG_SCHEMA_VERSION) {
    set_error (PB_E_REPO, 0, "catalog %s has schema version %lld, but this "
               "pullback only understands versions up to %d: upgrade pullback",
               c->path, v, CATALOG_SCHEMA_VERSION);
    return -1;
  }
  c->version = (int) v;         /* older ones: schema_upgrade() */
  return 0;
}

int
schema_check (struct catalog *c)
{
  CLEANUP_FREE char *version = NULL;

  if (check_application_id (c) == -1 || read_version (c, &version) == -1)
    return -1;
  return check_version (c, version);
}

/* Version 1 -> 2, SQLite's "12 steps" for the one table whose constraints
 * change (point: protected, hidden, and an incremental may lose its parent
 * when that is forgotten), plain ADD COLUMN for the rest.  The reference
 * counts cannot be computed here (the catalog does not parse map nodes):
 * meta refs_valid = 0 tells libpullback to count them before anything may
 * rely on them, and garbage collection refuses to run until it has. */
static const char upgrade_1_2[] =
  POINT_TABLE ("point_v2")
  "INSERT INTO point_v2 (id, vm_id, parent_id, mode, checkpoint, since,\n"
  "  started, finished) SELECT id, vm_id, parent_id, mode, checkpoint,\n"
  "  since, started, finished FROM point;\n"
  "DROP TABLE point;\n"
  "ALTER TABLE point_v2 RENAME TO point;\n"
  "CREATE INDEX point_vm_checkpoint ON point (vm_id, checkpoint);\n"
  "CREATE INDEX point_vm ON point (vm_id, id);\n"
  "CREATE INDEX point_parent ON point (parent_id);\n"
  "ALTER TABLE map_node ADD COLUMN\n"
  "  refs INTEGER NOT NULL DEFAULT 0 CHECK (refs >= 0);\n"
  "CREATE INDEX map_node_garbage ON map_node (id) WHERE refs = 0;\n"
  "CREATE INDEX point_disk_root ON point_disk (map_root);\n"
  "ALTER TABLE chunk ADD COLUMN\n"
  "  refs INTEGER NOT NULL DEFAULT 0 CHECK (refs >= 0);\n"
  "CREATE INDEX chunk_garbage ON chunk (id) WHERE refs = 0;\n"
  LEASE_TABLES
  "UPDATE meta SET value = '2' WHERE key = 'schema_version';\n"
  "INSERT INTO meta (key, value) VALUES ('refs_valid', '0')\n"
  "  ON CONFLICT (key) DO UPDATE SET value = '0';\n";

static int
upgrade_steps (struct catalog *c)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int r;

  if (cat_exec (c, upgrade_1_2, "upgrade schema 1 -> 2") == -1 ||
      cat_prepare (c, "PRAGMA foreign_key_check", &s, "upgrade") == -1)
    return -1;
  r = cat_step (c, s, "upgrade schema 1 -> 2");
  if (r == 1) {
    set_error (PB_E_CORRUPT, 0, "catalog %s: upgrade 1 -> 2: foreign key "
               "violation in table %s", c->path,
               (const char *) sqlite3_column_text (s, 0));
    return -1;
  }
  return r;
}

int
schema_upgrade (struct catalog *c)
{
  int r;

  if (c->version >= CATALOG_SCHEMA_VERSION)
    return 0;
  /* Foreign keys off while the point table is rebuilt (it can only be
   * switched outside a transaction); the check above stands in for it. */
  if (cat_exec (c, "PRAGMA foreign_keys = OFF; BEGIN IMMEDIATE",
                "upgrade schema") == -1)
    return -1;
  r = upgrade_steps (c);
  if (r == 0)
    r = cat_exec (c, "COMMIT", "upgrade schema");
  if (r == -1)
    sqlite3_exec (c->db, "ROLLBACK", NULL, NULL, NULL);
  if (cat_exec (c, "PRAGMA foreign_keys = ON", "upgrade schema") == -1)
    return -1;
  if (r == 0)
    c->version = CATALOG_SCHEMA_VERSION;
  return r;
}
