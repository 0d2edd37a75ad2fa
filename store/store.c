/* pullback - store/store.c: the chunk store (store.h) over struct objstore.
 *
 * This is where ids and object keys live; the container byte layout is
 * chunk.c's business, the "config" object store-config.c's, and the files
 * the backend's.  Only objstore_*() is used to reach the data, so a RADOS
 * backend can slot in under unchanged code.  docs/FORMAT.md (part 1)
 * describes the result.
 *
 * Keys:  "config"                   the store config (plain JSON)
 *        "chunks/XX/<64 hex id>"    chunks and map nodes, XX = first 2 hex
 *        "DIR/NAME..."              records, by their own name
 *
 * Encrypted stores: the master key is only used here, at create/open, to
 * derive three subkeys with HKDF (object encryption, chunk ids, config
 * MAC) and then forgotten; the codec seals and opens objects, store_id_of
 * computes keyed ids.  The config records the key's fingerprint and a MAC,
 * so that a wrong key or an altered config is refused before any object
 * is read or written.
 *
 * Thread-safety: after store_create/store_open returns, the struct is
 * read-only except for the lazily computed zero id (zero_lock); the codec
 * and the backend are thread-safe themselves.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "chunk.h"
#include "cleanup.h"
#include "crypt.h"
#include "errors.h"
#include "objstore.h"
#include "store.h"
#include "store-config.h"
#include "util.h"

#define CHUNK_PREFIX "chunks/"
/* "chunks/" + "XX/" + 64 hex + NUL */
#define CHUNK_KEY_SIZE (sizeof CHUNK_PREFIX - 1 + 3 + 2 * STORE_ID_LEN + 1)
#define WHAT_SIZE (sizeof "chunk " + 2 * STORE_ID_LEN)
#define RECORD_NAME_MAX 255

struct store {
  struct objstore *os;
  struct chunk_codec *codec;
  EVP_MD *id_md;               /* SHA-256, fetched once */
  struct crypt_hmac *id_mac;   /* encrypted stores: keyed ids, else NULL */
  char *path;                  /* for messages */
  struct store_config cfg;     /* chunk size and uuid */
  void *zeros;                 /* chunk_size zero bytes (calloc: no RSS) */
  pthread_mutex_t zero_lock;   /* protects zero_valid, zero_id */
  bool zero_valid;
  store_id zero_id;
};

/* ---- construction ---- */

