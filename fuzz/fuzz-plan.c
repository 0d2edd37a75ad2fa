/* pullback - fuzz/fuzz-plan.c: fuzz target of the extent-plan builder,
 * reader/plan.c, fed arbitrary NBD block status replies: extents beyond
 * the export, zero-length, overlapping, unsorted, huge, replies for other
 * offsets or contexts, repeated replies, and none at all.
 *
 * reader/plan.c is compiled into this program on its own (not from
 * libreader): the few functions of reader/nbd.c it calls, and libnbd's
 * nbd_block_status, are replaced here by stubs that play the replies the
 * input describes.  Input (integers little-endian):
 *   u8  flags: 1 base:allocation negotiated, 2 incremental (a dirty
 *       bitmap), 4 read the first chunk of each run (of the first few)
 *   u8  chunk size 2^(16 + v % 9) (64 KiB to 16 MiB, a store's range:
 *       smaller ones only make each window longer to walk)
 *   u64 export size (top bit cleared: libnbd sizes are int64)
 *   u64 parent size
 * then, for each nbd_block_status call, one group:
 *   u8  number of replies (v % 4)
 *   per reply: u8 context (v % 3: base:allocation, the bitmap, another),
 *       u8 offset (0: the request's, else request + v * 4096),
 *       u8 extent count, then per extent u32 length, u8 flags
 * A call finding the input used up fails, as a dropped connection does.
 *
 * Checked: runs are consecutive, non-empty, inside the disk, of a kind
 * the plan may yield (KEEP only incremental, ZERO only with
 * base:allocation); errors are PB_E_NBD; a read chunk is written only
 * within its buffer.  An input is accepted when the plan reaches the end
 * of the disk.  At most MAX_RUNS runs and MAX_CHUNKS chunks are taken per
 * input: a huge disk without base:allocation yields one READ run per
 * window with no request at all, and the plan's work is (rightly) linear
 * in the number of chunks.  At most MAX_READS chunks are read.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <libnbd.h>

#include "errors.h"
#include "fuzz.h"
#include "nbd.h"
#include "util.h"

#define MAX_RUNS 512
#define MAX_CHUNKS (UINT64_C (1) << 14)   /* a window of 64 KiB chunks */
#define MAX_READS 4
/* Reads only with chunks of up to 1 MiB: the code is the same for larger
 * ones, whose zero pieces cost a memset of up to 16 MiB each. */
#define MAX_READ_CHUNK (UINT32_C (1) << 20)
#define BITMAP "fuzz"
#define BITMAP_CTX "qemu:dirty-bitmap:" BITMAP

enum { F_ALLOC = 1, F_BITMAP = 2, F_READ = 4 };

struct reader_conn {
  uint64_t size;
  bool has_alloc, bitmap;
};

/* The reply stream still to play. */
static const uint8_t *in;
static size_t in_left;

static bool
take (void *out, size_t n)
{
  if (in_left < n)
    return false;
  memcpy (out, in, n);
  in += n;
  in_left -= n;
  return true;
}

static uint64_t
le (const uint8_t *p, size_t n)
{
  uint64_t v = 0;

  while (n-- > 0)
    v = v << 8 | p[n];
  return v;
}

/* ---- stubs of reader/nbd.c ---- */

uint64_t
reader_size (struct reader_conn *c)
{
  return c->size;
}

bool
reader_has_allocation (struct reader_conn *c)
{
  return c->has_alloc;
}

const char *
reader_bitmap_context (struct reader_conn *c)
{
  return c->bitmap ? BITMAP_CTX : NULL;
}

const char *
reader_name (struct reader_conn *c)
{
  return "export 'fuzz'";
}

struct nbd_handle *
reader_handle (struct reader_conn *c)
{
  return (struct nbd_handle *) c;
}

void
reader_nbd_error (struct reader_conn *c, const char *what, uint64_t off)
{
  set_error (PB_E_NBD, 0, "%s offset %" PRIu64 " of %s: connection lost",
             what, off, reader_name (c));
}

/* Touch the first and last byte, so the sanitizers see a bad range. */
int
reader_pread (struct reader_conn *c, void *buf, size_t len, uint64_t off)
{
  FUZZ_CHECK (off + len <= c->size);
  if (len) {
    ((uint8_t *) buf)[0] = 0xa5;
    ((uint8_t *) buf)[len - 1] = 0xa5;
  }
  return 0;
}

void
reader_pread_start (struct reader_conn *c, void *buf, size_t len,
                    uint64_t off, struct reader_aio *a)
{
  a->pending = 0;
  a->err = reader_pread (c, buf, len, off) == 0 ? 0 : EIO;
  a->off = off;
}

