/* pullback - store/test-objstore.c: unit tests of the directory backend.
 *
 * Exercises struct objstore as store.c sees it (put/get/stat/del/list/sync)
 * and the promises objstore.h makes: atomic replace (checked with a reader
 * thread racing a writer), temporary files never listed, missing objects
 * reported as ENOENT/PB_E_NOTFOUND, keys that could escape the directory
 * refused.  Prints one line per check; exit 0 pass, 1 fail.
 */
#include <config.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "objstore.h"
#include "test-common.h"

static int
obj_equals (struct objstore *os, const char *key, const char *want, size_t wlen)
{
  void *buf = NULL;
  size_t len = 0;
  int ok;

  if (objstore_get (os, key, &buf, &len) == -1)
    return 0;
  ok = len == wlen && memcmp (buf, want, wlen) == 0;
  free (buf);
  return ok;
}

/* ---- list helpers ---- */

struct keys { char k[64][80]; int n; int stop_after; };

static int
collect (const char *key, void *opaque)
{
  struct keys *ks = opaque;

  if (ks->n < 64)
    snprintf (ks->k[ks->n], sizeof ks->k[0], "%s", key);
  ks->n++;
  if (ks->stop_after && ks->n >= ks->stop_after) {
    set_error (PB_E_FAIL, 0, "stopped by callback");
    return -1;
  }
  return 0;
}

static int
has_key (const struct keys *ks, const char *key)
{
  int i;

  for (i = 0; i < ks->n && i < 64; i++)
    if (strcmp (ks->k[i], key) == 0)
      return 1;
  return 0;
}

static int
list (struct objstore *os, const char *prefix, struct keys *ks)
{
  memset (ks, 0, sizeof *ks);
  return objstore_list (os, prefix, collect, ks);
}

/* ---- tests ---- */

static void
test_open (void)
{
  struct objstore *os;

  os = objstore_dir_open (path_in ("new/sub/repo"), 1);
  check (os != NULL, "create makes a missing directory (and its parents)");
  objstore_close (os);
  os = objstore_dir_open (path_in ("new/sub/repo"), 1);
  check (os != NULL, "create accepts an existing empty directory");
  objstore_close (os);
  os = objstore_dir_open (path_in ("new/sub"), 1);
  check (os == NULL && pb_get_errclass () == PB_E_REPO &&
         strstr (pb_get_error (), "not empty") != NULL,
         "create refuses a non-empty directory: %s", pb_get_error ());
  os = objstore_dir_open (path_in ("missing"), 0);
  check (os == NULL && pb_get_errclass () == PB_E_REPO,
         "open of a missing directory fails with PB_E_REPO");
  close (open (path_in ("afile"), O_CREAT|O_WRONLY, 0600));
  os = objstore_dir_open (path_in ("afile"), 0);
  check (os == NULL && pb_get_errclass () == PB_E_REPO,
         "open of a regular file fails with PB_E_REPO");
  os = objstore_dir_open (path_in ("afile"), 1);
  check (os == NULL && pb_get_errclass () == PB_E_REPO,
         "create on a regular file fails with PB_E_REPO");
}

