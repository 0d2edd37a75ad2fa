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

/* Remove point ID's record from the store ("points/NNNNNNNNNN"), once the
 * catalog no longer has the point: a catalog rebuilt from the store must
 * not bring it back. */
int repo_delete_point_record (struct pullback_repo *r, int64_t id);

/* Compute every reference count from the rows (after an upgrade from
 * catalog version 1), reader/gc.c. */
int repo_recount (struct pullback_repo *r);

/* reader/record.c: 0 if point P's record in the store says what the
 * catalog says (identity, and each disk's size, chunk size, map tree and
 * digest; only disk ONLY if not NULL), else -1 (PB_E_CORRUPT naming the
 * field, or the record's own damage). */
int point_record_check (struct pullback_repo *r, const struct catalog_point *p,
                        const struct catalog_disk *only);

/* reader/record.c: point ID as its record in the store describes it,
 * every field checked (types, ranges, the repository's uuid and chunk
 * size, the tree's height); NULL with PB_E_CORRUPT naming the field. */
struct catalog_point *point_record_load (struct pullback_repo *r, int64_t id);

/* reader/tmpfile.c: the temporary image beside a restore target.  create:
 * DIR/.NAME.pullback-XXXXXX, open (*FD) and locked.  lock: hold an
 * existing one (after qemu-img made it anew).  sweep: remove those killed
 * restores left (unlocked, untouched for a minute); how many.  Sweeping is
 * best effort: errors are ignored. */
int target_tmp_create (const char *target, char **path, int *fd);
int target_tmp_lock (const char *path, int *fd);
unsigned target_tmp_sweep (const char *target);

/* The two halves of point_record_check, apart so that fuzz/fuzz-record.c
 * can drive them without a repository: parse the record's text (a JSON
 * object, else NULL with PB_E_CORRUPT naming point ID and record NAME),
 * and compare it with P for the repository of uuid UUID (as
 * point_record_check does). */
struct json_object;
struct json_object *point_record_parse (const char *text, int64_t id,
                                        const char *name);
int point_record_compare (struct json_object *rec, const char *uuid,
                          const struct catalog_point *p,
                          const struct catalog_disk *only);

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

/* LEASE: the backup's writer lease (rows are pinned for it), or 0. */
struct catalog_batch *catalog_batch_new (struct catalog *cat,
                                         struct store *store, int64_t lease);
int catalog_batch_node (struct catalog_batch *b, const store_id *id,
                        uint32_t level, const void *data, size_t len);
int catalog_batch_chunk (struct catalog_batch *b, const store_id *id,
                         uint64_t stored);
int catalog_batch_flush (struct catalog_batch *b);
void catalog_batch_free (struct catalog_batch *b);  /* drops unflushed rows */
/* Pin ID for the backup's lease, in a transaction of its own, before the
 * store is asked for it or it is written: so a concurrent gc cannot
 * delete an object found present (0 or -1). */
int batch_pin (struct catalog_batch *b, const store_id *id);
/* The same for N ids, in one transaction (a backup pins the chunks of
 * several reads at once). */
int batch_pin_many (struct catalog_batch *b, const store_id *ids, size_t n);
/* Pin, then store_put_chunk, on this thread (map nodes): 1 written, 0
 * already there (*STORED is then its size), -1 error. */
int batch_put (struct catalog_batch *b, const store_id *id, const void *buf,
               size_t len, uint64_t *stored);

/* ---- The chunk pipeline (reader/pipeline.c) ----
 * Worker threads store chunks (compress, encrypt, write, fsync; backup)
 * or load them (read, check, decrypt, decompress; restore) while the
 * calling thread goes on; results come back in chunk order, through
 * CONSUME, on the calling thread (the only one that uses the catalog). */
enum pipe_op {
  PIPE_PUT,                     /* store BUF (LEN bytes) under ID */
  PIPE_GET,                     /* read chunk ID into BUF (LEN expected) */
  PIPE_GET_WRITE,               /* the same, then write it at OFF of FD */
};

