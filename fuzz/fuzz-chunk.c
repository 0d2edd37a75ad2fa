/* pullback - fuzz/fuzz-chunk.c: fuzz target of the object container
 * decoder, store/chunk.c (docs/FORMAT.md part 1, sections 4, 5 and 9):
 * header checks, checksum, zstd payloads and AES-256-GCM sealed payloads.
 *
 * Input: one mode byte (FUZZ_MODE_* in fuzz.h: sealed or plain codec,
 * record or chunk, fix the checksum up first), then the object.  Both
 * decoders run on it, chunk_decode into a fixed buffer and
 * chunk_decode_alloc; what is checked:
 *  - they agree: if the first accepts, so does the second, with the same
 *    bytes; the allocated result is NUL-terminated;
 *  - every refusal is PB_E_CORRUPT (damage, never another class);
 *  - an accepted object's content encodes again into an object that
 *    decodes to the same content.
 */
#include <config.h>

#include <string.h>

#include "chunk.h"
#include "errors.h"
#include "fuzz.h"
#include "store.h"

#define OUT_CAP (64 * 1024)

static struct chunk_codec *plain, *sealed;

static void
setup (void)
{
  if (plain != NULL)
    return;
  plain = chunk_codec_new ();
  sealed = chunk_codec_new ();
  FUZZ_CHECK (plain != NULL && sealed != NULL);
  chunk_codec_set_key (sealed, fuzz_object_key);
}

/* Encode CONTENT again and decode the result: the same bytes come back. */
static void
round_trip (struct chunk_codec *c, enum chunk_type type, const char *name,
            uint32_t raw_max, const void *content, size_t len)
{
  void *obj = NULL, *back = NULL;
  size_t objlen, backlen;

  FUZZ_CHECK (chunk_encode (c, type, true, name, content, len, &obj,
                            &objlen) == 0);
  FUZZ_CHECK (chunk_decode_alloc (c, type, name, obj, objlen, raw_max,
                                  &back, &backlen, "re-encoded") == 0);
  FUZZ_CHECK (backlen == len && memcmp (back, content, len) == 0);
  free (obj);
  free (back);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static uint8_t out[OUT_CAP];
  uint8_t *obj;
  void *buf = NULL;
  size_t len, n = 0, n2 = 0;
  int r1, r2;
  struct chunk_codec *c;
  enum chunk_type type;
  const char *name;
  uint32_t raw_max;

  if (size < 1)
    return 0;
  setup ();
  c = data[0] & FUZZ_MODE_SEALED ? sealed : plain;
  type = data[0] & FUZZ_MODE_RECORD ? CHUNK_TYPE_RECORD : CHUNK_TYPE_CHUNK;
  name = type == CHUNK_TYPE_RECORD ? FUZZ_RECORD_NAME : FUZZ_CHUNK_NAME;
  raw_max = type == CHUNK_TYPE_RECORD ? CHUNK_MAX_RECORD : STORE_MAX_CHUNK_SIZE;
  len = size - 1;
  obj = malloc (len ? len : 1);
  FUZZ_CHECK (obj != NULL);
  memcpy (obj, data + 1, len);
  if (data[0] & FUZZ_MODE_FIXSUM)
    fuzz_fix_checksum (obj, len);

  r1 = chunk_decode (c, type, name, obj, len, raw_max, out, sizeof out, &n,
                     "fuzz object");
  r2 = chunk_decode_alloc (c, type, name, obj, len, raw_max, &buf, &n2,
                           "fuzz object");
  if (r2 == -1)
    FUZZ_CHECK (pb_get_errclass () == PB_E_CORRUPT);
  if (r1 == 0)
    FUZZ_CHECK (r2 == 0 && n == n2 && n <= sizeof out &&
                memcmp (out, buf, n) == 0);
  if (r2 == 0) {
    FUZZ_CHECK (((char *) buf)[n2] == '\0');
    round_trip (c, type, name, raw_max, buf, n2);
    fuzz_accept ();
  }
  free (buf);
  free (obj);
  return 0;
}
