/* pullback - common/errors.c: the per-thread error record (see errors.h).
 *
 * A thread-local fixed buffer keeps this usable on out-of-memory paths and
 * needs no destructor when threads exit.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"

/* A full disk, a quota or a file-size limit is its own class whatever the
 * caller classed the failed write as (a store object, the catalog, a
 * restore target): the administrator's remedy is different (free space,
 * not repair), and scripts must be able to tell (docs/CLI.md, exit 14).
 * Not for the NBD class: the server's errno says nothing about our disks. */
static int
space_class (int errclass, int errnum)
{
  if (errnum != ENOSPC && errnum != EDQUOT && errnum != EFBIG)
    return errclass;
  switch (errclass) {
  case PB_E_OK: case PB_E_FAIL: case PB_E_REPO: case PB_E_TARGET:
  case PB_E_IO:
    return PB_E_NOSPACE;
  default:
    return errclass;
  }
}

static __thread char msg[PB_ERROR_MSG_MAX];
static __thread int err_num;
static __thread int err_class;

void
pb_set_error (int errclass, int errnum, const char *fmt, ...)
{
  va_list ap;
  size_t n;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (errnum != 0) {
    n = strlen (msg);
    snprintf (msg + n, sizeof msg - n, ": %s", strerror (errnum));
  }
  err_num = errnum;
  errclass = space_class (errclass, errnum);
  err_class = errclass == PB_E_OK ? PB_E_FAIL : errclass;
}

void
pb_prefix_error (const char *fmt, ...)
{
  char old[PB_ERROR_MSG_MAX];
  va_list ap;
  int n;

  memcpy (old, msg, sizeof old);
  va_start (ap, fmt);
  n = vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  /* Append ": old message" after the prefix, truncating if needed. */
  if (n >= 0 && (size_t) n < sizeof msg)
    snprintf (msg + n, sizeof msg - n, ": %.*s", (int) (sizeof msg - n), old);
  if (err_class == PB_E_OK)
    err_class = PB_E_FAIL;
}

void
pb_set_errclass (int errclass)
{
  err_class = errclass;
}

const char *
pb_get_error (void)
{
  return msg;
}

int
pb_get_errno (void)
{
  return err_num;
}

int
pb_get_errclass (void)
{
  return err_class;
}

void
pb_clear_error (void)
{
  msg[0] = '\0';
  err_num = 0;
  err_class = PB_E_OK;
}

void
pb_save_error (struct pb_saved_error *e)
{
  memcpy (e->msg, msg, sizeof e->msg);
  e->errnum = err_num;
  e->errclass = err_class;
}

void
pb_restore_error (const struct pb_saved_error *e)
{
  memcpy (msg, e->msg, sizeof msg);
  err_num = e->errnum;
  err_class = e->errclass;
}