/* Everything but the backend. */
static struct store *
store_alloc (const char *path, const struct store_config *cfg)
{
  struct store *s = calloc (1, sizeof *s);

  if (s == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  pthread_mutex_init (&s->zero_lock, NULL);
  s->cfg = *cfg;
  s->path = strdup (path);
  s->zeros = calloc (1, cfg->chunk_size);
  if (s->path == NULL || s->zeros == NULL) {
    set_error (PB_E_FAIL, ENOMEM, "out of memory");
    goto err;
  }
  s->codec = chunk_codec_new ();
  if (s->codec == NULL)
    goto err;
  s->id_md = EVP_MD_fetch (NULL, "SHA256", NULL);
  if (s->id_md == NULL) {
    set_error (PB_E_FAIL, 0, "OpenSSL: cannot fetch SHA256");
    goto err;
  }
  return s;

 err:
  store_close (s);
  return NULL;
}

void
store_close (struct store *s)
{
  if (s == NULL)
    return;
  objstore_close (s->os);
  chunk_codec_free (s->codec);
  EVP_MD_free (s->id_md);
  crypt_hmac_free (s->id_mac);
  pthread_mutex_destroy (&s->zero_lock);
  free (s->zeros);
  free (s->path);
  free (s);
}

/* ---- keys ---- */

#define INFO_OBJECTS "pullback v1 object encryption"
#define INFO_IDS "pullback v1 chunk ids"
#define INFO_CONFIG "pullback v1 config mac"

/* The MAC of an encrypted config under KEY's config subkey. */
static int
config_mac (const struct store_key *key, const struct store_config *cfg,
            uint8_t mac[STORE_CONFIG_MAC_LEN])
{
  uint8_t sub[CRYPT_KEY_LEN];
  char text[STORE_CONFIG_MAC_TEXT_MAX];
  int r;

  store_config_mac_text (cfg, text);
  r = crypt_hkdf (key->master, STORE_KEY_LEN, INFO_CONFIG, sub, sizeof sub);
  if (r == 0)
    r = crypt_hmac (sub, text, strlen (text), NULL, 0, mac);
  OPENSSL_cleanse (sub, sizeof sub);
  return r;
}

/* Give the codec and the id function their subkeys. */
static int
use_key (struct store *s, const struct store_key *key)
{
  uint8_t enc[CRYPT_KEY_LEN], ids[CRYPT_KEY_LEN];
  int r = -1;

  if (crypt_hkdf (key->master, STORE_KEY_LEN, INFO_OBJECTS, enc, sizeof enc) == 0 &&
      crypt_hkdf (key->master, STORE_KEY_LEN, INFO_IDS, ids, sizeof ids) == 0 &&
      (s->id_mac = crypt_hmac_new (ids)) != NULL) {
    chunk_codec_set_key (s->codec, enc);
    r = 0;
  }
  OPENSSL_cleanse (enc, sizeof enc);
  OPENSSL_cleanse (ids, sizeof ids);
  return r;
}

/* An opened config against the key given: the right key for an encrypted
 * store, none for a plain one, and a config nobody altered. */
static int
check_key (const struct store_config *cfg, const struct store_key *key,
           const char *path)
{
  uint8_t mac[STORE_CONFIG_MAC_LEN];

  if (!cfg->encrypted && key == NULL)
    return 0;
  if (!cfg->encrypted) {
    set_error (PB_E_KEY, 0, "%s is not encrypted, but a key was given", path);
    return -1;
  }
  if (key == NULL) {
    set_error (PB_E_KEY, 0, "%s is encrypted: its key is needed (key %s; "
               "give --key-file)", path, cfg->key);
    return -1;
  }
  if (strcmp (cfg->key, key->fingerprint) != 0) {
    set_error (PB_E_KEY, 0, "wrong key for %s: it needs key %s, the key "
               "given is %s", path, cfg->key, key->fingerprint);
    return -1;
  }
  if (config_mac (key, cfg, mac) == -1)
    return -1;
  if (crypt_memcmp (mac, cfg->mac, sizeof mac) != 0) {
    set_error (PB_E_REPO, 0, "%s: the store config has been altered (its MAC "
               "does not match)", path);
    return -1;
  }
  return 0;
}

/* ---- construction, continued ---- */

/* Everything is checked and allocated before the directory is made, so a
 * failure leaves nothing behind (except after the config write failed:
 * then an empty directory, which a retry accepts). */
struct store *
store_create (const char *path, uint32_t chunk_size,
              const struct store_key *key)
{
  struct store_config cfg;
  struct store *s;

  if (store_config_init (&cfg, chunk_size) == -1)
    return NULL;
  if (key) {
    cfg.encrypted = true;
    memcpy (cfg.key, key->fingerprint, sizeof cfg.key);
    if (config_mac (key, &cfg, cfg.mac) == -1)
      return NULL;
  }
  if ((s = store_alloc (path, &cfg)) == NULL)
    return NULL;
  if (key && use_key (s, key) == -1)
    goto err;
  s->os = objstore_dir_open (path, 1);
  if (s->os == NULL || store_config_write (s->os, &cfg) == -1 ||
      objstore_sync (s->os) == -1)
    goto err;
  return s;

 err:
  store_close (s);
  return NULL;
}

struct store *
store_open (const char *path, const struct store_key *key)
{
  struct objstore *os = objstore_dir_open (path, 0);
  struct store_config cfg;
  struct store *s;

  if (os == NULL || store_config_read (os, path, &cfg) == -1 ||
      check_key (&cfg, key, path) == -1 ||
      (s = store_alloc (path, &cfg)) == NULL) {
    objstore_close (os);
    return NULL;
  }
  s->os = os;
  if (key && use_key (s, key) == -1) {
    store_close (s);
    return NULL;
  }
  return s;
}

bool
store_encrypted (const struct store *s)
{
  return s->cfg.encrypted;
}

uint32_t
store_chunk_size (const struct store *s)
{
  return s->cfg.chunk_size;
}

const char *
store_uuid (const struct store *s)
{
  return s->cfg.uuid;
}

/* ---- ids ---- */

/* EVP_Digest with an already fetched SHA-256 fails only when it cannot
 * allocate its ~200-byte context.  A wrong id would silently corrupt
 * backups (false dedup hits), and the signature cannot report an error,
 * so that is fatal. */
void
store_id_of (const struct store *s, const void *buf, size_t len,
             store_id *out)
{
  unsigned int n = 0;

  /* Encrypted stores: HMAC-SHA256 under the ids subkey, so that ids do
   * not tell which well-known blocks a disk holds. */
  if (s && s->id_mac) {
    if (crypt_hmac_ctx (s->id_mac, buf, len, out->b) == -1)
      abort ();
    return;
  }
  /* S == NULL: plain SHA-256, for digests computed without a repository
   * (the id function of unencrypted repositories). */
  if (!EVP_Digest (buf, len, out->b, &n, s ? s->id_md : EVP_sha256 (), NULL) ||
      n != STORE_ID_LEN)
    abort ();
}

void
store_zero_id (struct store *s, size_t len, store_id *out)
{
  void *tmp;

  if (len < s->cfg.chunk_size) {
    store_id_of (s, s->zeros, len, out);
    return;
  }
  if (len == s->cfg.chunk_size) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->zero_lock);
    if (!s->zero_valid) {
      store_id_of (s, s->zeros, len, &s->zero_id);
      s->zero_valid = true;
    }
    *out = s->zero_id;
    return;
  }
  /* Beyond the contract (LEN <= chunk size), but keep it correct. */
  tmp = calloc (1, len);
  if (tmp == NULL)
    abort ();
  store_id_of (s, tmp, len, out);
  free (tmp);
}

