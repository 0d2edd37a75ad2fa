/* pullback - reader/pipeline.c: storing and loading chunks on worker threads.
 *
 * A backup reads chunks in order over NBD, and each new chunk must then be
 * compressed (and encrypted), written to a temporary file, fsync'd and
 * renamed: most of a chunk's time, and time the reading thread would
 * otherwise spend waiting.  So the reading thread hands each chunk to a
 * ring of slots served by worker threads that do the store_put_chunk, and
 * goes on reading.  Results are consumed strictly in chunk order (the map
 * tree and the content digest need the ids in order), by the reading
 * thread, through the caller's callback: only that thread ever touches the
 * catalog, so the catalog needs no locking.  Memory is bounded by the
 * number of slots (2 per worker + 2), not by the disk.
 *
 * Restore uses the same ring the other way round: workers load chunks
 * (read, check the checksum and id, decrypt, decompress) and the calling
 * thread writes them to the target in order.
 *
 * Slots are used in order: [head, tail) are handed out and not yet
 * consumed.  A slot handed out is held by the calling thread until it
 * submits it: a backup holds several while their NBD reads are in flight
 * (the AHEAD extra slots), and submits each when its read is done.
 * Workers take the queued slots in order (from next), never passing a
 * held one, marking them busy so that no slot is ever stored twice or
 * reused while a worker reads its buffer; a slot is consumed once done.
 * When the calling thread must wait for the oldest slot and holds it, the
 * FINISH callback is asked to submit it (else the wait would never end).
 * head, next, tail and the states change under the lock.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "util.h"

enum slot_state { SLOT_FREE, SLOT_HELD, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

struct chunk_pipe {
  struct store *store;
  pipe_consume_fn consume;
  pipe_finish_fn finish;        /* NULL: slots are never held long */
  void *opaque;
  pthread_mutex_t lock;
  pthread_cond_t work;          /* a slot was queued, or stop */
  pthread_cond_t done;          /* a slot is done */
  struct pipe_slot *slots;
  enum slot_state *state;
  size_t nslots;
  uint64_t head, next, tail;
  pthread_t *threads;
  unsigned nthreads, started;
  bool stop;
};

/* Store slot S's chunk: 1 new, 0 already there, -1 error. */
static int
put_slot (struct chunk_pipe *p, struct pipe_slot *s)
{
  int r = store_put_chunk (p->store, &s->id, s->buf, s->len, &s->stored);

  if (r == 0 && store_stat_chunk (p->store, &s->id, &s->stored) == -1)
    r = -1;
  return r;
}

/* Load slot S's chunk, which must hold exactly S->len bytes. */
static int
get_slot (struct chunk_pipe *p, struct pipe_slot *s)
{
  size_t got;

  if (store_load_chunk (p->store, &s->id, s->buf, s->len, &got) == -1)
    return -1;
  if (got != s->len) {
    set_error (PB_E_CORRUPT, 0, "chunk holds %zu bytes, expected %zu", got,
               s->len);
    return -1;
  }
  return 0;
}

/* Load, then write at once (a raw restore target takes positional writes
 * in any order, so the workers write in parallel). */
static int
get_write_slot (struct chunk_pipe *p, struct pipe_slot *s)
{
  if (get_slot (p, s) == -1)
    return -1;
  if (full_pwrite (s->fd, s->buf, s->len, s->off) == 0)
    return 0;
  set_error (PB_E_IO, errno, "write %s", s->fdname);
  return -1;
}

/* Slot S's work (outside the lock); an error is kept in S. */
static void
work_slot (struct chunk_pipe *p, struct pipe_slot *s)
{
  int r = s->op == PIPE_GET ? get_slot (p, s)
        : s->op == PIPE_GET_WRITE ? get_write_slot (p, s) : put_slot (p, s);

  s->is_new = r == 1;
  s->failed = r == -1;
  if (s->failed)
    pb_save_error (&s->error);
}

