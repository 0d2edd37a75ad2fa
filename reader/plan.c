/* pullback - reader/plan.c: which chunks to read, which are zero, which
 * are clean since the parent point.
 *
 * The plan walks the disk in ascending chunk order.  Block status is asked
 * for lazily, one window of chunks at a time (WINDOW bytes), for both
 * contexts in each request (libnbd calls us back once per context).  Each
 * extent only sets bits in a per-chunk byte of the window: "has zero
 * bytes", "has data bytes", "has dirty bytes".  So memory is one byte per
 * chunk of one window whatever the disk size and however fragmented the
 * server's answer, and overlapping answers (when one context's reply ran
 * ahead of the other's and is asked for again) are harmless: OR-ing a bit
 * twice changes nothing.
 *
 * A chunk is READ, ZERO (all of it reads as zero per base:allocation) or
 * KEEP (incremental: no dirty byte, and wholly inside the parent's full
 * chunks).  reader_read_chunk reads an all-data chunk straight away (in
 * requests of at most reader_max_request); a chunk that mixes zero and
 * data asks the server again for that chunk alone and reads only its data
 * parts.  (uint32_t chunk sizes keep a window, and so a request, under
 * libnbd's 4 GiB limit.)
 *
 * Everything the server sends is checked: zero-length extents, extents
 * past the end of the export, replies that repeat a context or make no
 * progress are errors (PB_E_NBD "server sent ..."), never a crash or a
 * loop.  (NBD extents are lengths following the request offset, so they
 * cannot go backwards within a reply; a second reply for one context in
 * one request would overlap the first and is refused.)
 *
 * A plan is not thread-safe: one thread calls reader_plan_next and
 * reader_read_chunk.  reader_read_chunk_start queues the reads of an
 * all-data chunk (the common case) and returns; a mixed chunk is still
 * read at once (it needs a block status reply first, and is rare).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "errors.h"
#include "util.h"
#include "nbd.h"

/* Bytes of block status per window (rounded to whole chunks, at least
 * one).  1 GiB: a 1 TiB sparse disk takes 1024 requests, a window of 4 KiB
 * chunks costs 256 KiB. */
#define WINDOW (UINT64_C (1) << 30)
/* Pieces of one mixed chunk handled per block status request. */
#define MAX_PIECES 128

#define DIRTY_FLAG 1   /* qemu:dirty-bitmap: bit 0 set = dirty */

enum { CTX_ALLOC = 0, CTX_DIRTY = 1, NCTX = 2 };

/* Per-chunk bits within a window. */
enum { HAS_ZERO = 1, HAS_DATA = 2, HAS_DIRTY = 4 };

struct reader_plan {
  struct reader_conn *conn;
  const char *bitmap_ctx;  /* the connection's; NULL for a full backup */
  bool has_alloc;
  uint32_t chunk_size;
  uint64_t size;
  uint64_t nchunks;
  uint64_t keep_limit;     /* chunks below this may be KEEP */
  uint64_t next;           /* first chunk not yet yielded */
  uint64_t win_first;      /* the window: chunks [win_first, +win_count) */
  uint64_t win_count;
  uint64_t win_max;
  uint8_t *bits;           /* win_max bytes */
};

/* One block status request.  VISIT gets each valid extent in order and
 * returns 0 to go on or 1 to stop early (the extent was not consumed). */
struct status {
  struct reader_plan *p;
  uint64_t off;                 /* request offset */
  uint64_t done[NCTX];          /* end of the last consumed extent */
  bool seen[NCTX];
  bool failed;                  /* error already recorded */
  int (*visit) (struct status *st, int ctx, uint64_t start, uint64_t end,
                uint32_t flags);
  void *opaque;
};

void
reader_plan_free (struct reader_plan *p)
{
  if (p == NULL)
    return;
  free (p->bits);
  free (p);
}

/* Bytes [*START, *END) of chunk INDEX (the last chunk may be short). */
static void
chunk_bounds (struct reader_plan *p, uint64_t index, uint64_t *start,
              uint64_t *end)
{
  *start = index * p->chunk_size;
  *end = MIN (*start + p->chunk_size, p->size);
}

/* The plan's bitmap must be the one the connection negotiated; either its
 * name or its full context name is accepted. */
static int
set_bitmap (struct reader_plan *p, const char *bitmap)
{
  const char *ctx = reader_bitmap_context (p->conn);
  size_t prefix = strlen ("qemu:dirty-bitmap:");

  if (ctx == NULL
      || (strcmp (bitmap, ctx) != 0 && strcmp (bitmap, ctx + prefix) != 0)) {
    set_error (PB_E_BITMAP, 0, "%s was not connected with bitmap '%s'",
               reader_name (p->conn), bitmap);
    return -1;
  }
  p->bitmap_ctx = ctx;
  return 0;
}

