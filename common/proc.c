/* pullback - common/proc.c: process identities for writer leases.
 *
 * See proc.h for why a process is named by host, boot id, pid and start
 * time.  Everything comes from /proc and uname(2): no privileges needed.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cleanup.h"
#include "errors.h"
#include "proc.h"
#include "util.h"

/* The kernel's boot id.  Read with stdio: /proc files report size 0, so
 * read_file would return an empty id (and every boot would look alike). */
static int
read_boot_id (char *out, size_t len)
{
  const char *path = "/proc/sys/kernel/random/boot_id";
  FILE *f = fopen (path, "re");
  char buf[64];

  if (f == NULL || fgets (buf, sizeof buf, f) == NULL) {
    set_error (PB_E_IO, errno, "%s", path);
    if (f)
      fclose (f);
    return -1;
  }
  fclose (f);
  buf[strcspn (buf, "\n")] = '\0';
  snprintf (out, len, "%s", buf);
  return 0;
}

/* Field 22 of /proc/PID/stat.  The command name (field 2) is in
 * parentheses and may itself hold spaces and ')', so parse from the last
 * ')'.  (read_file cannot be used: /proc files have size 0.)  1 and
 * *START, 0 if there is no such process or it has ended (a zombie: a
 * SIGKILLed backup whose parent has not reaped it yet is dead, and so is
 * its lease), -1 on error. */
static int
proc_start (int64_t pid, int64_t *start)
{
  char path[64], buf[1024];
  FILE *f;
  size_t n;
  char *p;
  int field;

  snprintf (path, sizeof path, "/proc/%" PRId64 "/stat", pid);
  if ((f = fopen (path, "re")) == NULL) {
    if (errno == ENOENT || errno == ESRCH)
      return 0;
    set_error (PB_E_IO, errno, "%s", path);
    return -1;
  }
  n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = '\0';
  if (n == 0)
    return 0;                   /* exited while we read */
  p = strrchr (buf, ')');
  if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
    return 0;                   /* field 3, the state: zombie or dead */
  /* After ") " come fields 3, 4, ...: 20 spaces on is field 22. */
  for (field = 2; p && field < 22; field++)
    p = strchr (p + 1, ' ');
  if (p == NULL || sscanf (p + 1, "%" SCNd64, start) != 1) {
    set_error (PB_E_FAIL, 0, "%s: cannot parse the start time", path);
    return -1;
  }
  return 1;
}

int
pb_proc_of (int64_t pid, struct pb_proc_id *id)
{
  struct utsname u;
  int r;

  memset (id, 0, sizeof *id);
  if (uname (&u) == -1) {
    set_error (PB_E_FAIL, errno, "uname");
    return -1;
  }
  snprintf (id->host, sizeof id->host, "%s", u.nodename);
  id->pid = pid;
  if (read_boot_id (id->boot_id, sizeof id->boot_id) == -1 ||
      (r = proc_start (id->pid, &id->start)) == -1)
    return -1;
  if (r == 0) {
    set_error (PB_E_NOTFOUND, ESRCH, "process %" PRId64 " is not running", pid);
    return -1;
  }
  return 0;
}

int
pb_proc_self (struct pb_proc_id *id)
{
  return pb_proc_of (getpid (), id);
}

int
pb_proc_alive (const struct pb_proc_id *id)
{
  struct pb_proc_id self;
  int64_t start;
  int r;

  if (pb_proc_self (&self) == -1)
    return 1;                   /* cannot tell: assume it is alive */
  if (strcmp (self.host, id->host) != 0)
    return 1;
  /* An empty boot id was written by pullback before 2026-12 (which could
   * not read it): judge such a lease by pid and start time alone. */
  if (id->boot_id[0] && strcmp (self.boot_id, id->boot_id) != 0)
    return 0;
  r = proc_start (id->pid, &start);
  if (r == -1)
    return 1;
  return r == 1 && start == id->start;
}
