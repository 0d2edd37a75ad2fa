/* pullback - reader/maptree.h: a disk's chunk map as a tree of nodes.
 *
 * The map of a disk at a point is the ordered list of its chunk ids.  It is
 * stored as a tree of content-addressed nodes of up to MAPTREE_FANOUT ids:
 * level 0 nodes hold chunk ids, level k nodes hold ids of level k-1 nodes,
 * and the single top node is the root.  Nodes are kept in the store (so the
 * store describes itself) and in the catalog (fast lookups).
 *
 * Why a tree: an incremental point shares every unchanged node with its
 * parent, so it adds only about (changed chunks x levels) nodes, and reading
 * any point's map costs the same whatever the length of its chain.  The
 * exact node encoding is in docs/FORMAT.md.
 */
#ifndef PB_READER_MAPTREE_H
#define PB_READER_MAPTREE_H

#include <stdint.h>

#include "internal.h"

#define MAPTREE_FANOUT 256
#define MAPTREE_HEADER 16
#define MAPTREE_MAGIC "PBMN"
#define MAPTREE_MAX_LEVELS 8

/* Levels of the tree over NCHUNKS chunks (>= 1). */
uint32_t maptree_levels (uint64_t nchunks);

/* The entries of a node's plain bytes (checked: magic, version, length):
 * *ENTRIES points into DATA, *N of them.  -1 PB_E_CORRUPT if malformed. */
int maptree_node_entries (const void *data, size_t len,
                          const uint8_t **entries, size_t *n);

/* ---- Writer: chunk ids in order in, root out ---- */
struct maptree_writer;

/* NCHUNKS ids will be added.  New nodes are written to the store and into
 * BATCH.  Also computes the content digest (SHA-256 of the ids). */
struct maptree_writer *maptree_writer_new (struct pullback_repo *r,
                                           struct catalog_batch *batch,
                                           uint64_t nchunks);
int maptree_writer_add (struct maptree_writer *w, const store_id *id);
/* ID COUNT times (a run of zero chunks). */
int maptree_writer_add_run (struct maptree_writer *w, const store_id *id,
                            uint64_t count);
/* After exactly NCHUNKS adds.  *NEW_BYTES += bytes the new nodes took in
 * the store. */
int maptree_writer_finish (struct maptree_writer *w, store_id *root,
                           uint32_t *levels, uint8_t digest[32],
                           uint64_t *new_bytes);
void maptree_writer_free (struct maptree_writer *w);

/* ---- Reader: random access, fastest in ascending order ---- */
struct maptree_reader;

/* Every node read is checked: its id, magic, level and entry count must be
 * what the tree's shape for NCHUNKS requires (else PB_E_CORRUPT). */
struct maptree_reader *maptree_reader_new (struct pullback_repo *r,
                                           const store_id *root,
                                           uint32_t levels, uint64_t nchunks);
int maptree_reader_get (struct maptree_reader *t, uint64_t index, store_id *id);
void maptree_reader_free (struct maptree_reader *t);

/* Call CB for every node id of the tree (top-down), e.g. for verify. */
int maptree_reader_nodes (struct maptree_reader *t,
                          int (*cb) (const store_id *id, void *opaque),
                          void *opaque);

#endif /* PB_READER_MAPTREE_H */
