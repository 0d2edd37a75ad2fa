/* pullback - fuzz/fuzz-config.c: fuzz target of the store's "config"
 * object (docs/FORMAT.md part 1, section 3 and 9.3), store_config_read in
 * store/store-config.c, fed through a one-object in-memory store.
 *
 * Input: the config's bytes.  Checked: every refusal is PB_E_REPO, and an
 * accepted config has a valid chunk size, a 32-digit uuid and, if
 * encrypted, a 32-digit key fingerprint.
 */
#include <config.h>

#include <string.h>

#include "errors.h"
#include "fuzz.h"
#include "store-config.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct objstore *os = fuzz_memstore (data, size);
  struct store_config cfg;

  FUZZ_CHECK (os != NULL);
  if (store_config_read (os, "fuzz", &cfg) == 0) {
    FUZZ_CHECK (store_chunk_size_ok (cfg.chunk_size));
    FUZZ_CHECK (strlen (cfg.uuid) == 2 * STORE_UUID_BYTES);
    FUZZ_CHECK (!cfg.encrypted ||
                strlen (cfg.key) == 2 * STORE_FINGERPRINT_LEN);
    fuzz_accept ();
  }
  else
    FUZZ_CHECK (pb_get_errclass () == PB_E_REPO);
  objstore_close (os);
  return 0;
}
