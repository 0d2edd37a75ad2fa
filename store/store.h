/* pullback - store/store.h: the chunk store (public header of store/).
 *
 * A store is a set of immutable, content-addressed objects reached through a
 * small object interface (struct objstore: put a whole object atomically,
 * get, stat, delete, list by prefix, sync).  The first backend is a local
 * directory; a RADOS backend will follow, so nothing in this module above
 * objstore_*() may rely on POSIX file semantics.
 *
 * On top of it:
 *  - chunks: fixed-size pieces of a disk (and the chunk-map nodes of
 *    reader/maptree.c, which are stored the same way).  A chunk's id is
 *    store_id_of() of its plain content: SHA-256, or HMAC-SHA256 under a
 *    key derived from the master key in an encrypted store, which is why
 *    every caller goes through store_id_of().  Each chunk object = header
 *    + zstd (or raw) payload, sealed with AES-256-GCM in an encrypted
 *    store; see docs/FORMAT.md.
 *  - records: small named objects ("points/42"), wrapped in the same
 *    container with a checksum, never compressed.
 *
 * Every function is safe to call from several threads at once on one
 * struct store.  Errors: -1 or NULL with set_error() (common/errors.h).
 */
#ifndef PB_STORE_H
#define PB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ID_LEN 32
#define STORE_MIN_CHUNK_SIZE (64u * 1024)
#define STORE_MAX_CHUNK_SIZE (16u * 1024 * 1024)
#define STORE_DEFAULT_CHUNK_SIZE (256u * 1024)

typedef struct { uint8_t b[STORE_ID_LEN]; } store_id;

/* ---- Keys of encrypted stores (store/key.c, store/crypt.c) ----
 * A repository's master key is 256 random bits.  It lives only in a key
 * file (docs/FORMAT.md part 5), either wrapped with a passphrase through
 * scrypt + AES-256-GCM, or unwrapped (for unattended jobs; the file must
 * then be readable by its owner only).  Everything the store encrypts or
 * authenticates uses subkeys derived from it with HKDF.  The fingerprint,
 * also derived from it, names the key without revealing it: the store
 * config records it, so that a wrong key is refused before anything is
 * read or written. */
#define STORE_KEY_LEN 32
#define STORE_FINGERPRINT_LEN 16        /* bytes; 32 hex digits */
#define STORE_KDF_DEFAULT_LOG2N 16      /* scrypt N = 2^16, r = 8: 64 MiB */
#define STORE_KDF_MIN_LOG2N 14
#define STORE_KDF_MAX_LOG2N 20      /* 2^20 x 8 x 128 = 1 GiB */

struct store_key;

/* A new random key.  Free with store_key_free, which wipes it. */
struct store_key *store_key_generate (void);
void store_key_free (struct store_key *k);     /* accepts NULL */
/* 32 lower-case hex digits. */
const char *store_key_fingerprint (const struct store_key *k);

/* What a key file says about itself, without unwrapping it. */
struct store_key_file_info {
  bool wrapped;               /* protected by a passphrase */
  unsigned log2n, r, p;       /* scrypt parameters when wrapped */
  char fingerprint[2 * STORE_FINGERPRINT_LEN + 1];
};

/* Read and check key file PATH (format, fields, mode).  PB_E_KEY for a
 * file that is not a valid key file, PB_E_IO if it cannot be read. */
int store_key_file_info (const char *path, struct store_key_file_info *info);

/* Write K to key file PATH (mode 0600, temp file + fsync + rename + fsync
 * of the directory).  PASSPHRASE NULL: unwrapped; else wrapped with scrypt
 * N = 2^LOG2N (0 = default).  REPLACE false: PATH must not exist
 * (PB_E_USAGE if it does). */
int store_key_save (const struct store_key *k, const char *path,
                    const char *passphrase, unsigned log2n, bool replace);

/* Load key file PATH.  PASSPHRASE is needed (non-NULL) for a wrapped file
 * and ignored for an unwrapped one.  PB_E_KEY: wrong passphrase, missing
 * passphrase, damaged file, unwrapped file readable by others. */
struct store_key *store_key_load (const char *path, const char *passphrase);

/* A paper copy: the master key as lines a person can print and type back,
 * each with check digits, and the fingerprint.  *TEXT is malloc'd. */
int store_key_paper (const struct store_key *k, char **text);
/* Parse a paper copy (spaces and case do not matter).  PB_E_KEY naming
 * the first wrong line on a typing mistake. */
struct store_key *store_key_from_paper (const char *text);

/* ---- Object interface (store/objstore.h has the backend vtable) ---- */
struct objstore;

/* ---- Chunk store ---- */
struct store;

/* Create a new store at PATH (a directory that must not exist or must be
 * empty) with the given chunk size (a power of two within the limits
 * above; else PB_E_USAGE).  Writes the "config" object.  PB_E_REPO if a
 * store already exists there.  KEY non-NULL: an encrypted store (keyed
 * ids, every object sealed with AES-256-GCM); the store keeps no
 * reference to KEY. */
struct store *store_create (const char *path, uint32_t chunk_size,
                            const struct store_key *key);

