/* pullback - reader/test-policy.c: unit test of the retention policy.
 *
 * Each case is a fixed table of points (literal epoch seconds, the UTC date
 * beside each; no clock is read) and the reasons every point must get,
 * worked out by hand from the rules in reader/policy.c rather than by a
 * second implementation, so that a mistake in the algorithm cannot hide in
 * the expectation too.  The tables are chosen to sit on the boundaries an
 * implementation gets wrong: 10:59:59 / 11:00:00, 23:59:59 / 00:00:00,
 * Sunday / Monday (ISO weeks start on Monday), the ISO year differing from
 * the calendar year (2027-01-01 is in 2026-W53, 2024-12-30 in 2025-W01,
 * 2025-12-31 in 2026-W01 but in the year 2025), and equal times.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "policy.h"
#include "test.h"

#define L PULLBACK_KEEP_LAST
#define H PULLBACK_KEEP_HOURLY
#define D PULLBACK_KEEP_DAILY
#define W PULLBACK_KEEP_WEEKLY
#define M PULLBACK_KEEP_MONTHLY
#define Y PULLBACK_KEEP_YEARLY
#define P PULLBACK_KEEP_PROTECTED

#define N_OF(a) (sizeof (a) / sizeof (a)[0])
#define MAXPTS 16

struct point {
  int64_t id, time;
  bool is_protected;
};

/* Every rule unset; a case then sets the ones it tests. */
static struct pullback_keep_rules
no_rules (void)
{
  struct pullback_keep_rules k = {
    PULLBACK_KEEP_UNSET, PULLBACK_KEEP_UNSET, PULLBACK_KEEP_UNSET,
    PULLBACK_KEEP_UNSET, PULLBACK_KEEP_UNSET, PULLBACK_KEEP_UNSET,
  };
  return k;
}

/* Apply K to the N points PTS and check that it succeeds, that the array
 * keeps its order (ids in place) and that point PTS[i] got exactly the
 * reasons WANT[i].  Prints every point of a failing case. */
static void
run_case (const char *name, const struct pullback_keep_rules *k,
          const struct point *pts, size_t n, const unsigned *want)
{
  struct pullback_policy_item items[MAXPTS];
  bool ok = true;
  size_t i;
  int r;

  if (n > MAXPTS)
    abort ();
  for (i = 0; i < n; i++) {
    items[i].id = pts[i].id;
    items[i].time = pts[i].time;
    items[i].is_protected = pts[i].is_protected;
    items[i].reasons = 0xdead;          /* must be overwritten */
  }
  pb_clear_error ();
  r = pullback_policy_apply (k, items, n);
  for (i = 0; r == 0 && i < n; i++)
    if (items[i].id != pts[i].id || items[i].time != pts[i].time ||
        items[i].is_protected != pts[i].is_protected ||
        items[i].reasons != want[i])
      ok = false;
  CHECK (r == 0 && ok, "%s", name);
  if (r == 0 && !ok)
    for (i = 0; i < n; i++)
      printf ("    [%zu] id %" PRId64 " (want id %" PRId64 "): reasons %#x,"
              " want %#x%s\n", i, items[i].id, pts[i].id, items[i].reasons,
              want[i], items[i].reasons != want[i] ? "  <--" : "");
}

/* 2026-12-01, a Tuesday: several points in one hour. */
static const struct point hours[] = {
  { 1, 1796115900, false },             /* 2026-12-01 09:05:00 */
  { 2, 1796119200, false },             /* 2026-12-01 10:00:00 */
  { 3, 1796120400, false },             /* 2026-12-01 10:20:00 */
  { 4, 1796122799, false },             /* 2026-12-01 10:59:59 */
  { 5, 1796122800, false },             /* 2026-12-01 11:00:00 */
  { 6, 1796124600, false },             /* 2026-12-01 11:30:00 */
  { 7, 1796130000, false },             /* 2026-12-01 13:00:00 */
};

/* Days around midnight. */
static const struct point days[] = {
  { 1, 1795867200, false },             /* 2026-11-28 12:00:00 Sat */
  { 2, 1795939200, false },             /* 2026-11-29 08:00:00 Sun */
  { 3, 1795996799, false },             /* 2026-11-29 23:59:59 Sun */
  { 4, 1795996800, false },             /* 2026-11-30 00:00:00 Mon */
  { 5, 1796191200, false },             /* 2026-12-02 06:00:00 Wed */
  { 6, 1796234400, false },             /* 2026-12-02 18:00:00 Wed */
};

