/* pullback - reader/backup.c: taking a backup point of a VM.
 *
 * Order of work, chosen so that a failure at any moment records nothing:
 *  1. check every option; in one catalog transaction take the VM's writer
 *     lease (a second backup of the same VM is refused) and find the
 *     parent point (--since), which the lease then names as its base so
 *     that no forget can remove it while its tree is being reused; connect
 *     to every disk and check its bitmap -- all before reading any data;
 *  2. for each disk walk the plan: read dirty/allocated chunks, detect zero
 *     chunks by content, put new chunks into the store, keep clean chunks'
 *     ids from the parent's map, and write the disk's new map tree;
 *  3. store_sync(), so every chunk and node is durable;
 *  4. in one catalog transaction: allocate the point id, write the point
 *     record into the store (self-description), sync, insert the point
 *     (its roots gain their references), drop forgotten bases of the VM
 *     that it supersedes, drop the lease (and with it the pins), commit.
 *     Only now does the point exist, and only now can its checkpoint be
 *     used by --since.  A failed backup drops its lease; what it wrote is
 *     garbage for gc (a killed one leaves a stale lease, which the next
 *     backup of the VM or gc recognises by its dead process).
 * A transient NBD failure in step 2 (a read or block status request that
 * fails with EIO, a connection that drops) is retried in place, up to
 * opts->retries times per request, reconnecting when the handle is dead:
 * the plan can be asked again after a failure and a chunk read again, so
 * nothing half-done is kept (see recover()).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "maptree.h"
#include "nbd.h"
#include "util.h"

/* Chunks read ahead by default: 2 MiB in flight at the default chunk
 * size.  Against a local qemu-nbd, 1 to 32 measured within noise of each
 * other (the CPU is the limit); 8 hides a remote server's latency. */
#define REQUESTS_DEFAULT 8
/* Connections to a multi-conn export unless told: nbdcopy's default. */
#define CONNECTIONS_DEFAULT 4
_Static_assert (PULLBACK_MAX_CONNECTIONS <= READER_MAX_CONNECTIONS,
                "more connections allowed than reader/ can open");
/* Zero runs at least this long (16 MiB at the default chunk size) skip
 * the pipeline, whose bubble they then cost (it is drained first). */
#define ZERO_RUN_MIN 64

struct backup {
  struct pullback_repo *r;
  const struct pullback_backup_opts *o;
  struct catalog_point *parent;         /* NULL: full backup */
  struct catalog_batch *batch;
  int64_t lease;                        /* 0 until taken */
  struct reader_conn **conns;
  struct catalog_disk *disks;           /* what the catalog will record */
  struct pullback_backup_result *res;
  unsigned threads;                     /* chunk pipeline workers */
  unsigned requests;                    /* reads in flight at most */
  unsigned connections;                 /* per multi-conn export */
  int64_t started;
  double t0;
};

static bool
valid_name (const char *s)
{
  size_t i, n = s ? strlen (s) : 0;

  if (n == 0 || n > 255)
    return false;
  for (i = 0; i < n; i++)
    if ((unsigned char) s[i] < 0x20 || s[i] == '/' || s[i] == 0x7f)
      return false;
  return true;
}

static int
check_disks (const struct pullback_backup_opts *o)
{
  size_t i, j;

  if (o->ndisks == 0) {
    set_error (PB_E_USAGE, 0, "no disks given (use --disk NAME=URI)");
    return -1;
  }
  for (i = 0; i < o->ndisks; i++) {
    const struct pullback_disk_spec *d = &o->disks[i];
    if (!valid_name (d->name) || d->uri == NULL || d->uri[0] == '\0') {
      set_error (PB_E_USAGE, 0, "invalid disk '%s' (need NAME=URI)",
                 d->name ? d->name : "");
      return -1;
    }
    for (j = 0; j < i; j++)
      if (strcmp (o->disks[j].name, d->name) == 0) {
        set_error (PB_E_USAGE, 0, "disk '%s' given twice", d->name);
        return -1;
      }
  }
  return 0;
}

static int
check_bitmaps (const struct pullback_backup_opts *o)
{
  size_t i;

  for (i = 0; i < o->ndisks; i++) {
    const struct pullback_disk_spec *d = &o->disks[i];
    if (o->since == NULL && d->bitmap) {
      set_error (PB_E_USAGE, 0, "--bitmap %s=%s given without --since",
                 d->name, d->bitmap);
      return -1;
    }
    if (o->since && (d->bitmap == NULL || d->bitmap[0] == '\0')) {
      set_error (PB_E_BITMAP, 0, "disk '%s' has no --bitmap: an incremental "
                 "backup needs the dirty bitmap of every disk", d->name);
      return -1;
    }
  }
  return 0;
}

