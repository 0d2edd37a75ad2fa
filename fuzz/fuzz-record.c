/* pullback - fuzz/fuzz-record.c: fuzz target of point records
 * (docs/FORMAT.md part 3), the path restore and verify take in
 * reader/record.c: decode the record's container (plain, or sealed with
 * the object key: FUZZ_MODE_SEALED), parse its JSON (point_record_parse),
 * and compare it with the catalog's point (point_record_compare) as a
 * whole and disk by disk.
 *
 * Input: one mode byte (FUZZ_MODE_SEALED, FUZZ_MODE_FIXSUM), then the
 * object.  The fixture point (fuzz_point) is the one the valid seeds
 * describe, so they run every comparison and are accepted.  Checked:
 * every refusal is PB_E_CORRUPT, and a record that matches as a whole
 * matches each of its disks.
 */
#include <config.h>

#include <string.h>

#include <json.h>

#include "chunk.h"
#include "errors.h"
#include "fuzz.h"
#include "internal.h"

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

static void
check_record (const char *text)
{
  const struct catalog_point *p = fuzz_point ();
  json_object *rec = point_record_parse (text, p->id, FUZZ_RECORD_NAME);
  int whole;
  size_t i;

  if (rec == NULL) {
    FUZZ_CHECK (pb_get_errclass () == PB_E_CORRUPT);
    return;
  }
  whole = point_record_compare (rec, FUZZ_REPO_UUID, p, NULL);
  if (whole == -1)
    FUZZ_CHECK (pb_get_errclass () == PB_E_CORRUPT);
  for (i = 0; i < p->ndisks; i++) {
    int one = point_record_compare (rec, FUZZ_REPO_UUID, p, &p->disks[i]);
    FUZZ_CHECK (whole == -1 || one == 0);
  }
  json_object_put (rec);
  if (whole == 0)
    fuzz_accept ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t *obj;
  void *text = NULL;
  size_t len, n;

  if (size < 1)
    return 0;
  setup ();
  len = size - 1;
  obj = malloc (len ? len : 1);
  FUZZ_CHECK (obj != NULL);
  memcpy (obj, data + 1, len);
  if (data[0] & FUZZ_MODE_FIXSUM)
    fuzz_fix_checksum (obj, len);
  if (chunk_decode_alloc (data[0] & FUZZ_MODE_SEALED ? sealed : plain,
                          CHUNK_TYPE_RECORD, FUZZ_RECORD_NAME, obj, len,
                          CHUNK_MAX_RECORD, &text, &n, "record") == 0)
    check_record (text);
  else
    FUZZ_CHECK (pb_get_errclass () == PB_E_CORRUPT);
  free (text);
  free (obj);
  return 0;
}
