/* pullback - store/store-config.c: write, read and validate "config".
 *
 * {"format":"pullback-store","version":1,"chunk_size":N,"id":"sha256",
 *  "uuid":"<32 hex>"}
 * and for encrypted stores
 * {"format":"pullback-store","version":2,"chunk_size":N,"id":"hmac-sha256",
 *  "encryption":"aes-256-gcm","key":"<32 hex>","uuid":"<32 hex>",
 *  "mac":"<64 hex>"}
 * (the MAC is checked by store.c, which holds the key).
 *
 * Reading trusts nothing: the object must be one JSON object (whitespace
 * may follow), every known key must be present with the right type and a
 * supported value.  Unknown keys are ignored: anything a version 1 reader
 * may not ignore comes with a new "version".  Every failure is PB_E_REPO
 * naming the store, because the usual cause is pointing pullback at the
 * wrong directory.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json.h>
#include <openssl/rand.h>

#include "cleanup.h"
#include "errors.h"
#include "store.h"
#include "store-config.h"
#include "util.h"

#define CONFIG_KEY "config"
#define CONFIG_FORMAT "pullback-store"
#define CONFIG_VERSION 1
#define CONFIG_ID "sha256"
#define CONFIG_VERSION_ENC 2
#define CONFIG_ID_ENC "hmac-sha256"
#define CONFIG_CIPHER "aes-256-gcm"
#define CONFIG_MAX (64 * 1024)     /* a larger "config" is not ours */

bool
store_chunk_size_ok (uint64_t size)
{
  return is_power_of_2 (size) &&
    size >= STORE_MIN_CHUNK_SIZE && size <= STORE_MAX_CHUNK_SIZE;
}

int
store_config_init (struct store_config *cfg, uint32_t chunk_size)
{
  uint8_t uuid[STORE_UUID_BYTES];

  if (!store_chunk_size_ok (chunk_size)) {
    set_error (PB_E_USAGE, 0, "invalid chunk size %" PRIu32 " (must be a "
               "power of two from 64 KiB to 16 MiB)", chunk_size);
    return -1;
  }
  if (RAND_bytes (uuid, sizeof uuid) != 1) {
    set_error (PB_E_FAIL, 0, "OpenSSL: RAND_bytes failed");
    return -1;
  }
  memset (cfg, 0, sizeof *cfg);
  cfg->chunk_size = chunk_size;
  hex_encode (uuid, sizeof uuid, cfg->uuid);
  return 0;
}

void
store_config_mac_text (const struct store_config *cfg,
                       char out[STORE_CONFIG_MAC_TEXT_MAX])
{
  snprintf (out, STORE_CONFIG_MAC_TEXT_MAX,
            CONFIG_FORMAT " %d %" PRIu32 " " CONFIG_ID_ENC " " CONFIG_CIPHER
            " %s %s", CONFIG_VERSION_ENC, cfg->chunk_size, cfg->key,
            cfg->uuid);
}

static int
add_str (json_object *o, const char *key, const char *val)
{
  return json_object_object_add (o, key, json_object_new_string (val));
}

/* The fields only an encrypted store has. */
static int
add_encryption (json_object *o, const struct store_config *cfg)
{
  char mac[2 * STORE_CONFIG_MAC_LEN + 1];

  if (!cfg->encrypted)
    return 0;
  hex_encode (cfg->mac, sizeof cfg->mac, mac);
  return add_str (o, "encryption", CONFIG_CIPHER) ||
    add_str (o, "key", cfg->key) || add_str (o, "mac", mac);
}

int
store_config_write (struct objstore *os, const struct store_config *cfg)
{
  json_object *o = json_object_new_object ();
  const char *text;
  int r = -1;

  if (o == NULL ||
      add_str (o, "format", CONFIG_FORMAT) ||
      json_object_object_add (o, "version", json_object_new_int (
          cfg->encrypted ? CONFIG_VERSION_ENC : CONFIG_VERSION)) ||
      json_object_object_add (o, "chunk_size", json_object_new_int64 (cfg->chunk_size)) ||
      add_str (o, "id", cfg->encrypted ? CONFIG_ID_ENC : CONFIG_ID) ||
      add_encryption (o, cfg) ||
      add_str (o, "uuid", cfg->uuid) ||
      (text = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN)) == NULL)
    set_error (PB_E_FAIL, ENOMEM, "json-c: cannot build the store config");
  else
    r = objstore_put (os, CONFIG_KEY, text, strlen (text));
  json_object_put (o);
  return r;
}

/* True if BUF[FROM..LEN) is only JSON whitespace. */
static bool
only_space (const char *buf, size_t from, size_t len)
{
  for (; from < len; from++)
    if (!strchr (" \t\r\n", buf[from]))
      return false;
  return true;
}

/* Parse LEN bytes (not NUL-terminated: other backends need not add one)
 * as exactly one JSON object; NULL if they are anything else. */
