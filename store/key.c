/* pullback - store/key.c: key files and paper copies of master keys.
 *
 * A key file is one small JSON object (docs/FORMAT.md part 5) holding the
 * 32-byte master key of encrypted repositories, either in clear ("kdf":
 * "none", for unattended jobs; then the file must be private to its owner)
 * or wrapped: AES-256-GCM under a key-encryption key that scrypt derives
 * from a passphrase, with the key's fingerprint bound in as additional
 * data.  Reading trusts nothing: every field is checked, parameters that
 * would make scrypt run for hours or take all memory are refused, and the
 * fingerprint recomputed from the key must equal the recorded one.
 *
 * Secrets (master key, KEK, hex of either) are wiped with OPENSSL_cleanse
 * as soon as they are no longer needed; none ever reaches a message.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "cleanup.h"
#include "crypt.h"
#include "errors.h"
#include "store.h"
#include "util.h"

#define KEY_FORMAT "pullback-key"
#define KEY_VERSION 1
#define KEY_FILE_MAX (64 * 1024)
#define SALT_LEN 16
#define WRAPPED_LEN (CRYPT_NONCE_LEN + STORE_KEY_LEN + CRYPT_TAG_LEN)
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAX_MEM (1ull << 30)
#define AAD_PREFIX "pullback-key v1 "

/* Everything a key file says, parsed and checked. */
struct key_file {
  struct store_key_file_info info;
  uint8_t salt[SALT_LEN];
  uint8_t wrapped[WRAPPED_LEN];
  uint8_t master[STORE_KEY_LEN];    /* unwrapped files only */
};

static void
wipe_key_file (struct key_file *f)
{
  OPENSSL_cleanse (f, sizeof *f);
}

/* ---- scrypt ---- */

static bool
kdf_params_ok (uint64_t log2n, uint64_t r, uint64_t p)
{
  return log2n >= STORE_KDF_MIN_LOG2N && log2n <= STORE_KDF_MAX_LOG2N &&
    r >= 1 && r <= 32 && p >= 1 && p <= 16 &&
    128 * r * p * (1ull << log2n) <= SCRYPT_MAX_MEM;
}

/* KEK = scrypt (PASS, SALT, 2^LOG2N, R, P, 32). */
static int
derive_kek (const char *pass, const uint8_t salt[SALT_LEN],
            const struct store_key_file_info *info, uint8_t kek[CRYPT_KEY_LEN])
{
  EVP_KDF *kdf = EVP_KDF_fetch (NULL, "SCRYPT", NULL);
  EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new (kdf) : NULL;
  uint64_t n = 1ull << info->log2n;
  uint32_t r = info->r, p = info->p;
  uint64_t maxmem = 128ull * r * p * n + (1u << 20);
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_PASSWORD, (void *) pass,
                                       strlen (pass)),
    OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_SALT, (void *) salt,
                                       SALT_LEN),
    OSSL_PARAM_construct_uint64 (OSSL_KDF_PARAM_SCRYPT_N, &n),
    OSSL_PARAM_construct_uint32 (OSSL_KDF_PARAM_SCRYPT_R, &r),
    OSSL_PARAM_construct_uint32 (OSSL_KDF_PARAM_SCRYPT_P, &p),
    OSSL_PARAM_construct_uint64 (OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
    OSSL_PARAM_construct_end ()
  };
  int ok = ctx != NULL &&
    EVP_KDF_derive (ctx, kek, CRYPT_KEY_LEN, params) == 1;

  EVP_KDF_CTX_free (ctx);
  EVP_KDF_free (kdf);
  if (!ok)
    set_error (PB_E_FAIL, ENOMEM, "OpenSSL: scrypt failed (2^%u x %u, "
               "%llu MiB)", info->log2n, info->r,
               (unsigned long long) (maxmem >> 20));
  return ok ? 0 : -1;
}

/* "pullback-key v1 " + fingerprint: binds the box to the key it holds. */
static size_t
wrap_aad (const char *fingerprint, char aad[64])
{
  return (size_t) snprintf (aad, 64, AAD_PREFIX "%s", fingerprint);
}

/* ---- parsing ---- */

static int
bad (const char *path, const char *what)
{
  set_error (PB_E_KEY, 0, "key file %s: %s", path, what);
  return -1;
}

