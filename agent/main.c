/* pullback - agent/main.c: entry point of the pullback program.
 *
 * Chooses the subcommand (or answers --help, --version, help COMMAND),
 * installs the signal handlers that turn SIGINT/SIGTERM into a clean
 * PB_E_INTERRUPTED failure of the running library operation, and makes
 * sure a failed write of the result to stdout is not reported as success.
 */
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"

void
cleanup_repo (struct pullback_repo **r)
{
  pullback_repo_close (*r);
}

void
cleanup_point (struct catalog_point **p)
{
  catalog_point_free (*p);
}

static void
on_signal (int sig)
{
  struct sigaction dfl;

  /* Only record the request: the library notices it between requests,
   * fails with PB_E_INTERRUPTED and records nothing.  Then restore the
   * default actions, so that an operation which does not stop can still
   * be killed by a second Ctrl-C or SIGTERM (sigaction is async-signal-
   * safe). */
  pullback_interrupt ();
  memset (&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction (SIGINT, &dfl, NULL);
  sigaction (SIGTERM, &dfl, NULL);
}

static void
install_signals (void)
{
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  /* Both blocked while the handler runs, so a second signal arriving at
   * once already finds the default action. */
  sigemptyset (&sa.sa_mask);
  sigaddset (&sa.sa_mask, SIGINT);
  sigaddset (&sa.sa_mask, SIGTERM);
  /* No SA_RESTART: a blocking read or connect must return EINTR so the
   * operation sees the interruption promptly. */
  sa.sa_handler = on_signal;
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  /* Broken NBD connections and closed stdout pipes become EPIPE errors
   * with a message, not a silent death. */
  sa.sa_handler = SIG_IGN;
  sigaction (SIGPIPE, &sa, NULL);
  /* A write beyond the file-size limit (RLIMIT_FSIZE, ulimit -f) would
   * kill us silently with SIGXFSZ; ignored, it fails with EFBIG and is
   * reported like a full disk (exit 14), recording nothing. */
  sigaction (SIGXFSZ, &sa, NULL);
}

/* --json anywhere on the command line, so that even a bad command line
 * gets the error object a vendor's parser expects. */
static bool
wants_json (int argc, char **argv)
{
  int i;

  for (i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
    if (strcmp (argv[i], "--json") == 0)
      return true;
  return false;
}

/* pullback help [COMMAND] */
static int
help_command (struct cli *c, int argc, char **argv)
{
  const struct command *cmd;

  if (argc == 2) {
    print_help (NULL);
    return 0;
  }
  if (argc > 3)
    return usage_error (c, "unexpected argument '%s'", argv[3]);
  cmd = find_command (argv[2]);
  if (cmd == NULL)
    return usage_error (c, "unknown command '%s'", argv[2]);
  print_help (cmd);
  return 0;
}

static int
dispatch (int argc, char **argv)
{
  struct cli c = { .json = wants_json (argc, argv) };
  const struct command *cmd;
  const char *word = argc > 1 ? argv[1] : NULL;

  if (word == NULL)
    return usage_error (&c, "no command given");
  if (strcmp (word, "--help") == 0 || strcmp (word, "-h") == 0) {
    print_help (NULL);
    return 0;
  }
  if (strcmp (word, "--version") == 0) {
    print_version ();
    return 0;
  }
  if (strcmp (word, "help") == 0)
    return help_command (&c, argc, argv);
  if (word[0] == '-')
    return usage_error (&c, "unknown option '%s' (options follow the "
                        "command)", word);
  cmd = find_command (word);
  if (cmd == NULL)
    return usage_error (&c, "unknown command '%s'", word);
  return cmd->run (cmd, argc - 1, argv + 1);
}

/* The result is only delivered once stdout is flushed: a full disk or a
 * closed pipe must not turn into exit code 0. */
static int
close_stdout (int rc)
{
  if (fflush (stdout) == 0 && !ferror (stdout))
    return rc;
  fprintf (stderr, "pullback: error writing to standard output: %s\n",
           strerror (errno));
  return rc == 0 ? PB_E_IO : rc;
}

int
main (int argc, char **argv)
{
  install_signals ();
  return close_stdout (dispatch (argc, argv));
}
