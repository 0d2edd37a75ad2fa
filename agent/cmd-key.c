/* pullback - agent/cmd-key.c: 'pullback key', the key files of encrypted
 * repositories.
 *
 *   key create FILE              a new random key
 *   key show FILE                fingerprint and protection, no passphrase
 *   key change-passphrase FILE   re-wrap (or unwrap) the same key
 *   key export --paper OUT FILE  a copy to print and type back
 *   key import --paper IN FILE   a key file from such a copy
 *
 * The key itself never changes (it encrypts every object in the
 * repositories that use it); only the file that protects it does.  Every
 * write of a key file is atomic and durable (store_key_save), so a crash
 * during change-passphrase leaves the old file or the new one.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

struct key_cmd_args {
  struct key_args key;          /* the existing key file's passphrase */
  struct new_key_args new_key;  /* the new file's protection */
  const char *new_passphrase_file;
  const char *paper;
};

static int
key_cmd_option (void *ctx, int opt, const char *arg)
{
  struct key_cmd_args *a = ctx;

  switch (opt) {
  case OPT_PASSPHRASE_FILE:
    /* The old passphrase for change-passphrase and export; the new one
     * for create and import (which have no old one). */
    if (option_once (&a->key.passphrase_file, "--passphrase-file", arg) == -1)
      return -1;
    a->new_key.passphrase_file = arg;
    return 0;
  case OPT_NO_PASSPHRASE: case OPT_KDF_LOG2N:
    return new_key_option (&a->new_key, opt, arg);
  case OPT_NEW_PASSPHRASE_FILE:
    return option_once (&a->new_passphrase_file, "--new-passphrase-file", arg);
  case OPT_PAPER: return option_once (&a->paper, "--paper", arg);
  }
  return unhandled_option (opt);
}

/* Parse CMD's options; *FILE = the key file argument. */
static int
key_parse (const struct command *cmd, struct cli *c, int argc, char **argv,
           struct key_cmd_args *a, const char **file)
{
  int rc, first;

  rc = parse_options (cmd, c, argc, argv, key_cmd_option, a, &first);
  if (rc != OPTS_CONTINUE)
    return rc;
  *file = argv[first];
  return OPTS_CONTINUE;
}

static void
print_key (const struct cli *c, const char *verb, const char *file,
           const char *fp, bool wrapped)
{
  struct json_object *o;

  if (!c->json) {
    if (!c->quiet)
      printf ("%s key file %s: key %s, %s\n", verb, file, fp,
              wrapped ? "protected by a passphrase" : "NOT protected by a "
              "passphrase");
    return;
  }
  o = json_object_new_object ();
  json_set_str (o, "key_file", file);
  json_set_str (o, "fingerprint", fp);
  json_object_object_add (o, "protected", json_object_new_boolean (wrapped));
  print_json (o);
}

/* ---- create ---- */

static int
run_create (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct key_cmd_args a = { 0 };
  struct store_key *k;
  const char *file;
  int rc = key_parse (cmd, &c, argc, argv, &a, &file);

  if (rc != OPTS_CONTINUE)
    return rc;
  if (check_new_key_args (&a.new_key) == -1)
    return report_usage (&c);
  k = create_key_file (&a.new_key, file);
  if (k == NULL)
    return report_error (&c);
  print_key (&c, "created", file, store_key_fingerprint (k),
             !a.new_key.no_passphrase);
  store_key_free (k);
  return 0;
}

/* ---- show ---- */

static int
run_show (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct key_cmd_args a = { 0 };
  struct store_key_file_info info;
  struct json_object *o;
  const char *file;
  int rc = key_parse (cmd, &c, argc, argv, &a, &file);

  if (rc != OPTS_CONTINUE)
    return rc;
  if (store_key_file_info (file, &info) == -1)
    return report_error (&c);
  if (!c.json) {
    print_key (&c, "", file, info.fingerprint, info.wrapped);
    if (info.wrapped)
      printf ("  passphrase KDF: scrypt N=2^%u r=%u p=%u\n", info.log2n,
              info.r, info.p);
    return 0;
  }
  o = json_object_new_object ();
  json_set_str (o, "key_file", file);
  json_set_str (o, "fingerprint", info.fingerprint);
  json_object_object_add (o, "protected", json_object_new_boolean (info.wrapped));
  json_set_str (o, "kdf", info.wrapped ? "scrypt" : NULL);
  if (info.wrapped) {
    json_set_u64 (o, "log2n", info.log2n);
    json_set_u64 (o, "r", info.r);
    json_set_u64 (o, "p", info.p);
  }
  print_json (o);
  return 0;
}

/* ---- change-passphrase ---- */

static int
check_change (const struct key_cmd_args *a)
{
  if (a->new_key.no_passphrase && a->new_passphrase_file) {
    set_error (PB_E_USAGE, 0, "--no-passphrase and --new-passphrase-file "
               "contradict each other");
    return -1;
  }
  if (a->new_key.no_passphrase && a->new_key.log2n) {
    set_error (PB_E_USAGE, 0, "--kdf-log2n needs a new passphrase");
    return -1;
  }
  return 0;
}

