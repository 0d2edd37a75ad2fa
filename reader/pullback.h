/* pullback - reader/pullback.h: the libpullback API (public header of reader/).
 *
 * This is what the pullback program and backup vendors call: open a
 * repository (store + catalog), take a backup point of a VM from NBD
 * exports, list points, restore a disk, verify, compute content digests.
 * Mechanism only: nothing here prints or exits.  Every function returns -1
 * or NULL on failure with a message, errno and class recorded for the
 * calling thread: pb_get_error(), pb_get_errno(), pb_get_errclass() from
 * common/errors.h (the class is what the CLI turns into an exit code).
 */
#ifndef PULLBACK_H
#define PULLBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "errors.h"
#include "policy.h"
#include "store.h"

#define PULLBACK_DIGEST_LEN 32
#define PULLBACK_DEFAULT_CHUNK_SIZE (256u * 1024)  /* = STORE_DEFAULT_CHUNK_SIZE */

struct pullback_repo;

/* A repository directory: DIR/catalog.db and the store in DIR/store.
 * init: DIR must not exist or be empty (PB_E_REPO otherwise); CHUNK_SIZE
 * 0 = default; KEY non-NULL makes an encrypted repository (store.h has
 * the key API: store_key_load, store_key_generate, ...).  open: PB_E_REPO
 * if DIR is not a pullback repository; PB_E_KEY if it is encrypted and KEY
 * is NULL or another key, or KEY is given for an unencrypted one.  The
 * repository keeps no reference to KEY: free it after the call. */
struct pullback_repo *pullback_repo_init (const char *dir, uint32_t chunk_size,
                                          const struct store_key *key);
struct pullback_repo *pullback_repo_open (const char *dir,
                                          const struct store_key *key);
bool pullback_repo_encrypted (const struct pullback_repo *r);
void pullback_repo_close (struct pullback_repo *r);     /* accepts NULL */
uint32_t pullback_repo_chunk_size (const struct pullback_repo *r);
const char *pullback_repo_uuid (const struct pullback_repo *r);

/* Progress callback: DONE of TOTAL bytes of disk DISK handled so far. */
typedef void (*pullback_progress_fn) (void *opaque, const char *disk,
                                      uint64_t done, uint64_t total);

/* Ask every running operation in this process to stop soon (async-signal-
 * safe).  The operation then fails with PB_E_INTERRUPTED, recording
 * nothing. */
void pullback_interrupt (void);

/* ---- Backup ---- */
struct pullback_disk_spec {
  const char *name;     /* "vda" */
  const char *uri;      /* NBD URI */
  const char *bitmap;   /* qemu:dirty-bitmap name for incrementals, or NULL */
};

/* NBD over TLS (libnbd, GnuTLS).  REQUIRE needs nbds:// or nbds+unix://
 * URIs and refuses a server that does not offer TLS; with nbds URIs TLS is
 * always required.  CERTS: a directory with ca-cert.pem (and
 * client-cert.pem, client-key.pem for client certificates); PSK_FILE:
 * "username:hexkey" lines.  At most one of the two. */
enum pullback_tls_mode { PULLBACK_TLS_DEFAULT = 0, PULLBACK_TLS_OFF,
                         PULLBACK_TLS_REQUIRE };
struct pullback_tls {
  enum pullback_tls_mode mode;
  const char *certs;          /* --tls-certs DIR, or NULL */
  const char *psk_file;       /* --tls-psk FILE, or NULL */
  const char *username;       /* --tls-username, or NULL (PSK user) */
};

/* A transient NBD failure is about to be retried: attempt ATTEMPT of MAX
 * for disk DISK, after DELAY_MS; ERROR is the failure's message. */
typedef void (*pullback_retry_fn) (void *opaque, const char *disk,
                                   unsigned attempt, unsigned max,
                                   unsigned delay_ms, const char *error);

#define PULLBACK_MAX_REQUESTS 64
#define PULLBACK_MAX_CONNECTIONS 16