static json_object *
parse_json (const char *buf, size_t len)
{
  json_tokener *tok = len <= CONFIG_MAX ? json_tokener_new () : NULL;
  json_object *o = tok ? json_tokener_parse_ex (tok, buf, (int) len) : NULL;

  if (o && (!only_space (buf, json_tokener_get_parse_end (tok), len) ||
            !json_object_is_type (o, json_type_object))) {
    json_object_put (o);
    o = NULL;
  }
  json_tokener_free (tok);
  return o;
}

static const char *
get_string (json_object *o, const char *key)
{
  json_object *v;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_string))
    return NULL;
  return json_object_get_string (v);
}

static bool
get_int (json_object *o, const char *key, int64_t *out)
{
  json_object *v;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_int))
    return false;
  *out = json_object_get_int64 (v);
  return true;
}

static bool
hex_ok (const char *s, size_t digits)
{
  return s && strlen (s) == digits && strspn (s, "0123456789abcdef") == digits;
}

/* What it is and which version: refuse early what is not ours. */
static int
check_identity (json_object *o, const char *path, struct store_config *cfg)
{
  const char *format = get_string (o, "format"), *id = get_string (o, "id");
  const char *want_id;
  int64_t version;

  if (format == NULL || strcmp (format, CONFIG_FORMAT) != 0) {
    set_error (PB_E_REPO, 0, "%s is not a pullback store (config has no "
               "\"format\": \"" CONFIG_FORMAT "\")", path);
    return -1;
  }
  if (!get_int (o, "version", &version) ||
      (version != CONFIG_VERSION && version != CONFIG_VERSION_ENC)) {
    set_error (PB_E_REPO, 0, "%s: unsupported store version (this pullback "
               "reads versions %d and %d)", path, CONFIG_VERSION,
               CONFIG_VERSION_ENC);
    return -1;
  }
  cfg->encrypted = version == CONFIG_VERSION_ENC;
  want_id = cfg->encrypted ? CONFIG_ID_ENC : CONFIG_ID;
  if (id == NULL || strcmp (id, want_id) != 0) {
    set_error (PB_E_REPO, 0, "%s: unsupported chunk id \"%s\" (expected \""
               "%s\")", path, id ? id : "", want_id);
    return -1;
  }
  return 0;
}

/* Version 2: cipher, key fingerprint and MAC (checked later, with the
 * key). */
static int
check_encryption (json_object *o, const char *path, struct store_config *cfg)
{
  const char *cipher = get_string (o, "encryption");
  const char *key = get_string (o, "key"), *mac = get_string (o, "mac");

  if (!cfg->encrypted)
    return 0;
  if (cipher == NULL || strcmp (cipher, CONFIG_CIPHER) != 0 ||
      !hex_ok (key, 2 * STORE_FINGERPRINT_LEN) ||
      !hex_ok (mac, 2 * STORE_CONFIG_MAC_LEN)) {
    set_error (PB_E_REPO, 0, "%s: invalid encryption settings in store "
               "config (need \"encryption\": \"" CONFIG_CIPHER "\", a key "
               "fingerprint and a MAC)", path);
    return -1;
  }
  memcpy (cfg->key, key, sizeof cfg->key);
  hex_decode (mac, cfg->mac, sizeof cfg->mac);
  return 0;
}

static int
check_config (json_object *o, const char *path, struct store_config *cfg)
{
  const char *uuid = get_string (o, "uuid");
  int64_t size;

  memset (cfg, 0, sizeof *cfg);
  if (check_identity (o, path, cfg) == -1 ||
      check_encryption (o, path, cfg) == -1)
    return -1;
  if (!get_int (o, "chunk_size", &size) || size < 0 ||
      !store_chunk_size_ok (size)) {
    set_error (PB_E_REPO, 0, "%s: invalid chunk_size in store config (must be "
               "a power of two from 64 KiB to 16 MiB)", path);
    return -1;
  }
  if (!hex_ok (uuid, 2 * STORE_UUID_BYTES)) {
    set_error (PB_E_REPO, 0, "%s: invalid uuid in store config", path);
    return -1;
  }
  cfg->chunk_size = size;
  memcpy (cfg->uuid, uuid, sizeof cfg->uuid);
  return 0;
}

int
store_config_read (struct objstore *os, const char *path,
                   struct store_config *cfg)
{
  CLEANUP_FREE char *buf = NULL;
  size_t len;
  json_object *o;
  int r;

  if (objstore_get (os, CONFIG_KEY, (void **) &buf, &len) == -1) {
    if (pb_get_errno () == ENOENT)
      set_error (PB_E_REPO, 0, "%s is not a pullback store (no config)", path);
    return -1;
  }
  o = parse_json (buf, len);
  if (o == NULL) {
    set_error (PB_E_REPO, 0, "%s: store config is not a valid JSON object",
               path);
    return -1;
  }
  r = check_config (o, path, cfg);
  json_object_put (o);
  return r;
}
