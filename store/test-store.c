/* pullback - store/test-store.c: unit tests of the chunk store.
 *
 * Round trips (compressible, incompressible, short, empty, map-node sized),
 * dedup, ids against OpenSSL's SHA-256 computed here independently, a
 * missing chunk, records, config validation at open and create, listing,
 * and a multithreaded put/get storm.  (Damaged objects and the byte layout
 * are test-corrupt.c's.)  Prints one line per check; exit 0 pass, 1 fail.
 */
#include <config.h>

#include <pthread.h>

#include <json.h>

#include "test-common.h"

static void
make_dir_with_config (const char *dir, const char *config)
{
  mkdir (path_in ("%s", dir), 0700);
  if (config)
    write_whole (path_in ("%s/config", dir), config, strlen (config));
}

/* ---- create / open / config ---- */

static void
test_create_bad (void)
{
  static const uint32_t bad[] = { 0, 1000, 32 * 1024, 3 * 64 * 1024,
                                  32u * 1024 * 1024, 0x80000000u };
  size_t i;
  int all = 1;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (store_create (path_in ("badsize"), bad[i], NULL) != NULL ||
        pb_get_errclass () != PB_E_USAGE)
      all = 0;
  check (all, "store_create refuses chunk sizes that are not a power of two "
         "in [64K,16M] (PB_E_USAGE)");
  check (access (path_in ("badsize"), F_OK) != 0,
         "and creates nothing for them");
  make_dir_with_config ("nonempty", "hello");
  check (store_create (path_in ("nonempty"), CS, NULL) == NULL &&
         pb_get_errclass () == PB_E_REPO &&
         strstr (pb_get_error (), "already exists and is not empty"),
         "store_create on a non-empty directory: PB_E_REPO: %s",
         pb_get_error ());
}

static void
test_config_file (struct store *s)
{
  size_t len;
  char *text = (char *) read_whole (path_in ("repo/config"), &len);
  json_object *o = text ? json_tokener_parse (text) : NULL, *v;
  int ok = o != NULL;

  ok = ok && json_object_object_get_ex (o, "format", &v) &&
    strcmp (json_object_get_string (v), "pullback-store") == 0;
  ok = ok && json_object_object_get_ex (o, "version", &v) &&
    json_object_get_int (v) == 1;
  ok = ok && json_object_object_get_ex (o, "chunk_size", &v) &&
    json_object_get_int64 (v) == CS;
  ok = ok && json_object_object_get_ex (o, "id", &v) &&
    strcmp (json_object_get_string (v), "sha256") == 0;
  ok = ok && json_object_object_get_ex (o, "uuid", &v) &&
    strcmp (json_object_get_string (v), store_uuid (s)) == 0;
  check (ok, "config object is the documented JSON: %s", text ? text : "");
  check (strlen (store_uuid (s)) == 32 &&
         strspn (store_uuid (s), "0123456789abcdef") == 32,
         "uuid is 32 lower-case hex digits");
  json_object_put (o);
  free (text);
}

static void
expect_open_fails (const char *dir, const char *config, const char *what)
{
  struct store *s;

  if (dir[0] != '/')
    make_dir_with_config (dir, config);
  s = store_open (dir[0] == '/' ? dir : path_in ("%s", dir), NULL);
  check (s == NULL && pb_get_errclass () == PB_E_REPO,
         "store_open: %s -> PB_E_REPO: %s", what, pb_get_error ());
  store_close (s);
}

#define GOOD_UUID "0123456789abcdef0123456789abcdef"

