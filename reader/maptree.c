/* pullback - reader/maptree.c: writing and reading chunk-map trees.
 *
 * See maptree.h for the idea and docs/FORMAT.md for the node encoding.  The
 * writer keeps one partial node per level (a few KiB whatever the disk
 * size) and emits a node as soon as it is full, so a backup streams its map
 * out; and the last node of each level, so that a run of identical nodes
 * (a sparse disk's zeros) costs one.  The reader keeps the path of nodes to the last index it served, so
 * a sequential walk loads each node once.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "errors.h"
#include "maptree.h"
#include "util.h"

struct level_buf {
  uint32_t count;
  store_id ids[MAPTREE_FANOUT];
};

/* The node a level emitted last: a sparse disk's long zero runs make the
 * same node again and again, which need not be hashed, looked for in the
 * store and pinned each time (this backup stored and pinned it already). */
struct last_node {
  bool valid;
  store_id id;
  struct level_buf ids;
};

struct maptree_writer {
  struct pullback_repo *r;
  struct catalog_batch *batch;
  uint64_t nchunks, added;
  uint32_t levels;
  bool have_root;
  store_id root;
  uint64_t new_bytes;
  EVP_MD_CTX *digest;
  struct level_buf buf[MAPTREE_MAX_LEVELS];
  struct last_node last[MAPTREE_MAX_LEVELS];
};

uint32_t
maptree_levels (uint64_t nchunks)
{
  uint32_t levels = 1;

  while (nchunks > MAPTREE_FANOUT) {
    nchunks = div_round_up (nchunks, MAPTREE_FANOUT);
    levels++;
  }
  return levels;
}

/* Number of entries in each node of LEVEL: entries at level 0 are the
 * chunks, at level k the nodes of level k-1. */
static uint64_t
entries_at_level (uint64_t nchunks, uint32_t level)
{
  while (level-- > 0)
    nchunks = div_round_up (nchunks, MAPTREE_FANOUT);
  return nchunks;
}