/* Open an existing store; PB_E_REPO if PATH has no valid store config.
 * An encrypted store needs its KEY: PB_E_KEY if KEY is NULL, is another
 * key, or if KEY is given for a store that is not encrypted. */
struct store *store_open (const char *path, const struct store_key *key);

/* True for an encrypted store. */
bool store_encrypted (const struct store *s);

/* Accepts NULL and half-built stores. */
void store_close (struct store *s);

uint32_t store_chunk_size (const struct store *s);

/* The repository's random 128-bit uuid, as 32 lower-case hex digits. */
const char *store_uuid (const struct store *s);

/* The id of LEN bytes at BUF.  The only way ids are computed.  S may be
 * NULL: plain SHA-256, the id of unencrypted repositories (used by
 * `pullback digest` without --repo). */
void store_id_of (const struct store *s, const void *buf, size_t len,
                  store_id *out);

/* The id of LEN zero bytes (cached for the chunk size; LEN <= chunk size). */
void store_zero_id (struct store *s, size_t len, store_id *out);

/* Store a chunk whose id the caller computed with store_id_of().  LEN is at
 * most the chunk size, or at most STORE_MAX_CHUNK_SIZE for map nodes.
 * Compresses with zstd unless that does not save space.
 * Returns 1 if the chunk was written, 0 if it was already present (nothing
 * written), -1 on error.  *STORED (may be NULL) = bytes written to the
 * backend (header + payload), 0 when already present.
 * The object is durable once store_sync() has returned. */
int store_put_chunk (struct store *s, const store_id *id,
                     const void *buf, size_t len, uint64_t *stored);

/* Read chunk ID into BUF (capacity CAP), checking the header, the
 * checksum, decompressing, and checking that store_id_of(content) == ID.
 * *LEN = the chunk's length.  Missing: PB_E_CORRUPT with errno ENOENT and a
 * message naming the chunk; damaged or wrong content: PB_E_CORRUPT. */
int store_get_chunk (struct store *s, const store_id *id,
                     void *buf, size_t cap, size_t *len);

/* The same for restore: a chunk whose content hashes to ID is taken
 * without computing its checksum too (the id is the stronger proof; a
 * damaged checksum field alone then goes unnoticed, which verify
 * reports).  Failures are exactly store_get_chunk's. */
int store_load_chunk (struct store *s, const store_id *id,
                      void *buf, size_t cap, size_t *len);

/* The same, allocating the buffer (free() it). */
int store_get_chunk_alloc (struct store *s, const store_id *id,
                           void **buf, size_t *len);

/* 1 if chunk ID is present (not checked), 0 if not, -1 on error. */
int store_has_chunk (struct store *s, const store_id *id);

/* The same, with the object's size in the store (header + payload) in
 * *SIZE (may be NULL) when present. */
int store_stat_chunk (struct store *s, const store_id *id, uint64_t *size);

/* Delete chunk ID.  0 (also if it was absent) or -1. */
int store_delete_chunk (struct store *s, const store_id *id);

/* Move damaged chunk ID aside to "quarantine/<hex>" (kept, never read),
 * so that the next backup meeting its content writes a good copy again.
 * 0 or -1.  quarantined: 1 if such a copy exists, 0 if not, -1 on error. */
int store_quarantine_chunk (struct store *s, const store_id *id);
int store_chunk_quarantined (struct store *s, const store_id *id);

/* Remove the temporary files interrupted writers left, if last modified
 * before BEFORE (seconds since the epoch: the caller knows no writer that
 * old can still be running).  *REMOVED = how many. */
int store_sweep_temp (struct store *s, int64_t before, uint64_t *removed);

/* Call CB for every chunk id in the store (order unspecified).  CB returns
 * 0 to go on, -1 to stop with an error (returned). */
int store_list_chunks (struct store *s,
                       int (*cb) (const store_id *id, void *opaque),
                       void *opaque);

/* Records: small named objects.  NAME is "DIR/NAME" of [a-z0-9._-] parts
 * (e.g. "points/00000042").  put replaces atomically; get returns a
 * malloc'd, NUL-terminated buffer (free() it) and checks the checksum
 * (PB_E_CORRUPT if damaged, PB_E_NOTFOUND with ENOENT if absent). */
int store_put_record (struct store *s, const char *name,
                      const void *buf, size_t len);
int store_get_record (struct store *s, const char *name,
                      void **buf, size_t *len);
int store_delete_record (struct store *s, const char *name);
/* CB gets each record name under PREFIX ("points/"). */
int store_list_records (struct store *s, const char *prefix,
                        int (*cb) (const char *name, void *opaque),
                        void *opaque);

/* Make every object put so far durable (a barrier before the catalog
 * commits a point that references them). */
int store_sync (struct store *s);

/* Hex form of an id (65 bytes incl. NUL). */
void store_id_hex (const store_id *id, char out[2 * STORE_ID_LEN + 1]);
/* Parse 64 hex digits; 0 or -1 (PB_E_USAGE). */
int store_id_parse (const char *hex, store_id *out);

#endif /* PB_STORE_H */
