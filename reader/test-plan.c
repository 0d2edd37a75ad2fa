/* pullback - reader/test-plan.c: the NBD layer against real servers.
 *
 * Builds a qcow2 with qemu-img/qemu-io whose layout we know (data, holes,
 * a zero write, a discard, a persistent dirty bitmap recording the later
 * writes), exports it with qemu-nbd and checks reader_plan_next's runs
 * against a model of what was written, reader_read_chunk's bytes against a
 * raw copy made by qemu-img convert, and the error classes of the ways a
 * connection can fail.  Then the write side: a new qcow2 written through
 * reader_open_image must compare equal to the expected content and stay
 * thin where it was zeroed, and a file held by a running qemu-nbd must be
 * refused.  nbdkit, if installed, supplies a server whose holes do not
 * read as zero and one without structured replies (no base:allocation).
 *
 * Skips (77) only when the QEMU tools are missing.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "util.h"
#include "nbd.h"
#include "test.h"

#define KiB 1024ull
#define MiB (1024 * KiB)
#define SIZE (18 * MiB + 64 * KiB)    /* a partial last chunk */

static char tmp[] = "/tmp/pb-test-plan.XXXXXX";
static char uri[256];

/* What the layout writes: phase 1 before the bitmap, phase 2 after. */
struct op { int phase; char kind; uint64_t off, len; int pattern; };
static const struct op ops[] = {
  { 1, 'W', 0, 4 * MiB, 0x11 },
  { 1, 'W', 8 * MiB, 1 * MiB, 0x22 },
  { 2, 'W', 1 * MiB, 64 * KiB, 0x33 },               /* aligned */
  { 2, 'W', 2662400, 8 * KiB, 0x44 },                /* unaligned */
  { 2, 'W', 3350528, 128 * KiB, 0x55 },              /* crosses chunks */
  { 2, 'Z', 8 * MiB + 256 * KiB, 256 * KiB, 0 },     /* zeroes over data */
  { 2, 'D', 8 * MiB + 576 * KiB, 64 * KiB, 0 },      /* discard in data */
  { 2, 'W', 12 * MiB, 64 * KiB, 0x66 },              /* data in a hole */
  { 2, 'W', SIZE - 4 * KiB, 4 * KiB, 0x77 },         /* in the last chunk */
};
#define NOPS (sizeof ops / sizeof ops[0])

static uint8_t live[SIZE / 512];   /* sector holds written data */
static uint8_t *raw;               /* qemu-img convert -O raw of the image */

static int
sh (const char *fmt, ...)
{
  char cmd[4096];
  va_list ap;
  int r;

  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  r = system (cmd);
  return WIFEXITED (r) ? WEXITSTATUS (r) : 255;
}

static void
kill_pidfile (const char *name)
{
  char path[256];
  FILE *f;
  int pid;

  snprintf (path, sizeof path, "%s/%s", tmp, name);
  f = fopen (path, "r");
  if (f == NULL)
    return;
  if (fscanf (f, "%d", &pid) == 1 && pid > 0) {
    kill (pid, SIGTERM);
    /* Wait until it is gone: its locks must be released. */
    for (int i = 0; i < 500 && kill (pid, 0) == 0; i++)
      usleep (10000);
    /* A qemu-nbd that ignored SIGTERM was once found still running (and
     * holding the image lock) long after the test: make sure. */
    if (kill (pid, 0) == 0) {
      kill (pid, SIGKILL);
      for (int i = 0; i < 500 && kill (pid, 0) == 0; i++)
        usleep (10000);
    }
  }
  fclose (f);
  unlink (path);
}

static void
cleanup (void)
{
  kill_pidfile ("layout.pid");
  kill_pidfile ("rw.pid");
  kill_pidfile ("kit1.pid");
  kill_pidfile ("kit2.pid");
  sh ("rm -rf %s", tmp);
}

/* ---- The layout image ---- */

static void
model_ops (void)
{
  for (size_t i = 0; i < NOPS; i++)
    for (uint64_t s = ops[i].off / 512; s < (ops[i].off + ops[i].len) / 512; s++)
      live[s] = ops[i].kind == 'W';
}

