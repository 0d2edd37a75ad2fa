/* pullback - reader/restore.c: rebuilding a disk from a point.
 *
 * The point's map tree gives every chunk id in order; each chunk is read
 * from the store (which checks its id, so wrong data is never written) and
 * written to the target: by the worker that loaded it for a raw file or a
 * block device (positional writes, in parallel), in order by this thread
 * for a qcow2 image (asynchronous NBD writes to qemu-nbd).  Zero chunks
 * are holes in a raw file, left unwritten in a new qcow2 image (so it
 * stays thin), and explicit zeroing on a block device.
 *
 * A file target is built under a temporary name in the same directory and
 * renamed over TARGET only when complete, fsync'ed and its content digest
 * matches the point's: a failure never leaves a half-written image behind
 * and never destroys the file --force would have replaced.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "maptree.h"
#include "nbd.h"
#include "util.h"

struct restore {
  struct pullback_repo *r;
  const struct pullback_restore_opts *o;
  struct pullback_restore_result *res;
  struct catalog_point *p;
  const struct catalog_disk *d;
  struct maptree_reader *tree;
  bool qcow2, blockdev;
  char *tmp;                    /* file targets: the temporary image */
  int fd;                       /* raw targets */
  struct reader_conn *conn;     /* qcow2 targets */
  struct chunk_pipe *pipe;      /* loads chunks on worker threads */
  uint64_t zero_start, zero_len; /* pending zero run (qcow2, block device) */
  uint64_t kicked;              /* raw: writeback started below this */
  void *buf;
  EVP_MD_CTX *digest;
};

static int
find_disk (struct restore *rs)
{
  size_t i;
  char names[256] = "";

  for (i = 0; i < rs->p->ndisks; i++) {
    if (strcmp (rs->p->disks[i].name, rs->o->disk) == 0) {
      rs->d = &rs->p->disks[i];
      return 0;
    }
    snprintf (names + strlen (names), sizeof names - strlen (names), "%s%s",
              i ? ", " : "", rs->p->disks[i].name);
  }
  set_error (PB_E_NOTFOUND, 0, "point %" PRId64 " has no disk '%s' "
             "(disks: %s)", rs->p->id, rs->o->disk, names);
  return -1;
}

static int
check_format (struct restore *rs)
{
  const char *f = rs->o->format ? rs->o->format : "raw";

  if (strcmp (f, "raw") != 0 && strcmp (f, "qcow2") != 0) {
    set_error (PB_E_USAGE, 0, "unknown format '%s' (raw or qcow2)", f);
    return -1;
  }
  rs->qcow2 = strcmp (f, "qcow2") == 0;
  return 0;
}

/* An existing target needs --force, and must not be in use. */
static int
check_target (struct restore *rs)
{
  const char *t = rs->o->target;
  struct stat st;

  if (stat (t, &st) == -1) {
    if (errno == ENOENT)
      return 0;
    set_error (PB_E_TARGET, errno, "%s", t);
    return -1;
  }
  if (S_ISDIR (st.st_mode)) {
    set_error (PB_E_TARGET, 0, "%s is a directory", t);
    return -1;
  }
  if (reader_check_unlocked (t) == -1)
    return -1;
  if (!rs->o->force) {
    set_error (PB_E_TARGET, 0, "%s exists (use --force to replace it)", t);
    return -1;
  }
  rs->blockdev = S_ISBLK (st.st_mode);
  if (rs->blockdev && rs->qcow2) {
    set_error (PB_E_USAGE, 0, "%s is a block device: restore it as raw", t);
    return -1;
  }
  return 0;
}

/* A temporary file beside the target, so the final rename is atomic;
 * first, those that killed restores to this target left behind go. */
static int
make_tmp (struct restore *rs)
{
  rs->res->temp_removed = target_tmp_sweep (rs->o->target);
  return target_tmp_create (rs->o->target, &rs->tmp, &rs->fd);
}

