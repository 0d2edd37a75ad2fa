/* pullback - store/chunk.h: the container every stored object is wrapped in.
 *
 * Chunks, chunk-map nodes and records all share one byte layout (described
 * exactly in docs/FORMAT.md (part 1)): a fixed 24-byte little-endian header
 * followed by the payload, which is either the plain bytes or one zstd
 * frame, sealed with AES-256-GCM in an encrypted store.  The header carries a checksum over header and payload, so that a
 * flipped bit or a truncated object is caught before zstd ever sees it.
 *
 * This file knows nothing about ids, keys or backends: store.c decides what
 * to wrap and where it goes; chunk.c only encodes and (distrustfully)
 * decodes.  A struct chunk_codec holds what is expensive to set up (the
 * fetched SHA-256 implementation, pools of zstd contexts) and is safe to use
 * from several threads at once.
 */
#ifndef PB_CHUNK_H
#define PB_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNK_MAGIC "PBCK"
#define CHUNK_VERSION 1
#define CHUNK_HEADER_SIZE 24
#define CHUNK_CHECKSUM_LEN 8

/* Byte offsets of the header fields. */
#define CHUNK_OFF_MAGIC 0      /* 4 bytes "PBCK" */
#define CHUNK_OFF_VERSION 4    /* u8 */
#define CHUNK_OFF_TYPE 5       /* u8, enum chunk_type */
#define CHUNK_OFF_FLAGS 6      /* u16 LE */
#define CHUNK_OFF_RAW_LEN 8    /* u32 LE: plain length */
#define CHUNK_OFF_PAYLOAD_LEN 12 /* u32 LE: bytes after the header */
#define CHUNK_OFF_CHECKSUM 16  /* 8 bytes */

enum chunk_type {
  CHUNK_TYPE_CHUNK = 1,     /* data chunk or chunk-map node */
  CHUNK_TYPE_RECORD = 2     /* named record ("points/00000042") */
};

#define CHUNK_F_ZSTD 0x0001u       /* payload is one zstd frame */
#define CHUNK_F_ENCRYPTED 0x0002u  /* payload is an AES-256-GCM box */
#define CHUNK_F_KNOWN (CHUNK_F_ZSTD | CHUNK_F_ENCRYPTED)

/* Longest object key (the backend's limit), bound into encrypted boxes. */
#define CHUNK_NAME_MAX 512

/* Largest plain length a record may have (chunks are bounded by
 * STORE_MAX_CHUNK_SIZE). */
#define CHUNK_MAX_RECORD (64u * 1024 * 1024)

struct chunk_codec;

/* NULL with an error recorded on failure.  Free accepts NULL. */
struct chunk_codec *chunk_codec_new (void);
void chunk_codec_free (struct chunk_codec *c);

/* From now on, seal every object encoded with KEY (AES-256-GCM) and accept
 * only sealed objects, opened with KEY.  Called once, before the codec is
 * shared between threads. */
void chunk_codec_set_key (struct chunk_codec *c, const uint8_t key[32]);

/* Wrap LEN plain bytes (LEN <= UINT32_MAX - 28) of type TYPE into a new
 * malloc'd object *OBJ of *OBJLEN bytes.  With COMPRESS, the payload is
 * zstd level 1 if that saves more than 1/32 of LEN, else the plain bytes.
 * NAME is the object's key ("chunks/3f/3fa1...", "points/0000000042"):
 * an encrypted object is bound to it, and decodes only under that name. */
int chunk_encode (struct chunk_codec *c, enum chunk_type type, bool compress,
                  const char *name, const void *plain, size_t len,
                  void **obj, size_t *objlen);

/* Check an object read from the backend and decode its content into OUT
 * (capacity CAP); *LEN = plain length.  RAW_MAX bounds the plain length.
 * WHAT names the object in error messages ("chunk 3fa1...").  Any damage
 * is PB_E_CORRUPT. */
int chunk_decode (struct chunk_codec *c, enum chunk_type type,
                  const char *name, const void *obj, size_t objlen,
                  uint32_t raw_max, void *out, size_t cap, size_t *len,
                  const char *what);

/* The same without computing the checksum (every other check is made):
 * only for objects whose content the caller proves by other means, as
 * chunks are by their id.  (A damaged payload may then decompress to
 * garbage, which that proof refuses; zstd is safe on any input.) */
int chunk_decode_unsummed (struct chunk_codec *c, enum chunk_type type,
                           const char *name, const void *obj, size_t objlen,
                           uint32_t raw_max, void *out, size_t cap,
                           size_t *len, const char *what);

/* The same into a malloc'd buffer of plain length + 1, NUL-terminated. */
int chunk_decode_alloc (struct chunk_codec *c, enum chunk_type type,
                        const char *name, const void *obj, size_t objlen,
                        uint32_t raw_max, void **out, size_t *len,
                        const char *what);

#endif /* PB_CHUNK_H */