static void
make_layout (void)
{
  char cmds[2][2048] = { "", "" };

  for (size_t i = 0; i < NOPS; i++) {
    char *c = cmds[ops[i].phase - 1];
    size_t n = strlen (c);
    if (ops[i].kind == 'W')
      snprintf (c + n, 2048 - n, " -c 'write -P %d %" PRIu64 " %" PRIu64 "'",
                ops[i].pattern, ops[i].off, ops[i].len);
    else
      snprintf (c + n, 2048 - n, " -c '%s %" PRIu64 " %" PRIu64 "'",
                ops[i].kind == 'Z' ? "write -z" : "discard", ops[i].off,
                ops[i].len);
  }
  REQUIRE (sh ("qemu-img create -q -f qcow2 %s/layout.qcow2 %llu", tmp,
             SIZE) == 0);
  REQUIRE (sh ("qemu-io -f qcow2 %s %s/layout.qcow2 >/dev/null", cmds[0],
             tmp) == 0);
  REQUIRE (sh ("qemu-img bitmap --add --enable -f qcow2 %s/layout.qcow2 bm0",
             tmp) == 0);
  REQUIRE (sh ("qemu-io -d unmap -f qcow2 %s %s/layout.qcow2 >/dev/null",
             cmds[1], tmp) == 0);
  REQUIRE (sh ("qemu-img convert -f qcow2 -O raw %s/layout.qcow2 %s/layout.raw",
             tmp, tmp) == 0);
  REQUIRE (sh ("qemu-nbd -r -f qcow2 -B bm0 -t -e 8 --socket=%s/layout.sock --fork "
             "--pid-file=%s/layout.pid %s/layout.qcow2", tmp, tmp, tmp) == 0);
  snprintf (uri, sizeof uri, "nbd+unix:///?socket=%s/layout.sock", tmp);
  model_ops ();
}

static void
load_raw (void)
{
  char path[256];
  FILE *f;

  snprintf (path, sizeof path, "%s/layout.raw", tmp);
  raw = malloc (SIZE);
  f = fopen (path, "r");
  REQUIRE (raw != NULL && f != NULL && fread (raw, 1, SIZE, f) == SIZE);
  fclose (f);
}

/* ---- The model ---- */

static uint64_t
live_bytes (uint64_t start, uint64_t end)
{
  uint64_t n = 0;

  for (uint64_t s = start / 512; s < end / 512; s++)
    n += live[s] ? 512 : 0;
  return n;
}

static bool
dirty (uint64_t start, uint64_t end)
{
  for (size_t i = 0; i < NOPS; i++)
    if (ops[i].phase == 2 && ops[i].off < end && ops[i].off + ops[i].len > start)
      return true;
  return false;
}

static enum reader_kind
expected (uint32_t cs, uint64_t i, bool incr, uint64_t parent)
{
  uint64_t start = i * cs, end = MIN (start + cs, SIZE);

  if (incr && i < MIN (parent, SIZE) / cs && !dirty (start, end))
    return READER_KEEP;
  return live_bytes (start, end) ? READER_READ : READER_ZERO;
}

/* Expand the plan's runs into KINDS, checking order and maximality (the
 * disk fits in one window, so neighbouring runs must differ). */
static void
collect (struct reader_conn *c, uint32_t cs, const char *bitmap,
         uint64_t parent, enum reader_kind *kinds)
{
  struct reader_plan *p = reader_plan_new (c, cs, bitmap, parent);
  struct reader_run run, prev = { 0, 0, 0 };
  uint64_t next = 0;
  int r;

  REQUIRE (p != NULL);
  while ((r = reader_plan_next (p, &run)) == 1) {
    REQUIRE (run.first == next && run.count >= 1);
    REQUIRE (run.kind != prev.kind);
    for (uint64_t i = 0; i < run.count; i++)
      kinds[run.first + i] = run.kind;
    next += run.count;
    prev = run;
  }
  REQUIRE (r == 0 && next == div_round_up (SIZE, cs));
  REQUIRE (reader_plan_next (p, &run) == 0);
  reader_plan_free (p);
}

static void
check_plan (struct reader_conn *c, uint32_t cs, const char *bitmap,
            uint64_t parent)
{
  uint64_t n = div_round_up (SIZE, cs);
  enum reader_kind *kinds = malloc (n * sizeof *kinds);

  REQUIRE (kinds != NULL);
  collect (c, cs, bitmap, parent, kinds);
  for (uint64_t i = 0; i < n; i++)
    if (kinds[i] != expected (cs, i, bitmap != NULL, parent)) {
      fprintf (stderr, "chunk %" PRIu64 " (size %" PRIu32 ", parent %" PRIu64
               "): kind %d, expected %d\n", i, cs, parent, kinds[i],
               expected (cs, i, bitmap != NULL, parent));
      REQUIRE (!"plan matches the model");
    }
  free (kinds);
}