static int
check_opts (const struct pullback_backup_opts *o)
{
  if (!valid_name (o->vm)) {
    set_error (PB_E_USAGE, 0, "invalid VM name '%s'", o->vm ? o->vm : "");
    return -1;
  }
  if ((o->checkpoint && !valid_name (o->checkpoint)) ||
      (o->since && !valid_name (o->since))) {
    set_error (PB_E_USAGE, 0, "invalid checkpoint name");
    return -1;
  }
  return check_disks (o) == -1 ? -1 : check_bitmaps (o);
}

/* With --fallback-full, the error just recorded is why a full backup is
 * taken instead of the incremental. */
static int
fall_back (struct backup *b)
{
  if (asprintf (&b->res->fallback_reason, "%s; took a full backup instead "
                "(--fallback-full)", pb_get_error ()) == -1) {
    set_error (PB_E_FAIL, errno, "asprintf");
    return -1;
  }
  return 0;
}

/* An incremental inherits the parent's map, so the parent must be what
 * its record in the store says it is (size, map root, digest of every
 * disk): a damaged parent is not built on.  Its chunks are checked one by
 * one as they are inherited (keep_chunk). */
static int
check_parent (struct backup *b)
{
  if (point_record_check (b->r, b->parent, NULL) == 0)
    return 0;
  if (pb_get_errclass () != PB_E_CORRUPT)
    return -1;
  pb_prefix_error ("the parent point %" PRId64 " (checkpoint %s) is damaged, "
                   "so no incremental can be based on it", b->parent->id,
                   b->o->since);
  if (!b->o->fallback_full)
    return -1;
  catalog_point_free (b->parent);
  b->parent = NULL;
  return fall_back (b);
}

/* --since: the parent point, or a full backup with --fallback-full. */
static int
find_parent (struct backup *b)
{
  int64_t id;

  if (b->o->since == NULL)
    return 0;
  if (catalog_find_checkpoint (b->r->cat, b->o->vm, b->o->since, &id) == 0) {
    b->parent = catalog_get_point (b->r->cat, id);
    return b->parent ? check_parent (b) : -1;
  }
  if (pb_get_errclass () != PB_E_CHECKPOINT || !b->o->fallback_full)
    return -1;
  return fall_back (b);
}

static const struct catalog_disk *
parent_disk (struct backup *b, const char *name)
{
  size_t i;

  for (i = 0; b->parent && i < b->parent->ndisks; i++)
    if (strcmp (b->parent->disks[i].name, name) == 0)
      return &b->parent->disks[i];
  return NULL;
}

static int
connect_all (struct backup *b)
{
  size_t i;

  for (i = 0; i < b->o->ndisks; i++) {
    const struct pullback_disk_spec *d = &b->o->disks[i];
    const char *bitmap = b->parent ? d->bitmap : NULL;
    b->conns[i] = reader_connect_tls (d->uri, bitmap, b->o->tls);
    if (b->conns[i] == NULL) {
      pb_prefix_error ("disk '%s'", d->name);
      return -1;
    }
    reader_add_connections (b->conns[i], b->connections);
  }
  return 0;
}

/* ---- Per-disk work ---- */

/* Longest wait between two attempts. */
#define RETRY_DELAY_MAX_MS 30000u
#define RETRY_DELAY_DEFAULT_MS 1000u

struct disk_walk {
  struct backup *b;
  struct reader_plan *plan;
  struct maptree_reader *ptree;         /* parent's map, incremental only */
  struct maptree_writer *w;
  struct pullback_disk_result *dr;
  struct chunk_pipe *pipe;              /* stores chunks on worker threads */
  struct idset *healing;                /* lost chunks re-read, being stored */
  size_t disk;                          /* index in opts->disks */
  uint64_t size;
  /* Chunks whose reads are in flight, in chunk order (a ring). */
  struct pending_read *reads;
  store_id *pins;                       /* scratch: ids to pin at once */
  uint32_t run_max;                     /* ids a run slot holds */
  size_t rcap, rhead, rcount;
};

/* A chunk being read: its (held) slot and its reads. */
struct pending_read {
  struct pipe_slot *s;
  struct reader_aio aio;
  uint64_t nread;
};

static size_t
chunk_len (struct disk_walk *dw, uint64_t i)
{
  uint64_t cs = pullback_repo_chunk_size (dw->b->r);

  return MIN (cs, dw->size - i * cs);
}

/* Wait before attempt ATTEMPT (1, 2, ...): the first delay doubled each
 * time, capped.  A signal cuts the wait short (no SA_RESTART) and the
 * interruption is then noticed by check_interrupt. */
static unsigned
retry_delay (const struct pullback_backup_opts *o, unsigned attempt)
{
  uint64_t ms = o->retry_delay_ms ? o->retry_delay_ms : RETRY_DELAY_DEFAULT_MS;

  while (--attempt > 0 && ms < RETRY_DELAY_MAX_MS)
    ms *= 2;
  return MIN (ms, RETRY_DELAY_MAX_MS);
}

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (long) (ms % 1000) * 1000000 };

  nanosleep (&ts, NULL);
}

