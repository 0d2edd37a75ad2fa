/* pullback - reader/nbd.h: the NBD side (internal header of reader/).
 *
 * Connecting to an export with libnbd, asking for the base:allocation and
 * qemu:dirty-bitmap:NAME metadata contexts, and turning their extents into a
 * per-chunk plan: which chunks to read, which are all zero (never read),
 * which are clean since the parent point (kept without reading).  Also the
 * write side used by restore: a local image opened through qemu-nbd (which
 * libnbd starts by systemd socket activation), so qcow2 targets get real
 * zero requests and stay thin.
 *
 * Errors: -1/NULL with set_error(); libnbd's nbd_get_error() is translated
 * here with context (class PB_E_NBD).
 */
#ifndef PB_READER_NBD_H
#define PB_READER_NBD_H

/* The largest export accepted (64 PiB). */
#define READER_MAX_DISK_SIZE (UINT64_C (1) << 56)
/* Connections to one export at most (multi-conn). */
#define READER_MAX_CONNECTIONS 16

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reader_conn;

/* Connect to URI (nbd://, nbd+unix://, as nbd_connect_uri parses it).
 * Requests "base:allocation" and, if BITMAP != NULL,
 * "qemu:dirty-bitmap:BITMAP".  If BITMAP is given but the server does not
 * offer it: NULL with PB_E_BITMAP and a message that lists the contexts the
 * export does offer.  A server without base:allocation is fine. */
struct reader_conn *reader_connect (const char *uri, const char *bitmap);

/* The same with TLS settings (TLS may be NULL).  Bad settings (missing
 * certificate directory or PSK file, both given, OFF or REQUIRE against
 * the URI's scheme) are PB_E_USAGE before anything is sent; a server that
 * does not offer TLS when it is required, or a failed handshake, PB_E_NBD.
 * TLS is kept by reference (reader_reconnect uses it): it must outlive C. */
struct pullback_tls;
struct reader_conn *reader_connect_tls (const char *uri, const char *bitmap,
                                        const struct pullback_tls *tls);

/* Open a local image file through qemu-nbd (libnbd socket activation).
 * FORMAT "raw" or "qcow2"; NULL = detect (qcow2 magic, else raw).
 * WRITABLE: open read-write (restore).  A file locked by a running QEMU
 * fails with PB_E_TARGET. */
struct reader_conn *reader_open_image (const char *path, const char *format,
                                       bool writable);

void reader_close (struct reader_conn *c);  /* accepts NULL */

/* ---- Recovering from transient failures (backup --retries) ----
 * reader_error_transient: the error just recorded (class PB_E_NBD) is one
 * a later attempt may not meet: a failed request (EIO...) or a lost
 * connection; not an invalid reply or a refused request.
 * reader_is_dead: the handle can take no more requests, or the error just
 * recorded says the server is shutting down (ESHUTDOWN).
 * reader_reconnect: close the old connection, connect again to the same
 * URI with the same bitmap and TLS settings (which must still be valid),
 * check that it is the same export (size, base:allocation; PB_E_NBD with
 * errno 0 otherwise) and put the new handle into C, so plans using C go
 * on.  Exports only. */
bool reader_error_transient (void);
bool reader_is_dead (struct reader_conn *c);
int reader_reconnect (struct reader_conn *c);

/* ---- Multi-conn ----
 * reader_add_connections: if the export advertises multi-conn (it may be
 * read through several connections at once and they see the same data),
 * open more connections to it until C has N (1 to READER_MAX_CONNECTIONS)
 * and spread reader_pread_start's reads over them, a chunk each in turn.
 * A connection that fails (the server has no room for more clients, or
 * leaves it waiting 5 s) ends the attempt without an error: C goes on
 * with those it has, which the return value (and reader_connections)
 * counts.  Other calls use the first connection only.  reader_reconnect
 * makes all of them again; reader_is_dead reports any one dead.  Exports
 * only (an image opened by reader_open_image keeps one). */
unsigned reader_add_connections (struct reader_conn *c, unsigned n);
unsigned reader_connections (struct reader_conn *c);

/* 0 if no process holds a lock on PATH (QEMU takes OFD byte-range locks on
 * the images it has open); -1 with PB_E_TARGET naming the file if one
 * does, or with PB_E_IO if PATH cannot be opened.  Absent PATH: 0. */
int reader_check_unlocked (const char *path);

uint64_t reader_size (struct reader_conn *c);
bool reader_has_allocation (struct reader_conn *c);
/* Largest request the server accepts (and our own cap), for reads. */
uint32_t reader_max_request (struct reader_conn *c);

/* Whole-buffer I/O; LEN may be larger than reader_max_request (split). */
int reader_pread (struct reader_conn *c, void *buf, size_t len, uint64_t off);
int reader_pwrite (struct reader_conn *c, const void *buf, size_t len, uint64_t off);
int reader_zero (struct reader_conn *c, uint64_t len, uint64_t off);
int reader_flush (struct reader_conn *c);   /* waits for async writes too */
/* Queue a write (up to 16 in flight; the data is copied).  A failure is
 * reported by a later call, by reader_wait_writes or by reader_flush. */
