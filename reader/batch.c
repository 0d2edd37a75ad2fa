/* pullback - reader/batch.c: catalog rows written in batches.
 *
 * With synchronous=FULL every SQLite commit costs an fsync, so writing a
 * row per chunk would make the catalog the bottleneck of a backup.  Map
 * nodes and "chunk is in the store" rows are content-addressed: written
 * early or twice they do no harm, so they are queued here and written a few
 * hundred per transaction.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

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
  size_t n;
  struct batch_row rows[BATCH_ROWS];
};

struct catalog_batch *
catalog_batch_new (struct catalog *cat)
{
  struct catalog_batch *b = calloc (1, sizeof *b);

  if (b == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  b->cat = cat;
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
  if (row->data)
    return catalog_put_node (b->cat, row->id.b, row->level, row->data, row->len);
  return catalog_add_chunk (b->cat, row->id.b, row->stored);
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