static void
test_basic (struct objstore *os)
{
  uint64_t size = 0;
  void *buf = NULL;
  size_t len = 99;

  check (objstore_put (os, "a/b/c", "hello", 5) == 0, "put a/b/c");
  check (obj_equals (os, "a/b/c", "hello", 5), "get returns what was put");
  check (objstore_stat (os, "a/b/c", &size) == 1 && size == 5,
         "stat finds it with size 5");
  check (access (path_in ("repo/a/b/c"), F_OK) == 0,
         "the object is the file ROOT/a/b/c");
  check (objstore_stat (os, "a/b", &size) == 0,
         "stat of a directory is 'absent'");
  check (objstore_stat (os, "nope/x", &size) == 0, "stat of a missing key: 0");
  check (objstore_stat (os, "a/b/c/d", &size) == 0,
         "stat below a file: 0");
  errno = 0;
  check (objstore_get (os, "nope/x", &buf, &len) == -1 && errno == ENOENT &&
         pb_get_errno () == ENOENT && pb_get_errclass () == PB_E_NOTFOUND,
         "get of a missing key: -1, ENOENT, PB_E_NOTFOUND");
  check (strstr (pb_get_error (), "nope/x") != NULL,
         "the message names the key: %s", pb_get_error ());
  check (objstore_put (os, "empty", "", 0) == 0 &&
         objstore_get (os, "empty", &buf, &len) == 0 && len == 0,
         "zero-length object round trip");
  free (buf);
  check (objstore_del (os, "a/b/c") == 0 &&
         objstore_stat (os, "a/b/c", &size) == 0, "del removes the object");
  check (objstore_del (os, "a/b/c") == 0, "del of an absent key is 0");
  check (objstore_del (os, "never/was") == 0, "del under a missing dir is 0");
}

static void
test_bad_keys (struct objstore *os)
{
  static const char *bad[] = {
    "", "/abs", "../up", "a/../../b", "a//b", "a/", "Upper", "a b",
    ".tmp.x", "a/.tmp.123456", "a/.hidden", ".", "x/./y", NULL
  };
  uint64_t size;
  int i, all = 1;

  for (i = 0; bad[i]; i++) {
    if (objstore_put (os, bad[i], "x", 1) != -1 ||
        pb_get_errclass () != PB_E_USAGE ||
        objstore_stat (os, bad[i], &size) != -1) {
      printf ("# key '%s' was accepted\n", bad[i]);
      all = 0;
    }
  }
  check (all, "invalid keys (.., absolute, empty parts, upper case, "
         "dot-parts) are refused with PB_E_USAGE");
  check (access (path_in ("up"), F_OK) != 0, "nothing escaped the root");
}

static void
test_replace (struct objstore *os)
{
  DIR *d;
  struct dirent *e;
  int temps = 0;

  check (objstore_put (os, "x/y", "old", 3) == 0 &&
         objstore_put (os, "x/y", "new, longer", 11) == 0 &&
         obj_equals (os, "x/y", "new, longer", 11),
         "put over an existing key replaces it");
  check (objstore_put (os, "x/y", "s", 1) == 0 && obj_equals (os, "x/y", "s", 1),
         "replace with a shorter object leaves no stale tail");
  d = opendir (path_in ("repo/x"));
  while (d && (e = readdir (d)) != NULL)
    temps += strncmp (e->d_name, ".tmp.", 5) == 0;
  if (d)
    closedir (d);
  check (d != NULL && temps == 0, "no temporary file is left behind");
}

/* A writer alternates two very different objects under one key while a
 * reader checks it never sees a mixture or a partial file. */
#define BIG_A (100 * 1024)
#define BIG_B (300 * 1024)
struct race { struct objstore *os; atomic_int done; int wbad, bad, reads; };

static void *
race_writer (void *arg)
{
  struct race *r = arg;
  char *a = malloc (BIG_A), *b = malloc (BIG_B);
  int i;

  memset (a, 'a', BIG_A);
  memset (b, 'b', BIG_B);
  for (i = 0; i < 200; i++)
    if (objstore_put (r->os, "race/obj", i & 1 ? b : a,
                      i & 1 ? BIG_B : BIG_A) == -1)
      r->wbad++;
  r->done = 1;
  free (a);
  free (b);
  return NULL;
}

static int
uniform (const char *p, size_t len, char c)
{
  size_t i;

  for (i = 0; i < len; i++)
    if (p[i] != c)
      return 0;
  return 1;
}

