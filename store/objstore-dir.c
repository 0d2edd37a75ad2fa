/* pullback - store/objstore-dir.c: the local directory object backend.
 *
 * Each object is a regular file at ROOT/KEY.  Keys are checked against the
 * grammar of objstore.h before they become paths, so no key can climb out
 * of ROOT ("..") or collide with our temporary files (no part may start
 * with '.').
 *
 * put() writes ROOT/DIR/.tmp.XXXXXX, fsyncs it and renames it over the key:
 * readers see the old file or the new one, never a part, and a key that
 * exists always holds a complete object (which is what lets store.c trust
 * a present chunk for dedup).  The rename is only durable once DIR is
 * fsync'd; dirsync.c remembers DIR and sync() fsyncs each such directory
 * once, so a backup pays one directory fsync per directory per sync, not
 * per object.  Directories created on demand are recorded the same way.
 *
 * Everything is thread-safe: files are written under unique temporary
 * names, and the only shared state is the dirsync set.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "dirsync.h"
#include "errors.h"
#include "objstore.h"
#include "util.h"

#define KEY_MAX 512
#define TMP_PREFIX ".tmp."
#define DIR_MODE 0700   /* backups are private: files are 0600 (mkstemp) */

struct objdir {
  struct objstore os;          /* first, so the vtable's pointer is ours */
  char *root;                  /* absolute path, from realpath() */
  struct dirsync dirs;         /* directories to fsync at the next sync */
};

/* Local errors are PB_E_IO (disk full, read-only, permission...), except
 * running out of memory. */
static int
errclass (int e)
{
  return e == ENOMEM ? PB_E_FAIL : PB_E_IO;
}

/* A write that finds no directory where the store's was: if the root
 * itself has gone (the repository removed or renamed while in use), say
 * so, as dirsync_mkdir does (PB_E_REPO), rather than "No such file". */
static void
check_vanished (struct objdir *od)
{
  if (pb_get_errno () == ENOENT && access (od->root, F_OK) == -1)
    set_error (PB_E_REPO, 0, "store %s has vanished (the repository was "
               "removed or renamed while in use)", od->root);
}

static bool
key_char (char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
    c == '.' || c == '_' || c == '-';
}

/* KEY is parts of [a-z0-9._-] separated by single '/', no part empty or
 * starting with '.'.  A PREFIX may also be empty or end in '/'. */
static bool
valid_name (const char *key, bool prefix)
{
  const char *part = key, *p;

  if (strlen (key) > KEY_MAX)
    return false;
  for (p = key; ; p++) {
    if (*p == '/' || *p == '\0') {
      if (p == part && !(prefix && *p == '\0'))
        return false;
      if (*p == '\0')
        return true;
      part = p + 1;
    }
    else if (!key_char (*p) || (p == part && *p == '.'))
      return false;
  }
}

static int
check_key (const char *key, bool prefix)
{
  if (valid_name (key, prefix))
    return 0;
  set_error (PB_E_USAGE, 0, "store: invalid object %s '%s'",
             prefix ? "prefix" : "key", key);
  return -1;
}

/* Record an out-of-memory error; returns -1 for tail calls. */
static int
oom (const char *what)
{
  set_error (PB_E_FAIL, ENOMEM, "%s", what);
  return -1;
}

/* ROOT/KEY (malloc'd) after checking KEY; NULL with an error if invalid. */
static char *
key_path (struct objdir *od, const char *key)
{
  char *path;

  if (check_key (key, false) == -1)
    return NULL;
  if (asprintf (&path, "%s/%s", od->root, key) == -1) {
    oom ("asprintf");
    return NULL;
  }
  return path;
}

/* Length of the directory part of PATH (which has a '/' after the root). */
static size_t
dir_len (const char *path)
{
  return strrchr (path, '/') - path;
}

/* ---- put ---- */

/* Make the directories above PATH; their parents will be fsync'd at the
 * next sync. */
