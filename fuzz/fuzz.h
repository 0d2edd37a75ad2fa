/* pullback - fuzz/fuzz.h: what the fuzz targets, their standalone driver
 * and the corpus generator share.
 *
 * Each fuzz/fuzz-NAME.c defines LLVMFuzzerTestOneInput, the libFuzzer
 * entry point: it feeds one input to one decoder of on-disk (or
 * on-the-wire) data and checks what the decoder promises.  Built with
 * --enable-fuzzing, libFuzzer supplies main(); otherwise fuzz/driver.c
 * does (replay of the seed corpus plus deterministic mutations, run by
 * make check).
 *
 * A target calls fuzz_accept() when the decoder accepted its input: the
 * driver checks that every seed named "valid-*" was accepted, so that a
 * test proves the targets reach past the first check.  The fixtures below
 * (object key, object names, the point the record seeds describe) are
 * shared with fuzz/gen-corpus.c, which writes the seeds with the
 * library's own encoders.
 */
#ifndef PB_FUZZ_H
#define PB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "catalog.h"
#include "objstore.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Inputs accepted so far (fuzz_accept() calls). */
extern unsigned long fuzz_accepted;
void fuzz_accept (void);

/* A broken promise of the code under test: report and abort (libFuzzer
 * and the driver both keep the input). */
#define FUZZ_CHECK(cond) do {                                             \
    if (!(cond)) {                                                        \
      fprintf (stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
               #cond);                                                    \
      abort ();                                                           \
    }                                                                     \
  } while (0)

/* Mode byte of the container targets (chunk, record, maptree): the first
 * input byte, the object follows. */
#define FUZZ_MODE_SEALED 0x01   /* decode with the object key set */
#define FUZZ_MODE_RECORD 0x02   /* fuzz-chunk: a record, else a chunk */
#define FUZZ_MODE_FIXSUM 0x80   /* recompute the header checksum first,
                                 * so mutations get past it */

/* The 32-byte object key (AES-256-GCM) of the sealed seeds. */
extern const uint8_t fuzz_object_key[32];

/* The names objects are decoded under (sealed objects are bound to them). */
#define FUZZ_CHUNK_NAME "chunks/3f/3fa1c2000000000000000000000000000000" \
  "000000000000000000000000000000"
#define FUZZ_RECORD_NAME "points/0000000042"

/* The point the record seeds describe, and its repository's uuid. */
#define FUZZ_REPO_UUID "a4bf2c2714233142df3dcd2375ca98a4"
const struct catalog_point *fuzz_point (void);

/* Overwrite the checksum of the container object OBJ (LEN bytes, at least
 * a header) with the right one (docs/FORMAT.md part 1, 4.2). */
void fuzz_fix_checksum (uint8_t *obj, size_t len);

/* A read-only object store holding one object, "config", of LEN bytes
 * (copied).  Free with objstore_close. */
struct objstore *fuzz_memstore (const void *config, size_t len);

#endif /* PB_FUZZ_H */