static void
test_atomic (struct objstore *os)
{
  struct race r = { .os = os };
  pthread_t t;
  void *buf;
  size_t len;

  objstore_put (os, "race/obj", "a", 1);
  pthread_create (&t, NULL, race_writer, &r);
  while (!r.done) {
    if (objstore_get (os, "race/obj", &buf, &len) == -1) {
      r.bad++;
      continue;
    }
    r.reads++;
    if (!(len == 1 && *(char *) buf == 'a') &&
        !(len == BIG_A && uniform (buf, len, 'a')) &&
        !(len == BIG_B && uniform (buf, len, 'b')))
      r.bad++;
    free (buf);
  }
  pthread_join (t, NULL);
  check (r.bad == 0 && r.wbad == 0 && r.reads > 0,
         "atomic replace: %d concurrent reads saw only whole objects", r.reads);
}

static void
test_list (struct objstore *os)
{
  struct keys ks;
  int fd, r;

  objstore_put (os, "points/00000001", "1", 1);
  objstore_put (os, "points/00000002", "2", 1);
  objstore_put (os, "pointsx/00000003", "3", 1);
  objstore_put (os, "deep/a/b/c/d", "4", 1);
  fd = open (path_in ("repo/points/.tmp.AbCdEf"), O_CREAT|O_WRONLY, 0600);
  close (fd);
  close (open (path_in ("repo/points/README"), O_CREAT|O_WRONLY, 0600));
  check (list (os, "points/", &ks) == 0 && ks.n == 2 &&
         has_key (&ks, "points/00000001") && has_key (&ks, "points/00000002"),
         "list points/ finds exactly its 2 keys (no temp file, no "
         "pointsx/, no invalid name)");
  check (list (os, "points/0000000", &ks) == 0 && ks.n == 2,
         "a prefix may end inside a name");
  check (list (os, "point", &ks) == 0 && ks.n == 3 &&
         has_key (&ks, "pointsx/00000003"), "a prefix may end inside a "
         "directory name");
  check (list (os, "deep/", &ks) == 0 && ks.n == 1 &&
         has_key (&ks, "deep/a/b/c/d"), "list walks nested directories");
  check (list (os, "none/", &ks) == 0 && ks.n == 0,
         "list of a missing directory: nothing, no error");
  r = list (os, "", &ks);
  check (r == 0 && has_key (&ks, "points/00000001") &&
         has_key (&ks, "empty") && !has_key (&ks, "points/.tmp.AbCdEf"),
         "list of everything (%d keys)", ks.n);
  memset (&ks, 0, sizeof ks);
  ks.stop_after = 1;
  check (objstore_list (os, "points/", collect, &ks) == -1 && ks.n == 1 &&
         strcmp (pb_get_error (), "stopped by callback") == 0,
         "a callback returning -1 stops the walk, its error stands");
  check (list (os, "Bad", &ks) == -1 && pb_get_errclass () == PB_E_USAGE,
         "an invalid prefix is refused");
}

static void
test_sync (struct objstore *os)
{
  check (objstore_put (os, "s1/a", "x", 1) == 0 && objstore_sync (os) == 0,
         "sync after puts in a new directory");
  check (objstore_sync (os) == 0, "sync with nothing touched");
  /* Make the only touched directory disappear: its fsync must fail, and
   * keep failing (the directory stays in the set) until it is back. */
  objstore_put (os, "s2/a", "x", 1);
  unlink (path_in ("repo/s2/a"));
  rmdir (path_in ("repo/s2"));
  check (objstore_sync (os) == -1 && pb_get_errclass () == PB_E_IO &&
         strstr (pb_get_error (), "s2") != NULL,
         "a failed directory fsync is reported: %s", pb_get_error ());
  check (objstore_sync (os) == -1, "and retried at the next sync");
  mkdir (path_in ("repo/s2"), 0700);
  check (objstore_sync (os) == 0, "which succeeds once it can");
}

static void
test_errors (struct objstore *os)
{
  if (geteuid () == 0) {
    printf ("skip - write into a read-only directory (running as root)\n");
    return;
  }
  objstore_put (os, "ro/a", "x", 1);
  chmod (path_in ("repo/ro"), 0500);
  check (objstore_put (os, "ro/b", "x", 1) == -1 &&
         pb_get_errclass () == PB_E_IO &&
         strstr (pb_get_error (), "store: write ro/b") != NULL,
         "write into a read-only directory: PB_E_IO: %s", pb_get_error ());
  chmod (path_in ("repo/ro"), 0700);
}

