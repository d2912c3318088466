/* cache.c - the block cache: objects, chunk states, waiting readers, eviction (see cache.h).
 *
 * Locking: c->lock guards the object table, usage and eviction; o->lock guards one object's
 * chunk states and is never held while taking c->lock. Fetch workers complete chunks through
 * chunk_done, which is the only place a chunk becomes present. */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../common/fsutil.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "../downloader/chunkmap.h"
#include "../downloader/download.h"

#define NBUCKETS 4096

enum chunk_state { CHUNK_ABSENT, CHUNK_INFLIGHT, CHUNK_PRESENT };

struct fs_object {
    struct fs_cache *cache;
    struct fs_object *next_in_bucket;
    char key[65];
    char path[PATH_MAX]; /* data file; map and marker differ in suffix */
    struct dl_source *src;
    const struct dl_entry *e;
    int fd;
    struct dl_chunkmap map;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned char *state;  /* enum chunk_state per chunk */
    unsigned char *failed; /* enum dl_status of the chunk's last failed fetch, 0 if none */
    struct dl_fetch_job *jobs;
    uint64_t cached; /* bytes of present chunks */
    unsigned inflight;
    unsigned refs;
    unsigned opened;
    int fetches; /* whole-file fetch rounds started (a mismatch starts a second) */
    bool verified, verifying;
    unsigned bad_copies;  /* copies that failed verification */
    struct cm_hash *hash; /* digest of bytes [0, hashed), taken as chunks land in order */
    uint64_t hashed;
    bool hashing;         /* a thread is reading chunks into hash */
    unsigned hash_gen;    /* bumped when the bytes are dropped: a running hasher discards */
    void *owner;          /* the filesystem's node, for fs_bad_copy_fn */
    enum dl_status error; /* integrity failure that stays */
    time_t last_used;
};

struct fs_cache {
    char dir[PATH_MAX];
    struct dl_fetch *fetch;
    uint64_t chunk;
    pthread_mutex_t lock;
    struct fs_object *buckets[NBUCKETS];
    struct fs_cache_stats stats;
    bool cancelled;
    bool evicting;
    fs_bad_copy_fn on_bad_copy;
    void *on_bad_copy_ctx;
};

/* ---- paths and keys ---------------------------------------------------------------------- */

static void object_key(const struct dl_source *src, const struct dl_entry *e, char key[65])
{
    char id[300], buf[4096 + 1024];
    dl_entry_identity(e, id, sizeof id);
    int n = snprintf(buf, sizeof buf, "%s\n%s\n%s\n%" PRIu64, src->identity, e->path, id, e->size);
    cm_sha256_hex(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, key);
}

static void sibling(const struct fs_object *o, const char *suffix, char *out, size_t outlen)
{
    size_t n = strlen(o->path) - strlen(".data");
    snprintf(out, outlen, "%.*s%s", (int)n, o->path, suffix);
}

static unsigned bucket_of(const char *key)
{
    return (unsigned)strtoul((char[4]){key[0], key[1], key[2], 0}, NULL, 16) % NBUCKETS;
}

/* ---- opening the cache ------------------------------------------------------------------- */

/* Bytes the data files under dir/objects occupy. */
static uint64_t scan_usage(const char *dir)
{
    char path[PATH_MAX];
    uint64_t total = 0;
    snprintf(path, sizeof path, "%s/objects", dir);
    DIR *top = opendir(path);
    if (!top)
        return 0;
    struct dirent *d;
    while ((d = readdir(top)) != NULL) {
        if (d->d_name[0] == '.')
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s/%s", path, d->d_name);
        DIR *inner = opendir(sub);
        if (!inner)
            continue;
        struct dirent *f;
        struct stat sb;
        while ((f = readdir(inner)) != NULL) {
            size_t n = strlen(f->d_name);
            if (n > 5 && strcmp(f->d_name + n - 5, ".data") == 0 &&
                fstatat(dirfd(inner), f->d_name, &sb, 0) == 0)
                total += (uint64_t)sb.st_blocks * 512;
        }
        closedir(inner);
    }
    closedir(top);
    return total;
}