/* The model itself, for the record: which chunks are not KEEP. */
static void
check_model (void)
{
  static const uint64_t dirty256[] = { 4, 10, 12, 13, 33, 34, 48, 72 };
  static const uint64_t dirty1m[] = { 1, 2, 3, 8, 12, 18 };
  size_t j = 0;

  for (uint64_t i = 0; i < div_round_up (SIZE, 256 * KiB); i++)
    if (expected (256 * KiB, i, true, SIZE) != READER_KEEP)
      REQUIRE (j < 8 && dirty256[j++] == i);
  REQUIRE (j == 8 && expected (256 * KiB, 33, true, SIZE) == READER_ZERO);
  for (j = 0; j < 6; j++)
    REQUIRE (expected (MiB, dirty1m[j], true, SIZE) == READER_READ);
  REQUIRE (expected (MiB, 0, true, SIZE) == READER_KEEP);
}

/* Every READ and ZERO chunk's bytes, and what had to be fetched. */
static void
check_reads (struct reader_conn *c, uint32_t cs, const char *bitmap)
{
  struct reader_plan *p = reader_plan_new (c, cs, bitmap, SIZE);
  struct reader_run run;
  uint8_t *buf = malloc (cs);
  uint64_t got;

  REQUIRE (p != NULL && buf != NULL);
  while (reader_plan_next (p, &run) == 1) {
    for (uint64_t i = run.first; i < run.first + run.count; i++) {
      uint64_t start = i * cs, len = MIN (cs, SIZE - start);
      if (run.kind == READER_KEEP)
        continue;
      memset (buf, 0xee, cs);
      REQUIRE (reader_read_chunk (p, i, buf, len, &got) == 0);
      REQUIRE (memcmp (buf, raw + start, len) == 0);
      REQUIRE (got <= len && got >= live_bytes (start, start + len));
      if (run.kind == READER_ZERO)
        REQUIRE (got == 0);
      if (live_bytes (start, start + len) == len)
        REQUIRE (got == len);
    }
  }
  /* Chunk 48 of 256 KiB: 64 KiB of data in a hole; only that is read. */
  if (cs == 256 * KiB) {
    REQUIRE (reader_read_chunk (p, 48, buf, cs, &got) == 0);
    REQUIRE (got >= 64 * KiB && got < cs);
  }
  REQUIRE (reader_read_chunk (p, div_round_up (SIZE, cs), buf, cs, &got) == -1);
  REQUIRE (pb_get_errclass () == PB_E_USAGE);
  free (buf);
  reader_plan_free (p);
}

static void
test_layout (void)
{
  struct reader_conn *full = reader_connect (uri, NULL);
  struct reader_conn *incr = reader_connect (uri, "bm0");
  char *list;

  REQUIRE (full != NULL && incr != NULL);
  REQUIRE (reader_size (full) == SIZE && reader_has_allocation (full));
  REQUIRE (reader_max_request (full) > 0 && reader_max_request (full) <= 4 * MiB);
  list = reader_list_contexts (incr);
  REQUIRE (list && strstr (list, "base:allocation")
         && strstr (list, "qemu:dirty-bitmap:bm0"));
  free (list);
  check_model ();
  for (uint32_t cs = 64 * KiB; cs <= 4 * MiB; cs *= 4) {
    check_plan (full, cs, NULL, 0);
    check_plan (incr, cs, "bm0", SIZE);
    check_plan (incr, cs, "qemu:dirty-bitmap:bm0", SIZE);
    check_plan (incr, cs, "bm0", SIZE - 300 * KiB);   /* grown since */
    check_plan (incr, cs, "bm0", SIZE + 5 * MiB);     /* shrunk since */
    check_plan (incr, cs, "bm0", 0);
    check_reads (full, cs, NULL);
    check_reads (incr, cs, "bm0");
  }
  check_plan (full, 1 * MiB, NULL, 0);
  REQUIRE (reader_plan_new (full, 256 * KiB, "bm0", SIZE) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_BITMAP);
  REQUIRE (reader_plan_new (full, 100000, NULL, 0) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_USAGE);
  reader_close (full);
  reader_close (incr);
}

