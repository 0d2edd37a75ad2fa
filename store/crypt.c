/* pullback - store/crypt.c: HKDF, AES-256-GCM boxes and HMAC (crypt.h).
 *
 * Thin, careful wrappers over OpenSSL 3's EVP interfaces.  Each function
 * sets up its own context, so all of them are safe to call from several
 * threads at once; the one hot-path exception, keyed chunk ids, uses a
 * keyed HMAC context that is duplicated per call (struct crypt_hmac).
 * Errors from OpenSSL are recorded as PB_E_FAIL with the operation named;
 * a tag that does not match is not an OpenSSL failure but damage or a
 * wrong key, which only the caller can name.
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "crypt.h"
#include "errors.h"
#include "util.h"

#define FINGERPRINT_INFO "pullback v1 key fingerprint"

static int
ossl_error (const char *what)
{
  set_error (PB_E_FAIL, 0, "OpenSSL: %s failed", what);
  return -1;
}

int
crypt_random (void *buf, size_t len)
{
  if (len > INT_MAX || RAND_bytes (buf, (int) len) != 1)
    return ossl_error ("RAND_bytes");
  return 0;
}

int
crypt_memcmp (const void *a, const void *b, size_t len)
{
  return CRYPTO_memcmp (a, b, len);
}

/* ---- HKDF ---- */

int
crypt_hkdf (const uint8_t *key, size_t keylen, const char *info,
            uint8_t *out, size_t outlen)
{
  EVP_KDF *kdf = EVP_KDF_fetch (NULL, "HKDF", NULL);
  EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new (kdf) : NULL;
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_utf8_string (OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0),
    OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_KEY, (void *) key, keylen),
    OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_INFO, (void *) info,
                                       strlen (info)),
    OSSL_PARAM_construct_end ()
  };
  int ok = ctx != NULL && EVP_KDF_derive (ctx, out, outlen, params) == 1;

  EVP_KDF_CTX_free (ctx);
  EVP_KDF_free (kdf);
  return ok ? 0 : ossl_error ("HKDF");
}

struct store_key *
crypt_key_new (const uint8_t master[STORE_KEY_LEN])
{
  struct store_key *k = OPENSSL_zalloc (sizeof *k);
  uint8_t fp[STORE_FINGERPRINT_LEN];

  if (k == NULL) {
    set_error (PB_E_FAIL, ENOMEM, "out of memory");
    return NULL;
  }
  memcpy (k->master, master, STORE_KEY_LEN);
  if (crypt_hkdf (master, STORE_KEY_LEN, FINGERPRINT_INFO, fp, sizeof fp) == -1) {
    store_key_free (k);
    return NULL;
  }
  hex_encode (fp, sizeof fp, k->fingerprint);
  return k;
}

struct store_key *
store_key_generate (void)
{
  uint8_t master[STORE_KEY_LEN];
  struct store_key *k = NULL;

  if (crypt_random (master, sizeof master) == 0)
    k = crypt_key_new (master);
  OPENSSL_cleanse (master, sizeof master);
  return k;
}

void
store_key_free (struct store_key *k)
{
  OPENSSL_clear_free (k, sizeof *k);
}

const char *
store_key_fingerprint (const struct store_key *k)
{
  return k->fingerprint;
}

/* ---- AES-256-GCM ---- */

/* The cipher is fetched once per process: an EVP_CIPHER_fetch searches
 * the provider store under a lock, which every chunk would otherwise pay
 * for.  It is kept until exit (OpenSSL frees it with its providers). */
static EVP_CIPHER *aes_gcm;
static pthread_once_t aes_gcm_once = PTHREAD_ONCE_INIT;

static void
fetch_aes_gcm (void)
{
  aes_gcm = EVP_CIPHER_fetch (NULL, "AES-256-GCM", NULL);
}

static EVP_CIPHER_CTX *
gcm_ctx (const uint8_t key[CRYPT_KEY_LEN], const uint8_t *nonce, int enc)
{
  EVP_CIPHER_CTX *ctx;

  pthread_once (&aes_gcm_once, fetch_aes_gcm);
  ctx = aes_gcm ? EVP_CIPHER_CTX_new () : NULL;
  if (ctx != NULL &&
      EVP_CipherInit_ex2 (ctx, aes_gcm, key, nonce, enc, NULL) != 1) {
    EVP_CIPHER_CTX_free (ctx);
    ctx = NULL;
  }
  return ctx;
}

/* Feed AAD, then LEN bytes IN -> OUT.  INT_MAX bounds each call. */
static int
gcm_update (EVP_CIPHER_CTX *ctx, const void *aad, size_t aadlen,
            const void *in, size_t len, uint8_t *out)
{
  int n;

  if (aadlen > INT_MAX || len > INT_MAX)
    return -1;
  if (aadlen > 0 && EVP_CipherUpdate (ctx, NULL, &n, aad, (int) aadlen) != 1)
    return -1;
  if (len > 0 && (EVP_CipherUpdate (ctx, out, &n, in, (int) len) != 1 ||
                  (size_t) n != len))
    return -1;
  return 0;
}

