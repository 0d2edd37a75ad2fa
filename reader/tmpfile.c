/* pullback - reader/tmpfile.c: the temporary image beside a restore target.
 *
 * A restore writes DIR/.NAME.pullback-XXXXXX and renames it over DIR/NAME
 * only when complete, so a failed restore never leaves a half-written
 * target.  A restore that is killed cannot remove its temporary file, and
 * such a file can be as large as the disk.  So every temporary file is
 * held under flock(2) by the restore that writes it, and the next restore
 * to the same target removes the ones nobody holds (and that were left
 * alone for a minute, so that a file created a moment ago by a restore
 * that has not locked it yet is never taken for a stale one).
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"

#define TMP_SUFFIX ".pullback-"
#define TMP_RANDOM 6            /* mkstemp's XXXXXX */
#define STALE_AFTER 60          /* seconds untouched before it may be stale */

/* The directory and base name of TARGET, malloc'd. */
static int
split (const char *target, char **dir, char **base)
{
  CLEANUP_FREE char *c1 = strdup (target), *c2 = strdup (target);

  *dir = *base = NULL;
  if (c1 == NULL || c2 == NULL || (*dir = strdup (dirname (c1))) == NULL ||
      (*base = strdup (basename (c2))) == NULL) {
    free (*dir);
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  return 0;
}

int
target_tmp_create (const char *target, char **path, int *fd)
{
  CLEANUP_FREE char *dir = NULL, *base = NULL;

  *path = NULL;
  if (split (target, &dir, &base) == -1)
    return -1;
  if (asprintf (path, "%s/.%s" TMP_SUFFIX "XXXXXX", dir, base) == -1) {
    *path = NULL;
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  *fd = mkostemp (*path, O_CLOEXEC);
  if (*fd == -1 || flock (*fd, LOCK_EX | LOCK_NB) == -1) {
    set_error (PB_E_TARGET, errno, "cannot create a file beside %s", target);
    if (*fd >= 0) {
      close (*fd);
      unlink (*path);
    }
    free (*path);
    *path = NULL;
    return -1;
  }
  return 0;
}

int
target_tmp_lock (const char *path, int *fd)
{
  *fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (*fd == -1 || flock (*fd, LOCK_EX | LOCK_NB) == -1) {
    set_error (PB_E_TARGET, errno, "lock %s", path);
    if (*fd >= 0)
      close (*fd);
    *fd = -1;
    return -1;
  }
  return 0;
}

/* NAME (in DIR, open as DFD) is ".BASE.pullback-XXXXXX"? */
static bool
is_tmp_of (const char *name, const char *base)
{
  size_t b = strlen (base), s = strlen (TMP_SUFFIX);

  return name[0] == '.' && strlen (name) == 1 + b + s + TMP_RANDOM &&
    strncmp (name + 1, base, b) == 0 &&
    strncmp (name + 1 + b, TMP_SUFFIX, s) == 0;
}

/* Remove NAME if it is ours, a regular file, old, and nobody holds it. */
static bool
remove_if_stale (int dfd, const char *name)
{
  int fd = openat (dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  bool removed = false;

  if (fd == -1)
    return false;
  if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) &&
      st.st_uid == geteuid () && st.st_mtime < time (NULL) - STALE_AFTER &&
      flock (fd, LOCK_EX | LOCK_NB) == 0)
    removed = unlinkat (dfd, name, 0) == 0;
  close (fd);
  return removed;
}

unsigned
target_tmp_sweep (const char *target)
{
  CLEANUP_FREE char *dir = NULL, *base = NULL;
  struct dirent *d;
  unsigned n = 0;
  DIR *dp;

  if (split (target, &dir, &base) == -1)
    return 0;
  if ((dp = opendir (dir)) == NULL)
    return 0;
  while ((d = readdir (dp)) != NULL)
    if (is_tmp_of (d->d_name, base) && remove_if_stale (dirfd (dp), d->d_name))
      n++;
  closedir (dp);
  return n;
}