struct pipe_slot {
  /* Filled by the reading thread. */
  uint64_t index;
  size_t len;
  void *buf;                    /* the chunk's bytes (slot-owned) */
  store_id id;
  enum pipe_op op;
  int kind;                     /* the caller's */
  bool repair;                  /* the caller's: compare with EXPECT */
  uint32_t count;               /* the caller's (entries of a run) */
  int fd;                       /* PIPE_GET_WRITE: the target, */
  uint64_t off;                 /* where the chunk goes in it, */
  const char *fdname;           /* and its name for messages */
  store_id expect;
  /* Filled by the worker (put slots only). */
  bool is_new, failed;
  uint64_t stored;              /* object size in the store */
  struct pb_saved_error error;  /* the worker's, if failed */
};
/* Also called for a slot whose work failed (S->failed, the error already
 * set): it may add context (pb_prefix_error); the pipeline then fails. */
typedef int (*pipe_consume_fn) (void *opaque, struct pipe_slot *s);
/* Called when the calling thread must wait for the oldest slot but still
 * holds it (got, not submitted): it must submit at least that slot (and
 * may submit more), or return -1 with the error set. */
typedef int (*pipe_finish_fn) (void *opaque);
struct chunk_pipe;
/* THREADS workers, slots of SLOT_SIZE bytes (2 per worker + 2). */
struct chunk_pipe *chunk_pipe_new (struct store *s, unsigned threads,
                                   size_t slot_size, pipe_consume_fn consume,
                                   void *opaque);
/* The same with AHEAD more slots, which the caller may hold while it
 * fills them (reads in flight); FINISH as above. */
struct chunk_pipe *chunk_pipe_new_ahead (struct store *s, unsigned threads,
                                         unsigned ahead, size_t slot_size,
                                         pipe_consume_fn consume,
                                         pipe_finish_fn finish, void *opaque);
void chunk_pipe_free (struct chunk_pipe *p);      /* accepts NULL */
/* Nothing handed out is waiting to be consumed. */
bool chunk_pipe_idle (struct chunk_pipe *p);
/* The next slot in chunk order, after consuming what is done (waiting for
 * the oldest if every slot is out).  NULL on error (a worker's or
 * CONSUME's).  The caller holds the slot until it submits it; slots may
 * be submitted in any order, and are consumed in the order they were got
 * (a held slot holds up those after it). */
struct pipe_slot *chunk_pipe_get (struct chunk_pipe *p);
/* The newest slot handed out, if it is done (no worker touches it any
 * more) and not consumed yet: the caller may still add to it (its kind
 * says whether that makes sense).  Else NULL. */
struct pipe_slot *chunk_pipe_last_done (struct chunk_pipe *p);
/* WORK: a worker does S->op; else S is done already. */
void chunk_pipe_submit (struct chunk_pipe *p, struct pipe_slot *s, bool work);
/* Wait for and consume everything handed out.  0 or -1. */
int chunk_pipe_drain (struct chunk_pipe *p);

/* ---- Id sets (open addressing; ids are uniformly random already) ---- */
struct idset;

struct idset *idset_new (void);
void idset_free (struct idset *set);
/* Returns the slot's value pointer, inserting ID (with value 0) if absent;
 * *ADDED tells which.  NULL on out of memory (error recorded). */
uint64_t *idset_insert (struct idset *set, const store_id *id, bool *added);
uint64_t *idset_find (struct idset *set, const store_id *id);
/* Every id and its value, in no particular order; CB returns 0 or -1. */
int idset_foreach (struct idset *set,
                   int (*cb) (const store_id *id, uint64_t value,
                              void *opaque), void *opaque);

/* What gc would free now (reader/gc.c): counts in RES, nothing deleted. */
int repo_reclaimable (struct pullback_repo *r, struct pullback_gc_result *res);

/* Human-readable id prefix for messages: the first 16 hex digits. */
void id_short (const store_id *id, char out[17]);

#endif /* PB_READER_INTERNAL_H */
