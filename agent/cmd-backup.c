/* pullback - agent/cmd-backup.c: 'pullback backup', take a point of a VM.
 *
 * The backup application (libvirt, a vendor's script) has already started
 * the pull-mode backup job and exported each disk over NBD; this command
 * gets the URIs and, for an incremental, the checkpoint the job is based
 * on and the dirty bitmap of each disk.  The command line is checked
 * completely before the repository is even opened, so a mistake never
 * costs a connection to the VM's NBD server.
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

struct backup_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo, *vm, *checkpoint, *since;
  bool fallback_full;
  struct pair_list disks;     /* NAME=URI, in command-line order */
  struct pair_list bitmaps;   /* DISK=BITMAP */
  const char *tls_mode;       /* --tls off|require */
  struct pullback_tls tls;
  const char *retries_arg;    /* --retries N, as given */
  unsigned retries;
  const char *threads_arg;    /* --threads N */
  unsigned threads;           /* 0: the library's default */
  const char *requests_arg;   /* --requests N */
  unsigned requests;          /* 0: the library's default */
  const char *connections_arg;  /* --connections N */
  unsigned connections;       /* 0: the library's default */
};

/* Transient NBD failures are retried this often unless --retries says
 * otherwise: enough to ride out a server restart, few enough that a dead
 * server is reported within about a minute (1 + 2 + 4 s of waiting). */
#define DEFAULT_RETRIES 3
#define MAX_RETRIES 100

static int
retries_option (struct backup_args *a, const char *arg)
{
  char *end;
  unsigned long v;

  if (option_once (&a->retries_arg, "--retries", arg) == -1)
    return -1;
  errno = 0;
  v = strtoul (arg, &end, 10);
  if (errno || *end || arg[0] < '0' || arg[0] > '9' || v > MAX_RETRIES) {
    set_error (PB_E_USAGE, 0, "--retries: '%s' is not a whole number from "
               "0 to %d", arg, MAX_RETRIES);
    return -1;
  }
  a->retries = v;
  return 0;
}

/* The first wait between attempts, in ms: $PULLBACK_RETRY_DELAY_MS (for
 * tests and impatient callers), else the library's default. */
static unsigned
retry_delay_ms (void)
{
  const char *env = getenv ("PULLBACK_RETRY_DELAY_MS");
  char *end;
  unsigned long v;

  if (env == NULL || *env < '0' || *env > '9')
    return 0;
  errno = 0;
  v = strtoul (env, &end, 10);
  return errno || *end || v == 0 || v > 60000 ? 0 : (unsigned) v;
}

/* Each retry is worth a line in the journal: a flaky server or network
 * should be noticed before it fails a backup. */
static void
on_retry (void *opaque, const char *disk, unsigned attempt, unsigned max,
          unsigned delay_ms, const char *error)
{
  (void) opaque;
  warning ("disk '%s': %s; retry %u of %u in %.2f s", disk, error, attempt,
           max, delay_ms / 1000.0);
}

static int
tls_mode (struct backup_args *a, const char *arg)
{
  if (option_once (&a->tls_mode, "--tls", arg) == -1)
    return -1;
  if (strcmp (arg, "off") == 0)
    a->tls.mode = PULLBACK_TLS_OFF;
  else if (strcmp (arg, "require") == 0)
    a->tls.mode = PULLBACK_TLS_REQUIRE;
  else {
    set_error (PB_E_USAGE, 0, "--tls: '%s' is not off or require", arg);
    return -1;
  }
  return 0;
}

static int
backup_option (void *ctx, int opt, const char *arg)
{
  struct backup_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_VM: return option_once (&a->vm, "--vm", arg);
  case OPT_CHECKPOINT: return option_once (&a->checkpoint, "--checkpoint", arg);
  case OPT_SINCE: return option_once (&a->since, "--since", arg);
  case OPT_FALLBACK_FULL: a->fallback_full = true; return 0;
  case OPT_DISK:
    return pair_list_add (&a->disks, "--disk", "NAME=URI", arg);
  case OPT_BITMAP:
    return pair_list_add (&a->bitmaps, "--bitmap", "DISK=BITMAP", arg);
  case OPT_TLS: return tls_mode (a, arg);
  case OPT_TLS_CERTS: return option_once (&a->tls.certs, "--tls-certs", arg);
  case OPT_TLS_PSK: return option_once (&a->tls.psk_file, "--tls-psk", arg);
  case OPT_TLS_USERNAME:
    return option_once (&a->tls.username, "--tls-username", arg);
  case OPT_RETRIES: return retries_option (a, arg);
  case OPT_THREADS:
    return option_once (&a->threads_arg, "--threads", arg) == -1 ? -1 :
      parse_threads (arg, &a->threads);
  case OPT_REQUESTS:
    return option_once (&a->requests_arg, "--requests", arg) == -1 ? -1 :
      parse_count ("--requests", arg, PULLBACK_MAX_REQUESTS, &a->requests);
  case OPT_CONNECTIONS:
    return option_once (&a->connections_arg, "--connections", arg) == -1 ? -1 :
      parse_count ("--connections", arg, PULLBACK_MAX_CONNECTIONS,
                   &a->connections);
  }
  return unhandled_option (opt);
}