/* ---- Connection errors ---- */

static void
test_errors (void)
{
  char bad[512];
  struct reader_conn *c;

  REQUIRE (reader_connect (uri, "nosuch") == NULL);
  REQUIRE (pb_get_errclass () == PB_E_BITMAP);
  REQUIRE (strstr (pb_get_error (), "qemu:dirty-bitmap:nosuch"));
  REQUIRE (strstr (pb_get_error (), "offers: base:allocation"));
  REQUIRE (strstr (pb_get_error (), "qemu:dirty-bitmap:bm0"));
  REQUIRE (reader_connect ("garbage", NULL) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_USAGE);
  REQUIRE (reader_connect ("nbd://[bad", NULL) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_USAGE);
  snprintf (bad, sizeof bad, "nbd+unix:///?socket=%s/nosuch.sock", tmp);
  REQUIRE (reader_connect (bad, NULL) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_NBD && strstr (pb_get_error (), bad));
  snprintf (bad, sizeof bad, "nbd+unix:///nosuch?socket=%s/layout.sock", tmp);
  REQUIRE (reader_connect (bad, NULL) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_NBD);
  REQUIRE (reader_open_image ("/nonexistent/x.qcow2", NULL, false) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_IO);
  REQUIRE (reader_open_image ("/nonexistent/x.qcow2", "vmdk", false) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_USAGE);
  /* qemu-nbd's own message, not a closed socket. */
  REQUIRE (reader_open_image ("/nonexistent/x.qcow2", "qcow2", false) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_IO && strstr (pb_get_error (), "Could not open"));
  REQUIRE (reader_open_image ("/nonexistent/x.qcow2", "qcow2", true) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_TARGET);
  /* Relative names that look like options or protocols. */
  REQUIRE (chdir (tmp) == 0 && sh ("qemu-img create -q -f raw ./-x:y 1M") == 0);
  REQUIRE ((c = reader_open_image ("-x:y", NULL, false)) != NULL);
  REQUIRE (reader_size (c) == MiB);
  reader_close (c);
  reader_close (NULL);
  reader_plan_free (NULL);
}

/* The same image opened read-only through reader_open_image (digest). */
static void
test_open_readonly (void)
{
  char path[256];
  struct reader_conn *c;

  snprintf (path, sizeof path, "%s/layout.qcow2", tmp);
  c = reader_open_image (path, NULL, false);
  REQUIRE (c != NULL && reader_size (c) == SIZE && reader_has_allocation (c));
  check_plan (c, 256 * KiB, NULL, 0);
  check_reads (c, 256 * KiB, NULL);
  REQUIRE (reader_pwrite (c, "x", 1, 0) == -1 && pb_get_errclass () == PB_E_NBD);
  reader_close (c);
}

/* ---- Writing ---- */

/* Does qemu-img map show [START, END) as unallocated (no data, no host
 * offset)? */
static bool
unallocated (const char *img, uint64_t start, uint64_t end)
{
  char cmd[512], line[512];
  FILE *f;
  bool ok = true;
  unsigned long long s, l;

  snprintf (cmd, sizeof cmd, "qemu-img map -f qcow2 --output=json %s", img);
  f = popen (cmd, "r");
  REQUIRE (f != NULL);
  while (fgets (line, sizeof line, f)) {
    char *p = strstr (line, "\"start\":");
    char *q = strstr (line, "\"length\":");
    if (!p || !q || sscanf (p, "\"start\": %llu", &s) != 1
        || sscanf (q, "\"length\": %llu", &l) != 1)
      continue;
    if (s < end && s + l > start
        && (strstr (line, "\"data\": true") || strstr (line, "\"offset\"")))
      ok = false;
  }
  REQUIRE (pclose (f) == 0);
  return ok;
}

