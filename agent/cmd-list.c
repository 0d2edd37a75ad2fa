/* pullback - agent/cmd-list.c: 'pullback list' and 'pullback show'.
 *
 * Read-only views of the catalog: the table of points (of one VM or of
 * all), and the details of one point with the chain of points from its
 * full backup down to it, which is what a restore of that point depends
 * on.  The JSON point object is shared with output.c's json_point so both
 * commands describe a point identically.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct view_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo, *vm;
  char point[POINT_SPEC_MAX];  /* "" if --point was not given */
};

static int
view_option (void *ctx, int opt, const char *arg)
{
  struct view_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_VM: return option_once (&a->vm, "--vm", arg);
  case OPT_POINT: return parse_point_spec (arg, a->point);
  }
  return unhandled_option (opt);
}

/* ---- list ---- */

/* Column widths of the variable-width fields of the table. */
struct columns {
  int id, vm, parent, checkpoint;
};

static int
id_width (int64_t id)
{
  return snprintf (NULL, 0, "%" PRId64, id);
}

static void
measure (struct catalog_point **pts, size_t n, struct columns *w)
{
  size_t i;

  *w = (struct columns) { .id = 2, .vm = 2, .parent = 6, .checkpoint = 10 };
  for (i = 0; i < n; i++) {
    w->id = MAX (w->id, id_width (pts[i]->id));
    w->vm = MAX (w->vm, (int) strlen (pts[i]->vm));
    w->parent = MAX (w->parent, id_width (pts[i]->parent));
    if (pts[i]->checkpoint)
      w->checkpoint = MAX (w->checkpoint, (int) strlen (pts[i]->checkpoint));
  }
}

/* "vda:1.0G,vdb:20.0G" into a malloc'd string. */
static char *
disks_summary (const struct catalog_point *p)
{
  char *buf = NULL, size[HUMAN_SIZE_MAX];
  size_t len, i;
  FILE *f = open_memstream (&buf, &len);

  if (f == NULL)
    return NULL;
  for (i = 0; i < p->ndisks; i++)
    fprintf (f, "%s%s:%s", i ? "," : "", p->disks[i].name,
             human_size (p->disks[i].size, true, size));
  fclose (f);
  return buf;
}

static void
print_row (const struct catalog_point *p, const struct columns *w)
{
  CLEANUP_FREE char *disks = disks_summary (p);
  char parent[24] = "-", finished[32];

  if (p->parent > 0)
    snprintf (parent, sizeof parent, "%" PRId64, p->parent);
  format_time (p->finished, finished, sizeof finished);
  printf ("%*" PRId64 "  %-*s  %-11s  %*s  %-*s  %-20s  %s\n",
          w->id, p->id, w->vm, p->vm, p->mode, w->parent, parent,
          w->checkpoint, p->checkpoint ? p->checkpoint : "-", finished,
          disks ? disks : "?");
}

static void
print_table (const struct view_args *a, struct catalog_point **pts, size_t n)
{
  struct columns w;
  size_t i;

  if (n == 0) {
    if (a->vm)
      printf ("no points of VM %s\n", a->vm);
    else
      printf ("no points\n");
    return;
  }
  measure (pts, n, &w);
  printf ("%*s  %-*s  %-11s  %*s  %-*s  %-20s  %s\n", w.id, "ID", w.vm, "VM",
          "MODE", w.parent, "PARENT", w.checkpoint, "CHECKPOINT", "FINISHED",
          "DISKS");
  for (i = 0; i < n; i++)
    print_row (pts[i], &w);
}

static void
print_points_json (struct catalog_point **pts, size_t n)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *arr = json_object_new_array ();
  size_t i;

  for (i = 0; i < n; i++)
    json_object_array_add (arr, json_point (pts[i]));
  json_object_object_add (o, "points", arr);
  print_json (o);
}

static int
run_list (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct view_args a = { 0 };
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct catalog_point **pts = NULL;
  size_t n = 0;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, view_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");

  r = open_repo (a.repo, &a.key);
  if (r == NULL || pullback_list_points (r, a.vm, &pts, &n) == -1)
    return report_error (&c);
  if (c.json)
    print_points_json (pts, n);
  else
    print_table (&a, pts, n);
  catalog_points_free (pts, n);
  return 0;
}

/* ---- show ---- */

static int
append_id (int64_t **chain, size_t *n, int64_t id)
{
  int64_t *ids = realloc (*chain, (*n + 1) * sizeof *ids);

  if (ids == NULL) {
    set_error (PB_E_FAIL, 0, "out of memory");
    return -1;
  }
  *chain = ids;
  ids[(*n)++] = id;
  return 0;
}

/* The parent of point CHILD.  A parent that is missing or not older than
 * its child means a damaged catalog, never a reason to loop. */
static struct catalog_point *
get_parent (struct pullback_repo *r, int64_t child, int64_t parent)
{
  struct catalog_point *q = NULL;

  if (parent < child)
    q = pullback_get_point (r, parent);
  if (q == NULL && (parent >= child || pb_get_errclass () == PB_E_NOTFOUND))
    set_error (PB_E_CORRUPT, 0, "point %" PRId64 ": parent point %" PRId64
               " is missing from the catalog", child, parent);
  return q;
}

