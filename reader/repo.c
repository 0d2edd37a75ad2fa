/* pullback - reader/repo.c: opening repositories, looking up points, and
 * the small shared pieces of the library (interrupts, catalog batches, id
 * sets).
 *
 * A repository is a directory holding catalog.db (SQLite) and store/ (the
 * chunk store).  The catalog records the store's uuid so that a catalog
 * and a store from different repositories are never mixed up.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "errors.h"
#include "internal.h"
#include "util.h"

volatile sig_atomic_t pullback_interrupted;

void
pullback_interrupt (void)
{
  pullback_interrupted = 1;
}

int
check_interrupt (void)
{
  if (!pullback_interrupted)
    return 0;
  set_error (PB_E_INTERRUPTED, EINTR, "interrupted");
  return -1;
}

void
id_short (const store_id *id, char out[17])
{
  hex_encode (id->b, 8, out);
}

static char *
repo_path (const char *dir, const char *name)
{
  char *p;

  if (asprintf (&p, "%s/%s", dir, name) == -1) {
    set_error (PB_E_FAIL, errno, "asprintf");
    return NULL;
  }
  return p;
}

/* DIR must not exist (we create it) or be an empty directory. */
static int
prepare_new_dir (const char *dir)
{
  DIR *d;
  struct dirent *e;
  int n = 0;

  if (mkdir (dir, 0700) == 0)
    return 0;
  if (errno != EEXIST) {
    set_error (PB_E_REPO, errno, "cannot create repository %s", dir);
    return -1;
  }
  d = opendir (dir);
  if (d == NULL) {
    set_error (PB_E_REPO, errno, "%s exists and is not a directory", dir);
    return -1;
  }
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0)
      n++;
  closedir (d);
  if (n > 0) {
    set_error (PB_E_REPO, 0, "%s already exists and is not empty", dir);
    return -1;
  }
  return 0;
}

static struct pullback_repo *
repo_new (const char *dir)
{
  struct pullback_repo *r = calloc (1, sizeof *r);

  if (r == NULL || (r->dir = strdup (dir)) == NULL) {
    set_error (PB_E_FAIL, errno, "out of memory");
    free (r);
    return NULL;
  }
  return r;
}

struct pullback_repo *
pullback_repo_init (const char *dir, uint32_t chunk_size,
                    const struct store_key *key)
{
  struct pullback_repo *r;
  CLEANUP_FREE char *sp = NULL, *cp = NULL;

  if (chunk_size == 0)
    chunk_size = STORE_DEFAULT_CHUNK_SIZE;
  if (chunk_size < STORE_MIN_CHUNK_SIZE || chunk_size > STORE_MAX_CHUNK_SIZE ||
      !is_power_of_2 (chunk_size)) {
    set_error (PB_E_USAGE, 0, "chunk size %" PRIu32 " is not a power of two "
               "from 64 KiB to 16 MiB", chunk_size);
    return NULL;
  }
  if (prepare_new_dir (dir) == -1 || (r = repo_new (dir)) == NULL)
    return NULL;
  sp = repo_path (dir, "store");
  cp = repo_path (dir, "catalog.db");
  if (sp == NULL || cp == NULL ||
      (r->store = store_create (sp, chunk_size, key)) == NULL ||
      (r->cat = catalog_create (cp)) == NULL ||
      catalog_set_meta (r->cat, "store_uuid", store_uuid (r->store)) == -1 ||
      store_sync (r->store) == -1 || fsync_dir (dir) == -1)
    goto err;
  return r;
 err:
  pb_prefix_error ("init %s", dir);
  pullback_repo_close (r);
  return NULL;
}

/* The catalog must belong to this store. */
static int
check_uuid (struct pullback_repo *r)
{
  CLEANUP_FREE char *uuid = NULL;

  if (catalog_get_meta (r->cat, "store_uuid", &uuid) == -1) {
    set_error (PB_E_REPO, 0, "%s/catalog.db does not name its store", r->dir);
    return -1;
  }
  if (strcmp (uuid, store_uuid (r->store)) != 0) {
    set_error (PB_E_REPO, 0, "%s: catalog and store belong to different "
               "repositories (%s vs %s)", r->dir, uuid, store_uuid (r->store));
    return -1;
  }
  return 0;
}

