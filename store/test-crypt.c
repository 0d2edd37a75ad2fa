/* pullback - store/test-crypt.c: unit tests of encrypted stores.
 *
 * What an encrypted store must guarantee (issue 6, docs/FORMAT.md part 1,
 * section 9): ids are keyed, objects hold no plaintext, every object is
 * bound to its key (a chunk copied under another id, a record under
 * another name, is refused), any change to header or payload is refused
 * even when the attacker also fixes the unkeyed checksum, a plain object
 * planted in an encrypted store is refused, and a wrong, missing or
 * superfluous key, or an altered config, is refused at open.  The format
 * is also checked against an independent decryption that follows the
 * document (HKDF info strings, additional data, box layout).
 */
#include <config.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "crypt.h"
#include "test-common.h"

static struct store_key *key1, *key2;

/* ---- the documented format, independently ---- */

static void
doc_hkdf (const struct store_key *k, const char *info, uint8_t out[32])
{
  EVP_KDF *kdf = EVP_KDF_fetch (NULL, "HKDF", NULL);
  EVP_KDF_CTX *ctx = EVP_KDF_CTX_new (kdf);
  OSSL_PARAM p[] = {
    OSSL_PARAM_construct_utf8_string ("digest", (char *) "SHA256", 0),
    OSSL_PARAM_construct_octet_string ("key", (void *) k->master, 32),
    OSSL_PARAM_construct_octet_string ("info", (void *) info, strlen (info)),
    OSSL_PARAM_construct_end ()
  };

  if (EVP_KDF_derive (ctx, out, 32, p) != 1)
    memset (out, 0, 32);
  EVP_KDF_CTX_free (ctx);
  EVP_KDF_free (kdf);
}

static void
doc_id (const struct store_key *k, const void *buf, size_t len, uint8_t out[32])
{
  uint8_t sub[32];
  size_t n;

  doc_hkdf (k, "pullback v1 chunk ids", sub);
  EVP_Q_mac (NULL, "HMAC", NULL, "SHA256", NULL, sub, 32, buf, len,
             out, 32, &n);
}

/* Decrypt object OBJ stored under key NAME as the document says; the
 * plaintext payload (zstd frame or plain bytes) in *OUT. */
static int
doc_open (const struct store_key *k, const uint8_t *obj, size_t len,
          const char *name, uint8_t **out, size_t *outlen)
{
  uint8_t sub[32], aad[16 + 512];
  size_t box = len - HDR, n = box - 28;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new ();
  int l, ok;

  doc_hkdf (k, "pullback v1 object encryption", sub);
  memcpy (aad, obj, 16);
  memcpy (aad + 16, name, strlen (name));
  *out = malloc (n + 1);
  ok = EVP_DecryptInit_ex (ctx, EVP_aes_256_gcm (), NULL, sub, obj + HDR) &&
    EVP_DecryptUpdate (ctx, NULL, &l, aad, 16 + strlen (name)) &&
    EVP_DecryptUpdate (ctx, *out, &l, obj + HDR + 12, n) &&
    EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_TAG, 16,
                         (void *) (obj + HDR + 12 + n)) &&
    EVP_DecryptFinal_ex (ctx, *out + n, &l);
  EVP_CIPHER_CTX_free (ctx);
  *outlen = n;
  return ok ? 0 : -1;
}

/* ---- helpers ---- */

static bool
contains (const uint8_t *hay, size_t n, const void *needle, size_t m)
{
  size_t i;

  for (i = 0; i + m <= n; i++)
    if (memcmp (hay + i, needle, m) == 0)
      return true;
  return false;
}

static bool
get_fails (struct store *s, const store_id *id, const char *phrase)
{
  uint8_t *buf = malloc (STORE_MAX_CHUNK_SIZE);
  size_t len;
  bool r = store_get_chunk (s, id, buf, STORE_MAX_CHUNK_SIZE, &len) == -1 &&
    pb_get_errclass () == PB_E_CORRUPT && strstr (pb_get_error (), phrase);

  free (buf);
  return r;
}

static const char *
record_file (const char *name)
{
  return path_in ("repo/%s", name);
}

/* ---- tests ---- */