/* Mistakes in the command line itself: exit code 2. */
static int
check_syntax (const struct cli *c, const struct backup_args *a)
{
  size_t i;

  if (a->repo == NULL)
    return usage_error (c, "missing --repo");
  if (a->vm == NULL)
    return usage_error (c, "missing --vm");
  if (a->disks.n == 0)
    return usage_error (c, "missing --disk (at least one NAME=URI)");
  for (i = 0; i < a->bitmaps.n; i++)
    if (pair_list_find (&a->disks, a->bitmaps.v[i].name) == NULL)
      return usage_error (c, "--bitmap %s=%s: no --disk named '%s'",
                          a->bitmaps.v[i].name, a->bitmaps.v[i].value,
                          a->bitmaps.v[i].name);
  if (a->bitmaps.n > 0 && a->since == NULL)
    return usage_error (c, "--bitmap needs --since: dirty bitmaps are only "
                        "used by incremental backups");
  return 0;
}

/* The library refuses this too; checking first names the disk before any
 * connection is made.  Exit code 6, like the library's refusal. */
static int
check_bitmaps (const struct cli *c, const struct backup_args *a)
{
  size_t i;

  if (a->since == NULL)
    return 0;
  for (i = 0; i < a->disks.n; i++)
    if (pair_list_find (&a->bitmaps, a->disks.v[i].name) == NULL) {
      set_error (PB_E_BITMAP, 0, "disk '%s' has no --bitmap: an incremental "
                 "backup needs the dirty bitmap of every disk",
                 a->disks.v[i].name);
      return report_error (c);
    }
  return 0;
}

/* The library's view of the disks.  Names and URIs stay owned by A. */
static struct pullback_disk_spec *
disk_specs (const struct backup_args *a)
{
  struct pullback_disk_spec *specs = calloc (a->disks.n, sizeof *specs);
  const struct pair *bitmap;
  size_t i;

  if (specs == NULL) {
    set_error (PB_E_FAIL, 0, "out of memory");
    return NULL;
  }
  for (i = 0; i < a->disks.n; i++) {
    bitmap = pair_list_find (&a->bitmaps, a->disks.v[i].name);
    specs[i].name = a->disks.v[i].name;
    specs[i].uri = a->disks.v[i].value;
    specs[i].bitmap = bitmap ? bitmap->value : NULL;
  }
  return specs;
}

static struct json_object *
json_backup_disk (const struct pullback_disk_result *d)
{
  struct json_object *o = json_object_new_object ();

  json_set_str (o, "name", d->name);
  json_set_u64 (o, "size", d->size);
  json_set_u64 (o, "bytes_read", d->bytes_read);
  json_set_u64 (o, "bytes_new", d->bytes_new);
  json_set_u64 (o, "chunks_total", d->chunks_total);
  json_set_u64 (o, "chunks_read", d->chunks_read);
  json_set_u64 (o, "chunks_zero", d->chunks_zero);
  json_set_u64 (o, "chunks_kept", d->chunks_kept);
  json_set_u64 (o, "chunks_new", d->chunks_new);
  json_set_u64 (o, "retries", d->retries);
  json_set_u64 (o, "connections", d->connections);
  json_set_u64 (o, "chunks_repaired", d->chunks_repaired);
  json_set_u64 (o, "bitmap_mismatches", d->bitmap_mismatches);
  json_object_object_add (o, "digest", json_hex (d->digest, sizeof d->digest));
  return o;
}

static void
print_backup_json (const struct pullback_backup_result *res)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *disks = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "point", json_object_new_int64 (res->point));
  json_set_str (o, "vm", res->vm);
  json_set_str (o, "mode", res->mode);
  json_object_object_add (o, "parent", json_id_or_null (res->parent));
  json_set_str (o, "checkpoint", res->checkpoint);
  json_set_str (o, "since", res->since);
  json_set_str (o, "fallback_reason", res->fallback_reason);
  json_object_object_add (o, "seconds", json_seconds (res->seconds));
  for (i = 0; i < res->ndisks; i++)
    json_object_array_add (disks, json_backup_disk (&res->disks[i]));
  json_object_object_add (o, "disks", disks);
  print_json (o);
}

