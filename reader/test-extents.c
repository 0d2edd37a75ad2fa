/* pullback - reader/test-extents.c: plans against a server that lies.
 *
 * Real servers (qemu-nbd, nbdkit) only send well-formed block status, so
 * this test forks a tiny NBD server of its own (newstyle handshake,
 * structured replies, the contexts base:allocation and
 * qemu:dirty-bitmap:bm, block status and reads) whose export name picks a
 * behaviour: zero-length extents, extents past the end of the export, two
 * replies for one context, no reply for the bitmap, extents running far
 * past the request, and replies of a few extents at a time with the two
 * contexts out of step.  Plans must fail with PB_E_NBD "server sent ..."
 * on the first four, and be exact on the others (run under valgrind, the
 * long extents also prove the window is clipped).  An export of 4 EiB is
 * refused when connecting.
 */
#include <config.h>

#include <endian.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "util.h"
#include "nbd.h"
#include "test.h"

#define KiB 1024ull
#define MiB (1024 * KiB)
#define BLOCK (64 * KiB)          /* "short" mode's extent size */
#define BIG (2048 * MiB + MiB)    /* "beyond" mode's export size */

static char tmp[] = "/tmp/pb-test-extents.XXXXXX";
static char sock[100];
static pid_t server = -1;

/* ---- The server ---- */

static int
get (int fd, void *buf, size_t len)
{
  ssize_t r;

  for (char *p = buf; len > 0; p += r, len -= r)
    if ((r = read (fd, p, len)) <= 0)
      return -1;
  return 0;
}

static void
put (int fd, const void *buf, size_t len)
{
  if (write (fd, buf, len) != (ssize_t) len)
    _exit (1);
}

static void
opt_reply (int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
  uint64_t magic = htobe64 (0x3e889045565a9ULL);
  uint32_t h[3] = { htobe32 (opt), htobe32 (type), htobe32 (len) };

  put (fd, &magic, 8);
  put (fd, h, 12);
  put (fd, data, len);
}

static void
reply_context (int fd, uint32_t opt, uint32_t id, const char *name)
{
  char buf[64];
  uint32_t be = htobe32 (id);

  memcpy (buf, &be, 4);
  memcpy (buf + 4, name, strlen (name));
  opt_reply (fd, opt, 4 /* NBD_REP_META_CONTEXT */, buf, 4 + strlen (name));
}

static const char *const names[3] = { "", "base:allocation",
                                      "qemu:dirty-bitmap:bm" };
/* Unaligned big-endian loads from protocol buffers (no casts: UB). */
static uint32_t
get_be32 (const void *p)
{
  uint32_t v;

  memcpy (&v, p, sizeof v);
  return be32toh (v);
}

static uint16_t
get_be16 (const void *p)
{
  uint16_t v;

  memcpy (&v, p, sizeof v);
  return be16toh (v);
}

static bool ctx_on[3];      /* contexts set on this connection */

/* Answer the queries in DATA (export name, count, names); no query
 * lists every context. */
static void
meta_context (int fd, uint32_t opt, const char *data, uint32_t n)
{
  uint32_t len, count, pos;

  if (n < 8 || (len = get_be32 (data)) > n - 8)
    _exit (1);
  count = get_be32 (data + 4 + len);
  pos = 8 + len;
  for (int id = 1; id <= 2; id++)
    ctx_on[id] = count == 0;
  for (uint32_t q = 0; q < count && pos + 4 <= n; q++) {
    len = get_be32 (data + pos);
    for (int id = 1; id <= 2; id++)
      if (len == strlen (names[id]) && pos + 4 + len <= n
          && memcmp (data + pos + 4, names[id], len) == 0)
        ctx_on[id] = true;
    pos += 4 + len;
  }
  for (int id = 1; id <= 2; id++)
    if (ctx_on[id])
      reply_context (fd, opt, id, names[id]);
  opt_reply (fd, opt, 1, "", 0);
}

static uint64_t
export_size (const char *mode)
{
  if (strcmp (mode, "absurd") == 0)
    return UINT64_C (1) << 62;          /* 4 EiB: no disk is that big */
  return strcmp (mode, "beyond") == 0 ? BIG : 4 * MiB;
}

