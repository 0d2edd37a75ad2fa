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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CATALOG_ID_LEN 32
#define CATALOG_SCHEMA_VERSION 2

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
  bool is_protected;                /* shielded from every removal */
  bool hidden;                      /* forgotten, kept only as a base */
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

/* Points in ascending id order, of one VM or (VM == NULL) of all;
 * hidden points (forgotten bases) are not listed. */
int catalog_list_points (struct catalog *c, const char *vm,
                         struct catalog_point ***points, size_t *n);
void catalog_points_free (struct catalog_point **points, size_t n);

/* The newest point of VM recorded with checkpoint CHECKPOINT.
 * -1 with PB_E_CHECKPOINT if none (message names the VM, the checkpoint and
 * the checkpoints the catalog does know for that VM). */
int catalog_find_checkpoint (struct catalog *c, const char *vm,
                             const char *checkpoint, int64_t *id);

/* The newest point of VM (VM == NULL: of all VMs), hidden ones not
 * counted; -1 PB_E_NOTFOUND if there is none. */
int catalog_latest_point (struct catalog *c, const char *vm, int64_t *id);

/* Map-tree nodes, content-addressed: put is INSERT OR IGNORE.  CHILDREN
 * are the node's NCHILDREN entries (32 bytes each: chunk ids at level 0,
 * node ids above): when the row is new, each child's reference count goes
 * up by one (a child without a row -- a zero chunk -- is not counted). */
int catalog_put_node (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                      uint32_t level, const void *data, size_t len,
                      const uint8_t *children, size_t nchildren);
/* *DATA malloc'd; -1 PB_E_NOTFOUND if absent. */
int catalog_get_node (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                      void **data, size_t *len);

/* Chunks known to be in the store (INSERT OR IGNORE), with stored size
 * (which replaces a 0 recorded earlier). */
int catalog_add_chunk (struct catalog *c, const uint8_t id[CATALOG_ID_LEN],
                       uint64_t stored_size);

/* Run SQLite's integrity check; 0 if "ok", -1 PB_E_CORRUPT otherwise. */
int catalog_check (struct catalog *c);

/* ---- Space management (catalog/space.c) ----
 * Reference counts: map_node.refs and chunk.refs count the references to
 * an object from map nodes present in the catalog (every entry of a node
 * counts, live or not) and, for nodes, from point_disk roots.  An object
 * with refs = 0 is garbage unless a writer lease pins it.  Removing a point
 * only lowers its roots' counts (cost: its disks); garbage collection then
 * deletes garbage nodes level by level, lowering their children's counts.
 * catalog_refs_valid is false after an upgrade from version 1, until the
 * counts have been computed (catalog_set_refs). */
bool catalog_refs_valid (struct catalog *c);

/* Protect or unprotect point ID; PB_E_NOTFOUND if it does not exist. */
int catalog_set_protected (struct catalog *c, int64_t id, bool on);

/* Inside a transaction.  Remove point ID: its children (incrementals based
 * on it) get its parent as theirs, its roots lose one reference each, its
 * rows go.  hide: keep the rows and counts but mark it hidden. */
int catalog_remove_point (struct catalog *c, int64_t id);
int catalog_hide_point (struct catalog *c, int64_t id);
/* Hidden points of VM older than BEFORE (malloc'd array). */
int catalog_hidden_points (struct catalog *c, const char *vm, int64_t before,
                           int64_t **ids, size_t *n);

/* Writer leases: one per running backup, one per VM.  Inside the caller's
 * transaction.  take: PB_E_BUSY if a live process holds VM's lease (a
 * stale one, of a dead process, is replaced).  */
int catalog_lease_take (struct catalog *c, const char *vm, int64_t *lease);
int catalog_lease_set_base (struct catalog *c, int64_t lease, int64_t point);
/* Own transaction unless inside one.  Drops the lease and its pins. */
int catalog_lease_drop (struct catalog *c, int64_t lease);
/* Drop leases of processes that are gone; *CLEARED = how many. */
int catalog_clear_stale_leases (struct catalog *c, uint64_t *cleared);
/* 1 (and a description in WHO) if a live backup uses point ID as its
 * base, 0 if not, -1 on error. */
int catalog_point_in_use (struct catalog *c, int64_t id, char *who, size_t len);

/* Pin ID for LEASE (INSERT OR IGNORE): garbage collection leaves a pinned
 * object alone even with refs = 0.  Used inside batches or alone. */
int catalog_pin (struct catalog *c, int64_t lease, const uint8_t id[CATALOG_ID_LEN]);

/* Garbage: up to MAX unpinned objects with refs = 0.  Nodes come with
 * their data (free it); chunks with their stored size. */
struct catalog_garbage {
  uint8_t id[CATALOG_ID_LEN];
  uint32_t level;
  uint64_t stored_size;
  void *data;
  size_t len;
};
int catalog_garbage (struct catalog *c, bool nodes, size_t max,
                     struct catalog_garbage **out, size_t *n);
void catalog_garbage_free (struct catalog_garbage *g, size_t n);
/* Lower by one the counts of N ids (chunks, or nodes) and delete one row. */
int catalog_unref (struct catalog *c, bool nodes, const uint8_t *ids, size_t n);
int catalog_delete_object (struct catalog *c, bool node,
                           const uint8_t id[CATALOG_ID_LEN]);
/* refs of a node or chunk row, and whether it is pinned: 1 if the row
 * exists, 0 if not, -1 on error. */
int catalog_object_refs (struct catalog *c, bool node,
                         const uint8_t id[CATALOG_ID_LEN],
                         int64_t *refs, bool *pinned);
/* Call CB for every unpinned garbage node or chunk (read-only walk). */
int catalog_foreach_garbage (struct catalog *c, bool nodes,
                             int (*cb) (const struct catalog_garbage *g,
                                        void *opaque), void *opaque);

/* Recounting (upgrade from version 1, verify): every map_node row and every
 * root of a point, one by one. */
int catalog_foreach_node (struct catalog *c,
                          int (*cb) (const struct catalog_garbage *node,
                                     void *opaque), void *opaque);
int catalog_foreach_root (struct catalog *c,
                          int (*cb) (const uint8_t id[CATALOG_ID_LEN],
                                     void *opaque), void *opaque);
/* Inside a transaction: set the refs of an object (recount) and mark the
 * counts valid. */
int catalog_set_refs (struct catalog *c, bool node,
                      const uint8_t id[CATALOG_ID_LEN], int64_t refs);
int catalog_zero_refs (struct catalog *c);
int catalog_mark_refs_valid (struct catalog *c);

/* Totals for `pullback stats`. */
struct catalog_totals {
  uint64_t vms, points, logical_bytes;
  uint64_t chunks, chunk_bytes;        /* live chunks and their stored size */
  uint64_t nodes, node_bytes;          /* live map nodes, 24 + length each */
  uint64_t all_bytes;                  /* every object the catalog knows */
  uint64_t leases;
  uint64_t pinned_garbage;             /* refs = 0 but pinned by a lease */
};
int catalog_totals (struct catalog *c, struct catalog_totals *t);

/* SQLite's synchronous setting for this handle: FULL (default) for
 * commits that must survive power loss, NORMAL for rows that only matter
 * once a later FULL commit (the point's) has made the WAL durable. */
int catalog_set_durable (struct catalog *c, bool full);

#endif /* PB_CATALOG_H */
