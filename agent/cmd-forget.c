/* pullback - agent/cmd-forget.c: 'pullback forget', 'protect', 'unprotect'.
 *
 * forget applies a retention policy (--keep-last/hourly/daily/weekly/
 * monthly/yearly, combined as in restic: a point is kept if any rule keeps
 * it) or removes one --point, printing every point it looked at with what
 * happened to it and why.  Refusing to run without a rule is deliberate:
 * a typo in a timer unit must not empty a repository; --keep-last 0 is
 * the way to say "remove everything".  --gc runs gc afterwards.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct forget_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo, *vm;
  char point[POINT_SPEC_MAX];
  struct pullback_keep_rules rules;
  bool dry_run, gc;
};

/* A --keep-* count: digits only, given once. */
static int
parse_keep (int64_t *slot, const char *opt, const char *arg)
{
  const char *p;

  if (*slot != PULLBACK_KEEP_UNSET) {
    set_error (PB_E_USAGE, 0, "%s is given twice", opt);
    return -1;
  }
  for (p = arg; *p >= '0' && *p <= '9'; p++)
    ;
  errno = 0;
  if (*p != '\0' || p == arg || p - arg > 9) {
    set_error (PB_E_USAGE, 0, "%s: invalid count '%s' (expected a number, "
               "0 or more)", opt, arg);
    return -1;
  }
  *slot = strtoll (arg, NULL, 10);
  return 0;
}

static int
forget_option (void *ctx, int opt, const char *arg)
{
  struct forget_args *a = ctx;
  struct pullback_keep_rules *k = &a->rules;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_VM: return option_once (&a->vm, "--vm", arg);
  case OPT_POINT: return parse_point_spec (arg, a->point);
  case OPT_KEEP_LAST: return parse_keep (&k->last, "--keep-last", arg);
  case OPT_KEEP_HOURLY: return parse_keep (&k->hourly, "--keep-hourly", arg);
  case OPT_KEEP_DAILY: return parse_keep (&k->daily, "--keep-daily", arg);
  case OPT_KEEP_WEEKLY: return parse_keep (&k->weekly, "--keep-weekly", arg);
  case OPT_KEEP_MONTHLY: return parse_keep (&k->monthly, "--keep-monthly", arg);
  case OPT_KEEP_YEARLY: return parse_keep (&k->yearly, "--keep-yearly", arg);
  case OPT_DRY_RUN: a->dry_run = true; return 0;
  case OPT_GC: a->gc = true; return 0;
  }
  return unhandled_option (opt);
}

/* The names of the reason bits, in bit order. */
static const char *
reason_name (unsigned bit)
{
  if (bit == PULLBACK_KEEP_IN_USE)
    return "in use";
  return pullback_keep_reason_name (bit);
}

static struct json_object *
json_reasons (unsigned reasons)
{
  struct json_object *a = json_object_new_array ();
  unsigned bit;

  for (bit = 1; bit <= PULLBACK_KEEP_IN_USE; bit <<= 1)
    if ((reasons & bit) && reason_name (bit))
      json_object_array_add (a, json_object_new_string (reason_name (bit)));
  return a;
}

static struct json_object *
json_ids (const struct pullback_forget_result *res, bool keep)
{
  struct json_object *a = json_object_new_array ();
  size_t i;

  for (i = 0; i < res->n; i++)
    if (res->items[i].keep == keep)
      json_object_array_add (a, json_object_new_int64 (res->items[i].point));
  return a;
}

static void
print_forget_json (const struct forget_args *a,
                   const struct pullback_forget_result *res,
                   const struct pullback_gc_result *gc)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *pts = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "dry_run", json_object_new_boolean (a->dry_run));
  for (i = 0; i < res->n; i++) {
    const struct pullback_forget_item *it = &res->items[i];
    struct json_object *p = json_object_new_object ();
    json_object_object_add (p, "point", json_object_new_int64 (it->point));
    json_set_str (p, "vm", it->vm);
    json_object_object_add (p, "finished", json_time (it->finished));
    json_set_str (p, "action", it->keep ? "keep" : "remove");
    json_object_object_add (p, "reasons", json_reasons (it->keep ? it->reasons : 0));
    json_object_object_add (p, "retained_as_base",
                            json_object_new_boolean (it->retained_as_base));
    json_object_array_add (pts, p);
  }
  json_object_object_add (o, "points", pts);
  json_object_object_add (o, "kept", json_ids (res, true));
  json_object_object_add (o, "removed", json_ids (res, false));
  json_object_object_add (o, "gc", gc ? json_gc (gc) : NULL);
  print_json (o);
}

