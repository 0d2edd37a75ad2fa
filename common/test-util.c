/* pullback - common/test-util.c: unit test of common/ (errors, helpers). */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "errors.h"
#include "proc.h"
#include "test.h"
#include "util.h"


static void
test_errors (void)
{
  pb_clear_error ();
  CHECK (pb_get_errclass () == PB_E_OK && pb_get_error ()[0] == '\0',
         "no error after clear");
  set_error (PB_E_NBD, 2, "connect %s", "x");
  CHECK (strcmp (pb_get_error (), "connect x: No such file or directory") == 0,
         "message with errno: %s", pb_get_error ());
  CHECK (pb_get_errno () == 2 && pb_get_errclass () == PB_E_NBD, "errno, class");
  pb_prefix_error ("disk '%s'", "vda");
  CHECK (strcmp (pb_get_error (),
                 "disk 'vda': connect x: No such file or directory") == 0,
         "prefix keeps message: %s", pb_get_error ());
  CHECK (pb_get_errclass () == PB_E_NBD, "prefix keeps class");
  set_error (PB_E_OK, 0, "x");
  CHECK (pb_get_errclass () == PB_E_FAIL, "an error never has class OK");
}

static void
test_sizes (void)
{
  uint64_t v = 0;

  CHECK (parse_size ("256K", &v) == 0 && v == 262144, "256K");
  CHECK (parse_size ("1MiB", &v) == 0 && v == 1048576, "1MiB");
  CHECK (parse_size ("4194304", &v) == 0 && v == 4194304, "plain number");
  CHECK (parse_size ("-1", &v) == -1 && pb_get_errclass () == PB_E_USAGE,
         "negative refused");
  CHECK (parse_size ("1X", &v) == -1, "bad suffix refused");
  CHECK (parse_size ("", &v) == -1, "empty refused");
  CHECK (parse_size ("99999999999999999999", &v) == -1, "overflow refused");
  CHECK (parse_size ("17179869184T", &v) == -1, "shift overflow refused");
  CHECK (div_round_up (0, 4) == 0 && div_round_up (5, 4) == 2 &&
         div_round_up (8, 4) == 2, "div_round_up");
  CHECK (is_power_of_2 (65536) && !is_power_of_2 (0) && !is_power_of_2 (3),
         "is_power_of_2");
}

static void
test_bytes (void)
{
  static char buf[10000];
  uint8_t in[3] = { 0x00, 0xab, 0xff }, out[3];
  char hex[7];

  CHECK (is_zero (buf, sizeof buf), "zero buffer");
  buf[9999] = 1;
  CHECK (!is_zero (buf, sizeof buf), "last byte set");
  buf[9999] = 0; buf[0] = 1;
  CHECK (!is_zero (buf, sizeof buf) && is_zero (buf + 1, 9999), "first byte set");
  hex_encode (in, 3, hex);
  CHECK (strcmp (hex, "00abff") == 0, "hex_encode");
  CHECK (hex_decode ("00ABff", out, 3) == 0 && memcmp (in, out, 3) == 0,
         "hex_decode");
  CHECK (hex_decode ("00abf", out, 3) == -1 && hex_decode ("00abffe", out, 3) == -1
         && hex_decode ("00agff", out, 3) == -1, "bad hex refused");
}

static void
test_files (void)
{
  char dir[] = "/tmp/test-util.XXXXXX", path[128];
  const char *ok[] = { "true", NULL };
  const char *bad[] = { "sh", "-c", "echo oops >&2; exit 3", NULL };
  const char *none[] = { "/nonexistent/cmd", NULL };
  CLEANUP_FREE char *text = NULL;
  struct stat st;
  size_t len;
  int fd;

  if (mkdtemp (dir) == NULL)
    abort ();
  snprintf (path, sizeof path, "%s/a/b/c", dir);
  CHECK (mkdir_p (path, 0700) == 0 && stat (path, &st) == 0 &&
         S_ISDIR (st.st_mode), "mkdir_p");
  CHECK (mkdir_p (path, 0700) == 0, "mkdir_p again");
  CHECK (fsync_dir (path) == 0, "fsync_dir");
  snprintf (path, sizeof path, "%s/f", dir);
  fd = open (path, O_CREAT|O_WRONLY, 0600);
  CHECK (fd >= 0 && full_write (fd, "hello", 5) == 0, "full_write");
  close (fd);
  CHECK (read_file (path, &text, &len) == 0 && len == 5 &&
         strcmp (text, "hello") == 0, "read_file");
  CHECK (run_command (ok, PB_E_TARGET) == 0, "run_command true");
  CHECK (run_command (bad, PB_E_TARGET) == -1 &&
         pb_get_errclass () == PB_E_TARGET &&
         strstr (pb_get_error (), "oops") != NULL,
         "run_command failure quotes stderr: %s", pb_get_error ());
  CHECK (run_command (none, PB_E_TARGET) == -1, "run_command missing program");
  snprintf (path, sizeof path, "rm -rf %s", dir);
  CHECK (system (path) == 0, "cleanup");
}

/* Wait until PID's state (field 3 of /proc/PID/stat) is STATE. */
static bool
wait_state (pid_t pid, char state)
{
  char path[64], buf[512], *p;
  int i;

  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  for (i = 0; i < 500; i++) {
    FILE *f = fopen (path, "r");
    size_t n = f ? fread (buf, 1, sizeof buf - 1, f) : 0;
    if (f)
      fclose (f);
    buf[n] = '\0';
    if ((p = strrchr (buf, ')')) != NULL && p[1] == ' ' && p[2] == state)
      return true;
    usleep (10000);
  }
  return false;
}

/* Leases judge their owner by these: a live process is alive, a killed
 * one is not even before its parent reaps it (a zombie). */
static void
test_proc (void)
{
  struct pb_proc_id self, child, gone;
  pid_t pid;

  CHECK (pb_proc_self (&self) == 0 && self.boot_id[0] != '\0' &&
         strlen (self.boot_id) == 36, "own identity with a boot id: '%s'",
         self.boot_id);
  CHECK (pb_proc_alive (&self) == 1, "the calling process is alive");
  pid = fork ();
  if (pid == 0) {
    pause ();
    _exit (0);
  }
  CHECK (pid > 0 && pb_proc_of (pid, &child) == 0, "identity of a child");
  CHECK (pb_proc_alive (&child) == 1, "a running child is alive");
  gone = child;
  gone.start++;
  CHECK (pb_proc_alive (&gone) == 0, "same pid, other start time: not alive");
  snprintf (gone.boot_id, sizeof gone.boot_id, "%s", "another-boot");
  gone.start = child.start;
  CHECK (pb_proc_alive (&gone) == 0, "other boot: not alive");
  gone.boot_id[0] = '\0';
  CHECK (pb_proc_alive (&gone) == 1, "no boot id recorded: judged by pid");
  kill (pid, SIGKILL);
  CHECK (wait_state (pid, 'Z'), "the killed child is a zombie");
  CHECK (pb_proc_alive (&child) == 0, "a zombie is not alive");
  waitpid (pid, NULL, 0);
  CHECK (pb_proc_alive (&child) == 0, "a reaped child is not alive");
  CHECK (pb_proc_of (pid, &gone) == -1 && pb_get_errclass () == PB_E_NOTFOUND,
         "no identity for a gone process");
}

int
main (void)
{
  test_errors ();
  test_sizes ();
  test_bytes ();
  test_files ();
  test_proc ();
  return test_summary ();
}