struct pullback_backup_opts {
  const char *vm;
  const struct pullback_disk_spec *disks;
  size_t ndisks;
  const char *checkpoint;     /* --checkpoint NEW, or NULL */
  const char *since;          /* --since OLD, or NULL for a full backup */
  bool fallback_full;         /* unknown --since checkpoint -> full backup */
  pullback_progress_fn progress;
  void *progress_opaque;
  const struct pullback_tls *tls;   /* NULL: libnbd's defaults */
  /* Transient NBD failures while reading (a request failing with EIO, a
   * dropped connection): each failing request is tried again up to
   * RETRIES times, reconnecting first if the connection died, after
   * RETRY_DELAY_MS (0: 1000), doubled at each attempt up to 30 s.  A
   * reconnection must find the same export (size).  0 retries: fail at
   * once. */
  unsigned retries;
  unsigned retry_delay_ms;
  /* Worker threads that compress, encrypt and write chunks while the
   * export is read (0: one per online CPU; at most 64). */
  unsigned threads;
  /* Chunks read ahead: their NBD reads (of at most 256 KiB each) are in
   * flight while earlier chunks are hashed and stored (0: 8; at most
   * PULLBACK_MAX_REQUESTS).  Memory: one chunk buffer each. */
  unsigned requests;
  /* NBD connections per disk when its export advertises multi-conn
   * (several clients see the same data): the reads ahead are spread over
   * them (0: 4; at most PULLBACK_MAX_CONNECTIONS).  Other exports get
   * one; so does any export that refuses a further connection. */
  unsigned connections;
  pullback_retry_fn on_retry;       /* NULL: retry silently */
  void *retry_opaque;
};

struct pullback_disk_result {
  char *name;
  uint64_t size;
  uint64_t bytes_read;        /* payload bytes fetched over NBD */
  uint64_t bytes_new;         /* bytes added to the store (after compression) */
  uint64_t chunks_total, chunks_read, chunks_zero, chunks_kept, chunks_new;
  uint64_t retries;           /* transient NBD failures retried */
  unsigned connections;       /* NBD connections it was read through */
  /* Unchanged since the parent but missing from the store, so read again
   * (counted in chunks_read): same content (the store healed), or other
   * content (the dirty bitmap missed a write). */
  uint64_t chunks_repaired, bitmap_mismatches;
  uint8_t digest[PULLBACK_DIGEST_LEN];
};

struct pullback_backup_result {
  int64_t point;
  char *vm;
  const char *mode;           /* "full" or "incremental" (static) */
  int64_t parent;             /* 0 = none */
  char *checkpoint;           /* or NULL */
  char *since;                /* or NULL */
  char *fallback_reason;      /* set when --fallback-full took a full backup */
  double seconds;
  size_t ndisks;
  struct pullback_disk_result *disks;
};

/* Take one point of the whole VM.  Validates everything (checkpoint known,
 * a bitmap for every disk of an incremental, each bitmap exported) before
 * writing anything.  On failure no point is recorded.
 * Errors: PB_E_USAGE (bad options), PB_E_CHECKPOINT, PB_E_BITMAP, PB_E_NBD
 * (after the retries), PB_E_IO, PB_E_NOSPACE (ENOSPC, EDQUOT, EFBIG),
 * PB_E_REPO (the repository vanished), PB_E_BUSY, PB_E_INTERRUPTED. */
int pullback_backup (struct pullback_repo *r,
                     const struct pullback_backup_opts *opts,
                     struct pullback_backup_result **result);
void pullback_backup_result_free (struct pullback_backup_result *res);

/* ---- Points ---- */
/* SPEC is a decimal id or "latest" (newest point of VM; VM may be NULL for
 * the newest of all).  PB_E_NOTFOUND if none / unknown id / other VM. */
int pullback_resolve_point (struct pullback_repo *r, const char *spec,
                            const char *vm, int64_t *id);
/* Free results with catalog_point_free / catalog_points_free. */
struct catalog_point *pullback_get_point (struct pullback_repo *r, int64_t id);
int pullback_list_points (struct pullback_repo *r, const char *vm,
                          struct catalog_point ***points, size_t *n);

