/* pullback - reader/nbd.c: connections to NBD exports and local images.
 *
 * Everything pullback does over NBD goes through a struct reader_conn: a
 * libnbd handle plus what we learnt while connecting (size, which metadata
 * contexts were negotiated, the largest request to send).  Backups connect
 * to the hypervisor's export by URI; restore and digest open a local image
 * through a qemu-nbd child that libnbd starts by socket activation, so
 * qcow2 is handled by QEMU itself and zero requests keep targets thin.
 * Connections are made in libnbd's option mode so that the list of
 * contexts the export offers can be asked for on the same connection
 * before NBD_OPT_GO: it names the alternatives when a bitmap is missing.
 * Errors from libnbd are translated here, at the call, with what we were
 * doing, which export and which offset (class PB_E_NBD).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libnbd.h>

#include "cleanup.h"
#include "errors.h"
#include "util.h"
#include "nbd.h"
#include "pullback.h"

/* Our cap on one read or write request.  qemu-nbd accepts 32 MiB, but
 * reading a 1 GiB raw or qcow2 image through qemu-nbd one request at a
 * time measured about 1900 MB/s with 512 KiB requests, 1100 with 128 KiB
 * and 700 with 1 MiB or more (writes: within 10% either way). */
#define MAX_REQUEST (512u << 10)
/* One zero request: NBD lengths are 32 bits; 1 GiB keeps them aligned. */
#define MAX_ZERO (1u << 30)
/* Seconds to wait for a server's greeting: a server serving one client at
 * a time (qemu-nbd's default) queues a second one without a word. */
#define CONNECT_TIMEOUT 30
/* The same for the extra connections of a multi-conn export: the first
 * connection has shown that the server answers, so a server that keeps
 * a second one waiting has no room for it; go on without it. */
#define EXTRA_CONNECT_TIMEOUT 5
/* Longest list of offered contexts kept for messages. */
#define MAX_OFFERED 2048
#define BITMAP_PREFIX "qemu:dirty-bitmap:"

/* The qemu-nbd child's stderr goes to a temporary file so that a failure
 * reports qemu-nbd's own message (libnbd only sees the socket close) and
 * nothing is printed on the caller's terminal.  "exec" keeps the process
 * id, which socket activation's LISTEN_PID must name. */
#define STDERR_WRAPPER "f=$1; shift; exec \"$@\" 2>\"$f\""

struct reader_conn {
  struct nbd_handle *nbd;
  char *uri;           /* exports only, for reader_reconnect; else NULL */
  const struct pullback_tls *tls;   /* the caller's, for reader_reconnect */
  char *name;          /* "export 'URI'" or "image 'PATH'" */
  char *bitmap_ctx;    /* "qemu:dirty-bitmap:NAME", or NULL */
  char *offered;       /* contexts the export listed, ", "-separated */
  uint64_t size;
  uint32_t max_request;
  bool has_alloc;
  int write_errno;     /* first failed asynchronous write, 0 if none */
  uint64_t write_off;  /* ... and its offset */
  /* Multi-conn: more handles to the same export, for asynchronous reads
   * only (block status, synchronous reads and writes use NBD). */
  struct nbd_handle *extra[READER_MAX_CONNECTIONS - 1];
  unsigned nextra;
  unsigned want;       /* connections asked for (reader_add_connections) */
  unsigned next;       /* the handle for the next asynchronous read */
};

/* Handle I: 0 is the first connection, then the extra ones. */
static struct nbd_handle *
handle_at (struct reader_conn *c, unsigned i)
{
  return i == 0 ? c->nbd : c->extra[i - 1];
}

/* libnbd's last message without its trailing ": strerror (errno)", which
 * set_error appends again. */
static const char *
nbd_message (char *buf, size_t len)
{
  const char *msg = nbd_get_error ();
  int err = nbd_get_errno ();
  size_t n, m;

  snprintf (buf, len, "%s", msg ? msg : "unknown libnbd error");
  if (err != 0) {
    const char *s = strerror (err);
    n = strlen (buf);
    m = strlen (s);
    if (n >= m + 2 && strcmp (buf + n - m, s) == 0
        && memcmp (buf + n - m - 2, ": ", 2) == 0)
      buf[n - m - 2] = '\0';
  }
  return buf;
}

void
reader_nbd_error (struct reader_conn *c, const char *what, uint64_t off)
{
  char buf[512];

  set_error (PB_E_NBD, nbd_get_errno (), "%s %s at offset %" PRIu64 ": %s",
             what, c->name, off, nbd_message (buf, sizeof buf));
}