/* Options until NBD_OPT_GO; the export name is the behaviour. */
static int
handshake (int fd, char *mode, size_t modelen)
{
  uint32_t h[4], flags, n;     /* "IHAVEOPT", option, length */
  char data[4096];

  put (fd, "NBDMAGICIHAVEOPT\0\3", 18);
  if (get (fd, &flags, 4) == -1)
    return -1;
  for (;;) {
    if (get (fd, h, 16) == -1 || (n = be32toh (h[3])) > sizeof data
        || get (fd, data, n) == -1)
      return -1;
    switch (be32toh (h[2])) {
    case 8:                     /* STRUCTURED_REPLY */
      opt_reply (fd, 8, 1, "", 0);
      break;
    case 10: case 11:           /* LIST / SET_META_CONTEXT */
      meta_context (fd, be32toh (h[2]), data, n);
      break;
    case 7: {                   /* GO */
      uint32_t len = get_be32 (data);
      uint64_t size = 0;
      uint16_t info[6] = { 0 };
      snprintf (mode, modelen, "%.*s", (int) MIN (len, modelen - 1), data + 4);
      size = htobe64 (export_size (mode));
      memcpy (&info[1], &size, 8);
      info[5] = htobe16 (1 | 2);          /* HAS_FLAGS | READ_ONLY */
      opt_reply (fd, 7, 3, info, 12);     /* INFO_EXPORT */
      opt_reply (fd, 7, 1, "", 0);
      return 0;
    }
    default:
      opt_reply (fd, be32toh (h[2]), 0x80000001, "", 0);
    }
  }
}

static void
chunk (int fd, uint16_t flags, uint16_t type, uint64_t handle,
       const void *payload, uint32_t len)
{
  uint32_t magic = htobe32 (0x668e33ef), l = htobe32 (len);
  uint16_t f[2] = { htobe16 (flags), htobe16 (type) };

  put (fd, &magic, 4);
  put (fd, f, 4);
  put (fd, &handle, 8);
  put (fd, &l, 4);
  put (fd, payload, len);
}

/* One block status chunk: context ID, N (length, flags) pairs. */
static void
status (int fd, uint64_t handle, bool last, uint32_t id, const uint32_t *e,
        size_t n)
{
  uint32_t buf[1 + 2 * 8];

  buf[0] = htobe32 (id);
  for (size_t i = 0; i < 2 * n; i++)
    buf[1 + i] = htobe32 (e[i]);
  chunk (fd, last ? 1 : 0, 5, handle, buf, 4 + 8 * n);
}

/* "short": block b is data iff b % 8 < 4, else zero (without the hole
 * bit); dirty iff (b / 4) % 3 == 0.
 * base:allocation answers one block, the bitmap three. */
static uint32_t
short_flags (uint64_t off, bool dirty)
{
  uint64_t b = off / BLOCK;
  return dirty ? (b / 4) % 3 == 0 : b % 8 < 4 ? 0 : 2;   /* zero, no hole */
}

static void
block_status (int fd, const char *mode, uint64_t handle, uint64_t off)
{
  uint64_t size = export_size (mode);
  bool bm = ctx_on[2] && strcmp (mode, "no-bitmap") != 0;
  bool twice = strcmp (mode, "twice") == 0;
  uint32_t e[6];
  size_t n = 1;

  if (strcmp (mode, "short") == 0) {
    e[0] = BLOCK; e[1] = short_flags (off, false);
  }
  else if (strcmp (mode, "beyond") == 0) {
    /* 512 MiB of data, then zero to the end of the export. */
    e[0] = MIN (512 * MiB, size - off); e[1] = 0;
    e[2] = size - off - e[0]; e[3] = 3;
    n = e[2] ? 2 : 1;
  }
  else {
    e[0] = BLOCK; e[1] = 0;
    e[2] = strcmp (mode, "zero-len") == 0 ? 0 : size; e[3] = 0;
    n = strcmp (mode, "past-end") == 0 || strcmp (mode, "zero-len") == 0 ? 2 : 1;
  }
  status (fd, handle, !bm && !twice, 1, e, n);
  if (twice)
    status (fd, handle, !bm, 1, e, n);
  if (!bm)
    return;
  if (strcmp (mode, "short") == 0) {
    for (int i = 0; i < 3; i++) {
      e[2 * i] = BLOCK;
      e[2 * i + 1] = short_flags (off + i * BLOCK, true);
    }
    n = off + 3 * BLOCK <= size ? 3 : 1;
  }
  else if (strcmp (mode, "beyond") == 0) {
    e[0] = MIN (256 * MiB, size - off); e[1] = 1;
    e[2] = size - off - e[0]; e[3] = 0;
    n = e[2] ? 2 : 1;
  }
  else {
    e[0] = size - off; e[1] = 0;
    n = 1;
  }
  status (fd, handle, true, 2, e, n);
}