/* After a failed NBD request of disk DW: 0 if it is worth trying again
 * (waited, reconnected if the connection died), -1 to give up with the
 * error recorded.  *ATTEMPT counts the retries of this one request; a
 * failed reconnection counts as one too.  Only errors reader_error_
 * transient() accepts are retried: an invalid reply would come again. */
static int
recover (struct disk_walk *dw, unsigned *attempt)
{
  const struct pullback_backup_opts *o = dw->b->o;
  struct reader_conn *c = dw->b->conns[dw->disk];
  unsigned delay;

  for (;;) {
    if (!reader_error_transient ())
      return -1;
    if (*attempt >= o->retries) {
      if (o->retries > 0)
        pb_prefix_error ("gave up after %u %s", o->retries,
                         o->retries == 1 ? "retry" : "retries");
      return -1;
    }
    delay = retry_delay (o, ++*attempt);
    dw->dr->retries++;
    if (o->on_retry)
      o->on_retry (o->retry_opaque, dw->dr->name, *attempt, o->retries,
                   delay, pb_get_error ());
    sleep_ms (delay);
    if (check_interrupt () == -1)
      return -1;
    if (!reader_is_dead (c) || reader_reconnect (c) == 0)
      return 0;
  }
}

/* Name chunk I in the error just recorded; -1. */
static int
chunk_error (struct disk_walk *dw, uint64_t i)
{
  pb_prefix_error ("disk '%s' chunk %" PRIu64, dw->dr->name, i);
  return -1;
}

/* What a slot holds, for the counters (which partition the chunks:
 * read + zero + kept = total).  A chunk read is one slot (DATA, or ZERO if
 * it read as zeros), with its id in the slot; kept chunks and zero chunks
 * known from block status come in runs: consecutive ones share a slot,
 * whose buffer holds their ids (so that a stretch of clean chunks does not
 * cost a slot, and a wait for the reads ahead of it, each). */
enum { SLOT_KEPT_RUN, SLOT_ZERO_RUN, SLOT_ZERO, SLOT_DATA };

/* The ids of a run slot. */
static int
consume_run (struct disk_walk *dw, struct pipe_slot *s)
{
  const store_id *ids = s->buf;
  uint32_t k;

  for (k = 0; k < s->count; k++)
    if (maptree_writer_add (dw->w, &ids[k]) == -1)
      return chunk_error (dw, s->index + k);
  if (s->kind == SLOT_KEPT_RUN)
    dw->dr->chunks_kept += s->count;
  else
    dw->dr->chunks_zero += s->count;
  return 0;
}

/* In chunk order, on this thread: counters, the chunk's catalog row, the
 * map tree. */
static int
consume (void *opaque, struct pipe_slot *s)
{
  struct disk_walk *dw = opaque;

  if (s->failed)
    goto err;
  if (s->kind == SLOT_KEPT_RUN || s->kind == SLOT_ZERO_RUN)
    return consume_run (dw, s);
  if (s->kind == SLOT_ZERO)
    dw->dr->chunks_zero++;
  else {
    dw->dr->chunks_read++;
    if (s->is_new) {
      dw->dr->chunks_new++;
      dw->dr->bytes_new += s->stored;
    }
    /* A row also for a chunk found in the store (written by a backup that
     * died, or one running now whose rows are still queued): the leaf
     * that refers to it must find a row to count the reference in. */
    if (catalog_batch_chunk (dw->b->batch, &s->id, s->stored) == -1)
      goto err;
  }
  if (s->repair && memcmp (&s->id, &s->expect, sizeof s->id) == 0)
    dw->dr->chunks_repaired++;
  else if (s->repair)
    dw->dr->bitmap_mismatches++;
  if (maptree_writer_add (dw->w, &s->id) == 0)
    return 0;
 err:
  pb_prefix_error ("disk '%s' chunk %" PRIu64, dw->dr->name, s->index);
  return -1;
}

/* A chunk whose id is known without storing anything (kept or zero):
 * consumed at once if nothing is outstanding, else added to the run in
 * the newest slot if it continues it, else the start of a new run. */
static int
emit (struct disk_walk *dw, uint64_t i, int kind, const store_id *id)
{
  struct pipe_slot one = { .index = i, .kind = kind, .count = 1,
                           .buf = (void *) id }, *s;

  if (chunk_pipe_idle (dw->pipe))
    return consume (dw, &one);
  s = chunk_pipe_last_done (dw->pipe);
  if (s && s->kind == kind && s->index + s->count == i &&
      s->count < dw->run_max) {
    ((store_id *) s->buf)[s->count++] = *id;
    return 0;
  }
  if ((s = chunk_pipe_get (dw->pipe)) == NULL)
    return -1;
  s->index = i;
  s->kind = kind;
  s->count = 1;
  s->repair = false;
  ((store_id *) s->buf)[0] = *id;
  chunk_pipe_submit (dw->pipe, s, false);
  return 0;
}

