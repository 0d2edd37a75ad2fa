/* pullback - reader/test-maptree.c: unit test of chunk-map trees.
 *
 * Writes trees of many shapes (empty, one node, exactly full nodes, one
 * past, three levels) into a real repository, reads every id back, checks
 * the content digest, checks that a one-chunk change shares all but one
 * node per level with its parent (catalog growth follows changes), and
 * that a tree read with the wrong shape is refused as corrupt.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "errors.h"
#include "test.h"
#include "internal.h"
#include "maptree.h"


struct tree {
  store_id root;
  uint32_t levels;
  uint8_t digest[32];
  uint64_t new_bytes;
};

static int
write_tree (struct pullback_repo *r, const store_id *ids, uint64_t n,
            struct tree *t)
{
  struct catalog_batch *b = catalog_batch_new (r->cat, r->store, 0);
  struct maptree_writer *w = maptree_writer_new (r, b, n);
  uint64_t i;
  int ret = -1;

  t->new_bytes = 0;
  for (i = 0; w && i < n; i++)
    if (maptree_writer_add (w, &ids[i]) == -1)
      goto out;
  if (w && maptree_writer_finish (w, &t->root, &t->levels, t->digest,
                                  &t->new_bytes) == 0 &&
      catalog_batch_flush (b) == 0)
    ret = 0;
 out:
  maptree_writer_free (w);
  catalog_batch_free (b);
  return ret;
}

static bool
read_back (struct pullback_repo *r, const store_id *ids, uint64_t n,
           const struct tree *t)
{
  struct maptree_reader *rd = maptree_reader_new (r, &t->root, t->levels, n);
  store_id id;
  uint64_t i;
  bool ok = rd != NULL;

  for (i = 0; ok && i < n; i++)
    ok = maptree_reader_get (rd, i, &id) == 0 &&
         memcmp (id.b, ids[i].b, STORE_ID_LEN) == 0;
  /* Random access after the sequential walk. */
  for (i = 0; ok && n > 0 && i < 50; i++) {
    uint64_t k = (i * 7919) % n;
    ok = maptree_reader_get (rd, k, &id) == 0 &&
         memcmp (id.b, ids[k].b, STORE_ID_LEN) == 0;
  }
  maptree_reader_free (rd);
  return ok;
}

static bool
digest_ok (const store_id *ids, uint64_t n, const struct tree *t)
{
  uint8_t want[32];
  unsigned len;

  EVP_Digest (ids, n * STORE_ID_LEN, want, &len, EVP_sha256 (), NULL);
  return memcmp (want, t->digest, 32) == 0;
}

static void
test_shape (struct pullback_repo *r, uint64_t n)
{
  store_id *ids = malloc ((n ? n : 1) * sizeof *ids);
  struct tree t;

  RAND_bytes ((unsigned char *) ids, (n ? n : 1) * sizeof *ids);
  CHECK (write_tree (r, ids, n, &t) == 0, "write tree of %" PRIu64 " chunks", n);
  CHECK (t.levels == maptree_levels (n), "%" PRIu64 " chunks: %u levels", n,
         t.levels);
  CHECK (read_back (r, ids, n, &t), "%" PRIu64 " chunks read back", n);
  CHECK (digest_ok (ids, n, &t), "%" PRIu64 " chunks: content digest", n);
  free (ids);
}

/* Changing one chunk of a 3-level tree adds exactly 3 nodes. */
static void
test_sharing (struct pullback_repo *r)
{
  uint64_t n = 256 * 256 + 10;
  store_id *ids = malloc (n * sizeof *ids);
  struct tree a, b, c;

  RAND_bytes ((unsigned char *) ids, n * sizeof *ids);
  write_tree (r, ids, n, &a);
  CHECK (a.levels == 3, "65546 chunks need 3 levels");
  write_tree (r, ids, n, &c);
  CHECK (c.new_bytes == 0, "same map again adds no bytes (%" PRIu64 ")",
         c.new_bytes);
  ids[12345].b[0] ^= 1;
  write_tree (r, ids, n, &b);
  CHECK (read_back (r, ids, n, &b), "changed tree reads back");
  CHECK (b.new_bytes > 0 && b.new_bytes < 3 * (MAPTREE_HEADER + 256 * 32 + 200),
         "one changed chunk adds at most 3 nodes (%" PRIu64 " bytes)",
         b.new_bytes);
  CHECK (memcmp (a.root.b, b.root.b, 32) != 0, "root changed");
  free (ids);
}