static const char *
get_str (json_object *o, const char *key)
{
  json_object *v;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_string))
    return NULL;
  return json_object_get_string (v);
}

static bool
get_u64 (json_object *o, const char *key, uint64_t *out)
{
  json_object *v;
  int64_t x;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_int) ||
      (x = json_object_get_int64 (v)) < 0)
    return false;
  *out = (uint64_t) x;
  return true;
}

/* Exactly LEN bytes of lower- or upper-case hex. */
static bool
get_hex (json_object *o, const char *key, uint8_t *out, size_t len)
{
  const char *s = get_str (o, key);

  return s && strlen (s) == 2 * len && hex_decode (s, out, len) == 0;
}

static int
parse_wrapped (json_object *o, const char *path, struct key_file *f)
{
  uint64_t log2n, r, p;

  if (!get_u64 (o, "log2n", &log2n) || !get_u64 (o, "r", &r) ||
      !get_u64 (o, "p", &p))
    return bad (path, "missing or invalid scrypt parameters");
  if (!kdf_params_ok (log2n, r, p))
    return bad (path, "scrypt parameters out of range");
  if (!get_hex (o, "salt", f->salt, SALT_LEN))
    return bad (path, "missing or invalid \"salt\"");
  if (!get_hex (o, "wrapped", f->wrapped, WRAPPED_LEN))
    return bad (path, "missing or invalid \"wrapped\"");
  f->info.wrapped = true;
  f->info.log2n = log2n;
  f->info.r = r;
  f->info.p = p;
  return 0;
}

/* The clear master key must be the one the fingerprint names. */
static int
parse_clear (json_object *o, const char *path, struct key_file *f)
{
  struct store_key *k;
  int same;

  if (!get_hex (o, "key", f->master, STORE_KEY_LEN))
    return bad (path, "missing or invalid \"key\"");
  k = crypt_key_new (f->master);
  if (k == NULL)
    return -1;
  same = strcmp (k->fingerprint, f->info.fingerprint) == 0;
  store_key_free (k);
  return same ? 0 : bad (path, "damaged (the key does not match its "
                         "fingerprint)");
}

static int
parse_fields (json_object *o, const char *path, struct key_file *f)
{
  const char *format = get_str (o, "format"), *kdf = get_str (o, "kdf");
  const char *fp = get_str (o, "fingerprint");
  uint64_t version;

  if (format == NULL || strcmp (format, KEY_FORMAT) != 0)
    return bad (path, "not a pullback key file");
  if (!get_u64 (o, "version", &version) || version != KEY_VERSION)
    return bad (path, "unsupported version");
  if (fp == NULL || strlen (fp) != 2 * STORE_FINGERPRINT_LEN ||
      strspn (fp, "0123456789abcdef") != 2 * STORE_FINGERPRINT_LEN)
    return bad (path, "missing or invalid \"fingerprint\"");
  memcpy (f->info.fingerprint, fp, sizeof f->info.fingerprint);
  if (kdf && strcmp (kdf, "scrypt") == 0)
    return parse_wrapped (o, path, f);
  if (kdf && strcmp (kdf, "none") == 0)
    return parse_clear (o, path, f);
  return bad (path, "unknown \"kdf\" (expected \"scrypt\" or \"none\")");
}

/* The file as one JSON object (whitespace may follow). */
static json_object *
parse_text (const char *buf, size_t len)
{
  json_tokener *tok = json_tokener_new ();
  json_object *o = tok ? json_tokener_parse_ex (tok, buf, (int) len) : NULL;
  size_t end = tok ? json_tokener_get_parse_end (tok) : 0;

  if (o && (strspn (buf + end, " \t\r\n") != len - end ||
            !json_object_is_type (o, json_type_object))) {
    json_object_put (o);
    o = NULL;
  }
  json_tokener_free (tok);
  return o;
}

/* A clear key file anyone else may read is as good as published. */
static int
check_mode (int fd, const char *path, const struct key_file *f)
{
  struct stat st;

  if (fstat (fd, &st) == -1) {
    set_error (PB_E_IO, errno, "key file %s", path);
    return -1;
  }
  if (f->info.wrapped || (st.st_mode & 077) == 0)
    return 0;
  set_error (PB_E_KEY, 0, "key file %s holds the key without a passphrase "
             "and is accessible to others (mode %04o): chmod 600 %s",
             path, (unsigned) (st.st_mode & 07777), path);
  return -1;
}