/* A lost chunk read again with its old content is on its way back into
 * the store: later chunks with the same id need not be read again. */
static int
note_healing (struct disk_walk *dw, const store_id *id, const store_id *expect)
{
  bool added;

  if (memcmp (id, expect, sizeof *id) != 0)
    return 0;
  if (dw->healing == NULL && (dw->healing = idset_new ()) == NULL)
    return -1;
  return idset_insert (dw->healing, id, &added) ? 0 : -1;
}

/* Chunk S's read is done (else it is read again, synchronously, with
 * retries): count it and find its kind and id. */
static int
complete_read (struct disk_walk *dw, struct pending_read *pr)
{
  struct store *st = dw->b->r->store;
  struct pipe_slot *s = pr->s;
  unsigned attempt = 0;

  if (reader_aio_wait (dw->b->conns[dw->disk], &pr->aio) == -1)
    do
      if (recover (dw, &attempt) == -1)
        return chunk_error (dw, s->index);
    while (reader_read_chunk (dw->plan, s->index, s->buf, s->len,
                              &pr->nread) == -1);
  dw->dr->bytes_read += pr->nread;
  if (is_zero (s->buf, s->len)) {
    s->kind = SLOT_ZERO;
    store_zero_id (st, s->len, &s->id);
    return 0;
  }
  s->kind = SLOT_DATA;
  store_id_of (st, s->buf, s->len, &s->id);
  if (s->repair && note_healing (dw, &s->id, &s->expect) == -1)
    return chunk_error (dw, s->index);
  return 0;
}

/* Complete the oldest reads, in order: at least AT_LEAST of them, and then
 * every one already answered.  Their new ids are pinned in one catalog
 * transaction (not one per chunk) before the workers look for them in the
 * store, and then they are handed to the workers. */
static int
finish_reads (struct disk_walk *dw, size_t at_least)
{
  struct pending_read *pr;
  size_t n, npins = 0, i;

  for (n = 0; n < dw->rcount; n++) {
    pr = &dw->reads[(dw->rhead + n) % dw->rcap];
    if (n >= at_least && pr->aio.pending > 0)
      break;
    if (complete_read (dw, pr) == -1)
      return -1;
    if (pr->s->kind == SLOT_DATA)
      dw->pins[npins++] = pr->s->id;
  }
  if (npins > 0 && batch_pin_many (dw->b->batch, dw->pins, npins) == -1)
    return chunk_error (dw, dw->reads[dw->rhead].s->index);
  for (i = 0; i < n; i++) {
    pr = &dw->reads[dw->rhead];
    chunk_pipe_submit (dw->pipe, pr->s, pr->s->kind == SLOT_DATA);
    dw->rhead = (dw->rhead + 1) % dw->rcap;
    dw->rcount--;
  }
  return 0;
}

/* The pipeline waits for the oldest slot, which is still being read. */
static int
finish_oldest (void *opaque)
{
  return finish_reads (opaque, 1);
}

/* Start reading chunk I into a slot; it goes to the workers once read (a
 * chunk that reads as zero is recorded as zero, not data).  EXPECT: the
 * parent's id of a chunk read again because the store lost it (else
 * NULL).  Reads stay in flight while later chunks are started, up to
 * opts->requests of them. */
static int
read_chunk (struct disk_walk *dw, uint64_t i, const store_id *expect)
{
  struct pipe_slot *s = chunk_pipe_get (dw->pipe);
  struct pending_read *pr;
  unsigned attempt = 0;

  if (s == NULL)
    return -1;
  s->index = i;
  s->len = chunk_len (dw, i);
  s->repair = expect != NULL;
  if (expect)
    s->expect = *expect;
  pr = &dw->reads[(dw->rhead + dw->rcount++) % dw->rcap];
  pr->s = s;
  /* A mixed chunk is read at once, and its failure is known now. */
  while (reader_read_chunk_start (dw->plan, i, s->buf, s->len, &pr->nread,
                                  &pr->aio) == -1)
    if (recover (dw, &attempt) == -1)
      return chunk_error (dw, i);
  reader_aio_progress (dw->b->conns[dw->disk]);
  /* At most REQUESTS in flight: wait for the oldest if need be. */
  return finish_reads (dw, dw->rcount >= dw->b->requests ? 1 : 0);
}