static void
test_open_bad (void)
{
  struct store *s;

  expect_open_fails (path_in ("missing"), NULL, "missing directory");
  expect_open_fails ("noconf", NULL, "directory without config");
  expect_open_fails ("notjson", "{not json", "config is not JSON");
  expect_open_fails ("array", "[1,2]", "config is not an object");
  expect_open_fails ("trail", "{\"format\":\"pullback-store\"} x",
                     "config with trailing garbage");
  expect_open_fails ("fmt", "{\"format\":\"other\",\"version\":1,"
                     "\"chunk_size\":65536,\"id\":\"sha256\",\"uuid\":\""
                     GOOD_UUID "\"}", "wrong format");
  expect_open_fails ("ver", "{\"format\":\"pullback-store\",\"version\":2,"
                     "\"chunk_size\":65536,\"id\":\"sha256\",\"uuid\":\""
                     GOOD_UUID "\"}", "unknown version");
  expect_open_fails ("idk", "{\"format\":\"pullback-store\",\"version\":1,"
                     "\"chunk_size\":65536,\"id\":\"md5\",\"uuid\":\""
                     GOOD_UUID "\"}", "unknown id scheme");
  expect_open_fails ("cs1", "{\"format\":\"pullback-store\",\"version\":1,"
                     "\"chunk_size\":100000,\"id\":\"sha256\",\"uuid\":\""
                     GOOD_UUID "\"}", "chunk size not a power of two");
  expect_open_fails ("cs2", "{\"format\":\"pullback-store\",\"version\":1,"
                     "\"chunk_size\":33554432,\"id\":\"sha256\",\"uuid\":\""
                     GOOD_UUID "\"}", "chunk size 32 MiB");
  expect_open_fails ("cs3", "{\"format\":\"pullback-store\",\"version\":1,"
                     "\"chunk_size\":\"65536\",\"id\":\"sha256\",\"uuid\":\""
                     GOOD_UUID "\"}", "chunk size a string");
  expect_open_fails ("uu", "{\"format\":\"pullback-store\",\"version\":1,"
                     "\"chunk_size\":65536,\"id\":\"sha256\",\"uuid\":\"xyz\"}",
                     "bad uuid");
  make_dir_with_config ("hand", "{\"format\":\"pullback-store\",\"version\":1,"
                        "\"chunk_size\":131072,\"id\":\"sha256\",\"uuid\":\""
                        GOOD_UUID "\",\"comment\":\"extra keys are ignored\"}\n");
  s = store_open (path_in ("hand"), NULL);
  check (s && store_chunk_size (s) == 131072 &&
         strcmp (store_uuid (s), GOOD_UUID) == 0,
         "store_open of a hand-written config");
  store_close (s);
  check (store_create (path_in ("hand"), CS, NULL) == NULL &&
         pb_get_errclass () == PB_E_REPO,
         "store_create over an existing store: PB_E_REPO");
}

/* ---- ids ---- */

static void
test_ids (struct store *s)
{
  uint8_t data[1000], md[32], *zeros = calloc (1, CS);
  store_id id, id2;
  char hex[65];

  fill_random (data, sizeof data, 1);
  store_id_of (s, data, sizeof data, &id);
  sha256 (data, sizeof data, md);
  check (memcmp (id.b, md, 32) == 0, "store_id_of == SHA-256 (EVP)");
  store_id_of (s, "", 0, &id);
  sha256 ("", 0, md);
  check (memcmp (id.b, md, 32) == 0, "id of the empty string");
  store_zero_id (s, CS, &id);
  store_zero_id (s, CS, &id2);
  sha256 (zeros, CS, md);
  check (memcmp (id.b, md, 32) == 0 && memcmp (id2.b, md, 32) == 0,
         "zero id of a whole chunk (twice: cached)");
  store_zero_id (s, 4096, &id);
  sha256 (zeros, 4096, md);
  check (memcmp (id.b, md, 32) == 0, "zero id of a 4096-byte tail");
  store_id_hex (&id, hex);
  check (store_id_parse (hex, &id2) == 0 && memcmp (id.b, id2.b, 32) == 0,
         "id hex round trip");
  hex[63] = '\0';
  check (store_id_parse (hex, &id2) == -1 && pb_get_errclass () == PB_E_USAGE,
         "63 hex digits refused");
  strcpy (hex + 59, "abcdg");
  check (store_id_parse (hex, &id2) == -1, "a non-hex digit refused");
  free (zeros);
}

