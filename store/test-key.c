/* pullback - store/test-key.c: unit tests of key files and paper copies.
 *
 * Key files wrapped with a passphrase and unwrapped, the errors a user
 * meets (wrong, missing or empty passphrase, an existing file, a loose
 * mode), damage to every field, atomic replacement with no temporary file
 * left behind, and paper copies: round trip, case and spaces, a typo
 * named by its line, a missing line, a wrong fingerprint line.
 */
#include <config.h>

#include <dirent.h>

#include "crypt.h"
#include "test-common.h"

#define LOG2N 14                /* fast scrypt for tests */

static bool
same_key (const struct store_key *a, const struct store_key *b)
{
  return a && b && memcmp (a->master, b->master, STORE_KEY_LEN) == 0 &&
    strcmp (a->fingerprint, b->fingerprint) == 0;
}

static bool
load_fails (const char *path, const char *pass, int cls, const char *phrase)
{
  struct store_key *k = store_key_load (path, pass);

  store_key_free (k);
  return k == NULL && pb_get_errclass () == cls &&
    strstr (pb_get_error (), phrase) != NULL;
}

/* No ".tmp." file in the test directory. */
static bool
no_temp_files (void)
{
  DIR *d = opendir (tmpdir);
  struct dirent *e;
  bool ok = d != NULL;

  while (d && (e = readdir (d)) != NULL)
    if (strncmp (e->d_name, ".tmp.", 5) == 0)
      ok = false;
  if (d)
    closedir (d);
  return ok;
}

/* Replace the first occurrence of FIELD's value's first hex digit. */
static void
damage_field (const char *src, const char *dst, const char *field)
{
  size_t len;
  char *text = (char *) read_whole (path_in ("%s", src), &len);
  char pat[64], *p;

  snprintf (pat, sizeof pat, "\"%s\":", field);
  p = text ? strstr (text, pat) : NULL;
  if (p) {
    p += strlen (pat);
    p += strspn (p, " \"");
    *p = *p == '0' ? '1' : '0';
  }
  write_whole (path_in ("%s", dst), text, len);
  chmod (path_in ("%s", dst), 0600);
  free (text);
}

static void
test_wrapped (struct store_key *k)
{
  struct store_key *l;
  struct store_key_file_info info;
  size_t len;
  char hex[65], *text;

  check (store_key_save (k, path_in ("w.key"), "secret", LOG2N, false) == 0,
         "save wrapped");
  l = store_key_load (path_in ("w.key"), "secret");
  check (same_key (k, l), "load wrapped with the passphrase");
  store_key_free (l);
  check (load_fails (path_in ("w.key"), "Secret", PB_E_KEY, "wrong passphrase"),
         "a wrong passphrase: %s", pb_get_error ());
  check (load_fails (path_in ("w.key"), NULL, PB_E_KEY, "protected"),
         "no passphrase for a wrapped file: %s", pb_get_error ());
  check (store_key_file_info (path_in ("w.key"), &info) == 0 && info.wrapped &&
         info.log2n == LOG2N && info.r == 8 && info.p == 1 &&
         strcmp (info.fingerprint, store_key_fingerprint (k)) == 0,
         "file_info of a wrapped file");
  text = (char *) read_whole (path_in ("w.key"), &len);
  hex_encode (k->master, STORE_KEY_LEN, hex);
  check (text && !strstr (text, hex) && !strstr (text, "secret"),
         "a wrapped file holds neither key nor passphrase");
  free (text);
  check (store_key_save (k, path_in ("w.key"), "other", LOG2N, false) == -1 &&
         pb_get_errclass () == PB_E_USAGE, "no overwrite without replace");
  l = store_key_load (path_in ("w.key"), "secret");
  check (same_key (k, l), "the refused save left the file as it was");
  store_key_free (l);
  check (store_key_save (k, path_in ("w.key"), "", LOG2N, true) == -1 &&
         pb_get_errclass () == PB_E_USAGE, "an empty passphrase is refused");
  check (store_key_save (k, path_in ("w.key"), "new one", LOG2N, true) == 0,
         "replace: a new passphrase");
  l = store_key_load (path_in ("w.key"), "new one");
  check (same_key (k, l), "the same key under the new passphrase");
  store_key_free (l);
  check (load_fails (path_in ("w.key"), "secret", PB_E_KEY, "wrong passphrase"),
         "the old passphrase no longer opens it");
  check (no_temp_files (), "no temporary file left behind");
}

