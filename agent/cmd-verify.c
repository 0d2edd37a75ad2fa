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

#include <inttypes.h>
#include <stdio.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct verify_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo;
  char point[POINT_SPEC_MAX];  /* "" = every point */
};

static int
verify_option (void *ctx, int opt, const char *arg)
{
  struct verify_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_POINT: return parse_point_spec (arg, a->point);
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
  for (i = 0; i < pb->npoints; i++)
    json_object_array_add (points, json_object_new_int64 (pb->points[i]));
  json_object_object_add (o, "points", points);
  return o;
}

static void
print_verify_json (const struct pullback_verify_result *res)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *problems = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "ok", json_object_new_boolean (verify_ok (res)));
  json_set_u64 (o, "points_checked", res->points_checked);
  json_set_u64 (o, "chunks_checked", res->chunks_checked);
  json_set_u64 (o, "bytes_checked", res->bytes_checked);
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
  printf ("chunk %s: %s", hex, pb->what);
  if (pb->npoints > 0)
    printf ("; needed by %s ", plural (pb->npoints, "point", "points"));
  for (i = 0; i < pb->npoints; i++)
    printf ("%s%" PRId64, i ? ", " : "", pb->points[i]);
  printf ("\n");
}

static void
print_verify_text (const struct pullback_verify_result *res)
{
  size_t i;

  for (i = 0; i < res->nproblems; i++)
    print_problem (&res->problems[i]);
  if (!res->catalog_ok)
    printf ("catalog: integrity check failed\n");
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
  struct progress p;
  int64_t point = 0;
  int ret;

  if ((r = open_repo (a->repo, &a->key)) == NULL)
    return -1;
  if (a->point[0] && pullback_resolve_point (r, a->point, NULL, &point) == -1)
    return -1;
  progress_start (&p, c, "verifying");
  ret = pullback_verify (r, point, progress_update, &p, res);
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

  if (do_verify (&c, &a, &res) == -1)
    return report_error (&c);
  if (c.json)
    print_verify_json (res);
  else
    print_verify_text (res);
  rc = verify_ok (res) ? 0 : verify_failed (res);
  pullback_verify_result_free (res);
  return rc;
}

static const struct option verify_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO, OPTIONS_KEY, OPTION_POINT, OPTION_END
};

const struct command cmd_verify = {
  .name = "verify",
  .summary = "check that every chunk the points need is present and intact",
  .synopsis = "pullback verify --repo DIR [--point ID|latest] [--json]",
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
  "  --json             print the result as one JSON object\n"
  "  --help             show this help\n"
  "\n"
  "Example:\n"
  "  pullback verify --repo /srv/backup/repo\n",
  .longopts = verify_options,
  .run = run_verify,
};