static int
read_key_file (const char *path, struct key_file *f)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  char buf[KEY_FILE_MAX + 1];
  ssize_t n;
  json_object *o;
  int r;

  memset (f, 0, sizeof *f);
  if (fd == -1 || (n = read (fd, buf, sizeof buf)) < 0) {
    set_error (PB_E_IO, errno, "key file %s", path);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  if (n > KEY_FILE_MAX) {
    close (fd);
    return bad (path, "too large to be a key file");
  }
  buf[n] = '\0';
  o = parse_text (buf, n);
  OPENSSL_cleanse (buf, sizeof buf);
  r = o ? parse_fields (o, path, f) : bad (path, "not a JSON object");
  json_object_put (o);
  if (r == 0)
    r = check_mode (fd, path, f);
  close (fd);
  if (r == -1)
    wipe_key_file (f);
  return r;
}

int
store_key_file_info (const char *path, struct store_key_file_info *info)
{
  struct key_file f;

  if (read_key_file (path, &f) == -1)
    return -1;
  *info = f.info;
  wipe_key_file (&f);
  return 0;
}

/* ---- loading ---- */

static int
unwrap (struct key_file *f, const char *path, const char *pass)
{
  uint8_t kek[CRYPT_KEY_LEN];
  char aad[64];
  size_t aadlen = wrap_aad (f->info.fingerprint, aad);
  int failed = 0, r;

  if (derive_kek (pass, f->salt, &f->info, kek) == -1)
    return -1;
  r = crypt_open (kek, aad, aadlen, f->wrapped, WRAPPED_LEN, f->master,
                  &failed);
  OPENSSL_cleanse (kek, sizeof kek);
  if (r == -1 && !failed)
    set_error (PB_E_KEY, 0, "wrong passphrase for key file %s", path);
  return r;
}

struct store_key *
store_key_load (const char *path, const char *passphrase)
{
  struct key_file f;
  struct store_key *k = NULL;

  if (read_key_file (path, &f) == -1)
    return NULL;
  if (f.info.wrapped && passphrase == NULL)
    set_error (PB_E_KEY, 0, "key file %s is protected by a passphrase, and "
               "none was given", path);
  else if (!f.info.wrapped || unwrap (&f, path, passphrase) == 0) {
    k = crypt_key_new (f.master);
    if (k && strcmp (k->fingerprint, f.info.fingerprint) != 0) {
      store_key_free (k);
      k = NULL;
      bad (path, "damaged (the key does not match its fingerprint)");
    }
  }
  wipe_key_file (&f);
  return k;
}

/* ---- saving ---- */

static int
add_str (json_object *o, const char *key, const char *v)
{
  return json_object_object_add (o, key, json_object_new_string (v));
}

static int
add_hex (json_object *o, const char *key, const uint8_t *b, size_t len)
{
  char hex[2 * WRAPPED_LEN + 1];
  int r;

  hex_encode (b, len, hex);
  r = add_str (o, key, hex);
  OPENSSL_cleanse (hex, sizeof hex);
  return r;
}

/* The wrapped fields: fresh salt, scrypt, seal. */
static int
add_wrapped (json_object *o, const struct store_key *k, const char *pass,
             unsigned log2n)
{
  struct store_key_file_info info = { true, log2n, SCRYPT_R, SCRYPT_P, "" };
  uint8_t salt[SALT_LEN], kek[CRYPT_KEY_LEN], box[WRAPPED_LEN];
  char aad[64];
  size_t aadlen = wrap_aad (k->fingerprint, aad);
  int r = -1;

  if (crypt_random (salt, sizeof salt) == 0 &&
      derive_kek (pass, salt, &info, kek) == 0 &&
      crypt_seal (kek, aad, aadlen, k->master, STORE_KEY_LEN, box) == 0)
    r = add_str (o, "kdf", "scrypt") ||
      json_object_object_add (o, "log2n", json_object_new_int (log2n)) ||
      json_object_object_add (o, "r", json_object_new_int (SCRYPT_R)) ||
      json_object_object_add (o, "p", json_object_new_int (SCRYPT_P)) ||
      add_hex (o, "salt", salt, sizeof salt) ||
      add_hex (o, "wrapped", box, sizeof box) ? -1 : 0;
  OPENSSL_cleanse (kek, sizeof kek);
  return r;
}

