/* pullback - agent/cmd-init.c: 'pullback init', create a repository.
 *
 * The chunk size is fixed for the life of a repository (every point's
 * chunk map and digest depend on it), so it is chosen here, once.
 */
#include <config.h>

#include <stdio.h>

#include "agent.h"

struct init_args {
  const char *repo;
  uint32_t chunk_size;        /* 0 = library default */
};

static int
init_option (void *ctx, int opt, const char *arg)
{
  struct init_args *a = ctx;

  switch (opt) {
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_CHUNK_SIZE: return parse_chunk_size (arg, &a->chunk_size);
  }
  return unhandled_option (opt);
}

static void
print_init (const struct cli *c, const char *dir, struct pullback_repo *r)
{
  uint32_t chunk_size = pullback_repo_chunk_size (r);
  struct json_object *o;
  char size[HUMAN_SIZE_MAX];

  if (!c->json) {
    printf ("initialised repository %s (chunk size %s)\n", dir,
            human_size (chunk_size, false, size));
    return;
  }
  o = json_object_new_object ();
  json_set_str (o, "repo", dir);
  json_set_u64 (o, "chunk_size", chunk_size);
  json_set_str (o, "uuid", pullback_repo_uuid (r));
  print_json (o);
}

static int
run_init (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct init_args a = { 0 };
  CLEANUP_REPO struct pullback_repo *r = NULL;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, init_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");

  r = pullback_repo_init (a.repo, a.chunk_size, NULL);
  if (r == NULL)
    return report_error (&c);
  print_init (&c, a.repo, r);
  return 0;
}

static const struct option init_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO,
  { "chunk-size", required_argument, NULL, OPT_CHUNK_SIZE },
  OPTION_END
};

const struct command cmd_init = {
  .name = "init",
  .summary = "create a new repository",
  .synopsis = "pullback init --repo DIR [--chunk-size SIZE] [--json]",
  .help =
  "Create a repository: DIR/catalog.db (the SQLite catalog) and DIR/store\n"
  "(the chunk store).  DIR must not exist or must be empty.\n"
  "\n"
  "Options:\n"
  "  --repo DIR         the repository directory to create\n"
  "  --chunk-size SIZE  deduplication unit, a power of two such as 256K or\n"
  "                     1M (default 256K); fixed for the repository's life\n"
  "  --json             print {\"repo\", \"chunk_size\", \"uuid\"} on stdout\n"
  "  --help             show this help\n"
  "\n"
  "Example:\n"
  "  pullback init --repo /srv/backup/repo --chunk-size 256K\n",
  .longopts = init_options,
  .run = run_init,
};