static void
put_le32 (uint8_t *p, uint32_t v)
{
  p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

static uint32_t
get_le32 (const uint8_t *p)
{
  return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
}

int
maptree_node_entries (const void *data, size_t len,
                      const uint8_t **entries, size_t *n)
{
  const uint8_t *p = data;
  uint32_t count;

  if (len < MAPTREE_HEADER || memcmp (p, MAPTREE_MAGIC, 4) != 0 || p[4] != 1) {
    set_error (PB_E_CORRUPT, 0, "map node: bad header");
    return -1;
  }
  count = get_le32 (p + 8);
  if (count > MAPTREE_FANOUT ||
      len != MAPTREE_HEADER + (size_t) count * STORE_ID_LEN) {
    set_error (PB_E_CORRUPT, 0, "map node: %u entries in %zu bytes",
               count, len);
    return -1;
  }
  *entries = p + MAPTREE_HEADER;
  *n = count;
  return 0;
}

/* Encode, store and catalog one node; its id goes into *ID. */
static bool
same_as_last (struct maptree_writer *w, uint32_t level, store_id *id)
{
  const struct level_buf *b = &w->buf[level];
  const struct last_node *l = &w->last[level];

  if (!l->valid || l->ids.count != b->count ||
      memcmp (l->ids.ids, b->ids, (size_t) b->count * STORE_ID_LEN) != 0)
    return false;
  *id = l->id;
  return true;
}

static void
remember (struct maptree_writer *w, uint32_t level, const store_id *id)
{
  struct last_node *l = &w->last[level];
  const struct level_buf *b = &w->buf[level];

  l->valid = true;
  l->id = *id;
  l->ids.count = b->count;
  memcpy (l->ids.ids, b->ids, (size_t) b->count * STORE_ID_LEN);
}

static int
emit_node (struct maptree_writer *w, uint32_t level, store_id *id)
{
  struct level_buf *b = &w->buf[level];
  size_t len = MAPTREE_HEADER + (size_t) b->count * STORE_ID_LEN;
  CLEANUP_FREE uint8_t *node = NULL;
  uint64_t stored = 0;
  int r;

  if (same_as_last (w, level, id)) {
    b->count = 0;
    return 0;
  }
  if ((node = calloc (1, len)) == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  memcpy (node, MAPTREE_MAGIC, 4);
  node[4] = 1;                  /* version */
  node[5] = level;
  put_le32 (node + 8, b->count);
  memcpy (node + MAPTREE_HEADER, b->ids, (size_t) b->count * STORE_ID_LEN);
  store_id_of (w->r->store, node, len, id);
  if ((r = batch_put (w->batch, id, node, len, &stored)) == -1 ||
      catalog_batch_node (w->batch, id, level, node, len) == -1)
    return -1;
  w->new_bytes += r == 1 ? stored : 0;
  remember (w, level, id);
  b->count = 0;
  return 0;
}

/* Add ID to LEVEL, emitting full nodes upwards (never the top node: the
 * root is emitted by finish, once). */
static int
level_add (struct maptree_writer *w, uint32_t level, const store_id *id)
{
  struct level_buf *b = &w->buf[level];
  store_id node_id;

  if (b->count >= MAPTREE_FANOUT) {
    set_error (PB_E_FAIL, 0, "map tree: too many entries at level %u", level);
    return -1;
  }
  b->ids[b->count++] = *id;
  if (b->count < MAPTREE_FANOUT || level + 1 >= w->levels)
    return 0;
  if (emit_node (w, level, &node_id) == -1)
    return -1;
  return level_add (w, level + 1, &node_id);
}

struct maptree_writer *
maptree_writer_new (struct pullback_repo *r, struct catalog_batch *batch,
                    uint64_t nchunks)
{
  struct maptree_writer *w = calloc (1, sizeof *w);

  if (w == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  w->r = r;
  w->batch = batch;
  w->nchunks = nchunks;
  w->levels = maptree_levels (nchunks);
  w->digest = EVP_MD_CTX_new ();
  if (w->levels > MAPTREE_MAX_LEVELS || w->digest == NULL ||
      EVP_DigestInit_ex (w->digest, EVP_sha256 (), NULL) != 1) {
    set_error (PB_E_FAIL, 0, "map tree: cannot start (%" PRIu64 " chunks)",
               nchunks);
    maptree_writer_free (w);
    return NULL;
  }
  return w;
}

int
maptree_writer_add (struct maptree_writer *w, const store_id *id)
{
  if (w->added >= w->nchunks) {
    set_error (PB_E_FAIL, 0, "map tree: more than %" PRIu64 " chunks added",
               w->nchunks);
    return -1;
  }
  w->added++;
  if (EVP_DigestUpdate (w->digest, id->b, STORE_ID_LEN) != 1) {
    set_error (PB_E_FAIL, 0, "map tree: SHA-256 update failed");
    return -1;
  }
  return level_add (w, 0, id);
}

int
maptree_writer_add_run (struct maptree_writer *w, const store_id *id,
                        uint64_t count)
{
  for (; count > 0; count--)
    if (maptree_writer_add (w, id) == -1)
      return -1;
  return 0;
}

int
maptree_writer_finish (struct maptree_writer *w, store_id *root,
                       uint32_t *levels, uint8_t digest[32],
                       uint64_t *new_bytes)
{
  uint32_t l;
  store_id id;

  if (w->added != w->nchunks) {
    set_error (PB_E_FAIL, 0, "map tree: %" PRIu64 " of %" PRIu64 " chunks added",
               w->added, w->nchunks);
    return -1;
  }
  /* Flush the partial nodes bottom-up; the top level's node is the root
   * (level 0 may be empty only for a zero-length disk). */
  for (l = 0; l < w->levels; l++) {
    if (w->buf[l].count == 0 && !(l == 0 && w->nchunks == 0))
      continue;
    if (emit_node (w, l, &id) == -1)
      return -1;
    if (l + 1 < w->levels && level_add (w, l + 1, &id) == -1)
      return -1;
  }
  if (EVP_DigestFinal_ex (w->digest, digest, NULL) != 1) {
    set_error (PB_E_FAIL, 0, "map tree: SHA-256 final failed");
    return -1;
  }
  *root = id;
  *levels = w->levels;
  *new_bytes += w->new_bytes;
  return 0;
}

void
maptree_writer_free (struct maptree_writer *w)
{
  if (w == NULL)
    return;
  EVP_MD_CTX_free (w->digest);
  free (w);
}

/* ---- Reader ---- */

struct cached_node {
  bool valid;
  uint64_t index;               /* node number within its level */
  uint32_t count;
  store_id ids[MAPTREE_FANOUT];
};

struct maptree_reader {
  struct pullback_repo *r;
  store_id root;
  uint32_t levels;
  uint64_t nchunks;
  struct cached_node node[MAPTREE_MAX_LEVELS];
};

struct maptree_reader *
maptree_reader_new (struct pullback_repo *r, const store_id *root,
                    uint32_t levels, uint64_t nchunks)
{
  struct maptree_reader *t;

  if (levels != maptree_levels (nchunks)) {
    set_error (PB_E_CORRUPT, 0, "map tree has %u levels, %" PRIu64
               " chunks need %u", levels, nchunks, maptree_levels (nchunks));
    return NULL;
  }
  t = calloc (1, sizeof *t);
  if (t == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  t->r = r;
  t->root = *root;
  t->levels = levels;
  t->nchunks = nchunks;
  return t;
}

void
maptree_reader_free (struct maptree_reader *t)
{
  free (t);
}

/* Fetch a node's bytes: from the catalog if it has them (checking the id,
 * since the catalog is not trusted more than the store), else from the
 * store (store_get_chunk checks the id itself). */
static int
fetch_node (struct maptree_reader *t, const store_id *id,
            void **data, size_t *len)
{
  store_id actual;
  char hex[17];

  if (catalog_get_node (t->r->cat, id->b, data, len) == 0) {
    store_id_of (t->r->store, *data, *len, &actual);
    if (memcmp (actual.b, id->b, STORE_ID_LEN) == 0)
      return 0;
    free (*data);
    id_short (id, hex);
    set_error (PB_E_CORRUPT, 0, "map node %s in the catalog is damaged", hex);
    return -1;
  }
  if (pb_get_errclass () != PB_E_NOTFOUND)
    return -1;
  if (store_get_chunk_alloc (t->r->store, id, data, len) == 0)
    return 0;
  id_short (id, hex);
  pb_prefix_error ("map node %s", hex);
  pb_set_errclass (PB_E_CORRUPT);
  return -1;
}

/* Load node INDEX of LEVEL, whose id is ID, into the cache, checking that
 * it has the shape the tree requires. */
static int
load_node (struct maptree_reader *t, uint32_t level, uint64_t index,
           const store_id *id)
{
  CLEANUP_FREE void *data = NULL;
  const uint8_t *p;
  size_t len;
  uint64_t total = entries_at_level (t->nchunks, level);
  uint64_t want;
  struct cached_node *c = &t->node[level];
  char hex[17];

  if (index > (total ? total - 1 : 0) / MAPTREE_FANOUT) {
    set_error (PB_E_FAIL, 0, "map tree: node %" PRIu64 " of level %u out of range",
               index, level);
    return -1;
  }
  want = MIN ((uint64_t) MAPTREE_FANOUT, total - index * MAPTREE_FANOUT);
  if (fetch_node (t, id, &data, &len) == -1)
    return -1;
  p = data;
  if (len < MAPTREE_HEADER || memcmp (p, MAPTREE_MAGIC, 4) != 0 ||
      p[4] != 1 || p[5] != level || get_le32 (p + 8) != want ||
      len != MAPTREE_HEADER + want * STORE_ID_LEN) {
    id_short (id, hex);
    set_error (PB_E_CORRUPT, 0, "map node %s: not a level %u node of %" PRIu64
               " entries", hex, level, want);
    return -1;
  }
  memcpy (c->ids, p + MAPTREE_HEADER, want * STORE_ID_LEN);
  c->count = want;
  c->index = index;
  c->valid = true;
  return 0;
}

/* Make sure node INDEX of LEVEL is cached, loading its ancestors first. */
static int
ensure_node (struct maptree_reader *t, uint32_t level, uint64_t index)
{
  struct cached_node *c = &t->node[level];
  struct cached_node *up;

  if (c->valid && c->index == index)
    return 0;
  if (level + 1 == t->levels)
    return load_node (t, level, index, &t->root);
  if (ensure_node (t, level + 1, index / MAPTREE_FANOUT) == -1)
    return -1;
  up = &t->node[level + 1];
  return load_node (t, level, index, &up->ids[index % MAPTREE_FANOUT]);
}

int
maptree_reader_get (struct maptree_reader *t, uint64_t index, store_id *id)
{
  if (index >= t->nchunks) {
    set_error (PB_E_FAIL, 0, "map tree: chunk %" PRIu64 " out of range (%"
               PRIu64 " chunks)", index, t->nchunks);
    return -1;
  }
  if (ensure_node (t, 0, index / MAPTREE_FANOUT) == -1)
    return -1;
  *id = t->node[0].ids[index % MAPTREE_FANOUT];
  return 0;
}

/* Visit node INDEX of LEVEL (id ID) and everything below it. */
static int
walk_nodes (struct maptree_reader *t, uint32_t level, uint64_t index,
            const store_id *id, int (*cb) (const store_id *, void *),
            void *opaque)
{
  struct cached_node *c = &t->node[level];
  uint32_t i, count;

  if (cb (id, opaque) == -1 || load_node (t, level, index, id) == -1)
    return -1;
  if (level == 0)
    return 0;
  count = c->count;
  for (i = 0; i < count; i++) {
    store_id child = t->node[level].ids[i];
    if (walk_nodes (t, level - 1, index * MAPTREE_FANOUT + i, &child,
                    cb, opaque) == -1)
      return -1;
    /* The recursion reused lower cache slots only; ours is intact. */
  }
  return 0;
}

int
maptree_reader_nodes (struct maptree_reader *t,
                      int (*cb) (const store_id *id, void *opaque),
                      void *opaque)
{
  int r = walk_nodes (t, t->levels - 1, 0, &t->root, cb, opaque);

  memset (t->node, 0, sizeof t->node);   /* cache state is now arbitrary */
  return r;
}