/* ISO weeks: a Sunday/Monday boundary and the end of 2026, which has 53
 * ISO weeks (it begins on a Thursday). */
static const struct point weeks[] = {
  { 1, 1795348800, false },             /* 2026-11-22 12:00:00 Sun, 2026-W47 */
  { 2, 1795424400, false },             /* 2026-11-23 09:00:00 Mon, 2026-W48 */
  { 3, 1795982400, false },             /* 2026-11-29 20:00:00 Sun, 2026-W48 */
  { 4, 1796000400, false },             /* 2026-11-30 01:00:00 Mon, 2026-W49 */
  { 5, 1798452000, false },             /* 2026-12-28 10:00:00 Mon, 2026-W53 */
  { 6, 1798718400, false },             /* 2026-12-31 12:00:00 Thu, 2026-W53 */
  { 7, 1798804800, false },             /* 2027-01-01 12:00:00 Fri, 2026-W53 */
  { 8, 1799017200, false },             /* 2027-01-03 23:00:00 Sun, 2026-W53 */
  { 9, 1799049600, false },             /* 2027-01-04 08:00:00 Mon, 2027-W01 */
};

/* The ISO year ahead of the calendar year. */
static const struct point weeks2[] = {
  { 1, 1735473600, false },             /* 2024-12-29 12:00:00 Sun, 2024-W52 */
  { 2, 1735560000, false },             /* 2024-12-30 12:00:00 Mon, 2025-W01 */
  { 3, 1735819200, false },             /* 2025-01-02 12:00:00 Thu, 2025-W01 */
};

static const struct point months[] = {
  { 1, 1789473600, false },             /* 2026-09-15 12:00:00 */
  { 2, 1790812800, false },             /* 2026-10-01 00:00:00 */
  { 3, 1793491199, false },             /* 2026-10-31 23:59:59 */
  { 4, 1793491200, false },             /* 2026-11-01 00:00:00 */
  { 5, 1795176000, false },             /* 2026-11-20 12:00:00 */
  { 6, 1796472000, false },             /* 2026-12-05 12:00:00 */
};

/* Years are calendar years, not ISO years: 2025-12-31 is in 2026-W01 but
 * in the year 2025. */
static const struct point years[] = {
  { 1, 1719835200, false },             /* 2024-07-01 12:00:00 */
  { 2, 1735689600, false },             /* 2025-01-01 00:00:00 */
  { 3, 1767225599, false },             /* 2025-12-31 23:59:59 */
  { 4, 1767225600, false },             /* 2026-01-01 00:00:00 */
  { 5, 1782820800, false },             /* 2026-06-30 12:00:00 */
};

/* For the combination of rules and for protection. */
static const struct point mixed[] = {
  { 1, 1792490400, false },             /* 2026-10-20 10:00:00 */
  { 2, 1792922400, false },             /* 2026-10-25 10:00:00 */
  { 3, 1795856400, false },             /* 2026-11-28 09:00:00 */
  { 4, 1795942800, false },             /* 2026-11-29 09:00:00 */
  { 5, 1796029200, false },             /* 2026-11-30 09:00:00 */
  { 6, 1796050800, false },             /* 2026-11-30 15:00:00 */
  { 7, 1796112000, false },             /* 2026-12-01 08:00:00 */
  { 8, 1796155200, false },             /* 2026-12-01 20:00:00 */
};

static void
test_last (void)
{
  struct pullback_keep_rules k = no_rules ();
  static const unsigned last3[] = { 0, 0, 0, 0, 0, L, L, L };
  static const unsigned all[] = { L, L, L, L, L, L, L, L };
  static const unsigned none[8];

  k.last = 3;
  run_case ("keep-last 3 keeps ids 6 7 8", &k, mixed, N_OF (mixed), last3);
  k.last = 8;
  run_case ("keep-last 8 keeps all 8", &k, mixed, N_OF (mixed), all);
  k.last = INT64_MAX;
  run_case ("keep-last INT64_MAX keeps all", &k, mixed, N_OF (mixed), all);
  k.last = 0;
  run_case ("keep-last 0 alone removes every point", &k, mixed, N_OF (mixed),
            none);
  k.daily = 0;
  k.yearly = 0;
  run_case ("keep-last 0, daily 0, yearly 0 remove every point", &k, mixed,
            N_OF (mixed), none);
  k = no_rules ();
  k.last = 1;
  k.daily = 0;
  run_case ("daily 0 adds nothing to keep-last 1", &k, mixed, N_OF (mixed),
            (const unsigned[]) { 0, 0, 0, 0, 0, 0, 0, L });
}