struct fs_cache *fs_cache_open(const char *dir, uint64_t max_bytes, uint64_t chunk,
                               struct dl_fetch *fetch, char *err, size_t errlen)
{
    char objects[PATH_MAX];
    struct statvfs vfs;
    snprintf(objects, sizeof objects, "%s/objects", dir);
    int rc = cm_mkdirs(objects, 0755);
    if (rc) {
        snprintf(err, errlen, "cannot create cache directory %s: %s", objects, strerror(-rc));
        return NULL;
    }
    struct fs_cache *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    c->fetch = fetch;
    c->chunk = chunk;
    pthread_mutex_init(&c->lock, NULL);
    c->stats.bytes_used = scan_usage(dir);
    if (max_bytes == 0 && statvfs(dir, &vfs) == 0) {
        /* default: the cache may grow until 10% of its filesystem is left free */
        double avail = (double)vfs.f_bavail * vfs.f_frsize;
        double reserve = 0.10 * (double)vfs.f_blocks * vfs.f_frsize;
        double bound = (double)c->stats.bytes_used + avail - reserve;
        max_bytes = bound > 0 ? (uint64_t)bound : 0;
    }
    c->stats.bytes_max = max_bytes;
    cm_info("cache", "opened %s used=%" PRIu64 " max=%" PRIu64 " chunk=%" PRIu64, dir,
            c->stats.bytes_used, max_bytes, chunk);
    return c;
}

