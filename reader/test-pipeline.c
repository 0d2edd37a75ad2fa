/* pullback - reader/test-pipeline.c: unit test of the chunk pipeline.
 *
 * Many chunks of mixed kinds (stored, already known, duplicated while in
 * flight, compressible and not, of uneven sizes so that workers finish
 * out of order) go through pipelines of 1, 2, 3 and 8 workers into real
 * stores.  Proves: results are consumed exactly once each, in submission
 * order, with their own ids; every stored chunk reads back equal to what
 * was submitted (no worker ever stored a slot's buffer after it was
 * reused); "new" is counted once per chunk not yet in the store; the
 * stores of all worker counts hold the same objects; a put that fails
 * (a chunk too large for the store) stops the pipeline with that error,
 * named, from get or drain; freeing a pipeline with work outstanding
 * joins its workers (valgrind: no leak, no use after free).  Slots held
 * by the caller (a backup's reads in flight) and submitted in any order
 * are consumed in order; waiting for a held slot asks the caller to
 * finish it (or fails without a way to: never a hang).  Loading
 * (restore's way round): every chunk comes back checked, in order, with
 * its bytes; a missing one fails the pipeline, named.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "internal.h"
#include "test.h"
#include "util.h"

#define NCHUNKS 600
#define CS (64 * 1024)

struct run {
  struct store *s;
  uint64_t next;                /* the index expected next */
  uint64_t consumed, fresh;
  store_id ids[NCHUNKS];
  bool order_ok, id_ok;
};

/* Chunk I's content: a few distinct patterns repeat (duplicates in
 * flight), odd chunks are noise (slow to compress), lengths vary. */
static size_t
fill (uint64_t i, uint8_t *buf)
{
  size_t len = CS - (i % 7) * 4096, j;
  uint64_t x = (i % 5 == 0) ? 42 : i * 0x9e3779b97f4a7c15ULL;

  for (j = 0; j < len; j++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    buf[j] = i % 2 ? (uint8_t) x : (uint8_t) (j / 512 + i % 5);
  }
  return len;
}

static int
consume (void *opaque, struct pipe_slot *s)
{
  struct run *r = opaque;

  if (s->index != r->next)
    r->order_ok = false;
  if (memcmp (&s->id, &r->ids[s->index], sizeof s->id) != 0)
    r->id_ok = false;
  r->next++;
  r->consumed++;
  r->fresh += s->is_new;
  return 0;
}

/* Distinct ids among the stored chunks of a run. */
static uint64_t
distinct (const struct run *r)
{
  uint64_t i, j, n = 0;

  for (i = 0; i < NCHUNKS; i++) {
    if (i % 11 == 3)
      continue;
    for (j = 0; j < i; j++)
      if (j % 11 != 3 && memcmp (&r->ids[i], &r->ids[j], sizeof r->ids[i]) == 0)
        break;
    n += j == i;
  }
  return n;
}

/* Every chunk the run stored reads back with the bytes submitted. */
static bool
reads_back (struct store *s, const struct run *r)
{
  static uint8_t back[CS], want[CS];
  uint64_t i;
  size_t len, wlen;

  for (i = 0; i < NCHUNKS; i++) {
    if (i % 11 == 3)
      continue;
    wlen = fill (i, want);
    if (store_get_chunk (s, &r->ids[i], back, sizeof back, &len) == -1 ||
        len != wlen || memcmp (back, want, len) != 0)
      return false;
  }
  return true;
}

static void
run_pipe (struct store *s, unsigned threads, bool again)
{
  struct run r = { .s = s, .order_ok = true, .id_ok = true };
  struct chunk_pipe *p = chunk_pipe_new (s, threads, CS, consume, &r);
  uint64_t i;

  REQUIRE (p != NULL);
  for (i = 0; i < NCHUNKS; i++) {
    struct pipe_slot *sl = chunk_pipe_get (p);
    REQUIRE (sl != NULL);
    sl->index = i;
    sl->len = fill (i, sl->buf);
    store_id_of (s, sl->buf, sl->len, &sl->id);
    r.ids[i] = sl->id;
    chunk_pipe_submit (p, sl, i % 11 != 3);   /* some done at once */
  }
  CHECK (chunk_pipe_drain (p) == 0, "%u workers: drain", threads);
  CHECK (chunk_pipe_idle (p), "%u workers: idle after drain", threads);
  chunk_pipe_free (p);
  CHECK (r.consumed == NCHUNKS && r.order_ok && r.id_ok,
         "%u workers: %" PRIu64 " results, each once, in order, own id",
         threads, r.consumed);
  CHECK (reads_back (s, &r), "%u workers: every stored chunk reads back "
         "as submitted", threads);
  /* A duplicate in flight may be written twice, so "new" can exceed the
   * distinct contents, never fall short; a second run finds them all. */
  if (again)
    CHECK (r.fresh == 0, "%u workers, again: no new chunk (%" PRIu64 ")",
           threads, r.fresh);
  else
    CHECK (r.fresh >= distinct (&r) && distinct (&r) < NCHUNKS,
           "%u workers: %" PRIu64 " new chunks for %" PRIu64 " distinct",
           threads, r.fresh, distinct (&r));
}