static void
test_hourly (void)
{
  struct pullback_keep_rules k = no_rules ();

  /* Newest first: 7 (13h) new; 6 (11h) new; 5 (11h) same; 4 (10h) new. */
  k.hourly = 3;
  run_case ("hourly 3 keeps 7, 6 (not 5), 4 (10:59:59)", &k, hours,
            N_OF (hours), (const unsigned[]) { 0, 0, 0, H, 0, H, H });
  k.hourly = 100;
  run_case ("hourly 100 keeps the newest of each of the 4 hours", &k, hours,
            N_OF (hours), (const unsigned[]) { H, 0, 0, H, 0, H, H });
  k.hourly = 1;
  run_case ("hourly 1 keeps only 7", &k, hours, N_OF (hours),
            (const unsigned[]) { 0, 0, 0, 0, 0, 0, H });
}

static void
test_daily (void)
{
  struct pullback_keep_rules k = no_rules ();

  /* 6 (12-02) new; 5 same; 4 (11-30 00:00:00) new; 3 (11-29 23:59:59) new. */
  k.daily = 3;
  run_case ("daily 3 keeps 6, 4, 3", &k, days, N_OF (days),
            (const unsigned[]) { 0, 0, D, D, 0, D });
  k.daily = 7;
  run_case ("daily 7 keeps 6, 4, 3, 1 (4 days have points)", &k, days,
            N_OF (days), (const unsigned[]) { D, 0, D, D, 0, D });
}

static void
test_weekly (void)
{
  struct pullback_keep_rules k = no_rules ();

  /* 9 (2027-W01) new; 8 (2026-W53) new; 7, 6, 5 in 2026-W53 too;
   * 4 (Mon, W49) new; 3 (Sun, W48) new; 2 (Mon, W48) same; 1 (Sun, W47). */
  k.weekly = 4;
  run_case ("weekly 4 keeps 9, 8, 4, 3 (2026-12-28..2027-01-03 one week)",
            &k, weeks, N_OF (weeks),
            (const unsigned[]) { 0, 0, W, W, 0, 0, 0, W, W });
  k.weekly = 10;
  run_case ("weekly 10 keeps 9, 8, 4, 3, 1", &k, weeks, N_OF (weeks),
            (const unsigned[]) { W, 0, W, W, 0, 0, 0, W, W });
  k.weekly = 2;
  run_case ("weekly 2: 2024-12-30 is in 2025-W01 with 2025-01-02", &k, weeks2,
            N_OF (weeks2), (const unsigned[]) { W, 0, W });
}

static void
test_monthly_yearly (void)
{
  struct pullback_keep_rules k = no_rules ();

  /* 6 (Dec) new; 5 (Nov) new; 4 (Nov 1st) same; 3 (Oct 31st) new. */
  k.monthly = 3;
  run_case ("monthly 3 keeps 6, 5, 3", &k, months, N_OF (months),
            (const unsigned[]) { 0, 0, M, 0, M, M });
  k.monthly = 12;
  run_case ("monthly 12 keeps 6, 5, 3, 1", &k, months, N_OF (months),
            (const unsigned[]) { M, 0, M, 0, M, M });
  k = no_rules ();
  /* 5 (2026) new; 4 (2026) same; 3 (2025-12-31 23:59:59) new. */
  k.yearly = 2;
  run_case ("yearly 2 keeps 5, 3 (calendar, not ISO, year)", &k, years,
            N_OF (years), (const unsigned[]) { 0, 0, Y, 0, Y });
  k.yearly = 5;
  run_case ("yearly 5 keeps 5, 3, 1", &k, years, N_OF (years),
            (const unsigned[]) { Y, 0, Y, 0, Y });
}