/* Take the next queued slot, in order; NULL when told to stop. */
static struct pipe_slot *
take (struct chunk_pipe *p)
{
  size_t i;

  for (;;) {
    if (p->stop)
      return NULL;
    if (p->next < p->head)
      p->next = p->head;        /* consumed meanwhile: they were done */
    /* Nothing queued yet, or a held slot first: its chunk comes first. */
    if (p->next == p->tail || p->state[p->next % p->nslots] == SLOT_HELD) {
      pthread_cond_wait (&p->work, &p->lock);
      continue;
    }
    i = p->next++ % p->nslots;
    if (p->state[i] == SLOT_QUEUED) {
      p->state[i] = SLOT_BUSY;
      return &p->slots[i];
    }
  }
}

static void *
worker (void *arg)
{
  struct chunk_pipe *p = arg;
  struct pipe_slot *s;

  pthread_mutex_lock (&p->lock);
  while ((s = take (p)) != NULL) {
    pthread_mutex_unlock (&p->lock);
    work_slot (p, s);
    pthread_mutex_lock (&p->lock);
    p->state[s - p->slots] = SLOT_DONE;
    pthread_cond_broadcast (&p->done);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

static int
alloc_slots (struct chunk_pipe *p, size_t slot_size)
{
  size_t i;

  p->slots = calloc (p->nslots, sizeof *p->slots);
  p->state = calloc (p->nslots, sizeof *p->state);
  p->threads = calloc (p->nthreads, sizeof *p->threads);
  if (p->slots == NULL || p->state == NULL || p->threads == NULL)
    return -1;
  for (i = 0; i < p->nslots; i++)
    if ((p->slots[i].buf = malloc (slot_size)) == NULL)
      return -1;
  return 0;
}

struct chunk_pipe *
chunk_pipe_new (struct store *s, unsigned threads, size_t slot_size,
                pipe_consume_fn consume, void *opaque)
{
  return chunk_pipe_new_ahead (s, threads, 0, slot_size, consume, NULL,
                               opaque);
}

struct chunk_pipe *
chunk_pipe_new_ahead (struct store *s, unsigned threads, unsigned ahead,
                      size_t slot_size, pipe_consume_fn consume,
                      pipe_finish_fn finish, void *opaque)
{
  struct chunk_pipe *p = calloc (1, sizeof *p);

  if (p == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->work, NULL);
  pthread_cond_init (&p->done, NULL);
  p->store = s;
  p->consume = consume;
  p->finish = finish;
  p->opaque = opaque;
  p->nthreads = threads ? threads : 1;
  p->nslots = 2 * (size_t) p->nthreads + 2 + ahead;
  if (alloc_slots (p, slot_size) == -1) {
    set_error (PB_E_FAIL, errno, "out of memory for the chunk pipeline");
    chunk_pipe_free (p);
    return NULL;
  }
  for (; p->started < p->nthreads; p->started++)
    if ((errno = pthread_create (&p->threads[p->started], NULL, worker, p))) {
      set_error (PB_E_FAIL, errno, "pthread_create");
      chunk_pipe_free (p);
      return NULL;
    }
  return p;
}

void
chunk_pipe_free (struct chunk_pipe *p)
{
  size_t i;

  if (p == NULL)
    return;
  pthread_mutex_lock (&p->lock);
  p->stop = true;
  pthread_cond_broadcast (&p->work);
  pthread_mutex_unlock (&p->lock);
  for (i = 0; i < p->started; i++)
    pthread_join (p->threads[i], NULL);
  for (i = 0; p->slots && i < p->nslots; i++)
    free (p->slots[i].buf);
  free (p->slots);
  free (p->state);
  free (p->threads);
  pthread_cond_destroy (&p->done);
  pthread_cond_destroy (&p->work);
  pthread_mutex_destroy (&p->lock);
  free (p);
}

bool
chunk_pipe_idle (struct chunk_pipe *p)
{
  return p->head == p->tail;    /* only the reading thread moves these */
}

/* Until slot S is done.  Only the calling thread submits, so a slot held
 * stays held until FINISH (which must submit it) is called. */
static int
wait_done (struct chunk_pipe *p, struct pipe_slot *s)
{
  enum slot_state *st = &p->state[s - p->slots];

  pthread_mutex_lock (&p->lock);
  while (*st != SLOT_DONE) {
    if (*st == SLOT_HELD) {
      pthread_mutex_unlock (&p->lock);
      if (p->finish && p->finish (p->opaque) == -1)
        return -1;              /* its error */
      if (*st == SLOT_HELD) {
        set_error (PB_E_FAIL, 0, "chunk pipeline: waiting for a slot "
                   "never submitted");
        return -1;
      }
      pthread_mutex_lock (&p->lock);
      continue;
    }
    pthread_cond_wait (&p->done, &p->lock);
  }
  pthread_mutex_unlock (&p->lock);
  return 0;
}

/* Consume the oldest slot, waiting for it if WAIT; 1 consumed, 0 not
 * (not done yet, or nothing outstanding), -1 on error. */
static int
consume_oldest (struct chunk_pipe *p, bool wait)
{
  struct pipe_slot *s;
  int r;

  if (p->head == p->tail)
    return 0;
  s = &p->slots[p->head % p->nslots];
  if (wait && wait_done (p, s) == -1)
    return -1;
  pthread_mutex_lock (&p->lock);
  r = p->state[s - p->slots] == SLOT_DONE;
  pthread_mutex_unlock (&p->lock);
  if (!r)
    return 0;
  if (s->failed) {
    /* As the worker recorded it (set_error again would append the
     * errno's text a second time). */
    pb_restore_error (&s->error);
    p->consume (p->opaque, s);  /* to add its context */
    return -1;
  }
  if (p->consume (p->opaque, s) == -1)
    return -1;
  pthread_mutex_lock (&p->lock);
  p->state[s - p->slots] = SLOT_FREE;
  p->head++;
  pthread_mutex_unlock (&p->lock);
  return 1;
}

struct pipe_slot *
chunk_pipe_get (struct chunk_pipe *p)
{
  struct pipe_slot *s;
  int r;

  /* What is done already is consumed now, so that slots come back. */
  while ((r = consume_oldest (p, p->tail - p->head == p->nslots)) == 1)
    ;
  if (r == -1)
    return NULL;
  s = &p->slots[p->tail % p->nslots];
  s->failed = s->is_new = false;
  s->stored = 0;
  s->op = PIPE_PUT;
  pthread_mutex_lock (&p->lock);
  p->state[s - p->slots] = SLOT_HELD;
  p->tail++;
  pthread_mutex_unlock (&p->lock);
  return s;
}

struct pipe_slot *
chunk_pipe_last_done (struct chunk_pipe *p)
{
  struct pipe_slot *s;
  bool done;

  if (p->head == p->tail)
    return NULL;
  s = &p->slots[(p->tail - 1) % p->nslots];
  pthread_mutex_lock (&p->lock);
  done = p->state[s - p->slots] == SLOT_DONE;
  pthread_mutex_unlock (&p->lock);
  return done ? s : NULL;
}

void
chunk_pipe_submit (struct chunk_pipe *p, struct pipe_slot *s, bool work)
{
  size_t i = s - p->slots;

  pthread_mutex_lock (&p->lock);
  p->state[i] = work ? SLOT_QUEUED : SLOT_DONE;
  /* Workers wait for work, or behind this slot if it was held where they
   * are (then all of them: queued slots may follow it). */
  if (i == p->next % p->nslots)
    pthread_cond_broadcast (&p->work);
  else if (work)
    pthread_cond_signal (&p->work);
  pthread_mutex_unlock (&p->lock);
}

int
chunk_pipe_drain (struct chunk_pipe *p)
{
  int r;

  while ((r = consume_oldest (p, true)) == 1)
    ;
  return r;
}
