/* pullback - agent/cmd-gc.c: 'pullback gc' and 'pullback stats'.
 *
 * gc frees the space of everything no point needs, at once (no grace
 * period): the catalog's reference counts and the pins of running backups
 * say exactly what may go, so nothing is kept "to be safe" and nothing a
 * running backup is about to use is taken.  stats reports what the
 * repository holds and what gc would free.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct gc_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo;
  bool dry_run;
};

static int
gc_option (void *ctx, int opt, const char *arg)
{
  struct gc_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_DRY_RUN: a->dry_run = true; return 0;
  }
  return unhandled_option (opt);
}

struct json_object *
json_gc (const struct pullback_gc_result *g)
{
  struct json_object *o = json_object_new_object ();

  json_object_object_add (o, "dry_run", json_object_new_boolean (g->dry_run));
  json_set_u64 (o, "chunks_deleted", g->chunks_deleted);
  json_set_u64 (o, "nodes_deleted", g->nodes_deleted);
  json_set_u64 (o, "bytes_freed", g->bytes_freed);
  json_set_u64 (o, "in_use", g->in_use);
  json_set_u64 (o, "leases_cleared", g->leases_cleared);
  json_set_u64 (o, "temp_removed", g->temp_removed);
  json_object_object_add (o, "seconds", json_seconds (g->seconds));
  return o;
}

void
print_gc_text (const struct pullback_gc_result *g)
{
  char size[HUMAN_SIZE_MAX];

  printf ("gc: %s %" PRIu64 " %s and %" PRIu64 " map %s, %s, in %.1f s\n",
          g->dry_run ? "would delete" : "deleted", g->chunks_deleted,
          plural (g->chunks_deleted, "chunk", "chunks"), g->nodes_deleted,
          plural (g->nodes_deleted, "node", "nodes"),
          human_size (g->bytes_freed, false, size), g->seconds);
  if (g->in_use)
    printf ("gc: kept %" PRIu64 " unreferenced %s that running backups "
            "are using\n", g->in_use, plural (g->in_use, "object", "objects"));
  if (g->leases_cleared)
    printf ("gc: cleared %" PRIu64 " stale %s of backups that died\n",
            g->leases_cleared, plural (g->leases_cleared, "lease", "leases"));
  if (g->temp_removed)
    printf ("gc: removed %" PRIu64 " temporary %s of interrupted writes\n",
            g->temp_removed, plural (g->temp_removed, "file", "files"));
}

static int
run_gc (const struct command *cmd, int argc, char **argv)
{
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct cli c = { 0 };
  struct gc_args a = { 0 };
  struct pullback_gc_result g;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, gc_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if ((r = open_repo (a.repo, &a.key)) == NULL ||
      pullback_gc (r, a.dry_run, &g) == -1)
    return report_error (&c);
  if (c.json)
    print_json (json_gc (&g));
  else if (!c.quiet)
    print_gc_text (&g);
  return 0;
}

static const struct option gc_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTION_REPO, OPTIONS_KEY,
  { "dry-run", no_argument, NULL, OPT_DRY_RUN },
  OPTION_END
};

const struct command cmd_gc = {
  .name = "gc",
  .summary = "delete every chunk no point needs",
  .synopsis = "pullback gc --repo DIR [--dry-run] [--json]",
  .help =
  "Delete every chunk and map node that no point needs, and free their\n"
  "space now.  Backups may run meanwhile: what they are writing or reusing\n"
  "is pinned and kept.  Leases left by backups that died are cleared.\n"
  "Reads only the catalog, never chunk contents.\n"
  "\n"
  "Options:\n"
  "  --repo DIR   the repository\n"
  HELP_KEY
  "  --dry-run    count what would be deleted; delete nothing\n"
  "  --json       print the result as one JSON object\n"
  "  --quiet      print nothing on success\n"
  "  --help       show this help\n",
  .longopts = gc_options,
  .run = run_gc,
};

/* ---- stats ---- */

static void
print_stats_json (const struct pullback_stats *st)
{
  struct json_object *o = json_object_new_object ();

  json_set_u64 (o, "vms", st->vms);
  json_set_u64 (o, "points", st->points);
  json_set_u64 (o, "logical_bytes", st->logical_bytes);
  json_set_u64 (o, "unique_bytes", st->unique_bytes);
  json_set_u64 (o, "stored_bytes", st->stored_bytes);
  json_set_u64 (o, "chunks", st->chunks);
  json_object_object_add (o, "dedup_ratio",
                          json_object_new_double (st->dedup_ratio));
  json_object_object_add (o, "compression_ratio",
                          json_object_new_double (st->compression_ratio));
  json_set_u64 (o, "reclaimable_chunks", st->reclaimable_chunks);
  json_set_u64 (o, "reclaimable_bytes", st->reclaimable_bytes);
  json_set_u64 (o, "running_backups", st->running_backups);
  print_json (o);
}

static void
print_stats_text (const struct pullback_stats *st)
{
  char a[HUMAN_SIZE_MAX], b[HUMAN_SIZE_MAX], d[HUMAN_SIZE_MAX];

  printf ("points:       %" PRIu64 " of %" PRIu64 " %s\n", st->points,
          st->vms, plural (st->vms, "VM", "VMs"));
  printf ("logical:      %s (virtual size of every disk of every point)\n",
          human_size (st->logical_bytes, false, a));
  printf ("unique data:  %s in %" PRIu64 " chunks (dedup %.1fx)\n",
          human_size (st->unique_bytes, false, b), st->chunks,
          st->dedup_ratio);
  printf ("stored:       %s (compression %.2fx)\n",
          human_size (st->stored_bytes, false, d), st->compression_ratio);
  printf ("reclaimable:  %s in %" PRIu64 " objects (pullback gc)\n",
          human_size (st->reclaimable_bytes, false, a),
          st->reclaimable_chunks);
  if (st->running_backups)
    printf ("running:      %" PRIu64 " %s\n", st->running_backups,
            plural (st->running_backups, "backup", "backups"));
}

static int
run_stats (const struct command *cmd, int argc, char **argv)
{
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct cli c = { 0 };
  struct gc_args a = { 0 };
  struct pullback_stats st;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, gc_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if ((r = open_repo (a.repo, &a.key)) == NULL ||
      pullback_stats (r, &st) == -1)
    return report_error (&c);
  if (c.json)
    print_stats_json (&st);
  else
    print_stats_text (&st);
  return 0;
}

static const struct option stats_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO, OPTIONS_KEY, OPTION_END
};

const struct command cmd_stats = {
  .name = "stats",
  .summary = "what the repository holds, and what gc would free",
  .synopsis = "pullback stats --repo DIR [--json]",
  .help =
  "Points, logical bytes (the virtual size of every disk of every point),\n"
  "unique data (chunks the points need, times the chunk size), stored bytes,\n"
  "dedup and compression ratios, and the bytes gc would free now.\n"
  "\n"
  "Options:\n"
  "  --repo DIR   the repository\n"
  HELP_KEY
  "  --json       print the result as one JSON object\n"
  "  --help       show this help\n",
  .longopts = stats_options,
  .run = run_stats,
};
