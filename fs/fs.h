/* fs.h - the model filesystem: named mounts of remote models under one FUSE mount point.
 *
 *   <mount-point>/<name>/<files of the model>
 *
 * A mount is made by listing its URI once (so sizes are exact before any byte moves); bytes
 * come on demand through the block cache (cache.h), with prefetch per mount:
 *   all  - every visible file in the background at once, small files first, then the rest
 *          in name order (the default);
 *   open - a whole file when it is first opened;
 *   none - demand reads plus a read-ahead window for sequential readers.
 * Mounts are read-only snapshots; the kernel may cache everything. The control plane adds
 * and removes mounts; the runtime's main owns the lifecycle. */
#ifndef FS_FS_H
#define FS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/names.h"
#include "../downloader/source.h"

enum fs_prefetch { FS_PREFETCH_ALL, FS_PREFETCH_OPEN, FS_PREFETCH_NONE };

/* A named mount's request: the name, the URI and how to present and fetch it. */
struct fs_mount_spec {
    char name[129];
    char uri[CM_URI_MAX];
    struct cm_filter filter; /* owned */
    enum fs_prefetch prefetch;
    struct dl_source_config creds; /* explicit credentials (may be all NULL); borrowed */
};

enum fs_mount_state {
    FS_MOUNT_LISTING,
    FS_MOUNT_READY,    /* listed; fetching only on demand */
    FS_MOUNT_FETCHING, /* listed; prefetch running */
    FS_MOUNT_FETCHED,  /* every visible file present and verified */
    FS_MOUNT_ERROR,
};

struct fs_mount_status {
    char name[129];
    char uri[CM_URI_MAX];
    enum fs_mount_state state;
    uint64_t bytes_total, bytes_cached;
    uint64_t files;
    char error[512];
};

struct fs_config {
    const char *cache_dir;
    uint64_t cache_max_bytes; /* 0: keep 10% of the cache filesystem free */
    uint64_t chunk_size;
    unsigned threads; /* connections of the fetch pool */
    /* Called after every read with its latency in seconds (the metrics exporter's read
     * histogram); NULL for none. Runs on FUSE threads: must not block. */
    void (*on_read)(void *ctx, double seconds);
    void *on_read_ctx;
};

struct fs;

/* Parse "NAME=URI[,opt=val...]" (opts: allow_file_suffix, allow_patterns, ignore_patterns,
 * whose values are ';'-separated lists, and prefetch=all|open|none). Returns 0 or -EINVAL
 * with err set. The caller frees spec->filter with cm_filter_free. */
int fs_parse_mount_spec(const char *text, struct fs_mount_spec *spec, char *err, size_t errlen);
/* Names follow ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ (SPEC §4). */
bool fs_mount_name_ok(const char *name);
const char *fs_mount_state_name(enum fs_mount_state s);

/* Create the filesystem state (cache, fetch pool). NULL with err set on failure. */
struct fs *fs_new(const struct fs_config *cfg, char *err, size_t errlen);
/* Add a named mount: list its URI (blocking), build its tree, start its prefetch. The spec's
 * filter is moved into the mount. Returns DL_OK; DL_ERR_INVALID for a bad name or URI;
 * DL_ERR_LOCAL with err "exists" when the name is taken by another URI (same URI: DL_OK);
 * otherwise the listing's status. A failed mount leaves nothing behind. */
enum dl_status fs_mount_add(struct fs *fs, struct fs_mount_spec *spec, char *err, size_t errlen);
/* Remove a named mount: it disappears from the root at once (the kernel's cached entry is
 * invalidated), its queued prefetch is taken back, and with drop_cache its cached bytes are
 * discarded (files still open keep theirs until LRU eviction). Returns 0 or -ENOENT. */
int fs_mount_remove(struct fs *fs, const char *name, bool drop_cache);
/* Status of every mount (allocated array in *out, free with free). Returns the count. */
size_t fs_mount_list(struct fs *fs, struct fs_mount_status **out);
/* True when the named mount exists; fills st. */
bool fs_mount_get(struct fs *fs, const char *name, struct fs_mount_status *st);

/* Mount the FUSE filesystem at mountpoint (cleaning a stale mount first) and serve it on
 * threads of its own. Returns 0 or a negative errno with err set. */
int fs_serve(struct fs *fs, const char *mountpoint, char *err, size_t errlen);
/* Stop: wake every blocked reader (EINTR), unmount, join the FUSE threads, stop fetching.
 * Safe to call once from any thread; fs_free afterwards. */
void fs_shutdown(struct fs *fs);
void fs_free(struct fs *fs);

/* Counters for the metrics exporter. */
struct fs_stats {
    uint64_t read_bytes; /* bytes returned to readers */
    uint64_t read_ops;
    uint64_t cache_hit_bytes, cache_miss_bytes, cache_used_bytes, cache_max_bytes;
    uint64_t cache_evictions, integrity_failures;
    uint64_t remote_retries, remote_failures; /* by source and status: fs_remote_stats */
};
void fs_get_stats(struct fs *fs, struct fs_stats *out);
/* The model sources' request counters by source and status (read with atomic loads). */
const struct dl_http_stats *fs_remote_stats(struct fs *fs);

#endif
