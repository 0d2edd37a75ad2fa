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
