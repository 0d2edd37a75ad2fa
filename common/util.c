/* pullback - common/util.c: implementations of the helpers in util.h. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/wait.h>

#include "cleanup.h"
#include "errors.h"
#include "util.h"

void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}

void
cleanup_close (int *fd)
{
  if (*fd >= 0)
    close (*fd);
}

void
cleanup_unlock (pthread_mutex_t **ptr)
{
  pthread_mutex_unlock (*ptr);
}

bool
is_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;
  static const unsigned char zero[4096];

  /* Compare in 4 KiB blocks against a static zero page: memcmp is
   * vectorised, so this runs at memory speed. */
  while (len >= sizeof zero) {
    if (memcmp (p, zero, sizeof zero) != 0)
      return false;
    p += sizeof zero;
    len -= sizeof zero;
  }
  return memcmp (p, zero, len) == 0;
}

void
hex_encode (const uint8_t *in, size_t len, char *out)
{
  static const char digits[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < len; i++) {
    out[2*i] = digits[in[i] >> 4];
    out[2*i+1] = digits[in[i] & 15];
  }
  out[2*len] = '\0';
}

static int
hexval (char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int
hex_decode (const char *in, uint8_t *out, size_t len)
{
  size_t i;

  for (i = 0; i < len; i++) {
    int hi = hexval (in[2*i]), lo;
    if (hi < 0)
      return -1;
    lo = hexval (in[2*i+1]);
    if (lo < 0)
      return -1;
    out[i] = hi << 4 | lo;
  }
  return in[2*len] == '\0' ? 0 : -1;
}

int
full_pread (int fd, void *buf, size_t len, off_t off)
{
  char *p = buf;

  while (len > 0) {
    ssize_t r = pread (fd, p, len, off);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r; len -= r; off += r;
  }
  return 0;
}

int
full_pwrite (int fd, const void *buf, size_t len, off_t off)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t r = pwrite (fd, p, len, off);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    p += r; len -= r; off += r;
  }
  return 0;
}

int
full_write (int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t r = write (fd, p, len);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    p += r; len -= r;
  }
  return 0;
}

int
read_file (const char *path, char **buf, size_t *len)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY|O_CLOEXEC);
  struct stat st;
  char *p;

  if (fd == -1 || fstat (fd, &st) == -1) {
    set_error (PB_E_IO, errno, "%s", path);
    return -1;
  }
  p = malloc (st.st_size + 1);
  if (p == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    return -1;
  }
  if (full_pread (fd, p, st.st_size, 0) == -1) {
    set_error (PB_E_IO, errno, "read: %s", path);
    free (p);
    return -1;
  }
  p[st.st_size] = '\0';
  *buf = p;
  if (len)
    *len = st.st_size;
  return 0;
}

int
fsync_dir (const char *path)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY|O_DIRECTORY|O_CLOEXEC);

  if (fd == -1 || fsync (fd) == -1) {
    set_error (PB_E_IO, errno, "fsync directory %s", path);
    return -1;
  }
  return 0;
}

int
mkdir_p (const char *path, mode_t mode)
{
  return mkdir_below (path, 0, mode);
}

/* Like mkdir -p, but the first BELOW (at most strlen (PATH)) bytes of
 * PATH are taken as existing and never made (mkdir_p: BELOW = 0). */
int
mkdir_below (const char *path, size_t below, mode_t mode)
{
  CLEANUP_FREE char *copy = strdup (path);
  char *p;

  if (copy == NULL) {
    set_error (PB_E_FAIL, errno, "strdup");
    return -1;
  }
  for (p = copy + below + 1; p <= copy + strlen (path); p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char saved = *p;
    *p = '\0';
    if (mkdir (copy, mode) == -1 && errno != EEXIST) {
      set_error (PB_E_IO, errno, "mkdir %s", copy);
      return -1;
    }
    *p = saved;
    if (saved == '\0')
      break;
  }
  return 0;
}

int64_t
now_epoch (void)
{
  return (int64_t) time (NULL);
}

double
now_mono (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
parse_size (const char *str, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  errno = 0;
  if (!isdigit ((unsigned char) str[0]))
    goto bad;
  v = strtoull (str, &end, 10);
  if (errno != 0)
    goto bad;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: goto bad;
  }
  if (*end == 'i' && shift) end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
    goto bad;
  *out = (uint64_t) v << shift;
  return 0;
 bad:
  set_error (PB_E_USAGE, 0, "invalid size '%s' (expected a number with an optional K, M, G or T suffix)", str);
  return -1;
}

void
format_time (int64_t t, char *out, size_t len)
{
  time_t tt = (time_t) t;
  struct tm tm;

  gmtime_r (&tt, &tm);
  strftime (out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

extern char **environ;

/* Read what the child wrote to stderr (at most BUF bytes are kept). */
static void
drain (int fd, char *buf, size_t len)
{
  size_t n = 0;
  char discard[512];
  ssize_t r;

  while ((r = read (fd, n + 1 < len ? buf + n : discard,
                    n + 1 < len ? len - n - 1 : sizeof discard)) != 0) {
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      break;
    if (n + 1 < len)
      n += r;
  }
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = '\0';
}

int
run_command (const char *const *argv, int errclass)
{
  posix_spawn_file_actions_t fa;
  int pfd[2], status, r;
  pid_t pid;
  char err[1024];

  if (pipe2 (pfd, O_CLOEXEC) == -1) {
    set_error (PB_E_FAIL, errno, "pipe");
    return -1;
  }
  posix_spawn_file_actions_init (&fa);
  posix_spawn_file_actions_addopen (&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen (&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2 (&fa, pfd[1], 2);
  r = posix_spawnp (&pid, argv[0], &fa, NULL, (char *const *) argv, environ);
  posix_spawn_file_actions_destroy (&fa);
  close (pfd[1]);
  if (r != 0) {
    close (pfd[0]);
    set_error (errclass, r, "cannot run %s", argv[0]);
    return -1;
  }
  drain (pfd[0], err, sizeof err);
  close (pfd[0]);
  while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
    ;
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
    return 0;
  set_error (errclass, 0, "%s failed: %s", argv[0], err[0] ? err : "(no message)");
  return -1;
}

unsigned
pb_online_cpus (void)
{
  long n = sysconf (_SC_NPROCESSORS_ONLN);

  return n < 1 ? 1 : n > 64 ? 64 : (unsigned) n;
}