struct pullback_repo *
pullback_repo_open (const char *dir, const struct store_key *key)
{
  struct pullback_repo *r;
  CLEANUP_FREE char *sp = NULL, *cp = NULL;
  struct stat st;

  if (stat (dir, &st) == -1 || !S_ISDIR (st.st_mode)) {
    set_error (PB_E_REPO, errno, "%s is not a pullback repository "
               "(create one with 'pullback init --repo %s')", dir, dir);
    return NULL;
  }
  if ((r = repo_new (dir)) == NULL)
    return NULL;
  sp = repo_path (dir, "store");
  cp = repo_path (dir, "catalog.db");
  if (sp == NULL || cp == NULL ||
      access (cp, F_OK) == -1) {
    set_error (PB_E_REPO, errno, "%s is not a pullback repository (no "
               "catalog.db; create one with 'pullback init --repo %s')",
               dir, dir);
    goto err;
  }
  if ((r->store = store_open (sp, key)) == NULL ||
      (r->cat = catalog_open (cp)) == NULL || check_uuid (r) == -1)
    goto err;
  /* A catalog upgraded from version 1 has no reference counts yet. */
  if (!catalog_refs_valid (r->cat) && repo_recount (r) == -1)
    goto err;
  return r;
 err:
  pullback_repo_close (r);
  return NULL;
}

void
pullback_repo_close (struct pullback_repo *r)
{
  if (r == NULL)
    return;
  catalog_close (r->cat);
  store_close (r->store);
  free (r->dir);
  free (r);
}

uint32_t
pullback_repo_chunk_size (const struct pullback_repo *r)
{
  return store_chunk_size (r->store);
}

const char *
pullback_repo_uuid (const struct pullback_repo *r)
{
  return store_uuid (r->store);
}

bool
pullback_repo_encrypted (const struct pullback_repo *r)
{
  return store_encrypted (r->store);
}

/* ---- Points ---- */

static int
parse_point_id (const char *spec, int64_t *id)
{
  char *end;
  long long v;

  errno = 0;
  v = strtoll (spec, &end, 10);
  if (spec[0] < '1' || spec[0] > '9' || *end != '\0' || errno != 0 || v <= 0) {
    set_error (PB_E_USAGE, 0, "invalid point '%s' (expected a positive "
               "number or 'latest')", spec);
    return -1;
  }
  *id = v;
  return 0;
}

int
pullback_resolve_point (struct pullback_repo *r, const char *spec,
                        const char *vm, int64_t *id)
{
  struct catalog_point *p;
  int ok;

  if (strcmp (spec, "latest") == 0) {
    /* VM == NULL: the newest point of all VMs. */
    if (catalog_latest_point (r->cat, vm, id) == -1) {
      pb_set_errclass (PB_E_NOTFOUND);
      return -1;
    }
    return 0;
  }
  if (parse_point_id (spec, id) == -1 ||
      (p = pullback_get_point (r, *id)) == NULL)
    return -1;
  ok = vm == NULL || strcmp (p->vm, vm) == 0;
  if (!ok)
    set_error (PB_E_NOTFOUND, 0, "point %" PRId64 " belongs to VM '%s', "
               "not '%s'", *id, p->vm, vm);
  catalog_point_free (p);
  return ok ? 0 : -1;
}

/* A hidden point (forgotten, kept only as the base of the VM's next
 * incremental) is not there for anyone but the backup that uses it. */
struct catalog_point *
pullback_get_point (struct pullback_repo *r, int64_t id)
{
  struct catalog_point *p = catalog_get_point (r->cat, id);

  if (p && p->hidden) {
    catalog_point_free (p);
    set_error (PB_E_NOTFOUND, 0, "no point %" PRId64 " (it was forgotten)", id);
    return NULL;
  }
  return p;
}

int
repo_delete_point_record (struct pullback_repo *r, int64_t id)
{
  char name[64];

  snprintf (name, sizeof name, "points/%010" PRId64, id);
  return store_delete_record (r->store, name);
}

int
pullback_list_points (struct pullback_repo *r, const char *vm,
                      struct catalog_point ***points, size_t *n)
{
  return catalog_list_points (r->cat, vm, points, n);
}
