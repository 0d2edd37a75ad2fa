/* pullback - store/crypt.h: the cryptographic primitives of encrypted stores
 * (internal header of store/).
 *
 * Three building blocks, all through OpenSSL 3 (EVP):
 *  - HKDF-SHA256 to derive independent subkeys from a repository's master
 *    key (one for AES-256-GCM, one for keyed chunk ids, one for the config
 *    MAC, one for the fingerprint), so that no key serves two purposes;
 *  - AES-256-GCM "sealed boxes": nonce (12 random bytes) || ciphertext ||
 *    tag (16 bytes), with additional data that binds the box to its place
 *    (an object's header and key), so a box moved elsewhere fails its tag;
 *  - HMAC-SHA256 for keyed ids and MACs.
 * docs/FORMAT.md (part 1, section 9) describes the result exactly.
 *
 * struct store_key, the master key, is defined here so that key.c (key
 * files) and store.c (opening an encrypted store) share it; outside store/
 * it is opaque (store.h).
 */
#ifndef PB_STORE_CRYPT_H
#define PB_STORE_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define CRYPT_KEY_LEN 32          /* AES-256 and HMAC keys */
#define CRYPT_NONCE_LEN 12
#define CRYPT_TAG_LEN 16
#define CRYPT_OVERHEAD (CRYPT_NONCE_LEN + CRYPT_TAG_LEN)
#define CRYPT_MAC_LEN 32          /* HMAC-SHA256 */

struct store_key {
  uint8_t master[STORE_KEY_LEN];
  char fingerprint[2 * STORE_FINGERPRINT_LEN + 1];   /* lower-case hex */
};

/* HKDF-SHA256 (RFC 5869, no salt) of KEY with INFO into OUT. */
int crypt_hkdf (const uint8_t *key, size_t keylen, const char *info,
                uint8_t *out, size_t outlen);

/* A key struct around MASTER: computes the fingerprint.  NULL on error. */
struct store_key *crypt_key_new (const uint8_t master[STORE_KEY_LEN]);

/* Seal LEN bytes of PLAIN under KEY with additional data AAD: writes
 * LEN + CRYPT_OVERHEAD bytes to OUT (nonce || ciphertext || tag), with a
 * fresh random nonce.  PLAIN is either OUT + CRYPT_NONCE_LEN (sealed in
 * place) or does not overlap OUT at all. */
int crypt_seal (const uint8_t key[CRYPT_KEY_LEN], const void *aad,
                size_t aadlen, const void *plain, size_t len, uint8_t *out);

/* Open a box of INLEN >= CRYPT_OVERHEAD bytes into OUT (INLEN -
 * CRYPT_OVERHEAD bytes).  Returns 0, or -1 without recording an error when
 * the tag does not match (the caller names the object and the class), or
 * -1 with PB_E_FAIL recorded if OpenSSL itself failed: *FAILED tells. */
int crypt_open (const uint8_t key[CRYPT_KEY_LEN], const void *aad,
                size_t aadlen, const uint8_t *in, size_t inlen, void *out,
                int *failed);

/* HMAC-SHA256 of the concatenation of two pieces (B may be NULL). */
int crypt_hmac (const uint8_t key[CRYPT_KEY_LEN], const void *a, size_t alen,
                const void *b, size_t blen, uint8_t out[CRYPT_MAC_LEN]);

/* A reusable HMAC-SHA256 context keyed with KEY, for the hot path (chunk
 * ids): crypt_hmac_ctx() duplicates it per call, which is thread-safe and
 * avoids fetching the algorithm each time.  Free with crypt_hmac_free. */
struct crypt_hmac;
struct crypt_hmac *crypt_hmac_new (const uint8_t key[CRYPT_KEY_LEN]);
void crypt_hmac_free (struct crypt_hmac *h);
int crypt_hmac_ctx (struct crypt_hmac *h, const void *buf, size_t len,
                    uint8_t out[CRYPT_MAC_LEN]);

/* Constant-time comparison: 0 if equal. */
int crypt_memcmp (const void *a, const void *b, size_t len);

/* Random bytes; -1 with an error recorded if the RNG fails. */
int crypt_random (void *buf, size_t len);

#endif /* PB_STORE_CRYPT_H */