/* The key file's text (malloc'd; the caller wipes and frees it). */
static char *
key_file_text (const struct store_key *k, const char *pass, unsigned log2n)
{
  json_object *o = json_object_new_object ();
  char *text = NULL;
  int r;

  r = o == NULL || add_str (o, "format", KEY_FORMAT) ||
    json_object_object_add (o, "version", json_object_new_int (KEY_VERSION)) ||
    add_str (o, "fingerprint", k->fingerprint) ? -1 : 0;
  if (r == 0)
    r = pass ? add_wrapped (o, k, pass, log2n)
      : (add_str (o, "kdf", "none") || add_hex (o, "key", k->master,
                                                STORE_KEY_LEN)) ? -1 : 0;
  if (r == 0)
    text = strdup (json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
  if (r == 0 && text == NULL)
    set_error (PB_E_FAIL, ENOMEM, "out of memory");
  else if (r == -1 && pb_get_errclass () == PB_E_OK)
    set_error (PB_E_FAIL, ENOMEM, "json-c: cannot build the key file");
  json_object_put (o);      /* json-c does not wipe: the hex is in there */
  return text;
}

/* TEXT to a new temporary file beside PATH, fsync'ed; its name in TMP. */
static int
write_temp (const char *path, const char *text, char **tmp)
{
  CLEANUP_FREE char *copy = strdup (path);
  int fd;

  if (copy == NULL ||
      asprintf (tmp, "%s/.tmp.XXXXXX", dirname (copy)) == -1) {
    *tmp = NULL;
    set_error (PB_E_FAIL, ENOMEM, "out of memory");
    return -1;
  }
  fd = mkstemp (*tmp);
  if (fd == -1) {
    set_error (PB_E_IO, errno, "key file %s: cannot create a temporary file",
               path);
    return -1;
  }
  if (fchmod (fd, 0600) == -1 || full_write (fd, text, strlen (text)) == -1 ||
      fsync (fd) == -1) {
    set_error (PB_E_IO, errno, "key file %s: write", path);
    close (fd);
    return -1;
  }
  if (close (fd) == -1) {
    set_error (PB_E_IO, errno, "key file %s", path);
    return -1;
  }
  return 0;
}

/* Move TMP to PATH: never over an existing file unless REPLACE. */
static int
install (const char *tmp, const char *path, bool replace)
{
  CLEANUP_FREE char *copy = strdup (path);

  if (replace ? rename (tmp, path) == -1 : link (tmp, path) == -1) {
    set_error (errno == EEXIST ? PB_E_USAGE : PB_E_IO, errno,
               errno == EEXIST ? "key file %s already exists" : "key file %s",
               path);
    return -1;
  }
  return copy ? fsync_dir (dirname (copy)) : 0;
}

int
store_key_save (const struct store_key *k, const char *path,
                const char *passphrase, unsigned log2n, bool replace)
{
  char *text, *tmp = NULL;
  int r = -1;

  if (log2n == 0)
    log2n = STORE_KDF_DEFAULT_LOG2N;
  if (!kdf_params_ok (log2n, SCRYPT_R, SCRYPT_P)) {
    set_error (PB_E_USAGE, 0, "scrypt cost 2^%u is out of range (2^%d to "
               "2^%d)", log2n, STORE_KDF_MIN_LOG2N, STORE_KDF_MAX_LOG2N);
    return -1;
  }
  if (passphrase && passphrase[0] == '\0') {
    set_error (PB_E_USAGE, 0, "empty passphrase (save the key without one "
               "instead)");
    return -1;
  }
  if (!replace && access (path, F_OK) == 0) {
    set_error (PB_E_USAGE, EEXIST, "key file %s already exists", path);
    return -1;
  }
  text = key_file_text (k, passphrase, log2n);
  if (text != NULL && write_temp (path, text, &tmp) == 0)
    r = install (tmp, path, replace);
  /* After link() the temporary name remains; after rename() it is gone. */
  if (tmp && (r == -1 || !replace))
    unlink (tmp);
  if (text)
    OPENSSL_clear_free (text, strlen (text));
  free (tmp);
  return r;
}