static int
make_parents (struct objdir *od, const char *path, const char *key)
{
  CLEANUP_FREE char *dir = strndup (path, dir_len (path));

  if (dir == NULL)
    return oom ("strndup");
  if (dirsync_mkdir (&od->dirs, dir, strlen (od->root), DIR_MODE) == -1) {
    pb_prefix_error ("store: write %s", key);
    return -1;
  }
  return 0;
}

/* Create a temporary file next to PATH; *TMP is its malloc'd name. */
static int
open_temp (struct objdir *od, const char *path, const char *key, char **tmp)
{
  int fd;

  if (asprintf (tmp, "%.*s/" TMP_PREFIX "XXXXXX",
                (int) dir_len (path), path) == -1) {
    *tmp = NULL;
    return oom ("asprintf");
  }
  fd = mkostemp (*tmp, O_CLOEXEC);
  if (fd == -1 && errno == ENOENT) {
    if (make_parents (od, path, key) == -1)
      return -1;
    strcpy (*tmp + strlen (*tmp) - 6, "XXXXXX");
    fd = mkostemp (*tmp, O_CLOEXEC);
  }
  if (fd == -1) {
    set_error (errclass (errno), errno, "store: write %s", key);
    check_vanished (od);
  }
  return fd;
}

static int
write_temp (int fd, const void *buf, size_t len, const char *key)
{
  if (full_write (fd, buf, len) == -1 || fsync (fd) == -1) {
    set_error (errclass (errno), errno, "store: write %s", key);
    return -1;
  }
  return 0;
}

static int
dir_put (struct objstore *os, const char *key, const void *buf, size_t len)
{
  struct objdir *od = (struct objdir *) os;
  CLEANUP_FREE char *path = NULL, *tmp = NULL;
  int fd;

  if ((path = key_path (od, key)) == NULL ||
      (fd = open_temp (od, path, key, &tmp)) == -1)
    return -1;
  if (write_temp (fd, buf, len, key) == -1)
    goto err;
  if (close (fd) == -1) {
    fd = -1;
    set_error (errclass (errno), errno, "store: write %s", key);
    goto err;
  }
  fd = -1;
  if (rename (tmp, path) == -1) {
    set_error (errclass (errno), errno, "store: rename %s", key);
    check_vanished (od);
    goto err;
  }
  return dirsync_add (&od->dirs, path, dir_len (path));

 err:
  if (fd >= 0)
    close (fd);
  unlink (tmp);
  return -1;
}

/* ---- get, stat, del ---- */

/* Read the regular file open on FD into a malloc'd buffer.  -1 with
 * errno set (no error recorded). */
static int
read_fd (int fd, void **buf, size_t *len)
{
  struct stat st;
  char *p;

  if (fstat (fd, &st) == -1)
    return -1;
  if (!S_ISREG (st.st_mode) || (uint64_t) st.st_size >= SIZE_MAX) {
    errno = S_ISREG (st.st_mode) ? EFBIG : EISDIR;
    return -1;
  }
  p = malloc ((size_t) st.st_size + 1);
  if (p == NULL)
    return -1;
  if (full_pread (fd, p, st.st_size, 0) == -1) {
    free (p);
    return -1;
  }
  p[st.st_size] = '\0';      /* a convenience only: other backends differ */
  *buf = p;
  *len = st.st_size;
  return 0;
}

static int
dir_get (struct objstore *os, const char *key, void **buf, size_t *len)
{
  struct objdir *od = (struct objdir *) os;
  CLEANUP_FREE char *path = key_path (od, key);
  CLEANUP_CLOSE int fd = -1;

  if (path == NULL)
    return -1;
  fd = open (path, O_RDONLY|O_CLOEXEC);
  if (fd == -1 && (errno == ENOENT || errno == ENOTDIR)) {
    set_error (PB_E_NOTFOUND, ENOENT, "store: read %s", key);
    errno = ENOENT;
    return -1;
  }
  if (fd == -1 || read_fd (fd, buf, len) == -1) {
    set_error (errclass (errno), errno, "store: read %s", key);
    return -1;
  }
  return 0;
}

