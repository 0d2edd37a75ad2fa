/* pullback - store/paper.c: a master key as text a person can print and
 * type back (store_key_paper, store_key_from_paper).
 *
 * Four numbered lines, each holding 8 bytes of the key as 16 hex digits in
 * groups of four, then 2 check digits: the first byte of SHA-256 over the
 * line number (one byte) and those 8 bytes.  The check digits catch a
 * mistyped digit and name its line, and a line typed twice or swapped is
 * caught by its number.  The fingerprint line lets the reader confirm the
 * whole key.  docs/FORMAT.md part 5 describes it.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypt.h"
#include "errors.h"
#include "store.h"
#include "util.h"

#define LINES 4
#define LINE_BYTES (STORE_KEY_LEN / LINES)
#define LINE_HEX (2 * LINE_BYTES + 2)      /* key digits + check digits */

static uint8_t
check_byte (unsigned n, const uint8_t *bytes)
{
  uint8_t buf[1 + LINE_BYTES], md[32];

  buf[0] = (uint8_t) n;
  memcpy (buf + 1, bytes, LINE_BYTES);
  EVP_Digest (buf, sizeof buf, md, NULL, EVP_sha256 (), NULL);
  OPENSSL_cleanse (buf, sizeof buf);
  return md[0];
}

/* "N: xxxx xxxx xxxx xxxx  cc\n" */
static void
format_line (unsigned n, const uint8_t *bytes, char *out, size_t size)
{
  char hex[2 * LINE_BYTES + 1];

  hex_encode (bytes, LINE_BYTES, hex);
  snprintf (out, size, "%u: %.4s %.4s %.4s %.4s  %02x\n", n, hex, hex + 4,
            hex + 8, hex + 12, check_byte (n, bytes));
  OPENSSL_cleanse (hex, sizeof hex);
}

int
store_key_paper (const struct store_key *k, char **text)
{
  char lines[LINES][64], *t;
  const char *fp = k->fingerprint;
  unsigned i;
  int r;

  for (i = 0; i < LINES; i++)
    format_line (i + 1, k->master + i * LINE_BYTES, lines[i], sizeof lines[i]);
  r = asprintf (&t, "pullback paper key\n"
                "fingerprint: %.8s %.8s %.8s %.8s\n"
                "Type the four numbered lines back with 'pullback key import "
                "--paper'.\n"
                "Anyone who has this key can read every backup made with it.\n"
                "\n%s%s%s%s", fp, fp + 8, fp + 16, fp + 24,
                lines[0], lines[1], lines[2], lines[3]);
  OPENSSL_cleanse (lines, sizeof lines);
  if (r == -1) {
    set_error (PB_E_FAIL, ENOMEM, "out of memory");
    return -1;
  }
  *text = t;
  return 0;
}

/* LINE without blanks, lower-cased, into OUT (at most SIZE - 1 chars);
 * -1 if longer. */
static int
squeeze (const char *line, size_t len, char *out, size_t size)
{
  size_t i, n = 0;

  for (i = 0; i < len; i++) {
    if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')
      continue;
    if (n + 1 >= size)
      return -1;
    out[n++] = tolower ((unsigned char) line[i]);
  }
  out[n] = '\0';
  return 0;
}

struct paper {
  uint8_t master[STORE_KEY_LEN];
  bool seen[LINES];
  char fingerprint[2 * STORE_FINGERPRINT_LEN + 1];
};

/* "paper key line N: WHAT" */
static int
paper_error (unsigned n, const char *what)
{
  set_error (PB_E_KEY, 0, "paper key line %u%s%s", n,
             what[0] == ':' ? "" : " ", what);
  return -1;
}

/* One squeezed line "N:<18 hex>". */
static int
key_line (struct paper *p, const char *s)
{
  unsigned n = s[0] - '0';
  uint8_t b[LINE_BYTES + 1];

  if (p->seen[n - 1])
    return paper_error (n, "appears twice");
  if (strlen (s + 2) != LINE_HEX || hex_decode (s + 2, b, sizeof b) == -1)
    return paper_error (n, ": need 16 hex digits and 2 check digits");
  if (check_byte (n, b) != b[LINE_BYTES]) {
    OPENSSL_cleanse (b, sizeof b);
    return paper_error (n, ": the check digits do not match (typing "
                        "mistake?)");
  }
  memcpy (p->master + (n - 1) * LINE_BYTES, b, LINE_BYTES);
  OPENSSL_cleanse (b, sizeof b);
  p->seen[n - 1] = true;
  return 0;
}

static int
one_line (struct paper *p, const char *line, size_t len)
{
  char s[128];
  int r = 0;

  if (squeeze (line, len, s, sizeof s) == -1)
    return 0;                   /* too long: not one of ours */
  if (s[0] >= '1' && s[0] <= '0' + LINES && s[1] == ':')
    r = key_line (p, s);
  else if (strncmp (s, "fingerprint:", 12) == 0 &&
           strlen (s + 12) == 2 * STORE_FINGERPRINT_LEN)
    memcpy (p->fingerprint, s + 12, sizeof p->fingerprint);
  OPENSSL_cleanse (s, sizeof s);
  return r;
}

static struct store_key *
paper_key (const struct paper *p)
{
  struct store_key *k;
  unsigned i;

  for (i = 0; i < LINES; i++)
    if (!p->seen[i]) {
      paper_error (i + 1, "is missing");
      return NULL;
    }
  k = crypt_key_new (p->master);
  if (k && p->fingerprint[0] && strcmp (k->fingerprint, p->fingerprint)) {
    store_key_free (k);
    set_error (PB_E_KEY, 0, "paper key: the lines do not give the key of "
               "the fingerprint written on it");
    return NULL;
  }
  return k;
}

struct store_key *
store_key_from_paper (const char *text)
{
  struct paper p = { 0 };
  struct store_key *k = NULL;
  const char *line = text, *end;
  int r = 0;

  while (r == 0 && *line) {
    end = line + strcspn (line, "\n");
    r = one_line (&p, line, end - line);
    line = *end ? end + 1 : end;
  }
  if (r == 0)
    k = paper_key (&p);
  OPENSSL_cleanse (&p, sizeof p);
  return k;
}
