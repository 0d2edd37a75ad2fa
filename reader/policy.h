/* pullback - reader/policy.h: the retention policy of 'pullback forget'.
 *
 * Which points of one VM a set of --keep-* rules keeps, and why.  Pure (no
 * clock, no I/O, no catalog), so that it can be tested against a fixed
 * table of times; reader/space.c feeds it the points and acts on the
 * answer.  Part of the installed API (included by pullback.h).  The six
 * counts of struct pullback_keep_rules are read as an array in that order
 * elsewhere: do not reorder them.
 */
#ifndef PULLBACK_POLICY_H
#define PULLBACK_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define PULLBACK_KEEP_UNSET (-1)
/* Each rule is >= 0, or PULLBACK_KEEP_UNSET when not given. */
struct pullback_keep_rules {
  int64_t last, hourly, daily, weekly, monthly, yearly;
};
enum pullback_keep_reason {
  PULLBACK_KEEP_LAST = 1, PULLBACK_KEEP_HOURLY = 2, PULLBACK_KEEP_DAILY = 4,
  PULLBACK_KEEP_WEEKLY = 8, PULLBACK_KEEP_MONTHLY = 16, PULLBACK_KEEP_YEARLY = 32,
  PULLBACK_KEEP_PROTECTED = 64
};
struct pullback_policy_item {
  int64_t id;          /* point id; larger = newer when times are equal */
  int64_t time;        /* seconds since the epoch, UTC (the point's finish time) */
  bool is_protected;   /* in */
  unsigned reasons;    /* out: OR of enum pullback_keep_reason; 0 = remove */
};
/* true if at least one rule is set (not PULLBACK_KEEP_UNSET). */
bool pullback_keep_rules_any (const struct pullback_keep_rules *rules);
/* Decide which of N ITEMS (any order; the array order is NOT changed) to keep.
 * -1 with PB_E_USAGE if no rule is set or a rule is negative other than UNSET.
 *
 * Semantics are those of restic's forget: newest first (ties: larger id
 * first); protected items get only PULLBACK_KEEP_PROTECTED and neither
 * count for nor delimit any rule; keep-last N keeps the N newest; a bucket
 * rule N keeps the newest item of each of the N newest hours, days, ISO
 * 8601 weeks, months or years (UTC) that have items; a rule of 0 keeps
 * nothing, so that last = 0 alone removes every unprotected item.
 *
 * Also -1 with PB_E_FAIL if memory runs out, or if a bucket rule is set
 * and a time is too large for gmtime_r (errno EOVERFLOW).  On failure no
 * item is changed.  N may be 0 (ITEMS then may be NULL). */
int pullback_policy_apply (const struct pullback_keep_rules *rules,
                           struct pullback_policy_item *items, size_t n);
/* "last", "hourly", "daily", "weekly", "monthly", "yearly", "protected" for one bit; NULL otherwise. */
const char *pullback_keep_reason_name (unsigned bit);
#endif
