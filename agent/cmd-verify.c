/* pullback - agent/cmd-verify.c: 'pullback verify', check the repository.
 *
 * Reads back every chunk the points need and checks it against its id,
 * and runs the catalog's integrity check.  The answer an administrator
 * needs from a problem is which restores it breaks, so each damaged chunk
 * is printed with the points that need it.  A verify that ran and found
 * problems exits 7 (PB_E_CORRUPT); with --json its result object is the
 * only output, with "ok": false.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct verify_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo;
  char point[POINT_SPEC_MAX];  /* "" = every point */
  double sample;              /* 0 = read every chunk */
  bool have_seed;
  uint64_t seed;
};

/* --sample PERCENT: a number in (0, 100], decimals allowed. */
static int
parse_sample (const char *arg, double *out)
{
  char *end;

  errno = 0;
  *out = strtod (arg, &end);
  if (errno || end == arg || *end || !(*out > 0 && *out <= 100)) {
    set_error (PB_E_USAGE, 0, "--sample: '%s' is not a percentage in "
               "(0, 100]", arg);
    return -1;
  }
  return 0;
}

/* --seed N: a decimal unsigned 64-bit integer. */
static int
parse_seed (const char *arg, uint64_t *out)
{
  char *end;

  errno = 0;
  *out = strtoull (arg, &end, 10);
  if (errno || end == arg || *end || arg[0] == '-') {
    set_error (PB_E_USAGE, 0, "--seed: '%s' is not a non-negative integer",
               arg);
    return -1;
  }
  return 0;
}

static int
verify_option (void *ctx, int opt, const char *arg)
{
  struct verify_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_POINT: return parse_point_spec (arg, a->point);
  case OPT_SAMPLE: return parse_sample (arg, &a->sample);
  case OPT_SEED: a->have_seed = true; return parse_seed (arg, &a->seed);
  }
  return unhandled_option (opt);
}

static bool
verify_ok (const struct pullback_verify_result *res)
{
  return res->nproblems == 0 && res->catalog_ok;
}

static struct json_object *
json_problem (const struct pullback_verify_problem *pb)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *points = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "chunk", json_hex (pb->chunk, sizeof pb->chunk));
  json_set_str (o, "what", pb->what);
  json_object_object_add (o, "quarantined",
                          json_object_new_boolean (pb->quarantined));
  for (i = 0; i < pb->npoints; i++)
    json_object_array_add (points, json_object_new_int64 (pb->points[i]));
  json_object_object_add (o, "points", points);
  return o;
}

static void
print_verify_json (const struct verify_args *a,
                   const struct pullback_verify_result *res)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *problems = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "ok", json_object_new_boolean (verify_ok (res)));
  json_set_u64 (o, "points_checked", res->points_checked);
  json_set_u64 (o, "chunks_checked", res->chunks_checked);
  json_set_u64 (o, "bytes_checked", res->bytes_checked);
  json_set_u64 (o, "chunks_not_read", res->chunks_not_read);
  json_object_object_add (o, "sample_percent",
                          json_object_new_double (a->sample ? a->sample : 100));
  if (a->sample)
    json_set_u64 (o, "seed", a->seed);
  json_object_object_add (o, "catalog_ok",
                          json_object_new_boolean (res->catalog_ok));
  for (i = 0; i < res->nproblems; i++)
    json_object_array_add (problems, json_problem (&res->problems[i]));
  json_object_object_add (o, "problems", problems);
  print_json (o);
}

/* "chunk <hex>: missing; needed by points 3, 4" */
static void
print_problem (const struct pullback_verify_problem *pb)
{
  char hex[2 * PULLBACK_DIGEST_LEN + 1];
  size_t i;

  hex_encode (pb->chunk, sizeof pb->chunk, hex);
  printf ("chunk %s: %s%s", hex, pb->what,
          pb->quarantined ? " (moved to quarantine)" : "");
  if (pb->npoints > 0)
    printf ("; needed by %s ", plural (pb->npoints, "point", "points"));
  for (i = 0; i < pb->npoints; i++)
    printf ("%s%" PRId64, i ? ", " : "", pb->points[i]);
  printf ("\n");
}