/* The ids from P up to its full backup (P first). */
static int
point_chain (struct pullback_repo *r, const struct catalog_point *p,
             int64_t **chain, size_t *n)
{
  int64_t child = p->id, parent = p->parent;
  struct catalog_point *q;

  *chain = NULL;
  *n = 0;
  if (append_id (chain, n, child) == -1)
    return -1;
  while (parent > 0) {
    if ((q = get_parent (r, child, parent)) == NULL)
      return -1;
    child = parent;
    parent = q->parent;
    catalog_point_free (q);
    if (append_id (chain, n, child) == -1)
      return -1;
  }
  return 0;
}

static void
print_chain_text (const int64_t *chain, size_t n)
{
  size_t i;

  printf ("  chain: ");
  for (i = n; i-- > 0;)
    printf ("%" PRId64 "%s", chain[i], i ? " -> " : "\n");
}

static void
print_disk_text (const struct catalog_disk *d)
{
  char size[HUMAN_SIZE_MAX], cs[HUMAN_SIZE_MAX];
  char rd[HUMAN_SIZE_MAX], nw[HUMAN_SIZE_MAX];
  char hex[2 * CATALOG_ID_LEN + 1];

  hex_encode (d->digest, sizeof d->digest, hex);
  printf ("  disk %s\n", d->name);
  printf ("    size: %s (%" PRIu64 " bytes)\n",
          human_size (d->size, false, size), d->size);
  printf ("    chunk size: %s\n", human_size (d->chunk_size, false, cs));
  printf ("    digest: %s\n", hex);
  printf ("    read: %s, stored: %s, changed chunks: %" PRIu64 "\n",
          human_size (d->bytes_read, false, rd),
          human_size (d->bytes_new, false, nw), d->chunks_changed);
}

static void
print_point_text (const struct catalog_point *p, const int64_t *chain,
                  size_t n)
{
  char started[32], finished[32];
  size_t i;

  format_time (p->started, started, sizeof started);
  format_time (p->finished, finished, sizeof finished);
  printf ("point %" PRId64 "\n", p->id);
  printf ("  vm: %s\n  mode: %s\n", p->vm, p->mode);
  if (p->parent > 0)
    printf ("  parent: %" PRId64 "\n", p->parent);
  printf ("  checkpoint: %s\n", p->checkpoint ? p->checkpoint : "-");
  printf ("  since: %s\n", p->since ? p->since : "-");
  printf ("  started: %s\n  finished: %s\n", started, finished);
  print_chain_text (chain, n);
  for (i = 0; i < p->ndisks; i++)
    print_disk_text (&p->disks[i]);
}

static void
print_point_json (const struct catalog_point *p, const int64_t *chain,
                  size_t n)
{
  struct json_object *o = json_point (p);
  struct json_object *arr = json_object_new_array ();
  size_t i;

  for (i = n; i-- > 0;)
    json_object_array_add (arr, json_object_new_int64 (chain[i]));
  json_object_object_add (o, "chain", arr);
  print_json (o);
}

static int
run_show (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct view_args a = { 0 };
  CLEANUP_REPO struct pullback_repo *r = NULL;
  CLEANUP_POINT struct catalog_point *p = NULL;
  CLEANUP_FREE int64_t *chain = NULL;
  size_t n;
  int64_t id;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, view_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if (a.point[0] == '\0')
    return usage_error (&c, "missing --point");

  if ((r = open_repo (a.repo, &a.key)) == NULL ||
      pullback_resolve_point (r, a.point, a.vm, &id) == -1 ||
      (p = pullback_get_point (r, id)) == NULL ||
      point_chain (r, p, &chain, &n) == -1)
    return report_error (&c);
  if (c.json)
    print_point_json (p, chain, n);
  else
    print_point_text (p, chain, n);
  return 0;
}

static const struct option list_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO, OPTIONS_KEY, OPTION_VM, OPTION_END
};

static const struct option show_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO, OPTIONS_KEY, OPTION_VM, OPTION_POINT, OPTION_END
};

const struct command cmd_list = {
  .name = "list",
  .summary = "list the backup points",
  .synopsis = "pullback list --repo DIR [--vm NAME] [--json]",
  .help =
  "List the points in the repository, oldest first: id, VM, mode, parent,\n"
  "checkpoint, when the backup finished (UTC) and each disk with its size.\n"
  "\n"
  "Options:\n"
  "  --repo DIR  the repository\n"
  HELP_KEY
  "  --vm NAME   only the points of this VM\n"
  "  --json      print {\"points\": [...]} on stdout\n"
  "  --help      show this help\n"
  "\n"
  "Example:\n"
  "  pullback list --repo /srv/backup/repo --vm web01\n",
  .longopts = list_options,
  .run = run_list,
};

const struct command cmd_show = {
  .name = "show",
  .summary = "show one point, its disks and its chain",
  .synopsis = "pullback show --repo DIR --point ID|latest [--vm NAME] [--json]",
  .help =
  "Show a point: its VM, mode, checkpoints, times, every disk with its\n"
  "content digest, and the chain of points from the full backup to it.\n"
  "\n"
  "Options:\n"
  "  --repo DIR             the repository\n"
  HELP_KEY
  "  --point ID|latest      the point; 'latest' is the newest point (of the\n"
  "                         VM given with --vm, else of any VM)\n"
  "  --vm NAME              the point must belong to this VM\n"
  "  --json                 print the point object with \"chain\"\n"
  "  --help                 show this help\n"
  "\n"
  "Example:\n"
  "  pullback show --repo /srv/backup/repo --point latest --vm web01\n",
  .longopts = show_options,
  .run = run_show,
};
