/* pullback - store/dirsync.h: which directories must be fsync'd, and when.
 *
 * A rename (or create, or unlink) is durable only once its directory has
 * been fsync'd.  The directory backend makes each object durable in two
 * steps: the file is fsync'd before its rename, and the directory is
 * recorded here; dirsync_sync() later fsyncs every recorded directory once,
 * however many objects went into it.  That is what makes store_sync() a
 * cheap barrier instead of one directory fsync per chunk.
 *
 * Thread-safe.  Embedded (not allocated) in its owner.
 */
#ifndef PB_DIRSYNC_H
#define PB_DIRSYNC_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

struct dirsync {
  pthread_mutex_t lock;        /* protects dirs, n, cap */
  pthread_mutex_t sync_lock;   /* one dirsync_sync() at a time */
  char **dirs;                 /* absolute paths, no duplicates */
  size_t n, cap;
};

void dirsync_init (struct dirsync *ds);
void dirsync_destroy (struct dirsync *ds);

/* Record the directory PATH[0..LEN).  0, or -1 (out of memory). */
int dirsync_add (struct dirsync *ds, const char *path, size_t len);

/* mkdir -p DIR (mode MODE) below the root, the directory whose path is
 * DIR's first ROOTLEN bytes, and record the parent of every directory
 * from DIR up to the root, since a new directory is an entry in its
 * parent.  The root is never made: if it has gone, PB_E_REPO. */
int dirsync_mkdir (struct dirsync *ds, const char *dir, size_t rootlen,
                   mode_t mode);

/* fsync every recorded directory.  On failure the failed directory and
 * those not reached stay recorded for the next call. */
int dirsync_sync (struct dirsync *ds);

#endif /* PB_DIRSYNC_H */