struct reader_plan *
reader_plan_new (struct reader_conn *c, uint32_t chunk_size,
                 const char *bitmap, uint64_t parent_size)
{
  struct reader_plan *p;

  if (c == NULL || !is_power_of_2 (chunk_size)) {
    set_error (PB_E_USAGE, 0, "reader_plan_new: no connection, or chunk "
               "size %" PRIu32 " is not a power of 2", chunk_size);
    return NULL;
  }
  p = calloc (1, sizeof *p);
  if (p == NULL)
    goto nomem;
  p->conn = c;
  p->has_alloc = reader_has_allocation (c);
  p->chunk_size = chunk_size;
  p->size = reader_size (c);
  p->nchunks = div_round_up (p->size, chunk_size);
  if (bitmap != NULL && set_bitmap (p, bitmap) == -1)
    goto fail;
  /* The parent's partial last chunk, and everything past the smaller of
   * the two sizes, must be read again (grown or shrunk disks). */
  p->keep_limit = bitmap ? MIN (parent_size, p->size) / chunk_size : 0;
  p->win_max = MAX (WINDOW / chunk_size, 1);
  p->bits = malloc (MAX (MIN (p->win_max, p->nchunks), 1));
  if (p->bits == NULL)
    goto nomem;
  return p;

 nomem:
  set_error (PB_E_FAIL, errno, "out of memory");
 fail:
  reader_plan_free (p);
  return NULL;
}

/* ---- Talking to the server ---- */

static const char *
ctx_name (struct reader_plan *p, int ctx)
{
  return ctx == CTX_DIRTY ? p->bitmap_ctx : LIBNBD_CONTEXT_BASE_ALLOCATION;
}

static int
invalid (struct status *st, int ctx, uint64_t pos, const char *why)
{
  set_error (PB_E_NBD, 0, "server sent an invalid extent for %s at offset %"
             PRIu64 " of %s: %s", ctx_name (st->p, ctx), pos,
             reader_name (st->p->conn), why);
  st->failed = true;
  return -1;
}

