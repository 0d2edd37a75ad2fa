/* pullback - agent/options.c: command-line parsing shared by every command.
 *
 * One getopt_long driver for all subcommands, so that --help, --json,
 * --quiet, unknown options, missing arguments, empty values and stray
 * arguments behave (and are reported) identically everywhere.  Also the
 * strict parsers for values several commands take: point ids, chunk sizes
 * and NAME=VALUE pairs.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

/* State of one parse_options run. */
struct parse {
  const struct command *cmd;
  struct cli *c;
  option_fn fn;
  void *ctx;
  bool help;
  bool failed;                /* first error recorded; keep scanning only
                               * for --help and --json */
};

/* "--repo" for the option whose getopt value is VAL. */
static const char *
option_label (const struct command *cmd, int val)
{
  static char s[64];
  const struct option *o;

  for (o = cmd->longopts; o->name; o++)
    if (o->val == val) {
      snprintf (s, sizeof s, "--%s", o->name);
      return s;
    }
  snprintf (s, sizeof s, "-%c", val > 0 && val < 256 ? val : '?');
  return s;
}

/* The unknown option as the user typed it: getopt sets optopt for a short
 * one and leaves a long one just before optind. */
static const char *
unknown_option (int argc, char **argv)
{
  static char s[3] = "-?";

  if (optopt > 0 && optopt < 256) {
    s[1] = (char) optopt;
    return s;
  }
  return optind > 0 && optind <= argc ? argv[optind - 1] : "?";
}

static void
one_option (struct parse *ps, int opt, int argc, char **argv)
{
  switch (opt) {
  case OPT_HELP: ps->help = true; return;
  case OPT_JSON: ps->c->json = true; return;
  case OPT_QUIET: ps->c->quiet = true; return;
  }
  if (ps->failed)
    return;
  ps->failed = true;
  if (opt == '?' && optopt >= 256)
    set_error (PB_E_USAGE, 0, "option '%s' takes no value",
               option_label (ps->cmd, optopt));
  else if (opt == '?')
    set_error (PB_E_USAGE, 0, "unknown option '%s'",
               unknown_option (argc, argv));
  else if (opt == ':')
    set_error (PB_E_USAGE, 0, "option '%s' needs a value",
               option_label (ps->cmd, optopt));
  else if (optarg && optarg[0] == '\0')
    set_error (PB_E_USAGE, 0, "option '%s' needs a non-empty value",
               option_label (ps->cmd, opt));
  else
    ps->failed = ps->fn (ps->ctx, opt, optarg) == -1;
}

/* Positional arguments: the command says how many it takes. */
static int
check_positionals (const struct command *cmd, int argc, char **argv,
                   int first)
{
  int n = argc - first;

  if (n < cmd->min_args) {
    set_error (PB_E_USAGE, 0, "missing %s", cmd->args_name);
    return -1;
  }
  if (n > cmd->max_args) {
    set_error (PB_E_USAGE, 0, "unexpected argument '%s'",
               argv[first + cmd->max_args]);
    return -1;
  }
  return 0;
}

int
parse_options (const struct command *cmd, struct cli *c,
               int argc, char **argv, option_fn fn, void *ctx, int *first)
{
  struct parse ps = { .cmd = cmd, .c = c, .fn = fn, .ctx = ctx };
  int opt;

  c->cmd = cmd;
  /* optind = 0 makes glibc reinitialise getopt completely, including its
   * argument permutation state. */
  optind = 0;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, ":h", cmd->longopts, NULL)) != -1)
    one_option (&ps, opt, argc, argv);

  if (ps.help) {
    print_help (cmd);
    return 0;
  }
  if (!ps.failed && check_positionals (cmd, argc, argv, optind) == -1)
    ps.failed = true;
  if (ps.failed)
    return report_usage (c);

  *first = optind;
  /* Progress only for a person watching a terminal: never into logs,
   * pipes or a vendor's parser. */
  c->progress = !c->json && !c->quiet && isatty (STDERR_FILENO);
  return OPTS_CONTINUE;
}

int
option_once (const char **slot, const char *label, const char *arg)
{
  if (*slot != NULL) {
    set_error (PB_E_USAGE, 0, "%s is given twice", label);
    return -1;
  }
  *slot = arg;
  return 0;
}

int
unhandled_option (int opt)
{
  set_error (PB_E_FAIL, 0, "internal error: option %d is not handled", opt);
  return -1;
}

