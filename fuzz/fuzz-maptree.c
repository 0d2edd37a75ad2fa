/* pullback - fuzz/fuzz-maptree.c: fuzz target of chunk-map node parsing,
 * maptree_node_entries in reader/maptree.c (docs/FORMAT.md part 2.2 and
 * 2.3: "PBMN", version, level, entry count, the ids).
 *
 * Input: one mode byte, then either the node's plain bytes (mode 0) or a
 * container object holding them (mode & 0x7f != 0: decoded with the plain
 * codec as a chunk, checksum fixed up first with FUZZ_MODE_FIXSUM), as a
 * reader gets a node from the store.  Checked: an accepted node has at
 * most MAPTREE_FANOUT entries, which lie exactly inside its bytes.
 */
#include <config.h>

#include <string.h>

#include "chunk.h"
#include "errors.h"
#include "fuzz.h"
#include "maptree.h"
#include "store.h"

static struct chunk_codec *codec;

static void
parse_node (const uint8_t *node, size_t len)
{
  const uint8_t *entries;
  size_t n;

  if (maptree_node_entries (node, len, &entries, &n) == -1) {
    FUZZ_CHECK (pb_get_errclass () == PB_E_CORRUPT);
    return;
  }
  FUZZ_CHECK (n <= MAPTREE_FANOUT);
  FUZZ_CHECK (entries == node + MAPTREE_HEADER);
  FUZZ_CHECK (MAPTREE_HEADER + n * STORE_ID_LEN == len);
  fuzz_accept ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t *copy;
  void *node = NULL;
  size_t len, nodelen;

  if (size < 1)
    return 0;
  len = size - 1;
  copy = malloc (len ? len : 1);
  FUZZ_CHECK (copy != NULL);
  memcpy (copy, data + 1, len);
  if ((data[0] & 0x7f) == 0)
    parse_node (copy, len);
  else {
    if (codec == NULL)
      FUZZ_CHECK ((codec = chunk_codec_new ()) != NULL);
    if (data[0] & FUZZ_MODE_FIXSUM)
      fuzz_fix_checksum (copy, len);
    if (chunk_decode_alloc (codec, CHUNK_TYPE_CHUNK, FUZZ_CHUNK_NAME, copy,
                            len, STORE_MAX_CHUNK_SIZE, &node, &nodelen,
                            "map node") == 0)
      parse_node (node, nodelen);
    free (node);
  }
  free (copy);
  return 0;
}