/* A failure that is not about an offset: "WHAT NAME: libnbd's message". */
static void
conn_error (struct reader_conn *c, int errclass, const char *what)
{
  char buf[512];

  set_error (errclass, nbd_get_errno (), "%s %s: %s",
             what, c->name, nbd_message (buf, sizeof buf));
}

/* End politely; nbd_close then waits for a socket-activated qemu-nbd
 * to exit, so the image is closed and unlocked when we return. */
static void
close_handle (struct nbd_handle *h)
{
  if (h == NULL)
    return;
  if (nbd_aio_is_negotiating (h))
    nbd_opt_abort (h);
  else if (nbd_aio_is_ready (h))
    nbd_shutdown (h, 0);
  nbd_close (h);
}

static void
close_extra (struct reader_conn *c)
{
  while (c->nextra > 0)
    close_handle (c->extra[--c->nextra]);
  c->next = 0;
}

void
reader_close (struct reader_conn *c)
{
  if (c == NULL)
    return;
  close_extra (c);
  close_handle (c->nbd);
  free (c->uri);
  free (c->name);
  free (c->bitmap_ctx);
  free (c->offered);
  free (c);
}

/* A connection with its handle created and option mode on. */
static struct reader_conn *
conn_new (const char *kind, const char *what)
{
  struct reader_conn *c = calloc (1, sizeof *c);

  if (c == NULL || asprintf (&c->name, "%s '%s'", kind, what) == -1) {
    set_error (PB_E_FAIL, errno, "out of memory");
    free (c);
    return NULL;
  }
  /* No pread_initialize: libnbd fails a read the server did not fully
   * cover, and we never use the buffer of a failed read, so clearing
   * every buffer first would only cost time. */
  c->nbd = nbd_create ();
  if (c->nbd == NULL || nbd_set_opt_mode (c->nbd, true) == -1
      || nbd_set_pread_initialize (c->nbd, false) == -1) {
    set_error (PB_E_NBD, nbd_get_errno (), "libnbd: %s", nbd_get_error ());
    reader_close (c);
    return NULL;
  }
  return c;
}

