/* pullback - catalog/catalog.h: the SQLite catalog (public header of catalog/).
 *
 * The catalog is an index over the store: VMs, points (one per backup of a
 * whole VM), their disks, parents and checkpoints, the chunk-map tree nodes
 * each disk's map is made of, and the chunks known to be in the store.
 * A point's chunk map is a tree of content-addressed nodes (see
 * reader/maptree.c and docs/DESIGN.md): an incremental adds only the nodes
 * on the paths to the chunks it changed, so catalog growth follows the
 * changed chunks, and restoring any point reads one tree, whatever the
 * chain length.
 *
 * This module never includes store.h: ids are plain 32-byte arrays here.
 * One struct catalog is used by one thread at a time.  SQLite runs in WAL
 * mode with foreign keys on; writers use BEGIN IMMEDIATE with a busy
 * timeout.  Errors: -1 or NULL with set_error(); SQLite errors are
 * translated with context (SQLITE_BUSY -> PB_E_BUSY, I/O -> PB_E_IO).
 */
#ifndef PB_CATALOG_H
#define PB_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#define CATALOG_ID_LEN 32
#define CATALOG_SCHEMA_VERSION 1

struct catalog;

struct catalog_disk {
  char *name;                       /* "vda" */
  uint64_t size;                    /* virtual size in bytes at this point */
  uint32_t chunk_size;
  uint32_t map_levels;              /* height of the map tree, >= 1 */
  uint8_t map_root[CATALOG_ID_LEN]; /* id of the root map node */
  uint8_t digest[CATALOG_ID_LEN];   /* content digest (docs/FORMAT.md) */
  uint64_t bytes_read;              /* payload bytes fetched over NBD */
  uint64_t bytes_new;               /* bytes this point added to the store */
  uint64_t chunks_changed;          /* chunks read or zeroed (not kept) */
};

struct catalog_point {
  int64_t id;                       /* > 0 */
  char *vm;
  int64_t parent;                   /* 0 = none (full) */
  char *mode;                       /* "full" or "incremental" */
  char *checkpoint;                 /* checkpoint taken with it, or NULL */
  char *since;                      /* checkpoint it was based on, or NULL */
  int64_t started, finished;        /* seconds since the epoch, UTC */
  size_t ndisks;
  struct catalog_disk *disks;
};

/* Create a new catalog file (PB_E_REPO if it exists) / open an existing one
 * (PB_E_REPO if absent, not a catalog, or of a newer schema version). */
struct catalog *catalog_create (const char *path);
struct catalog *catalog_open (const char *path);
void catalog_close (struct catalog *c);           /* accepts NULL */

/* Key/value settings (schema_version is kept there too). */
int catalog_set_meta (struct catalog *c, const char *key, const char *value);
/* *VALUE malloc'd; -1 PB_E_NOTFOUND if absent. */
int catalog_get_meta (struct catalog *c, const char *key, char **value);

/* Write transactions (BEGIN IMMEDIATE).  rollback accepts "no transaction". */
int catalog_begin (struct catalog *c);
int catalog_commit (struct catalog *c);
int catalog_rollback (struct catalog *c);

/* Inside a transaction: the id the next point will get (max + 1). */
int catalog_next_point_id (struct catalog *c, int64_t *id);

/* Insert P with its disks (P->id set by the caller, from
 * catalog_next_point_id or from a store record).  Creates the VM row if
 * needed.  Fails (PB_E_FAIL) if the parent is not in the catalog or if any
 * disk's map_root is not a node in the catalog. */
int catalog_add_point (struct catalog *c, const struct catalog_point *p);

/* NULL with PB_E_NOTFOUND if there is no such point. */
struct catalog_point *catalog_get_point (struct catalog *c, int64_t id);
void catalog_point_free (struct catalog_point *p); /* accepts NULL */

/* Points in ascending id order, of one VM or (VM == NULL) of all. */
int catalog_list_points (struct catalog *c, const char *vm,
                         struct catalog_point ***points, size_t *n);
void catalog_points_free (struct catalog_point **points, size_t n);

/* The newest point of VM recorded with checkpoint CHECKPOINT.
 * -1 with PB_E_CHECKPOINT if none (message names the VM, the checkpoint and
 * the checkpoints the catalog does know for that VM). */
int catalog_find_checkpoint (struct catalog *c, const char *vm,
                             const char *checkpoint, int64_t *id);

/* The newest point of VM (VM == NULL: of all VMs); -1 PB_E_NOTFOUND if
 * there is none. */
int catalog_latest_point (struct catalog *c, const char *vm, int64_t *id);

/* Map-tree nodes, content-addressed: put is INSERT OR IGNORE. */
int catalog_put_node (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                      uint32_t level, const void *data, size_t len);
/* *DATA malloc'd; -1 PB_E_NOTFOUND if absent. */
int catalog_get_node (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                      void **data, size_t *len);

/* Chunks known to be in the store (INSERT OR IGNORE), with stored size. */
int catalog_add_chunk (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                       uint64_t stored_size);

/* Run SQLite's integrity check; 0 if "ok", -1 PB_E_CORRUPT otherwise. */
int catalog_check (struct catalog *c);

#endif /* PB_CATALOG_H */
