/* pullback - store/store-config.h: the store's "config" object.
 *
 * The first thing read when a store is opened, and the only object that is
 * plain JSON rather than a container (docs/FORMAT.md part 1, section 3): it
 * says what the store is, which version and id scheme it uses, its chunk
 * size and its uuid.  Kept apart from store.c so that the validation of
 * this one untrusted document is in one place.
 */
#ifndef PB_STORE_CONFIG_H
#define PB_STORE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "objstore.h"
#include "store.h"

#define STORE_UUID_BYTES 16

#define STORE_CONFIG_MAC_LEN 32

struct store_config {
  uint32_t chunk_size;
  char uuid[2 * STORE_UUID_BYTES + 1];   /* lower-case hex */
  /* Encrypted stores (version 2) only: */
  bool encrypted;
  char key[2 * STORE_FINGERPRINT_LEN + 1];   /* the key's fingerprint */
  uint8_t mac[STORE_CONFIG_MAC_LEN];         /* store_config_mac_text */
};

/* The text the MAC of an encrypted store's config is computed over (the
 * caller computes it: the key is store.c's business).  docs/FORMAT.md
 * part 1, section 9.3.  OUT has STORE_CONFIG_MAC_TEXT_MAX bytes. */
#define STORE_CONFIG_MAC_TEXT_MAX 256
void store_config_mac_text (const struct store_config *cfg,
                            char out[STORE_CONFIG_MAC_TEXT_MAX]);

/* A power of two within [STORE_MIN_CHUNK_SIZE, STORE_MAX_CHUNK_SIZE]. */
bool store_chunk_size_ok (uint64_t size);

/* A new config: CHUNK_SIZE (PB_E_USAGE if invalid) and a random uuid;
 * not encrypted (the caller sets encrypted, key and mac). */
int store_config_init (struct store_config *cfg, uint32_t chunk_size);

/* Write CFG as the "config" object of OS (not synced). */
int store_config_write (struct objstore *os, const struct store_config *cfg);

/* Read and check the "config" object of OS; PATH is for messages.  Any
 * problem (missing, not JSON, wrong or unknown values) is PB_E_REPO. */
int store_config_read (struct objstore *os, const char *path,
                       struct store_config *cfg);

#endif /* PB_STORE_CONFIG_H */
