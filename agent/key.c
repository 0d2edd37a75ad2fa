/* pullback - agent/key.c: keys and passphrases on the command line.
 *
 * Policy around the library's key files (store.h): which key file a
 * command uses (--key-file, else $PULLBACK_KEY_FILE, so that a systemd
 * unit can set it once), and where a passphrase comes from.  A passphrase
 * never comes from a command-line argument, which every user of the
 * machine can read in /proc/PID/cmdline: it is read from a file
 * (--passphrase-file, first line), from an environment variable
 * ($PULLBACK_PASSPHRASE, or $PULLBACK_NEW_PASSPHRASE for a new one), or
 * asked for on the terminal without echo.  Every copy is wiped after use.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "util.h"

#define PASSPHRASE_MAX 1024

void
free_secret (char *s)
{
  if (s == NULL)
    return;
  explicit_bzero (s, strlen (s));
  free (s);
}

void
cleanup_secret (char **s)
{
  free_secret (*s);
}

int
key_option (struct key_args *k, int opt, const char *arg)
{
  if (opt == OPT_KEY_FILE)
    return option_once (&k->key_file, "--key-file", arg);
  return option_once (&k->passphrase_file, "--passphrase-file", arg);
}

/* A copy of S up to its first line end. */
static char *
first_line (const char *s)
{
  char *p = strndup (s, strcspn (s, "\r\n"));

  if (p == NULL)
    set_error (PB_E_FAIL, errno, "out of memory");
  return p;
}

static char *
passphrase_from_file (const char *path)
{
  CLEANUP_FREE char *buf = NULL;
  size_t len;
  char *p;

  if (read_file (path, &buf, &len) == -1) {
    pb_prefix_error ("passphrase file");
    return NULL;
  }
  p = first_line (buf);
  explicit_bzero (buf, len);
  return p;
}

/* Read one line from the terminal FD with echo off. */
static char *
tty_line (int fd, const char *prompt)
{
  struct termios old, quiet;
  char buf[PASSPHRASE_MAX];
  ssize_t n;
  char *p;

  if (tcgetattr (fd, &old) == -1)
    return NULL;
  quiet = old;
  quiet.c_lflag &= ~(tcflag_t) (ECHO | ECHONL);
  if (full_write (fd, prompt, strlen (prompt)) == -1 ||
      tcsetattr (fd, TCSAFLUSH, &quiet) == -1)
    return NULL;
  n = read (fd, buf, sizeof buf - 1);
  tcsetattr (fd, TCSAFLUSH, &old);
  full_write (fd, "\n", 1);
  if (n < 0)
    return NULL;
  buf[n] = '\0';
  p = first_line (buf);
  explicit_bzero (buf, sizeof buf);
  return p;
}