static void
print_backup_disk (const struct pullback_disk_result *d)
{
  char size[HUMAN_SIZE_MAX], read[HUMAN_SIZE_MAX], added[HUMAN_SIZE_MAX];
  char hex[2 * PULLBACK_DIGEST_LEN + 1];

  hex_encode (d->digest, sizeof d->digest, hex);
  printf ("  %s: %s, read %s, stored %s; chunks %" PRIu64 ": %" PRIu64
          " read, %" PRIu64 " zero, %" PRIu64 " kept, %" PRIu64 " new; "
          "digest %s\n",
          d->name, human_size (d->size, false, size),
          human_size (d->bytes_read, false, read),
          human_size (d->bytes_new, false, added), d->chunks_total,
          d->chunks_read, d->chunks_zero, d->chunks_kept, d->chunks_new, hex);
  if (d->retries > 0)
    printf ("    %" PRIu64 " transient NBD %s retried\n", d->retries,
            plural (d->retries, "failure", "failures"));
  if (d->chunks_repaired > 0)
    printf ("    %" PRIu64 " unchanged %s missing from the store read again "
            "(the store is repaired)\n", d->chunks_repaired,
            plural (d->chunks_repaired, "chunk", "chunks"));
}

static void
print_backup_text (const struct pullback_backup_result *res)
{
  size_t i;

  printf ("point %" PRId64 ": %s backup of %s", res->point, res->mode, res->vm);
  if (res->since)
    printf (" since checkpoint %s", res->since);
  if (res->parent > 0)
    printf (" (parent %" PRId64 ")", res->parent);
  if (res->checkpoint)
    printf (", new checkpoint %s", res->checkpoint);
  printf (", %zu %s in %.1f s\n", res->ndisks,
          plural (res->ndisks, "disk", "disks"), res->seconds);
  for (i = 0; i < res->ndisks; i++)
    print_backup_disk (&res->disks[i]);
}

static int
take_backup (const struct cli *c, const struct backup_args *a,
             struct pullback_backup_result **res)
{
  CLEANUP_REPO struct pullback_repo *r = NULL;
  CLEANUP_FREE struct pullback_disk_spec *specs = disk_specs (a);
  struct progress p;
  struct pullback_backup_opts opts = {
    .vm = a->vm, .disks = specs, .ndisks = a->disks.n,
    .checkpoint = a->checkpoint, .since = a->since,
    .fallback_full = a->fallback_full,
    .progress = progress_update, .progress_opaque = &p,
    .tls = &a->tls,
    .retries = a->retries_arg ? a->retries : DEFAULT_RETRIES,
    .retry_delay_ms = retry_delay_ms (),
    .on_retry = on_retry,
    .threads = a->threads,
    .requests = a->requests,
    .connections = a->connections,
  };
  int ret;

  if (specs == NULL || (r = open_repo (a->repo, &a->key)) == NULL)
    return -1;
  progress_start (&p, c, "backing up");
  ret = pullback_backup (r, &opts, res);
  progress_end (&p);
  return ret;
}

/* Check, back up, print; A's lists are freed by the caller. */
static int
backup_command (const struct cli *c, const struct backup_args *a)
{
  struct pullback_backup_result *res = NULL;
  int rc;

  if ((rc = check_syntax (c, a)) != 0 || (rc = check_bitmaps (c, a)) != 0)
    return rc;
  if (take_backup (c, a, &res) == -1)
    return report_error (c);
  /* The reason says what happened ("... took a full backup instead"):
   * an administrator reading the journal needs it, even with --quiet. */
  if (res->fallback_reason)
    warning ("%s", res->fallback_reason);
  for (size_t i = 0; i < res->ndisks; i++)
    if (res->disks[i].bitmap_mismatches)
      warning ("disk '%s': %" PRIu64 " %s the dirty bitmap called unchanged "
               "differ from the parent point: the bitmap missed writes, so "
               "take a full backup (only chunks missing from the store were "
               "checked)", res->disks[i].name, res->disks[i].bitmap_mismatches,
               res->disks[i].bitmap_mismatches == 1 ? "chunk" : "chunks");
  if (c->json)
    print_backup_json (res);
  else if (!c->quiet)
    print_backup_text (res);
  pullback_backup_result_free (res);
  return 0;
}