/* Data reads as the low byte of (offset / 512) | 1. */
static void
read_reply (int fd, uint64_t handle, uint64_t off, uint32_t len)
{
  uint8_t *buf = malloc (8 + len);
  uint64_t be = htobe64 (off);

  memcpy (buf, &be, 8);
  for (uint32_t i = 0; i < len; i++)
    buf[8 + i] = ((off + i) / 512) | 1;
  chunk (fd, 1, 1 /* OFFSET_DATA */, handle, buf, 8 + len);
  free (buf);
}

static void
serve (int fd)
{
  char mode[64];
  uint8_t req[28];

  if (handshake (fd, mode, sizeof mode) == -1)
    return;
  while (get (fd, req, 28) == 0) {
    uint16_t type = get_be16 (req + 6);
    uint64_t handle, off;
    uint32_t len;
    memcpy (&handle, req + 8, 8);
    memcpy (&off, req + 16, 8);
    memcpy (&len, req + 24, 4);
    off = be64toh (off);
    len = be32toh (len);
    if (type == 0)
      read_reply (fd, handle, off, len);
    else if (type == 7)
      block_status (fd, mode, handle, off);
    else
      return;
  }
}

static void
start_server (void)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int lfd = socket (AF_UNIX, SOCK_STREAM, 0), fd;

  snprintf (sock, sizeof sock, "%s/fake.sock", tmp);
  snprintf (addr.sun_path, sizeof addr.sun_path, "%s", sock);
  REQUIRE (lfd >= 0 && bind (lfd, (struct sockaddr *) &addr, sizeof addr) == 0);
  REQUIRE (listen (lfd, 8) == 0);
  server = fork ();
  REQUIRE (server >= 0);
  if (server > 0) {
    close (lfd);
    return;
  }
  prctl (PR_SET_PDEATHSIG, SIGTERM);    /* never outlive the test */
  while ((fd = accept (lfd, NULL, NULL)) >= 0) {
    serve (fd);
    close (fd);
  }
  _exit (0);
}

static void
cleanup (void)
{
  char cmd[300];

  if (server > 0) {
    kill (server, SIGTERM);
    waitpid (server, NULL, 0);
  }
  snprintf (cmd, sizeof cmd, "rm -rf %s", tmp);
  if (system (cmd) != 0)
    fprintf (stderr, "test-extents: could not remove %s\n", tmp);
}

/* ---- The checks ---- */

static struct reader_conn *
connect_mode (const char *mode, const char *bitmap)
{
  char uri[400];
  struct reader_conn *c;

  snprintf (uri, sizeof uri, "nbd+unix:///%s?socket=%s", mode, sock);
  c = reader_connect (uri, bitmap);
  REQUIRE (c != NULL && reader_size (c) == export_size (mode));
  return c;
}

static void
expect_invalid (const char *mode, const char *bitmap, const char *what)
{
  struct reader_conn *c = connect_mode (mode, bitmap);
  struct reader_plan *p = reader_plan_new (c, 256 * KiB, bitmap, 4 * MiB);
  struct reader_run run;

  REQUIRE (p != NULL);
  REQUIRE (reader_plan_next (p, &run) == -1);
  REQUIRE (pb_get_errclass () == PB_E_NBD);
  REQUIRE (strstr (pb_get_error (), "server sent"));
  REQUIRE (strstr (pb_get_error (), what));
  reader_plan_free (p);
  reader_close (c);
}

