/* pullback - fuzz/fuzz-key.c: fuzz target of key files (docs/FORMAT.md
 * part 5), store/key.c: the JSON object, its fields, the scrypt
 * parameter bounds, the clear key against its fingerprint.
 *
 * Input: the key file's bytes, written to a private temporary file (mode
 * 0600: key files are read by path) and read with store_key_file_info and
 * store_key_load without a passphrase (so scrypt never runs: a wrapped
 * file is refused for want of one).  Checked: both agree on validity; a
 * wrapped file is refused by store_key_load with PB_E_KEY; a clear one
 * gives a key whose fingerprint is the file's; refusals are PB_E_KEY.
 */
#include <config.h>

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "fuzz.h"
#include "store.h"

static char dir[256], path[300];

static void
cleanup (void)
{
  unlink (path);
  rmdir (dir);
}

static void
write_input (const uint8_t *data, size_t size)
{
  int fd;

  if (dir[0] == '\0') {
    const char *tmp = getenv ("TMPDIR");
    snprintf (dir, sizeof dir, "%s/pb-fuzz-key.XXXXXX", tmp ? tmp : "/tmp");
    FUZZ_CHECK (mkdtemp (dir) != NULL);
    snprintf (path, sizeof path, "%s/key", dir);
    atexit (cleanup);
  }
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  FUZZ_CHECK (fd >= 0);
  FUZZ_CHECK (write (fd, data, size) == (ssize_t) size);
  close (fd);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct store_key_file_info info;
  struct store_key *k;
  int r;

  write_input (data, size);
  r = store_key_file_info (path, &info);
  if (r == -1)
    FUZZ_CHECK (pb_get_errclass () == PB_E_KEY);
  k = store_key_load (path, NULL);
  if (r == -1 || info.wrapped) {
    FUZZ_CHECK (k == NULL && pb_get_errclass () == PB_E_KEY);
  }
  else {
    FUZZ_CHECK (k != NULL);
    FUZZ_CHECK (strcmp (store_key_fingerprint (k), info.fingerprint) == 0);
    store_key_free (k);
  }
  if (r == 0)
    fuzz_accept ();
  return 0;
}