/* Long runs of one id (a sparse disk's zeros), added with add_run and
 * chunk by chunk in between: identical nodes in a row, at two levels,
 * broken by a different one; the tree reads back and digests right. */
static void
test_runs (struct pullback_repo *r)
{
  uint64_t runs[] = { 3, 256 * 300 + 17, 5, 256 * 256 * 2, 1, 256 * 2 + 7 };
  uint64_t n = 0, i, k, at = 0;
  struct catalog_batch *b = catalog_batch_new (r->cat, r->store, 0);
  struct maptree_writer *w;
  store_id *ids, z;
  struct tree t = { .new_bytes = 0 };
  bool ok = b != NULL;

  for (k = 0; k < 6; k++)
    n += runs[k];
  ids = malloc (n * sizeof *ids);
  REQUIRE (ids != NULL && (w = maptree_writer_new (r, b, n)) != NULL);
  RAND_bytes ((unsigned char *) ids, n * sizeof *ids);
  memset (&z, 0x5a, sizeof z);
  for (k = 0; k < 6; at += runs[k++]) {
    if (k % 2 == 0) {           /* distinct ids, one by one */
      for (i = at; ok && i < at + runs[k]; i++)
        ok = maptree_writer_add (w, &ids[i]) == 0;
      continue;
    }
    for (i = at; i < at + runs[k]; i++)
      ids[i] = z;
    ok = ok && maptree_writer_add_run (w, &z, runs[k]) == 0;
  }
  ok = ok && maptree_writer_finish (w, &t.root, &t.levels, t.digest,
                                    &t.new_bytes) == 0 &&
       catalog_batch_flush (b) == 0;
  CHECK (ok, "write a tree of %" PRIu64 " chunks with long runs", n);
  CHECK (read_back (r, ids, n, &t), "runs: every chunk reads back");
  CHECK (digest_ok (ids, n, &t), "runs: content digest");
  /* Distinct nodes: the run's leaf, 5 boundary leaves, 3 level-1 nodes of
   * the same leaf, a few boundary ones, the root: far fewer than the
   * 1300 leaves. */
  CHECK (t.new_bytes < 40 * (MAPTREE_HEADER + 256 * 32 + 200),
         "runs: %" PRIu64 " bytes of nodes", t.new_bytes);
  maptree_writer_free (w);
  catalog_batch_free (b);
  free (ids);
}

static void
test_bad_shape (struct pullback_repo *r)
{
  store_id ids[300];
  struct tree t;
  struct maptree_reader *rd;
  store_id id;

  RAND_bytes ((unsigned char *) ids, sizeof ids);
  write_tree (r, ids, 300, &t);
  rd = maptree_reader_new (r, &t.root, 1, 300);
  CHECK (rd == NULL && pb_get_errclass () == PB_E_CORRUPT,
         "wrong level count refused: %s", pb_get_error ());
  /* 299 chunks: the second leaf must hold 43 ids, it holds 44. */
  rd = maptree_reader_new (r, &t.root, 2, 299);
  CHECK (rd && maptree_reader_get (rd, 0, &id) == 0 &&
         maptree_reader_get (rd, 298, &id) == -1 &&
         pb_get_errclass () == PB_E_CORRUPT,
         "wrong chunk count refused: %s", pb_get_error ());
  maptree_reader_free (rd);
  rd = maptree_reader_new (r, &ids[0], 2, 300);
  CHECK (rd && maptree_reader_get (rd, 0, &id) == -1 &&
         pb_get_errclass () == PB_E_CORRUPT,
         "unknown root refused: %s", pb_get_error ());
  maptree_reader_free (rd);
}

int
main (void)
{
  char dir[] = "/tmp/test-maptree.XXXXXX", repo[64], cmd[128];
  struct pullback_repo *r;
  uint64_t shapes[] = { 0, 1, 255, 256, 257, 256 * 256, 256 * 256 + 1 };
  size_t i;

  if (mkdtemp (dir) == NULL)
    return 1;
  snprintf (repo, sizeof repo, "%s/repo", dir);
  r = pullback_repo_init (repo, 0, NULL);
  if (r == NULL) {
    printf ("FAIL: init: %s\n", pb_get_error ());
    return 1;
  }
  for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    test_shape (r, shapes[i]);
  test_sharing (r);
  test_runs (r);
  test_bad_shape (r);
  pullback_repo_close (r);
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  if (system (cmd) != 0)
    test_failures++;
  return test_summary ();
}
