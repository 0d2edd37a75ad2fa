/* pullback - agent/progress.c: the progress line of backup, restore, verify.
 *
 * A single line on stderr, rewritten in place ("\r", then padding over
 * what was there), so a person at a terminal sees which disk is being
 * handled, how far along it is and how fast it goes.  It is drawn only
 * when stderr is a terminal and neither --quiet nor --json was given
 * (parse_options decides), at most five times a second, and erased before
 * the command prints its result.  The library may call back from several
 * threads (one per disk), hence the lock and the per-disk start times.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

/* Seconds between two redraws: often enough to look alive, rarely enough
 * to cost nothing and not to flicker. */
#define REDRAW_INTERVAL 0.2

static size_t
terminal_columns (void)
{
  struct winsize ws;

  if (ioctl (STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
    return ws.ws_col;
  return 80;
}

void
progress_start (struct progress *p, const struct cli *c, const char *verb)
{
  memset (p, 0, sizeof *p);
  pthread_mutex_init (&p->lock, NULL);
  p->enabled = c->progress;
  p->verb = verb;
  p->columns = terminal_columns ();
}

/* Bytes per second of DISK since its first callback.  Disks beyond the
 * table get no rate rather than a wrong one. */
static double
disk_rate (struct progress *p, const char *disk, uint64_t done, double now)
{
  size_t i;

  for (i = 0; i < p->ndisks; i++)
    if (strcmp (p->disks[i].name, disk) == 0)
      break;
  if (i == p->ndisks) {
    if (i == PROGRESS_DISKS)
      return 0;
    snprintf (p->disks[i].name, sizeof p->disks[i].name, "%s", disk);
    p->disks[i].start = now;
    p->disks[i].start_done = done;
    p->ndisks++;
  }
  if (now - p->disks[i].start < 0.5 || done < p->disks[i].start_done)
    return 0;
  return (done - p->disks[i].start_done) / (now - p->disks[i].start);
}

static void
format_line (struct progress *p, const char *disk, uint64_t done,
             uint64_t total, double rate, char *line, size_t len)
{
  char d[HUMAN_SIZE_MAX], t[HUMAN_SIZE_MAX];
  size_t n;

  n = snprintf (line, len, "%s%s%s:", p->verb, *disk ? " " : "", disk);
  if (n < len && total > 0)
    n += snprintf (line + n, len - n, " %3d%%",
                   (int) (done >= total ? 100 : done * 100.0 / total));
  if (n < len)
    n += snprintf (line + n, len - n, " %s", human_size (done, false, d));
  if (n < len && total > 0)
    n += snprintf (line + n, len - n, " / %s", human_size (total, false, t));
  if (n < len && rate > 0)
    snprintf (line + n, len - n, "  %.1f MB/s", rate / 1e6);
}

/* Rewrite the line: pad over a longer previous text instead of relying on
 * terminal escapes, and stay below the width so the line never wraps. */
static void
draw (struct progress *p, const char *text)
{
  char buf[512];
  size_t len = strlen (text);
  size_t pad = 0;

  if (len >= p->columns)
    len = p->columns - 1;
  if (p->shown > len)
    pad = p->shown - len;
  snprintf (buf, sizeof buf, "\r%.*s%*s", (int) len, text, (int) pad, "");
  fputs (buf, stderr);
  p->shown = len;
}

void
progress_update (void *opaque, const char *disk, uint64_t done,
                 uint64_t total)
{
  struct progress *p = opaque;
  char line[256];
  double now, rate;

  if (p == NULL || !p->enabled)
    return;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
  now = now_mono ();
  if (disk == NULL)
    disk = "";
  rate = disk_rate (p, disk, done, now);
  if (p->last > 0 && now - p->last < REDRAW_INTERVAL)
    return;
  p->last = now;
  format_line (p, disk, done, total, rate, line, sizeof line);
  draw (p, line);
}

void
progress_end (struct progress *p)
{
  if (p->enabled && p->shown > 0)
    fprintf (stderr, "\r%*s\r", (int) p->shown, "");
  p->shown = 0;
  pthread_mutex_destroy (&p->lock);
}
