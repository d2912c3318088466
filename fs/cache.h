/* cache.h - the persistent block cache under --cache-dir.
 *
 * Each remote file version is one object, keyed by content identity (source identity such as
 * HF repo@commit or endpoint/bucket/prefix, the path, and the ETag or digest). On disk an
 * object is a sparse data file plus a chunk map (downloader/chunkmap.h), and an ".ok" marker
 * once the whole file was verified:
 *     <cache-dir>/objects/<key[0..1]>/<key>.data | .map | .ok
 * A chunk is marked in the map only after its bytes are written, so a kill -9 at any moment
 * never serves garbage after a restart, and a restart reuses every marked chunk.
 *
 * In memory, each chunk is absent, in flight or present. A reader that needs an absent chunk
 * queues it at demand priority (or promotes it if prefetch already queued it) and sleeps on
 * the object until it lands; a chunk is fetched once however many readers wait for it.
 *
 * Sharing: every loaded object holds a shared flock on its data file; eviction takes an
 * exclusive one without waiting and skips busy objects, so two runtimes on one cache
 * directory never drop bytes the other is serving. Before fetching a chunk the map is re-read,
 * so a chunk the other runtime fetched is not fetched again.
 *
 * Eviction: LRU over objects nobody has open, when the cache grows past max_bytes, down to 90%
 * of it (so it does not run on every chunk). */
#ifndef FS_CACHE_H
#define FS_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "../downloader/fetch.h"
#include "../downloader/source.h"

struct fs_cache;
struct fs_object;

struct fs_cache_stats {
    uint64_t bytes_used; /* bytes of present chunks on disk (this process' view) */
    uint64_t bytes_max;
    uint64_t hit_bytes;     /* bytes read that were already present */
    uint64_t miss_bytes;    /* bytes read that had to be fetched first */
    uint64_t fetched_bytes; /* bytes written by fetches */
    uint64_t evictions;     /* objects evicted */
    uint64_t integrity_failures;
};

/* Open (create) the cache in dir. max_bytes 0 means: keep 10% of the filesystem free.
 * chunk is the chunk size in bytes. fetch is borrowed. NULL with err set on failure. */
struct fs_cache *fs_cache_open(const char *dir, uint64_t max_bytes, uint64_t chunk,
                               struct dl_fetch *fetch, char *err, size_t errlen);
/* Wake every waiter with -EINTR and stop accepting fetches (shutdown). */
void fs_cache_cancel(struct fs_cache *c);
/* Free everything. Every object must have been put. */
void fs_cache_close(struct fs_cache *c);
void fs_cache_get_stats(struct fs_cache *c, struct fs_cache_stats *out);

/* The object for entry e of src, created or loaded from disk; one reference for the caller.
 * src and e must outlive the object. NULL with err set on failure. */
struct fs_object *fs_object_get(struct fs_cache *c, struct dl_source *src, const struct dl_entry *e,
                                char *err, size_t errlen);
void fs_object_put(struct fs_object *o);

/* A file handle opened / released on the object (objects with open handles are not
 * evicted). */
void fs_object_open(struct fs_object *o);
void fs_object_release(struct fs_object *o);

/* Make bytes [off, off+len) present, fetching what is missing at prio, and wait. Returns 0,
 * -EIO (remote failure after retries, integrity failure twice), -ESTALE (changed remotely),
 * or -EINTR (shutdown). */
int fs_object_ensure(struct fs_object *o, uint64_t off, uint64_t len, enum dl_prio prio);
/* Queue every missing chunk of [off, off+len) at prio without waiting. */
void fs_object_prefetch(struct fs_object *o, uint64_t off, uint64_t len, enum dl_prio prio);
/* The data file, for pread / splice of present ranges. */
int fs_object_fd(const struct fs_object *o);
uint64_t fs_object_cached_bytes(struct fs_object *o);
/* Every chunk present and the whole file verified. */
bool fs_object_complete(struct fs_object *o);
/* Take back every chunk of o still waiting in the fetch queue (its mount went away). When
 * drop is true, also discard its cached bytes unless a file handle has it open. */
void fs_object_quiesce(struct fs_object *o, bool drop);
/* How many copies of o failed verification so far. A reader that started before the count
 * last changed may hold bytes of a bad copy. */
unsigned fs_object_bad_copies(struct fs_object *o);
/* Called (on a thread of its own, without any cache lock) after a copy of an object failed
 * verification, with the owner set by fs_object_set_owner: the filesystem drops the kernel's
 * cached pages of that file. */
typedef void (*fs_bad_copy_fn)(void *ctx, void *owner);
void fs_cache_on_bad_copy(struct fs_cache *c, fs_bad_copy_fn fn, void *ctx);
void fs_object_set_owner(struct fs_object *o, void *owner);
/* The status of the last failed chunk fetch that nothing has retried yet (DL_OK when none). */
enum dl_status fs_object_chunk_failure(struct fs_object *o);
/* The status of the last failure (DL_OK when none): an integrity failure that stays. */
enum dl_status fs_object_error(struct fs_object *o);

#endif