static int
open_raw_file (struct restore *rs)
{
  if (make_tmp (rs) == -1)
    return -1;
  if (ftruncate (rs->fd, rs->d->size) == -1) {
    set_error (PB_E_IO, errno, "truncate %s", rs->tmp);
    return -1;
  }
  return 0;
}

static int
open_blockdev (struct restore *rs)
{
  uint64_t size;

  /* O_EXCL on a block device: fail if it is mounted or otherwise claimed. */
  rs->fd = open (rs->o->target, O_WRONLY|O_EXCL|O_CLOEXEC);
  if (rs->fd == -1) {
    set_error (PB_E_TARGET, errno, "open %s", rs->o->target);
    return -1;
  }
  if (ioctl (rs->fd, BLKGETSIZE64, &size) == -1) {
    set_error (PB_E_TARGET, errno, "size of %s", rs->o->target);
    return -1;
  }
  if (size < rs->d->size) {
    set_error (PB_E_TARGET, 0, "%s holds %" PRIu64 " bytes, the disk needs %"
               PRIu64, rs->o->target, size, rs->d->size);
    return -1;
  }
  return 0;
}

static int
open_qcow2 (struct restore *rs)
{
  char size[32];
  const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", NULL,
                         size, NULL };

  if (make_tmp (rs) == -1)
    return -1;
  argv[5] = rs->tmp;
  snprintf (size, sizeof size, "%" PRIu64, rs->d->size);
  if (run_command (argv, PB_E_TARGET) == -1)
    return -1;
  /* qemu-img may have made the file anew: hold the lock on what it made. */
  close (rs->fd);
  if (target_tmp_lock (rs->tmp, &rs->fd) == -1)
    return -1;
  rs->conn = reader_open_image (rs->tmp, "qcow2", true);
  return rs->conn ? 0 : -1;
}

static int
open_target (struct restore *rs)
{
  if (rs->qcow2)
    return open_qcow2 (rs);
  if (rs->blockdev)
    return open_blockdev (rs);
  return open_raw_file (rs);
}

/* ---- Writing ---- */

static int
zero_blockdev (struct restore *rs, uint64_t off, uint64_t len)
{
  uint64_t range[2] = { off, len };
  size_t n;

  if (ioctl (rs->fd, BLKZEROOUT, range) == 0)
    return 0;
  /* Not supported: write zeroes. */
  memset (rs->buf, 0, rs->d->chunk_size);
  while (len > 0) {
    n = MIN (len, rs->d->chunk_size);
    if (full_pwrite (rs->fd, rs->buf, n, off) == -1) {
      set_error (PB_E_IO, errno, "zero %s", rs->o->target);
      return -1;
    }
    off += n;
    len -= n;
  }
  return 0;
}

/* Zero runs are merged so that one request covers many chunks. */
static int
flush_zero (struct restore *rs)
{
  uint64_t off = rs->zero_start, len = rs->zero_len;

  rs->zero_len = 0;
  if (len == 0)
    return 0;
  if (rs->blockdev)
    return zero_blockdev (rs, off, len);
  /* A raw file target is new and sparse, a qcow2 target new and empty
   * (qemu-img create): unwritten ranges already read as zeros. */
  return 0;
}

static int
add_zero (struct restore *rs, uint64_t off, uint64_t len)
{
  if (rs->zero_len && rs->zero_start + rs->zero_len == off) {
    rs->zero_len += len;
    return 0;
  }
  if (flush_zero (rs) == -1)
    return -1;
  rs->zero_start = off;
  rs->zero_len = len;
  return 0;
}

/* Start writing back what was written since the last kick, every
 * KICK_BYTES: the disk then writes while chunks are still being loaded,
 * instead of all of it in the final fsync.  (Best effort: a failure would
 * show in that fsync.  Chunks come in ascending order.) */
#define KICK_BYTES (8u << 20)

static void
kick_writeback (struct restore *rs, uint64_t end)
{
  if (end < rs->kicked + KICK_BYTES)
    return;
  sync_file_range (rs->fd, rs->kicked, end - rs->kicked,
                   SYNC_FILE_RANGE_WRITE);
  rs->kicked = end;
}

