/* pullback - common/errors.h: per-thread error state shared by every module.
 *
 * Library functions report failure by returning -1 (or NULL) after calling
 * set_error(), which records a message, an errno value and an error class
 * for the calling thread.  Only agent/ prints the message and turns the
 * class into an exit code (docs/CLI.md lists them), so the classes below are
 * part of the stable command-line contract: never renumber them.
 */
#ifndef PB_ERRORS_H
#define PB_ERRORS_H

#include <stdarg.h>

enum pb_errclass {
  PB_E_OK = 0,
  PB_E_FAIL = 1,        /* anything not listed below */
  PB_E_USAGE = 2,       /* bad command line or bad argument value */
  PB_E_REPO = 3,        /* repository missing, not initialised, exists, bad config */
  PB_E_NBD = 4,         /* cannot connect to / read from the NBD server */
  PB_E_CHECKPOINT = 5,  /* --since names a checkpoint the catalog does not know */
  PB_E_BITMAP = 6,      /* bitmap missing on the server, or --bitmap missing */
  PB_E_CORRUPT = 7,     /* a chunk or record is damaged, missing, or fails its digest */
  PB_E_TARGET = 8,      /* restore target exists, is locked, or cannot be written */
  PB_E_NOTFOUND = 9,    /* unknown point, VM or disk */
  PB_E_BUSY = 10,       /* repository or VM locked by another process */
  PB_E_IO = 11,         /* local I/O error (permission, read-only, write error) */
  PB_E_INTERRUPTED = 12, /* stopped by a signal */
  PB_E_KEY = 13,        /* encryption key or passphrase missing or wrong */
  PB_E_NOSPACE = 14,    /* no space left (ENOSPC, EDQUOT) or file too large (EFBIG) */
  PB_E_PROTECTED = 15   /* the point is protected: unprotect it first */
};

#define PB_ERROR_MSG_MAX 1024

/* Record an error for this thread.  ERRNUM may be 0.  The message is
 * formatted like printf. */
void pb_set_error (int errclass, int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* Prefix context to the current message ("CONTEXT: old message"), keeping
 * its class and errno.  Used where a caller knows more than the callee
 * (which chunk, which point). */
void pb_prefix_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* Change the class of the current error (e.g. a missing object found while
 * restoring is PB_E_CORRUPT, not PB_E_NOTFOUND). */
void pb_set_errclass (int errclass);

const char *pb_get_error (void);   /* never NULL; "" if none */
int pb_get_errno (void);
int pb_get_errclass (void);        /* PB_E_OK if none recorded */
void pb_clear_error (void);

/* Keep the current error across clean-up that may record errors of its
 * own (releasing a lease after a failed backup). */
struct pb_saved_error {
  char msg[PB_ERROR_MSG_MAX];
  int errnum, errclass;
};
void pb_save_error (struct pb_saved_error *e);
void pb_restore_error (const struct pb_saved_error *e);

/* Short form used everywhere inside the library. */
#define set_error(cls, errnum, ...) pb_set_error ((cls), (errnum), __VA_ARGS__)

#endif /* PB_ERRORS_H */