/* Run kinds for "short" with 512 KiB chunks: half data, half hole. */
static enum reader_kind
short_kind (uint64_t chunk, bool incr)
{
  if (incr && short_flags (chunk * 512 * KiB, true) == 0
      && short_flags (chunk * 512 * KiB + 256 * KiB, true) == 0)
    return READER_KEEP;
  return READER_READ;   /* every chunk has data in its first half */
}

static void
test_short (bool incr)
{
  struct reader_conn *c = connect_mode ("short", incr ? "bm" : NULL);
  struct reader_plan *p = reader_plan_new (c, 512 * KiB, incr ? "bm" : NULL,
                                           4 * MiB);
  struct reader_run run;
  static uint8_t buf[512 * KiB];
  uint64_t next = 0, got;

  REQUIRE (p != NULL);
  while (reader_plan_next (p, &run) == 1) {
    REQUIRE (run.first == next);
    for (uint64_t i = run.first; i < run.first + run.count; i++) {
      REQUIRE (run.kind == short_kind (i, incr));
      if (run.kind != READER_READ)
        continue;
      REQUIRE (reader_read_chunk (p, i, buf, sizeof buf, &got) == 0);
      REQUIRE (got == 256 * KiB && is_zero (buf + 256 * KiB, 256 * KiB));
      REQUIRE (buf[0] == (uint8_t) ((i * 1024) | 1));
      REQUIRE (buf[256 * KiB - 1] == (uint8_t) ((i * 1024 + 511) | 1));
    }
    next += run.count;
  }
  REQUIRE (next == 8);
  reader_plan_free (p);
  reader_close (c);
}

/* Each reply runs to the end of the export: 512 MiB data then zero from
 * every request offset, 256 MiB dirty then clean. */
static void
test_beyond (void)
{
  struct reader_conn *c = connect_mode ("beyond", "bm");
  struct reader_plan *p = reader_plan_new (c, MiB, NULL, 0);
  struct reader_plan *q = reader_plan_new (c, MiB, "bm", BIG);
  static const struct reader_run full[] = {
    { 0, 512, READER_READ }, { 512, 512, READER_ZERO },
    { 1024, 512, READER_READ }, { 1536, 512, READER_ZERO },
    { 2048, 1, READER_READ } };
  static const struct reader_run incr[] = {
    { 0, 256, READER_READ }, { 256, 768, READER_KEEP },
    { 1024, 256, READER_READ }, { 1280, 768, READER_KEEP },
    { 2048, 1, READER_READ } };
  struct reader_run run;

  REQUIRE (p != NULL && q != NULL);
  for (size_t i = 0; i < 5; i++) {
    REQUIRE (reader_plan_next (p, &run) == 1 && run.first == full[i].first
           && run.count == full[i].count && run.kind == full[i].kind);
    REQUIRE (reader_plan_next (q, &run) == 1 && run.first == incr[i].first
           && run.count == incr[i].count && run.kind == incr[i].kind);
  }
  REQUIRE (reader_plan_next (p, &run) == 0 && reader_plan_next (q, &run) == 0);
  reader_plan_free (p);
  reader_plan_free (q);
  reader_close (c);
}

static void
on_alarm (int sig)
{
  fprintf (stderr, "test-extents: timed out (a loop that never ends?)\n");
  exit (1);       /* runs cleanup () */
}

/* An export size no disk has is refused at connect, before any plan. */
static void
test_absurd (void)
{
  char uri[400];

  snprintf (uri, sizeof uri, "nbd+unix:///absurd?socket=%s", sock);
  REQUIRE (reader_connect (uri, NULL) == NULL);
  REQUIRE (pb_get_errclass () == PB_E_NBD);
  REQUIRE (strstr (pb_get_error (), "64 PiB"));
}

int
main (void)
{
  REQUIRE (mkdtemp (tmp) != NULL);
  atexit (cleanup);
  signal (SIGALRM, on_alarm);
  alarm (120);
  start_server ();
  expect_invalid ("zero-len", NULL, "zero length");
  expect_invalid ("past-end", NULL, "beyond the end");
  expect_invalid ("twice", NULL, "a second reply");
  expect_invalid ("no-bitmap", "bm", "no extents for qemu:dirty-bitmap:bm");
  test_short (false);
  test_short (true);
  test_beyond ();
  test_absurd ();
  return 0;
}