/* An unchanged chunk keeps its parent's id, but only while the store has
 * it: a chunk lost since (deleted, or quarantined by verify) is read
 * again from the export, which holds the same bytes if the dirty bitmap
 * is right, and so the store heals.  If they are not the same bytes, the
 * bitmap missed a write: the point gets what the disk holds now, and the
 * mismatch is reported (it is proof that the bitmap cannot be trusted). */
static int
keep_chunk (struct disk_walk *dw, uint64_t i)
{
  store_id id, zero;
  int r;

  if (maptree_reader_get (dw->ptree, i, &id) == -1)
    return chunk_error (dw, i);
  store_zero_id (dw->b->r->store, chunk_len (dw, i), &zero);
  if (memcmp (&id, &zero, sizeof zero) == 0 ||
      (dw->healing && idset_find (dw->healing, &id)))
    return emit (dw, i, SLOT_KEPT_RUN, &id);
  if ((r = store_has_chunk (dw->b->r->store, &id)) == 1)
    return emit (dw, i, SLOT_KEPT_RUN, &id);
  if (r == -1)
    return chunk_error (dw, i);
  /* Lost.  An earlier chunk of the same content may be being read again
   * right now: only once it is read is it known to heal (rare: no need
   * to keep the reads in flight). */
  if (finish_reads (dw, dw->rcount) == -1)
    return -1;
  if (dw->healing && idset_find (dw->healing, &id))
    return emit (dw, i, SLOT_KEPT_RUN, &id);
  return read_chunk (dw, i, &id);
}

static int
walk_chunk (struct disk_walk *dw, enum reader_kind kind, uint64_t i)
{
  store_id id;

  switch (kind) {
  case READER_KEEP:
    return keep_chunk (dw, i);
  case READER_ZERO:
    store_zero_id (dw->b->r->store, chunk_len (dw, i), &id);
    return emit (dw, i, SLOT_ZERO_RUN, &id);
  case READER_READ:
    return read_chunk (dw, i, NULL);
  }
  set_error (PB_E_FAIL, 0, "plan: unknown chunk kind %d", (int) kind);
  return chunk_error (dw, i);
}

/* A long run of whole zero chunks (a sparse disk has millions) is added
 * to the map at once, after what is in flight: no slot, no progress call
 * and no interrupt check per chunk.  Its last chunk may be the disk's
 * short one, left to the caller. */
static int
zero_run (struct disk_walk *dw, const struct reader_run *run, uint64_t *done)
{
  const struct backup *b = dw->b;
  uint64_t n = run->count, cs = pullback_repo_chunk_size (b->r);
  store_id id;

  if (chunk_len (dw, run->first + n - 1) < cs)
    n--;
  *done = 0;
  if (n < ZERO_RUN_MIN)
    return 0;
  if (finish_reads (dw, dw->rcount) == -1 || chunk_pipe_drain (dw->pipe) == -1)
    return -1;
  store_zero_id (b->r->store, cs, &id);
  if (maptree_writer_add_run (dw->w, &id, n) == -1)
    return chunk_error (dw, run->first);
  dw->dr->chunks_zero += n;
  *done = n;
  if (b->o->progress)
    b->o->progress (b->o->progress_opaque, dw->dr->name,
                    MIN ((run->first + n) * cs, dw->size), dw->size);
  return check_interrupt ();
}

static int
walk_run (struct disk_walk *dw, const struct reader_run *run)
{
  const struct backup *b = dw->b;
  uint64_t i, cs = pullback_repo_chunk_size (b->r), done = 0;

  if (run->kind == READER_ZERO && zero_run (dw, run, &done) == -1)
    return -1;
  for (i = run->first + done; i < run->first + run->count; i++) {
    /* Errors are named by chunk where they happen: a stored chunk's can
     * surface only later, when its slot is consumed. */
    if (check_interrupt () == -1 || walk_chunk (dw, run->kind, i) == -1)
      return -1;
    if (b->o->progress)
      b->o->progress (b->o->progress_opaque, dw->dr->name,
                      MIN ((i + 1) * cs, dw->size), dw->size);
  }
  return 0;
}

static int
walk_plan (struct disk_walk *dw)
{
  struct reader_run run;
  unsigned attempt = 0;
  int r;

  for (;;) {
    r = reader_plan_next (dw->plan, &run);
    if (r == -1 && recover (dw, &attempt) == 0)
      continue;   /* the plan is unchanged by a failure: ask again */
    if (r != 1)
      break;
    attempt = 0;
    if (walk_run (dw, &run) == -1)
      return -1;
  }
  if (r == -1)
    pb_prefix_error ("disk '%s'", dw->dr->name);
  return r;
}

/* Open the parent's map of this disk, if the disk existed there. */
static int
open_parent_map (struct disk_walk *dw, const struct catalog_disk *pd)
{
  store_id root;

  if (pd == NULL)
    return 0;
  memcpy (root.b, pd->map_root, STORE_ID_LEN);
  dw->ptree = maptree_reader_new (dw->b->r, &root, pd->map_levels,
                                  div_round_up (pd->size, pd->chunk_size));
  return dw->ptree ? 0 : -1;
}