/* ---- a stub of libnbd's nbd_block_status ---- */

/* One reply from the input to CB: -1 if the input ran out or CB failed.
 * FIRST: no reply of this command failed yet, so a failing CB must say
 * why in *error (after that, the command has its error already). */
static int
one_reply (uint64_t offset, nbd_extent_callback cb, bool first)
{
  static const char *const names[] = {
    LIBNBD_CONTEXT_BASE_ALLOCATION, BITMAP_CTX, "qemu:allocation-depth"
  };
  uint8_t h[3], e[5];
  uint32_t *entries;
  size_t i;
  int err = 0, r;

  if (!take (h, sizeof h))
    return -1;
  entries = malloc (2 * h[2] * sizeof *entries + 1);
  FUZZ_CHECK (entries != NULL);
  for (i = 0; i < h[2]; i++) {
    if (!take (e, sizeof e)) {
      free (entries);
      return -1;
    }
    entries[2 * i] = le (e, 4);
    entries[2 * i + 1] = e[4];
  }
  r = cb.callback (cb.user_data, names[h[0] % 3],
                   h[1] ? offset + h[1] * UINT64_C (4096) : offset,
                   entries, 2 * h[2], &err);
  free (entries);
  if (r == -1 && first)
    FUZZ_CHECK (err != 0);
  return r;
}

/* Like libnbd, go on calling CB for the replies after one it refused,
 * and fail the command at the end. */
int
nbd_block_status (struct nbd_handle *h, uint64_t count, uint64_t offset,
                  nbd_extent_callback cb, uint32_t flags)
{
  uint8_t n;
  int r = 0;

  if (!take (&n, 1))
    return -1;
  for (n %= 4; n > 0; n--)
    if (one_reply (offset, cb, r == 0) == -1) {
      r = -1;
      if (in_left == 0)
        break;
    }
  return r;
}

/* ---- the target ---- */

/* Read chunk INDEX into a buffer of exactly its size. */
static void
read_chunk (struct reader_plan *p, struct reader_conn *c, uint32_t chunk_size,
            uint64_t index)
{
  uint64_t start = index * chunk_size;
  size_t len = MIN ((uint64_t) chunk_size, c->size - start);
  uint8_t *buf = malloc (len);
  uint64_t nread;

  FUZZ_CHECK (buf != NULL);
  if (reader_read_chunk (p, index, buf, len, &nread) == 0)
    FUZZ_CHECK (nread <= len);
  else
    FUZZ_CHECK (pb_get_errclass () == PB_E_NBD);
  free (buf);
}

static void
walk (struct reader_plan *p, struct reader_conn *c, uint32_t chunk_size,
      uint8_t flags)
{
  uint64_t nchunks = c->size / chunk_size + (c->size % chunk_size != 0);
  uint64_t next = 0;
  struct reader_run run;
  unsigned runs, reads = 0;
  int r = 1;

  for (runs = 0; runs < MAX_RUNS && next < MAX_CHUNKS &&
       (r = reader_plan_next (p, &run)) == 1; runs++) {
    FUZZ_CHECK (run.first == next && run.count >= 1);
    FUZZ_CHECK (run.count <= nchunks - run.first);
    FUZZ_CHECK (run.kind == READER_READ ||
                (run.kind == READER_ZERO && c->has_alloc) ||
                (run.kind == READER_KEEP && c->bitmap));
    next = run.first + run.count;
    if ((flags & F_READ) && chunk_size <= MAX_READ_CHUNK &&
        reads++ < MAX_READS)
      read_chunk (p, c, chunk_size, run.first);
  }
  if (r == -1)
    FUZZ_CHECK (pb_get_errclass () == PB_E_NBD);
  if (r == 0) {
    FUZZ_CHECK (next == nchunks);
    fuzz_accept ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct reader_conn c;
  struct reader_plan *p;
  uint32_t chunk_size;
  uint64_t parent_size;

  if (size < 18)
    return 0;
  c.has_alloc = data[0] & F_ALLOC;
  c.bitmap = data[0] & F_BITMAP;
  chunk_size = UINT32_C (1) << (16 + data[1] % 9);
  c.size = le (data + 2, 8) & INT64_MAX;
  parent_size = le (data + 10, 8);
  in = data + 18;
  in_left = size - 18;
  p = reader_plan_new (&c, chunk_size, c.bitmap ? BITMAP : NULL, parent_size);
  FUZZ_CHECK (p != NULL);
  walk (p, &c, chunk_size, data[0]);
  reader_plan_free (p);
  return 0;
}