static void
test_unwrapped (struct store_key *k)
{
  struct store_key *l;
  struct store_key_file_info info;
  struct stat st;

  check (store_key_save (k, path_in ("u.key"), NULL, 0, false) == 0 &&
         stat (path_in ("u.key"), &st) == 0 && (st.st_mode & 0777) == 0600,
         "save unwrapped, mode 0600");
  l = store_key_load (path_in ("u.key"), NULL);
  check (same_key (k, l), "load unwrapped");
  store_key_free (l);
  check (store_key_file_info (path_in ("u.key"), &info) == 0 && !info.wrapped,
         "file_info of an unwrapped file");
  chmod (path_in ("u.key"), 0644);
  check (load_fails (path_in ("u.key"), NULL, PB_E_KEY, "chmod 600"),
         "an unwrapped file readable by others is refused: %s", pb_get_error ());
  chmod (path_in ("u.key"), 0600);
  check (store_key_save (k, path_in ("d.key"), "x", 0, false) == 0,
         "save with the default scrypt cost");
  check (store_key_file_info (path_in ("d.key"), &info) == 0 &&
         info.log2n == STORE_KDF_DEFAULT_LOG2N, "the default cost is recorded");
  l = store_key_load (path_in ("d.key"), "x");
  check (same_key (k, l), "load with the default cost");
  store_key_free (l);
  check (store_key_save (k, path_in ("e.key"), "x", 30, false) == -1 &&
         pb_get_errclass () == PB_E_USAGE, "an absurd scrypt cost is refused");
}

static void
test_damage (void)
{
  static const char *const wfields[] = { "wrapped", "salt", "fingerprint" };
  size_t i;
  char name[32];
  const char *bad[] = {
    "not json", "[1]", "{\"format\": \"pullback-key\"}",
    "{\"format\": \"other\", \"version\": 1}",
  };

  for (i = 0; i < 3; i++) {
    snprintf (name, sizeof name, "dw%zu.key", i);
    damage_field ("w.key", name, wfields[i]);
    check (load_fails (path_in ("%s", name), "new one", PB_E_KEY, ""),
           "a changed \"%s\" is refused: %s", wfields[i], pb_get_error ());
  }
  damage_field ("u.key", "du.key", "key");
  check (load_fails (path_in ("du.key"), NULL, PB_E_KEY, "damaged"),
         "a changed clear key is refused: %s", pb_get_error ());
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_whole (path_in ("bad.key"), bad[i], strlen (bad[i]));
    check (load_fails (path_in ("bad.key"), "x", PB_E_KEY, "key file"),
           "refused: %s -> %s", bad[i], pb_get_error ());
  }
  check (load_fails (path_in ("absent.key"), "x", PB_E_IO, "absent.key"),
         "a missing file: PB_E_IO naming it");
}

static void
test_paper (struct store_key *k)
{
  char *text = NULL, *p;
  struct store_key *l;

  check (store_key_paper (k, &text) == 0 && strstr (text, k->fingerprint + 24),
         "paper copy with the fingerprint");
  l = text ? store_key_from_paper (text) : NULL;
  check (same_key (k, l), "paper round trip");
  store_key_free (l);
  for (p = text; p && *p; p++)       /* upper case, tabs for spaces */
    *p = *p == ' ' ? '\t' : (*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
  l = text ? store_key_from_paper (text) : NULL;
  check (same_key (k, l), "case and blanks do not matter");
  store_key_free (l);
  p = text ? strstr (text, "3:") : NULL;
  if (p) {
    p[3] = p[3] == '0' ? '1' : '0';
    l = store_key_from_paper (text);
    check (l == NULL && pb_get_errclass () == PB_E_KEY &&
           strstr (pb_get_error (), "line 3"), "a typo is named: %s",
           pb_get_error ());
    p[0] = '#';                 /* the line is gone */
    l = store_key_from_paper (text);
    check (l == NULL && strstr (pb_get_error (), "line 3 is missing"),
           "a missing line: %s", pb_get_error ());
  }
  free (text);
  check (store_key_paper (k, &text) == 0, "paper again");
  p = strstr (text, "fingerprint:");
  if (p) {
    p[13] = p[13] == '0' ? '1' : '0';
    l = store_key_from_paper (text);
    check (l == NULL && strstr (pb_get_error (), "fingerprint"),
           "a wrong fingerprint line: %s", pb_get_error ());
  }
  free (text);
}

int
main (void)
{
  struct store_key *k;

  if (test_start ("test-key") == -1)
    return 1;
  k = store_key_generate ();
  REQUIRE (k != NULL);
  test_wrapped (k);
  test_unwrapped (k);
  test_damage ();
  test_paper (k);
  store_key_free (k);
  return test_end ();
}
