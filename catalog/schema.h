/* pullback - catalog/schema.h: private header of the catalog sources.
 *
 * catalog.h is the module's contract; this header holds what catalog.c,
 * schema.c and points.c share and nobody else may see: the definition of
 * struct catalog, the schema entry points (schema.c), and the thin helpers
 * over SQLite (catalog.c) that translate its errors into pb_set_error() classes
 * and validate column values read back from the file.  Keeping the helpers
 * in one place is what keeps every SQLite failure reported with context and
 * every prepared statement released on every path.
 *
 * Never include this outside catalog/: the rest of pullback must not depend
 * on SQLite.
 */
#ifndef PB_CATALOG_SCHEMA_H
#define PB_CATALOG_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "catalog.h"

/* PRAGMA application_id of every catalog: "PBK1".  Lets file(1) and our
 * own open tell a pullback catalog from any other SQLite database before
 * anything is written to it. */
#define CATALOG_APPLICATION_ID 0x50424b31

/* Busy timeout for lock waits; PULLBACK_BUSY_TIMEOUT_MS overrides it (the
 * unit test uses that to stay fast). */
#define CATALOG_BUSY_TIMEOUT_MS 10000

/* Statements run often enough (once per map node or chunk of a backup) to
 * be worth keeping prepared for the life of the handle. */
enum cat_stmt {
  CAT_PUT_NODE,
  CAT_GET_NODE,
  CAT_NODE_EXISTS,
  CAT_ADD_CHUNK,
  CAT_POINT_DISKS,
  CAT_REF_NODE,
  CAT_REF_CHUNK,
  CAT_PIN,
  CAT_UNREF_NODE,
  CAT_UNREF_CHUNK,
  CAT_REFS_NODE,
  CAT_REFS_CHUNK,
  CAT_DELETE_NODE,
  CAT_DELETE_CHUNK,
  CAT_NSTMTS
};

struct catalog {
  sqlite3 *db;
  char *path;
  int version;                       /* schema version found on open */
  sqlite3_stmt *stmts[CAT_NSTMTS];   /* lazily prepared, see cat_cached */
};

/* ---- schema.c ---- */

/* Connection settings applied on every open (WAL, synchronous=FULL,
 * foreign keys, trusted_schema off).  Must run outside a transaction. */
int schema_pragmas (struct catalog *c);
/* Create every table, index and meta row of the current version in one
 * transaction, on a new empty database. */
int schema_create (struct catalog *c);
/* Refuse anything that is not a pullback catalog of a version we know
 * (PB_E_REPO).  Reads only: safe on a file that is not ours. */
int schema_check (struct catalog *c);
/* Bring an older catalog (version found by schema_check) up to
 * CATALOG_SCHEMA_VERSION in one transaction; a no-op when current. */
int schema_upgrade (struct catalog *c);

/* ---- catalog.c: SQLite helpers ---- */

/* Record the SQLite failure RC with context "catalog: WHAT: message",
 * mapping RC to an error class.  Always returns -1. */
int cat_error (struct catalog *c, int rc, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* The pullback error class of a SQLite result code. */
int cat_errclass (int rc);

/* Run SQL (one or more statements, no results). */
int cat_exec (struct catalog *c, const char *sql, const char *what);
/* Prepare a one-off statement: finalize it with CLEANUP_FINALIZE. */
int cat_prepare (struct catalog *c, const char *sql, sqlite3_stmt **stmt,
                 const char *what);
/* A cached statement (prepared on first use from SQL), ready to bind.
 * NULL on error.  Hold it in a CLEANUP_RESET variable. */
sqlite3_stmt *cat_cached (struct catalog *c, enum cat_stmt which,
                          const char *sql);
/* Step: 1 = a row, 0 = done, -1 = error recorded with context WHAT. */
int cat_step (struct catalog *c, sqlite3_stmt *s, const char *what);
/* Step a statement that must not return rows: 0 or -1. */
int cat_step_done (struct catalog *c, sqlite3_stmt *s, const char *what);

/* Column readers that refuse values a well-formed catalog cannot hold,
 * recording PB_E_CORRUPT ("catalog: WHAT: bad COLUMN").  Return 0 or -1. */
int cat_col_int (sqlite3_stmt *s, int i, int64_t min, int64_t max,
                 int64_t *out, const char *what);
int cat_col_id (sqlite3_stmt *s, int i, uint8_t out[CATALOG_ID_LEN],
                const char *what);
/* malloc'd copy of a TEXT column; NULL allowed only if NULLABLE. */
int cat_col_text (sqlite3_stmt *s, int i, bool nullable, char **out,
                  const char *what);

/* refs += DELTA (+1 or -1) for N 32-byte ids of nodes or chunks. */
int cat_adjust_refs (struct catalog *c, bool nodes, const uint8_t *ids,
                     size_t n, int delta);

/* True while a transaction (ours or the caller's) is open. */
bool cat_in_transaction (struct catalog *c);

static inline void
cat_finalize (sqlite3_stmt **s)
{
  sqlite3_finalize (*s);              /* harmless on NULL */
}

/* Cached statements are reset, not finalized, and their bindings cleared
 * so that no blob pointer outlives the call that bound it. */
static inline void
cat_reset (sqlite3_stmt **s)
{
  if (*s) {
    sqlite3_reset (*s);
    sqlite3_clear_bindings (*s);
  }
}

#define CLEANUP_FINALIZE __attribute__ ((cleanup (cat_finalize)))
#define CLEANUP_RESET __attribute__ ((cleanup (cat_reset)))

#endif /* PB_CATALOG_SCHEMA_H */