int
parse_point_spec (const char *arg, char spec[POINT_SPEC_MAX])
{
  const char *p;
  long long v;

  if (spec[0] != '\0') {
    set_error (PB_E_USAGE, 0, "--point is given twice");
    return -1;
  }
  if (strcmp (arg, "latest") == 0) {
    strcpy (spec, arg);
    return 0;
  }
  /* strtoll alone would accept spaces, signs and trailing junk. */
  for (p = arg; *p >= '0' && *p <= '9'; p++)
    ;
  errno = 0;
  v = *p == '\0' && p != arg ? strtoll (arg, NULL, 10) : 0;
  if (v <= 0 || errno != 0) {
    set_error (PB_E_USAGE, 0,
               "invalid point '%s' (expected a positive id or 'latest')", arg);
    return -1;
  }
  snprintf (spec, POINT_SPEC_MAX, "%lld", v);
  return 0;
}

int
parse_chunk_size (const char *arg, uint32_t *out)
{
  uint64_t v;

  if (parse_size (arg, &v) == -1)
    return -1;
  /* The library checks the allowed range; this keeps the value from being
   * silently truncated on its way there, and 0 (the library's "default")
   * from passing for a size. */
  if (v == 0 || v > UINT32_MAX) {
    set_error (PB_E_USAGE, 0, "chunk size '%s' is not a power of two from "
               "64 KiB to 16 MiB", arg);
    return -1;
  }
  *out = (uint32_t) v;
  return 0;
}

const struct pair *
pair_list_find (const struct pair_list *l, const char *name)
{
  size_t i;

  for (i = 0; i < l->n; i++)
    if (strcmp (l->v[i].name, name) == 0)
      return &l->v[i];
  return NULL;
}

int
pair_list_add (struct pair_list *l, const char *opt, const char *form,
               const char *arg)
{
  const char *eq = strchr (arg, '=');
  struct pair *v;
  CLEANUP_FREE char *name = NULL;

  if (eq == NULL || eq == arg || eq[1] == '\0') {
    set_error (PB_E_USAGE, 0, "%s '%s': expected %s%s", opt, arg,
               form, eq == NULL ? "" :
               eq == arg ? " (empty name)" : " (empty value)");
    return -1;
  }
  if ((name = strndup (arg, eq - arg)) == NULL)
    goto oom;
  if (pair_list_find (l, name)) {
    set_error (PB_E_USAGE, 0, "%s: '%s' is given twice", opt, name);
    return -1;
  }
  if ((v = realloc (l->v, (l->n + 1) * sizeof *v)) == NULL)
    goto oom;
  l->v = v;
  l->v[l->n].name = name;
  l->v[l->n++].value = eq + 1;
  name = NULL;
  return 0;

 oom:
  set_error (PB_E_FAIL, errno, "out of memory");
  return -1;
}

void
pair_list_free (struct pair_list *l)
{
  size_t i;

  for (i = 0; i < l->n; i++)
    free (l->v[i].name);
  free (l->v);
  l->v = NULL;
  l->n = 0;
}

static const struct command *const commands[] = {
  &cmd_init, &cmd_backup, &cmd_list, &cmd_show,
  &cmd_restore, &cmd_verify, &cmd_digest,
  &cmd_forget, &cmd_protect, &cmd_unprotect, &cmd_gc, &cmd_stats,
  &cmd_key, &cmd_catalog,
};

const struct command *
find_command (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (commands[i]->name, name) == 0)
      return commands[i];
  return NULL;
}

static void
print_general_help (void)
{
  size_t i;

  printf ("Usage: pullback COMMAND [OPTION...]\n"
          "       pullback help COMMAND | pullback COMMAND --help\n"
          "       pullback --help | --version\n"
          "\n"
          "Back up VM disks in pull mode over NBD into a deduplicating "
          "chunk store.\n"
          "\n"
          "Commands:\n");
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    printf ("  %-9s %s\n", commands[i]->name, commands[i]->summary);
  printf ("\n"
          "Every command accepts --json (one JSON object on stdout, also on\n"
          "failure) and --help.  Exit codes: 0 ok, 1 failure, 2 usage,\n"
          "3 repository, 4 NBD, 5 unknown checkpoint, 6 bitmap, 7 corrupt,\n"
          "8 restore target, 9 not found, 10 busy, 11 local I/O,\n"
          "12 interrupted (docs/CLI.md).\n");
}

void
print_help (const struct command *cmd)
{
  if (cmd == NULL) {
    print_general_help ();
    return;
  }
  printf ("Usage: %s\n\n%s", cmd->synopsis, cmd->help);
}

void
print_version (void)
{
  printf ("pullback %s\n", PACKAGE_VERSION);
}

int
parse_count (const char *opt, const char *arg, unsigned max, unsigned *out)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul (arg, &end, 10);
  if (errno || *end || arg[0] < '1' || arg[0] > '9' || v > max) {
    set_error (PB_E_USAGE, 0, "%s: '%s' is not a whole number from "
               "1 to %u", opt, arg, max);
    return -1;
  }
  *out = v;
  return 0;
}

int
parse_threads (const char *arg, unsigned *out)
{
  return parse_count ("--threads", arg, MAX_THREADS, out);
}