static void
test_combined (void)
{
  struct pullback_keep_rules k = no_rules ();

  /* last 2: 8, 7.  daily 3: 8 (12-01), 6 (11-30), 4 (11-29).
   * monthly 2: 8 (Dec), 6 (Nov). */
  k.last = 2;
  k.daily = 3;
  k.monthly = 2;
  run_case ("last 2 + daily 3 + monthly 2: 8=L|D|M 7=L 6=D|M 4=D", &k,
            mixed, N_OF (mixed),
            (const unsigned[]) { 0, 0, 0, D, 0, D|M, L, L|D|M });
  /* Every rule at once.  hourly 3: 8, 7, 6.  weekly 2: 8 (W49), 4 (W48).
   * monthly 3 adds 2 (Oct).  yearly 1: 8. */
  k.hourly = 3;
  k.weekly = 2;
  k.monthly = 3;
  k.yearly = 1;
  run_case ("every rule: 8=L|H|D|W|M|Y 7=L|H 6=H|D|M 4=D|W 2=M", &k,
            mixed, N_OF (mixed),
            (const unsigned[]) { 0, M, 0, D|W, 0, H|D|M, L|H,
                                 L|H|D|W|M|Y });
}

static void
test_protected (void)
{
  struct pullback_keep_rules k = no_rules ();
  struct point pts[N_OF (mixed)];

  /* Protect the newest (8) and 5.  Without them, the newest unprotected
   * points are 7, 6, 4, 3...: last 2: 7, 6.  daily 3: 7 (12-01: 8 does not
   * fill the day), 6 (11-30), 4 (11-29).  monthly 2: 7 (Dec), 6 (Nov). */
  memcpy (pts, mixed, sizeof pts);
  pts[7].is_protected = true;
  pts[4].is_protected = true;
  k.last = 2;
  k.daily = 3;
  k.monthly = 2;
  run_case ("protected 8 and 5 get only P and use up no count", &k, pts,
            N_OF (pts), (const unsigned[]) { 0, 0, 0, D, P, L|D|M, L|D|M, P });
  k = no_rules ();
  k.last = 0;
  run_case ("keep-last 0 keeps only the protected points", &k, pts,
            N_OF (pts), (const unsigned[]) { 0, 0, 0, 0, P, 0, 0, P });
  k.last = 8;
  run_case ("keep-last 8 over 6 unprotected: protected still only P", &k,
            pts, N_OF (pts), (const unsigned[]) { L, L, L, L, P, L, L, P });
}

static void
test_ties (void)
{
  struct pullback_keep_rules k = no_rules ();
  /* Three points at the same second, given out of id order. */
  static const struct point pts[] = {
    { 11, 1796126400, false },          /* 2026-12-01 12:00:00 */
    { 12, 1796126400, false },          /* 2026-12-01 12:00:00 */
    { 9, 1796122800, false },           /* 2026-12-01 11:00:00 */
    { 10, 1796126400, false },          /* 2026-12-01 12:00:00 */
  };

  k.last = 1;
  run_case ("tie: keep-last 1 keeps the largest id (12)", &k, pts,
            N_OF (pts), (const unsigned[]) { 0, L, 0, 0 });
  k.last = 2;
  run_case ("tie: keep-last 2 keeps 12, 11", &k, pts, N_OF (pts),
            (const unsigned[]) { L, L, 0, 0 });
  k = no_rules ();
  k.hourly = 2;
  run_case ("tie: hourly 2 keeps 12 (12h) and 9 (11h)", &k, pts, N_OF (pts),
            (const unsigned[]) { 0, H, H, 0 });
}

static void
test_shuffled (void)
{
  struct pullback_keep_rules k = no_rules ();
  /* mixed, in the order 5 2 8 1 7 4 6 3; 2 protected. */
  static const struct point pts[] = {
    { 5, 1796029200, false },           /* 2026-11-30 09:00:00 */
    { 2, 1792922400, true },    /* 2026-10-25 10:00:00, protected */
    { 8, 1796155200, false },           /* 2026-12-01 20:00:00 */
    { 1, 1792490400, false },           /* 2026-10-20 10:00:00 */
    { 7, 1796112000, false },           /* 2026-12-01 08:00:00 */
    { 4, 1795942800, false },           /* 2026-11-29 09:00:00 */
    { 6, 1796050800, false },           /* 2026-11-30 15:00:00 */
    { 3, 1795856400, false },           /* 2026-11-28 09:00:00 */
  };

  /* As in test_combined, plus monthly 3 reaching October past the
   * protected 2: 1 is the newest unprotected October point. */
  k.last = 2;
  k.daily = 3;
  k.monthly = 3;
  run_case ("shuffled input: same answer per id, order unchanged", &k, pts,
            N_OF (pts), (const unsigned[]) { 0, P, L|D|M, M, L, D, D|M, 0 });
}

