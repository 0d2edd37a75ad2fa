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
#include "maptree.h"
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

/* Read and parse point ID's record. */
static json_object *
load_record (struct pullback_repo *r, int64_t id)
{
  char name[64];
  CLEANUP_FREE char *buf = NULL;
  size_t len;

  snprintf (name, sizeof name, "points/%010" PRId64, id);
  if (store_get_record (r->store, name, (void **) &buf, &len) == -1) {
    if (pb_get_errclass () == PB_E_NOTFOUND)
      set_error (PB_E_CORRUPT, ENOENT, "point %" PRId64 ": point record %s "
                 "is missing", id, name);
    else
      pb_prefix_error ("point %" PRId64 ", its point record", id);
    return NULL;
  }
  return point_record_parse (buf, id, name);
}

json_object *
point_record_parse (const char *text, int64_t id, const char *name)
{
  json_object *o = json_tokener_parse (text);

  if (o == NULL || !json_object_is_type (o, json_type_object)) {
    json_object_put (o);
    set_error (PB_E_CORRUPT, 0, "point %" PRId64 ": point record %s is not "
               "a JSON object", id, name);
    return NULL;
  }
  return o;
}

int
point_record_check (struct pullback_repo *r, const struct catalog_point *p,
                    const struct catalog_disk *only)
{
  json_object *rec = load_record (r, p->id);
  int ret;

  if (rec == NULL)
    return -1;
  ret = point_record_compare (rec, pullback_repo_uuid (r), p, only);
  json_object_put (rec);
  return ret;
}

/* ---- Reading a record into a point (catalog rebuild) ---- */

/* Field KEY of O as an integer in [MIN, MAX]. */
static bool
get_int (json_object *o, const char *key, int64_t min, int64_t max,
         int64_t *out)
{
  json_object *v;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_int))
    return false;
  *out = json_object_get_int64 (v);
  return *out >= min && *out <= max;
}

/* Field KEY of O as a copied string (NULL JSON -> NULL if NULLABLE). */
static bool
get_str (json_object *o, const char *key, bool nullable, char **out)
{
  json_object *v;

  *out = NULL;
  if (!json_object_object_get_ex (o, key, &v))
    return false;
  if (v == NULL)
    return nullable;
  if (!json_object_is_type (v, json_type_string) ||
      json_object_get_string_len (v) == 0)
    return false;
  *out = strdup (json_object_get_string (v));
  return *out != NULL;
}

static bool
get_id (json_object *o, const char *key, uint8_t out[CATALOG_ID_LEN])
{
  json_object *v;
  const char *s;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_string))
    return false;
  s = json_object_get_string (v);
  return strlen (s) == 2 * CATALOG_ID_LEN &&
    hex_decode (s, out, CATALOG_ID_LEN) == 0;
}

/* "parent": null (none) or an older point's id. */
static bool
get_parent (json_object *rec, int64_t id, int64_t *out)
{
  json_object *v;

  if (!json_object_object_get_ex (rec, "parent", &v))
    return false;
  *out = 0;
  return v == NULL || get_int (rec, "parent", 1, id - 1, out);
}

/* One disk object; NULL if all is well, else the field at fault. */
static const char *
parse_disk (json_object *o, uint32_t chunk_size, struct catalog_disk *d)
{
  int64_t v;

  if (!json_object_is_type (o, json_type_object) ||
      !get_str (o, "name", false, &d->name))
    return "name";
  if (!get_int (o, "size", 0, INT64_MAX, &v))
    return "size";
  d->size = v;
  if (!get_int (o, "chunk_size", chunk_size, chunk_size, &v))
    return "chunk_size (not the store's)";
  d->chunk_size = v;
  if (!get_int (o, "map_levels", 1, MAPTREE_MAX_LEVELS, &v) ||
      v != maptree_levels (div_round_up (d->size, chunk_size)))
    return "map_levels";
  d->map_levels = v;
  if (!get_id (o, "map_root", d->map_root))
    return "map_root";
  if (!get_id (o, "digest", d->digest))
    return "digest";
  if (!get_int (o, "bytes_read", 0, INT64_MAX, &v))
    return "bytes_read";
  d->bytes_read = v;
  if (!get_int (o, "bytes_new", 0, INT64_MAX, &v))
    return "bytes_new";
  d->bytes_new = v;
  if (!get_int (o, "chunks_changed", 0, INT64_MAX, &v))
    return "chunks_changed";
  d->chunks_changed = v;
  return NULL;
}

static const char *
parse_disks (json_object *rec, uint32_t chunk_size, struct catalog_point *p)
{
  json_object *disks;
  const char *f;
  size_t i, j;

  if (!json_object_object_get_ex (rec, "disks", &disks) ||
      !json_object_is_type (disks, json_type_array) ||
      (p->ndisks = json_object_array_length (disks)) == 0)
    return "disks";
  if ((p->disks = calloc (p->ndisks, sizeof *p->disks)) == NULL)
    return "disks (out of memory)";
  for (i = 0; i < p->ndisks; i++) {
    if ((f = parse_disk (json_object_array_get_idx (disks, i), chunk_size,
                         &p->disks[i])) != NULL)
      return f;
    for (j = 0; j < i; j++)
      if (strcmp (p->disks[j].name, p->disks[i].name) == 0)
        return "disks (a name twice)";
  }
  return NULL;
}

/* The identity fields; NULL if all is well, else the field at fault. */
static const char *
parse_point (struct pullback_repo *r, json_object *rec, int64_t id,
             struct catalog_point *p)
{
  int64_t v;

  if (!str_is (rec, "format", "pullback-point") || !int_is (rec, "version", 1))
    return "format or version";
  if (!str_is (rec, "repository", pullback_repo_uuid (r)))
    return "repository (another repository's record)";
  if (!int_is (rec, "id", id))
    return "id (not the record's name)";
  p->id = id;
  if (!get_str (rec, "vm", false, &p->vm))
    return "vm";
  if (!get_str (rec, "mode", false, &p->mode) ||
      (strcmp (p->mode, "full") != 0 && strcmp (p->mode, "incremental") != 0))
    return "mode";
  if (!get_parent (rec, id, &p->parent))
    return "parent";
  if (p->parent && strcmp (p->mode, "full") == 0)
    return "parent (a full point with a parent)";
  if (!get_str (rec, "checkpoint", true, &p->checkpoint) ||
      !get_str (rec, "since", true, &p->since))
    return "checkpoint or since";
  if (!get_int (rec, "started", INT64_MIN, INT64_MAX, &v))
    return "started";
  p->started = v;
  if (!get_int (rec, "finished", INT64_MIN, INT64_MAX, &v))
    return "finished";
  p->finished = v;
  return parse_disks (rec, pullback_repo_chunk_size (r), p);
}

struct catalog_point *
point_record_load (struct pullback_repo *r, int64_t id)
{
  json_object *rec = load_record (r, id);
  struct catalog_point *p;
  const char *bad;

  if (rec == NULL)
    return NULL;
  p = calloc (1, sizeof *p);
  if (p == NULL) {
    json_object_put (rec);
    set_error (PB_E_FAIL, errno, "calloc");
    return NULL;
  }
  bad = parse_point (r, rec, id, p);
  json_object_put (rec);
  if (bad) {
    catalog_point_free (p);
    set_error (PB_E_CORRUPT, 0, "point %" PRId64 ": point record: bad or "
               "missing field %s", id, bad);
    return NULL;
  }
  return p;
}
