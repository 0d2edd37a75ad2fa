/* pullback - common/test.h: assertions shared by the C unit tests.
 *
 * Each test program is one translation unit including this header.  Two
 * styles, both printing where a failure happened and the library's last
 * error (the first thing one wants to see when a test breaks):
 *  - check (ok, fmt, ...) / CHECK (cond, fmt, ...): one line per assertion,
 *    failures counted, the program goes on; test_summary () ends it;
 *  - REQUIRE (cond): stop at the first failure (for tests whose later
 *    steps make no sense once one has failed).
 */
#ifndef PB_TEST_H
#define PB_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "errors.h"

static int test_failures;

static inline void __attribute__ ((format (printf, 2, 3)))
check (bool ok, const char *fmt, ...)
{
  va_list ap;

  printf ("%s: ", ok ? "ok" : "FAIL");
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  if (!ok) {
    printf (" (last error: class %d: %s)", pb_get_errclass (), pb_get_error ());
    test_failures++;
  }
  printf ("\n");
}

#define CHECK(cond, ...) check ((cond), __VA_ARGS__)

#define REQUIRE(cond)                                                   \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "%s:%d: FAIL: %s\n  last error: [%d] %s\n",     \
               __FILE__, __LINE__, #cond, pb_get_errclass (),           \
               pb_get_error ());                                        \
      exit (1);                                                         \
    }                                                                   \
  } while (0)

/* Print the summary line; the program's exit status. */
static inline int
test_summary (void)
{
  printf ("%s: %d failure(s)\n", test_failures ? "FAIL" : "PASS",
          test_failures);
  return test_failures ? 1 : 0;
}

#endif /* PB_TEST_H */