void
store_id_hex (const store_id *id, char out[2 * STORE_ID_LEN + 1])
{
  hex_encode (id->b, STORE_ID_LEN, out);
}

int
store_id_parse (const char *hex, store_id *out)
{
  if (hex_decode (hex, out->b, STORE_ID_LEN) == -1) {
    set_error (PB_E_USAGE, 0, "invalid chunk id '%.80s' (expected %d hex "
               "digits)", hex, 2 * STORE_ID_LEN);
    return -1;
  }
  return 0;
}

/* ---- chunks ---- */

static void
chunk_key (const store_id *id, char key[CHUNK_KEY_SIZE])
{
  char hex[2 * STORE_ID_LEN + 1];

  store_id_hex (id, hex);
  snprintf (key, CHUNK_KEY_SIZE, CHUNK_PREFIX "%.2s/%s", hex, hex);
}

/* "chunk <hex>", naming a chunk in messages. */
static void
chunk_what (const store_id *id, char what[WHAT_SIZE])
{
  char hex[2 * STORE_ID_LEN + 1];

  store_id_hex (id, hex);
  snprintf (what, WHAT_SIZE, "chunk %s", hex);
}

int
store_put_chunk (struct store *s, const store_id *id,
                 const void *buf, size_t len, uint64_t *stored)
{
  char key[CHUNK_KEY_SIZE];
  CLEANUP_FREE void *obj = NULL;
  size_t objlen;
  uint64_t size;
  int r;

  if (stored)
    *stored = 0;
  if (len > STORE_MAX_CHUNK_SIZE) {
    set_error (PB_E_USAGE, 0, "chunk of %zu bytes exceeds the maximum of %u",
               len, STORE_MAX_CHUNK_SIZE);
    return -1;
  }
  chunk_key (id, key);
  /* Dedup.  An object too short to hold a header cannot be a good copy
   * (a backend that lost data), so it is rewritten rather than trusted. */
  r = objstore_stat (s->os, key, &size);
  if (r == -1)
    return -1;
  if (r == 1 && size >= CHUNK_HEADER_SIZE)
    return 0;
  if (chunk_encode (s->codec, CHUNK_TYPE_CHUNK, true, key, buf, len,
                    &obj, &objlen) == -1 ||
      objstore_put (s->os, key, obj, objlen) == -1)
    return -1;
  if (stored)
    *stored = objlen;
  return 1;
}

/* Read chunk ID's object; a missing chunk is damage to the store. */
static int
load_chunk (struct store *s, const store_id *id, void **obj, size_t *objlen)
{
  char key[CHUNK_KEY_SIZE], what[WHAT_SIZE];

  chunk_key (id, key);
  if (objstore_get (s->os, key, obj, objlen) == -1) {
    if (pb_get_errno () == ENOENT) {
      chunk_what (id, what);
      set_error (PB_E_CORRUPT, ENOENT, "%s: missing", what);
      errno = ENOENT;
    }
    return -1;
  }
  return 0;
}

/* The last line of defence: the content must hash to the id asked for
 * (a valid object filed under the wrong key passes every other check). */
static int
check_id (struct store *s, const store_id *id, const void *buf, size_t len)
{
  store_id got;
  char what[WHAT_SIZE], hex[2 * STORE_ID_LEN + 1];

  store_id_of (s, buf, len, &got);
  if (memcmp (got.b, id->b, STORE_ID_LEN) == 0)
    return 0;
  chunk_what (id, what);
  store_id_hex (&got, hex);
  set_error (PB_E_CORRUPT, 0, "%s: content does not match its id (it hashes "
             "to %s)", what, hex);
  return -1;
}

