/* pullback - common/proc.h: who is this process, and is that one still alive?
 *
 * Writer leases in the catalog (catalog/space.c) name the process that holds
 * them, so that a lease left behind by a backup killed with SIGKILL or by a
 * power cut is recognised as stale instead of blocking its VM forever.  A
 * pid alone is not an identity (pids are reused), so a process is named by
 * host, boot id, pid and start time (in clock ticks since boot, from
 * /proc/PID/stat): the same pid started at another time, or any pid from an
 * earlier boot, is another process.
 */
#ifndef PB_PROC_H
#define PB_PROC_H

#include <stdint.h>

#define PB_HOST_MAX 256
#define PB_BOOT_ID_MAX 64

struct pb_proc_id {
  char host[PB_HOST_MAX];
  char boot_id[PB_BOOT_ID_MAX];
  int64_t pid;
  int64_t start;                /* starttime of /proc/PID/stat */
};

/* The identity of the calling process, or of running process PID.  0, or
 * -1 with an error recorded (PB_E_NOTFOUND if PID is not running). */
int pb_proc_self (struct pb_proc_id *id);
int pb_proc_of (int64_t pid, struct pb_proc_id *id);

/* 1 if ID names a process that is running now, 0 if it certainly is not
 * (same host: other boot, no such pid, or that pid started at another
 * time), 1 also when it cannot be known (another host): a lease of another
 * machine is never taken away from it. */
int pb_proc_alive (const struct pb_proc_id *id);

#endif /* PB_PROC_H */