static void
test_errors (void)
{
  struct pullback_keep_rules k = no_rules ();
  struct pullback_policy_item item = { 1, 1796126400, false, 0xdead };
  struct pullback_policy_item huge[] = {
    { 1, 1796126400, false, 0xdead },
    { 2, INT64_MAX, false, 0xdead },
  };

  CHECK (!pullback_keep_rules_any (&k), "rules_any: none set");
  pb_clear_error ();
  CHECK (pullback_policy_apply (&k, &item, 1) == -1 &&
         pb_get_errclass () == PB_E_USAGE && item.reasons == 0xdead,
         "no rule: -1 PB_E_USAGE, item untouched (%s)", pb_get_error ());
  k.yearly = 0;
  CHECK (pullback_keep_rules_any (&k), "rules_any: yearly 0 is a rule");
  k = no_rules ();
  k.daily = -2;
  CHECK (pullback_keep_rules_any (&k), "rules_any: -2 counts as set");
  pb_clear_error ();
  CHECK (pullback_policy_apply (&k, &item, 1) == -1 &&
         pb_get_errclass () == PB_E_USAGE && item.reasons == 0xdead,
         "daily -2: -1 PB_E_USAGE (%s)", pb_get_error ());
  k.daily = 1;
  k.last = INT64_MIN;
  pb_clear_error ();
  CHECK (pullback_policy_apply (&k, &item, 1) == -1 &&
         pb_get_errclass () == PB_E_USAGE,
         "last INT64_MIN: -1 PB_E_USAGE (%s)", pb_get_error ());

  k = no_rules ();
  k.last = 2;
  pb_clear_error ();
  CHECK (pullback_policy_apply (&k, NULL, 0) == 0, "n = 0, NULL items");
  CHECK (pullback_policy_apply (&k, &item, 0) == 0 && item.reasons == 0xdead,
         "n = 0 touches nothing");
  k = no_rules ();
  pb_clear_error ();
  CHECK (pullback_policy_apply (&k, NULL, 0) == -1 &&
         pb_get_errclass () == PB_E_USAGE, "n = 0 without a rule: PB_E_USAGE");

  /* A time gmtime_r cannot convert is an error, not a guess, and leaves
   * the array as it was; keep-last alone never needs a date. */
  k = no_rules ();
  k.daily = 2;
  pb_clear_error ();
  CHECK (pullback_policy_apply (&k, huge, 2) == -1 &&
         pb_get_errclass () == PB_E_FAIL && pb_get_errno () == EOVERFLOW &&
         huge[0].reasons == 0xdead && huge[1].reasons == 0xdead,
         "daily with time INT64_MAX: -1 EOVERFLOW (%s)", pb_get_error ());
  k = no_rules ();
  k.last = 1;
  CHECK (pullback_policy_apply (&k, huge, 2) == 0 &&
         huge[0].reasons == 0 && huge[1].reasons == L,
         "keep-last with time INT64_MAX");
}

static void
test_names (void)
{
  static const struct { unsigned bit; const char *name; } names[] = {
    { PULLBACK_KEEP_LAST, "last" }, { PULLBACK_KEEP_HOURLY, "hourly" },
    { PULLBACK_KEEP_DAILY, "daily" }, { PULLBACK_KEEP_WEEKLY, "weekly" },
    { PULLBACK_KEEP_MONTHLY, "monthly" }, { PULLBACK_KEEP_YEARLY, "yearly" },
    { PULLBACK_KEEP_PROTECTED, "protected" },
  };
  const char *s;
  size_t i;

  for (i = 0; i < N_OF (names); i++) {
    s = pullback_keep_reason_name (names[i].bit);
    CHECK (s != NULL && strcmp (s, names[i].name) == 0,
           "reason name of %u: %s", names[i].bit, s ? s : "(null)");
  }
  CHECK (L == 1 && H == 2 && D == 4 && W == 8 && M == 16 && Y == 32 &&
         P == 64, "reason bits have their documented values");
  CHECK (pullback_keep_reason_name (0) == NULL, "reason name of 0: NULL");
  CHECK (pullback_keep_reason_name (128) == NULL, "reason name of 128: NULL");
  CHECK (pullback_keep_reason_name (L|D) == NULL, "reason name of 5: NULL");
}

int
main (void)
{
  test_last ();
  test_hourly ();
  test_daily ();
  test_weekly ();
  test_monthly_yearly ();
  test_combined ();
  test_protected ();
  test_ties ();
  test_shuffled ();
  test_errors ();
  test_names ();
  return test_summary ();
}