static int
run_backup (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct backup_args a = { 0 };
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, backup_option, &a, &first);
  if (rc == OPTS_CONTINUE)
    rc = backup_command (&c, &a);
  pair_list_free (&a.disks);
  pair_list_free (&a.bitmaps);
  return rc;
}

static const struct option backup_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTION_REPO, OPTIONS_KEY, OPTION_VM,
  { "disk", required_argument, NULL, OPT_DISK },
  { "checkpoint", required_argument, NULL, OPT_CHECKPOINT },
  { "since", required_argument, NULL, OPT_SINCE },
  { "bitmap", required_argument, NULL, OPT_BITMAP },
  { "fallback-full", no_argument, NULL, OPT_FALLBACK_FULL },
  { "tls", required_argument, NULL, OPT_TLS },
  { "tls-certs", required_argument, NULL, OPT_TLS_CERTS },
  { "tls-psk", required_argument, NULL, OPT_TLS_PSK },
  { "tls-username", required_argument, NULL, OPT_TLS_USERNAME },
  { "retries", required_argument, NULL, OPT_RETRIES },
  { "threads", required_argument, NULL, OPT_THREADS },
  { "requests", required_argument, NULL, OPT_REQUESTS },
  { "connections", required_argument, NULL, OPT_CONNECTIONS },
  OPTION_END
};

const struct command cmd_backup = {
  .name = "backup",
  .summary = "take a backup point of a VM from its NBD exports",
  .synopsis =
  "pullback backup --repo DIR --vm NAME --disk NAME=URI [--disk NAME=URI...]\n"
  "                [--checkpoint NEW] [--since OLD --bitmap DISK=BITMAP...]\n"
  "                [--fallback-full] [--tls off|require]\n"
  "                [--tls-certs DIR | --tls-psk FILE [--tls-username U]]\n"
  "                [--retries N] [--threads N] [--requests N]\n"
  "                [--connections N]\n"
  "                [--key-file FILE] [--json]\n"
  "                [--quiet]",
  .help =
  "Read every disk of VM NAME from its NBD export and record one point in\n"
  "the repository.  Without --since the backup is full; with --since it is\n"
  "incremental and reads only the blocks in each disk's dirty bitmap.\n"
  "Nothing is recorded unless every disk succeeds.\n"
  "\n"
  "Options:\n"
  "  --repo DIR            the repository\n"
  HELP_KEY
  "  --vm NAME             the VM the point belongs to\n"
  "  --disk NAME=URI       a disk and its NBD URI (repeat for every disk)\n"
  "  --checkpoint NEW      the checkpoint created with this backup job; a\n"
  "                        later --since NEW is based on this point\n"
  "  --since OLD           incremental since checkpoint OLD\n"
  "  --bitmap DISK=BITMAP  the dirty bitmap exported for DISK (needed for\n"
  "                        every disk with --since)\n"
  "  --fallback-full       if the repository does not know OLD, take a full\n"
  "                        backup (with a warning) instead of failing\n"
  "  --tls off|require     TLS with the NBD server: nbds:// URIs always\n"
  "                        require it; 'require' also refuses nbd:// URIs\n"
  "  --tls-certs DIR       X.509: DIR holds ca-cert.pem (and client-cert.pem,\n"
  "                        client-key.pem); the server's certificate is checked\n"
  "  --tls-psk FILE        pre-shared keys, lines 'username:hexkey'\n"
  "  --tls-username U      the PSK user (default: the login name)\n"
  "  --retries N           retry a transient NBD failure (a failed read, a\n"
  "                        dropped connection: reconnect) up to N times per\n"
  "                        request, waiting 1, 2, 4... s; 0: never (default 3)\n"
  "  --threads N           threads that compress, encrypt and write chunks\n"
  "                        while the disk is read (1 to 64; default: one per\n"
  "                        CPU)\n"
  "  --requests N          chunks read ahead over NBD, their reads in flight\n"
  "                        while earlier chunks are stored (1 to 64;\n"
  "                        default 8)\n"
  "  --connections N       NBD connections per disk when the export allows\n"
  "                        several (multi-conn); the reads are spread over\n"
  "                        them (1 to 16; default 4)\n"
  "  --json                print the result as one JSON object\n"
  "  --quiet               no progress line, no text on success\n"
  "  --help                show this help\n"
  "\n"
  "Example:\n"
  "  pullback backup --repo /srv/backup/repo --vm web01 \\\n"
  "      --disk 'vda=nbd+unix:///vda?socket=/run/web01-backup.sock' \\\n"
  "      --since cp-1 --bitmap vda=backup-cp-1 --checkpoint cp-2\n",
  .longopts = backup_options,
  .run = run_backup,
};