/* Chunk ID into BUF.  TRUST_ID: a content that hashes to ID is taken
 * without computing the checksum too (the id is the stronger proof); on
 * any failure the object is checked again the full way, so that the error
 * is the one the full check gives (checksum mismatch, zstd, id). */
static int
get_chunk (struct store *s, const store_id *id, void *buf, size_t cap,
           size_t *len, bool trust_id)
{
  CLEANUP_FREE void *obj = NULL;
  char what[WHAT_SIZE], key[CHUNK_KEY_SIZE];
  size_t objlen;
  store_id got;

  if (load_chunk (s, id, &obj, &objlen) == -1)
    return -1;
  chunk_what (id, what);
  chunk_key (id, key);
  if (trust_id &&
      chunk_decode_unsummed (s->codec, CHUNK_TYPE_CHUNK, key, obj, objlen,
                             STORE_MAX_CHUNK_SIZE, buf, cap, len, what) == 0) {
    store_id_of (s, buf, *len, &got);
    if (memcmp (got.b, id->b, STORE_ID_LEN) == 0)
      return 0;
  }
  if (chunk_decode (s->codec, CHUNK_TYPE_CHUNK, key, obj, objlen,
                    STORE_MAX_CHUNK_SIZE, buf, cap, len, what) == -1)
    return -1;
  return check_id (s, id, buf, *len);
}

int
store_get_chunk (struct store *s, const store_id *id,
                 void *buf, size_t cap, size_t *len)
{
  return get_chunk (s, id, buf, cap, len, false);
}

int
store_load_chunk (struct store *s, const store_id *id,
                  void *buf, size_t cap, size_t *len)
{
  return get_chunk (s, id, buf, cap, len, true);
}

int
store_get_chunk_alloc (struct store *s, const store_id *id,
                       void **buf, size_t *len)
{
  CLEANUP_FREE void *obj = NULL;
  char what[WHAT_SIZE], key[CHUNK_KEY_SIZE];
  size_t objlen;

  if (load_chunk (s, id, &obj, &objlen) == -1)
    return -1;
  chunk_what (id, what);
  chunk_key (id, key);
  if (chunk_decode_alloc (s->codec, CHUNK_TYPE_CHUNK, key, obj, objlen,
                          STORE_MAX_CHUNK_SIZE, buf, len, what) == -1)
    return -1;
  if (check_id (s, id, *buf, *len) == -1) {
    free (*buf);
    *buf = NULL;
    return -1;
  }
  return 0;
}

int
store_has_chunk (struct store *s, const store_id *id)
{
  return store_stat_chunk (s, id, NULL);
}

int
store_stat_chunk (struct store *s, const store_id *id, uint64_t *size)
{
  char key[CHUNK_KEY_SIZE];

  chunk_key (id, key);
  return objstore_stat (s->os, key, size);
}

int
store_delete_chunk (struct store *s, const store_id *id)
{
  char key[CHUNK_KEY_SIZE];

  chunk_key (id, key);
  return objstore_del (s->os, key);
}

/* "quarantine/<hex>": where a damaged chunk's bytes are kept. */
#define QUARANTINE_PREFIX "quarantine/"
#define QUARANTINE_KEY_SIZE (sizeof QUARANTINE_PREFIX + 2 * STORE_ID_LEN)

static void
quarantine_key (const store_id *id, char key[QUARANTINE_KEY_SIZE])
{
  char hex[2 * STORE_ID_LEN + 1];

  store_id_hex (id, hex);
  snprintf (key, QUARANTINE_KEY_SIZE, QUARANTINE_PREFIX "%s", hex);
}

int
store_quarantine_chunk (struct store *s, const store_id *id)
{
  char key[CHUNK_KEY_SIZE], qkey[QUARANTINE_KEY_SIZE];
  CLEANUP_FREE void *obj = NULL;
  size_t len;

  chunk_key (id, key);
  quarantine_key (id, qkey);
  /* Copy, then delete: the object interface has no rename, and a crash
   * in between leaves both (harmless: the chunk is still found damaged). */
  if (objstore_get (s->os, key, &obj, &len) == -1 ||
      objstore_put (s->os, qkey, obj, len) == -1 ||
      objstore_del (s->os, key) == -1 || objstore_sync (s->os) == -1) {
    pb_prefix_error ("moving damaged chunk %s aside", key);
    return -1;
  }
  return 0;
}

int
store_chunk_quarantined (struct store *s, const store_id *id)
{
  char qkey[QUARANTINE_KEY_SIZE];

  quarantine_key (id, qkey);
  return objstore_stat (s->os, qkey, NULL);
}