static int
finish_disk (struct disk_walk *dw, struct catalog_disk *cd)
{
  store_id root;

  if (maptree_writer_finish (dw->w, &root, &cd->map_levels, cd->digest,
                             &dw->dr->bytes_new) == -1)
    return -1;
  memcpy (cd->map_root, root.b, STORE_ID_LEN);
  memcpy (dw->dr->digest, cd->digest, STORE_ID_LEN);
  cd->size = dw->size;
  cd->chunk_size = pullback_repo_chunk_size (dw->b->r);
  cd->bytes_read = dw->dr->bytes_read;
  cd->bytes_new = dw->dr->bytes_new;
  cd->chunks_changed = dw->dr->chunks_read + dw->dr->chunks_zero;
  return 0;
}

/* Room for the reads in flight: read_chunk keeps at most REQUESTS. */
static int
alloc_reads (struct disk_walk *dw)
{
  dw->rcap = dw->b->requests;
  dw->run_max = pullback_repo_chunk_size (dw->b->r) / sizeof (store_id);
  dw->reads = calloc (dw->rcap, sizeof *dw->reads);
  dw->pins = calloc (dw->rcap, sizeof *dw->pins);
  if (dw->reads && dw->pins)
    return 0;
  set_error (PB_E_FAIL, errno, "out of memory");
  return -1;
}

static int
backup_disk (struct backup *b, size_t i)
{
  const struct pullback_disk_spec *d = &b->o->disks[i];
  const struct catalog_disk *pd = parent_disk (b, d->name);
  uint32_t cs = pullback_repo_chunk_size (b->r);
  struct disk_walk dw = { .b = b, .dr = &b->res->disks[i], .disk = i };
  int r = -1;

  dw.size = reader_size (b->conns[i]);
  dw.dr->size = dw.size;
  dw.dr->chunks_total = div_round_up (dw.size, cs);
  dw.plan = reader_plan_new (b->conns[i], cs, pd ? d->bitmap : NULL,
                             pd ? pd->size : 0);
  if (dw.plan == NULL || open_parent_map (&dw, pd) == -1)
    goto out;
  dw.w = maptree_writer_new (b->r, b->batch, dw.dr->chunks_total);
  if (alloc_reads (&dw) == -1)
    goto out;
  dw.pipe = chunk_pipe_new_ahead (b->r->store, b->threads, b->requests, cs,
                                  consume, finish_oldest, &dw);
  if (dw.w && dw.pipe && walk_plan (&dw) == 0 &&
      chunk_pipe_drain (dw.pipe) == 0 && finish_disk (&dw, &b->disks[i]) == 0)
    r = 0;
 out:
  if (r == -1 && dw.plan == NULL)
    pb_prefix_error ("disk '%s'", d->name);
  /* First the reads that would fill slots, then the slots (whose
   * workers read our buffers). */
  reader_aio_drain (b->conns[i]);
  dw.dr->connections = reader_connections (b->conns[i]);
  chunk_pipe_free (dw.pipe);
  free (dw.reads);
  free (dw.pins);
  idset_free (dw.healing);
  maptree_writer_free (dw.w);
  maptree_reader_free (dw.ptree);
  reader_plan_free (dw.plan);
  return r;
}

/* ---- Recording the point ---- */

static struct json_object *
disk_json (const struct catalog_disk *d)
{
  struct json_object *o = json_object_new_object ();
  char root[2 * STORE_ID_LEN + 1], digest[2 * STORE_ID_LEN + 1];

  hex_encode (d->map_root, STORE_ID_LEN, root);
  hex_encode (d->digest, STORE_ID_LEN, digest);
  json_object_object_add (o, "name", json_object_new_string (d->name));
  json_object_object_add (o, "size", json_object_new_int64 ((int64_t) d->size));
  json_object_object_add (o, "chunk_size", json_object_new_int64 (d->chunk_size));
  json_object_object_add (o, "map_levels", json_object_new_int64 (d->map_levels));
  json_object_object_add (o, "map_root", json_object_new_string (root));
  json_object_object_add (o, "digest", json_object_new_string (digest));
  json_object_object_add (o, "bytes_read", json_object_new_int64 ((int64_t) d->bytes_read));
  json_object_object_add (o, "bytes_new", json_object_new_int64 ((int64_t) d->bytes_new));
  json_object_object_add (o, "chunks_changed", json_object_new_int64 ((int64_t) d->chunks_changed));
  return o;
}

static struct json_object *
nullable_string (const char *s)
{
  return s ? json_object_new_string (s) : NULL;
}