static void
test_ids_and_roundtrip (struct store *s, const uint8_t *text,
                        const uint8_t *rnd, store_id *tid, store_id *rid)
{
  uint8_t plain_id[32], want[32], *zeros = calloc (1, CS);
  store_id z;

  check (put (s, text, CS, tid, NULL) == 1 && put (s, rnd, CS, rid, NULL) == 1,
         "put a compressible and an incompressible chunk");
  check (put (s, text, CS, tid, NULL) == 0, "dedup: the same content again "
         "is not written");
  sha256 (text, CS, plain_id);
  check (memcmp (tid->b, plain_id, 32) != 0, "the id is not plain SHA-256");
  doc_id (key1, text, CS, want);
  check (memcmp (tid->b, want, 32) == 0, "the id is the documented HMAC");
  store_zero_id (s, CS, &z);
  doc_id (key1, zeros, CS, want);
  check (memcmp (z.b, want, 32) == 0, "the zero id is keyed too");
  free (zeros);
  check (get_equals (s, tid, text, CS) && get_equals (s, rid, rnd, CS),
         "both read back");
}

static void
test_no_plaintext (const store_id *tid, const uint8_t *text)
{
  size_t len, n;
  uint8_t *obj = read_whole (chunk_file (tid), &len), *inner = NULL;
  char key[80], hex[65];

  check (obj && !contains (obj, len, text + 100, 32),
         "the chunk object holds no plaintext");
  check (obj && le32 (obj + 4) >> 16 == 0x0003,
         "flags: ENCRYPTED | ZSTD for the compressible chunk");
  store_id_hex (tid, hex);
  snprintf (key, sizeof key, "chunks/%.2s/%s", hex, hex);
  check (obj && doc_open (key1, obj, len, key, &inner, &n) == 0 &&
         n < CS && memcmp (inner, "\x28\xb5\x2f\xfd", 4) == 0,
         "independent decryption gives a zstd frame");
  free (inner);
  free (obj);
}

/* Flip one byte at OFF, fix the unkeyed checksum as an attacker would,
 * and expect the read to fail authentication. */
static void
test_tamper (struct store *s, const store_id *id, size_t off, const char *what)
{
  size_t len;
  uint8_t *obj = read_whole (chunk_file (id), &len), *bad;
  uint8_t sum[8];

  if (obj == NULL || off >= len) {
    check (0, "tamper %s: object readable", what);
    free (obj);
    return;
  }
  bad = malloc (len);
  memcpy (bad, obj, len);
  bad[off] ^= 0x01;
  doc_checksum (bad, len, sum);
  memcpy (bad + 16, sum, 8);
  write_whole (chunk_file (id), bad, len);
  check (get_fails (s, id, off < 16 && off >= 8 ? "" : "authentication"),
         "a flipped bit in the %s (checksum fixed up) is refused: %s",
         what, pb_get_error ());
  write_whole (chunk_file (id), obj, len);
  free (bad);
  free (obj);
}

static void
test_swap (struct store *s, const store_id *a, const store_id *b)
{
  size_t la, lb;
  uint8_t *oa = read_whole (chunk_file (a), &la);
  uint8_t *ob = read_whole (chunk_file (b), &lb);

  write_whole (chunk_file (b), oa, la);
  check (get_fails (s, b, "authentication"), "chunk A copied under id B is "
         "refused: %s", pb_get_error ());
  write_whole (chunk_file (b), ob, lb);
  free (oa);
  free (ob);
}

static void
test_records (struct store *s)
{
  const char *rec = "{\"vm\":\"secret-vm-name\",\"disk\":\"vda\"}";
  void *buf = NULL;
  size_t len;
  uint8_t *obj;

  check (store_put_record (s, "points/0000000001", rec, strlen (rec)) == 0 &&
         store_get_record (s, "points/0000000001", &buf, &len) == 0 &&
         len == strlen (rec) && memcmp (buf, rec, len) == 0,
         "a record round trip");
  free (buf);
  obj = read_whole (record_file ("points/0000000001"), &len);
  check (obj && !contains (obj, len, "secret-vm-name", 14),
         "the record object holds no plaintext");
  write_whole (record_file ("points/0000000002"), obj, len);
  check (store_get_record (s, "points/0000000002", &buf, &len) == -1 &&
         pb_get_errclass () == PB_E_CORRUPT &&
         strstr (pb_get_error (), "authentication"),
         "record 1 copied as record 2 is refused: %s", pb_get_error ());
  free (obj);
}

