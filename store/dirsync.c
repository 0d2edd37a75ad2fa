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

/* Free the N directories of DIRS, the first DONE of which were synced;
 * the others go back into the set for the next sync. */
static void
requeue (struct dirsync *ds, char **dirs, size_t done, size_t n)
{
  size_t i;

  for (i = 0; i < done; i++)
    free (dirs[i]);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&ds->lock);
  for (; i < n; i++)
    add_locked (ds, dirs[i]);   /* fails only out of memory: reported */
  free (dirs);
}

int
dirsync_sync (struct dirsync *ds)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&ds->sync_lock);
  char **dirs;
  size_t n, i;
  int r = 0;

  pthread_mutex_lock (&ds->lock);
  dirs = ds->dirs;
  n = ds->n;
  ds->dirs = NULL;
  ds->n = ds->cap = 0;
  pthread_mutex_unlock (&ds->lock);

  for (i = 0; i < n && r == 0; i++)
    r = fsync_dir (dirs[i]);
  if (r == -1) {
    pb_prefix_error ("store: sync");
    i--;                        /* keep the failed one */
  }
  requeue (ds, dirs, i, n);
  return r;
}