/* The point record: what the catalog holds about the point, in the store,
 * so the catalog can be rebuilt from the store alone (docs/FORMAT.md). */
static char *
point_record (struct pullback_repo *r, const struct catalog_point *p)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *disks = json_object_new_array ();
  char *text;
  size_t i;

  json_object_object_add (o, "format", json_object_new_string ("pullback-point"));
  json_object_object_add (o, "version", json_object_new_int (1));
  json_object_object_add (o, "repository", json_object_new_string (pullback_repo_uuid (r)));
  json_object_object_add (o, "id", json_object_new_int64 (p->id));
  json_object_object_add (o, "vm", json_object_new_string (p->vm));
  json_object_object_add (o, "mode", json_object_new_string (p->mode));
  json_object_object_add (o, "parent", p->parent ? json_object_new_int64 (p->parent) : NULL);
  json_object_object_add (o, "checkpoint", nullable_string (p->checkpoint));
  json_object_object_add (o, "since", nullable_string (p->since));
  json_object_object_add (o, "started", json_object_new_int64 (p->started));
  json_object_object_add (o, "finished", json_object_new_int64 (p->finished));
  for (i = 0; i < p->ndisks; i++)
    json_object_array_add (disks, disk_json (&p->disks[i]));
  json_object_object_add (o, "disks", disks);
  text = strdup (json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
  json_object_put (o);
  if (text == NULL)
    set_error (PB_E_FAIL, errno, "strdup");
  return text;
}

static void
fill_point (struct backup *b, struct catalog_point *p)
{
  const struct pullback_backup_opts *o = b->o;
  size_t i;

  p->vm = (char *) o->vm;
  p->parent = b->parent ? b->parent->id : 0;
  p->mode = (char *) (b->parent ? "incremental" : "full");
  p->checkpoint = (char *) o->checkpoint;
  p->since = b->parent ? (char *) o->since : NULL;
  p->started = b->started;
  p->finished = now_epoch ();
  p->ndisks = o->ndisks;
  p->disks = b->disks;
  for (i = 0; i < o->ndisks; i++)
    b->disks[i].name = (char *) o->disks[i].name;
}

static int
write_record (struct backup *b, const struct catalog_point *p)
{
  CLEANUP_FREE char *text = point_record (b->r, p);
  char name[64];

  snprintf (name, sizeof name, "points/%010" PRId64, p->id);
  if (text == NULL ||
      store_put_record (b->r->store, name, text, strlen (text)) == -1 ||
      store_sync (b->r->store) == -1)
    return -1;
  return 0;
}

/* Forgotten points kept only as bases for this VM's next incremental
 * (forget of the newest point) have served their purpose now. */
static int
drop_hidden_bases (struct backup *b, int64_t id)
{
  CLEANUP_FREE int64_t *ids = NULL;
  size_t n, i;

  if (catalog_hidden_points (b->r->cat, b->o->vm, id, &ids, &n) == -1)
    return -1;
  for (i = 0; i < n; i++)
    if (catalog_remove_point (b->r->cat, ids[i]) == -1 ||
        repo_delete_point_record (b->r, ids[i]) == -1)
      return -1;
  return 0;
}

static int
commit_point (struct backup *b)
{
  struct catalog_point p = { 0 };

  if (catalog_batch_flush (b->batch) == -1 || store_sync (b->r->store) == -1 ||
      catalog_set_durable (b->r->cat, true) == -1)
    return -1;
  fill_point (b, &p);
  if (catalog_begin (b->r->cat) == -1)
    return -1;
  if (catalog_next_point_id (b->r->cat, &p.id) == -1 ||
      write_record (b, &p) == -1 ||
      catalog_add_point (b->r->cat, &p) == -1 ||
      drop_hidden_bases (b, p.id) == -1 ||
      catalog_lease_drop (b->r->cat, b->lease) == -1 ||
      catalog_commit (b->r->cat) == -1) {
    catalog_rollback (b->r->cat);
    pb_prefix_error ("recording the point");
    return -1;
  }
  b->lease = 0;
  b->res->point = p.id;
  /* A parent that was a hidden base is gone now and the new point was
   * re-parented to its parent (catalog_remove_point): report that. */
  if (b->parent && b->parent->hidden)
    b->res->parent = b->parent->parent;
  return 0;
}

/* ---- Driver ---- */

static int
fill_result_head (struct backup *b)
{
  const struct pullback_backup_opts *o = b->o;
  struct pullback_backup_result *res = b->res;
  size_t i;

  res->ndisks = o->ndisks;
  res->vm = strdup (o->vm);
  res->checkpoint = o->checkpoint ? strdup (o->checkpoint) : NULL;
  if (res->vm == NULL || (o->checkpoint && res->checkpoint == NULL))
    goto oom;
  for (i = 0; i < o->ndisks; i++)
    if ((res->disks[i].name = strdup (o->disks[i].name)) == NULL)
      goto oom;
  return 0;
 oom:
  set_error (PB_E_FAIL, errno, "out of memory");
  return -1;
}