int
crypt_seal (const uint8_t key[CRYPT_KEY_LEN], const void *aad,
            size_t aadlen, const void *plain, size_t len, uint8_t *out)
{
  uint8_t *ct = out + CRYPT_NONCE_LEN;
  EVP_CIPHER_CTX *ctx;
  int n, ok;

  if (crypt_random (out, CRYPT_NONCE_LEN) == -1)
    return -1;
  ctx = gcm_ctx (key, out, 1);
  ok = ctx != NULL && gcm_update (ctx, aad, aadlen, plain, len, ct) == 0 &&
    EVP_EncryptFinal_ex (ctx, ct + len, &n) == 1 &&
    EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_LEN,
                         ct + len) == 1;
  EVP_CIPHER_CTX_free (ctx);
  return ok ? 0 : ossl_error ("AES-256-GCM encryption");
}

int
crypt_open (const uint8_t key[CRYPT_KEY_LEN], const void *aad,
            size_t aadlen, const uint8_t *in, size_t inlen, void *out,
            int *failed)
{
  size_t len = inlen - CRYPT_OVERHEAD;
  const uint8_t *ct = in + CRYPT_NONCE_LEN;
  EVP_CIPHER_CTX *ctx;
  int n, r = -1;

  *failed = 0;
  if (inlen < CRYPT_OVERHEAD)
    return -1;
  ctx = gcm_ctx (key, in, 0);
  if (ctx == NULL || gcm_update (ctx, aad, aadlen, ct, len, out) == -1 ||
      EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_LEN,
                           (void *) (ct + len)) != 1) {
    *failed = 1;
    ossl_error ("AES-256-GCM decryption");
  }
  else if (EVP_DecryptFinal_ex (ctx, (uint8_t *) out + len, &n) == 1)
    r = 0;
  else if (len > 0)
    /* Never leave unauthenticated plaintext behind. */
    OPENSSL_cleanse (out, len);
  EVP_CIPHER_CTX_free (ctx);
  return r;
}

/* ---- HMAC-SHA256 ---- */

struct crypt_hmac {
  EVP_MAC *mac;
  EVP_MAC_CTX *tmpl;          /* keyed, never used directly */
};

void
crypt_hmac_free (struct crypt_hmac *h)
{
  if (h == NULL)
    return;
  EVP_MAC_CTX_free (h->tmpl);
  EVP_MAC_free (h->mac);
  free (h);
}

struct crypt_hmac *
crypt_hmac_new (const uint8_t key[CRYPT_KEY_LEN])
{
  struct crypt_hmac *h = calloc (1, sizeof *h);
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_utf8_string (OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0),
    OSSL_PARAM_construct_end ()
  };

  if (h == NULL) {
    set_error (PB_E_FAIL, ENOMEM, "out of memory");
    return NULL;
  }
  h->mac = EVP_MAC_fetch (NULL, "HMAC", NULL);
  h->tmpl = h->mac ? EVP_MAC_CTX_new (h->mac) : NULL;
  if (h->tmpl == NULL ||
      EVP_MAC_init (h->tmpl, key, CRYPT_KEY_LEN, params) != 1) {
    crypt_hmac_free (h);
    ossl_error ("HMAC-SHA256 set-up");
    return NULL;
  }
  return h;
}

/* One MAC over two pieces with a duplicate of TMPL. */
static int
hmac_run (EVP_MAC_CTX *tmpl, const void *a, size_t alen,
          const void *b, size_t blen, uint8_t out[CRYPT_MAC_LEN])
{
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup (tmpl);
  size_t n = 0;
  int ok = ctx != NULL &&
    EVP_MAC_update (ctx, a, alen) == 1 &&
    (b == NULL || EVP_MAC_update (ctx, b, blen) == 1) &&
    EVP_MAC_final (ctx, out, &n, CRYPT_MAC_LEN) == 1 && n == CRYPT_MAC_LEN;

  EVP_MAC_CTX_free (ctx);
  return ok ? 0 : ossl_error ("HMAC-SHA256");
}

int
crypt_hmac_ctx (struct crypt_hmac *h, const void *buf, size_t len,
                uint8_t out[CRYPT_MAC_LEN])
{
  return hmac_run (h->tmpl, buf, len, NULL, 0, out);
}

int
crypt_hmac (const uint8_t key[CRYPT_KEY_LEN], const void *a, size_t alen,
            const void *b, size_t blen, uint8_t out[CRYPT_MAC_LEN])
{
  struct crypt_hmac *h = crypt_hmac_new (key);
  int r;

  if (h == NULL)
    return -1;
  r = hmac_run (h->tmpl, a, alen, b, blen, out);
  crypt_hmac_free (h);
  return r;
}