/* A plain object of the same content, planted under the keyed id. */
static void
test_planted (struct store *s, const store_id *tid, const uint8_t *text)
{
  struct store *plain = store_create (path_in ("plain"), CS, NULL);
  store_id pid;
  char hex[65];
  size_t len;
  uint8_t *obj;

  if (plain == NULL) {
    check (0, "store_create plain");
    return;
  }
  put (plain, text, CS, &pid, NULL);
  store_id_hex (&pid, hex);
  obj = read_whole (path_in ("plain/chunks/%.2s/%s", hex, hex), &len);
  write_whole (chunk_file (tid), obj, len);
  check (get_fails (s, tid, "not encrypted"), "a plain object planted in an "
         "encrypted store is refused: %s", pb_get_error ());
  free (obj);
  store_close (plain);
}

static void
test_open_keys (void)
{
  struct store *s;
  size_t len;
  char *cfg, *p, orig[1024], conf[1024];

  s = store_open (path_in ("repo"), NULL);
  check (s == NULL && pb_get_errclass () == PB_E_KEY &&
         strstr (pb_get_error (), "is encrypted"), "open without a key: "
         "PB_E_KEY: %s", pb_get_error ());
  s = store_open (path_in ("repo"), key2);
  check (s == NULL && pb_get_errclass () == PB_E_KEY &&
         strstr (pb_get_error (), "wrong key"), "open with another key: "
         "PB_E_KEY: %s", pb_get_error ());
  s = store_open (path_in ("plain"), key1);
  check (s == NULL && pb_get_errclass () == PB_E_KEY &&
         strstr (pb_get_error (), "not encrypted"), "a key for a plain store: "
         "PB_E_KEY: %s", pb_get_error ());
  cfg = (char *) read_whole (path_in ("repo/config"), &len);
  p = cfg ? strstr (cfg, "\"uuid\":\"") : NULL;
  check (p != NULL, "config records the uuid: %s", cfg ? cfg : "");
  if (p) {
    p[8] = p[8] == '0' ? '1' : '0';       /* another uuid, still valid */
    snprintf (orig, sizeof orig, "%s", path_in ("repo/config.orig"));
    snprintf (conf, sizeof conf, "%s", path_in ("repo/config"));
    rename (conf, orig);
    write_whole (conf, cfg, len);
    s = store_open (path_in ("repo"), key1);
    check (s == NULL && pb_get_errclass () == PB_E_REPO &&
           strstr (pb_get_error (), "altered"), "an altered config is refused: "
           "%s", pb_get_error ());
    store_close (s);
    rename (orig, conf);
  }
  s = store_open (path_in ("repo"), key1);
  check (s != NULL && store_encrypted (s), "open with the right key");
  store_close (s);
  free (cfg);
}

static void
test_keys_differ (const uint8_t *text, const store_id *tid)
{
  struct store *s2 = store_create (path_in ("enc2"), CS, key2);
  store_id id2;

  check (s2 != NULL, "a second encrypted store");
  if (s2 == NULL)
    return;
  store_id_of (s2, text, CS, &id2);
  check (memcmp (id2.b, tid->b, 32) != 0, "another key gives another id");
  store_close (s2);
}

int
main (void)
{
  uint8_t *text = malloc (CS), *rnd = malloc (CS);
  struct store *s;
  store_id tid, rid;

  if (test_start ("test-crypt") == -1)
    return 1;
  fill_text (text, CS, 1);
  fill_random (rnd, CS, 2);
  key1 = store_key_generate ();
  key2 = store_key_generate ();
  REQUIRE (key1 && key2);
  check (strcmp (store_key_fingerprint (key1), store_key_fingerprint (key2)),
         "two keys, two fingerprints");
  s = store_create (path_in ("repo"), CS, key1);
  REQUIRE (s != NULL && store_encrypted (s));
  test_ids_and_roundtrip (s, text, rnd, &tid, &rid);
  test_no_plaintext (&tid, text);
  test_tamper (s, &rid, 6, "flags");
  test_tamper (s, &rid, 9, "plain length");
  test_tamper (s, &rid, HDR + 3, "nonce");
  test_tamper (s, &rid, HDR + 12 + 1000, "ciphertext");
  test_tamper (s, &rid, HDR + 12 + CS + 5, "tag");
  test_swap (s, &tid, &rid);
  check (get_equals (s, &tid, text, CS) && get_equals (s, &rid, rnd, CS),
         "both chunks intact after the tampering was undone");
  test_records (s);
  test_planted (s, &tid, text);
  store_close (s);
  test_open_keys ();
  test_keys_differ (text, &tid);
  store_key_free (key1);
  store_key_free (key2);
  free (text);
  free (rnd);
  return test_end ();
}
