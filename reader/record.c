/* pullback - reader/record.c: checking the catalog against point records.
 *
 * Every point has a record in the store (docs/FORMAT.md part 3) written
 * with the same facts the catalog holds.  In an encrypted repository the
 * record is sealed and bound to its name, so it is the authenticated
 * copy: whoever can change the SQLite file could otherwise point a disk
 * at another disk's map tree (every node and chunk of which is still
 * genuine) and have restore write the wrong disk without a complaint.
 * Restore therefore checks the disk it writes against the record in
 * encrypted repositories, and verify checks every point's record in all
 * repositories.  A mismatch is damage (PB_E_CORRUPT) naming the field.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "util.h"

static bool
str_is (json_object *o, const char *key, const char *want)
{
  json_object *v;

  return json_object_object_get_ex (o, key, &v) &&
    json_object_is_type (v, json_type_string) &&
    strcmp (json_object_get_string (v), want) == 0;
}

static bool
int_is (json_object *o, const char *key, int64_t want)
{
  json_object *v;

  return json_object_object_get_ex (o, key, &v) &&
    json_object_is_type (v, json_type_int) &&
    json_object_get_int64 (v) == want;
}

static bool
hex_is (json_object *o, const char *key, const uint8_t *want)
{
  char hex[2 * CATALOG_ID_LEN + 1];

  hex_encode (want, CATALOG_ID_LEN, hex);
  return str_is (o, key, hex);
}

/* The first field of disk D that differs from the record's disk RD. */
static const char *
disk_mismatch (json_object *rd, const struct catalog_disk *d)
{
  if (!int_is (rd, "size", (int64_t) d->size))
    return "': size differs";
  if (!int_is (rd, "chunk_size", d->chunk_size))
    return "': chunk_size differs";
  if (!int_is (rd, "map_levels", d->map_levels))
    return "': map_levels differs";
  if (!hex_is (rd, "map_root", d->map_root))
    return "': map_root differs";
  if (!hex_is (rd, "digest", d->digest))
    return "': digest differs";
  return NULL;
}

/* The record's disk called NAME, or NULL. */
static json_object *
record_disk (json_object *rec, const char *name)
{
  json_object *disks;
  size_t i, n;

  if (!json_object_object_get_ex (rec, "disks", &disks) ||
      !json_object_is_type (disks, json_type_array))
    return NULL;
  n = json_object_array_length (disks);
  for (i = 0; i < n; i++) {
    json_object *d = json_object_array_get_idx (disks, i);
    if (str_is (d, "name", name))
      return d;
  }
  return NULL;
}

#define MISMATCH "point %" PRId64 ": the catalog does not match the point " \
  "record (%s%s%s): the catalog was altered or damaged"

static int
mismatch (const struct catalog_point *p, const char *disk, const char *field)
{
  if (disk)
    set_error (PB_E_CORRUPT, 0, MISMATCH, p->id, "disk '", disk, field);
  else
    set_error (PB_E_CORRUPT, 0, MISMATCH, p->id, "", "", field);
  return -1;
}

/* Identity of the point, then each disk (or only ONLY). */
int
point_record_compare (json_object *rec, const char *uuid,
                      const struct catalog_point *p,
                      const struct catalog_disk *only)
{
  size_t i;

  if (!str_is (rec, "format", "pullback-point") ||
      !str_is (rec, "repository", uuid))
    return mismatch (p, NULL, "format or repository differs");
  if (!int_is (rec, "id", p->id))
    return mismatch (p, NULL, "id differs");
  if (!str_is (rec, "vm", p->vm))
    return mismatch (p, NULL, "vm differs");
  for (i = 0; i < p->ndisks; i++) {
    const struct catalog_disk *d = &p->disks[i];
    json_object *rd;
    const char *f;

    if (only && only != d)
      continue;
    rd = record_disk (rec, d->name);
    if (rd == NULL)
      return mismatch (p, d->name, "' is not in the record");
    if ((f = disk_mismatch (rd, d)) != NULL)
      return mismatch (p, d->name, f);
  }
  return 0;
}

/* Read and parse point P's record. */
static json_object *
load_record (struct pullback_repo *r, const struct catalog_point *p)
{
  char name[64];
  CLEANUP_FREE char *buf = NULL;
  size_t len;

  snprintf (name, sizeof name, "points/%010" PRId64, p->id);
  if (store_get_record (r->store, name, (void **) &buf, &len) == -1) {
    if (pb_get_errclass () == PB_E_NOTFOUND)
      set_error (PB_E_CORRUPT, ENOENT, "point %" PRId64 ": point record %s "
                 "is missing", p->id, name);
    return NULL;
  }
  return point_record_parse (buf, p, name);
}

json_object *
point_record_parse (const char *text, const struct catalog_point *p,
                    const char *name)
{
  json_object *o = json_tokener_parse (text);

  if (o == NULL || !json_object_is_type (o, json_type_object)) {
    json_object_put (o);
    set_error (PB_E_CORRUPT, 0, "point %" PRId64 ": point record %s is not "
               "a JSON object", p->id, name);
    return NULL;
  }
  return o;
}

int
point_record_check (struct pullback_repo *r, const struct catalog_point *p,
                    const struct catalog_disk *only)
{
  json_object *rec = load_record (r, p);
  int ret;

  if (rec == NULL)
    return -1;
  ret = point_record_compare (rec, pullback_repo_uuid (r), p, only);
  json_object_put (rec);
  return ret;
}