/* ---- round trips ---- */

static void
test_roundtrip (struct store *s)
{
  uint8_t *buf = malloc (1024 * 1024), *back;
  store_id id;
  uint64_t stored = 99;
  struct stat st1, st2;
  size_t len;
  int r;

  fill_text (buf, CS, 1);
  r = put (s, buf, CS, &id, &stored);
  check (r == 1 && stored > HDR &&
         stored < CS / 4, "compressible chunk written, %llu bytes stored",
         (unsigned long long) stored);
  check (get_equals (s, &id, buf, CS), "compressible chunk reads back");
  stat (chunk_file (&id), &st1);
  check (put (s, buf, CS, &id, &stored) == 0 && stored == 0,
         "second put of the same chunk: 0, nothing stored");
  stat (chunk_file (&id), &st2);
  check (st1.st_ino == st2.st_ino && st1.st_mtime == st2.st_mtime,
         "and the file was not rewritten");
  check (store_has_chunk (s, &id) == 1, "store_has_chunk: 1");

  fill_random (buf, CS, 2);
  r = put (s, buf, CS, &id, &stored);
  check (r == 1 && stored == CS + HDR,
         "incompressible chunk stored raw (%llu bytes)",
         (unsigned long long) stored);
  check (get_equals (s, &id, buf, CS), "incompressible chunk reads back");

  fill_text (buf, 1000, 3);
  check (put (s, buf, 1000, &id, &stored) == 1 && stored < 1000 &&
         get_equals (s, &id, buf, 1000), "1000-byte tail chunk round trip");
  check (put (s, "tiny", 4, &id, &stored) == 1 && stored == 4 + HDR &&
         get_equals (s, &id, "tiny", 4), "4-byte chunk round trip (raw)");
  check (put (s, "", 0, &id, &stored) == 1 && stored == HDR &&
         get_equals (s, &id, "", 0), "empty chunk round trip");

  fill_text (buf, 1024 * 1024, 4);
  check (put (s, buf, 1024 * 1024, &id, &stored) == 1 &&
         store_get_chunk_alloc (s, &id, (void **) &back, &len) == 0 &&
         len == 1024 * 1024 && memcmp (back, buf, len) == 0,
         "1 MiB map node (> chunk size) round trip via get_chunk_alloc");
  free (back);
  check (store_get_chunk (s, &id, buf, 1000, &len) == -1 &&
         pb_get_errclass () == PB_E_CORRUPT,
         "get into a too small buffer fails");
  check (store_put_chunk (s, &id, buf, STORE_MAX_CHUNK_SIZE + 1, NULL) == -1 &&
         pb_get_errclass () == PB_E_USAGE, "chunk over 16 MiB refused");
  check (store_delete_chunk (s, &id) == 0 && store_has_chunk (s, &id) == 0 &&
         store_delete_chunk (s, &id) == 0, "delete (twice), then absent");

  /* A zero-length file at the key is not a stored chunk: rewrite it. */
  fill_text (buf, CS, 5);
  put (s, buf, CS, &id, NULL);
  write_whole (chunk_file (&id), "", 0);
  check (put (s, buf, CS, &id, &stored) == 1 && get_equals (s, &id, buf, CS),
         "an empty file at the key is rewritten, not trusted");

  /* The file is gone: that is damage to the store, not "not found". */
  unlink (chunk_file (&id));
  check (store_get_chunk (s, &id, buf, CS, &len) == -1 &&
         pb_get_errclass () == PB_E_CORRUPT && pb_get_errno () == ENOENT,
         "missing chunk: PB_E_CORRUPT, ENOENT: %s", pb_get_error ());
  free (buf);
}

/* ---- records ---- */

struct names { char n[16][64]; int count; };

static int
collect_name (const char *name, void *opaque)
{
  struct names *ns = opaque;

  if (ns->count < 16)
    snprintf (ns->n[ns->count], sizeof ns->n[0], "%s", name);
  ns->count++;
  return 0;
}

