/* pullback - store/chunk.c: encode and decode the object container.
 *
 * Layout (docs/FORMAT.md (part 1) has the authoritative description):
 *
 *   0  4  magic "PBCK"
 *   4  1  version (1)
 *   5  1  type (1 chunk, 2 record)
 *   6  2  flags, u16 LE (bit 0 zstd, bit 1 encrypted)
 *   8  4  plain length, u32 LE
 *  12  4  payload length, u32 LE
 *  16  8  checksum: SHA-256 (header with this field zeroed || payload)[0..8)
 *  24     payload
 *
 * In an encrypted store (chunk_codec_set_key) the payload is an AES-256-GCM
 * box, nonce || ciphertext || tag, over what would otherwise be the
 * payload (zstd frame or plain bytes); its additional data is the first 16
 * header bytes and the object's key, so that neither the header's lengths
 * and flags nor the object's place can be changed unnoticed.  The checksum
 * still covers header and payload, so damage is told apart from a wrong
 * key, and can be found without the key.
 *
 * Decoding trusts nothing: every field is checked against the object's real
 * size and the caller's limits before anything is allocated, copied or
 * handed to zstd, and every failure is PB_E_CORRUPT naming the object.
 *
 * zstd contexts are costly to create (hundreds of KiB each), so they are
 * kept in small mutex-protected pools: a thread takes one, uses it without
 * any lock held, and gives it back.  The pools grow to the number of
 * threads that ever worked at once and are emptied by chunk_codec_free().
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "chunk.h"
#include "crypt.h"
#include "cleanup.h"
#include "errors.h"
#include "util.h"

/* zstd level 1: ~300 MB/s per core on disk data, which keeps compression
 * from being the bottleneck of a backup. */
#define ZSTD_LEVEL 1
/* More contexts than this are freed on release instead of pooled. */
#define POOL_MAX 64

struct pool {
  pthread_mutex_t lock;
  void *items[POOL_MAX];
  unsigned n;
};

struct chunk_codec {
  EVP_MD *sha256;          /* fetched once: implicit fetches cost a lock */
  struct pool cctx, dctx;
  bool encrypt;            /* chunk_codec_set_key was called */
  uint8_t key[CRYPT_KEY_LEN];
};

/* Largest additional data: 16 header bytes and an object key. */
#define AAD_MAX (16 + CHUNK_NAME_MAX)

struct header {
  uint8_t version, type;
  uint16_t flags;
  uint32_t raw_len, payload_len;
};

/* ---- little-endian fields ---- */

static void
put_le16 (uint8_t *p, uint16_t v)
{
  p[0] = v; p[1] = v >> 8;
}