void fs_cache_get_stats(struct fs_cache *c, struct fs_cache_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

void fs_cache_cancel(struct fs_cache *c)
{
    pthread_mutex_lock(&c->lock);
    c->cancelled = true;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        for (struct fs_object *o = c->buckets[b]; o; o = o->next_in_bucket) {
            pthread_mutex_lock(&o->lock);
            pthread_cond_broadcast(&o->changed);
            pthread_mutex_unlock(&o->lock);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

void fs_cache_close(struct fs_cache *c)
{
    if (!c)
        return;
    for (unsigned b = 0; b < NBUCKETS; b++)
        if (c->buckets[b])
            cm_warn("cache", "closing with objects still referenced");
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Forget the running digest: the bytes it covered are being dropped. Caller holds o->lock. */
static void hash_reset_locked(struct fs_object *o)
{
    o->hash_gen++;
    if (!o->hashing) {
        cm_hash_free(o->hash);
        o->hash = NULL;
        o->hashed = 0;
    }
}

/* ---- eviction ---------------------------------------------------------------------------- */

struct victim {
    time_t when;
    char path[PATH_MAX]; /* data file */
    struct fs_object *o; /* loaded object, or NULL for one only on disk */
};

static int by_age(const void *a, const void *b)
{
    time_t x = ((const struct victim *)a)->when, y = ((const struct victim *)b)->when;
    return x < y ? -1 : x > y;
}

/* Drop the bytes of a loaded object nobody uses. Caller holds c->lock, not o->lock.
 * Returns the bytes freed. */
static uint64_t evict_loaded(struct fs_object *o)
{
    uint64_t freed = 0;
    char ok[PATH_MAX];
    pthread_mutex_lock(&o->lock);
    if (o->opened == 0 && o->inflight == 0 && !o->verifying && o->cached > 0 &&
        flock(o->fd, LOCK_EX | LOCK_NB) == 0) {
        if (ftruncate(o->fd, 0) == 0 && ftruncate(o->fd, (off_t)o->e->size) == 0 &&
            dl_chunkmap_reset(&o->map) == 0) {
            memset(o->state, CHUNK_ABSENT, o->map.nchunks);
            freed = o->cached;
            o->cached = 0;
            o->verified = false;
            hash_reset_locked(o);
            sibling(o, ".ok", ok, sizeof ok);
            unlink(ok);
        }
        flock(o->fd, LOCK_SH);
    }
    pthread_mutex_unlock(&o->lock);
    return freed;
}

/* Remove an object that only exists on disk, unless another runtime holds it. */
static uint64_t evict_on_disk(const char *data)
{
    struct stat sb;
    char other[PATH_MAX];
    uint64_t freed = 0;
    int fd = open(data, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &sb) == 0) {
        size_t n = strlen(data) - strlen(".data");
        snprintf(other, sizeof other, "%.*s.map", (int)n, data);
        unlink(other);
        snprintf(other, sizeof other, "%.*s.ok", (int)n, data);
        unlink(other);
        unlink(data);
        freed = (uint64_t)sb.st_blocks * 512;
    }
    close(fd);
    return freed;
}

static struct fs_object *find_locked(struct fs_cache *c, const char *key)
{
    for (struct fs_object *o = c->buckets[bucket_of(key)]; o; o = o->next_in_bucket)
        if (strcmp(o->key, key) == 0)
            return o;
    return NULL;
}

/* Collect every object in the cache directory as an eviction candidate. */
static size_t collect_victims(struct fs_cache *c, struct victim **out)
{
    char path[PATH_MAX];
    size_t n = 0, cap = 0;
    struct victim *v = NULL;
    snprintf(path, sizeof path, "%s/objects", c->dir);
    DIR *top = opendir(path);
    struct dirent *d;
    while (top && (d = readdir(top)) != NULL) {
        char sub[PATH_MAX];
        if (d->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, d->d_name);
        DIR *inner = opendir(sub);
        struct dirent *f;
        while (inner && (f = readdir(inner)) != NULL) {
            size_t len = strlen(f->d_name);
            struct stat sb;
            if (len != 64 + 5 || strcmp(f->d_name + 64, ".data") != 0 ||
                fstatat(dirfd(inner), f->d_name, &sb, 0) != 0 || sb.st_blocks == 0)
                continue;
            if (n == cap) {
                struct victim *grown = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof *v);
                if (!grown)
                    break;
                v = grown;
            }
            char key[65];
            memcpy(key, f->d_name, 64);
            key[64] = '\0';
            v[n].o = find_locked(c, key);
            v[n].when = v[n].o ? v[n].o->last_used : sb.st_mtime;
            snprintf(v[n].path, sizeof v[n].path, "%s/%s", sub, f->d_name);
            n++;
        }
        if (inner)
            closedir(inner);
    }
    if (top)
        closedir(top);
    *out = v;
    return n;
}

/* Bring usage under 90% of the bound, least recently used first. */
static void evict(struct fs_cache *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->evicting || c->stats.bytes_used <= c->stats.bytes_max) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->evicting = true;
    struct victim *v;
    size_t n = collect_victims(c, &v);
    if (n > 1)
        qsort(v, n, sizeof *v, by_age);
    uint64_t target = c->stats.bytes_max / 10 * 9;
    for (size_t i = 0; i < n && c->stats.bytes_used > target; i++) {
        uint64_t freed = v[i].o ? evict_loaded(v[i].o) : evict_on_disk(v[i].path);
        if (!freed)
            continue;
        c->stats.bytes_used = c->stats.bytes_used > freed ? c->stats.bytes_used - freed : 0;
        c->stats.evictions++;
    }
    if (c->stats.bytes_used > c->stats.bytes_max)
        cm_warn("cache", "over its bound: used=%" PRIu64 " max=%" PRIu64 " (files in use)",
                c->stats.bytes_used, c->stats.bytes_max);
    free(v);
    c->evicting = false;
    pthread_mutex_unlock(&c->lock);
}

/* ---- chunks ------------------------------------------------------------------------------ */

static int sink_pwrite(void *ctx, uint64_t off, const void *data, size_t len)
{
    struct fs_object *o = ctx;
    return cm_pwrite_all(o->fd, data, len, off);
}

static void chunk_done(struct dl_fetch_job *job, enum dl_status st, const char *err);

/* Queue chunk i at prio. Caller holds o->lock; the chunk is absent. */
static void submit_chunk(struct fs_object *o, uint64_t i, enum dl_prio prio)
{
    struct dl_fetch_job *j = &o->jobs[i];
    *j = (struct dl_fetch_job){
        .src = o->src,
        .entry = o->e,
        .off = i * o->map.chunk,
        .len = dl_chunkmap_len(&o->map, i),
        .sink = sink_pwrite,
        .sink_ctx = o,
        .done = chunk_done,
        .user = o,
        .prio = prio,
    };
    o->state[i] = CHUNK_INFLIGHT;
    o->failed[i] = DL_OK;
    o->inflight++;
    o->refs++; /* a queued chunk keeps its object alive */
    dl_fetch_submit(o->cache->fetch, j);
}

/* Start fetching every chunk again after the first copy failed verification. Caller holds
 * o->lock. */
static void refetch_all(struct fs_object *o, uint64_t *dropped)
{
    char ok[PATH_MAX];
    *dropped = o->cached;
    o->cached = 0;
    o->fetches++;
    hash_reset_locked(o);
    sibling(o, ".ok", ok, sizeof ok);
    unlink(ok);
    if (dl_chunkmap_reset(&o->map) != 0 || ftruncate(o->fd, 0) != 0 ||
        ftruncate(o->fd, (off_t)o->e->size) != 0) {
        o->error = DL_ERR_LOCAL;
        return;
    }
    memset(o->state, CHUNK_ABSENT, o->map.nchunks);
    for (uint64_t i = 0; i < o->map.nchunks; i++)
        submit_chunk(o, i, DL_PRIO_BACKGROUND);
}

/* Hash, in file order, the present chunks from o->hashed on, so that verifying a complete file
 * costs about one chunk rather than the whole file. Caller holds o->lock; it is released while
 * reading. One thread hashes an object at a time; others return at once. */
static void hash_ahead_locked(struct fs_object *o)
{
    if (o->hashing || o->e->digest_kind == CM_HASH_NONE || o->verified)
        return;
    if (!o->hash && !(o->hash = cm_hash_new(o->e->digest_kind, o->e->size)))
        return;
    o->hashing = true;
    while (o->hashed < o->e->size) {
        uint64_t i = o->hashed / o->map.chunk;
        if (o->state[i] != CHUNK_PRESENT)
            break;
        uint64_t off = o->hashed, len = dl_chunkmap_len(&o->map, i);
        unsigned gen = o->hash_gen;
        struct cm_hash *h = o->hash;
        pthread_mutex_unlock(&o->lock);
        bool ok = cm_hash_fd(h, o->fd, off, len) == 0;
        pthread_mutex_lock(&o->lock);
        if (gen != o->hash_gen || !ok) {
            /* the bytes were dropped meanwhile (or unreadable): start over later */
            cm_hash_free(o->hash);
            o->hash = NULL;
            o->hashed = 0;
            break;
        }
        o->hashed += len;
    }
    o->hashing = false;
    pthread_cond_broadcast(&o->changed);
}

/* The verdict on a complete object: the running digest when it covers the file, else a full
 * read of the file. Caller holds o->lock (released while reading). */
static enum dl_status check_digest_locked(struct fs_object *o, char *err, size_t errlen)
{
    char got[65];
    if (o->e->digest_kind == CM_HASH_NONE)
        return DL_OK;
    while (o->hashing)
        pthread_cond_wait(&o->changed, &o->lock);
    hash_ahead_locked(o);
    if (o->hash && o->hashed == o->e->size) {
        cm_hash_final(o->hash, got);
        cm_hash_free(o->hash);
        o->hash = NULL;
        o->hashed = 0;
        return dl_digest_check(o->e, got, err, errlen);
    }
    pthread_mutex_unlock(&o->lock);
    enum dl_status st = dl_verify_file(o->fd, o->e, err, errlen);
    pthread_mutex_lock(&o->lock);
    return st;
}

/* Verify a complete object. Caller holds o->lock; it is released while hashing. Returns the
 * bytes dropped by a failed verification (the caller updates the cache's usage once it no
 * longer holds o->lock: the lock order is cache before object). */
static uint64_t verify_locked(struct fs_object *o, bool *failed)
{
    char err[512], ok[PATH_MAX];
    uint64_t dropped = 0;
    *failed = false;
    o->verifying = true;
    enum dl_status st = check_digest_locked(o, err, sizeof err);
    o->verifying = false;
    if (st == DL_OK) {
        o->verified = true;
        sibling(o, ".ok", ok, sizeof ok);
        int fd = open(ok, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
        return 0;
    }
    *failed = true;
    if (st == DL_ERR_INTEGRITY)
        o->bad_copies++;
    if (st == DL_ERR_INTEGRITY && o->fetches < 2) {
        cm_warn("cache", "integrity check failed, fetching again: %s", err);
        refetch_all(o, &dropped);
    } else {
        cm_error("cache", "integrity check failed twice, reads give EIO: %s", err);
        o->error = st;
    }
    return dropped;
}

struct bad_copy_note {
    fs_bad_copy_fn fn;
    void *ctx, *owner;
};

static void *bad_copy_thread(void *arg)
{
    struct bad_copy_note *n = arg;
    n->fn(n->ctx, n->owner);
    free(n);
    return NULL;
}

/* Account for a verification done under o->lock, after releasing it, and tell the owner. The
 * owner's hook runs on a thread of its own: dropping the kernel's pages can wait for reads of
 * the same file, which may wait for fetches this very thread is needed for. */
static void account_verify(struct fs_object *o, bool failed, uint64_t dropped)
{
    struct fs_cache *c = o->cache;
    if (!failed)
        return;
    pthread_mutex_lock(&c->lock);
    c->stats.integrity_failures++;
    c->stats.bytes_used -= dropped < c->stats.bytes_used ? dropped : c->stats.bytes_used;
    fs_bad_copy_fn fn = c->on_bad_copy;
    void *ctx = c->on_bad_copy_ctx;
    pthread_mutex_unlock(&c->lock);
    struct bad_copy_note *n = fn && o->owner ? malloc(sizeof *n) : NULL;
    pthread_t t;
    if (!n)
        return;
    *n = (struct bad_copy_note){.fn = fn, .ctx = ctx, .owner = o->owner};
    if (pthread_create(&t, NULL, bad_copy_thread, n) == 0)
        pthread_detach(t);
    else
        free(n);
}

static void chunk_done(struct dl_fetch_job *job, enum dl_status st, const char *err)
{
    struct fs_object *o = job->user;
    struct fs_cache *c = o->cache;
    uint64_t i = (uint64_t)(job - o->jobs);
    bool grew = false, bad = false;
    uint64_t dropped = 0;

    pthread_mutex_lock(&o->lock);
    o->inflight--;
    if (st == DL_OK) {
        int rc = dl_chunkmap_set(&o->map, i);
        if (rc)
            cm_warn("cache", "cannot record chunk %" PRIu64 " of %s: %s", i, o->e->path,
                    strerror(-rc));
        o->state[i] = CHUNK_PRESENT;
        o->cached += job->len;
        grew = true;
        if (o->cached == o->e->size && !o->verified && !o->verifying)
            dropped = verify_locked(o, &bad);
        else if (o->cached < o->e->size)
            hash_ahead_locked(o);
    } else {
        o->state[i] = CHUNK_ABSENT;
        o->failed[i] = (unsigned char)st;
        if (st != DL_ERR_CANCELLED)
            cm_error("cache", "fetch failed: %s (%s)", err, dl_status_name(st));
    }
    pthread_cond_broadcast(&o->changed);
    pthread_mutex_unlock(&o->lock);

    account_verify(o, bad, dropped);
    if (grew) {
        pthread_mutex_lock(&c->lock);
        c->stats.bytes_used += job->len;
        c->stats.fetched_bytes += job->len;
        bool over = c->stats.bytes_used > c->stats.bytes_max;
        pthread_mutex_unlock(&c->lock);
        if (over)
            evict(c);
    }
    fs_object_put(o);
}

static int status_errno(enum dl_status st)
{
    if (st == DL_ERR_STALE)
        return -ESTALE;
    if (st == DL_ERR_CANCELLED)
        return -EINTR;
    return -EIO;
}

/* Queue the absent chunks of [first, last] at prio, promote queued ones. Caller holds
 * o->lock. */
static void request_chunks(struct fs_object *o, uint64_t first, uint64_t last, enum dl_prio prio)
{
    for (uint64_t i = first; i <= last; i++) {
        if (o->state[i] == CHUNK_PRESENT)
            continue;
        if (o->state[i] == CHUNK_INFLIGHT) {
            dl_fetch_promote(o->cache->fetch, &o->jobs[i], prio);
            continue;
        }
        if (dl_chunkmap_reload(&o->map, i)) {
            /* another runtime sharing the cache fetched it */
            o->state[i] = CHUNK_PRESENT;
            o->cached += dl_chunkmap_len(&o->map, i);
            continue;
        }
        submit_chunk(o, i, prio);
    }
}

int fs_object_ensure(struct fs_object *o, uint64_t off, uint64_t len, enum dl_prio prio)
{
    struct fs_cache *c = o->cache;
    if (len == 0 || off >= o->e->size)
        return 0;
    if (off + len > o->e->size)
        len = o->e->size - off;
    uint64_t first = off / o->map.chunk, last = (off + len - 1) / o->map.chunk;
    bool missed = false;
    int rc = 0;

    pthread_mutex_lock(&o->lock);
    o->last_used = time(NULL);
    if (o->error != DL_OK) {
        pthread_mutex_unlock(&o->lock);
        return -EIO;
    }
    for (uint64_t i = first; i <= last; i++)
        missed |= o->state[i] != CHUNK_PRESENT;
    if (missed)
        request_chunks(o, first, last, prio);
    for (;;) {
        bool waiting = false;
        for (uint64_t i = first; i <= last && !rc; i++) {
            if (o->state[i] == CHUNK_PRESENT)
                continue;
            if (o->state[i] == CHUNK_ABSENT && o->failed[i] != DL_OK)
                rc = status_errno((enum dl_status)o->failed[i]);
            else if (o->state[i] == CHUNK_ABSENT)
                submit_chunk(o, i, prio); /* dropped by a refetch after a bad copy */
            waiting = true;
        }
        if (o->error != DL_OK)
            rc = -EIO;
        /* the file is complete and being verified: a read now waits for the verdict, so a
         * sequential reader never finishes a file whose digest does not match. After a bad
         * copy, reads wait for the whole second copy to verify: otherwise a reader whose
         * chunks land first could finish the file before the chunk that decides it */
        bool whole = o->fetches > 1 && !o->verified;
        waiting |= o->verifying || whole;
        for (uint64_t i = 0; whole && !rc && i < o->map.nchunks; i++) {
            if (o->state[i] == CHUNK_ABSENT && o->failed[i] != DL_OK)
                rc = status_errno((enum dl_status)o->failed[i]);
            else if (o->state[i] == CHUNK_ABSENT)
                submit_chunk(o, i, prio);
        }
        if (rc || !waiting)
            break;
        if (__atomic_load_n(&c->cancelled, __ATOMIC_ACQUIRE)) {
            rc = -EINTR;
            break;
        }
        pthread_cond_wait(&o->changed, &o->lock);
    }
    pthread_mutex_unlock(&o->lock);

    pthread_mutex_lock(&c->lock);
    if (missed)
        c->stats.miss_bytes += len;
    else
        c->stats.hit_bytes += len;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void fs_object_prefetch(struct fs_object *o, uint64_t off, uint64_t len, enum dl_prio prio)
{
    if (len == 0 || off >= o->e->size)
        return;
    if (off + len > o->e->size)
        len = o->e->size - off;
    pthread_mutex_lock(&o->lock);
    if (o->error == DL_OK && !o->cache->cancelled)
        request_chunks(o, off / o->map.chunk, (off + len - 1) / o->map.chunk, prio);
    pthread_mutex_unlock(&o->lock);
}

/* ---- objects ----------------------------------------------------------------------------- */

static void object_free(struct fs_object *o)
{
    if (o->fd >= 0)
        close(o->fd); /* drops the shared flock */
    dl_chunkmap_close(&o->map);
    cm_hash_free(o->hash);
    free(o->state);
    free(o->failed);
    free(o->jobs);
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->changed);
    free(o);
}

/* Open the data file and map of a new object. */
static int object_load(struct fs_object *o, uint64_t chunk)
{
    char id[300], mapfile[PATH_MAX], ok[PATH_MAX];
    bool reused;
    struct stat sb;
    int rc = cm_mkdirs_parent(o->path, 0755);
    if (rc)
        return rc;
    o->fd = open(o->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (o->fd < 0)
        return -errno;
    flock(o->fd, LOCK_SH);
    dl_entry_identity(o->e, id, sizeof id);
    sibling(o, ".map", mapfile, sizeof mapfile);
    if ((rc = dl_chunkmap_open(&o->map, mapfile, id, o->e->size, chunk, false, &reused)) != 0)
        return rc;
    if (fstat(o->fd, &sb) != 0)
        return -errno;
    if (!reused || (uint64_t)sb.st_size != o->e->size) {
        if ((reused && (rc = dl_chunkmap_reset(&o->map)) != 0) ||
            ftruncate(o->fd, (off_t)o->e->size) != 0)
            return rc ? rc : -errno;
    }
    uint64_t n = o->map.nchunks ? o->map.nchunks : 1;
    o->state = calloc(n, 1);
    o->failed = calloc(n, 1);
    o->jobs = calloc(n, sizeof *o->jobs);
    if (!o->state || !o->failed || !o->jobs)
        return -ENOMEM;
    for (uint64_t i = 0; i < o->map.nchunks; i++) {
        if (o->map.flags[i] == '1') {
            o->state[i] = CHUNK_PRESENT;
            o->cached += dl_chunkmap_len(&o->map, i);
        }
    }
    sibling(o, ".ok", ok, sizeof ok);
    o->verified = o->cached == o->e->size && access(ok, F_OK) == 0;
    o->fetches = 1;
    return 0;
}

struct fs_object *fs_object_get(struct fs_cache *c, struct dl_source *src, const struct dl_entry *e,
                                char *err, size_t errlen)
{
    char key[65];
    object_key(src, e, key);
    pthread_mutex_lock(&c->lock);
    struct fs_object *o = find_locked(c, key);
    if (o) {
        pthread_mutex_lock(&o->lock);
        o->refs++;
        pthread_mutex_unlock(&o->lock);
        pthread_mutex_unlock(&c->lock);
        return o;
    }
    o = calloc(1, sizeof *o);
    if (!o) {
        pthread_mutex_unlock(&c->lock);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->cache = c;
    o->src = src;
    o->e = e;
    o->fd = -1;
    o->map.fd = -1;
    o->refs = 1;
    o->last_used = time(NULL);
    memcpy(o->key, key, sizeof key);
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->changed, NULL);
    snprintf(o->path, sizeof o->path, "%s/objects/%.2s/%s.data", c->dir, key, key);
    int rc = object_load(o, c->chunk);
    if (rc) {
        pthread_mutex_unlock(&c->lock);
        snprintf(err, errlen, "cache object for %s: %s", e->path, strerror(-rc));
        object_free(o);
        return NULL;
    }
    unsigned b = bucket_of(key);
    o->next_in_bucket = c->buckets[b];
    c->buckets[b] = o;
    pthread_mutex_unlock(&c->lock);

    /* complete on disk but never verified (a crash right after the last chunk) */
    bool bad = false;
    uint64_t dropped = 0;
    pthread_mutex_lock(&o->lock);
    if (o->cached == e->size && !o->verified && !o->verifying)
        dropped = verify_locked(o, &bad);
    pthread_mutex_unlock(&o->lock);
    account_verify(o, bad, dropped);
    return o;
}

void fs_object_put(struct fs_object *o)
{
    struct fs_cache *c = o->cache;
    pthread_mutex_lock(&c->lock);
    pthread_mutex_lock(&o->lock);
    bool last = --o->refs == 0;
    pthread_mutex_unlock(&o->lock);
    if (last) {
        struct fs_object **pp = &c->buckets[bucket_of(o->key)];
        while (*pp && *pp != o)
            pp = &(*pp)->next_in_bucket;
        if (*pp)
            *pp = o->next_in_bucket;
    }
    pthread_mutex_unlock(&c->lock);
    if (last)
        object_free(o);
}

void fs_object_open(struct fs_object *o)
{
    pthread_mutex_lock(&o->lock);
    o->opened++;
    o->last_used = time(NULL);
    pthread_mutex_unlock(&o->lock);
}

void fs_object_release(struct fs_object *o)
{
    pthread_mutex_lock(&o->lock);
    if (o->opened)
        o->opened--;
    o->last_used = time(NULL);
    pthread_mutex_unlock(&o->lock);
}

int fs_object_fd(const struct fs_object *o)
{
    return o->fd;
}

uint64_t fs_object_cached_bytes(struct fs_object *o)
{
    pthread_mutex_lock(&o->lock);
    uint64_t n = o->cached;
    pthread_mutex_unlock(&o->lock);
    return n;
}

bool fs_object_complete(struct fs_object *o)
{
    pthread_mutex_lock(&o->lock);
    bool done = o->verified;
    pthread_mutex_unlock(&o->lock);
    return done;
}

enum dl_status fs_object_error(struct fs_object *o)
{
    pthread_mutex_lock(&o->lock);
    enum dl_status st = o->error;
    pthread_mutex_unlock(&o->lock);
    return st;
}

void fs_object_quiesce(struct fs_object *o, bool drop)
{
    struct fs_cache *c = o->cache;
    unsigned taken = 0;
    pthread_mutex_lock(&o->lock);
    for (uint64_t i = 0; i < o->map.nchunks; i++) {
        if (o->state[i] == CHUNK_INFLIGHT && dl_fetch_unqueue(c->fetch, &o->jobs[i])) {
            o->state[i] = CHUNK_ABSENT;
            o->inflight--;
            taken++;
        }
    }
    pthread_mutex_unlock(&o->lock);
    /* every queued chunk held a reference; the caller still holds its own */
    for (unsigned i = 0; i < taken; i++)
        fs_object_put(o);
    if (!drop)
        return;
    pthread_mutex_lock(&c->lock);
    uint64_t freed = evict_loaded(o);
    c->stats.bytes_used -= freed < c->stats.bytes_used ? freed : c->stats.bytes_used;
    pthread_mutex_unlock(&c->lock);
}

enum dl_status fs_object_chunk_failure(struct fs_object *o)
{
    enum dl_status st = DL_OK;
    pthread_mutex_lock(&o->lock);
    for (uint64_t i = 0; i < o->map.nchunks && st == DL_OK; i++)
        if (o->state[i] == CHUNK_ABSENT && o->failed[i] != DL_OK &&
            o->failed[i] != DL_ERR_CANCELLED)
            st = (enum dl_status)o->failed[i];
    pthread_mutex_unlock(&o->lock);
    return st;
}

unsigned fs_object_bad_copies(struct fs_object *o)
{
    pthread_mutex_lock(&o->lock);
    unsigned n = o->bad_copies;
    pthread_mutex_unlock(&o->lock);
    return n;
}

void fs_cache_on_bad_copy(struct fs_cache *c, fs_bad_copy_fn fn, void *ctx)
{
    pthread_mutex_lock(&c->lock);
    c->on_bad_copy = fn;
    c->on_bad_copy_ctx = ctx;
    pthread_mutex_unlock(&c->lock);
}

void fs_object_set_owner(struct fs_object *o, void *owner)
{
    pthread_mutex_lock(&o->lock);
    o->owner = owner;
    pthread_mutex_unlock(&o->lock);
}
