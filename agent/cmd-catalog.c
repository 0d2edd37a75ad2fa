/* pullback - agent/cmd-catalog.c: 'pullback catalog rebuild'.
 *
 * The catalog (catalog.db) is an index over the store; when it is lost or
 * damaged, 'catalog rebuild' makes a new one from the point records and
 * map trees in the store (reader/rebuild.c).  Points whose trees are not
 * complete are named and left out; the command then exits 7, since what
 * they held is lost, but the catalog is rebuilt with every point that can
 * be restored.  The old file is kept, never deleted by us.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "cleanup.h"

struct rebuild_args {
  struct key_args key;
  const char *repo;
  bool force;
};

static int
rebuild_option (void *ctx, int opt, const char *arg)
{
  struct rebuild_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_FORCE: a->force = true; return 0;
  }
  return unhandled_option (opt);
}

static void
print_rebuild_json (const struct pullback_rebuild_result *res)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *skipped = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "ok", json_object_new_boolean (res->nskipped == 0));
  json_set_u64 (o, "records", res->records);
  json_set_u64 (o, "records_ignored", res->records_ignored);
  json_set_u64 (o, "points", res->points);
  json_set_u64 (o, "parents_dropped", res->parents_dropped);
  for (i = 0; i < res->nskipped; i++) {
    struct json_object *s = json_object_new_object ();
    json_object_object_add (s, "point",
                            json_object_new_int64 (res->skipped[i].point));
    json_set_str (s, "why", res->skipped[i].why);
    json_object_array_add (skipped, s);
  }
  json_object_object_add (o, "skipped", skipped);
  json_set_str (o, "old_catalog", res->old_catalog);
  print_json (o);
}

static void
print_rebuild_text (const char *repo, const struct pullback_rebuild_result *res)
{
  size_t i;

  for (i = 0; i < res->nskipped; i++)
    printf ("point %" PRId64 " not rebuilt: %s\n", res->skipped[i].point,
            res->skipped[i].why);
  printf ("rebuilt the catalog of %s: %zu of %zu %s\n", repo, res->points,
          res->records, plural (res->records, "point", "points"));
  if (res->old_catalog)
    printf ("the old catalog is kept as %s\n", res->old_catalog);
  printf ("protection is not kept in the store: protect points again "
          "where needed; run 'pullback verify' next\n");
}

static int
run_rebuild (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct rebuild_args a = { 0 };
  struct pullback_rebuild_result *res = NULL;
  struct store_key *key = NULL;
  struct progress p;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, rebuild_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if (load_key (&a.key, &key) == -1)
    return report_error (&c);
  progress_start (&p, &c, "rebuilding");
  rc = pullback_catalog_rebuild (a.repo, key, a.force, progress_update, &p,
                                 &res);
  progress_end (&p);
  store_key_free (key);
  if (rc == -1)
    return report_error (&c);
  if (c.json)
    print_rebuild_json (res);
  else if (!c.quiet || res->nskipped)
    print_rebuild_text (a.repo, res);
  rc = 0;
  if (res->nskipped) {
    fflush (stdout);
    fprintf (stderr, "pullback: %zu %s could not be rebuilt (damaged or "
             "incomplete in the store)\n", res->nskipped,
             plural (res->nskipped, "point", "points"));
    rc = PB_E_CORRUPT;
  }
  pullback_rebuild_result_free (res);
  return rc;
}

static const struct option rebuild_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTION_REPO, OPTIONS_KEY,
  { "force", no_argument, NULL, OPT_FORCE }, OPTION_END
};

static const struct command catalog_rebuild = {
  .name = "catalog rebuild",
  .summary = "make a new catalog from the store alone",
  .synopsis = "pullback catalog rebuild --repo DIR [--force] [--json]",
  .help =
  "Rebuild DIR/catalog.db from the point records and map trees in the\n"
  "store, after the catalog was lost or damaged.  Every point whose tree\n"
  "is complete (nodes intact, chunks present, content digest matching its\n"
  "record) comes back with its id, VM, parent, checkpoints and disks;\n"
  "the others are named and left out (exit 7).  Chunk contents are not\n"
  "read: run 'pullback verify' afterwards.  Protection is not kept in the\n"
  "store, and forgotten points kept only as a base come back as points.\n"
  "The old catalog file is kept as DIR/catalog.db.old-TIMESTAMP.  Run it\n"
  "while no other pullback command uses the repository.\n"
  "\n"
  "Options:\n"
  "  --repo DIR         the repository\n"
  HELP_KEY
  "  --force            rebuild even if the catalog is intact\n"
  "  --json             print the result as one JSON object\n"
  "  --quiet            no progress, no text on success\n"
  "  --help             show this help\n"
  "\n"
  "Example:\n"
  "  pullback catalog rebuild --repo /srv/backup/repo\n",
  .longopts = rebuild_options,
  .run = run_rebuild,
};

static int
run_catalog (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { .cmd = cmd };

  if (argc < 2 || strcmp (argv[1], "--help") == 0 ||
      strcmp (argv[1], "-h") == 0) {
    if (argc < 2)
      return usage_error (&c, "missing what to do (rebuild)");
    print_help (cmd);
    return 0;
  }
  if (strcmp (argv[1], "rebuild") == 0)
    return catalog_rebuild.run (&catalog_rebuild, argc - 1, argv + 1);
  return usage_error (&c, "unknown catalog command '%s'", argv[1]);
}

static const struct option catalog_options[] = { OPTION_HELP, OPTION_END };

const struct command cmd_catalog = {
  .name = "catalog",
  .summary = "repair the catalog (catalog rebuild)",
  .synopsis = "pullback catalog rebuild ...",
  .help =
  "The catalog is an index over the store.  Commands:\n"
  "  catalog rebuild --repo DIR      make a new catalog from the store\n"
  "'pullback catalog rebuild --help' describes it.\n",
  .longopts = catalog_options,
  .run = run_catalog,
};