static int
set_bitmap (struct reader_conn *c, const char *bitmap)
{
  if (bitmap == NULL)
    return 0;
  if (asprintf (&c->bitmap_ctx, "%s%s", BITMAP_PREFIX, bitmap) == -1) {
    c->bitmap_ctx = NULL;
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  return 0;
}

/* Collects the names nbd_opt_list_meta_context reports. */
struct ctx_list {
  char *s;
  size_t len;
  bool full;
};

static int
list_context (void *opaque, const char *name)
{
  struct ctx_list *l = opaque;
  size_t n = strlen (name), i;
  char *s;

  /* A server may send a long list: keep ours short. */
  if (l->full || l->len + n > MAX_OFFERED
      || (s = realloc (l->s, l->len + n + 3)) == NULL) {
    l->full = true;
    return 0;
  }
  if (l->len > 0) {
    memcpy (s + l->len, ", ", 2);
    l->len += 2;
  }
  /* The names end up in messages: no control characters from the wire. */
  for (i = 0; i < n; i++)
    s[l->len + i] = (unsigned char) name[i] < 32 ? '?' : name[i];
  l->len += n;
  s[l->len] = '\0';
  l->s = s;
  return 0;
}

/* Remember what the export offers.  An empty query list asks the server
 * for every context; servers that cannot list are not an error. */
static int
list_offered (struct reader_conn *c)
{
  struct ctx_list l = { NULL, 0, false };
  nbd_context_callback cb = { .callback = list_context, .user_data = &l };
  int r = nbd_opt_list_meta_context (c->nbd, cb);

  if (l.s == NULL)
    l.s = strdup (r == -1 ? "(the server cannot list them)" : "(nothing)");
  c->offered = l.s;
  if (c->offered == NULL) {
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  return 0;
}

/* Option phase: list contexts, request ours, NBD_OPT_GO. */
static int
negotiate (struct reader_conn *c)
{
  if (!nbd_aio_is_negotiating (c->nbd))
    return 0;   /* an oldstyle server: no options, no contexts */
  if (list_offered (c) == -1)
    return -1;
  if (nbd_add_meta_context (c->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1
      || (c->bitmap_ctx != NULL
          && nbd_add_meta_context (c->nbd, c->bitmap_ctx) == -1)
      || nbd_opt_go (c->nbd) == -1) {
    conn_error (c, PB_E_NBD, "cannot open");
    return -1;
  }
  return 0;
}

/* libnbd connects even when a requested context is missing: check. */
static int
check_bitmap (struct reader_conn *c)
{
  if (c->bitmap_ctx == NULL || nbd_can_meta_context (c->nbd, c->bitmap_ctx) == 1)
    return 0;
  set_error (PB_E_BITMAP, 0, "%s has no bitmap '%s' (%s); it offers: %s",
             c->name, c->bitmap_ctx + strlen (BITMAP_PREFIX), c->bitmap_ctx,
             c->offered ? c->offered : "(unknown)");
  return -1;
}

/* The server's maximum block size if it states one, capped by ours and
 * kept a multiple of its minimum so split requests stay aligned. */
static uint32_t
pick_max_request (struct nbd_handle *h)
{
  int64_t max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);
  int64_t min = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  uint32_t r = MAX_REQUEST;

  if (max > 0 && max < r)
    r = max;
  if (min > 1 && min <= r)
    r -= r % min;
  return r;
}

/* After NBD_OPT_GO: size, contexts, limits. */
static int
query_export (struct reader_conn *c)
{
  int64_t size = nbd_get_size (c->nbd);

  if (size < 0) {
    conn_error (c, PB_E_NBD, "cannot get the size of");
    return -1;
  }
  /* Chunk counts, map trees and the catalog's signed sizes all have room
   * for far more, but walking the chunks of a larger export would take
   * days: a server claiming that much is broken or hostile. */
  if ((uint64_t) size > READER_MAX_DISK_SIZE) {
    set_error (PB_E_NBD, 0, "%s: the server says the export holds %" PRId64
               " bytes, more than the 64 PiB pullback accepts", c->name, size);
    return -1;
  }
  c->size = size;
  c->has_alloc = nbd_can_meta_context (c->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION)
                 == 1;
  c->max_request = pick_max_request (c->nbd);
  return check_bitmap (c);
}

/* Finish a connection started with an nbd_aio_connect_* call, up to the
 * option phase, within CONNECT_TIMEOUT.  Failures: PB_E_NBD; a URI that
 * libnbd rejected before any I/O (handle still "created"): PB_E_USAGE. */
static int
wait_connected (struct reader_conn *c, int started, int timeout)
{
  double deadline = now_mono () + timeout;
  double left;

  while (started != -1 && nbd_aio_is_connecting (c->nbd)) {
    left = deadline - now_mono ();
    if (left <= 0) {
      set_error (PB_E_NBD, ETIMEDOUT, "no answer from %s in %d s (does it "
                 "serve only one client and have one?)", c->name, timeout);
      return -1;
    }
    started = nbd_poll (c->nbd, (int) (left * 1000) + 1);
  }
  if (started == -1 || nbd_aio_is_dead (c->nbd) || nbd_aio_is_closed (c->nbd)) {
    if (nbd_aio_is_created (c->nbd))
      conn_error (c, PB_E_USAGE, "invalid NBD URI for");
    else
      conn_error (c, PB_E_NBD, "cannot connect to");
    return -1;
  }
  return 0;
}

static bool
is_tls_uri (const char *uri)
{
  return strncmp (uri, "nbds:", 5) == 0 || strncmp (uri, "nbds+", 5) == 0;
}

/* The settings themselves, before any connection. */
static int
check_tls (const char *uri, const struct pullback_tls *t)
{
  const char *file = t->certs ? t->certs : t->psk_file;

  if (t->certs && t->psk_file) {
    set_error (PB_E_USAGE, 0, "give TLS certificates or a PSK file, not both");
    return -1;
  }
  if (t->mode == PULLBACK_TLS_OFF && (is_tls_uri (uri) || file)) {
    set_error (PB_E_USAGE, 0, "TLS off, but %s", file ? "TLS credentials "
               "were given" : "the URI is nbds:// (TLS required)");
    return -1;
  }
  if (t->mode == PULLBACK_TLS_REQUIRE && !is_tls_uri (uri)) {
    set_error (PB_E_USAGE, 0, "TLS required, but '%s' is not an nbds:// or "
               "nbds+unix:// URI", uri);
    return -1;
  }
  if (file && access (file, R_OK) == -1) {
    set_error (PB_E_USAGE, errno, "TLS %s %s", t->certs ? "certificates"
               : "PSK file", file);
    return -1;
  }
  return 0;
}

/* Hand the settings to libnbd (the URI's scheme then decides the rest). */
static int
apply_tls (struct reader_conn *c, const char *uri, const struct pullback_tls *t)
{
  struct nbd_handle *h = c->nbd;

  if (t == NULL)
    return 0;
  if (check_tls (uri, t) == -1)
    return -1;
  if ((is_tls_uri (uri) || t->certs || t->psk_file) && !nbd_supports_tls (h)) {
    set_error (PB_E_NBD, 0, "this libnbd was built without TLS support");
    return -1;
  }
  if ((t->mode == PULLBACK_TLS_OFF &&
       nbd_set_uri_allow_tls (h, LIBNBD_TLS_DISABLE) == -1) ||
      (t->mode == PULLBACK_TLS_REQUIRE &&
       nbd_set_uri_allow_tls (h, LIBNBD_TLS_REQUIRE) == -1) ||
      (t->certs && nbd_set_tls_certificates (h, t->certs) == -1) ||
      (t->psk_file && nbd_set_tls_psk_file (h, t->psk_file) == -1) ||
      (t->username && nbd_set_tls_username (h, t->username) == -1) ||
      nbd_set_tls_verify_peer (h, true) == -1) {
    set_error (PB_E_NBD, nbd_get_errno (), "libnbd: TLS settings: %s",
               nbd_get_error ());
    return -1;
  }
  return 0;
}

struct reader_conn *
reader_connect (const char *uri, const char *bitmap)
{
  return reader_connect_tls (uri, bitmap, NULL);
}

static struct reader_conn *
connect_export (const char *uri, const char *bitmap,
                const struct pullback_tls *tls, int timeout)
{
  struct reader_conn *c;

  if (uri == NULL || (bitmap != NULL && *bitmap == '\0')) {
    set_error (PB_E_USAGE, 0, "reader_connect: no URI or empty bitmap name");
    return NULL;
  }
  c = conn_new ("export", uri);
  if (c == NULL || set_bitmap (c, bitmap) == -1 || apply_tls (c, uri, tls) == -1)
    goto fail;
  if (wait_connected (c, nbd_aio_connect_uri (c->nbd, uri), timeout) == -1
      || negotiate (c) == -1 || query_export (c) == -1)
    goto fail;
  c->tls = tls;
  if ((c->uri = strdup (uri)) == NULL) {
    set_error (PB_E_FAIL, errno, "out of memory");
    goto fail;
  }
  return c;

 fail:
  reader_close (c);
  return NULL;
}

struct reader_conn *
reader_connect_tls (const char *uri, const char *bitmap,
                    const struct pullback_tls *tls)
{
  return connect_export (uri, bitmap, tls, CONNECT_TIMEOUT);
}

/* One more handle to C's export, if it is the same export. */
static struct nbd_handle *
connect_extra (struct reader_conn *c)
{
  struct reader_conn *n = connect_export (c->uri, NULL, c->tls,
                                          EXTRA_CONNECT_TIMEOUT);
  struct nbd_handle *h = NULL;

  if (n != NULL && n->size == c->size) {
    h = n->nbd;
    n->nbd = NULL;
  }
  reader_close (n);
  return h;
}

/* Open extra handles until C has as many as it wants.  A connection the
 * server refuses (or leaves waiting) ends the attempt: the server has no
 * room for more, and the reads go over the handles there are. */
static void
open_extra (struct reader_conn *c)
{
  struct nbd_handle *h;

  if (c->uri == NULL || nbd_can_multi_conn (c->nbd) != 1)
    return;
  while (1 + c->nextra < c->want && (h = connect_extra (c)) != NULL)
    c->extra[c->nextra++] = h;
}

unsigned
reader_add_connections (struct reader_conn *c, unsigned n)
{
  c->want = MIN (MAX (n, 1), READER_MAX_CONNECTIONS);
  open_extra (c);
  return 1 + c->nextra;
}

unsigned
reader_connections (struct reader_conn *c)
{
  return 1 + c->nextra;
}

/* Errors a retry may cure: the server failed a request (EIO, ENOMEM, a
 * timeout) or the connection went away (or is not back yet).  Our own
 * findings (an invalid reply, errno 0) and refusals of what we asked
 * (EINVAL, ERANGE...) would fail again the same way. */
bool
reader_error_transient (void)
{
  if (pb_get_errclass () != PB_E_NBD)
    return false;
  switch (pb_get_errno ()) {
  case EIO: case ENOMEM: case EAGAIN: case ETIMEDOUT: case ENOTCONN:
  case ESHUTDOWN: case EPIPE: case ECONNRESET: case ECONNREFUSED:
  case ECONNABORTED: case ENOENT: case EINTR:
    return true;
  default:
    return false;
  }
}

/* ESHUTDOWN: the server answered that it is going away (nbdkit on
 * SIGTERM does so for every request until the client leaves): the
 * connection is up but useless, only a new one (to its successor) helps. */
bool
reader_is_dead (struct reader_conn *c)
{
  unsigned i;

  for (i = 0; i <= c->nextra; i++)
    if (!nbd_aio_is_ready (handle_at (c, i)))
      return true;
  return pb_get_errno () == ESHUTDOWN;
}

/* Let go of the old connection before making the new one: a server that
 * serves one client at a time (qemu-nbd's default) would queue the new
 * connection behind it.  C keeps an unconnected handle meanwhile, which
 * reader_is_dead reports as dead, so a failed reconnection is tried again
 * from scratch.  (Without memory for a handle the old one stays.) */
static void
retire_handle (struct reader_conn *c)
{
  struct nbd_handle *fresh = nbd_create ();

  if (fresh == NULL)
    return;
  /* Reads still in flight write into their callers' buffers: not after
   * this handle is gone. */
  reader_aio_drain (c);
  close_extra (c);
  close_handle (c->nbd);
  c->nbd = fresh;
}

/* The new connection must describe the same export: a size or a set of
 * contexts that changed means another export (or another backup job), and
 * mixing its data with what was read so far would make a wrong point. */
static int
same_export (struct reader_conn *c, struct reader_conn *n)
{
  if (n->size == c->size && n->has_alloc == c->has_alloc)
    return 0;
  set_error (PB_E_NBD, 0, "%s is not the same export after reconnecting "
             "(size %" PRIu64 ", was %" PRIu64 "%s)", c->name, n->size,
             c->size, n->has_alloc != c->has_alloc
             ? "; base:allocation changed" : "");
  return -1;
}

int
reader_reconnect (struct reader_conn *c)
{
  const char *bitmap = c->bitmap_ctx ? c->bitmap_ctx + strlen (BITMAP_PREFIX)
                                     : NULL;
  struct reader_conn *n;

  if (c->uri == NULL) {
    set_error (PB_E_NBD, 0, "%s: only exports can be reconnected", c->name);
    return -1;
  }
  retire_handle (c);
  n = reader_connect_tls (c->uri, bitmap, c->tls);
  if (n == NULL || same_export (c, n) == -1) {
    reader_close (n);
    return -1;
  }
  /* Swap the handles: plans hold C, which stays valid. */
  nbd_close (c->nbd);
  c->nbd = n->nbd;
  c->max_request = n->max_request;
  n->nbd = NULL;
  reader_close (n);
  open_extra (c);
  return 0;
}

int
reader_check_unlocked (const char *path)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                      .l_start = 0, .l_len = 0 };
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

  if (fd == -1) {
    if (errno == ENOENT)
      return 0;
    set_error (PB_E_IO, errno, "open %s", path);
    return -1;
  }
  /* Would a write lock over the whole file conflict with anyone's?  OFD
   * queries see QEMU's OFD locks and classic POSIX locks alike. */
  if (fcntl (fd, F_OFD_GETLK, &fl) == -1) {
    set_error (PB_E_IO, errno, "check locks on %s", path);
    return -1;
  }
  if (fl.l_type != F_UNLCK) {
    set_error (PB_E_TARGET, 0,
               "%s is locked by another process (a running QEMU?)", path);
    return -1;
  }
  return 0;
}