static void
test_write (void)
{
  char img[256], exp[256];
  const uint64_t size = 32 * MiB;
  uint8_t *want = calloc (1, size);
  struct reader_conn *c;
  struct stat st;
  FILE *f;

  snprintf (img, sizeof img, "%s/new.qcow2", tmp);
  snprintf (exp, sizeof exp, "%s/new.raw", tmp);
  REQUIRE (want && sh ("qemu-img create -q -f qcow2 %s 32M", img) == 0);
  c = reader_open_image (img, NULL, true);
  REQUIRE (c != NULL && reader_size (c) == size);
  memset (want, 0x5a, 8 * MiB);
  memset (want + 16 * MiB, 0xa5, 9 * MiB);        /* split in requests */
  memset (want + 5 * MiB + 4 * KiB, 0xc3, 100);
  REQUIRE (reader_pwrite (c, want, 8 * MiB, 0) == 0);
  REQUIRE (reader_pwrite (c, want + 16 * MiB, 9 * MiB, 16 * MiB) == 0);
  memset (want + 1 * MiB, 0, 6 * MiB);
  REQUIRE (reader_zero (c, 6 * MiB, 1 * MiB) == 0);  /* over data */
  REQUIRE (reader_zero (c, 2 * MiB, 12 * MiB) == 0); /* never written */
  REQUIRE (reader_pwrite (c, want + 5 * MiB + 4 * KiB, 100, 5 * MiB + 4 * KiB) == 0);
  REQUIRE (reader_zero (c, 1, size) == -1 && pb_get_errclass () == PB_E_USAGE);
  REQUIRE (reader_flush (c) == 0);
  reader_close (c);                 /* waits for qemu-nbd to exit */
  f = fopen (exp, "w");
  REQUIRE (f && fwrite (want, 1, size, f) == size && fclose (f) == 0);
  REQUIRE (sh ("qemu-img compare -q -f raw -F qcow2 %s %s", exp, img) == 0);
  REQUIRE (unallocated (img, 1 * MiB, 5 * MiB));
  REQUIRE (unallocated (img, 5 * MiB + 64 * KiB, 7 * MiB));
  REQUIRE (unallocated (img, 12 * MiB, 14 * MiB));
  /* The zeroed data's host clusters were freed: 11 MiB of data is live,
   * 17 MiB would be if zeroing had only marked them. */
  REQUIRE (stat (img, &st) == 0 && (uint64_t) st.st_blocks * 512 < 14 * MiB);
  free (want);
}

static void
test_locked (void)
{
  char img[256];

  snprintf (img, sizeof img, "%s/locked.raw", tmp);
  REQUIRE (sh ("qemu-img create -q -f raw %s 4M", img) == 0);
  REQUIRE (reader_check_unlocked (img) == 0);
  REQUIRE (reader_check_unlocked ("/nonexistent/file") == 0);
  REQUIRE (sh ("qemu-nbd -f raw -t --socket=%s/rw.sock --fork "
             "--pid-file=%s/rw.pid %s", tmp, tmp, img) == 0);
  REQUIRE (reader_check_unlocked (img) == -1);
  REQUIRE (pb_get_errclass () == PB_E_TARGET && strstr (pb_get_error (), "locked"));
  REQUIRE (reader_open_image (img, "raw", true) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_TARGET);
  kill_pidfile ("rw.pid");
  /* The lock goes with the process's last file descriptor, which can
   * outlive the pid a little on a loaded machine (seen once in CI). */
  for (int i = 0; i < 100 && reader_check_unlocked (img) != 0; i++)
    usleep (100000);
  REQUIRE (reader_check_unlocked (img) == 0);
}

/* ---- Big and odd servers ---- */

/* 1 TiB, data at both ends: bounded memory, runs across 1024 windows,
 * and reading a chunk long after its run was yielded. */
static void
test_huge (void)
{
  char img[256];
  const uint64_t size = 1024 * 1024 * MiB, cs = 256 * KiB;
  struct reader_conn *c;
  struct reader_plan *p;
  struct reader_run r[3];
  uint8_t *buf = malloc (cs);
  uint64_t got;

  snprintf (img, sizeof img, "%s/huge.qcow2", tmp);
  REQUIRE (buf && sh ("qemu-img create -q -f qcow2 %s 1T", img) == 0);
  REQUIRE (sh ("qemu-io -f qcow2 -c 'write -P 0xaa 0 64K' -c 'write -P 0xbb "
             "%" PRIu64 " 1M' %s >/dev/null", size - MiB, img) == 0);
  c = reader_open_image (img, "qcow2", false);
  REQUIRE (c != NULL && (p = reader_plan_new (c, cs, NULL, 0)) != NULL);
  for (int i = 0; i < 3; i++)
    REQUIRE (reader_plan_next (p, &r[i]) == 1);
  REQUIRE (r[0].kind == READER_READ && r[0].first == 0 && r[0].count == 1);
  REQUIRE (r[1].kind == READER_ZERO && r[1].count == size / cs - 5);
  REQUIRE (r[2].kind == READER_READ && r[2].count == 4);
  REQUIRE (reader_plan_next (p, &r[0]) == 0);
  REQUIRE (reader_read_chunk (p, 0, buf, cs, &got) == 0);   /* out of window */
  REQUIRE (got >= 64 * KiB && got < cs && buf[0] == 0xaa && buf[65535] == 0xaa);
  REQUIRE (buf[65536] == 0 && is_zero (buf + 65536, cs - 65536));
  REQUIRE (reader_read_chunk (p, size / cs - 1, buf, cs, &got) == 0);
  REQUIRE (got == cs && buf[0] == 0xbb && buf[cs - 1] == 0xbb);
  reader_plan_free (p);
  reader_close (c);
  free (buf);
}

