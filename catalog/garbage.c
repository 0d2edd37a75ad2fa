/* pullback - catalog/garbage.c: finding and dropping garbage, recounting
 * references, and the totals `pullback stats` prints.
 *
 * Garbage is an object row with refs = 0 that no writer lease pins.  The
 * partial indexes map_node_garbage and chunk_garbage hold exactly the rows
 * with refs = 0, so finding garbage reads the garbage, not the catalog.
 * The catalog does not parse map nodes: the caller (reader/gc.c) reads a
 * garbage node's children from its data and lowers their counts here.
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

static const char garbage_nodes[] =
  "SELECT id, level, data FROM map_node INDEXED BY map_node_garbage "
  "WHERE refs = 0 AND NOT EXISTS (SELECT 1 FROM pin WHERE pin.id = map_node.id)";
static const char garbage_chunks[] =
  "SELECT id, stored_size FROM chunk INDEXED BY chunk_garbage "
  "WHERE refs = 0 AND NOT EXISTS (SELECT 1 FROM pin WHERE pin.id = chunk.id)";

void
catalog_garbage_free (struct catalog_garbage *g, size_t n)
{
  size_t i;

  for (i = 0; g && i < n; i++)
    free (g[i].data);
  free (g);
}

/* The garbage row at S (a garbage_nodes or garbage_chunks query). */
static int
read_garbage (sqlite3_stmt *s, bool nodes, struct catalog_garbage *g)
{
  int64_t v;
  const void *blob;

  memset (g, 0, sizeof *g);
  if (cat_col_id (s, 0, g->id, "garbage") == -1 ||
      cat_col_int (s, 1, 0, nodes ? UINT32_MAX : INT64_MAX, &v,
                   "garbage") == -1)
    return -1;
  if (!nodes) {
    g->stored_size = v;
    return 0;
  }
  g->level = v;
  g->len = sqlite3_column_bytes (s, 2);
  blob = sqlite3_column_blob (s, 2);
  g->data = malloc (g->len ? g->len : 1);
  if (g->data == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    return -1;
  }
  if (g->len)
    memcpy (g->data, blob, g->len);
  g->stored_size = 24 + g->len;         /* container header + raw node */
  return 0;
}

int
catalog_garbage (struct catalog *c, bool nodes, size_t max,
                 struct catalog_garbage **out, size_t *n)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  char sql[512];
  int r = 0;

  *n = 0;
  *out = calloc (max ? max : 1, sizeof **out);
  if (*out == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  snprintf (sql, sizeof sql, "%s LIMIT %zu",
            nodes ? garbage_nodes : garbage_chunks, max);
  if (cat_prepare (c, sql, &s, "find garbage") == -1)
    return -1;
  while (*n < max && (r = cat_step (c, s, "find garbage")) == 1) {
    if (read_garbage (s, nodes, &(*out)[*n]) == -1)
      return -1;
    (*n)++;
  }
  return r == -1 ? -1 : 0;
}

/* CB for every row of SQL (id, level/stored_size[, data]). */
static int
foreach_row (struct catalog *c, const char *sql, bool nodes,
             int (*cb) (const struct catalog_garbage *g, void *opaque),
             void *opaque)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  struct catalog_garbage g;
  int r, ret;

  if (cat_prepare (c, sql, &s, "walk rows") == -1)
    return -1;
  while ((r = cat_step (c, s, "walk rows")) == 1) {
    if (read_garbage (s, nodes, &g) == -1)
      return -1;
    ret = cb (&g, opaque);
    free (g.data);
    if (ret == -1)
      return -1;
  }
  return r;
}

int
catalog_foreach_garbage (struct catalog *c, bool nodes,
                         int (*cb) (const struct catalog_garbage *g,
                                    void *opaque), void *opaque)
{
  return foreach_row (c, nodes ? garbage_nodes : garbage_chunks, nodes,
                      cb, opaque);
}

int
catalog_unref (struct catalog *c, bool nodes, const uint8_t *ids, size_t n)
{
  return cat_adjust_refs (c, nodes, ids, n, -1);
}

int
catalog_delete_object (struct catalog *c, bool node,
                       const uint8_t id[CATALOG_ID_LEN])
{
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, node ? CAT_DELETE_NODE : CAT_DELETE_CHUNK,
                node ? "DELETE FROM map_node WHERE id = ?1"
                : "DELETE FROM chunk WHERE id = ?1");

  if (s == NULL)
    return -1;
  sqlite3_bind_blob (s, 1, id, CATALOG_ID_LEN, SQLITE_STATIC);
  return cat_step_done (c, s, "delete garbage");
}