/* Several threads put and get distinct keys in shared directories. */
struct worker { struct objstore *os; int id, bad; };

static void *
worker (void *arg)
{
  struct worker *w = arg;
  char key[64], val[64];
  int i;

  for (i = 0; i < 200; i++) {
    snprintf (key, sizeof key, "mt/%02d/t%d-%d", i % 16, w->id, i);
    snprintf (val, sizeof val, "value %d %d", w->id, i);
    if (objstore_put (w->os, key, val, strlen (val)) == -1 ||
        !obj_equals (w->os, key, val, strlen (val)))
      w->bad++;
  }
  return NULL;
}

static int
count (const char *key, void *opaque)
{
  (*(int *) opaque)++;
  return 0;
}

static void
test_threads (struct objstore *os)
{
  struct worker w[4];
  pthread_t t[4];
  int i, bad = 0, n = 0, r;

  for (i = 0; i < 4; i++) {
    w[i] = (struct worker) { .os = os, .id = i };
    pthread_create (&t[i], NULL, worker, &w[i]);
  }
  for (i = 0; i < 4; i++) {
    pthread_join (t[i], NULL);
    bad += w[i].bad;
  }
  check (bad == 0, "4 threads x 200 put+get in shared directories");
  r = objstore_list (os, "mt/", count, &n);
  check (r == 0 && n == 800,
         "list finds all 800 (%d)", n);
  check (objstore_sync (os) == 0, "sync after the threads");
}

/* Temporary files of killed writers: old ones go, fresh ones and objects
 * stay, and a file that only looks temporary outside the rules is kept. */
static void
test_sweep (struct objstore *os)
{
  struct timeval old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
  uint64_t removed = 99;
  char a[4096], b[4096], c[4096];

  check (objstore_put (os, "chunks/ab/sweepme", "x", 1) == 0, "put an object");
  snprintf (a, sizeof a, "%s", path_in ("repo/chunks/ab/.tmp.AAAAAA"));
  snprintf (b, sizeof b, "%s", path_in ("repo/points/.tmp.BBBBBB"));
  snprintf (c, sizeof c, "%s", path_in ("repo/chunks/ab/.tmp.CCCCCC"));
  mkdir (path_in ("repo/points"), 0700);
  close (open (a, O_CREAT|O_WRONLY, 0600));
  close (open (b, O_CREAT|O_WRONLY, 0600));
  close (open (c, O_CREAT|O_WRONLY, 0600));
  utimes (a, old);
  utimes (b, old);
  check (objstore_sweep (os, time (NULL) - 60, &removed) == 0 && removed == 2,
         "sweep removed the two old temporary files (%" PRIu64 ")", removed);
  check (access (a, F_OK) == -1 && access (b, F_OK) == -1, "old ones gone");
  check (access (c, F_OK) == 0, "a fresh temporary file is kept");
  check (obj_equals (os, "chunks/ab/sweepme", "x", 1), "objects are kept");
  /* test_list planted one more (fresh) temporary file under points/. */
  check (objstore_sweep (os, time (NULL) + 60, &removed) == 0 && removed == 2 &&
         access (c, F_OK) == -1, "a later cut-off removes the fresh one too (%" PRIu64 ")", removed);
  objstore_del (os, "chunks/ab/sweepme");
}

int
main (void)
{
  struct objstore *os;

  if (test_start ("test-objstore") == -1)
    return 1;
  test_open ();
  os = objstore_dir_open (path_in ("repo"), 1);
  check (os != NULL && strcmp (os->ops->name, "dir") == 0, "open the backend");
  if (os) {
    test_basic (os);
    test_bad_keys (os);
    test_replace (os);
    test_atomic (os);
    test_list (os);
    test_sync (os);
    test_errors (os);
    test_threads (os);
    test_sweep (os);
    objstore_close (os);
  }
  return test_end ();
}
