/* pullback - catalog/catalog.c: the catalog handle, meta settings,
 * transactions, map nodes, chunks and the integrity check, plus the SQLite
 * helpers the rest of catalog/ uses (schema.h).
 *
 * Every SQLite failure goes through cat_error(), which maps the result code
 * to a pullback error class (busy -> PB_E_BUSY, full disk -> PB_E_NOSPACE,
 * I/O, permission, read-only -> PB_E_IO, damage -> PB_E_CORRUPT) and prefixes what we were doing, so
 * the agent can print one meaningful line and pick the right exit code.
 *
 * Statements: one-off ones live in CLEANUP_FINALIZE locals; the few run
 * once per map node or chunk of a backup are prepared once per handle
 * (cat_cached) and reset by CLEANUP_RESET.  Either way no path can leave a
 * statement active, which would pin the WAL and leak under valgrind.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "errors.h"
#include "util.h"

#include "catalog.h"
#include "schema.h"

static int busy_timeout_ms (void);

/* ---- SQLite helpers (declared in schema.h) ---- */

int
cat_errclass (int rc)
{
  switch (rc & 0xff) {
  case SQLITE_BUSY: case SQLITE_LOCKED:
    return PB_E_BUSY;
  case SQLITE_FULL:
    return PB_E_NOSPACE;
  case SQLITE_IOERR: case SQLITE_READONLY:
  case SQLITE_CANTOPEN: case SQLITE_PERM:
    return PB_E_IO;
  case SQLITE_CORRUPT: case SQLITE_NOTADB:
    return PB_E_CORRUPT;
  default:
    return PB_E_FAIL;
  }
}

int
cat_error (struct catalog *c, int rc, const char *fmt, ...)
{
  char what[256];
  const char *msg = sqlite3_errstr (rc);
  int errnum = 0;
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (what, sizeof what, fmt, ap);
  va_end (ap);
  /* The handle's message is more precise ("no such table: x") but only
   * if it still describes RC. */
  if (c && c->db && (sqlite3_errcode (c->db) & 0xff) == (rc & 0xff))
    msg = sqlite3_errmsg (c->db);
  if (cat_errclass (rc) == PB_E_IO && c && c->db)
    errnum = sqlite3_system_errno (c->db);
  /* "database is locked" alone does not say who or for how long. */
  if (cat_errclass (rc) == PB_E_BUSY)
    set_error (PB_E_BUSY, 0, "catalog: %s: %s (another process holds the "
               "catalog's write lock; waited %d ms)", what, msg,
               busy_timeout_ms ());
  else
    set_error (cat_errclass (rc), errnum, "catalog: %s: %s", what, msg);
  return -1;
}

int
cat_exec (struct catalog *c, const char *sql, const char *what)
{
  int rc = sqlite3_exec (c->db, sql, NULL, NULL, NULL);

  return rc == SQLITE_OK ? 0 : cat_error (c, rc, "%s", what);
}

int
cat_prepare (struct catalog *c, const char *sql, sqlite3_stmt **stmt,
             const char *what)
{
  int rc = sqlite3_prepare_v2 (c->db, sql, -1, stmt, NULL);

  return rc == SQLITE_OK ? 0 : cat_error (c, rc, "%s", what);
}

sqlite3_stmt *
cat_cached (struct catalog *c, enum cat_stmt which, const char *sql)
{
  int rc;

  if (c->stmts[which] == NULL) {
    rc = sqlite3_prepare_v3 (c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                             &c->stmts[which], NULL);
    if (rc != SQLITE_OK) {
      cat_error (c, rc, "prepare");
      return NULL;
    }
  }
  return c->stmts[which];
}

int
cat_step (struct catalog *c, sqlite3_stmt *s, const char *what)
{
  int rc = sqlite3_step (s);

  if (rc == SQLITE_ROW)
    return 1;
  if (rc == SQLITE_DONE)
    return 0;
  return cat_error (c, rc, "%s", what);
}

