/* pullback - store/objstore.h: the object interface under the chunk store.
 *
 * Five operations, chosen so that a Ceph RADOS backend can implement them
 * without POSIX semantics: put a whole object atomically (readers see the
 * old object, or the new one, never a part), get a whole object, stat its
 * size, delete, and list keys by prefix; plus sync, a durability barrier.
 * Keys are relative paths of [a-z0-9._-] parts separated by '/'.
 */
#ifndef PB_OBJSTORE_H
#define PB_OBJSTORE_H

#include <stddef.h>
#include <stdint.h>

struct objstore;

struct objstore_ops {
  const char *name;
  /* Atomic replace.  Durable after sync(). */
  int (*put) (struct objstore *os, const char *key, const void *buf, size_t len);
  /* *BUF is malloc'd.  Missing: -1 with errno ENOENT (PB_E_NOTFOUND). */
  int (*get) (struct objstore *os, const char *key, void **buf, size_t *len);
  /* 1 and *SIZE if present, 0 if absent, -1 on error. */
  int (*stat) (struct objstore *os, const char *key, uint64_t *size);
  /* 0 if deleted or absent. */
  int (*del) (struct objstore *os, const char *key);
  /* Keys starting with PREFIX, any order; CB returns 0 to go on, -1 stops. */
  int (*list) (struct objstore *os, const char *prefix,
               int (*cb) (const char *key, void *opaque), void *opaque);
  int (*sync) (struct objstore *os);
  /* Optional (NULL: nothing to sweep).  Remove what interrupted puts left
   * behind (the directory backend's temporary files) last modified before
   * BEFORE (seconds since the epoch); *REMOVED = how many. */
  int (*sweep) (struct objstore *os, int64_t before, uint64_t *removed);
  void (*close) (struct objstore *os);
};

struct objstore {
  const struct objstore_ops *ops;
};

/* Local directory backend.  CREATE: make the directory (must not exist or be
 * empty).  Objects are files; put = temp file + fsync + rename; sync =
 * fsync of every directory touched since the last sync. */
struct objstore *objstore_dir_open (const char *path, int create);

#define objstore_put(os, k, b, l) ((os)->ops->put ((os), (k), (b), (l)))
#define objstore_get(os, k, b, l) ((os)->ops->get ((os), (k), (b), (l)))
#define objstore_stat(os, k, s) ((os)->ops->stat ((os), (k), (s)))
#define objstore_del(os, k) ((os)->ops->del ((os), (k)))
#define objstore_list(os, p, cb, o) ((os)->ops->list ((os), (p), (cb), (o)))
#define objstore_sync(os) ((os)->ops->sync ((os)))
#define objstore_sweep(os, t, n) ((os)->ops->sweep ((os), (t), (n)))
#define objstore_close(os) do { if (os) (os)->ops->close ((os)); } while (0)

#endif /* PB_OBJSTORE_H */
