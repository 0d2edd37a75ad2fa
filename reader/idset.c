/* pullback - reader/idset.c: a hash set of chunk ids with a 64-bit value.
 *
 * Used by verify to check each distinct chunk once and to remember which
 * points need a damaged one.  Ids are SHA-256 outputs (or HMACs), so their
 * first 8 bytes are already a good hash: open addressing with linear
 * probing, doubled at 50% load.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

struct slot {
  bool used;
  store_id id;
  uint64_t value;
};

struct idset {
  size_t cap, n;                /* cap is a power of two */
  struct slot *slots;
};

struct idset *
idset_new (void)
{
  struct idset *set = calloc (1, sizeof *set);

  if (set == NULL || (set->slots = calloc (1024, sizeof *set->slots)) == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    free (set);
    return NULL;
  }
  set->cap = 1024;
  return set;
}

void
idset_free (struct idset *set)
{
  if (set == NULL)
    return;
  free (set->slots);
  free (set);
}

static size_t
hash_of (const store_id *id)
{
  uint64_t h;

  memcpy (&h, id->b, sizeof h);
  return (size_t) h;
}

static struct slot *
probe (struct slot *slots, size_t cap, const store_id *id)
{
  size_t i = hash_of (id) & (cap - 1);

  while (slots[i].used && memcmp (slots[i].id.b, id->b, STORE_ID_LEN) != 0)
    i = (i + 1) & (cap - 1);
  return &slots[i];
}

static int
grow (struct idset *set)
{
  size_t i, cap = set->cap * 2;
  struct slot *slots = calloc (cap, sizeof *slots);

  if (slots == NULL) {
    set_error (PB_E_FAIL, errno, "calloc");
    return -1;
  }
  for (i = 0; i < set->cap; i++)
    if (set->slots[i].used)
      *probe (slots, cap, &set->slots[i].id) = set->slots[i];
  free (set->slots);
  set->slots = slots;
  set->cap = cap;
  return 0;
}

uint64_t *
idset_insert (struct idset *set, const store_id *id, bool *added)
{
  struct slot *s;

  if (set->n * 2 >= set->cap && grow (set) == -1)
    return NULL;
  s = probe (set->slots, set->cap, id);
  *added = !s->used;
  if (!s->used) {
    s->used = true;
    s->id = *id;
    s->value = 0;
    set->n++;
  }
  return &s->value;
}

uint64_t *
idset_find (struct idset *set, const store_id *id)
{
  struct slot *s = probe (set->slots, set->cap, id);

  return s->used ? &s->value : NULL;
}

int
idset_foreach (struct idset *set,
               int (*cb) (const store_id *id, uint64_t value, void *opaque),
               void *opaque)
{
  size_t i;

  for (i = 0; i < set->cap; i++)
    if (set->slots[i].used &&
        cb (&set->slots[i].id, set->slots[i].value, opaque) == -1)
      return -1;
  return 0;
}