int
cat_step_done (struct catalog *c, sqlite3_stmt *s, const char *what)
{
  int r = cat_step (c, s, what);

  if (r == 1) {
    set_error (PB_E_FAIL, 0, "catalog: %s: unexpected result row", what);
    return -1;
  }
  return r;
}

static int
bad_column (sqlite3_stmt *s, int i, const char *what)
{
  set_error (PB_E_CORRUPT, 0, "catalog: %s: bad value in column %s",
             what, sqlite3_column_name (s, i));
  return -1;
}

int
cat_col_int (sqlite3_stmt *s, int i, int64_t min, int64_t max,
             int64_t *out, const char *what)
{
  int64_t v;

  if (sqlite3_column_type (s, i) != SQLITE_INTEGER)
    return bad_column (s, i, what);
  v = sqlite3_column_int64 (s, i);
  if (v < min || v > max)
    return bad_column (s, i, what);
  *out = v;
  return 0;
}

int
cat_col_id (sqlite3_stmt *s, int i, uint8_t out[CATALOG_ID_LEN],
            const char *what)
{
  if (sqlite3_column_type (s, i) != SQLITE_BLOB ||
      sqlite3_column_bytes (s, i) != CATALOG_ID_LEN)
    return bad_column (s, i, what);
  memcpy (out, sqlite3_column_blob (s, i), CATALOG_ID_LEN);
  return 0;
}

int
cat_col_text (sqlite3_stmt *s, int i, bool nullable, char **out,
              const char *what)
{
  int type = sqlite3_column_type (s, i);

  *out = NULL;
  if (type == SQLITE_NULL && nullable)
    return 0;
  if (type != SQLITE_TEXT)
    return bad_column (s, i, what);
  *out = strdup ((const char *) sqlite3_column_text (s, i));
  if (*out == NULL) {
    set_error (PB_E_FAIL, errno, "strdup");
    return -1;
  }
  return 0;
}

bool
cat_in_transaction (struct catalog *c)
{
  return !sqlite3_get_autocommit (c->db);
}

/* ---- Open, create, close ---- */

static int
busy_timeout_ms (void)
{
  const char *env = getenv ("PULLBACK_BUSY_TIMEOUT_MS");
  char *end;
  long v;

  if (env == NULL || *env == '\0')
    return CATALOG_BUSY_TIMEOUT_MS;
  errno = 0;
  v = strtol (env, &end, 10);
  if (errno != 0 || *end != '\0' || v < 0 || v > INT_MAX)
    return CATALOG_BUSY_TIMEOUT_MS;     /* not worth failing a backup over */
  return (int) v;
}

/* Connect to an existing file.  No SQLITE_OPEN_CREATE: creation is done
 * with O_EXCL by catalog_create, so a missing file is never made here. */
static struct catalog *
cat_new (const char *path)
{
  struct catalog *c = calloc (1, sizeof *c);
  int rc;

  if (c == NULL || (c->path = strdup (path)) == NULL) {
    set_error (PB_E_FAIL, errno, "catalog: allocate handle");
    catalog_close (c);
    return NULL;
  }
  rc = sqlite3_open_v2 (path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    cat_error (c, rc, "open %s", path);
    catalog_close (c);
    return NULL;
  }
  sqlite3_extended_result_codes (c->db, 1);
  sqlite3_busy_timeout (c->db, busy_timeout_ms ());
  return c;
}

void
catalog_close (struct catalog *c)
{
  size_t i;

  if (c == NULL)
    return;
  for (i = 0; i < CAT_NSTMTS; i++)
    sqlite3_finalize (c->stmts[i]);
  /* Rolls back an open transaction; the last connection also checkpoints
   * and removes the WAL. */
  sqlite3_close_v2 (c->db);
  free (c->path);
  free (c);
}

/* Make the new file's directory entry durable: SQLite syncs the files it
 * creates itself (the WAL) but not the main file, which we created. */
static int
sync_parent (const char *path)
{
  CLEANUP_FREE char *copy = strdup (path);

  if (copy == NULL) {
    set_error (PB_E_FAIL, errno, "strdup");
    return -1;
  }
  return fsync_dir (dirname (copy));
}