/* qcow2 by its magic, else raw.  (Probing trusts the file: callers that
 * know the format of an untrusted image must pass it.) */
static int
detect_format (const char *path, const char **fmt)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);
  unsigned char magic[4];
  ssize_t n;

  if (fd == -1 || (n = pread (fd, magic, sizeof magic, 0)) == -1) {
    set_error (PB_E_IO, errno, "open %s", path);
    return -1;
  }
  *fmt = n == 4 && memcmp (magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
  return 0;
}

/* Report the last line qemu-nbd wrote to ERRFD (a lock held by another
 * process is PB_E_TARGET like reader_check_unlocked's), else libnbd's. */
static void
start_error (struct reader_conn *c, const char *path, int errfd, bool writable)
{
  char msg[512], nbdmsg[512];
  ssize_t n = pread (errfd, msg, sizeof msg - 1, 0);
  char *line;

  msg[n > 0 ? n : 0] = '\0';
  while ((n = strlen (msg)) > 0 && msg[n - 1] == '\n')
    msg[n - 1] = '\0';
  line = strrchr (msg, '\n') ? strrchr (msg, '\n') + 1 : msg;
  if (strncmp (line, "qemu-nbd: ", 10) == 0)
    line += 10;
  if (strstr (line, "lock") != NULL)
    set_error (PB_E_TARGET, 0, "%s is locked by another process "
               "(a running QEMU?): %s", path, line);
  else
    set_error (writable ? PB_E_TARGET : PB_E_IO, 0,
               "cannot open %s with qemu-nbd: %s", c->name,
               *line ? line : nbd_message (nbdmsg, sizeof nbdmsg));
}

