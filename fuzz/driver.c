/* pullback - fuzz/driver.c: main() of a fuzz target built without
 * libFuzzer (the normal build; make check runs these binaries).
 *
 *   fuzz/fuzz-NAME [CORPUS-DIR-OR-FILE...]
 *
 * Without arguments the corpus is $abs_top_srcdir/fuzz/corpus/NAME (or
 * ./fuzz/corpus/NAME).  The driver
 *  1. replays every seed file (sorted by name, dot files skipped): a seed
 *     named "valid-*" must be accepted by the target (fuzz_accept), else
 *     the run fails, which proves the target reaches the decoder's body;
 *     one named "reject-*" must be refused (a malformed input the decoder
 *     must catch); "crash-*" files are regression inputs that once crashed
 *     it (accepted or not);
 *  2. runs FUZZ_RUNS (default 3000) mutations of the seeds: bit flips,
 *     byte changes, truncations, inserts, erasures, duplicated ranges,
 *     interesting values and splices of two seeds, from a xorshift PRNG
 *     seeded with FUZZ_SEED (default 1), so every run is the same.
 * Each input is passed in a malloc'd buffer of exactly its size, so that
 * valgrind or the sanitizers see any read past its end.  If the target
 * crashes, the input is written to ./fuzz-crash-NAME first (replay it
 * with the same binary, or with the libFuzzer build).
 *
 * Exit status: 0, or 1 if a valid seed was refused, a reject-* seed was
 * accepted, the corpus is empty or has no valid seed.  A libFuzzer build is the tool for long runs
 * (README.md, "Fuzzing").
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#define DEFAULT_RUNS 3000
#define MAX_EXTRA 256   /* mutations may grow an input by this much */

struct seed {
  char *name;         /* file name, for messages */
  uint8_t *data;
  size_t len;
};

static struct seed *seeds;
static size_t nseeds;
static const char *target;   /* "chunk" for fuzz/fuzz-chunk */

/* The input being run, for the crash handler. */
static const uint8_t *current;
static size_t current_len;
static char crash_path[256];

static void
die (const char *what, const char *arg)
{
  fprintf (stderr, "fuzz-%s: %s%s%s\n", target, what, arg ? ": " : "",
           arg ? arg : "");
  exit (1);
}

/* ---- the corpus ---- */

static void
add_seed (const char *path, const char *name)
{
  FILE *f = fopen (path, "rb");
  struct seed *s;
  long len;

  if (f == NULL || fseek (f, 0, SEEK_END) == -1 || (len = ftell (f)) < 0 ||
      fseek (f, 0, SEEK_SET) == -1)
    die (strerror (errno), path);
  seeds = realloc (seeds, (nseeds + 1) * sizeof *seeds);
  if (seeds == NULL)
    die ("out of memory", NULL);
  s = &seeds[nseeds++];
  s->name = strdup (name);
  s->len = len;
  s->data = malloc (len ? len : 1);
  if (s->name == NULL || s->data == NULL)
    die ("out of memory", NULL);
  if (fread (s->data, 1, len, f) != (size_t) len)
    die ("short read", path);
  fclose (f);
}