static int
dir_stat (struct objstore *os, const char *key, uint64_t *size)
{
  struct objdir *od = (struct objdir *) os;
  CLEANUP_FREE char *path = key_path (od, key);
  struct stat st;

  if (path == NULL)
    return -1;
  if (stat (path, &st) == -1) {
    if (errno == ENOENT || errno == ENOTDIR)
      return 0;
    set_error (errclass (errno), errno, "store: stat %s", key);
    return -1;
  }
  if (!S_ISREG (st.st_mode))
    return 0;
  if (size)
    *size = st.st_size;
  return 1;
}

static int
dir_del (struct objstore *os, const char *key)
{
  struct objdir *od = (struct objdir *) os;
  CLEANUP_FREE char *path = key_path (od, key);

  if (path == NULL)
    return -1;
  if (unlink (path) == -1) {
    if (errno == ENOENT || errno == ENOTDIR)
      return 0;
    set_error (errclass (errno), errno, "store: delete %s", key);
    return -1;
  }
  /* The removal, too, is durable only after the directory's fsync. */
  return dirsync_add (&od->dirs, path, dir_len (path));
}

/* ---- list ---- */

struct walk {
  const char *prefix;
  size_t plen;
  int (*cb) (const char *key, void *opaque);
  void *opaque;
  int err;                     /* errno of a failed walk, 0 if CB stopped */
  char key[KEY_MAX + 2];       /* the key being built, "DIR/NAME" */
};

static int walk_dir (struct walk *w, int dfd, size_t klen);

/* True if keys starting with W->key[0..LEN) can start with the prefix. */
static bool
may_match (const struct walk *w, size_t len)
{
  return strncmp (w->key, w->prefix, MIN (len, w->plen)) == 0;
}

static int
walk_failed (struct walk *w)
{
  w->err = errno;
  return -1;
}