static int
get_record_equals (struct store *s, const char *name, const char *want)
{
  char *buf = NULL;
  size_t len = 0;
  int ok;

  ok = store_get_record (s, name, (void **) &buf, &len) == 0 &&
    len == strlen (want) && strcmp (buf, want) == 0;   /* NUL-terminated */
  free (buf);
  return ok;
}

static void
test_records (struct store *s)
{
  static const char *bad[] = { "config", "points", "chunks/ab/cd", "Points/1",
                               "points/../x", "points/.x", "/points/1",
                               "points/", "points//1", "", NULL };
  struct names ns = { .count = 0 };
  size_t flen;
  void *buf;
  int i, all = 1;

  check (store_put_record (s, "points/00000042", "{\"id\":42}", 9) == 0 &&
         get_record_equals (s, "points/00000042", "{\"id\":42}"),
         "record round trip (NUL-terminated)");
  check (store_put_record (s, "points/00000042", "replaced", 8) == 0 &&
         get_record_equals (s, "points/00000042", "replaced"),
         "put replaces a record");
  check (store_put_record (s, "points/00000043", "", 0) == 0 &&
         get_record_equals (s, "points/00000043", ""), "empty record");
  check (store_put_record (s, "vms/web-1.example_x/disk-0", "v", 1) == 0 &&
         get_record_equals (s, "vms/web-1.example_x/disk-0", "v"),
         "record name with three parts and . _ -");
  check (store_get_record (s, "points/99999999", &buf, &flen) == -1 &&
         pb_get_errclass () == PB_E_NOTFOUND && pb_get_errno () == ENOENT,
         "missing record: PB_E_NOTFOUND, ENOENT");
  for (i = 0; bad[i]; i++)
    if (store_put_record (s, bad[i], "x", 1) != -1 ||
        pb_get_errclass () != PB_E_USAGE) {
      printf ("# record name '%s' accepted\n", bad[i]);
      all = 0;
    }
  check (all, "invalid record names refused (config, chunks/, one part, "
         "upper case, dot parts, empty parts)");
  i = store_list_records (s, "points/", collect_name, &ns);
  check (i == 0 && ns.count == 2 &&
         ((!strcmp (ns.n[0], "points/00000042") &&
           !strcmp (ns.n[1], "points/00000043")) ||
          (!strcmp (ns.n[1], "points/00000042") &&
           !strcmp (ns.n[0], "points/00000043"))),
         "list_records points/ finds exactly the 2 records (%d)", ns.count);
  memset (&ns, 0, sizeof ns);
  i = store_list_records (s, "", collect_name, &ns);
  check (i == 0 && ns.count == 3,
         "list_records \"\" finds the 3 records, no chunk, no config (%d)",
         ns.count);
  check (store_delete_record (s, "points/00000043") == 0 &&
         store_get_record (s, "points/00000043", &buf, &flen) == -1 &&
         store_delete_record (s, "points/00000043") == 0,
         "delete record (twice)");
}

/* ---- listing ---- */

struct idset { store_id ids[64]; int n, seen[64], extra; };

static int
mark_seen (const store_id *id, void *opaque)
{
  struct idset *set = opaque;
  int i;

  for (i = 0; i < set->n; i++)
    if (memcmp (set->ids[i].b, id->b, 32) == 0) {
      set->seen[i]++;
      return 0;
    }
  set->extra++;
  return 0;
}