/* Ask on /dev/tty; CONFIRM asks twice and compares. */
static char *
passphrase_from_tty (const char *prompt, bool confirm, const char *why)
{
  int fd = open ("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  char *p = NULL, *again = NULL;

  if (fd == -1) {
    set_error (PB_E_KEY, 0, "%s: give --passphrase-file FILE or set "
               "PULLBACK_PASSPHRASE (there is no terminal to ask on)", why);
    return NULL;
  }
  p = tty_line (fd, prompt);
  if (p && confirm) {
    again = tty_line (fd, "Type it again: ");
    if (again == NULL || strcmp (p, again) != 0) {
      free_secret (p);
      p = NULL;
      set_error (PB_E_USAGE, 0, "the two passphrases differ");
    }
  }
  else if (p == NULL)
    set_error (PB_E_KEY, errno, "cannot read a passphrase from the terminal");
  free_secret (again);
  close (fd);
  return p;
}

char *
get_passphrase (const char *file, const char *env, const char *prompt,
                bool confirm, const char *why)
{
  const char *e = getenv (env);

  if (file)
    return passphrase_from_file (file);
  if (e && e[0])
    return first_line (e);
  return passphrase_from_tty (prompt, confirm, why);
}

/* The key file to use, or NULL for none. */
static const char *
key_file_of (const struct key_args *k)
{
  const char *e = getenv ("PULLBACK_KEY_FILE");

  if (k->key_file)
    return k->key_file;
  return e && e[0] ? e : NULL;
}

int
load_key (const struct key_args *k, struct store_key **key)
{
  const char *path = key_file_of (k);
  struct store_key_file_info info;
  CLEANUP_SECRET char *pass = NULL;
  char why[300];

  *key = NULL;
  if (path == NULL && k->passphrase_file) {
    set_error (PB_E_USAGE, 0, "--passphrase-file needs a key file "
               "(--key-file)");
    return -1;
  }
  if (path == NULL)
    return 0;
  if (store_key_file_info (path, &info) == -1)
    return -1;
  if (info.wrapped) {
    snprintf (why, sizeof why, "key file %s is protected by a passphrase",
              path);
    pass = get_passphrase (k->passphrase_file, "PULLBACK_PASSPHRASE",
                           "Passphrase: ", false, why);
    if (pass == NULL)
      return -1;
  }
  *key = store_key_load (path, pass);
  return *key ? 0 : -1;
}

struct pullback_repo *
open_repo (const char *dir, const struct key_args *k)
{
  struct store_key *key;
  struct pullback_repo *r;

  if (load_key (k, &key) == -1)
    return NULL;
  r = pullback_repo_open (dir, key);
  store_key_free (key);
  return r;
}

/* A new passphrase for key file PATH: from FILE, $ENV, or asked twice. */
char *
new_passphrase (const char *file, const char *env, const char *path)
{
  char why[300];
  char *p;

  snprintf (why, sizeof why, "a passphrase is needed for the new key file "
            "%s (or --no-passphrase)", path);
  p = get_passphrase (file, env, "New passphrase: ", true, why);
  if (p && p[0] == '\0') {
    free_secret (p);
    set_error (PB_E_USAGE, 0, "the passphrase is empty (use --no-passphrase "
               "for a key file without one)");
    return NULL;
  }
  return p;
}

void
warn_unwrapped (const char *path)
{
  warning ("key file %s is not protected by a passphrase: anyone who can "
           "read it can read every backup made with it", path);
}

struct store_key *
create_key_file (const struct new_key_args *n, const char *path)
{
  CLEANUP_SECRET char *pass = NULL;
  struct store_key *k;

  if (!n->no_passphrase &&
      (pass = new_passphrase (n->passphrase_file, "PULLBACK_PASSPHRASE",
                              path)) == NULL)
    return NULL;
  k = store_key_generate ();
  if (k == NULL || store_key_save (k, path, pass, n->log2n, false) == -1) {
    store_key_free (k);
    return NULL;
  }
  if (n->no_passphrase)
    warn_unwrapped (path);
  return k;
}

int
new_key_option (struct new_key_args *n, int opt, const char *arg)
{
  char *end;
  unsigned long v;

  switch (opt) {
  case OPT_NO_PASSPHRASE: n->no_passphrase = true; return 0;
  case OPT_PASSPHRASE_FILE:
    return option_once (&n->passphrase_file, "--passphrase-file", arg);
  case OPT_KDF_LOG2N:
    errno = 0;
    v = strtoul (arg, &end, 10);
    if (errno || *end || arg[0] < '0' || arg[0] > '9' ||
        v < STORE_KDF_MIN_LOG2N || v > STORE_KDF_MAX_LOG2N) {
      set_error (PB_E_USAGE, 0, "--kdf-log2n: '%s' is not a whole number "
                 "from %d to %d", arg, STORE_KDF_MIN_LOG2N, STORE_KDF_MAX_LOG2N);
      return -1;
    }
    n->log2n = v;
    return 0;
  }
  return unhandled_option (opt);
}

int
check_new_key_args (const struct new_key_args *n)
{
  if (n->no_passphrase && n->passphrase_file) {
    set_error (PB_E_USAGE, 0, "--no-passphrase and --passphrase-file "
               "contradict each other");
    return -1;
  }
  if (n->no_passphrase && n->log2n) {
    set_error (PB_E_USAGE, 0, "--kdf-log2n needs a passphrase (it sets how "
               "hard the passphrase is to guess)");
    return -1;
  }
  return 0;
}
