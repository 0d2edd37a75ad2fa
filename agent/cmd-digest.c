/* pullback - agent/cmd-digest.c: 'pullback digest', content digest of a disk.
 *
 * The digest of a live NBD export or an image file, computed exactly like
 * the digest recorded for each disk of a point, so that "does the restored
 * image equal the backup?" and "does this backup equal the VM?" are answered
 * by comparing two hex strings.  The digest depends on the chunk size, so
 * it is taken from the repository (--repo) or given (--chunk-size); the
 * text output mimics sha256sum.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct digest_args {
  struct key_args key;        /* --key-file, --passphrase-file */
  const char *repo;
  const char *chunk_size_arg; /* as given, to refuse it twice */
  uint32_t chunk_size;        /* 0 = library default */
};

static int
digest_option (void *ctx, int opt, const char *arg)
{
  struct digest_args *a = ctx;

  switch (opt) {
  CASE_KEY_OPTIONS (&a->key);
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_CHUNK_SIZE:
    if (option_once (&a->chunk_size_arg, "--chunk-size", arg) == -1)
      return -1;
    return parse_chunk_size (arg, &a->chunk_size);
  }
  return unhandled_option (opt);
}

static void
print_digest (const struct cli *c, const char *source, uint64_t size,
              uint32_t chunk_size, const uint8_t *digest)
{
  char hex[2 * PULLBACK_DIGEST_LEN + 1];
  struct json_object *o;

  if (!c->json) {
    hex_encode (digest, PULLBACK_DIGEST_LEN, hex);
    printf ("%s  %s\n", hex, source);
    return;
  }
  o = json_object_new_object ();
  json_set_str (o, "source", source);
  json_set_u64 (o, "size", size);
  json_set_u64 (o, "chunk_size", chunk_size);
  json_object_object_add (o, "digest", json_hex (digest, PULLBACK_DIGEST_LEN));
  print_json (o);
}

static int
run_digest (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct digest_args a = { 0 };
  CLEANUP_REPO struct pullback_repo *r = NULL;
  uint8_t digest[PULLBACK_DIGEST_LEN];
  uint64_t size = 0;
  const char *source;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, digest_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo && a.chunk_size_arg)
    return usage_error (&c, "--repo and --chunk-size cannot be used "
                        "together (the repository fixes the chunk size)");
  source = argv[first];

  if (a.repo && (r = open_repo (a.repo, &a.key)) == NULL)
    return report_error (&c);
  if (pullback_digest (source, r, a.chunk_size, digest, &size) == -1)
    return report_error (&c);
  if (r)
    a.chunk_size = pullback_repo_chunk_size (r);
  else if (a.chunk_size == 0)
    a.chunk_size = PULLBACK_DEFAULT_CHUNK_SIZE;
  print_digest (&c, source, size, a.chunk_size, digest);
  return 0;
}

static const struct option digest_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO, OPTIONS_KEY,
  { "chunk-size", required_argument, NULL, OPT_CHUNK_SIZE },
  OPTION_END
};

const struct command cmd_digest = {
  .name = "digest",
  .summary = "compute the content digest of an NBD export or image file",
  .synopsis =
  "pullback digest SOURCE [--repo DIR | --chunk-size SIZE] [--json]",
  .help =
  "Print the content digest of SOURCE, an NBD URI (anything with \"://\") or\n"
  "an image file (raw or qcow2, opened read-only), computed like the digest\n"
  "each disk of a point records.  Compare it with 'pullback show' to check\n"
  "a restored image or a running VM against a backup.\n"
  "\n"
  "Options:\n"
  "  --repo DIR         use the chunk size (and chunk ids) of this repository\n"
  HELP_KEY
  "  --chunk-size SIZE  use this chunk size instead (default 256K)\n"
  "  --json             print {\"source\", \"size\", \"chunk_size\", "
  "\"digest\"}\n"
  "  --help             show this help\n"
  "\n"
  "Example:\n"
  "  pullback digest /var/lib/libvirt/images/web01-vda.qcow2 "
  "--repo /srv/backup/repo\n",
  .longopts = digest_options,
  .min_args = 1,
  .max_args = 1,
  .args_name = "SOURCE",
  .run = run_digest,
};
