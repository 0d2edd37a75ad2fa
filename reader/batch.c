/* pullback - reader/batch.c: catalog rows written in batches, and the
 * guarded put that keeps a running backup safe from a concurrent gc.
 *
 * Writing a row per chunk in its own transaction would make the catalog
 * the bottleneck of a backup.  Map nodes and "chunk is in the store" rows
 * are content-addressed: written early or twice they do no harm, so they
 * are queued here and written a few hundred per transaction, with
 * synchronous=NORMAL (no fsync): they only matter once the point's own
 * commit, with FULL, has made the WAL durable.
 *
 * Every row goes in with a pin for the backup's lease, so that gc leaves
 * the object alone until the point is committed (when the references
 * counted from its nodes and roots take over) or the lease is dropped.
 * A batch cannot cover the moment an object is put: an object found
 * already in the store (a dedup hit) may be garbage that a gc is about to
 * delete.  So batch_pin pins first, in a transaction of its own (or
 * batch_pin_many, for the chunks whose reads a backup finished together),
 * and only then is the object looked for and written (reader/pipeline.c)
 * -- gc deletes inside its transaction, so once the pin is committed an object present stays
 * present, and one gc took before is not found and written again.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"
#include "maptree.h"

#define BATCH_ROWS 512

struct batch_row {
  store_id id;
  uint32_t level;               /* nodes only */
  uint64_t stored;              /* chunks only */
  void *data;                   /* node bytes; NULL for a chunk row */
  size_t len;
};

struct catalog_batch {
  struct catalog *cat;
  struct store *store;
  int64_t lease;                /* 0: no pins (no concurrent gc possible) */
  size_t n;
  struct batch_row rows[BATCH_ROWS];
};

struct catalog_batch *
catalog_batch_new (struct catalog *cat, struct store *store, int64_t lease)
{
  struct catalog_batch *b = calloc (1, sizeof *b);

  if (b == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  b->cat = cat;
  b->store = store;
  b->lease = lease;
  return b;
}

static void
drop_rows (struct catalog_batch *b)
{
  size_t i;

  for (i = 0; i < b->n; i++)
    free (b->rows[i].data);
  b->n = 0;
}

void
catalog_batch_free (struct catalog_batch *b)
{
  if (b == NULL)
    return;
  drop_rows (b);
  free (b);
}

static int
write_row (struct catalog_batch *b, const struct batch_row *row)
{
  const uint8_t *entries;
  size_t n;

  if (b->lease && catalog_pin (b->cat, b->lease, row->id.b) == -1)
    return -1;
  if (row->data == NULL)
    return catalog_add_chunk (b->cat, row->id.b, row->stored);
  if (maptree_node_entries (row->data, row->len, &entries, &n) == -1)
    return -1;
  return catalog_put_node (b->cat, row->id.b, row->level, row->data,
                           row->len, entries, n);
}

int
catalog_batch_flush (struct catalog_batch *b)
{
  size_t i;

  if (b->n == 0)
    return 0;
  if (catalog_begin (b->cat) == -1)
    return -1;
  for (i = 0; i < b->n; i++)
    if (write_row (b, &b->rows[i]) == -1)
      goto err;
  if (catalog_commit (b->cat) == -1)
    goto err;
  drop_rows (b);
  return 0;
 err:
  catalog_rollback (b->cat);
  return -1;
}

static struct batch_row *
next_row (struct catalog_batch *b)
{
  if (b->n == BATCH_ROWS && catalog_batch_flush (b) == -1)
    return NULL;
  return &b->rows[b->n];
}

int
catalog_batch_node (struct catalog_batch *b, const store_id *id,
                    uint32_t level, const void *data, size_t len)
{
  struct batch_row *row = next_row (b);

  if (row == NULL)
    return -1;
  row->data = malloc (len);
  if (row->data == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    return -1;
  }
  memcpy (row->data, data, len);
  row->id = *id;
  row->level = level;
  row->len = len;
  b->n++;
  return 0;
}

int
catalog_batch_chunk (struct catalog_batch *b, const store_id *id,
                     uint64_t stored)
{
  struct batch_row *row = next_row (b);

  if (row == NULL)
    return -1;
  memset (row, 0, sizeof *row);
  row->id = *id;
  row->stored = stored;
  b->n++;
  return 0;
}

/* In a transaction of its own (see the top of the file). */
int
batch_pin_many (struct catalog_batch *b, const store_id *ids, size_t n)
{
  size_t i;

  if (b->lease == 0 || n == 0)
    return 0;
  if (catalog_begin (b->cat) == -1)
    return -1;
  for (i = 0; i < n; i++)
    if (catalog_pin (b->cat, b->lease, ids[i].b) == -1) {
      catalog_rollback (b->cat);
      return -1;
    }
  if (catalog_commit (b->cat) == 0)
    return 0;
  catalog_rollback (b->cat);
  return -1;
}

int
batch_pin (struct catalog_batch *b, const store_id *id)
{
  /* Pinned before the object is looked for or written: an object found
   * present then stays (gc sees the pin), and one that gc deleted before
   * the pin was committed is not found and written anew.  The pin also
   * records what a backup that dies wrote, so that dropping its lease
   * turns exactly that into garbage (catalog_lease_drop). */
  return batch_pin_many (b, id, 1);
}

int
batch_put (struct catalog_batch *b, const store_id *id, const void *buf,
           size_t len, uint64_t *stored)
{
  int r;

  if (batch_pin (b, id) == -1)
    return -1;
  r = store_put_chunk (b->store, id, buf, len, stored);
  if (r == 0 && store_stat_chunk (b->store, id, stored) == -1)
    return -1;
  return r;
}