/* DT_* type of NAME in DFD, without following symlinks; 0 if it vanished. */
static int
entry_type (struct walk *w, int dfd, const struct dirent *d)
{
  struct stat st;

  if (d->d_type != DT_UNKNOWN)
    return d->d_type;
  if (fstatat (dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : walk_failed (w);
  return S_ISDIR (st.st_mode) ? DT_DIR : S_ISREG (st.st_mode) ? DT_REG : 0;
}

/* One directory entry of DFD; W->key[0..KLEN) is its directory. */
static int
walk_entry (struct walk *w, int dfd, size_t klen, const struct dirent *d)
{
  size_t n = strlen (d->d_name), len = klen + n;
  int type, sub;

  /* Temporary files, ".", ".." and any name that is not a valid key part. */
  if (d->d_name[0] == '.' || len > KEY_MAX || !valid_name (d->d_name, false))
    return 0;
  memcpy (w->key + klen, d->d_name, n + 1);
  type = entry_type (w, dfd, d);
  if (type == DT_REG)
    return may_match (w, len) && len >= w->plen ? w->cb (w->key, w->opaque) : 0;
  if (type != DT_DIR)
    return type == -1 ? -1 : 0;
  w->key[len] = '/';
  w->key[len + 1] = '\0';
  if (!may_match (w, len + 1))
    return 0;
  sub = openat (dfd, d->d_name, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
  if (sub == -1)
    return errno == ENOENT ? 0 : walk_failed (w);
  return walk_dir (w, sub, len + 1);
}

/* Walk the directory open on DFD (closed here). */
static int
walk_dir (struct walk *w, int dfd, size_t klen)
{
  DIR *dir = fdopendir (dfd);
  struct dirent *d;
  int r = 0;

  if (dir == NULL) {
    walk_failed (w);
    close (dfd);
    return -1;
  }
  for (;;) {
    errno = 0;
    d = readdir (dir);
    if (d == NULL) {
      r = errno ? walk_failed (w) : 0;
      break;
    }
    if ((r = walk_entry (w, dirfd (dir), klen, d)) == -1)
      break;
    w->key[klen] = '\0';
  }
  closedir (dir);
  return r;
}

/* Open the deepest directory PREFIX names in full (its first BASE bytes);
 * -2 if there is none (so nothing to list), -1 on error. */
static int
open_base (struct objdir *od, const char *prefix, size_t base)
{
  CLEANUP_FREE char *path = NULL;
  int fd;

  if (asprintf (&path, "%s/%.*s", od->root, (int) base, prefix) == -1)
    return oom ("asprintf");
  fd = open (path, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
  if (fd == -1 && (errno == ENOENT || errno == ENOTDIR))
    return -2;
  if (fd == -1)
    set_error (errclass (errno), errno, "store: list %s", prefix);
  return fd;
}

static int
dir_list (struct objstore *os, const char *prefix,
          int (*cb) (const char *key, void *opaque), void *opaque)
{
  struct objdir *od = (struct objdir *) os;
  struct walk w = { .prefix = prefix, .cb = cb, .opaque = opaque };
  const char *slash = strrchr (prefix, '/');
  size_t base = slash ? (size_t) (slash - prefix) + 1 : 0;
  int fd;

  if (check_key (prefix, true) == -1 ||
      (fd = open_base (od, prefix, base)) == -1)
    return -1;
  if (fd == -2)
    return 0;
  w.plen = strlen (prefix);
  memcpy (w.key, prefix, base);
  w.key[base] = '\0';
  if (walk_dir (&w, fd, base) == -1) {
    /* If CB stopped the walk, its own error stands. */
    if (w.err)
      set_error (errclass (w.err), w.err, "store: list %s", prefix);
    return -1;
  }
  return 0;
}

/* ---- sweep: temporary files of interrupted puts ---- */

struct sweep {
  int64_t before;
  uint64_t removed;
  int err;
};

static int sweep_dir (struct sweep *sw, int dfd);

/* One entry of DFD: a stale temporary file goes, a directory is entered. */
static int
sweep_entry (struct sweep *sw, int dfd, const char *name)
{
  struct stat st;
  int sub;

  if (strcmp (name, ".") == 0 || strcmp (name, "..") == 0)
    return 0;
  if (fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : (sw->err = errno, -1);
  if (S_ISDIR (st.st_mode) && name[0] != '.') {
    sub = openat (dfd, name, O_RDONLY|O_DIRECTORY|O_CLOEXEC|O_NOFOLLOW);
    if (sub == -1)
      return errno == ENOENT ? 0 : (sw->err = errno, -1);
    return sweep_dir (sw, sub);
  }
  if (!S_ISREG (st.st_mode) || strncmp (name, TMP_PREFIX, strlen (TMP_PREFIX)) ||
      st.st_mtime >= sw->before)
    return 0;
  if (unlinkat (dfd, name, 0) == -1 && errno != ENOENT)
    return sw->err = errno, -1;
  sw->removed++;
  return 0;
}

/* Sweep the directory open on DFD (closed here). */
static int
sweep_dir (struct sweep *sw, int dfd)
{
  DIR *dir = fdopendir (dfd);
  struct dirent *d;
  int r = 0;

  if (dir == NULL) {
    sw->err = errno;
    close (dfd);
    return -1;
  }
  while (r == 0) {
    errno = 0;
    if ((d = readdir (dir)) == NULL) {
      if (errno)
        r = (sw->err = errno, -1);
      break;
    }
    r = sweep_entry (sw, dirfd (dir), d->d_name);
  }
  closedir (dir);
  return r;
}

static int
dir_sweep (struct objstore *os, int64_t before, uint64_t *removed)
{
  struct objdir *od = (struct objdir *) os;
  struct sweep sw = { .before = before };
  int fd = open (od->root, O_RDONLY|O_DIRECTORY|O_CLOEXEC);

  *removed = 0;
  if (fd == -1 || sweep_dir (&sw, fd) == -1) {
    int e = fd == -1 ? errno : sw.err;
    set_error (errclass (e), e, "store: removing temporary files");
    return -1;
  }
  *removed = sw.removed;
  return 0;
}

/* ---- sync, open, close ---- */

static int
dir_sync (struct objstore *os)
{
  if (dirsync_sync (&((struct objdir *) os)->dirs) == 0)
    return 0;
  check_vanished ((struct objdir *) os);
  return -1;
}

static void
dir_close (struct objstore *os)
{
  struct objdir *od = (struct objdir *) os;

  dirsync_destroy (&od->dirs);
  free (od->root);
  free (od);
}

static const struct objstore_ops dir_ops = {
  .name = "dir",
  .put = dir_put, .get = dir_get, .stat = dir_stat, .del = dir_del,
  .list = dir_list, .sync = dir_sync, .sweep = dir_sweep, .close = dir_close,
};

/* fsync the directory holding PATH, so that PATH's creation is durable. */
static int
fsync_parent (const char *path)
{
  CLEANUP_FREE char *parent = strdup (path);
  char *end;

  if (parent == NULL) {
    set_error (PB_E_FAIL, ENOMEM, "strdup");
    return -1;
  }
  /* Strip trailing slashes, then the last component. */
  for (end = parent + strlen (parent) - 1; end > parent && *end == '/'; )
    *end-- = '\0';
  end = strrchr (parent, '/');
  if (end == NULL)
    return fsync_dir (".");
  end[end == parent] = '\0';
  return fsync_dir (parent);
}

/* 1 if PATH is an empty directory, 0 if not, -1 on error. */
static int
is_empty_dir (const char *path)
{
  DIR *dir = opendir (path);
  struct dirent *d;
  int r = 1;

  if (dir == NULL) {
    set_error (errclass (errno), errno, "%s", path);
    return -1;
  }
  while ((d = readdir (dir)) != NULL)
    if (strcmp (d->d_name, ".") != 0 && strcmp (d->d_name, "..") != 0) {
      r = 0;
      break;
    }
  closedir (dir);
  return r;
}

/* Make PATH, durably, or accept it if it is an empty directory. */
static int
prepare_new (const char *path)
{
  struct stat st;
  int r;

  if (stat (path, &st) == 0) {
    if (!S_ISDIR (st.st_mode)) {
      set_error (PB_E_REPO, 0, "%s already exists and is not a directory",
                 path);
      return -1;
    }
    r = is_empty_dir (path);
    if (r == 0)
      set_error (PB_E_REPO, 0, "%s already exists and is not empty", path);
    return r == 1 ? 0 : -1;
  }
  if (mkdir_p (path, DIR_MODE) == -1)
    return -1;
  return fsync_parent (path);
}

static int
resolve_root (struct objdir *od, const char *path)
{
  struct stat st;

  od->root = realpath (path, NULL);
  if (od->root == NULL || stat (od->root, &st) == -1) {
    set_error (errno == ENOENT ? PB_E_REPO : errclass (errno), errno,
               "%s", path);
    return -1;
  }
  if (!S_ISDIR (st.st_mode)) {
    set_error (PB_E_REPO, ENOTDIR, "%s", path);
    return -1;
  }
  return 0;
}

struct objstore *
objstore_dir_open (const char *path, int create)
{
  struct objdir *od = calloc (1, sizeof *od);

  if (od == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  od->os.ops = &dir_ops;
  dirsync_init (&od->dirs);
  if (create && prepare_new (path) == -1)
    goto err;
  if (resolve_root (od, path) == -1)
    goto err;
  return &od->os;

 err:
  dir_close (&od->os);
  return NULL;
}