int
catalog_object_refs (struct catalog *c, bool node,
                     const uint8_t id[CATALOG_ID_LEN],
                     int64_t *refs, bool *pinned)
{
  /* Cached: gc --dry-run and stats ask this once per garbage entry. */
  CLEANUP_RESET sqlite3_stmt *s =
    cat_cached (c, node ? CAT_REFS_NODE : CAT_REFS_CHUNK,
                node ? "SELECT refs, EXISTS (SELECT 1 FROM pin WHERE "
                "pin.id = ?1) FROM map_node WHERE id = ?1"
                : "SELECT refs, EXISTS (SELECT 1 FROM pin WHERE "
                "pin.id = ?1) FROM chunk WHERE id = ?1");
  int r;

  if (s == NULL)
    return -1;
  sqlite3_bind_blob (s, 1, id, CATALOG_ID_LEN, SQLITE_STATIC);
  r = cat_step (c, s, "object refs");
  if (r == 1) {
    *refs = sqlite3_column_int64 (s, 0);
    *pinned = sqlite3_column_int (s, 1) != 0;
  }
  return r;
}

/* ---- Recounting ---- */

int
catalog_foreach_node (struct catalog *c,
                      int (*cb) (const struct catalog_garbage *node,
                                 void *opaque), void *opaque)
{
  return foreach_row (c, "SELECT id, level, data FROM map_node", true,
                      cb, opaque);
}

int
catalog_foreach_root (struct catalog *c,
                      int (*cb) (const uint8_t id[CATALOG_ID_LEN],
                                 void *opaque), void *opaque)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  uint8_t id[CATALOG_ID_LEN];
  int r;

  if (cat_prepare (c, "SELECT map_root FROM point_disk", &s,
                   "walk roots") == -1)
    return -1;
  while ((r = cat_step (c, s, "walk roots")) == 1)
    if (cat_col_id (s, 0, id, "point_disk") == -1 || cb (id, opaque) == -1)
      return -1;
  return r;
}

int
catalog_set_refs (struct catalog *c, bool node,
                  const uint8_t id[CATALOG_ID_LEN], int64_t refs)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;

  if (cat_prepare (c, node ? "UPDATE map_node SET refs = ?2 WHERE id = ?1"
                   : "UPDATE chunk SET refs = ?2 WHERE id = ?1", &s,
                   "set refs") == -1)
    return -1;
  sqlite3_bind_blob (s, 1, id, CATALOG_ID_LEN, SQLITE_STATIC);
  sqlite3_bind_int64 (s, 2, refs);
  return cat_step_done (c, s, "set refs");
}

int
catalog_zero_refs (struct catalog *c)
{
  return cat_exec (c, "UPDATE map_node SET refs = 0 WHERE refs <> 0; "
                   "UPDATE chunk SET refs = 0 WHERE refs <> 0", "zero refs");
}

int
catalog_mark_refs_valid (struct catalog *c)
{
  return catalog_set_meta (c, "refs_valid", "1");
}

/* ---- Totals ---- */

static int
total (struct catalog *c, const char *sql, uint64_t *out)
{
  CLEANUP_FINALIZE sqlite3_stmt *s = NULL;
  int64_t v = 0;
  int r;

  if (cat_prepare (c, sql, &s, "totals") == -1)
    return -1;
  r = cat_step (c, s, "totals");
  if (r == 1 && sqlite3_column_type (s, 0) != SQLITE_NULL &&
      cat_col_int (s, 0, 0, INT64_MAX, &v, "totals") == -1)
    return -1;
  *out = v;
  return r == -1 ? -1 : 0;
}

int
catalog_totals (struct catalog *c, struct catalog_totals *t)
{
  memset (t, 0, sizeof *t);
  if (total (c, "SELECT count (DISTINCT vm_id) FROM point WHERE hidden = 0",
             &t->vms) == -1 ||
      total (c, "SELECT count (*) FROM point WHERE hidden = 0",
             &t->points) == -1 ||
      total (c, "SELECT sum (d.size) FROM point_disk d JOIN point p "
             "ON p.id = d.point_id WHERE p.hidden = 0",
             &t->logical_bytes) == -1 ||
      total (c, "SELECT count (*) FROM chunk WHERE refs > 0",
             &t->chunks) == -1 ||
      total (c, "SELECT sum (stored_size) FROM chunk WHERE refs > 0",
             &t->chunk_bytes) == -1 ||
      total (c, "SELECT count (*) FROM map_node WHERE refs > 0",
             &t->nodes) == -1 ||
      total (c, "SELECT sum (24 + length (data)) FROM map_node "
             "WHERE refs > 0", &t->node_bytes) == -1 ||
      total (c, "SELECT (SELECT coalesce (sum (stored_size), 0) FROM chunk) + "
             "(SELECT coalesce (sum (24 + length (data)), 0) FROM map_node)",
             &t->all_bytes) == -1)
    return -1;
  if (total (c, "SELECT count (*) FROM lease", &t->leases) == -1)
    return -1;
  return total (c, "SELECT (SELECT count (*) FROM chunk WHERE refs = 0 AND "
                "EXISTS (SELECT 1 FROM pin WHERE pin.id = chunk.id)) + "
                "(SELECT count (*) FROM map_node WHERE refs = 0 AND "
                "EXISTS (SELECT 1 FROM pin WHERE pin.id = map_node.id))",
                &t->pinned_garbage);
}
