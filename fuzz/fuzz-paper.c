/* pullback - fuzz/fuzz-paper.c: fuzz target of paper keys (docs/FORMAT.md
 * part 5), store_key_from_paper in store/paper.c: lines, their numbers
 * and check bytes, spaces and case.
 *
 * Input: the text (a NUL is added; one inside ends it, as for any C
 * string).  Checked: refusals are PB_E_KEY, and an accepted key printed
 * again with store_key_paper reads back as the same key.
 */
#include <config.h>

#include <string.h>

#include "errors.h"
#include "fuzz.h"
#include "store.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = malloc (size + 1), *again = NULL;
  struct store_key *k, *k2;

  FUZZ_CHECK (text != NULL);
  memcpy (text, data, size);
  text[size] = '\0';
  k = store_key_from_paper (text);
  if (k == NULL)
    FUZZ_CHECK (pb_get_errclass () == PB_E_KEY);
  else {
    FUZZ_CHECK (store_key_paper (k, &again) == 0);
    k2 = store_key_from_paper (again);
    FUZZ_CHECK (k2 != NULL);
    FUZZ_CHECK (strcmp (store_key_fingerprint (k),
                        store_key_fingerprint (k2)) == 0);
    store_key_free (k2);
    store_key_free (k);
    free (again);
    fuzz_accept ();
  }
  free (text);
  return 0;
}