static void
put_le32 (uint8_t *p, uint32_t v)
{
  p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

static uint16_t
get_le16 (const uint8_t *p)
{
  return p[0] | (uint16_t) p[1] << 8;
}

static uint32_t
get_le32 (const uint8_t *p)
{
  return p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
    | (uint32_t) p[3] << 24;
}

/* ---- context pools ---- */

static void *
pool_take (struct pool *p)
{
  void *item = NULL;

  pthread_mutex_lock (&p->lock);
  if (p->n > 0)
    item = p->items[--p->n];
  pthread_mutex_unlock (&p->lock);
  return item;
}

/* Returns ITEM if the pool is full (the caller frees it), else NULL. */
static void *
pool_give (struct pool *p, void *item)
{
  pthread_mutex_lock (&p->lock);
  if (p->n < POOL_MAX) {
    p->items[p->n++] = item;
    item = NULL;
  }
  pthread_mutex_unlock (&p->lock);
  return item;
}

static ZSTD_CCtx *
cctx_take (struct chunk_codec *c)
{
  ZSTD_CCtx *cctx = pool_take (&c->cctx);

  if (cctx)
    return cctx;
  cctx = ZSTD_createCCtx ();
  if (cctx == NULL) {
    set_error (PB_E_FAIL, ENOMEM, "zstd: cannot create a compression context");
    return NULL;
  }
  /* No zstd content checksum: the container checksum covers the payload
   * and store_get_chunk() hashes the plain content anyway. */
  if (ZSTD_isError (ZSTD_CCtx_setParameter (cctx, ZSTD_c_compressionLevel,
                                            ZSTD_LEVEL)) ||
      ZSTD_isError (ZSTD_CCtx_setParameter (cctx, ZSTD_c_checksumFlag, 0)) ||
      ZSTD_isError (ZSTD_CCtx_setParameter (cctx, ZSTD_c_contentSizeFlag, 1))) {
    ZSTD_freeCCtx (cctx);
    set_error (PB_E_FAIL, 0, "zstd: cannot set compression parameters");
    return NULL;
  }
  return cctx;
}

static void
cctx_give (struct chunk_codec *c, ZSTD_CCtx *cctx)
{
  ZSTD_freeCCtx (pool_give (&c->cctx, cctx));
}

static ZSTD_DCtx *
dctx_take (struct chunk_codec *c)
{
  ZSTD_DCtx *dctx = pool_take (&c->dctx);

  if (dctx == NULL)
    dctx = ZSTD_createDCtx ();
  if (dctx == NULL)
    set_error (PB_E_FAIL, ENOMEM, "zstd: cannot create a decompression context");
  return dctx;
}

static void
dctx_give (struct chunk_codec *c, ZSTD_DCtx *dctx)
{
  ZSTD_freeDCtx (pool_give (&c->dctx, dctx));
}

/* ---- codec lifetime ---- */

struct chunk_codec *
chunk_codec_new (void)
{
  struct chunk_codec *c = calloc (1, sizeof *c);

  if (c == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  pthread_mutex_init (&c->cctx.lock, NULL);
  pthread_mutex_init (&c->dctx.lock, NULL);
  c->sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
  if (c->sha256 == NULL)
    goto err;
  return c;

 err:
  set_error (PB_E_FAIL, 0, "OpenSSL: cannot fetch SHA256");
  chunk_codec_free (c);
  return NULL;
}

void
chunk_codec_free (struct chunk_codec *c)
{
  if (c == NULL)
    return;
  while (c->cctx.n > 0)
    ZSTD_freeCCtx (c->cctx.items[--c->cctx.n]);
  while (c->dctx.n > 0)
    ZSTD_freeDCtx (c->dctx.items[--c->dctx.n]);
  pthread_mutex_destroy (&c->cctx.lock);
  pthread_mutex_destroy (&c->dctx.lock);
  EVP_MD_free (c->sha256);
  OPENSSL_cleanse (c->key, sizeof c->key);
  free (c);
}

void
chunk_codec_set_key (struct chunk_codec *c, const uint8_t key[CRYPT_KEY_LEN])
{
  memcpy (c->key, key, CRYPT_KEY_LEN);
  c->encrypt = true;
}

/* Header bytes 0..16 followed by NAME: what a box is bound to. */
static size_t
make_aad (const uint8_t *hdr, const char *name, uint8_t aad[AAD_MAX])
{
  size_t n = strnlen (name, CHUNK_NAME_MAX);

  memcpy (aad, hdr, CHUNK_OFF_CHECKSUM);
  memcpy (aad + CHUNK_OFF_CHECKSUM, name, n);
  return CHUNK_OFF_CHECKSUM + n;
}

/* ---- checksum ---- */

/* First 8 bytes of SHA-256 over HDR (with its checksum field taken as
 * zero) followed by the payload.  Cheap next to zstd, and unlike a CRC it
 * also catches a payload swapped together with a re-made header. */
static int
checksum (struct chunk_codec *c, const uint8_t *hdr,
          const void *payload, size_t plen, uint8_t out[CHUNK_CHECKSUM_LEN])
{
  uint8_t h[CHUNK_HEADER_SIZE], md[EVP_MAX_MD_SIZE];
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  int ok;

  memcpy (h, hdr, sizeof h);
  memset (h + CHUNK_OFF_CHECKSUM, 0, CHUNK_CHECKSUM_LEN);
  ok = ctx != NULL &&
    EVP_DigestInit_ex (ctx, c->sha256, NULL) &&
    EVP_DigestUpdate (ctx, h, sizeof h) &&
    EVP_DigestUpdate (ctx, payload, plen) &&
    EVP_DigestFinal_ex (ctx, md, NULL);
  EVP_MD_CTX_free (ctx);
  if (!ok) {
    set_error (PB_E_FAIL, ENOMEM, "OpenSSL: SHA-256 failed");
    return -1;
  }
  memcpy (out, md, CHUNK_CHECKSUM_LEN);
  return 0;
}

/* ---- encoding ---- */

/* Compress into DST if that saves more than 1/32 of LEN (below that, the
 * decompression time on every restore is not worth the space).  1 if
 * compressed (*PLEN set), 0 if not worth it, -1 on error. */
static int
try_compress (struct chunk_codec *c, const void *plain, size_t len,
              uint8_t *dst, size_t *plen)
{
  size_t limit = len - len / 32;   /* the payload must be smaller */
  ZSTD_CCtx *cctx;
  size_t r;

  if (len < 64)
    return 0;
  cctx = cctx_take (c);
  if (cctx == NULL)
    return -1;
  r = ZSTD_compress2 (cctx, dst, limit - 1, plain, len);
  cctx_give (c, cctx);
  if (ZSTD_isError (r)) {
    if (ZSTD_getErrorCode (r) == ZSTD_error_dstSize_tooSmall)
      return 0;
    set_error (PB_E_FAIL, 0, "zstd: compress: %s", ZSTD_getErrorName (r));
    return -1;
  }
  *plen = r;
  return 1;
}

static void
write_header (uint8_t *o, enum chunk_type type, uint16_t flags,
              uint32_t raw_len, uint32_t payload_len)
{
  memcpy (o + CHUNK_OFF_MAGIC, CHUNK_MAGIC, 4);
  o[CHUNK_OFF_VERSION] = CHUNK_VERSION;
  o[CHUNK_OFF_TYPE] = type;
  put_le16 (o + CHUNK_OFF_FLAGS, flags);
  put_le32 (o + CHUNK_OFF_RAW_LEN, raw_len);
  put_le32 (o + CHUNK_OFF_PAYLOAD_LEN, payload_len);
  memset (o + CHUNK_OFF_CHECKSUM, 0, CHUNK_CHECKSUM_LEN);
}

/* The payload before encryption: zstd frame in BUF (*PLEN) when worth it
 * (returns 1), else the plain bytes (0), -1 on error. */
static int
inner_payload (struct chunk_codec *c, bool compress, const void *plain,
               size_t len, uint8_t *buf, size_t *plen)
{
  int r = compress ? try_compress (c, plain, len, buf, plen) : 0;

  if (r == 0)
    *plen = len;
  return r;
}

/* Seal INNER (*PLEN bytes) into O's payload, header already written. */
static int
seal_payload (struct chunk_codec *c, uint8_t *o, const char *name,
              const void *inner, size_t plen)
{
  uint8_t aad[AAD_MAX];
  size_t aadlen = make_aad (o, name, aad);

  return crypt_seal (c->key, aad, aadlen, inner, plen, o + CHUNK_HEADER_SIZE);
}

int
chunk_encode (struct chunk_codec *c, enum chunk_type type, bool compress,
              const char *name, const void *plain, size_t len,
              void **obj, size_t *objlen)
{
  size_t extra = c->encrypt ? CRYPT_OVERHEAD : 0, plen;
  /* Encrypted, the compressed payload goes where the ciphertext will be
   * (after the nonce) and is sealed in place: no second buffer. */
  size_t at = CHUNK_HEADER_SIZE + (c->encrypt ? CRYPT_NONCE_LEN : 0);
  uint16_t flags = c->encrypt ? CHUNK_F_ENCRYPTED : 0;
  uint8_t *o;
  int r;

  if (len > UINT32_MAX - extra) {
    set_error (PB_E_USAGE, 0, "object of %zu bytes is too large", len);
    return -1;
  }
  /* The payload never exceeds LEN (+ the box): compressed output is kept
   * only when smaller. */
  o = malloc (CHUNK_HEADER_SIZE + len + extra);
  if (o == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    return -1;
  }
  r = inner_payload (c, compress, plain, len, o + at, &plen);
  if (r == -1)
    goto err;
  flags |= r == 1 ? CHUNK_F_ZSTD : 0;
  write_header (o, type, flags, len, plen + extra);
  if (c->encrypt) {
    if (seal_payload (c, o, name, r == 1 ? o + at : plain, plen) == -1)
      goto err;
  }
  else if (r == 0 && len > 0)
    memcpy (o + CHUNK_HEADER_SIZE, plain, len);
  if (checksum (c, o, o + CHUNK_HEADER_SIZE, plen + extra,
                o + CHUNK_OFF_CHECKSUM) == -1)
    goto err;
  *obj = o;
  *objlen = CHUNK_HEADER_SIZE + plen + extra;
  return 0;

 err:
  free (o);
  return -1;
}

/* ---- decoding ---- */

static const char *
type_name (unsigned type)
{
  switch (type) {
  case CHUNK_TYPE_CHUNK: return "chunk";
  case CHUNK_TYPE_RECORD: return "record";
  default: return "unknown type";
  }
}

/* Magic, version, type and flags. */
static int
check_ident (const struct chunk_codec *c, const uint8_t *o,
             enum chunk_type type, struct header *h, const char *what)
{
  if (memcmp (o + CHUNK_OFF_MAGIC, CHUNK_MAGIC, 4) != 0) {
    set_error (PB_E_CORRUPT, 0, "%s: bad magic (not a pullback object)", what);
    return -1;
  }
  h->version = o[CHUNK_OFF_VERSION];
  h->type = o[CHUNK_OFF_TYPE];
  h->flags = get_le16 (o + CHUNK_OFF_FLAGS);
  if (h->version != CHUNK_VERSION) {
    set_error (PB_E_CORRUPT, 0, "%s: unsupported container version %u",
               what, h->version);
    return -1;
  }
  if (h->type != type) {
    set_error (PB_E_CORRUPT, 0, "%s: object is a %s (type %u), expected a %s",
               what, type_name (h->type), h->type, type_name (type));
    return -1;
  }
  if (h->flags & ~CHUNK_F_KNOWN) {
    set_error (PB_E_CORRUPT, 0, "%s: unknown flags 0x%04x", what, h->flags);
    return -1;
  }
  /* An encrypted store holds only sealed objects: a plain one there was
   * planted or is left from another store, and the other way round. */
  if (!(h->flags & CHUNK_F_ENCRYPTED) != !c->encrypt) {
    set_error (PB_E_CORRUPT, 0, c->encrypt
               ? "%s: not encrypted, in an encrypted store"
               : "%s: encrypted, in a store that is not", what);
    return -1;
  }
  return 0;
}

/* Plain and payload lengths against the limit and the object's size. */
static int
check_lengths (const uint8_t *o, size_t objlen, uint32_t raw_max,
               struct header *h, const char *what)
{
  size_t have = objlen - CHUNK_HEADER_SIZE;   /* objlen >= header size */
  uint32_t box = h->flags & CHUNK_F_ENCRYPTED ? CRYPT_OVERHEAD : 0;

  h->raw_len = get_le32 (o + CHUNK_OFF_RAW_LEN);
  h->payload_len = get_le32 (o + CHUNK_OFF_PAYLOAD_LEN);
  if (h->raw_len > raw_max) {
    set_error (PB_E_CORRUPT, 0, "%s: plain length %" PRIu32
               " exceeds the limit of %" PRIu32, what, h->raw_len, raw_max);
    return -1;
  }
  if (have < h->payload_len) {
    set_error (PB_E_CORRUPT, 0, "%s: truncated (payload has %zu of %" PRIu32
               " bytes)", what, have, h->payload_len);
    return -1;
  }
  if (have > h->payload_len) {
    set_error (PB_E_CORRUPT, 0, "%s: trailing garbage (%zu bytes after the "
               "payload)", what, have - h->payload_len);
    return -1;
  }
  if (h->payload_len < box) {
    set_error (PB_E_CORRUPT, 0, "%s: encrypted payload of %" PRIu32 " bytes "
               "is shorter than nonce and tag", what, h->payload_len);
    return -1;
  }
  if (!(h->flags & CHUNK_F_ZSTD) && h->payload_len - box != h->raw_len) {
    set_error (PB_E_CORRUPT, 0, "%s: uncompressed payload of %" PRIu32
               " bytes but plain length %" PRIu32, what, h->payload_len - box,
               h->raw_len);
    return -1;
  }
  return 0;
}

/* Everything but the payload's content: header fields, sizes, checksum. */
static int
parse_sum (struct chunk_codec *c, enum chunk_type type, const void *obj,
           size_t objlen, uint32_t raw_max, struct header *h,
           const char *what, bool sum_too)
{
  const uint8_t *o = obj;
  uint8_t sum[CHUNK_CHECKSUM_LEN];

  if (objlen < CHUNK_HEADER_SIZE) {
    set_error (PB_E_CORRUPT, 0, "%s: truncated (%zu bytes, shorter than the "
               "%d-byte header)", what, objlen, CHUNK_HEADER_SIZE);
    return -1;
  }
  if (check_ident (c, o, type, h, what) == -1 ||
      check_lengths (o, objlen, raw_max, h, what) == -1)
    return -1;
  if (!sum_too)
    return 0;
  if (checksum (c, o, o + CHUNK_HEADER_SIZE, h->payload_len, sum) == -1)
    return -1;
  if (memcmp (sum, o + CHUNK_OFF_CHECKSUM, sizeof sum) != 0) {
    set_error (PB_E_CORRUPT, 0, "%s: checksum mismatch", what);
    return -1;
  }
  return 0;
}

static int
parse (struct chunk_codec *c, enum chunk_type type, const void *obj,
       size_t objlen, uint32_t raw_max, struct header *h, const char *what)
{
  return parse_sum (c, type, obj, objlen, raw_max, h, what, true);
}

/* The payload must be exactly one zstd frame announcing RAW_LEN bytes
 * (when it announces a size at all). */
static int
check_frame (const void *src, size_t plen, uint32_t raw_len, const char *what)
{
  unsigned long long fcs = ZSTD_getFrameContentSize (src, plen);
  size_t flen = ZSTD_findFrameCompressedSize (src, plen);

  if (fcs == ZSTD_CONTENTSIZE_ERROR || ZSTD_isError (flen)) {
    set_error (PB_E_CORRUPT, 0, "%s: zstd: payload is not a valid zstd frame",
               what);
    return -1;
  }
  if (flen != plen) {
    set_error (PB_E_CORRUPT, 0, "%s: zstd: %zu bytes after the frame",
               what, plen - flen);
    return -1;
  }
  if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != raw_len) {
    set_error (PB_E_CORRUPT, 0, "%s: zstd frame holds %llu bytes, header "
               "says %" PRIu32, what, fcs, raw_len);
    return -1;
  }
  return 0;
}

static int
decompress (struct chunk_codec *c, const void *src, size_t plen,
            void *out, uint32_t raw_len, const char *what)
{
  ZSTD_DCtx *dctx;
  size_t r;

  if (check_frame (src, plen, raw_len, what) == -1)
    return -1;
  dctx = dctx_take (c);
  if (dctx == NULL)
    return -1;
  r = ZSTD_decompressDCtx (dctx, out, raw_len, src, plen);
  dctx_give (c, dctx);
  if (ZSTD_isError (r)) {
    set_error (PB_E_CORRUPT, 0, "%s: zstd: %s", what, ZSTD_getErrorName (r));
    return -1;
  }
  if (r != raw_len) {
    set_error (PB_E_CORRUPT, 0, "%s: decompressed to %zu bytes, header says %"
               PRIu32, what, r, raw_len);
    return -1;
  }
  return 0;
}

/* Open the box of a parsed encrypted object into OUT (payload_len -
 * CRYPT_OVERHEAD bytes). */
static int
open_payload (struct chunk_codec *c, const struct header *h, const void *obj,
              const char *name, void *out, const char *what)
{
  uint8_t aad[AAD_MAX];
  size_t aadlen = make_aad (obj, name, aad);
  int failed;

  if (crypt_open (c->key, aad, aadlen, (const uint8_t *) obj + CHUNK_HEADER_SIZE,
                  h->payload_len, out, &failed) == 0)
    return 0;
  if (!failed)
    set_error (PB_E_CORRUPT, 0, "%s: authentication failed (the object was "
               "altered, moved from another place, or sealed with another "
               "key)", what);
  return -1;
}

/* Decrypt, then decompress or copy: for encrypted objects. */
static int
unpack_sealed (struct chunk_codec *c, const struct header *h, const void *obj,
               const char *name, void *out, const char *what)
{
  size_t inner = h->payload_len - CRYPT_OVERHEAD;
  CLEANUP_FREE uint8_t *tmp = NULL;

  if (!(h->flags & CHUNK_F_ZSTD))
    return open_payload (c, h, obj, name, out, what);
  tmp = malloc (inner > 0 ? inner : 1);
  if (tmp == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    return -1;
  }
  if (open_payload (c, h, obj, name, tmp, what) == -1)
    return -1;
  return decompress (c, tmp, inner, out, h->raw_len, what);
}

/* Payload of a parsed object to OUT, which has room for h->raw_len. */
static int
unpack (struct chunk_codec *c, const struct header *h, const void *obj,
        const char *name, void *out, const char *what)
{
  const uint8_t *payload = (const uint8_t *) obj + CHUNK_HEADER_SIZE;

  if (h->flags & CHUNK_F_ENCRYPTED)
    return unpack_sealed (c, h, obj, name, out, what);
  if (h->flags & CHUNK_F_ZSTD)
    return decompress (c, payload, h->payload_len, out, h->raw_len, what);
  if (h->raw_len > 0)
    memcpy (out, payload, h->raw_len);
  return 0;
}

static int
decode (struct chunk_codec *c, enum chunk_type type, const char *name,
        const void *obj, size_t objlen, uint32_t raw_max,
        void *out, size_t cap, size_t *len, const char *what, bool sum_too)
{
  struct header h;

  if (parse_sum (c, type, obj, objlen, raw_max, &h, what, sum_too) == -1)
    return -1;
  /* The checksum was fine, so this is a well-formed object of another
   * size than the caller expects (e.g. a map node read as a chunk). */
  if (h.raw_len > cap) {
    set_error (PB_E_CORRUPT, 0, "%s: holds %" PRIu32 " bytes, more than the "
               "%zu expected", what, h.raw_len, cap);
    return -1;
  }
  if (unpack (c, &h, obj, name, out, what) == -1)
    return -1;
  *len = h.raw_len;
  return 0;
}

int
chunk_decode (struct chunk_codec *c, enum chunk_type type, const char *name,
              const void *obj, size_t objlen, uint32_t raw_max,
              void *out, size_t cap, size_t *len, const char *what)
{
  return decode (c, type, name, obj, objlen, raw_max, out, cap, len, what,
                 true);
}

int
chunk_decode_unsummed (struct chunk_codec *c, enum chunk_type type,
                       const char *name, const void *obj, size_t objlen,
                       uint32_t raw_max, void *out, size_t cap, size_t *len,
                       const char *what)
{
  return decode (c, type, name, obj, objlen, raw_max, out, cap, len, what,
                 false);
}

int
chunk_decode_alloc (struct chunk_codec *c, enum chunk_type type,
                    const char *name, const void *obj, size_t objlen,
                    uint32_t raw_max, void **out, size_t *len,
                    const char *what)
{
  struct header h;
  char *p;

  if (parse (c, type, obj, objlen, raw_max, &h, what) == -1)
    return -1;
  /* raw_len <= raw_max <= UINT32_MAX, so + 1 cannot overflow size_t. */
  p = malloc ((size_t) h.raw_len + 1);
  if (p == NULL) {
    set_error (PB_E_FAIL, errno, "malloc");
    return -1;
  }
  if (unpack (c, &h, obj, name, p, what) == -1) {
    free (p);
    return -1;
  }
  p[h.raw_len] = '\0';
  *out = p;
  *len = h.raw_len;
  return 0;
}
