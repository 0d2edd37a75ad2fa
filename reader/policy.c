/* pullback - reader/policy.c: which points a retention policy keeps.
 *
 * The rules are those of restic's forget, so that anyone who knows restic
 * can predict what 'pullback forget' removes:
 *  - the points are considered newest first (finish time descending; equal
 *    times: larger id first, i.e. the point recorded later);
 *  - a point is kept if any rule keeps it, and records every rule that did;
 *  - keep-last N keeps the N newest points;
 *  - keep-hourly/daily/weekly/monthly/yearly N: walking newest to oldest, a
 *    point is kept when its bucket (its hour, day, ISO 8601 week, month or
 *    year, in UTC) differs from that of the previous point this rule kept,
 *    until N buckets have a point: the newest point of each of the N newest
 *    buckets that have points.  Empty buckets do not count, so a VM that was
 *    not backed up for a month still keeps N daily points;
 *  - a rule of 0 keeps nothing, which makes --keep-last 0 the explicit way to
 *    remove every point (no rule at all is refused, see cmd-forget.c);
 *  - protected points are kept, with only PULLBACK_KEEP_PROTECTED, and take
 *    no part in the rules: they neither use up a count nor fill a bucket,
 *    so protecting a point never makes a rule keep fewer other points.
 * Weeks are ISO 8601 (Monday first; the week belongs to the year of its
 * Thursday), as restic's; every bucket is UTC so that the answer does not
 * depend on the machine's time zone.
 *
 * Pure (no clock, no I/O) so that the unit test can check it against a
 * fixed table of times.  The caller's array is never reordered: the sort is
 * of a private copy of the keys, and reasons are written back only once
 * everything has succeeded.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "errors.h"
#include "policy.h"

enum bucket { B_HOUR, B_DAY, B_WEEK, B_MONTH, B_YEAR, NBUCKETS };

static const unsigned bucket_bit[NBUCKETS] = {
  PULLBACK_KEEP_HOURLY, PULLBACK_KEEP_DAILY, PULLBACK_KEEP_WEEKLY,
  PULLBACK_KEEP_MONTHLY, PULLBACK_KEEP_YEARLY,
};

/* One item in the private, sorted copy. */
struct entry {
  int64_t time, id;
  size_t index;                 /* into the caller's array */
  bool is_protected;
  unsigned reasons;
};

bool
pullback_keep_rules_any (const struct pullback_keep_rules *k)
{
  return k->last != PULLBACK_KEEP_UNSET || k->hourly != PULLBACK_KEEP_UNSET ||
    k->daily != PULLBACK_KEEP_UNSET || k->weekly != PULLBACK_KEEP_UNSET ||
    k->monthly != PULLBACK_KEEP_UNSET || k->yearly != PULLBACK_KEEP_UNSET;
}

const char *
pullback_keep_reason_name (unsigned bit)
{
  switch (bit) {
  case PULLBACK_KEEP_LAST: return "last";
  case PULLBACK_KEEP_HOURLY: return "hourly";
  case PULLBACK_KEEP_DAILY: return "daily";
  case PULLBACK_KEEP_WEEKLY: return "weekly";
  case PULLBACK_KEEP_MONTHLY: return "monthly";
  case PULLBACK_KEEP_YEARLY: return "yearly";
  case PULLBACK_KEEP_PROTECTED: return "protected";
  }
  return NULL;
}

static int
check_rules (const struct pullback_keep_rules *k)
{
  const int64_t v[] = { k->last, k->hourly, k->daily, k->weekly,
                        k->monthly, k->yearly };
  size_t i;

  /* Refused rather than read as "keep everything" or "keep nothing": the
   * caller must say which it means. */
  if (!pullback_keep_rules_any (k)) {
    set_error (PB_E_USAGE, 0, "no keep rule given");
    return -1;
  }
  for (i = 0; i < sizeof v / sizeof v[0]; i++)
    if (v[i] < 0 && v[i] != PULLBACK_KEEP_UNSET) {
      set_error (PB_E_USAGE, 0, "a keep rule must be 0 or more, not %" PRId64,
                 v[i]);
      return -1;
    }
  return 0;
}