static int
change (const struct key_cmd_args *a, const char *file)
{
  struct key_args k = { .key_file = file,
                        .passphrase_file = a->key.passphrase_file };
  CLEANUP_SECRET char *pass = NULL;
  struct store_key *key;
  int r = -1;

  if (load_key (&k, &key) == -1)
    return -1;
  if (a->new_key.no_passphrase ||
      (pass = new_passphrase (a->new_passphrase_file,
                              "PULLBACK_NEW_PASSPHRASE", file)) != NULL)
    r = store_key_save (key, file, pass, a->new_key.log2n, true);
  store_key_free (key);
  return r;
}

static int
run_change (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct key_cmd_args a = { 0 };
  struct store_key_file_info info;
  const char *file;
  int rc = key_parse (cmd, &c, argc, argv, &a, &file);

  if (rc != OPTS_CONTINUE)
    return rc;
  if (check_change (&a) == -1)
    return report_usage (&c);
  if (change (&a, file) == -1 || store_key_file_info (file, &info) == -1)
    return report_error (&c);
  if (!info.wrapped)
    warn_unwrapped (file);
  print_key (&c, "changed", file, info.fingerprint, info.wrapped);
  return 0;
}

/* ---- export --paper ---- */

/* OUT must not exist ("-": stdout): a paper key is as secret as the key. */
static int
write_new_file (const char *out, const char *text)
{
  int fd;

  if (strcmp (out, "-") == 0)
    return fputs (text, stdout) == EOF ? -1 : 0;
  fd = open (out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd == -1) {
    set_error (errno == EEXIST ? PB_E_USAGE : PB_E_IO, errno, "%s", out);
    return -1;
  }
  if (full_write (fd, text, strlen (text)) == -1 || fsync (fd) == -1) {
    set_error (PB_E_IO, errno, "write %s", out);
    close (fd);
    unlink (out);
    return -1;
  }
  return close (fd);
}

static int
run_export (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct key_cmd_args a = { 0 };
  struct key_args k = { 0 };
  struct store_key *key = NULL;
  CLEANUP_SECRET char *text = NULL;
  const char *file;
  int rc = key_parse (cmd, &c, argc, argv, &a, &file);

  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.paper == NULL)
    return usage_error (&c, "missing --paper OUT (the only export form)");
  k.key_file = file;
  k.passphrase_file = a.key.passphrase_file;
  if (load_key (&k, &key) == -1 || store_key_paper (key, &text) == -1 ||
      write_new_file (a.paper, text) == -1) {
    store_key_free (key);
    return report_error (&c);
  }
  if (strcmp (a.paper, "-") != 0 && !c.quiet)
    fprintf (stderr, "pullback: wrote the paper key to %s: print it, keep it "
             "safe, then delete the file\n", a.paper);
  store_key_free (key);
  return 0;
}

/* ---- import --paper ---- */

static char *
read_paper (const char *in)
{
  char *buf = NULL;
  size_t len;

  if (strcmp (in, "-") == 0)
    in = "/dev/stdin";
  if (read_file (in, &buf, &len) == -1)
    return NULL;
  return buf;
}

static int
run_import (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { 0 };
  struct key_cmd_args a = { 0 };
  CLEANUP_SECRET char *text = NULL, *pass = NULL;
  struct store_key *key;
  const char *file;
  int rc = key_parse (cmd, &c, argc, argv, &a, &file), r = -1;

  if (rc != OPTS_CONTINUE)
    return rc;
  if (a.paper == NULL)
    return usage_error (&c, "missing --paper IN");
  if (check_new_key_args (&a.new_key) == -1)
    return report_usage (&c);
  if ((text = read_paper (a.paper)) == NULL ||
      (key = store_key_from_paper (text)) == NULL)
    return report_error (&c);
  if (a.new_key.no_passphrase ||
      (pass = new_passphrase (a.new_key.passphrase_file,
                              "PULLBACK_PASSPHRASE", file)) != NULL)
    r = store_key_save (key, file, pass, a.new_key.log2n, false);
  if (r == 0) {
    if (a.new_key.no_passphrase)
      warn_unwrapped (file);
    print_key (&c, "imported", file, store_key_fingerprint (key),
               !a.new_key.no_passphrase);
  }
  store_key_free (key);
  return r == 0 ? 0 : report_error (&c);
}

/* ---- the command table ---- */