static int
create_file (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);

  if (fd == -1 && errno == EEXIST) {
    set_error (PB_E_REPO, 0, "catalog %s already exists", path);
    return -1;
  }
  if (fd == -1) {
    set_error (PB_E_IO, errno, "catalog: create %s", path);
    return -1;
  }
  close (fd);
  return 0;
}

static void
remove_files (const char *path)
{
  char side[PATH_MAX];

  unlink (path);
  snprintf (side, sizeof side, "%s-wal", path);
  unlink (side);
  snprintf (side, sizeof side, "%s-shm", path);
  unlink (side);
}

struct catalog *
catalog_create (const char *path)
{
  struct catalog *c;

  if (create_file (path) == -1)
    return NULL;
  /* An empty file is a valid empty SQLite database. */
  c = cat_new (path);
  if (c == NULL || schema_pragmas (c) == -1 || schema_create (c) == -1 ||
      sync_parent (path) == -1) {
    catalog_close (c);
    remove_files (path);
    return NULL;
  }
  return c;
}

/* SQLite reports a catalog on a read-only file system as "unable to open
 * database file" with whatever errno its last attempt got (the WAL's
 * shared-memory file cannot be created): say what is wrong instead. */
static void
read_only_error (const char *path)
{
  CLEANUP_FREE char *copy = NULL;

  if (pb_get_errclass () != PB_E_IO || (copy = strdup (path)) == NULL)
    return;
  if (access (dirname (copy), W_OK) == -1 && errno == EROFS)
    set_error (PB_E_IO, EROFS, "catalog %s: the repository is read-only "
               "(the catalog needs to write beside it)", path);
}

struct catalog *
catalog_open (const char *path)
{
  struct catalog *c;
  struct stat st;

  if (stat (path, &st) == -1) {
    if (errno == ENOENT)
      set_error (PB_E_REPO, 0, "catalog %s does not exist", path);
    else
      set_error (PB_E_IO, errno, "catalog: %s", path);
    return NULL;
  }
  if (!S_ISREG (st.st_mode)) {
    set_error (PB_E_REPO, 0, "%s is not a pullback catalog "
               "(not a regular file)", path);
    return NULL;
  }
  c = cat_new (path);
  /* Identify before the PRAGMAs: switching someone else's database to
   * WAL would modify it. */
  if (c == NULL || schema_check (c) == -1 || schema_pragmas (c) == -1 ||
      schema_upgrade (c) == -1) {
    catalog_close (c);
    read_only_error (path);
    return NULL;
  }
  return c;
}

/* ---- Meta ---- */