static void
test_list (void)
{
  struct store *s = store_create (path_in ("listrepo"), CS, NULL);
  struct idset set = { .n = 40 };
  uint8_t buf[4096];
  store_id other;
  char hex[65];
  int i, ok = 1;

  if (s == NULL) {
    check (0, "store_create listrepo");
    return;
  }
  for (i = 0; i < set.n; i++) {
    fill_text (buf, sizeof buf, 300 + i);
    put (s, buf, sizeof buf, &set.ids[i], NULL);
    put (s, buf, sizeof buf, &set.ids[i], NULL);
  }
  /* Strays the listing must skip. */
  store_id_of (s, "other", 5, &other);
  store_id_hex (&other, hex);
  mkdir (path_in ("listrepo/chunks/zz"), 0700);
  write_whole (path_in ("listrepo/chunks/zz/%s", hex), "x", 1);
  write_whole (path_in ("listrepo/chunks/zz/notanid"), "x", 1);
  write_whole (path_in ("listrepo/chunks/%.2s/.tmp.abcdef", hex), "x", 1);
  store_put_record (s, "points/00000001", "r", 1);
  check (store_list_chunks (s, mark_seen, &set) == 0,
         "store_list_chunks");
  for (i = 0; i < set.n; i++)
    ok &= set.seen[i] == 1;
  check (ok && set.extra == 0,
         "lists each of the 40 chunks once and nothing else");
  store_close (s);
}

/* ---- threads ---- */

#define POOL 40
#define ITERS 250

struct worker { struct store *s; int id, bad, written; };

static void *
worker (void *arg)
{
  struct worker *w = arg;
  uint8_t *buf = malloc (CS), *back = malloc (CS);
  uint64_t seed = w->id + 1, stored;
  store_id id;
  size_t len;
  int i, k, r;

  for (i = 0; i < ITERS; i++) {
    k = xorshift (&seed) % POOL;
    (k & 1 ? fill_random : fill_text) (buf, CS - k, 1000 + k);
    r = put (w->s, buf, CS - k, &id, &stored);
    if (r == -1 || (r == 1 && stored == 0) || (r == 0 && stored != 0))
      w->bad++;
    w->written += r == 1;
    if (store_get_chunk (w->s, &id, back, CS, &len) == -1 ||
        len != (size_t) (CS - k) || memcmp (back, buf, len) != 0)
      w->bad++;
  }
  free (buf);
  free (back);
  return NULL;
}

static int
count_ids (const store_id *id, void *opaque)
{
  (*(int *) opaque)++;
  return 0;
}

static void
test_threads (void)
{
  struct store *s = store_create (path_in ("mtrepo"), CS, NULL);
  struct worker w[4];
  pthread_t t[4];
  int i, bad = 0, written = 0, n = 0, r;

  for (i = 0; s && i < 4; i++) {
    w[i] = (struct worker) { .s = s, .id = i };
    pthread_create (&t[i], NULL, worker, &w[i]);
  }
  for (i = 0; s && i < 4; i++) {
    pthread_join (t[i], NULL);
    bad += w[i].bad;
    written += w[i].written;
  }
  check (s && bad == 0, "4 threads x %d put+get of %d overlapping chunks: "
         "every result right", ITERS, POOL);
  r = s ? store_list_chunks (s, count_ids, &n) : -1;
  check (r == 0 && n == POOL && written >= POOL,
         "%d distinct chunks stored (%d writes)", n, written);
  check (s && store_sync (s) == 0, "store_sync");
  store_close (s);
}

/* ---- main ---- */

static void
test_main_store (void)
{
  struct store *s = store_create (path_in ("repo"), CS, NULL);

  check (s != NULL && store_chunk_size (s) == CS, "store_create");
  if (s == NULL)
    return;
  test_config_file (s);
  test_ids (s);
  test_roundtrip (s);
  test_records (s);
  check (store_sync (s) == 0, "store_sync");
  store_close (s);
  s = store_open (path_in ("repo"), NULL);
  check (s && store_chunk_size (s) == CS, "store_open after create");
  store_close (s);
  check (store_create (path_in ("repo"), CS, NULL) == NULL &&
         pb_get_errclass () == PB_E_REPO, "store_create over it: PB_E_REPO");
}

int
main (void)
{
  if (test_start ("test-store") == -1)
    return 1;
  store_close (NULL);
  test_create_bad ();
  test_open_bad ();
  test_main_store ();
  test_list ();
  test_threads ();
  return test_end ();
}