static bool
have (const char *prog)
{
  return sh ("command -v %s >/dev/null 2>&1", prog) == 0;
}

/* A hole without the zero bit must be read; no structured replies means
 * no base:allocation: everything is read. */
static void
test_nbdkit (void)
{
  char u[256];
  struct reader_conn *c;
  static uint8_t buf[256 * KiB];
  uint64_t got;

  if (!have ("nbdkit")) {
    fprintf (stderr, "test-plan: nbdkit not installed, skipping its tests\n");
    return;
  }
  REQUIRE (sh ("nbdkit -U %s/kit1.sock -P %s/kit1.pid eval "
             "get_size='echo 1048576' "
             "pread='dd if=/dev/zero count=$3 iflag=count_bytes 2>/dev/null' "
             "extents='echo 0 524288 hole; echo 524288 524288 hole,zero'",
             tmp, tmp) == 0);
  snprintf (u, sizeof u, "nbd+unix:///?socket=%s/kit1.sock", tmp);
  REQUIRE ((c = reader_connect (u, NULL)) != NULL);
  {
    struct reader_plan *p = reader_plan_new (c, 256 * KiB, NULL, 0);
    struct reader_run r;
    REQUIRE (p && reader_plan_next (p, &r) == 1 && r.kind == READER_READ
           && r.first == 0 && r.count == 2);
    REQUIRE (reader_plan_next (p, &r) == 1 && r.kind == READER_ZERO
           && r.first == 2 && r.count == 2);
    REQUIRE (reader_read_chunk (p, 1, buf, sizeof buf, &got) == 0
           && got == sizeof buf);
    reader_plan_free (p);
  }
  reader_close (c);
  REQUIRE (sh ("nbdkit --no-sr -U %s/kit2.sock -P %s/kit2.pid memory 1M",
             tmp, tmp) == 0);
  snprintf (u, sizeof u, "nbd+unix:///?socket=%s/kit2.sock", tmp);
  REQUIRE (reader_connect (u, "bm0") == NULL && pb_get_errclass () == PB_E_BITMAP);
  REQUIRE ((c = reader_connect (u, NULL)) != NULL && !reader_has_allocation (c));
  {
    struct reader_plan *p = reader_plan_new (c, 256 * KiB, NULL, 0);
    struct reader_run r;
    REQUIRE (p && reader_plan_next (p, &r) == 1 && r.kind == READER_READ
           && r.count == 4 && reader_plan_next (p, &r) == 0);
    REQUIRE (reader_read_chunk (p, 3, buf, sizeof buf, &got) == 0
           && got == sizeof buf && is_zero (buf, sizeof buf));
    reader_plan_free (p);
  }
  reader_close (c);
}

static void
on_signal (int sig)
{
  fprintf (stderr, "test-plan: signal %d (a hang?)\n", sig);
  exit (1);       /* runs cleanup (): no servers or files left behind */
}

int
main (void)
{
  if (!have ("qemu-img") || !have ("qemu-nbd") || !have ("qemu-io")) {
    fprintf (stderr, "test-plan: QEMU tools not installed, skipping\n");
    return 77;
  }
  REQUIRE (mkdtemp (tmp) != NULL);
  atexit (cleanup);
  signal (SIGINT, on_signal);
  signal (SIGTERM, on_signal);
  signal (SIGALRM, on_signal);
  alarm (600);
  make_layout ();
  load_raw ();
  test_layout ();
  test_errors ();
  test_open_readonly ();
  test_write ();
  test_locked ();
  test_huge ();
  test_nbdkit ();
  free (raw);
  return 0;
}