int
catalog_set_meta (struct catalog *c, const char *key, const char *value)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int rc;

  if (strcmp (key, "schema_version") == 0) {
    set_error (PB_E_FAIL, 0, "catalog: schema_version is managed by the "
               "catalog itself and cannot be set");
    return -1;
  }
  if (cat_prepare (c, "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   &s, "set meta") == -1)
    return -1;
  rc = sqlite3_bind_text (s, 1, key, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text (s, 2, value, -1, SQLITE_STATIC);
  if (rc != SQLITE_OK)
    return cat_error (c, rc, "set meta %s", key);
  return cat_step_done (c, s, "set meta");
}

int
catalog_get_meta (struct catalog *c, const char *key, char **value)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int rc, r;

  if (cat_prepare (c, "SELECT value FROM meta WHERE key = ?1",
                   &s, "get meta") == -1)
    return -1;
  rc = sqlite3_bind_text (s, 1, key, -1, SQLITE_STATIC);
  if (rc != SQLITE_OK)
    return cat_error (c, rc, "get meta %s", key);
  r = cat_step (c, s, "get meta");
  if (r == 0) {
    set_error (PB_E_NOTFOUND, 0, "catalog: no setting '%s'", key);
    return -1;
  }
  return r == -1 ? -1 : cat_col_text (s, 0, false, value, "meta");
}

/* ---- Transactions ---- */

int
catalog_begin (struct catalog *c)
{
  /* IMMEDIATE takes the write lock now, waiting up to the busy timeout:
   * a DEFERRED transaction upgrading later could fail with SQLITE_BUSY
   * without waiting, after work has been done. */
  return cat_exec (c, "BEGIN IMMEDIATE", "begin transaction");
}

int
catalog_commit (struct catalog *c)
{
  return cat_exec (c, "COMMIT", "commit");
}

int
catalog_rollback (struct catalog *c)
{
  if (!cat_in_transaction (c))
    return 0;                   /* nothing to undo: error paths call this */
  return cat_exec (c, "ROLLBACK", "rollback");
}

/* ---- Map nodes and chunks ---- */

/* Add DELTA (+1 or -1) to the refs of N ids (nodes or chunks).  UPDATE,
 * not upsert: an entry without a row is a zero chunk (never stored, never
 * counted) -- or a catalog missing a row, which at worst keeps something
 * forever.  CHECK (refs >= 0) turns a count that would go negative -- a
 * catalog whose counts are wrong -- into an error instead of hiding it. */
int
cat_adjust_refs (struct catalog *c, bool nodes, const uint8_t *ids, size_t n,
                 int delta)
{
  static const char *const sql[2][2] = {
    { "UPDATE chunk SET refs = refs - 1 WHERE id = ?1",
      "UPDATE chunk SET refs = refs + 1 WHERE id = ?1" },
    { "UPDATE map_node SET refs = refs - 1 WHERE id = ?1",
      "UPDATE map_node SET refs = refs + 1 WHERE id = ?1" },
  };
  static const enum cat_stmt which[2][2] = {
    { CAT_UNREF_CHUNK, CAT_REF_CHUNK }, { CAT_UNREF_NODE, CAT_REF_NODE },
  };
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, which[nodes][delta > 0], sql[nodes][delta > 0]);
  size_t i;

  if (s == NULL)
    return -1;
  for (i = 0; i < n; i++) {
    sqlite3_bind_blob (s, 1, ids + i * CATALOG_ID_LEN, CATALOG_ID_LEN,
                       SQLITE_STATIC);
    if (cat_step_done (c, s, "count references") == -1)
      return -1;
    sqlite3_reset (s);
  }
  return 0;
}

int
catalog_put_node (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                  uint32_t level, const void *data, size_t len,
                  const uint8_t *children, size_t nchildren)
{
  /* DO NOTHING on the id only: INSERT OR IGNORE would also silently skip
   * rows breaking a NOT NULL or CHECK constraint. */
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, CAT_PUT_NODE, "INSERT INTO map_node (id, level, data) "
                "VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING");
  int rc;

  if (s == NULL)
    return -1;
  rc = sqlite3_bind_blob (s, 1, id, CATALOG_ID_LEN, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64 (s, 2, level);
  /* A non-NULL pointer keeps an empty node a zero-length BLOB, not NULL. */
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_blob64 (s, 3, len ? data : "", len, SQLITE_STATIC);
  if (rc != SQLITE_OK)
    return cat_error (c, rc, "put node");
  if (cat_step_done (c, s, "put node") == -1)
    return -1;
  /* Already there: its children were counted when it was first put. */
  if (sqlite3_changes (c->db) == 0)
    return 0;
  /* A new node's entries each gain a reference. */
  return cat_adjust_refs (c, level > 0, children, nchildren, +1);
}

/* Copy the BLOB in column 0 of S into a malloc'd buffer. */
static int
copy_blob (sqlite3_stmt *s, void **data, size_t *len, const char *what)
{
  if (sqlite3_column_type (s, 0) != SQLITE_BLOB)
    return bad_column (s, 0, what);
  *len = sqlite3_column_bytes (s, 0);
  *data = malloc (*len ? *len : 1);
  if (*data == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    return -1;
  }
  if (*len)                     /* an empty BLOB reads back as NULL */
    memcpy (*data, sqlite3_column_blob (s, 0), *len);
  return 0;
}