static bool
is_leap (int64_t y)
{
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* ISO 8601 week of TM as iso_year * 100 + week.  The week belongs to the
 * year of its Thursday, so the first days of January may be in the last
 * week of the year before (2027-01-01 is in 2026-W53) and the last days of
 * December in week 1 of the next (2024-12-30 is in 2025-W01). */
static int64_t
iso_week (const struct tm *tm)
{
  int64_t y = (int64_t) tm->tm_year + 1900;
  int monday0 = (tm->tm_wday + 6) % 7;          /* Monday = 0 ... Sunday = 6 */
  int thursday = tm->tm_yday - monday0 + 3;     /* day of year, may spill over */

  if (thursday < 0) {
    y--;
    thursday += is_leap (y) ? 366 : 365;
  }
  else if (thursday >= (is_leap (y) ? 366 : 365)) {
    thursday -= is_leap (y) ? 366 : 365;
    y++;
  }
  return y * 100 + thursday / 7 + 1;
}

/* The bucket of time WHEN as one number, equal for two times exactly when
 * they are in the same bucket (e.g. 2026120113 for 13:00-13:59 on
 * 2026-12-01).  -1 (errno EOVERFLOW, no error recorded) if gmtime_r cannot
 * represent the time. */
static int
bucket_of (int64_t when, enum bucket b, int64_t *key)
{
  time_t t = (time_t) when;
  struct tm tm;
  int64_t y, ymd;

  if ((int64_t) t != when || gmtime_r (&t, &tm) == NULL) {
    errno = EOVERFLOW;
    return -1;
  }
  y = (int64_t) tm.tm_year + 1900;
  ymd = (y * 100 + tm.tm_mon + 1) * 100 + tm.tm_mday;
  switch (b) {
  case B_HOUR: *key = ymd * 100 + tm.tm_hour; break;
  case B_DAY: *key = ymd; break;
  case B_WEEK: *key = iso_week (&tm); break;
  case B_MONTH: *key = y * 100 + tm.tm_mon + 1; break;
  case B_YEAR: default: *key = y; break;
  }
  return 0;
}

/* Newest first; equal times: larger id first.  The index makes the order
 * total (and the result independent of qsort) even for duplicate ids. */
static int
newest_first (const void *a, const void *b)
{
  const struct entry *x = a, *y = b;

  if (x->time != y->time)
    return x->time < y->time ? 1 : -1;
  if (x->id != y->id)
    return x->id < y->id ? 1 : -1;
  return (x->index > y->index) - (x->index < y->index);
}

/* keep-last COUNT over the unprotected entries E (sorted). */
static void
apply_last (struct entry *e, size_t n, int64_t count)
{
  int64_t kept = 0;
  size_t i;

  for (i = 0; i < n && kept < count; i++)
    if (!e[i].is_protected) {
      e[i].reasons |= PULLBACK_KEEP_LAST;
      kept++;
    }
}

/* Bucket rule B with COUNT over the unprotected entries E (sorted). */
static int
apply_bucket (struct entry *e, size_t n, enum bucket b, int64_t count)
{
  int64_t kept = 0, prev = 0, key;
  size_t i;

  for (i = 0; i < n && kept < count; i++) {
    if (e[i].is_protected)
      continue;
    if (bucket_of (e[i].time, b, &key) == -1) {
      set_error (PB_E_FAIL, errno, "point %" PRId64 ": time %" PRId64
                 " has no UTC date", e[i].id, e[i].time);
      return -1;
    }
    /* The first unprotected entry always opens a bucket (kept > 0 guards
     * PREV, which means nothing before it). */
    if (kept > 0 && key == prev)
      continue;
    e[i].reasons |= bucket_bit[b];
    prev = key;
    kept++;
  }
  return 0;
}

int
pullback_policy_apply (const struct pullback_keep_rules *k,
                       struct pullback_policy_item *items, size_t n)
{
  const int64_t counts[NBUCKETS] = { k->hourly, k->daily, k->weekly,
                                     k->monthly, k->yearly };
  struct entry *e;
  size_t i;
  int b;

  if (check_rules (k) == -1)
    return -1;
  if (n == 0)
    return 0;
  /* calloc checks N * size for overflow. */
  if ((e = calloc (n, sizeof *e)) == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  for (i = 0; i < n; i++) {
    e[i].time = items[i].time;
    e[i].id = items[i].id;
    e[i].index = i;
    e[i].is_protected = items[i].is_protected;
    e[i].reasons = items[i].is_protected ? PULLBACK_KEEP_PROTECTED : 0;
  }
  if (n > 1)
    qsort (e, n, sizeof *e, newest_first);
  if (k->last > 0)
    apply_last (e, n, k->last);
  for (b = 0; b < NBUCKETS; b++)
    if (counts[b] > 0 && apply_bucket (e, n, b, counts[b]) == -1) {
      free (e);
      return -1;
    }
  for (i = 0; i < n; i++)
    items[e[i].index].reasons = e[i].reasons;
  free (e);
  return 0;
}