/* qcow2 targets (raw ones are written by the workers). */
static int
write_data (struct restore *rs, const void *buf, uint64_t off, size_t len)
{
  if (flush_zero (rs) == -1)
    return -1;
  return reader_pwrite_async (rs->conn, buf, len, off);
}

/* A worker wrote the data below END already: only what comes in order. */
static int
written (struct restore *rs, uint64_t end)
{
  if (flush_zero (rs) == -1)
    return -1;
  kick_writeback (rs, end);
  return 0;
}

/* What a restore slot holds. */
enum { SLOT_ZERO, SLOT_DATA };

/* In chunk order, on this thread: write what a worker loaded (and
 * checked), or merge a zero chunk into the pending zero run. */
static int
consume (void *opaque, struct pipe_slot *s)
{
  struct restore *rs = opaque;
  uint64_t off = s->index * rs->d->chunk_size;
  int r = -1;

  if (s->failed)
    ;                           /* the worker's error: name the chunk */
  else if (s->kind == SLOT_ZERO) {
    rs->res->bytes_zero += s->len;
    r = add_zero (rs, off, s->len);
  }
  else {
    rs->res->bytes_written += s->len;
    r = s->op == PIPE_GET_WRITE ? written (rs, off + s->len)
                                : write_data (rs, s->buf, off, s->len);
  }
  if (r == -1)
    pb_prefix_error ("point %" PRId64 " disk '%s' chunk %" PRIu64
                     " (offset %" PRIu64 ")", rs->p->id, rs->d->name,
                     s->index, off);
  return r;
}

/* Chunk I: zero chunks are written at once when nothing is pending, the
 * others loaded by a worker. */
static int
restore_chunk (struct restore *rs, uint64_t i)
{
  uint64_t off = i * rs->d->chunk_size;
  size_t want = MIN ((uint64_t) rs->d->chunk_size, rs->d->size - off);
  struct pipe_slot one = { .index = i, .len = want, .kind = SLOT_ZERO }, *s = &one;
  store_id id, zero;
  bool is_zero;

  if (check_interrupt () == -1)
    return -1;
  if (maptree_reader_get (rs->tree, i, &id) == -1) {
    pb_prefix_error ("point %" PRId64 " disk '%s' chunk %" PRIu64
                     " (offset %" PRIu64 ")", rs->p->id, rs->d->name, i, off);
    return -1;
  }
  EVP_DigestUpdate (rs->digest, id.b, STORE_ID_LEN);
  store_zero_id (rs->r->store, want, &zero);
  is_zero = memcmp (id.b, zero.b, STORE_ID_LEN) == 0;
  if (is_zero && chunk_pipe_idle (rs->pipe))
    return consume (rs, &one);
  if ((s = chunk_pipe_get (rs->pipe)) == NULL)
    return -1;
  s->index = i;
  s->len = want;
  s->id = id;
  s->kind = is_zero ? SLOT_ZERO : SLOT_DATA;
  s->op = PIPE_GET;
  if (!rs->qcow2) {             /* raw file or block device: fd writes */
    s->op = PIPE_GET_WRITE;
    s->fd = rs->fd;
    s->off = off;
    s->fdname = rs->tmp ? rs->tmp : rs->o->target;
  }
  chunk_pipe_submit (rs->pipe, s, !is_zero);
  return 0;
}

static int
restore_chunks (struct restore *rs)
{
  uint64_t i, n = div_round_up (rs->d->size, rs->d->chunk_size);

  for (i = 0; i < n; i++) {
    /* Errors are named by chunk where they happen: a loaded chunk's can
     * surface only later, when its slot is consumed. */
    if (restore_chunk (rs, i) == -1)
      return -1;
    if (rs->o->progress)
      rs->o->progress (rs->o->progress_opaque, rs->d->name,
                       MIN ((i + 1) * rs->d->chunk_size, rs->d->size),
                       rs->d->size);
  }
  if (chunk_pipe_drain (rs->pipe) == -1)
    return -1;
  return flush_zero (rs);
}