static int
count_one (const store_id *id, void *opaque)
{
  (void) id;
  ++*(uint64_t *) opaque;
  return 0;
}

static uint64_t
objects (struct store *s)
{
  uint64_t n = 0;

  store_list_chunks (s, count_one, &n);
  return n;
}

static int
never (void *opaque, struct pipe_slot *s)
{
  (void) opaque; (void) s;
  return 0;
}

/* A put that fails: a chunk claimed larger than any store accepts. */
static void
test_failure (struct store *s)
{
  struct chunk_pipe *p = chunk_pipe_new (s, 2, CS, never, NULL);
  struct pipe_slot *sl;
  int i, got = 0;

  REQUIRE (p != NULL);
  sl = chunk_pipe_get (p);
  REQUIRE (sl != NULL);
  sl->index = 0;
  sl->len = STORE_MAX_CHUNK_SIZE + 1;   /* refused before any read of buf */
  memset (&sl->id, 7, sizeof sl->id);
  chunk_pipe_submit (p, sl, true);
  for (i = 0; i < 20 && got == 0; i++) {
    if ((sl = chunk_pipe_get (p)) == NULL)
      got = 1;
    else {
      sl->index = i + 1;
      sl->len = 0;
      chunk_pipe_submit (p, sl, false);
    }
  }
  if (!got)
    got = chunk_pipe_drain (p) == -1;
  CHECK (got && strstr (pb_get_error (), "exceeds the maximum"),
         "a failed put stops the pipeline with its error: %s", pb_get_error ());
  chunk_pipe_free (p);
}

/* GET: workers load chunks (checked) into slots, consumed in order with
 * the right bytes; a missing chunk fails, named by its id. */
struct loads {
  uint64_t next;
  bool ok;
};

static int
check_load (void *opaque, struct pipe_slot *s)
{
  struct loads *l = opaque;
  uint8_t want[CS];
  size_t len;

  if (s->failed)
    return -1;
  len = fill (s->index, want);
  if (s->index < l->next || s->len != len || memcmp (s->buf, want, len))
    l->ok = false;
  l->next = s->index + 1;
  return 0;
}

static void
test_get (struct store *s, unsigned threads)
{
  struct loads l = { .ok = true };
  struct chunk_pipe *p = chunk_pipe_new (s, threads, CS, check_load, &l);
  uint8_t tmp[CS];
  uint64_t i;
  struct pipe_slot *sl;

  REQUIRE (p != NULL);
  for (i = 0; i < NCHUNKS; i++) {
    if (i % 11 == 3)
      continue;                 /* never stored */
    REQUIRE ((sl = chunk_pipe_get (p)) != NULL);
    sl->index = i;
    sl->len = fill (i, tmp);
    store_id_of (s, tmp, sl->len, &sl->id);
    sl->op = PIPE_GET;
    chunk_pipe_submit (p, sl, true);
  }
  CHECK (chunk_pipe_drain (p) == 0 && l.ok && l.next == NCHUNKS,
         "%u workers: every chunk loaded, checked, in order, right bytes",
         threads);
  chunk_pipe_free (p);
  p = chunk_pipe_new (s, threads, CS, never, NULL);
  REQUIRE (p != NULL && (sl = chunk_pipe_get (p)) != NULL);
  sl->index = 0;
  sl->len = 100;
  memset (&sl->id, 0xab, sizeof sl->id);
  sl->op = PIPE_GET;
  chunk_pipe_submit (p, sl, true);
  CHECK (chunk_pipe_drain (p) == -1 && pb_get_errclass () == PB_E_CORRUPT &&
         strstr (pb_get_error (), "abababab") && strstr (pb_get_error (), "missing"),
         "%u workers: a missing chunk fails the load: %s", threads,
         pb_get_error ());
  chunk_pipe_free (p);
}

/* Slots held while they are filled (a backup's reads in flight) and
 * submitted out of order, as reads complete: consumed in order all the
 * same; when the pipeline must wait for a held slot it asks FINISH. */
struct holder {
  struct run r;
  struct chunk_pipe *p;
  struct pipe_slot *held[64];
  size_t n;
  uint64_t x;                   /* xorshift state: which slot completes */
  unsigned finishes;
  bool oldest_ok;
};

static void
submit_held (struct holder *h, size_t k)
{
  struct pipe_slot *sl = h->held[k];

  memmove (&h->held[k], &h->held[k + 1], (h->n - k - 1) * sizeof *h->held);
  h->n--;
  chunk_pipe_submit (h->p, sl, sl->index % 11 != 3);
}

static size_t
pick (struct holder *h)
{
  h->x ^= h->x << 13; h->x ^= h->x >> 7; h->x ^= h->x << 17;
  return h->x % h->n;
}