/* Start "qemu-nbd -f FMT [-r | --discard=unmap] PATH" on a socket libnbd
 * made.  --discard=unmap: zero requests from reader_zero (sent without
 * NO_HOLE) may then free qcow2 clusters and punch holes in raw files, so
 * restored images stay thin.  Caching stays qemu-nbd's default
 * (writeback): cache=none needs O_DIRECT, which tmpfs lacks, and
 * reader_flush makes the data durable. */
static int
start_qemu_nbd (struct reader_conn *c, const char *path, const char *fmt,
                bool writable)
{
  CLEANUP_FREE char *file = NULL;
  CLEANUP_CLOSE int errfd = -1;
  char errpath[4096];
  const char *tmp = getenv ("TMPDIR");
  int r;

  /* "./" keeps relative names that start with '-' or hold a ':' from being
   * read as options or protocol prefixes. */
  if (asprintf (&file, "%s%s", path[0] == '/' ? "" : "./", path) == -1) {
    file = NULL;
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  snprintf (errpath, sizeof errpath, "%s/pullback-qemu-nbd-XXXXXX",
            tmp && *tmp ? tmp : "/tmp");
  errfd = mkostemp (errpath, O_CLOEXEC);
  if (errfd == -1) {
    set_error (PB_E_IO, errno, "create %s", errpath);
    return -1;
  }
  {
    const char *argv[] = {
      "/bin/sh", "-c", STDERR_WRAPPER, "sh", errpath,
      "qemu-nbd", "-f", fmt, writable ? "--discard=unmap" : "-r", file, NULL
    };
    r = nbd_aio_connect_systemd_socket_activation (c->nbd, (char **) argv);
  }
  r = wait_connected (c, r, CONNECT_TIMEOUT);
  unlink (errpath);
  if (r == -1)
    start_error (c, path, errfd, writable);
  return r;
}

struct reader_conn *
reader_open_image (const char *path, const char *format, bool writable)
{
  struct reader_conn *c;
  const char *fmt = format;

  if (path == NULL) {
    set_error (PB_E_USAGE, 0, "reader_open_image: no path");
    return NULL;
  }
  if (fmt == NULL && detect_format (path, &fmt) == -1)
    return NULL;
  if (strcmp (fmt, "raw") != 0 && strcmp (fmt, "qcow2") != 0) {
    set_error (PB_E_USAGE, 0, "%s: unsupported image format '%s'", path, fmt);
    return NULL;
  }
  /* QEMU would refuse too, but with a message about locks on bytes. */
  if (writable && reader_check_unlocked (path) == -1)
    return NULL;
  c = conn_new ("image", path);
  if (c == NULL || start_qemu_nbd (c, path, fmt, writable) == -1
      || negotiate (c) == -1 || query_export (c) == -1)
    goto fail;
  if (writable && nbd_is_read_only (c->nbd) != 0) {
    set_error (PB_E_TARGET, 0, "%s opened read-only", c->name);
    goto fail;
  }
  return c;

 fail:
  reader_close (c);
  return NULL;
}

uint64_t
reader_size (struct reader_conn *c)
{
  return c->size;
}

bool
reader_has_allocation (struct reader_conn *c)
{
  return c->has_alloc;
}

uint32_t
reader_max_request (struct reader_conn *c)
{
  return c->max_request;
}

struct nbd_handle *
reader_handle (struct reader_conn *c)
{
  return c->nbd;
}

const char *
reader_name (struct reader_conn *c)
{
  return c->name;
}

const char *
reader_bitmap_context (struct reader_conn *c)
{
  return c->bitmap_ctx;
}

char *
reader_list_contexts (struct reader_conn *c)
{
  char *s = strdup (c->offered ? c->offered : "(unknown)");

  if (s == NULL)
    set_error (PB_E_FAIL, errno, "out of memory");
  return s;
}

/* Callers' ranges must lie inside the export (a bug otherwise). */
static int
check_range (struct reader_conn *c, const char *what, uint64_t len,
             uint64_t off)
{
  uint64_t end;

  if (ADD_OVERFLOW (off, len, &end) || end > c->size) {
    set_error (PB_E_USAGE, 0, "%s %s: %" PRIu64 " bytes at offset %" PRIu64
               " go beyond its size %" PRIu64, what, c->name, len, off,
               c->size);
    return -1;
  }
  return 0;
}

/* Reads and writes, split into requests of at most max_request. */
static int
transfer (struct reader_conn *c, bool write, char *p, size_t len,
          uint64_t off)
{
  size_t n;
  int r;

  if (check_range (c, write ? "write" : "read", len, off) == -1)
    return -1;
  for (; len > 0; p += n, off += n, len -= n) {
    n = MIN (len, c->max_request);
    r = write ? nbd_pwrite (c->nbd, p, n, off, 0)
              : nbd_pread (c->nbd, p, n, off, 0);
    if (r == -1) {
      reader_nbd_error (c, write ? "write" : "read", off);
      return -1;
    }
  }
  return 0;
}

int
reader_pread (struct reader_conn *c, void *buf, size_t len, uint64_t off)
{
  return transfer (c, false, buf, len, off);
}

int
reader_pwrite (struct reader_conn *c, const void *buf, size_t len,
               uint64_t off)
{
  return transfer (c, true, (char *) buf, len, off);  /* only read from */
}

/* ---- Asynchronous reads (backup) ----
 * One request at a time leaves the server idle while pullback hashes and
 * the client idle while the server reads, so a backup keeps several reads
 * in flight.  Requests are at most READ_REQUEST bytes: nbdcopy measured
 * 256 KiB requests to be much faster than large ones (a large request is
 * served, and its reply received, in one piece).  Completions run in the
 * thread that drives the handle (any call on C), and only touch A.
 * Commands are retired by reap(), not by their callback: a command that
 * completes while it is being issued (the server went away) would be
 * freed inside nbd_aio_pread, which then reads it (libnbd 1.14, seen
 * with valgrind in test-faults). */
#define READ_REQUEST (256 * 1024)

static int
read_done (void *opaque, int *error)
{
  struct reader_aio *a = opaque;

  if (*error && a->err == 0)
    a->err = *error;
  a->pending--;
  return 0;                     /* reap() retires it */
}

static void
reap (struct reader_conn *c)
{
  struct nbd_handle *h;
  int64_t cookie;
  unsigned i;

  for (i = 0; i <= c->nextra; i++) {
    h = handle_at (c, i);
    while ((cookie = nbd_aio_peek_command_completed (h)) > 0)
      nbd_aio_command_completed (h, cookie);
  }
}

static int64_t
in_flight (struct reader_conn *c)
{
  int64_t n = 0, r;
  unsigned i;

  for (i = 0; i <= c->nextra; i++)
    if ((r = nbd_aio_in_flight (handle_at (c, i))) > 0)
      n += r;
  return n;
}

/* poll(2) events for a handle with commands in flight, 0 if none. */
static short
poll_events (struct nbd_handle *h)
{
  unsigned dir;

  if (nbd_aio_in_flight (h) <= 0)
    return 0;
  dir = nbd_aio_get_direction (h);
  return (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0)
         | (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
}

/* Run every handle of C with commands in flight, as nbd_poll does for
 * one: wait up to TIMEOUT ms, then let each handle whose socket is ready
 * make progress.  -1 (errno set) if nothing could be waited for.  A
 * handle that fails here dies, failing its commands, which callers see
 * in their reads' errors. */
static int
poll_handles (struct reader_conn *c, int timeout)
{
  struct pollfd fds[READER_MAX_CONNECTIONS];
  struct nbd_handle *hs[READER_MAX_CONNECTIONS];
  unsigned i, n = 0;

  for (i = 0; i <= c->nextra; i++) {
    hs[n] = handle_at (c, i);
    fds[n] = (struct pollfd) { .fd = nbd_aio_get_fd (hs[n]),
                               .events = poll_events (hs[n]) };
    if (fds[n].events != 0 && fds[n].fd >= 0)
      n++;
  }
  if (n == 0) {
    errno = ENOTCONN;
    return -1;
  }
  if (poll (fds, n, timeout) == -1)
    return errno == EINTR ? 0 : -1;
  for (i = 0; i < n; i++)
    if (fds[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
      nbd_aio_notify_read (hs[i]);
    else if (fds[i].revents & POLLOUT)
      nbd_aio_notify_write (hs[i]);
  return 0;
}

void
reader_pread_start (struct reader_conn *c, void *buf, size_t len,
                    uint64_t off, struct reader_aio *a)
{
  size_t n, max = MIN (c->max_request, READ_REQUEST);
  struct nbd_handle *h = handle_at (c, c->next);
  char *p = buf;

  a->pending = 0;
  a->err = 0;
  a->off = off;
  if (check_range (c, "read", len, off) == -1) {
    a->err = EINVAL;
    return;
  }
  /* Round robin, a chunk at a time: chunks are finished in order, so
   * each handle has about the same share of the reads ahead. */
  c->next = (c->next + 1) % (1 + c->nextra);
  for (; len > 0; p += n, off += n, len -= n) {
    n = MIN (len, max);
    a->pending++;               /* before: the reply may come at once */
    if (nbd_aio_pread (h, p, n, off,
                       (nbd_completion_callback) { .callback = read_done,
                                                   .user_data = a }, 0)
        == -1) {
      a->pending--;             /* no callback for a command not issued */
      a->err = nbd_get_errno () ? nbd_get_errno () : EIO;
      return;
    }
  }
}

/* Run the handle until A's reads are answered (or, A NULL, until none is
 * in flight at all).  A dead handle has retired its commands (with an
 * error each), so this ends. */
static void
run_until (struct reader_conn *c, struct reader_aio *a)
{
  while (reap (c), a ? a->pending > 0 : in_flight (c) > 0)
    if (poll_handles (c, -1) == -1) {
      if (a && a->err == 0)
        a->err = errno ? errno : EIO;
      break;
    }
  reap (c);
}

int
reader_aio_wait (struct reader_conn *c, struct reader_aio *a)
{
  run_until (c, a);
  if (a->pending == 0 && a->err == 0)
    return 0;
  set_error (PB_E_NBD, a->err ? a->err : EIO, "read %s at offset %" PRIu64,
             c->name, a->off);
  return -1;
}

void
reader_aio_progress (struct reader_conn *c)
{
  if (in_flight (c) > 0)
    poll_handles (c, 0);      /* a failure shows in the reads' errors */
  reap (c);
}

void
reader_aio_drain (struct reader_conn *c)
{
  if (c)
    run_until (c, NULL);
}

/* No flags on purpose: without NO_HOLE, qemu-nbd (--discard=unmap) may
 * deallocate, so a zeroed qcow2 range is left unallocated instead of
 * holding clusters of written zeros (checked with qemu-img map in
 * test-plan.c).  FAST_ZERO would only let the server refuse.  (Targets
 * are served by qemu-nbd, which always supports zero requests.) */
int
reader_zero (struct reader_conn *c, uint64_t len, uint64_t off)
{
  uint64_t n;

  if (check_range (c, "zero", len, off) == -1)
    return -1;
  for (; len > 0; off += n, len -= n) {
    n = MIN (len, MAX_ZERO);
    if (nbd_zero (c->nbd, n, off, 0) == -1) {
      reader_nbd_error (c, "zero", off);
      return -1;
    }
  }
  return 0;
}

/* ---- Asynchronous writes (restore to qcow2) ----
 * Each write waits for qemu-nbd's reply, so one at a time the restore
 * would spend most of its time idle; up to WRITES_IN_FLIGHT writes are
 * queued instead, each from its own copy of the data (the caller's buffer
 * is reused at once).  A failure is kept and reported by the next call or
 * by reader_wait_writes. */
#define WRITES_IN_FLIGHT 16

struct pending_write {
  struct reader_conn *c;
  void *data;
  uint64_t off;
};

static int
write_done (void *opaque, int *error)
{
  struct pending_write *w = opaque;

  if (*error && w->c->write_errno == 0) {
    w->c->write_errno = *error;
    w->c->write_off = w->off;
  }
  return 1;                     /* retire the command */
}

static void
write_free (void *opaque)
{
  struct pending_write *w = opaque;

  free (w->data);
  free (w);
}

static int
write_failed (struct reader_conn *c)
{
  set_error (PB_E_NBD, c->write_errno, "write %s at offset %" PRIu64,
             c->name, c->write_off);
  return -1;
}

/* Until at most MAX writes are in flight. */
static int
wait_writes (struct reader_conn *c, int64_t max)
{
  while (nbd_aio_in_flight (c->nbd) > max)
    if (nbd_poll (c->nbd, -1) == -1) {
      conn_error (c, PB_E_NBD, "write");
      return -1;
    }
  return c->write_errno ? write_failed (c) : 0;
}

int
reader_pwrite_async (struct reader_conn *c, const void *buf, size_t len,
                     uint64_t off)
{
  struct pending_write *w;

  if (len > c->max_request)
    return wait_writes (c, 0) == -1 ? -1 : reader_pwrite (c, buf, len, off);
  if (check_range (c, "write", len, off) == -1 ||
      wait_writes (c, WRITES_IN_FLIGHT - 1) == -1)
    return -1;
  if ((w = malloc (sizeof *w)) == NULL || (w->data = malloc (len)) == NULL) {
    free (w);
    set_error (PB_E_FAIL, errno, "out of memory");
    return -1;
  }
  memcpy (w->data, buf, len);
  w->c = c;
  w->off = off;
  if (nbd_aio_pwrite (c->nbd, w->data, len, off,
                      (nbd_completion_callback) { .callback = write_done,
                                                  .user_data = w,
                                                  .free = write_free }, 0)
      == -1) {
    reader_nbd_error (c, "write", off);
    return -1;
  }
  return 0;
}

int
reader_wait_writes (struct reader_conn *c)
{
  return wait_writes (c, 0);
}

int
reader_flush (struct reader_conn *c)
{
  if (reader_wait_writes (c) == -1)
    return -1;
  if (nbd_can_flush (c->nbd) != 1)
    return 0;
  if (nbd_flush (c->nbd, 0) == -1) {
    conn_error (c, PB_E_NBD, "flush");
    return -1;
  }
  return 0;
}
