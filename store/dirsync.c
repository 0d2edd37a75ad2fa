/* pullback - store/dirsync.c: the set of directories awaiting an fsync.
 *
 * A store has a few hundred directories at most (chunks/XX and the record
 * directories), so the set is a plain array searched linearly, under a
 * mutex held only for the search.  The fsyncs themselves run without that
 * lock, so puts go on while a sync is in progress.
 *
 * Two orderings matter for correctness:
 *  - Syncs are serialised (sync_lock).  If thread A took the set and is
 *    still fsyncing when thread B calls sync, B finds the set empty; B must
 *    not return before A's fsyncs are done, or B would claim its own
 *    earlier puts durable too early.
 *  - dirsync_mkdir() creates directories and records their parents under
 *    the set's lock.  Another thread may put into a new directory as soon
 *    as it exists; any sync that could cover that put takes the set after
 *    the mkdir, and so finds the parents in it.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "dirsync.h"
#include "errors.h"
#include "util.h"

void
dirsync_init (struct dirsync *ds)
{
  memset (ds, 0, sizeof *ds);
  pthread_mutex_init (&ds->lock, NULL);
  pthread_mutex_init (&ds->sync_lock, NULL);
}

void
dirsync_destroy (struct dirsync *ds)
{
  size_t i;

  for (i = 0; i < ds->n; i++)
    free (ds->dirs[i]);
  free (ds->dirs);
  pthread_mutex_destroy (&ds->lock);
  pthread_mutex_destroy (&ds->sync_lock);
}

static bool
has_locked (const struct dirsync *ds, const char *dir)
{
  size_t i;

  for (i = 0; i < ds->n; i++)
    if (strcmp (ds->dirs[i], dir) == 0)
      return true;
  return false;
}

/* Add DIR (taking ownership; NULL = out of memory) unless present.  The
 * caller holds ds->lock. */
static int
add_locked (struct dirsync *ds, char *dir)
{
  if (dir == NULL || has_locked (ds, dir)) {
    free (dir);
    goto out;
  }
  if (ds->n == ds->cap) {
    size_t cap = ds->cap ? 2 * ds->cap : 64;
    char **t = realloc (ds->dirs, cap * sizeof *t);
    if (t == NULL) {
      free (dir);
      dir = NULL;
      goto out;
    }
    ds->dirs = t;
    ds->cap = cap;
  }
  ds->dirs[ds->n++] = dir;
 out:
  if (dir == NULL)
    set_error (PB_E_FAIL, ENOMEM, "store: cannot record a directory to sync");
  return dir ? 0 : -1;
}

int
dirsync_add (struct dirsync *ds, const char *path, size_t len)
{
  char *dir = strndup (path, len);

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&ds->lock);
  return add_locked (ds, dir);
}

int
dirsync_mkdir (struct dirsync *ds, const char *dir, size_t rootlen,
               mode_t mode)
{
  CLEANUP_FREE char *p = strdup (dir);
  char *slash;

  if (p == NULL) {
    set_error (PB_E_FAIL, ENOMEM, "strdup");
    return -1;
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&ds->lock);
  /* Never the root itself: a store whose directory was removed or renamed
   * while in use must fail, not grow a phantom copy at the old path. */
  if (mkdir_below (dir, rootlen, mode) == -1) {
    p[rootlen] = '\0';
    if (pb_get_errno () == ENOENT && access (p, F_OK) == -1)
      set_error (PB_E_REPO, 0, "store %s has vanished (the repository was "
                 "removed or renamed while in use)", p);
    return -1;
  }
  /* Cut P one component at a time: each parent down to the root. */
  while ((slash = strrchr (p, '/')) != NULL && (size_t) (slash - p) >= rootlen) {
    *slash = '\0';
    if (add_locked (ds, strdup (p)) == -1)
      return -1;
  }
  return 0;
}

/* Free the N directories of DIRS, those whose ERR is 0 synced; the
 * others go back into the set for the next sync. */
static void
requeue (struct dirsync *ds, char **dirs, const int *err, size_t n)
{
  size_t i;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&ds->lock);
  for (i = 0; i < n; i++)
    if (err[i] == 0)
      free (dirs[i]);
    else
      add_locked (ds, dirs[i]); /* fails only out of memory: reported */
  free (dirs);
}

/* Directory fsyncs run in parallel: each waits for the device's cache
 * flush, and concurrent flushes are merged by the block layer, so a
 * backup that wrote into a few hundred chunk directories spends a
 * fraction of the time of one fsync after the other. */
#define SYNC_THREADS 4
#define DIRS_PER_THREAD 16

struct sync_job {
  char **dirs;
  int *err;                     /* per directory: errno, 0 done */
  size_t n, first, step;
};

static void *
sync_some (void *arg)
{
  struct sync_job *j = arg;
  size_t i;

  /* fsync_dir records its error for this thread: keep just the errno. */
  for (i = j->first; i < j->n; i += j->step)
    j->err[i] = fsync_dir (j->dirs[i]) == 0 ? 0
              : pb_get_errno () ? pb_get_errno () : EIO;
  return NULL;
}

/* fsync DIRS[0..N) (ERR per directory); the calling thread is one of the
 * workers, and if a thread cannot be started, it does that share too. */
static void
sync_all (char **dirs, int *err, size_t n)
{
  struct sync_job jobs[SYNC_THREADS];
  pthread_t tids[SYNC_THREADS];
  bool started[SYNC_THREADS] = { false };
  size_t t, nt = MIN (SYNC_THREADS, MAX (1, n / DIRS_PER_THREAD));

  for (t = 0; t < nt; t++) {
    jobs[t] = (struct sync_job) { .dirs = dirs, .err = err, .n = n,
                                  .first = t, .step = nt };
    if (t > 0)
      started[t] = pthread_create (&tids[t], NULL, sync_some, &jobs[t]) == 0;
  }
  sync_some (&jobs[0]);
  for (t = 1; t < nt; t++)
    if (started[t])
      pthread_join (tids[t], NULL);
    else
      sync_some (&jobs[t]);
}

int
dirsync_sync (struct dirsync *ds)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&ds->sync_lock);
  char **dirs;
  int *err;
  size_t n, i;

  pthread_mutex_lock (&ds->lock);
  dirs = ds->dirs;
  n = ds->n;
  ds->dirs = NULL;
  ds->n = ds->cap = 0;
  pthread_mutex_unlock (&ds->lock);
  if (n == 0) {
    free (dirs);
    return 0;
  }
  if ((err = calloc (n, sizeof *err)) == NULL) {
    set_error (PB_E_FAIL, errno, "store: sync: out of memory");
    pthread_mutex_lock (&ds->lock);
    for (i = 0; i < n; i++)
      add_locked (ds, dirs[i]); /* still to be synced */
    pthread_mutex_unlock (&ds->lock);
    free (dirs);
    return -1;
  }
  sync_all (dirs, err, n);
  for (i = 0; i < n && err[i] == 0; i++)
    ;
  if (i < n)
    set_error (PB_E_IO, err[i], "store: sync: fsync directory %s", dirs[i]);
  requeue (ds, dirs, err, n);
  free (err);
  return i < n ? -1 : 0;
}