static int
set_mode (struct backup *b)
{
  struct pullback_backup_result *res = b->res;

  res->mode = b->parent ? "incremental" : "full";
  res->parent = b->parent ? b->parent->id : 0;
  if (b->parent && (res->since = strdup (b->o->since)) == NULL) {
    set_error (PB_E_FAIL, errno, "strdup");
    return -1;
  }
  return 0;
}

static int
alloc_backup (struct backup *b)
{
  size_t n = b->o->ndisks;

  b->res = calloc (1, sizeof *b->res);
  b->conns = calloc (n, sizeof *b->conns);
  b->disks = calloc (n, sizeof *b->disks);
  b->threads = b->o->threads ? b->o->threads : pb_online_cpus ();
  b->requests = MIN (b->o->requests ? b->o->requests : REQUESTS_DEFAULT,
                     PULLBACK_MAX_REQUESTS);
  b->connections = MIN (b->o->connections ? b->o->connections
                        : CONNECTIONS_DEFAULT, PULLBACK_MAX_CONNECTIONS);
  if (b->res)
    b->res->disks = calloc (n, sizeof *b->res->disks);
  if (!b->res || !b->conns || !b->disks || !b->res->disks) {
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  return 0;
}

/* The lease, and in the same transaction the parent it protects. */
static int
lease_and_parent (struct backup *b)
{
  if (catalog_begin (b->r->cat) == -1)
    return -1;
  if (catalog_lease_take (b->r->cat, b->o->vm, &b->lease) == -1 ||
      find_parent (b) == -1 ||
      (b->parent &&
       catalog_lease_set_base (b->r->cat, b->lease, b->parent->id) == -1) ||
      catalog_commit (b->r->cat) == -1) {
    catalog_rollback (b->r->cat);
    b->lease = 0;
    return -1;
  }
  b->batch = catalog_batch_new (b->r->cat, b->r->store, b->lease);
  /* Until the point's commit, rows and pins are written without fsync
   * (synchronous=NORMAL): they matter only once that commit, with FULL,
   * has made the WAL durable, and a crash before it records nothing. */
  if (b->batch == NULL || catalog_set_durable (b->r->cat, false) == -1)
    return -1;
  return 0;
}

/* A failed backup gives its lease back; if even that fails, the lease is
 * stale once this process has exited.  The backup's own error is kept. */
static void
release_lease (struct backup *b)
{
  struct pb_saved_error e;

  if (b->lease == 0)
    return;
  pb_save_error (&e);
  catalog_rollback (b->r->cat);
  catalog_set_durable (b->r->cat, true);
  if (catalog_begin (b->r->cat) == 0 &&
      (catalog_lease_drop (b->r->cat, b->lease) == -1 ||
       catalog_commit (b->r->cat) == -1))
    catalog_rollback (b->r->cat);
  pb_restore_error (&e);
}

static void
free_backup (struct backup *b)
{
  size_t i;

  release_lease (b);
  for (i = 0; b->conns && i < b->o->ndisks; i++)
    reader_close (b->conns[i]);
  free (b->conns);
  free (b->disks);
  catalog_batch_free (b->batch);
  catalog_point_free (b->parent);
}

static int
run_backup (struct backup *b)
{
  size_t i;

  if (alloc_backup (b) == -1 || fill_result_head (b) == -1 ||
      lease_and_parent (b) == -1 || set_mode (b) == -1 ||
      connect_all (b) == -1)
    return -1;
  for (i = 0; i < b->o->ndisks; i++)
    if (backup_disk (b, i) == -1)
      return -1;
  if (commit_point (b) == -1)
    return -1;
  b->res->seconds = now_mono () - b->t0;
  return 0;
}

int
pullback_backup (struct pullback_repo *r,
                 const struct pullback_backup_opts *opts,
                 struct pullback_backup_result **result)
{
  struct backup b = { .r = r, .o = opts };
  int ret;

  *result = NULL;
  if (check_opts (opts) == -1)
    return -1;
  b.started = now_epoch ();
  b.t0 = now_mono ();
  ret = run_backup (&b);
  if (ret == 0)
    *result = b.res;
  else
    pullback_backup_result_free (b.res);
  free_backup (&b);
  return ret;
}

void
pullback_backup_result_free (struct pullback_backup_result *res)
{
  size_t i;

  if (res == NULL)
    return;
  for (i = 0; res->disks && i < res->ndisks; i++)
    free (res->disks[i].name);
  free (res->disks);
  free (res->vm);
  free (res->checkpoint);
  free (res->since);
  free (res->fallback_reason);
  free (res);
}
