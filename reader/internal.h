/* pullback - reader/internal.h: what the libpullback operations share.
 *
 * The repository handle (store + catalog), the interrupt flag, a batch of
 * catalog rows written in few transactions, and a set of ids (verify).
 * Not installed: vendors see only pullback.h.
 */
#ifndef PB_READER_INTERNAL_H
#define PB_READER_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "pullback.h"
#include "store.h"

struct pullback_repo {
  char *dir;
  struct store *store;
  struct catalog *cat;
};

/* Set by pullback_interrupt(); polled once per chunk. */
extern volatile sig_atomic_t pullback_interrupted;

/* -1 with PB_E_INTERRUPTED if pullback_interrupt() was called, else 0. */
int check_interrupt (void);

/* ---- Catalog batches ----
 * Map nodes and "chunk is in the store" rows are content-addressed and
 * harmless when orphaned, so they go into the catalog in batches of a few
 * hundred rows per transaction instead of one fsync per row.  The point
 * itself is committed separately, after store_sync(). */
struct catalog_batch;

struct catalog_batch *catalog_batch_new (struct catalog *cat);
int catalog_batch_node (struct catalog_batch *b, const store_id *id,
                        uint32_t level, const void *data, size_t len);
int catalog_batch_chunk (struct catalog_batch *b, const store_id *id,
                         uint64_t stored);
int catalog_batch_flush (struct catalog_batch *b);
void catalog_batch_free (struct catalog_batch *b);  /* drops unflushed rows */

/* ---- Id sets (open addressing; ids are uniformly random already) ---- */
struct idset;

struct idset *idset_new (void);
void idset_free (struct idset *set);
/* Returns the slot's value pointer, inserting ID (with value 0) if absent;
 * *ADDED tells which.  NULL on out of memory (error recorded). */
uint64_t *idset_insert (struct idset *set, const store_id *id, bool *added);
uint64_t *idset_find (struct idset *set, const store_id *id);

/* Human-readable id prefix for messages: the first 16 hex digits. */
void id_short (const store_id *id, char out[17]);

#endif /* PB_READER_INTERNAL_H */
