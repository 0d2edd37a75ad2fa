/* pullback - agent/cmd-init.c: 'pullback init', create a repository.
 *
 * The chunk size is fixed for the life of a repository (every point's
 * chunk map and digest depend on it), so it is chosen here, once; so is
 * encryption (--encrypt), with the key file that holds the key: an
 * existing one (several repositories may share a key) or a new one made
 * here.  A key file made here is removed again if the repository cannot
 * be made, so a failed init leaves nothing behind.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "agent.h"

struct init_args {
  const char *repo;
  uint32_t chunk_size;        /* 0 = library default */
  bool encrypt;               /* --encrypt */
  const char *key_file;       /* --key-file */
  struct new_key_args new_key;  /* if the key file does not exist yet */
};

static int
init_option (void *ctx, int opt, const char *arg)
{
  struct init_args *a = ctx;

  switch (opt) {
  case OPT_REPO: return option_once (&a->repo, "--repo", arg);
  case OPT_CHUNK_SIZE: return parse_chunk_size (arg, &a->chunk_size);
  case OPT_ENCRYPT: a->encrypt = true; return 0;
  case OPT_KEY_FILE: return option_once (&a->key_file, "--key-file", arg);
  case OPT_NO_PASSPHRASE: case OPT_PASSPHRASE_FILE: case OPT_KDF_LOG2N:
    return new_key_option (&a->new_key, opt, arg);
  }
  return unhandled_option (opt);
}

static void
print_init (const struct cli *c, const char *dir, struct pullback_repo *r,
            const char *fp)
{
  uint32_t chunk_size = pullback_repo_chunk_size (r);
  struct json_object *o;
  char size[HUMAN_SIZE_MAX];

  if (!c->json) {
    printf ("initialised repository %s (chunk size %s%s%s)\n", dir,
            human_size (chunk_size, false, size),
            fp ? ", encrypted with key " : "", fp ? fp : "");
    return;
  }
  o = json_object_new_object ();
  json_set_str (o, "repo", dir);
  json_set_u64 (o, "chunk_size", chunk_size);
  json_set_str (o, "uuid", pullback_repo_uuid (r));
  json_object_object_add (o, "encrypted", json_object_new_boolean (fp != NULL));
  json_set_str (o, "key", fp);
  print_json (o);
}

/* The existing key file (its passphrase as for every command), or a new
 * one (*CREATED). */
static int
get_key (const struct init_args *a, struct store_key **key, bool *created)
{
  struct key_args k = { .key_file = a->key_file,
                        .passphrase_file = a->new_key.passphrase_file };

  *created = false;
  if (access (a->key_file, F_OK) == 0) {
    if (a->new_key.no_passphrase || a->new_key.log2n) {
      set_error (PB_E_USAGE, 0, "key file %s exists: --no-passphrase and "
                 "--kdf-log2n are only for a new one", a->key_file);
      return -1;
    }
    return load_key (&k, key);
  }
  if (errno != ENOENT) {
    set_error (PB_E_IO, errno, "key file %s", a->key_file);
    return -1;
  }
  *key = create_key_file (&a->new_key, a->key_file);
  *created = *key != NULL;
  return *key ? 0 : -1;
}

static int
run_init (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct init_args a = { 0 };
  CLEANUP_REPO struct pullback_repo *r = NULL;
  struct store_key *key = NULL;
  bool created = false;
  int rc, first;

  rc = parse_options (cmd, &c, argc, argv, init_option, &a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.repo == NULL)
    return usage_error (&c, "missing --repo");
  if (a.encrypt != (a.key_file != NULL))
    return usage_error (&c, a.encrypt ? "--encrypt needs --key-file FILE"
                        : "--key-file needs --encrypt");
  if (check_new_key_args (&a.new_key) == -1)
    return report_usage (&c);

  if (a.encrypt && get_key (&a, &key, &created) == -1)
    return report_error (&c);
  r = pullback_repo_init (a.repo, a.chunk_size, key);
  if (r == NULL) {
    if (created)
      unlink (a.key_file);
    store_key_free (key);
    return report_error (&c);
  }
  print_init (&c, a.repo, r, key ? store_key_fingerprint (key) : NULL);
  store_key_free (key);
  return 0;
}

static const struct option init_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_REPO,
  { "chunk-size", required_argument, NULL, OPT_CHUNK_SIZE },
  { "encrypt", no_argument, NULL, OPT_ENCRYPT },
  { "key-file", required_argument, NULL, OPT_KEY_FILE },
  OPTIONS_NEW_KEY,
  OPTION_END
};

const struct command cmd_init = {
  .name = "init",
  .summary = "create a new repository",
  .synopsis = "pullback init --repo DIR [--chunk-size SIZE]\n"
  "              [--encrypt --key-file FILE [--passphrase-file F | "
  "--no-passphrase]] [--json]",
  .help =
  "Create a repository: DIR/catalog.db (the SQLite catalog) and DIR/store\n"
  "(the chunk store).  DIR must not exist or must be empty.\n"
  "\n"
  "Options:\n"
  "  --repo DIR         the repository directory to create\n"
  "  --chunk-size SIZE  deduplication unit, a power of two such as 256K or\n"
  "                     1M (default 256K); fixed for the repository's life\n"
  "  --encrypt          encrypt everything the store holds (AES-256-GCM, keyed\n"
  "                     chunk ids) with the key in --key-file\n"
  "  --key-file FILE    the key: an existing key file, or a new one made now\n"
  "                     (keep a copy: without it the backups are lost)\n"
  HELP_NEW_KEY
  "  --json             print {\"repo\", \"chunk_size\", \"uuid\", \"encrypted\",\n"
  "                     \"key\"} on stdout (key: the key's fingerprint)\n"
  "  --help             show this help\n"
  "\n"
  "Example:\n"
  "  pullback init --repo /srv/backup/repo --chunk-size 256K\n"
  "  pullback init --repo /srv/backup/repo --encrypt --key-file /root/repo.key\n",
  .longopts = init_options,
  .run = run_init,
};