static const struct option create_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTIONS_NEW_KEY, OPTION_END
};
static const struct option show_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_END
};
static const struct option change_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTIONS_NEW_KEY,
  { "new-passphrase-file", required_argument, NULL, OPT_NEW_PASSPHRASE_FILE },
  OPTION_END
};
static const struct option export_options[] = {
  OPTION_HELP, OPTION_QUIET,
  { "passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE },
  { "paper", required_argument, NULL, OPT_PAPER },
  OPTION_END
};
static const struct option import_options[] = {
  OPTION_HELP, OPTION_JSON, OPTION_QUIET, OPTIONS_NEW_KEY,
  { "paper", required_argument, NULL, OPT_PAPER },
  OPTION_END
};

static const struct command key_create = {
  .name = "key create", .summary = "make a new key file",
  .synopsis = "pullback key create [--passphrase-file F | --no-passphrase] "
  "[--kdf-log2n N] [--json] FILE",
  .help =
  "Make a new random 256-bit key and write it to FILE (which must not\n"
  "exist), protected by a passphrase unless --no-passphrase.\n"
  "\n"
  "Options:\n" HELP_NEW_KEY
  "  --json             print {\"key_file\", \"fingerprint\", \"protected\"}\n",
  .longopts = create_options, .min_args = 1, .max_args = 1,
  .args_name = "key FILE", .run = run_create,
};

static const struct command key_show = {
  .name = "key show", .summary = "show a key file's fingerprint",
  .synopsis = "pullback key show [--json] FILE",
  .help =
  "Print the fingerprint of the key in FILE and how it is protected.  No\n"
  "passphrase is needed.  An encrypted repository's config names the\n"
  "fingerprint of its key.\n",
  .longopts = show_options, .min_args = 1, .max_args = 1,
  .args_name = "key FILE", .run = run_show,
};

static const struct command key_change = {
  .name = "key change-passphrase", .summary = "change a key file's passphrase",
  .synopsis = "pullback key change-passphrase [--passphrase-file OLD]\n"
  "              [--new-passphrase-file NEW | --no-passphrase] [--kdf-log2n N] "
  "FILE",
  .help =
  "Protect the same key with another passphrase (or none).  The file is\n"
  "replaced atomically.  The old passphrase comes from --passphrase-file or\n"
  "$PULLBACK_PASSPHRASE, the new one from --new-passphrase-file or\n"
  "$PULLBACK_NEW_PASSPHRASE; both are asked on the terminal otherwise.\n",
  .longopts = change_options, .min_args = 1, .max_args = 1,
  .args_name = "key FILE", .run = run_change,
};

static const struct command key_export = {
  .name = "key export", .summary = "write a paper copy of a key",
  .synopsis = "pullback key export --paper OUT [--passphrase-file F] FILE",
  .help =
  "Write the key in FILE to OUT ('-': standard output; OUT must not exist)\n"
  "as four short lines with check digits, to print and keep somewhere\n"
  "safe.  The paper copy is NOT protected by the passphrase: whoever has it\n"
  "can read the backups.  'pullback key import --paper' types it back.\n",
  .longopts = export_options, .min_args = 1, .max_args = 1,
  .args_name = "key FILE", .run = run_export,
};

static const struct command key_import = {
  .name = "key import", .summary = "make a key file from a paper copy",
  .synopsis = "pullback key import --paper IN [--passphrase-file F | "
  "--no-passphrase] FILE",
  .help =
  "Read a paper copy (IN, '-': standard input; spaces and case do not\n"
  "matter) and write the key to the new key file FILE.  A typing mistake\n"
  "is reported with the line it is on.\n"
  "\n"
  "Options:\n" HELP_NEW_KEY,
  .longopts = import_options, .min_args = 1, .max_args = 1,
  .args_name = "key FILE", .run = run_import,
};

static const struct command *const subcommands[] = {
  &key_create, &key_show, &key_change, &key_export, &key_import,
};

static int
run_key (const struct command *cmd, int argc, char **argv)
{
  struct cli c = { .cmd = cmd };
  size_t i;

  if (argc < 2 || strcmp (argv[1], "--help") == 0 ||
      strcmp (argv[1], "-h") == 0) {
    if (argc < 2)
      return usage_error (&c, "missing what to do (create, show, "
                          "change-passphrase, export, import)");
    print_help (cmd);
    return 0;
  }
  for (i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
    if (strcmp (subcommands[i]->name + 4, argv[1]) == 0)
      return subcommands[i]->run (subcommands[i], argc - 1, argv + 1);
  return usage_error (&c, "unknown key command '%s'", argv[1]);
}

static const struct option key_options[] = { OPTION_HELP, OPTION_END };

const struct command cmd_key = {
  .name = "key",
  .summary = "make and manage the key files of encrypted repositories",
  .synopsis = "pullback key create|show|change-passphrase|export|import ...",
  .help =
  "The key of an encrypted repository lives only in its key file: keep a\n"
  "copy (key export --paper).  Commands:\n"
  "  key create FILE                 make a new key file\n"
  "  key show FILE                   its fingerprint and protection\n"
  "  key change-passphrase FILE      protect it with another passphrase\n"
  "  key export --paper OUT FILE     a paper copy\n"
  "  key import --paper IN FILE      a key file from a paper copy\n"
  "'pullback key COMMAND --help' describes each.\n",
  .longopts = key_options,
  .run = run_key,
};