static void
print_verify_text (const struct verify_args *a,
                   const struct pullback_verify_result *res)
{
  size_t i;

  for (i = 0; i < res->nproblems; i++)
    print_problem (&res->problems[i]);
  if (!res->catalog_ok)
    printf ("catalog: integrity check failed\n");
  if (a->sample)
    printf ("sample of %g%% (seed %" PRIu64 "): %" PRIu64 " more %s found "
            "present, not read\n", a->sample, a->seed, res->chunks_not_read,
            plural (res->chunks_not_read, "chunk", "chunks"));
  printf ("verified %zu %s, %" PRIu64 " %s (%" PRIu64 " bytes): %s\n",
          res->points_checked, plural (res->points_checked, "point", "points"),
          res->chunks_checked, plural (res->chunks_checked, "chunk", "chunks"),
          res->bytes_checked, verify_ok (res) ? "OK" : "FAILED");
}

/* The failure message on stderr, whatever the output mode. */
static int
verify_failed (const struct pullback_verify_result *res)
{
  /* The problems on stdout come first when both go to the same log. */
  fflush (stdout);
  fprintf (stderr, "pullback: verification failed: %zu %s%s\n",
           res->nproblems, plural (res->nproblems, "problem", "problems"),
           res->catalog_ok ? "" : ", catalog integrity check failed");
  return PB_E_CORRUPT;
}

static int
do_verify (const struct cli *c, const struct verify_args *a,
           struct pullback_verify_result **res)
{
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct pullback_verify_opts o = { .sample_percent = a->sample,
                                    .seed = a->seed };
  struct progress p;
  int ret;

  if ((r = open_repo (a->repo, &a->key)) == NULL)
    return -1;
  if (a->point[0] && pullback_resolve_point (r, a->point, NULL, &o.point) == -1)
    return -1;
  progress_start (&p, c, "verifying");
  ret = pullback_verify (r, &o, progress_update, &p, res);
  progress_end (&p);
  return ret;
}

static int
run_verify (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct verify_args a = { 0 };
  struct pullback_verify_result *res = NULL;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, verify_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if (a.have_seed && a.sample == 0)
    return usage_error (&c, "--seed needs --sample");
  /* A fresh seed per run sweeps the store over successive runs; it is
   * printed so that a run can be repeated. */
  if (a.sample && !a.have_seed &&
      getrandom (&a.seed, sizeof a.seed, 0) != sizeof a.seed)
    a.seed = (uint64_t) time (NULL) ^ (uint64_t) getpid () << 32;

  if (do_verify (&c, &a, &res) == -1)
    return report_error (&c);
  if (c.json)
    print_verify_json (&a, res);
  else
    print_verify_text (&a, res);
  rc = verify_ok (res) ? 0 : verify_failed (res);
  pullback_verify_result_free (res);
  return rc;
}

static const struct option verify_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO, OPTIONS_KEY, OPTION_POINT,
  { "sample", required_argument, NULL, OPT_SAMPLE },
  { "seed", required_argument, NULL, OPT_SEED },
  OPTION_END
};

const struct command cmd_verify = {
  .name = "verify",
  .summary = "check that every chunk the points need is present and intact",
  .synopsis = "pullback verify --repo DIR [--point ID|latest]\n"
  "                [--sample PERCENT [--seed N]] [--json]",
  .help =
  "Read back every chunk and map node the points need (or only those one\n"
  "point needs) and check each against its id; run the catalog's integrity\n"
  "check.  Each problem is listed with the points whose restore it breaks.\n"
  "Exits 7 if anything is wrong.\n"
  "\n"
  "Options:\n"
  "  --repo DIR         the repository\n"
  HELP_KEY
  "  --point ID|latest  only what this point needs ('latest': the newest\n"
  "                     point of any VM); default: every point\n"
  "  --sample PERCENT   read the contents of about PERCENT (0 to 100) of\n"
  "                     the chunks, a different share each run; the others\n"
  "                     are still found present, map nodes all read\n"
  "  --seed N           choose the sample with seed N (repeat a run)\n"
  "  --json             print the result as one JSON object\n"
  "  --help             show this help\n"
  "\n"
  "Example:\n"
  "  pullback verify --repo /srv/backup/repo\n"
  "  pullback verify --repo /srv/backup/repo --sample 5    # nightly\n",
  .longopts = verify_options,
  .run = run_verify,
};