/* ---- Restore ---- */
struct pullback_restore_opts {
  int64_t point;
  const char *disk;           /* disk name within the point */
  const char *target;         /* file or block device path */
  const char *format;         /* "raw" (default) or "qcow2" */
  bool force;                 /* replace an existing target */
  pullback_progress_fn progress;
  void *progress_opaque;
  /* Worker threads that read, check and decompress chunks while the
   * target is written (0: one per online CPU; at most 64). */
  unsigned threads;
};

struct pullback_restore_result {
  uint64_t size;
  uint64_t bytes_written;     /* data bytes written */
  uint64_t bytes_zero;        /* bytes left as holes / zero requests */
  uint8_t digest[PULLBACK_DIGEST_LEN];  /* content digest, equals the point's */
  unsigned temp_removed;      /* temporary images of killed restores removed */
  double seconds;
};

/* Rebuild the disk.  A regular-file target is written to a temporary file
 * beside it and renamed into place only when complete and fsync'ed, so a
 * failure never leaves a half-written image under TARGET.  Every chunk is
 * checked against its id; a missing or bad chunk fails with PB_E_CORRUPT
 * naming the chunk and the point.  Existing target without FORCE, or a
 * target locked by a running QEMU: PB_E_TARGET. */
int pullback_restore (struct pullback_repo *r,
                      const struct pullback_restore_opts *opts,
                      struct pullback_restore_result *result);

/* ---- Verify ---- */
struct pullback_verify_problem {
  uint8_t chunk[PULLBACK_DIGEST_LEN];
  char *what;                 /* "missing", "checksum mismatch", ... */
  bool quarantined;           /* damaged copy moved to store/quarantine/ */
  size_t npoints;
  int64_t *points;            /* points that need this chunk */
};

struct pullback_verify_result {
  size_t points_checked;
  uint64_t chunks_checked;    /* distinct chunks and map nodes read */
  uint64_t bytes_checked;     /* plain bytes after decompression */
  uint64_t chunks_not_read;   /* sampling: found present, contents not read */
  bool catalog_ok;            /* SQLite integrity check */
  size_t nproblems;
  struct pullback_verify_problem *problems;
};

/* What to check.  A sample reads the contents of about SAMPLE_PERCENT of
 * the distinct data chunks (chosen by id under SEED, so one seed always
 * picks the same chunks and other seeds others); every other chunk is
 * still found present, and every map node and record is still read. */
struct pullback_verify_opts {
  int64_t point;              /* 0 = every point */
  double sample_percent;      /* (0, 100]; 0 means 100 */
  uint64_t seed;
};

/* Returns 0 when the check ran (look at nproblems and catalog_ok), -1
 * when it could not. */
int pullback_verify (struct pullback_repo *r,
                     const struct pullback_verify_opts *opts,
                     pullback_progress_fn progress, void *progress_opaque,
                     struct pullback_verify_result **result);
void pullback_verify_result_free (struct pullback_verify_result *res);

/* ---- Catalog rebuild (reader/rebuild.c) ----
 * A new catalog.db from the store alone: every point record, whose tree is
 * complete (nodes readable and well-formed, chunks present, digest
 * matching), becomes a point again with its id, VM, parent (dropped if not
 * rebuilt itself), checkpoints and disks.  Not in the store, so not
 * rebuilt: protection, and the hidden state of forgotten bases (they come
 * back as listed points).  Refused (PB_E_USAGE) while the old catalog is
 * intact unless FORCE; refused (PB_E_BUSY) while it shows a running backup.
 * The old file is kept as catalog.db.old-TIMESTAMP. */
struct pullback_rebuild_skip {
  int64_t point;
  char *why;                  /* the damage that kept it out */
};

struct pullback_rebuild_result {
  size_t records;             /* point records in the store */
  size_t records_ignored;     /* other names under points/ */
  size_t points;              /* points in the new catalog */
  size_t parents_dropped;     /* parent links to points not rebuilt */
  size_t nskipped;
  struct pullback_rebuild_skip *skipped;
  char *old_catalog;          /* where the old catalog.db went, or NULL */
};