int
catalog_get_node (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                  void **data, size_t *len)
{
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, CAT_GET_NODE, "SELECT data FROM map_node WHERE id = ?1");
  char hex[2 * CATALOG_ID_LEN + 1];
  int r;

  if (s == NULL)
    return -1;
  if (sqlite3_bind_blob (s, 1, id, CATALOG_ID_LEN, SQLITE_STATIC) != SQLITE_OK)
    return cat_error (c, sqlite3_extended_errcode (c->db), "get node");
  r = cat_step (c, s, "get node");
  if (r == 1)
    return copy_blob (s, data, len, "map node");
  if (r == 0) {
    hex_encode (id, CATALOG_ID_LEN, hex);
    set_error (PB_E_NOTFOUND, 0, "catalog: no map node %s", hex);
  }
  return -1;
}

int
catalog_add_chunk (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                   uint64_t stored_size)
{
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, CAT_ADD_CHUNK, "INSERT INTO chunk (id, stored_size) "
                "VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET "
                "stored_size = excluded.stored_size WHERE stored_size = 0");
  int rc;

  if (s == NULL)
    return -1;
  if (stored_size > INT64_MAX) {
    set_error (PB_E_FAIL, 0, "catalog: add chunk: size out of range");
    return -1;
  }
  rc = sqlite3_bind_blob (s, 1, id, CATALOG_ID_LEN, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64 (s, 2, (int64_t) stored_size);
  if (rc != SQLITE_OK)
    return cat_error (c, rc, "add chunk");
  return cat_step_done (c, s, "add chunk");
}

/* ---- Integrity ---- */

/* The full check rather than quick_check: it also verifies UNIQUE indexes
 * and CHECK constraints (the 32-byte ids), and a catalog is small. */
/* PRAGMA integrity_check reports "*** in database main ***" and then the
 * problem on a new line: keep the message on one line. */
static int
damaged (struct catalog *c, const char *res)
{
  char one[512];
  char *p;

  if (strncmp (res, "*** ", 4) == 0 && strchr (res, '\n'))
    res = strchr (res, '\n') + 1;
  snprintf (one, sizeof one, "%s", res);
  for (p = one; (p = strchr (p, '\n')) != NULL; )
    *p = ' ';
  set_error (PB_E_CORRUPT, 0, "catalog %s is damaged: %s", c->path, one);
  return -1;
}

/* The full check rather than quick_check: it also verifies UNIQUE indexes
 * and CHECK constraints (the 32-byte ids), and a catalog is small. */
static int
check_integrity (struct catalog *c)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  const char *res;
  int r;

  if (cat_prepare (c, "PRAGMA integrity_check (1)", &s,
                   "integrity check") == -1)
    return -1;
  r = cat_step (c, s, "integrity check");
  if (r == -1)
    return -1;
  res = r ? (const char *) sqlite3_column_text (s, 0) : NULL;
  if (res == NULL || strcmp (res, "ok") != 0)
    return damaged (c, res ? res : "integrity check gave no result");
  return 0;
}

/* Only the first violation: the message says what to look at. */
static int
check_foreign_keys (struct catalog *c)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  const char *table, *parent;
  char msg[256], row[32] = "";
  int r;

  if (cat_prepare (c, "PRAGMA foreign_key_check", &s,
                   "foreign key check") == -1)
    return -1;
  r = cat_step (c, s, "foreign key check");
  if (r <= 0)
    return r;
  table = (const char *) sqlite3_column_text (s, 0);
  parent = (const char *) sqlite3_column_text (s, 2);
  /* WITHOUT ROWID tables (point_disk) have no rowid to name. */
  if (sqlite3_column_type (s, 1) == SQLITE_INTEGER)
    snprintf (row, sizeof row, " (rowid %lld)",
              (long long) sqlite3_column_int64 (s, 1));
  snprintf (msg, sizeof msg, "a row of table %s%s refers to a missing row "
            "of table %s", table ? table : "?", row, parent ? parent : "?");
  return damaged (c, msg);
}

int
catalog_check (struct catalog *c)
{
  if (check_integrity (c) == -1)
    return -1;
  return check_foreign_keys (c);
}