static void
add_dir (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  char path[4096];
  struct stat st;

  if (d == NULL)
    die (strerror (errno), dir);
  while ((e = readdir (d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat (path, &st) == 0 && S_ISREG (st.st_mode))
      add_seed (path, e->d_name);
  }
  closedir (d);
}

static void
add_arg (const char *arg)
{
  struct stat st;
  const char *slash = strrchr (arg, '/');

  if (stat (arg, &st) == -1)
    die (strerror (errno), arg);
  if (S_ISDIR (st.st_mode))
    add_dir (arg);
  else
    add_seed (arg, slash ? slash + 1 : arg);
}

static int
by_name (const void *a, const void *b)
{
  return strcmp (((const struct seed *) a)->name,
                 ((const struct seed *) b)->name);
}

/* ---- running one input ---- */

static void
on_crash (int sig)
{
  int fd = open (crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

  if (fd >= 0) {
    ssize_t n = write (fd, current, current_len);

    (void) n;   /* nothing more can be done here */
    close (fd);
  }
  signal (sig, SIG_DFL);
  raise (sig);
}

/* Run the target on a private copy of exactly LEN bytes.  True if it
 * accepted the input. */
static bool
run (const uint8_t *data, size_t len)
{
  uint8_t *copy = malloc (len ? len : 1);
  unsigned long before = fuzz_accepted;

  if (copy == NULL)
    die ("out of memory", NULL);
  memcpy (copy, data, len);
  current = copy;
  current_len = len;
  LLVMFuzzerTestOneInput (copy, len);
  current = NULL;
  free (copy);
  return fuzz_accepted != before;
}

/* ---- mutations ---- */

static uint64_t rng_state;

static uint64_t
rnd (uint64_t bound)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return bound ? rng_state % bound : 0;
}

/* Values that tend to sit on the edges of length and flag checks. */
static const uint32_t interesting[] = {
  0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff,
  0x80000000u, 0xffffffffu, 24, 28, 16, 32, 256, 65536
};

static void
put_interesting (uint8_t *buf, size_t len)
{
  uint32_t v = interesting[rnd (sizeof interesting / sizeof interesting[0])];
  size_t width = (size_t) 1 << rnd (3), pos, i;

  if (len < width)
    return;
  pos = rnd (len - width + 1);
  for (i = 0; i < width; i++)
    buf[pos + i] = v >> (8 * i);
}

/* One mutation of BUF (*LEN bytes, capacity CAP) in place. */
static void
mutate_once (uint8_t *buf, size_t *len, size_t cap)
{
  size_t n = *len, pos = rnd (n + 1), k;
  const struct seed *other;

  switch (rnd (8)) {
  case 0:                       /* flip a bit */
    if (n)
      buf[rnd (n)] ^= 1u << rnd (8);
    break;
  case 1:                       /* set a byte */
    if (n)
      buf[rnd (n)] = rnd (256);
    break;
  case 2:                       /* truncate */
    *len = rnd (n + 1);
    break;
  case 3:                       /* insert random bytes */
    k = 1 + rnd (16);
    if (n + k > cap)
      break;
    memmove (buf + pos + k, buf + pos, n - pos);
    for (size_t i = 0; i < k; i++)
      buf[pos + i] = rnd (256);
    *len = n + k;
    break;
  case 4:                       /* erase a range */
    k = rnd (n - pos + 1);
    memmove (buf + pos, buf + pos + k, n - pos - k);
    *len = n - k;
    break;
  case 5:                       /* duplicate a range */
    k = rnd (n - pos + 1);
    if (n + k > cap)
      break;
    memmove (buf + pos + k, buf + pos, n - pos);
    *len = n + k;
    break;
  case 6:                       /* an interesting value */
    put_interesting (buf, n);
    break;
  default:                      /* splice: our head, another seed's tail */
    other = &seeds[rnd (nseeds)];
    k = rnd (other->len + 1);
    if (pos + (other->len - k) > cap)
      break;
    memcpy (buf + pos, other->data + k, other->len - k);
    *len = pos + (other->len - k);
    break;
  }
}

/* RUNS mutated inputs; returns how many the target accepted. */
static unsigned long
mutations (unsigned long runs)
{
  size_t cap = 0, i, len;
  unsigned long r, accepted = 0;
  uint8_t *buf;
  unsigned steps;

  for (i = 0; i < nseeds; i++)
    cap = seeds[i].len > cap ? seeds[i].len : cap;
  cap = 2 * cap + MAX_EXTRA;
  buf = malloc (cap);
  if (buf == NULL)
    die ("out of memory", NULL);
  for (r = 0; r < runs; r++) {
    const struct seed *s = &seeds[rnd (nseeds)];

    memcpy (buf, s->data, s->len);
    len = s->len;
    for (steps = 1 + rnd (4); steps > 0; steps--)
      mutate_once (buf, &len, cap);
    accepted += run (buf, len);
  }
  free (buf);
  return accepted;
}

/* ---- main ---- */

static const char *
target_name (const char *argv0)
{
  const char *base = strrchr (argv0, '/');

  base = base ? base + 1 : argv0;
  if (strncmp (base, "lt-", 3) == 0)     /* libtool's wrapper */
    base += 3;
  return strncmp (base, "fuzz-", 5) == 0 ? base + 5 : base;
}

static unsigned long
env_number (const char *name, unsigned long dflt)
{
  const char *s = getenv (name);
  char *end;
  unsigned long v;

  if (s == NULL || *s == '\0')
    return dflt;
  errno = 0;
  v = strtoul (s, &end, 10);
  if (errno || *end)
    die ("not a number", name);
  return v;
}

/* Replay every seed; returns how many valid-* seeds there are. */
static size_t
replay (void)
{
  size_t i, valid = 0;

  for (i = 0; i < nseeds; i++) {
    bool ok = run (seeds[i].data, seeds[i].len);
    if (strncmp (seeds[i].name, "valid-", 6) == 0) {
      valid++;
      if (!ok)
        die ("a valid seed was not accepted", seeds[i].name);
    }
    if (strncmp (seeds[i].name, "reject-", 7) == 0 && ok)
      die ("a reject-* seed was accepted", seeds[i].name);
  }
  return valid;
}

int
main (int argc, char **argv)
{
  char dflt[4096];
  const char *top = getenv ("abs_top_srcdir");
  unsigned long runs, accepted;
  size_t valid;
  int i;

  target = target_name (argv[0]);
  snprintf (crash_path, sizeof crash_path, "fuzz-crash-%s", target);
  if (argc == 1) {
    snprintf (dflt, sizeof dflt, "%s/fuzz/corpus/%s", top ? top : ".", target);
    add_arg (dflt);
  }
  for (i = 1; i < argc; i++)
    add_arg (argv[i]);
  if (nseeds == 0)
    die ("the corpus is empty", NULL);
  qsort (seeds, nseeds, sizeof *seeds, by_name);
  signal (SIGSEGV, on_crash);
  signal (SIGABRT, on_crash);
  signal (SIGBUS, on_crash);
  signal (SIGFPE, on_crash);
  signal (SIGILL, on_crash);

  valid = replay ();
  if (valid == 0)
    die ("the corpus has no valid-* seed", NULL);
  runs = env_number ("FUZZ_RUNS", DEFAULT_RUNS);
  rng_state = env_number ("FUZZ_SEED", 1) | 1;
  accepted = mutations (runs);
  printf ("fuzz-%s: %zu seeds (%zu valid, all accepted), %lu mutations, "
          "%lu accepted\n", target, nseeds, valid, runs, accepted);
  for (i = 0; (size_t) i < nseeds; i++) {
    free (seeds[i].name);
    free (seeds[i].data);
  }
  free (seeds);
  return 0;
}