static void
print_item (const struct pullback_forget_item *it)
{
  char when[32];
  unsigned bit;
  bool first = true;

  format_time (it->finished, when, sizeof when);
  printf ("%-6s point %" PRId64 "  %s  %s ", it->keep ? "keep" : "remove",
          it->point, it->vm, when);
  for (bit = 1; it->keep && bit <= PULLBACK_KEEP_IN_USE; bit <<= 1)
    if ((it->reasons & bit) && reason_name (bit)) {
      printf ("%s%s", first ? " " : ", ", reason_name (bit));
      first = false;
    }
  if (it->retained_as_base)
    printf (" (its data stays as the base of the VM's next incremental)");
  printf ("\n");
}

static void
print_forget_text (const struct forget_args *a,
                   const struct pullback_forget_result *res,
                   const struct pullback_gc_result *gc)
{
  size_t i, removed = 0;

  for (i = 0; i < res->n; i++) {
    print_item (&res->items[i]);
    removed += !res->items[i].keep;
  }
  printf ("%s%zu of %zu %s\n", a->dry_run ? "dry run: would remove " :
          "removed ", removed, res->n, plural (res->n, "point", "points"));
  if (gc)
    print_gc_text (gc);
}

static int
do_forget (const struct cli *c, const struct forget_args *a)
{
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct pullback_forget_opts o = { .vm = a->vm, .rules = a->rules,
                                    .dry_run = a->dry_run };
  struct pullback_forget_result *res = NULL;
  struct pullback_gc_result gc;

  if ((r = open_repo (a->repo, &a->key)) == NULL ||
      (a->point[0] && pullback_resolve_point (r, a->point, a->vm, &o.point) == -1) ||
      pullback_forget (r, &o, &res) == -1)
    return -1;
  if (a->gc && pullback_gc (r, a->dry_run, &gc) == -1) {
    pullback_forget_result_free (res);
    pb_prefix_error ("the points were removed, but gc failed");
    return -1;
  }
  if (c->json)
    print_forget_json (a, res, a->gc ? &gc : NULL);
  else if (!c->quiet)
    print_forget_text (a, res, a->gc ? &gc : NULL);
  pullback_forget_result_free (res);
  return 0;
}

static int
run_forget (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct forget_args a = { .rules = { PULLBACK_KEEP_UNSET, PULLBACK_KEEP_UNSET,
      PULLBACK_KEEP_UNSET, PULLBACK_KEEP_UNSET, PULLBACK_KEEP_UNSET,
      PULLBACK_KEEP_UNSET } };
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, forget_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if (a.point[0] && pullback_keep_rules_any (&a.rules))
    return usage_error (&c, "--point removes one point: it cannot be "
                        "combined with --keep-* rules");
  if (!a.point[0] && !pullback_keep_rules_any (&a.rules))
    return usage_error (&c, "give --point ID or at least one --keep-* rule "
                        "(--keep-last 0 removes every point)");
  return do_forget (&c, &a) == -1 ? report_error (&c) : 0;
}

static const struct option forget_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTION_REPO, OPTIONS_KEY, OPTION_VM, OPTION_POINT,
  { "keep-last", required_argument, NULL, OPT_KEEP_LAST },
  { "keep-hourly", required_argument, NULL, OPT_KEEP_HOURLY },
  { "keep-daily", required_argument, NULL, OPT_KEEP_DAILY },
  { "keep-weekly", required_argument, NULL, OPT_KEEP_WEEKLY },
  { "keep-monthly", required_argument, NULL, OPT_KEEP_MONTHLY },
  { "keep-yearly", required_argument, NULL, OPT_KEEP_YEARLY },
  { "dry-run", no_argument, NULL, OPT_DRY_RUN },
  { "gc", no_argument, NULL, OPT_GC },
  OPTION_END
};

