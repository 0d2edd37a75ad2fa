/* pullback - agent/agent.h: shared declarations of the pullback program.
 *
 * The agent is a thin layer over libpullback (reader/pullback.h): it parses
 * the command line, calls the library, prints the result as text or as one
 * JSON object, and turns the library's error class into the exit code
 * (docs/CLI.md).  Everything that decides how to back up, restore or verify
 * lives in the library; this header only describes commands, output
 * settings and the helpers the cmd-*.c files share.
 */
#ifndef PB_AGENT_H
#define PB_AGENT_H

#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json.h>

#include "pullback.h"

/* ---- Commands ---- */

struct command;

/* One invocation: which command runs and how it prints. */
struct cli {
  const struct command *cmd;  /* NULL before a command is chosen */
  bool json;                  /* --json: exactly one JSON object on stdout */
  bool quiet;                 /* --quiet: no progress, no text on success */
  bool progress;              /* draw a progress line on stderr */
};

struct command {
  const char *name;
  const char *summary;        /* one line for 'pullback --help' */
  const char *synopsis;       /* usage line(s), without "Usage: " */
  const char *help;           /* description and options, for --help */
  const struct option *longopts;  /* terminated by a zero entry */
  int min_args, max_args;     /* positional arguments accepted */
  const char *args_name;      /* what a missing positional is called */
  int (*run) (const struct command *cmd, int argc, char **argv);
};

extern const struct command cmd_init, cmd_backup, cmd_list, cmd_show,
  cmd_restore, cmd_verify, cmd_digest, cmd_forget, cmd_protect,
  cmd_unprotect, cmd_gc, cmd_stats, cmd_key, cmd_catalog;

/* getopt_long values.  Short options are not offered (except -h) so the
 * command lines in scripts stay self-describing. */
enum {
  OPT_HELP = 'h',
  OPT_JSON = 256, OPT_QUIET, OPT_REPO, OPT_VM, OPT_POINT, OPT_DISK,
  OPT_CHUNK_SIZE, OPT_CHECKPOINT, OPT_SINCE, OPT_BITMAP, OPT_FALLBACK_FULL,
  OPT_TO, OPT_FORMAT, OPT_FORCE,
  OPT_KEEP_LAST, OPT_KEEP_HOURLY, OPT_KEEP_DAILY, OPT_KEEP_WEEKLY,
  OPT_KEEP_MONTHLY, OPT_KEEP_YEARLY, OPT_DRY_RUN, OPT_GC,
  OPT_SAMPLE, OPT_SEED,
  /* Encryption */
  OPT_KEY_FILE, OPT_PASSPHRASE_FILE, OPT_NEW_PASSPHRASE_FILE,
  OPT_NO_PASSPHRASE, OPT_ENCRYPT, OPT_KDF_LOG2N, OPT_PAPER,
  /* TLS */
  OPT_TLS, OPT_TLS_CERTS, OPT_TLS_PSK, OPT_TLS_USERNAME,
  OPT_RETRIES, OPT_THREADS, OPT_REQUESTS, OPT_CONNECTIONS,
};