/* The oldest held slot must be submitted: it and a random other. */
static int
finish (void *opaque)
{
  struct holder *h = opaque;
  uint64_t min = UINT64_MAX;
  size_t k;

  h->finishes++;
  for (k = 0; k < h->n; k++)
    min = MIN (min, h->held[k]->index);
  if (h->n == 0 || h->held[0]->index != min)
    h->oldest_ok = false;
  submit_held (h, 0);
  if (h->n > 0)
    submit_held (h, pick (h));
  return 0;
}

static void
test_held (struct store *s, unsigned threads)
{
  struct holder h = { .r = { .s = s, .order_ok = true, .id_ok = true },
                      .x = 88172645463325252ULL, .oldest_ok = true };
  uint64_t i;

  h.p = chunk_pipe_new_ahead (s, threads, 6, CS, consume, finish, &h.r);
  REQUIRE (h.p != NULL);
  for (i = 0; i < NCHUNKS; i++) {
    struct pipe_slot *sl = chunk_pipe_get (h.p);
    REQUIRE (sl != NULL && h.n < 64);
    sl->index = i;
    sl->len = fill (i, sl->buf);
    store_id_of (s, sl->buf, sl->len, &sl->id);
    h.r.ids[i] = sl->id;
    h.held[h.n++] = sl;
    if (h.x % 3 == 0)           /* a read completes, not the oldest's */
      submit_held (&h, pick (&h));
    else
      pick (&h);
  }
  CHECK (chunk_pipe_drain (h.p) == 0 && h.n == 0,
         "%u workers, held slots: drain asks for all of them", threads);
  chunk_pipe_free (h.p);
  CHECK (h.r.consumed == NCHUNKS && h.r.order_ok && h.r.id_ok,
         "%u workers, held slots submitted out of order: %" PRIu64
         " results, each once, in order, own id", threads, h.r.consumed);
  CHECK (h.finishes > 0 && h.oldest_ok, "%u workers: finish asked %u times, "
         "always for the oldest held slot", threads, h.finishes);
  CHECK (reads_back (s, &h.r), "%u workers, held slots: every stored chunk "
         "reads back as submitted", threads);
}

/* Without FINISH, waiting for a slot the caller holds is an error, not a
 * hang. */
static void
test_held_no_finish (struct store *s)
{
  struct chunk_pipe *p = chunk_pipe_new (s, 1, CS, never, NULL);
  struct pipe_slot *sl = NULL;
  int i;

  REQUIRE (p != NULL);
  for (i = 0; i < 5 && (sl = chunk_pipe_get (p)) != NULL; i++)
    ;
  CHECK (sl == NULL && i == 4 && strstr (pb_get_error (), "never submitted"),
         "a full ring of held slots and no finish: get fails after 4: %s",
         pb_get_error ());
  chunk_pipe_free (p);
}

/* Free with work still queued: the workers are joined, nothing leaks. */
static void
test_free_busy (struct store *s)
{
  struct run r = { .order_ok = true, .id_ok = true };
  struct chunk_pipe *p = chunk_pipe_new (s, 3, CS, consume, &r);
  int i;

  REQUIRE (p != NULL);
  for (i = 0; i < 8; i++) {
    struct pipe_slot *sl = chunk_pipe_get (p);
    REQUIRE (sl != NULL);
    sl->index = i;
    sl->len = fill (1000 + i, sl->buf);
    store_id_of (s, sl->buf, sl->len, &sl->id);
    r.ids[i] = sl->id;
    chunk_pipe_submit (p, sl, true);
  }
  chunk_pipe_free (p);
  CHECK (true, "freed a pipeline with puts outstanding");
}

int
main (void)
{
  char dir[] = "/tmp/test-pipeline.XXXXXX", path[64], cmd[128];
  unsigned threads[] = { 1, 2, 3, 8 };
  uint64_t n[4];
  size_t t;

  REQUIRE (mkdtemp (dir) != NULL);
  for (t = 0; t < 4; t++) {
    struct store *s;
    snprintf (path, sizeof path, "%s/s%u", dir, threads[t]);
    s = store_create (path, CS, NULL);
    REQUIRE (s != NULL);
    run_pipe (s, threads[t], false);
    run_pipe (s, threads[t], true);     /* again: everything known */
    test_get (s, threads[t]);
    test_held (s, threads[t]);
    n[t] = objects (s);
    if (t == 0) {
      test_failure (s);
      test_free_busy (s);
      test_held_no_finish (s);
    }
    store_close (s);
  }
  CHECK (n[0] == n[1] && n[1] == n[2] && n[2] == n[3],
         "the stores hold the same objects (%" PRIu64 " %" PRIu64 " %" PRIu64
         " %" PRIu64 ")", n[0], n[1], n[2], n[3]);
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  if (system (cmd) != 0)
    test_failures++;
  return test_summary ();
}