int
store_sweep_temp (struct store *s, int64_t before, uint64_t *removed)
{
  *removed = 0;
  return s->os->ops->sweep ? s->os->ops->sweep (s->os, before, removed) : 0;
}

struct list_chunks {
  int (*cb) (const store_id *id, void *opaque);
  void *opaque;
};

/* Keys that are not "chunks/XX/<id>" with XX matching are strays: skip. */
static int
list_chunk_key (const char *key, void *opaque)
{
  struct list_chunks *l = opaque;
  const char *hex = key + sizeof CHUNK_PREFIX - 1 + 3;
  store_id id;

  if (strlen (key) != CHUNK_KEY_SIZE - 1 ||
      hex_decode (hex, id.b, STORE_ID_LEN) == -1 ||
      memcmp (hex - 3, hex, 2) != 0 || hex[-1] != '/')
    return 0;
  return l->cb (&id, l->opaque);
}

int
store_list_chunks (struct store *s,
                   int (*cb) (const store_id *id, void *opaque),
                   void *opaque)
{
  struct list_chunks l = { .cb = cb, .opaque = opaque };

  return objstore_list (s->os, CHUNK_PREFIX, list_chunk_key, &l);
}

/* ---- records ---- */

/* "DIR/NAME": at least two parts of [a-z0-9._-], none empty or starting
 * with '.', and not under chunks/ (which would shadow a chunk). */
static bool
record_name_ok (const char *name)
{
  size_t len = strlen (name), i, parts = 1;

  if (len == 0 || len > RECORD_NAME_MAX || name[0] == '.' ||
      strncmp (name, CHUNK_PREFIX, sizeof CHUNK_PREFIX - 1) == 0)
    return false;
  for (i = 0; i < len; i++) {
    char c = name[i];
    if (c == '/') {
      if (i + 1 == len || name[i + 1] == '/' || name[i + 1] == '.')
        return false;
      parts++;
    }
    else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-'))
      return false;
  }
  return parts >= 2;
}

static int
check_record_name (const char *name)
{
  if (record_name_ok (name))
    return 0;
  set_error (PB_E_USAGE, 0, "invalid record name '%.300s'", name);
  return -1;
}

int
store_put_record (struct store *s, const char *name,
                  const void *buf, size_t len)
{
  CLEANUP_FREE void *obj = NULL;
  size_t objlen;

  if (check_record_name (name) == -1)
    return -1;
  if (len > CHUNK_MAX_RECORD) {
    set_error (PB_E_USAGE, 0, "record %s: %zu bytes exceeds the maximum of %u",
               name, len, CHUNK_MAX_RECORD);
    return -1;
  }
  if (chunk_encode (s->codec, CHUNK_TYPE_RECORD, false, name, buf, len,
                    &obj, &objlen) == -1)
    return -1;
  return objstore_put (s->os, name, obj, objlen);
}

int
store_get_record (struct store *s, const char *name,
                  void **buf, size_t *len)
{
  CLEANUP_FREE void *obj = NULL;
  CLEANUP_FREE char *what = NULL;
  size_t objlen;

  if (check_record_name (name) == -1)
    return -1;
  if (objstore_get (s->os, name, &obj, &objlen) == -1) {
    if (pb_get_errno () == ENOENT) {
      set_error (PB_E_NOTFOUND, ENOENT, "record %s", name);
      errno = ENOENT;
    }
    return -1;
  }
  if (asprintf (&what, "record %s", name) == -1) {
    what = NULL;
    set_error (PB_E_FAIL, ENOMEM, "asprintf");
    return -1;
  }
  return chunk_decode_alloc (s->codec, CHUNK_TYPE_RECORD, name, obj, objlen,
                             CHUNK_MAX_RECORD, buf, len, what);
}

int
store_delete_record (struct store *s, const char *name)
{
  if (check_record_name (name) == -1)
    return -1;
  return objstore_del (s->os, name);
}

struct list_records {
  int (*cb) (const char *name, void *opaque);
  void *opaque;
};

/* The backend lists every key under the prefix; only records count. */
static int
list_record_key (const char *key, void *opaque)
{
  struct list_records *l = opaque;

  return record_name_ok (key) ? l->cb (key, l->opaque) : 0;
}

int
store_list_records (struct store *s, const char *prefix,
                    int (*cb) (const char *name, void *opaque),
                    void *opaque)
{
  struct list_records l = { .cb = cb, .opaque = opaque };

  return objstore_list (s->os, prefix, list_record_key, &l);
}

int
store_sync (struct store *s)
{
  return objstore_sync (s->os);
}
