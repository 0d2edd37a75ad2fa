/* pullback - common/cleanup.h: scope-bound cleanup for locals.
 *
 * As in nbdkit and libnbd: a local declared CLEANUP_FREE is freed when it
 * goes out of scope, so early returns on error paths cannot leak.  The
 * scoped lock releases a pthread mutex at the end of the block.
 */
#ifndef PB_CLEANUP_H
#define PB_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>

void cleanup_free (void *ptr);
void cleanup_close (int *fd);
void cleanup_unlock (pthread_mutex_t **ptr);

#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))

#define PB_CONCAT_(a, b) a##b
#define PB_CONCAT(a, b) PB_CONCAT_ (a, b)
#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(mutex)                           \
  __attribute__ ((cleanup (cleanup_unlock)))                            \
  pthread_mutex_t *PB_CONCAT (_lock, __LINE__) = (mutex);               \
  pthread_mutex_lock (PB_CONCAT (_lock, __LINE__))

#endif /* PB_CLEANUP_H */
