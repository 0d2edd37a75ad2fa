/* pullback - agent/cmd-restore.c: 'pullback restore', rebuild one disk.
 *
 * --vm is required, not optional: during a disaster recovery the point id
 * is often typed by hand, and restoring another VM's disk over the wrong
 * target is the mistake this prevents (pullback_resolve_point refuses a
 * point of another VM).  The library writes beside the target and renames
 * at the end, so an interrupted restore never leaves a half image.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct restore_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo, *vm, *disk, *to, *format;
  char point[POINT_SPEC_MAX];  /* "" if --point was not given */
  bool force;
  const char *threads_arg;    /* --threads N */
  unsigned threads;           /* 0: the library's default */
};

static int
check_format (const char **slot, const char *arg)
{
  if (strcmp (arg, "raw") != 0 && strcmp (arg, "qcow2") != 0) {
    set_error (PB_E_USAGE, 0, "invalid --format '%s' (expected raw or qcow2)",
               arg);
    return -1;
  }
  return option_once (slot, "--format", arg);
}

static int
restore_option (void *ctx, int opt, const char *arg)
{
  struct restore_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_VM: return option_once (&a->vm, "--vm", arg);
  case OPT_DISK: return option_once (&a->disk, "--disk", arg);
  case OPT_TO: return option_once (&a->to, "--to", arg);
  case OPT_FORMAT: return check_format (&a->format, arg);
  case OPT_FORCE: a->force = true; return 0;
  case OPT_THREADS:
    return option_once (&a->threads_arg, "--threads", arg) == -1 ? -1 :
      parse_threads (arg, &a->threads);
  case OPT_POINT: return parse_point_spec (arg, a->point);
  }
  return unhandled_option (opt);
}

static int
check_required (const struct cli *c, const struct restore_args *a)
{
  if (a->repo == NULL)
    return usage_error (c, "missing --repo");
  if (a->point[0] == '\0')
    return usage_error (c, "missing --point");
  if (a->vm == NULL)
    return usage_error (c, "missing --vm");
  if (a->disk == NULL)
    return usage_error (c, "missing --disk");
  if (a->to == NULL)
    return usage_error (c, "missing --to");
  return 0;
}

static void
print_restore_json (const struct restore_args *a, int64_t point,
                    const struct pullback_restore_result *res)
{
  struct json_object *o = json_object_new_object ();

  json_object_object_add (o, "point", json_object_new_int64 (point));
  json_set_str (o, "vm", a->vm);
  json_set_str (o, "disk", a->disk);
  json_set_str (o, "target", a->to);
  json_set_str (o, "format", a->format);
  json_set_u64 (o, "size", res->size);
  json_set_u64 (o, "bytes_written", res->bytes_written);
  json_set_u64 (o, "bytes_zero", res->bytes_zero);
  json_set_u64 (o, "temp_removed", res->temp_removed);
  json_object_object_add (o, "digest",
                          json_hex (res->digest, sizeof res->digest));
  json_object_object_add (o, "seconds", json_seconds (res->seconds));
  print_json (o);
}

static void
print_restore_text (const struct restore_args *a, int64_t point,
                    const struct pullback_restore_result *res)
{
  char size[HUMAN_SIZE_MAX], wr[HUMAN_SIZE_MAX], zero[HUMAN_SIZE_MAX];
  char hex[2 * PULLBACK_DIGEST_LEN + 1];

  hex_encode (res->digest, sizeof res->digest, hex);
  printf ("restored disk %s of %s from point %" PRId64 " to %s (%s, %s: "
          "%s written, %s zero) in %.1f s\n",
          a->disk, a->vm, point, a->to, a->format,
          human_size (res->size, false, size),
          human_size (res->bytes_written, false, wr),
          human_size (res->bytes_zero, false, zero), res->seconds);
  printf ("digest: %s\n", hex);
  if (res->temp_removed)
    printf ("removed %u temporary %s left beside %s by killed restores\n",
            res->temp_removed, res->temp_removed == 1 ? "image" : "images",
            a->to);
}

static int
do_restore (const struct cli *c, const struct restore_args *a,
            int64_t *point, struct pullback_restore_result *res)
{
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct progress p;
  struct pullback_restore_opts opts = {
    .disk = a->disk, .target = a->to, .format = a->format,
    .force = a->force,
    .threads = a->threads,
    .progress = progress_update, .progress_opaque = &p,
  };
  int ret;

  if ((r = open_repo (a->repo, &a->key)) == NULL ||
      pullback_resolve_point (r, a->point, a->vm, point) == -1)
    return -1;
  opts.point = *point;
  progress_start (&p, c, "restoring");
  ret = pullback_restore (r, &opts, res);
  progress_end (&p);
  return ret;
}

static int
run_restore (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct restore_args a = { 0 };
  struct pullback_restore_result res;
  int64_t point;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, restore_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if ((rc = check_required (&c, &a)) != 0)
    return rc;
  if (a.format == NULL)
    a.format = "raw";

  memset (&res, 0, sizeof res);
  if (do_restore (&c, &a, &point, &res) == -1)
    return report_error (&c);
  if (c.json)
    print_restore_json (&a, point, &res);
  else if (!c.quiet)
    print_restore_text (&a, point, &res);
  return 0;
}

static const struct option restore_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTION_REPO, OPTIONS_KEY, OPTION_VM,
  OPTION_POINT,
  { "disk", required_argument, NULL, OPT_DISK },
  { "to", required_argument, NULL, OPT_TO },
  { "format", required_argument, NULL, OPT_FORMAT },
  { "force", no_argument, NULL, OPT_FORCE },
  { "threads", required_argument, NULL, OPT_THREADS },
  OPTION_END
};

const struct command cmd_restore = {
  .name = "restore",
  .summary = "restore one disk of a point to a file or block device",
  .synopsis =
  "pullback restore --repo DIR --point ID|latest --vm NAME --disk NAME\n"
  "                 --to PATH [--format raw|qcow2] [--force] [--threads N]\n"
  "                 [--json] [--quiet]",
  .help =
  "Rebuild disk NAME of VM NAME as it was at the point.  Every chunk is\n"
  "checked against its id.  A file target is written beside PATH and\n"
  "renamed into place only when complete, so a failure leaves no partial\n"
  "image.  The printed digest equals the point's (see 'pullback show').\n"
  "\n"
  "Options:\n"
  "  --repo DIR          the repository\n"
  HELP_KEY
  "  --point ID|latest   the point; 'latest' is the VM's newest point\n"
  "  --vm NAME           the VM (a point of another VM is refused)\n"
  "  --disk NAME         the disk to restore (e.g. vda)\n"
  "  --to PATH           the target file or block device\n"
  "  --threads N         threads that read, check and decompress chunks\n"
  "                      (1 to 64; default: one per CPU)\n"
  "  --format raw|qcow2  the target image format (default raw)\n"
  "  --force             replace an existing target\n"
  "  --json              print the result as one JSON object\n"
  "  --quiet             no progress line, no text on success\n"
  "  --help              show this help\n"
  "\n"
  "Example:\n"
  "  pullback restore --repo /srv/backup/repo --point latest --vm web01 \\\n"
  "      --disk vda --to /var/lib/libvirt/images/web01-vda.qcow2 "
  "--format qcow2\n",
  .longopts = restore_options,
  .run = run_restore,
};