const struct command cmd_forget = {
  .name = "forget",
  .summary = "remove points by retention policy, or one point",
  .synopsis =
  "pullback forget --repo DIR [--vm NAME] --keep-last N [--keep-hourly N]\n"
  "       [--keep-daily N] [--keep-weekly N] [--keep-monthly N]\n"
  "       [--keep-yearly N] [--dry-run] [--gc] [--json]\n"
  "pullback forget --repo DIR --point ID|latest [--vm NAME] [--dry-run] [--gc]",
  .help =
  "Remove the points the policy does not keep, each VM on its own (or only\n"
  "VM NAME's).  A point is kept if any rule keeps it: --keep-last N the N\n"
  "newest; --keep-hourly/daily/weekly/monthly/yearly N the newest point of\n"
  "each of the last N hours/days/ISO weeks/months/years (UTC) that have\n"
  "points.  Protected points are always kept, and so is a point a running\n"
  "backup uses as its base.  At least one rule is required: --keep-last 0\n"
  "alone removes every unprotected point.\n"
  "\n"
  "Removing the newest point of a VM that has a checkpoint hides it (gone\n"
  "from list, show and restore) but keeps its data until the VM's next\n"
  "backup, so that it can still be incremental.  Space is freed by gc\n"
  "(or --gc here).\n"
  "\n"
  "Options:\n"
  "  --repo DIR          the repository\n"
  HELP_KEY
  "  --vm NAME           only this VM's points\n"
  "  --point ID|latest   remove this one point (exit 15 if protected)\n"
  "  --keep-last N ...   the rules, N >= 0\n"
  "  --dry-run           show what would be removed; change nothing\n"
  "  --gc                run gc afterwards\n"
  "  --json              print the result as one JSON object\n"
  "  --quiet             print nothing on success\n"
  "  --help              show this help\n"
  "\n"
  "Example:\n"
  "  pullback forget --repo /srv/backup/repo --keep-daily 7 --keep-weekly 4 \\\n"
  "      --keep-monthly 12 --gc\n",
  .longopts = forget_options,
  .run = run_forget,
};

/* ---- protect / unprotect ---- */

struct protect_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo, *vm;
  char point[POINT_SPEC_MAX];
};

static int
protect_option (void *ctx, int opt, const char *arg)
{
  struct protect_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_VM: return option_once (&a->vm, "--vm", arg);
  case OPT_POINT: return parse_point_spec (arg, a->point);
  }
  return unhandled_option (opt);
}

static int
do_protect (const struct cli *c, const struct protect_args *a, bool on)
{
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct json_object *o;
  int64_t id;

  if ((r = open_repo (a->repo, &a->key)) == NULL ||
      pullback_resolve_point (r, a->point, a->vm, &id) == -1 ||
      pullback_protect (r, id, on) == -1)
    return -1;
  if (c->json) {
    o = json_object_new_object ();
    json_object_object_add (o, "point", json_object_new_int64 (id));
    json_object_object_add (o, "protected", json_object_new_boolean (on));
    print_json (o);
  } else if (!c->quiet)
    printf ("point %" PRId64 " is %s\n", id, on ? "protected" : "not protected");
  return 0;
}

static int
run_protect_common (const struct command *cmd, int argc, char **argv, bool on)
{
  struct cli c = { 0 };
  struct protect_args a = { 0 };
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, protect_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if (!a.point[0])
    return usage_error (&c, "missing --point");
  return do_protect (&c, &a, on) == -1 ? report_error (&c) : 0;
}

static int
run_protect (const struct command *cmd, int argc, char **argv)
{
  return run_protect_common (cmd, argc, argv, true);
}

static int
run_unprotect (const struct command *cmd, int argc, char **argv)
{
  return run_protect_common (cmd, argc, argv, false);
}

static const struct option protect_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTION_REPO, OPTIONS_KEY, OPTION_VM,
  OPTION_POINT, OPTION_END
};

const struct command cmd_protect = {
  .name = "protect",
  .summary = "shield a point from every removal",
  .synopsis = "pullback protect --repo DIR --point ID|latest [--vm NAME] [--json]",
  .help =
  "Protect a point: forget keeps it whatever the rules say, and refuses to\n"
  "remove it by --point (exit 15) until it is unprotected.\n"
  "\n"
  "Options:\n"
  "  --repo DIR          the repository\n"
  HELP_KEY
  "  --point ID|latest   the point ('latest' with --vm: that VM's newest)\n"
  "  --vm NAME           the VM the point must belong to\n"
  "  --json              print the result as one JSON object\n"
  "  --help              show this help\n",
  .longopts = protect_options,
  .run = run_protect,
};

const struct command cmd_unprotect = {
  .name = "unprotect",
  .summary = "let a protected point be removed again",
  .synopsis = "pullback unprotect --repo DIR --point ID|latest [--vm NAME] [--json]",
  .help =
  "Remove the protection of a point (see pullback protect).\n"
  "\n"
  "Options:\n"
  "  --repo DIR          the repository\n"
  HELP_KEY
  "  --point ID|latest   the point\n"
  "  --vm NAME           the VM the point must belong to\n"
  "  --json              print the result as one JSON object\n"
  "  --help              show this help\n",
  .longopts = protect_options,
  .run = run_unprotect,
};