/* Which of our contexts NAME is, or -1 for one we did not ask for. */
static int
context_of (struct reader_plan *p, const char *name)
{
  if (p->has_alloc && strcmp (name, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0)
    return CTX_ALLOC;
  if (p->bitmap_ctx != NULL && strcmp (name, p->bitmap_ctx) == 0)
    return CTX_DIRTY;
  return -1;
}

/* Check and hand over each extent of one reply, with checked offsets. */
static int
walk_extents (struct status *st, int ctx, const uint32_t *entries, size_t n)
{
  uint64_t pos = st->off, end;
  size_t i;

  for (i = 0; i + 1 < n; i += 2) {
    if (entries[i] == 0)
      return invalid (st, ctx, pos, "zero length");
    if (ADD_OVERFLOW (pos, entries[i], &end) || end > st->p->size)
      return invalid (st, ctx, pos, "beyond the end of the export");
    if (st->visit (st, ctx, pos, end, entries[i + 1]) != 0)
      break;
    st->done[ctx] = pos = end;
  }
  return 0;
}

static int
extent_callback (void *opaque, const char *name, uint64_t offset,
                 uint32_t *entries, size_t n, int *error)
{
  struct status *st = opaque;
  int ctx = context_of (st->p, name);

  if (st->failed)
    return -1;
  if (ctx == -1)
    return 0;
  if (st->seen[ctx])
    invalid (st, ctx, offset, "a second reply in one request");
  else if (offset != st->off)
    invalid (st, ctx, offset, "a reply for another offset");
  else if (n < 2)
    invalid (st, ctx, offset, "an empty reply");
  else
    walk_extents (st, ctx, entries, n);
  st->seen[ctx] = true;
  if (st->failed)
    *error = EPROTO;
  return st->failed ? -1 : 0;
}

/* Ask for block status of [OFF, OFF+LEN); ST->visit sees the extents. */
static int
block_status (struct status *st, uint64_t off, uint64_t len)
{
  nbd_extent_callback cb = { .callback = extent_callback, .user_data = st };

  st->off = off;
  st->done[CTX_ALLOC] = st->done[CTX_DIRTY] = off;
  st->seen[CTX_ALLOC] = st->seen[CTX_DIRTY] = false;
  if (nbd_block_status (reader_handle (st->p->conn), len, off, cb, 0) == 0)
    return 0;
  if (!st->failed)   /* else our own message stands */
    reader_nbd_error (st->p->conn, "block status of", off);
  return -1;
}

static int
no_progress (struct reader_plan *p, int ctx, uint64_t off)
{
  set_error (PB_E_NBD, 0, "server sent no extents for %s at offset %" PRIu64
             " of %s", ctx_name (p, ctx), off, reader_name (p->conn));
  return -1;
}

/* ---- Windows ---- */

/* Bytes [*START, *END) the window covers. */
static void
window_bounds (struct reader_plan *p, uint64_t *start, uint64_t *end)
{
  uint64_t unused;

  chunk_bounds (p, p->win_first, start, &unused);
  chunk_bounds (p, p->win_first + p->win_count - 1, &unused, end);
}

/* The window bit an extent sets, or 0. */
static uint8_t
extent_bit (int ctx, uint32_t flags)
{
  if (ctx == CTX_ALLOC)
    return flags & LIBNBD_STATE_ZERO ? HAS_ZERO : HAS_DATA;
  return flags & DIRTY_FLAG ? HAS_DIRTY : 0;
}

static int
mark_chunks (struct status *st, int ctx, uint64_t start, uint64_t end,
             uint32_t flags)
{
  struct reader_plan *p = st->p;
  uint64_t wstart, wend, i, last;

  window_bounds (p, &wstart, &wend);
  start = MAX (start, wstart);
  end = MIN (end, wend);   /* extents may run past what we asked: clip */
  if (start >= end)
    return 0;
  last = (end - 1) / p->chunk_size - p->win_first;
  for (i = start / p->chunk_size - p->win_first; i <= last; i++)
    p->bits[i] |= extent_bit (ctx, flags);
  return 0;
}

/* Request again from where the lagging context stopped: the server may
 * answer less than asked (QEMU: at most 131072 extents per reply). */
static int
fill_window (struct reader_plan *p, uint64_t start, uint64_t end)
{
  struct status st = { .p = p, .visit = mark_chunks };
  uint64_t done[NCTX], off;
  int ctx;

  done[CTX_ALLOC] = p->has_alloc ? start : end;
  done[CTX_DIRTY] = p->bitmap_ctx ? start : end;
  while ((off = MIN (done[CTX_ALLOC], done[CTX_DIRTY])) < end) {
    if (block_status (&st, off, end - off) == -1)
      return -1;
    for (ctx = 0; ctx < NCTX; ctx++)
      if (st.seen[ctx])
        done[ctx] = MAX (done[ctx], MIN (st.done[ctx], end));
    ctx = done[CTX_ALLOC] <= off ? CTX_ALLOC : CTX_DIRTY;
    if (done[ctx] <= off)
      return no_progress (p, ctx, off);
  }
  return 0;
}

/* Make the window start at chunk FIRST. */
static int
fetch_window (struct reader_plan *p, uint64_t first)
{
  uint64_t start, end;

  p->win_first = first;
  p->win_count = MIN (p->win_max, p->nchunks - first);
  memset (p->bits, 0, p->win_count);
  window_bounds (p, &start, &end);
  if (fill_window (p, start, end) == -1) {
    p->win_count = 0;   /* nothing half-known stays cached */
    return -1;
  }
  return 0;
}

static bool
in_window (struct reader_plan *p, uint64_t index)
{
  return index >= p->win_first && index - p->win_first < p->win_count;
}

/* ---- Runs ---- */

static enum reader_kind
classify (struct reader_plan *p, uint64_t index)
{
  uint8_t b = p->bits[index - p->win_first];

  if (p->bitmap_ctx != NULL && index < p->keep_limit && !(b & HAS_DIRTY))
    return READER_KEEP;
  if (p->has_alloc && (b & (HAS_ZERO | HAS_DATA)) == HAS_ZERO)
    return READER_ZERO;
  return READER_READ;
}

/* Runs are as long as the chunks agree.  KEEP and ZERO runs go on across
 * windows; a READ run ends with its window, so that reader_read_chunk
 * finds the run's chunks described in the window it keeps. */
int
reader_plan_next (struct reader_plan *p, struct reader_run *run)
{
  uint64_t i = p->next;

  if (i >= p->nchunks)
    return 0;
  if (!in_window (p, i) && fetch_window (p, i) == -1)
    return -1;
  run->first = i;
  run->kind = classify (p, i);
  for (i++; i < p->nchunks; i++) {
    if (!in_window (p, i)) {
      if (run->kind == READER_READ)
        break;
      if (fetch_window (p, i) == -1)
        return -1;     /* p->next unchanged: nothing was yielded */
    }
    if (classify (p, i) != run->kind)
      break;
  }
  run->count = i - run->first;
  p->next = i;
  return 1;
}

/* ---- Reading chunks ---- */

struct pieces {
  uint64_t end;                 /* of the chunk */
  size_t n;
  uint64_t start[MAX_PIECES], stop[MAX_PIECES];
  bool zero[MAX_PIECES];
};

/* Collect the chunk's zero and data pieces, merging neighbours. */
static int
add_piece (struct status *st, int ctx, uint64_t start, uint64_t end,
           uint32_t flags)
{
  struct pieces *pc = st->opaque;
  bool zero = flags & LIBNBD_STATE_ZERO;

  if (ctx != CTX_ALLOC)
    return 0;
  if (start >= pc->end)
    return 1;
  end = MIN (end, pc->end);
  if (pc->n > 0 && pc->zero[pc->n - 1] == zero) {
    pc->stop[pc->n - 1] = end;
    return 0;
  }
  if (pc->n == MAX_PIECES)
    return 1;   /* the rest in the next request */
  pc->start[pc->n] = start;
  pc->stop[pc->n] = end;
  pc->zero[pc->n++] = zero;
  return 0;
}

/* Read the data pieces of [START, END) into BUF, zero the others. */
static int
read_pieces (struct reader_plan *p, const struct pieces *pc, char *buf,
             uint64_t chunk_start, uint64_t *read)
{
  size_t i;

  for (i = 0; i < pc->n; i++) {
    char *dst = buf + (pc->start[i] - chunk_start);
    size_t len = pc->stop[i] - pc->start[i];

    if (pc->zero[i])
      memset (dst, 0, len);
    else if (reader_pread (p->conn, dst, len, pc->start[i]) == -1)
      return -1;
    else
      *read += len;
  }
  return 0;
}

/* A chunk with both zero and data parts (or one outside the window):
 * ask about this chunk alone, as often as the server needs. */
static int
read_mixed (struct reader_plan *p, char *buf, uint64_t start, uint64_t end,
            uint64_t *read)
{
  struct pieces *pc = malloc (sizeof *pc);
  struct status st = { .p = p, .visit = add_piece, .opaque = pc };
  uint64_t pos = start;
  int r = 0;

  if (pc == NULL) {
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  while (r == 0 && pos < end) {
    pc->end = end;
    pc->n = 0;
    if ((r = block_status (&st, pos, end - pos)) == -1)
      break;
    if (pc->n == 0)
      r = no_progress (p, CTX_ALLOC, pos);
    else if ((r = read_pieces (p, pc, buf, start, read)) == 0)
      pos = pc->stop[pc->n - 1];
  }
  free (pc);
  return r;
}

/* INDEX and LEN must name a chunk of the plan: a caller's bug if not. */
static int
check_chunk (struct reader_plan *p, uint64_t index, size_t len,
             uint64_t *start, uint64_t *end)
{
  chunk_bounds (p, index, start, end);
  if (index >= p->nchunks || len != *end - *start) {
    set_error (PB_E_USAGE, 0, "%s has no chunk %" PRIu64 " of %zu bytes",
               reader_name (p->conn), index, len);
    return -1;
  }
  return 0;
}

/* Works for any chunk; chunks of the most recently yielded run are
 * described by the plan's window and cost no extra block status request
 * unless they mix zero and data. */
static int
read_chunk (struct reader_plan *p, uint64_t index, void *buf, size_t len,
            uint64_t *read, struct reader_aio *a)
{
  uint64_t start, end;
  uint8_t b = HAS_DATA;    /* without base:allocation: read it all */

  *read = 0;
  if (a)
    a->pending = a->err = 0;
  if (check_chunk (p, index, len, &start, &end) == -1)
    return -1;
  if (p->has_alloc)
    b = in_window (p, index) ? p->bits[index - p->win_first] & ~HAS_DIRTY
                             : 0;   /* unknown: ask */
  if (b == HAS_ZERO) {
    memset (buf, 0, len);
    return 0;
  }
  if (b == HAS_DATA) {
    *read = len;
    if (a == NULL)
      return reader_pread (p->conn, buf, len, start);
    reader_pread_start (p->conn, buf, len, start, a);
    return 0;
  }
  return read_mixed (p, buf, start, end, read);
}

int
reader_read_chunk (struct reader_plan *p, uint64_t index, void *buf,
                   size_t len, uint64_t *read)
{
  return read_chunk (p, index, buf, len, read, NULL);
}

int
reader_read_chunk_start (struct reader_plan *p, uint64_t index, void *buf,
                         size_t len, uint64_t *read, struct reader_aio *a)
{
  return read_chunk (p, index, buf, len, read, a);
}