int pullback_catalog_rebuild (const char *dir, const struct store_key *key,
                              bool force, pullback_progress_fn progress,
                              void *progress_opaque,
                              struct pullback_rebuild_result **result);
void pullback_rebuild_result_free (struct pullback_rebuild_result *res);

/* ---- Digest ----
 * The content digest of a disk: SHA-256 over the ordered list of its chunk
 * ids (zero chunks included), docs/FORMAT.md.  SOURCE is an NBD URI (has
 * "://") or an image file (raw or qcow2, opened read-only through qemu-nbd).
 * Chunk size and id function come from R if given, else CHUNK_SIZE (0 =
 * default) with plain SHA-256 ids. */
int pullback_digest (const char *source, struct pullback_repo *r,
                     uint32_t chunk_size, uint8_t digest[PULLBACK_DIGEST_LEN],
                     uint64_t *size);

/* ---- Space: protect, forget, gc, stats (reader/space.c, reader/gc.c) ----
 * Removing points only lowers reference counts (cheap, in proportion to
 * the point's disks); gc then deletes what nothing needs any more, at
 * once, never an object a running backup has pinned.  Everything here may
 * run while backups of other VMs run on the same repository. */

/* Shield point POINT from every removal (ON) or not.  PB_E_NOTFOUND. */
int pullback_protect (struct pullback_repo *r, int64_t point, bool on);

/* Reason bit beside enum pullback_keep_reason: kept because a running
 * backup uses the point as its base. */
#define PULLBACK_KEEP_IN_USE 128u

struct pullback_forget_opts {
  const char *vm;             /* only this VM's points; NULL = every VM */
  int64_t point;              /* > 0: remove this point (no rules) */
  struct pullback_keep_rules rules;
  bool dry_run;
};

struct pullback_forget_item {
  int64_t point;
  char *vm;
  int64_t finished;
  bool keep;
  unsigned reasons;           /* PULLBACK_KEEP_* bits when kept */
  bool retained_as_base;      /* removed, but kept hidden as the base of
                                 the VM's next incremental */
};

struct pullback_forget_result {
  size_t n;
  struct pullback_forget_item *items;   /* ascending point id */
};

/* Apply the rules (each VM separately) or remove one point.  Errors:
 * PB_E_USAGE (no rule, bad rule, point and rules), PB_E_NOTFOUND,
 * PB_E_PROTECTED (--point of a protected point), PB_E_BUSY (--point of
 * the base of a running backup).  The newest point of a VM, if it has a
 * checkpoint, is removed from every listing but its data kept as a
 * hidden base until the VM's next point is committed, so that the next
 * backup can still be incremental. */
int pullback_forget (struct pullback_repo *r,
                     const struct pullback_forget_opts *opts,
                     struct pullback_forget_result **result);
void pullback_forget_result_free (struct pullback_forget_result *res);

struct pullback_gc_result {
  bool dry_run;
  uint64_t chunks_deleted, nodes_deleted, bytes_freed;
  uint64_t in_use;            /* unreferenced but pinned by running backups */
  uint64_t leases_cleared;    /* stale leases of dead processes dropped */
  uint64_t temp_removed;      /* temporary files of killed writers removed */
  double seconds;
};

/* Delete every chunk and map node no point needs (DRY_RUN: only count
 * them).  Reads the catalog, never chunk contents. */
int pullback_gc (struct pullback_repo *r, bool dry_run,
                 struct pullback_gc_result *res);

struct pullback_stats {
  uint64_t vms, points;
  uint64_t logical_bytes;     /* sum of the disks' virtual sizes */
  uint64_t chunks;            /* data chunks the points need */
  uint64_t unique_bytes;      /* those chunks x chunk size (an upper bound) */
  uint64_t stored_bytes;      /* every object the catalog knows, as stored */
  uint64_t reclaimable_chunks, reclaimable_bytes;   /* what gc would free */
  uint64_t running_backups;
  double dedup_ratio;         /* logical / unique */
  double compression_ratio;   /* unique / bytes the needed chunks take */
};

int pullback_stats (struct pullback_repo *r, struct pullback_stats *st);

#endif /* PULLBACK_H */