#define OPTION_HELP  { "help", no_argument, NULL, OPT_HELP }
#define OPTION_JSON  { "json", no_argument, NULL, OPT_JSON }
#define OPTION_QUIET { "quiet", no_argument, NULL, OPT_QUIET }
#define OPTION_REPO  { "repo", required_argument, NULL, OPT_REPO }
#define OPTION_VM    { "vm", required_argument, NULL, OPT_VM }
#define OPTION_POINT { "point", required_argument, NULL, OPT_POINT }
#define OPTION_END   { NULL, 0, NULL, 0 }
/* Every command that opens a repository takes these two. */
#define OPTIONS_KEY \
  { "key-file", required_argument, NULL, OPT_KEY_FILE }, \
  { "passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE }
#define HELP_KEY \
  "  --key-file FILE    the key of an encrypted repository (default:\n" \
  "                     $PULLBACK_KEY_FILE)\n" \
  "  --passphrase-file FILE  the key file's passphrase, first line (default:\n" \
  "                     $PULLBACK_PASSPHRASE, else asked on the terminal)\n"

/* ---- options.c ---- */

/* Called by parse_options for each option other than --help, --json and
 * --quiet.  Returns 0, or -1 with an error recorded (class PB_E_USAGE). */
typedef int (*option_fn) (void *ctx, int opt, const char *arg);

/* For an option_fn: store a single-valued option, refusing it twice (a
 * script that says --repo twice is wrong, not "the last one wins"). */
int option_once (const char **slot, const char *label, const char *arg);
/* For an option_fn: an option in the table the function does not know. */
int unhandled_option (int opt);

/* Returned by parse_options when the command should go on. */
#define OPTS_CONTINUE (-1)

/* Parse the options of CMD (ARGV[0] is the command name) into C and,
 * through FN, into CTX.  Returns OPTS_CONTINUE with *FIRST set to the index
 * of the first positional argument, or the exit code the command must
 * return (0 after --help, PB_E_USAGE after a reported usage error). */
int parse_options (const struct command *cmd, struct cli *c,
                   int argc, char **argv, option_fn fn, void *ctx,
                   int *first);

/* A --point given as ID or "latest", checked strictly and stored in
 * canonical form (no leading zeros) for pullback_resolve_point.  SPEC
 * starts empty; a second --point is refused. */
#define POINT_SPEC_MAX 24
int parse_point_spec (const char *arg, char spec[POINT_SPEC_MAX]);

/* A --threads value: 1 to MAX_THREADS. */
#define MAX_THREADS 64
int parse_threads (const char *arg, unsigned *out);
/* A whole number from 1 to MAX, for option OPT (named in the error). */
int parse_count (const char *opt, const char *arg, unsigned max,
                 unsigned *out);

/* A --chunk-size value: parse_size plus a range check for uint32_t. */
int parse_chunk_size (const char *arg, uint32_t *out);

/* NAME=VALUE arguments (--disk vda=URI, --bitmap vda=BITMAP).  NAME is a
 * copy, VALUE points into the argument. */
struct pair {
  char *name;
  const char *value;
};

struct pair_list {
  struct pair *v;
  size_t n;
};

/* Split ARG of option OPT (e.g. "--disk") and append it; FORM is what
 * was expected, for messages ("NAME=URI").  Fails with PB_E_USAGE on a
 * missing '=', an empty name or value, or a name already in L. */
int pair_list_add (struct pair_list *l, const char *opt, const char *form,
                   const char *arg);
/* The pair named NAME, or NULL. */
const struct pair *pair_list_find (const struct pair_list *l, const char *name);
void pair_list_free (struct pair_list *l);

/* The command called NAME, or NULL. */
const struct command *find_command (const char *name);

void print_help (const struct command *cmd);     /* NULL: general help */
void print_version (void);

/* ---- key.c: keys of encrypted repositories ---- */
struct key_args {
  const char *key_file;         /* --key-file (else $PULLBACK_KEY_FILE) */
  const char *passphrase_file;  /* --passphrase-file */
};

/* For an option_fn: OPT_KEY_FILE or OPT_PASSPHRASE_FILE. */
int key_option (struct key_args *k, int opt, const char *arg);
#define CASE_KEY_OPTIONS(k) \
  case OPT_KEY_FILE: case OPT_PASSPHRASE_FILE: return key_option ((k), opt, arg)

/* Load the key K names into *KEY (NULL, and 0, if it names none), asking
 * for its passphrase if it has one.  -1 with an error recorded. */
int load_key (const struct key_args *k, struct store_key **key);
/* pullback_repo_open with the key K names. */
struct pullback_repo *open_repo (const char *dir, const struct key_args *k);

/* A passphrase from FILE (its first line) if given, else from the
 * environment variable ENV, else asked on the terminal with PROMPT (twice
 * if CONFIRM).  WHY starts the error when there is no terminal.  Free
 * with free_secret, which wipes it. */
char *get_passphrase (const char *file, const char *env, const char *prompt,
                      bool confirm, const char *why);
void free_secret (char *s);
char *new_passphrase (const char *file, const char *env, const char *path);
void warn_unwrapped (const char *path);

/* Options of commands that make a new key file (init --encrypt, key
 * create, key import). */
struct new_key_args {
  bool no_passphrase;           /* --no-passphrase */
  const char *passphrase_file;  /* --passphrase-file */
  unsigned log2n;               /* --kdf-log2n, 0 = default */
};
int new_key_option (struct new_key_args *n, int opt, const char *arg);
/* Contradictions among them: PB_E_USAGE. */
int check_new_key_args (const struct new_key_args *n);
/* A new random key, saved to PATH (which must not exist), wrapped with a
 * new passphrase unless --no-passphrase (then with a warning). */
struct store_key *create_key_file (const struct new_key_args *n,
                                   const char *path);
#define OPTIONS_NEW_KEY \
  { "no-passphrase", no_argument, NULL, OPT_NO_PASSPHRASE }, \
  { "passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE }, \
  { "kdf-log2n", required_argument, NULL, OPT_KDF_LOG2N }
#define HELP_NEW_KEY \
  "  --passphrase-file FILE  the new passphrase, first line (default:\n" \
  "                     $PULLBACK_PASSPHRASE, else asked twice on the terminal)\n" \
  "  --no-passphrase    store the key unprotected (mode 0600), for\n" \
  "                     unattended jobs: whoever reads the file has the key\n" \
  "  --kdf-log2n N      scrypt cost: N = 2^N, memory 2^N KiB (14 to 20;\n" \
  "                     default 16, 64 MiB)\n"
void cleanup_secret (char **s);
#define CLEANUP_SECRET __attribute__ ((cleanup (cleanup_secret)))

/* ---- cmd-gc.c (shared with forget --gc) ---- */
struct json_object *json_gc (const struct pullback_gc_result *g);
void print_gc_text (const struct pullback_gc_result *g);

/* ---- output.c ---- */

/* Print "pullback: MESSAGE" for the recorded error on stderr (and, with
 * --json, the error object on stdout).  Returns the exit code. */
int report_error (const struct cli *c);
/* Record a usage error, report it with the usage synopsis, return 2. */
int usage_error (const struct cli *c, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* Report the usage error already recorded.  Returns PB_E_USAGE. */
int report_usage (const struct cli *c);
/* Print a warning on stderr ("pullback: warning: ..."). */
void warning (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* Print OBJ as one line on stdout and drop the reference. */
void print_json (struct json_object *obj);

/* JSON values shared by several commands.  json_set_str stores NULL as
 * null. */
void json_set_str (struct json_object *o, const char *key, const char *s);
void json_set_u64 (struct json_object *o, const char *key, uint64_t v);
struct json_object *json_hex (const uint8_t *id, size_t len);
struct json_object *json_id_or_null (int64_t id);
struct json_object *json_time (int64_t t);
struct json_object *json_seconds (double seconds);
struct json_object *json_point (const struct catalog_point *p);

/* Sizes for humans: "256 KiB", "1.5 GiB" or, COMPACT, "256.0K", "1.5G". */
#define HUMAN_SIZE_MAX 32
const char *human_size (uint64_t bytes, bool compact,
                        char buf[HUMAN_SIZE_MAX]);
/* "point" / "points" */
const char *plural (uint64_t n, const char *one, const char *many);

/* ---- progress.c ---- */

/* One updating line on stderr, fed by pullback_progress_fn callbacks
 * (which may come from several library threads). */
#define PROGRESS_DISKS 16

struct progress {
  bool enabled;
  const char *verb;           /* "backing up", "restoring", "verifying" */
  pthread_mutex_t lock;
  double last;                /* when the line was last drawn, 0 = never */
  size_t shown;               /* characters on the line now */
  size_t columns;             /* terminal width */
  size_t ndisks;
  struct {                    /* where each disk started, for its rate */
    char name[64];
    double start;
    uint64_t start_done;
  } disks[PROGRESS_DISKS];
};

void progress_start (struct progress *p, const struct cli *c,
                     const char *verb);
void progress_update (void *opaque, const char *disk,
                      uint64_t done, uint64_t total);
/* Clear the line so that the final output starts on a clean line. */
void progress_end (struct progress *p);

/* ---- Scope-bound cleanup of library objects ---- */

void cleanup_repo (struct pullback_repo **r);
void cleanup_point (struct catalog_point **p);
#define CLEANUP_REPO __attribute__ ((cleanup (cleanup_repo)))
#define CLEANUP_POINT __attribute__ ((cleanup (cleanup_point)))

#endif /* PB_AGENT_H */
