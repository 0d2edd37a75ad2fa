/* pullback - agent/output.c: everything the commands print in common.
 *
 * Error reporting (the message on stderr, the error object for --json and
 * the exit code), the JSON building blocks several commands share (ids,
 * times, the point object of list and show) and sizes for humans.  JSON is
 * always built with json-c, never by hand, so names and messages coming
 * from VMs, disks and the library are escaped correctly.
 */
#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "util.h"

/* The "class" member of the --json error object, indexed by exit code.
 * Part of the stable contract, like the codes themselves. */
static const char *const class_names[] = {
  [PB_E_OK] = "ok",
  [PB_E_FAIL] = "failure",
  [PB_E_USAGE] = "usage",
  [PB_E_REPO] = "repository",
  [PB_E_NBD] = "nbd",
  [PB_E_CHECKPOINT] = "checkpoint",
  [PB_E_BITMAP] = "bitmap",
  [PB_E_CORRUPT] = "corrupt",
  [PB_E_TARGET] = "target",
  [PB_E_NOTFOUND] = "not_found",
  [PB_E_BUSY] = "busy",
  [PB_E_IO] = "io",
  [PB_E_INTERRUPTED] = "interrupted",
  [PB_E_KEY] = "key",
  [PB_E_NOSPACE] = "no_space",
  [PB_E_PROTECTED] = "protected",
};

#define NCLASSES (sizeof class_names / sizeof class_names[0])

void
print_json (struct json_object *obj)
{
  const char *s;

  s = json_object_to_json_string_ext (obj, JSON_C_TO_STRING_PLAIN |
                                      JSON_C_TO_STRING_NOSLASHESCAPE);
  /* One line per document: easy to read with any line-based tool. */
  printf ("%s\n", s ? s : "null");
  json_object_put (obj);
}

static void
print_json_error (int code, const char *message)
{
  struct json_object *err = json_object_new_object ();
  struct json_object *obj = json_object_new_object ();

  json_object_object_add (err, "code", json_object_new_int (code));
  json_set_str (err, "class", class_names[code]);
  json_set_str (err, "message", message);
  json_object_object_add (obj, "error", err);
  print_json (obj);
}

/* The exit code and message of the recorded error, never "success": a
 * failure reported without a class still has to fail. */
static int
error_code (const char **message)
{
  int code = pb_get_errclass ();

  *message = pb_get_error ();
  if (**message == '\0')
    *message = "unknown error";
  if (code <= PB_E_OK || (size_t) code >= NCLASSES)
    code = PB_E_FAIL;
  return code;
}

int
report_error (const struct cli *c)
{
  const char *message;
  int code = error_code (&message);

  fprintf (stderr, "pullback: %s\n", message);
  if (c->json)
    print_json_error (code, message);
  return code;
}

int
report_usage (const struct cli *c)
{
  const char *message;
  const char *name = c->cmd ? c->cmd->name : NULL;

  error_code (&message);
  fprintf (stderr, "pullback: %s\n", message);
  if (name)
    fprintf (stderr, "Usage: %s\n"
             "Try 'pullback help %s' for more information.\n",
             c->cmd->synopsis, name);
  else
    fprintf (stderr, "Usage: pullback COMMAND [OPTION...]\n"
             "Try 'pullback --help' for more information.\n");
  if (c->json)
    print_json_error (PB_E_USAGE, message);
  return PB_E_USAGE;
}

int
usage_error (const struct cli *c, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  set_error (PB_E_USAGE, 0, "%s", msg);
  return report_usage (c);
}

void
warning (const char *fmt, ...)
{
  va_list ap;

  fputs ("pullback: warning: ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

struct json_object *
json_hex (const uint8_t *id, size_t len)
{
  char hex[2 * 64 + 1];

  if (len > 64)
    len = 64;
  hex_encode (id, len, hex);
  return json_object_new_string (hex);
}

/* A NULL string becomes JSON null (json-c stores a NULL member value as
 * null). */
void
json_set_str (struct json_object *o, const char *key, const char *s)
{
  json_object_object_add (o, key, s ? json_object_new_string (s) : NULL);
}

void
json_set_u64 (struct json_object *o, const char *key, uint64_t v)
{
  json_object_object_add (o, key, json_object_new_uint64 (v));
}

struct json_object *
json_id_or_null (int64_t id)
{
  return id > 0 ? json_object_new_int64 (id) : NULL;
}

struct json_object *
json_time (int64_t t)
{
  char buf[32];

  format_time (t, buf, sizeof buf);
  return json_object_new_string (buf);
}

/* Milliseconds are plenty; json-c would otherwise print 17 digits. */
struct json_object *
json_seconds (double seconds)
{
  char buf[32];

  snprintf (buf, sizeof buf, "%.3f", seconds);
  return json_object_new_double_s (seconds, buf);
}

static struct json_object *
json_point_disk (const struct catalog_disk *d)
{
  struct json_object *o = json_object_new_object ();

  json_set_str (o, "name", d->name);
  json_set_u64 (o, "size", d->size);
  json_set_u64 (o, "chunk_size", d->chunk_size);
  json_object_object_add (o, "digest", json_hex (d->digest, sizeof d->digest));
  json_set_u64 (o, "bytes_read", d->bytes_read);
  json_set_u64 (o, "bytes_new", d->bytes_new);
  json_set_u64 (o, "chunks_changed", d->chunks_changed);
  return o;
}

struct json_object *
json_point (const struct catalog_point *p)
{
  struct json_object *o = json_object_new_object ();
  struct json_object *disks = json_object_new_array ();
  size_t i;

  json_object_object_add (o, "id", json_object_new_int64 (p->id));
  json_set_str (o, "vm", p->vm);
  json_set_str (o, "mode", p->mode);
  json_object_object_add (o, "parent", json_id_or_null (p->parent));
  json_set_str (o, "checkpoint", p->checkpoint);
  json_set_str (o, "since", p->since);
  json_object_object_add (o, "started", json_time (p->started));
  json_object_object_add (o, "finished", json_time (p->finished));
  json_object_object_add (o, "protected",
                          json_object_new_boolean (p->is_protected));
  for (i = 0; i < p->ndisks; i++)
    json_object_array_add (disks, json_point_disk (&p->disks[i]));
  json_object_object_add (o, "disks", disks);
  return o;
}

const char *
human_size (uint64_t bytes, bool compact, char buf[HUMAN_SIZE_MAX])
{
  static const char units[] = "KMGTPE";
  double v = bytes / 1024.0;
  uint64_t unit = 1024;
  int i = 0;

  if (bytes < 1024) {
    snprintf (buf, HUMAN_SIZE_MAX, compact ? "%" PRIu64 "B" : "%" PRIu64 " B",
              bytes);
    return buf;
  }
  /* Move up a unit before the number would print as "1024.0". */
  while (i < 5 && v >= 1023.95) {
    v /= 1024;
    unit *= 1024;
    i++;
  }
  if (compact)
    snprintf (buf, HUMAN_SIZE_MAX, "%.1f%c", v, units[i]);
  else if (bytes % unit == 0)
    snprintf (buf, HUMAN_SIZE_MAX, "%" PRIu64 " %ciB", bytes / unit, units[i]);
  else
    snprintf (buf, HUMAN_SIZE_MAX, "%.1f %ciB", v, units[i]);
  return buf;
}

const char *
plural (uint64_t n, const char *one, const char *many)
{
  return n == 1 ? one : many;
}