static int
check_digest (struct restore *rs)
{
  if (EVP_DigestFinal_ex (rs->digest, rs->res->digest, NULL) != 1) {
    set_error (PB_E_FAIL, 0, "SHA-256 final failed");
    return -1;
  }
  if (memcmp (rs->res->digest, rs->d->digest, PULLBACK_DIGEST_LEN) != 0) {
    set_error (PB_E_CORRUPT, 0, "point %" PRId64 " disk '%s': the map's "
               "content digest does not match the recorded one", rs->p->id,
               rs->d->name);
    return -1;
  }
  return 0;
}

/* Make the image durable, then move it into place. */
static int
finish_target (struct restore *rs)
{
  CLEANUP_FREE char *dir = strdup (rs->o->target);

  if (rs->conn) {
    if (reader_flush (rs->conn) == -1)
      return -1;
    reader_close (rs->conn);    /* qemu-nbd exits and closes the image */
    rs->conn = NULL;
  }
  else if (fsync (rs->fd) == -1) {
    set_error (PB_E_IO, errno, "fsync %s", rs->tmp ? rs->tmp : rs->o->target);
    return -1;
  }
  if (rs->tmp == NULL)
    return 0;
  if (rename (rs->tmp, rs->o->target) == -1) {
    set_error (PB_E_TARGET, errno, "rename %s to %s", rs->tmp, rs->o->target);
    return -1;
  }
  free (rs->tmp);
  rs->tmp = NULL;
  return dir ? fsync_dir (dirname (dir)) : 0;
}

static int
open_point (struct restore *rs)
{
  store_id root;

  rs->p = pullback_get_point (rs->r, rs->o->point);
  if (rs->p == NULL || find_disk (rs) == -1 || check_format (rs) == -1 ||
      check_target (rs) == -1)
    return -1;
  /* Encrypted: the sealed record, not the SQLite file, says which tree. */
  if (store_encrypted (rs->r->store) &&
      point_record_check (rs->r, rs->p, rs->d) == -1)
    return -1;
  memcpy (root.b, rs->d->map_root, STORE_ID_LEN);
  rs->tree = maptree_reader_new (rs->r, &root, rs->d->map_levels,
                                 div_round_up (rs->d->size, rs->d->chunk_size));
  rs->buf = malloc (rs->d->chunk_size);
  rs->digest = EVP_MD_CTX_new ();
  rs->pipe = chunk_pipe_new (rs->r->store, rs->o->threads ? rs->o->threads :
                             pb_online_cpus (), rs->d->chunk_size, consume, rs);
  if (rs->tree == NULL || rs->buf == NULL || rs->digest == NULL ||
      rs->pipe == NULL ||
      EVP_DigestInit_ex (rs->digest, EVP_sha256 (), NULL) != 1) {
    if (rs->tree)
      set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  return 0;
}

static void
free_restore (struct restore *rs)
{
  chunk_pipe_free (rs->pipe);   /* first: its workers use the store */
  reader_close (rs->conn);
  if (rs->fd >= 0)
    close (rs->fd);
  if (rs->tmp) {
    unlink (rs->tmp);
    free (rs->tmp);
  }
  maptree_reader_free (rs->tree);
  catalog_point_free (rs->p);
  EVP_MD_CTX_free (rs->digest);
  free (rs->buf);
}

int
pullback_restore (struct pullback_repo *r,
                  const struct pullback_restore_opts *opts,
                  struct pullback_restore_result *result)
{
  struct restore rs = { .r = r, .o = opts, .res = result, .fd = -1 };
  double t0 = now_mono ();
  int ret = -1;

  memset (result, 0, sizeof *result);
  if (open_point (&rs) == 0 && open_target (&rs) == 0 &&
      restore_chunks (&rs) == 0 && check_digest (&rs) == 0 &&
      finish_target (&rs) == 0) {
    result->size = rs.d->size;
    result->seconds = now_mono () - t0;
    ret = 0;
  }
  free_restore (&rs);
  return ret;
}
