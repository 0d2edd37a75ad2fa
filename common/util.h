/* pullback - common/util.h: small helpers every module needs.
 *
 * Checked arithmetic for anything that came from the network or the disk,
 * hex conversion for ids, whole-buffer I/O that survives short reads and
 * EINTR, and the durable-write primitives (fsync of a directory).
 */
#ifndef PB_UTIL_H
#define PB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Overflow-checked arithmetic: return true on overflow (like the builtins). */
#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow ((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow ((a), (b), (r))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Number of CHUNK-sized pieces in SIZE (the last may be short). */
static inline uint64_t
div_round_up (uint64_t size, uint64_t chunk)
{
  return size / chunk + (size % chunk != 0);
}

static inline bool
is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* True if all LEN bytes of BUF are zero.  Fast: compares word-wise. */
bool is_zero (const void *buf, size_t len);

/* Lower-case hex of LEN bytes into OUT (2*LEN+1 bytes, NUL-terminated). */
void hex_encode (const uint8_t *in, size_t len, char *out);
/* Parse exactly 2*LEN hex digits.  Returns 0, or -1 (no error recorded). */
int hex_decode (const char *in, uint8_t *out, size_t len);

/* pread/pwrite/write the whole buffer, retrying on EINTR and short I/O.
 * Return 0 or -1 with errno set (no error recorded: callers add context).
 * full_pread fails with errno = EIO on an unexpected end of file. */
int full_pread (int fd, void *buf, size_t len, off_t off);
int full_pwrite (int fd, const void *buf, size_t len, off_t off);
int full_write (int fd, const void *buf, size_t len);

/* Read a whole (small) file into a NUL-terminated malloc'd buffer.
 * Returns 0, or -1 with an error recorded (class PB_E_IO). */
int read_file (const char *path, char **buf, size_t *len);

/* fsync the directory PATH so that a rename or create in it is durable.
 * Returns 0 or -1 with an error recorded. */
int fsync_dir (const char *path);

/* mkdir -p.  Returns 0 or -1 with an error recorded. */
int mkdir_p (const char *path, mode_t mode);
/* The same for the components of PATH after its first BELOW bytes only:
 * what lies above must exist (ENOENT otherwise), so a directory that was
 * removed or renamed is never silently made again. */
int mkdir_below (const char *path, size_t below, mode_t mode);

/* Wall clock in seconds since the epoch, and a monotonic clock in seconds
 * (for rates). */
int64_t now_epoch (void);
double now_mono (void);

/* Parse a size such as "256K", "1M", "4194304" (binary suffixes K M G T).
 * Returns 0, or -1 with an error recorded (class PB_E_USAGE). */
int parse_size (const char *str, uint64_t *out);

/* Format an epoch time as ISO 8601 UTC ("2026-11-23T18:03:00Z") into OUT
 * (at least 21 bytes). */
void format_time (int64_t t, char *out, size_t len);

/* Run ARGV[0] (searched in PATH) with ARGV, without a shell, stdin from
 * /dev/null and stdout discarded.  Returns 0 if it exited with status 0;
 * else -1 with an error (class ERRCLASS) that quotes its stderr. */
int run_command (const char *const *argv, int errclass);

/* Online CPUs, 1 to 64: the default number of worker threads. */
unsigned pb_online_cpus (void);

#endif /* PB_UTIL_H */