int reader_pwrite_async (struct reader_conn *c, const void *buf, size_t len,
                         uint64_t off);
int reader_wait_writes (struct reader_conn *c);

/* ---- Asynchronous reads ----
 * reader_pread_start queues reads of LEN bytes at OFF into BUF and
 * returns at once; A (the caller's, valid and BUF untouched until the
 * reads are answered) tracks them: A->pending requests unanswered,
 * A->err the first failure's errno.  Replies are received whenever the
 * handle runs: in any call on C, reader_aio_progress (without blocking)
 * or reader_aio_wait (until A's are answered; 0, or -1 with PB_E_NBD and
 * the errno, so reader_error_transient applies).  reader_aio_drain waits
 * for every read in flight on C, on all its connections (also done
 * before a reconnection); call it before freeing buffers that reads may
 * still fill.  (A->pending reaches 0 also when the connection dies:
 * libnbd fails every command.) */
struct reader_aio {
  unsigned pending;
  int err;
  uint64_t off;
};
void reader_pread_start (struct reader_conn *c, void *buf, size_t len,
                         uint64_t off, struct reader_aio *a);
int reader_aio_wait (struct reader_conn *c, struct reader_aio *a);
void reader_aio_progress (struct reader_conn *c);
void reader_aio_drain (struct reader_conn *c);   /* accepts NULL */

/* ---- Plans ----
 * A plan walks the disk chunk by chunk in ascending order, fetching block
 * status lazily in windows (so memory does not grow with the disk size) and
 * yielding runs of consecutive chunks of one kind. */
enum reader_kind {
  READER_READ = 1,   /* read it (it has data, or the server cannot tell) */
  READER_ZERO = 2,   /* reads as zero per base:allocation: never read */
  READER_KEEP = 3    /* incremental only: clean since the parent, keep its id */
};

struct reader_run {
  uint64_t first;    /* first chunk index */
  uint64_t count;    /* >= 1 */
  enum reader_kind kind;
};

struct reader_plan;

/* CHUNK_SIZE: a power of two.  BITMAP_CTX: NULL for a full backup, else the
 * connection must have been made with that bitmap (its name or its
 * "qemu:dirty-bitmap:NAME" context are accepted); chunks with any dirty
 * byte are READ (or ZERO if entirely zero), others KEEP.
 * PARENT_SIZE (incremental only): the disk's size at the parent point;
 * chunks at or beyond the parent's last (possibly partial) chunk are
 * treated as dirty, so grown or shrunk disks are handled. */
struct reader_plan *reader_plan_new (struct reader_conn *c, uint32_t chunk_size,
                                     const char *bitmap, uint64_t parent_size);
void reader_plan_free (struct reader_plan *p);  /* accepts NULL */

/* Next run.  Returns 1 with *RUN filled, 0 at the end, -1 on error.
 * Extents that are zero-length, overlapping, unordered or beyond the
 * export size are an error (PB_E_NBD, "server sent ...").
 * Runs are as long as consecutive chunks agree, except that a READ run
 * ends where the plan's block status window (1 GiB) ends.  After -1 the
 * call may be retried: nothing of the failed run was consumed.
 * A plan is not thread-safe; use one thread per plan. */
int reader_plan_next (struct reader_plan *p, struct reader_run *run);

/* Read chunk INDEX into BUF (LEN = its length: chunk size, or less for the
 * last chunk), reading only the parts base:allocation does not report as
 * zero and memset()ing the rest.  *READ = payload bytes fetched over NBD.
 * Works for any chunk; for chunks of the most recently yielded run it
 * costs no block status request unless the chunk mixes data and zeros. */
int reader_read_chunk (struct reader_plan *p, uint64_t index,
                       void *buf, size_t len, uint64_t *read);
/* The same, but an all-data chunk's reads are only queued (A tracks them,
 * see reader_pread_start: BUF is filled once A->pending is 0 and A->err
 * is 0); zero and mixed chunks are done before it returns (A->pending 0).
 * -1: a synchronous part failed (error set); A's failures show in A. */
int reader_read_chunk_start (struct reader_plan *p, uint64_t index,
                             void *buf, size_t len, uint64_t *read,
                             struct reader_aio *a);

/* The meta contexts the server offers for this export (for messages);
 * a malloc'd ", "-separated string.  (Listed once while connecting, on the
 * same connection: a second connection would hang on a qemu-nbd serving
 * one client, its default, and on socket-activated images.) */
char *reader_list_contexts (struct reader_conn *c);

/* ---- Shared by nbd.c and plan.c only (not for other modules) ---- */
struct nbd_handle;
struct nbd_handle *reader_handle (struct reader_conn *c);
/* "export 'URI'" or "image 'PATH'", for messages. */
const char *reader_name (struct reader_conn *c);
/* "qemu:dirty-bitmap:NAME" if connected with a bitmap, else NULL. */
const char *reader_bitmap_context (struct reader_conn *c);
/* set_error (PB_E_NBD, ...) "WHAT NAME at offset OFF: libnbd's message". */
void reader_nbd_error (struct reader_conn *c, const char *what, uint64_t off);

#endif /* PB_READER_NBD_H */
