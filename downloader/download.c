/* download.c - a listing into a directory: skip, resume, fetch, verify, rename (download.h).
 *
 * Workers only write bytes and tick chunk records; everything that decides a file's fate
 * (verification, retry after a mismatch, rename, metadata) runs on the calling thread, which
 * drains a queue of files whose last chunk has landed. So there is one place where a file
 * can become visible, and it is after verification. */
#include "download.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/fsutil.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "chunkmap.h"

struct run;

struct file_task {
    struct run *run;
    const struct dl_entry *e;
    char dest[PATH_MAX], part[PATH_MAX], record[PATH_MAX], meta[PATH_MAX];
    int fd;
    struct dl_chunkmap map; /* which chunks of .part are written */
    uint64_t nchunks;
    struct dl_fetch_job *jobs;
    atomic_uint_fast64_t left; /* chunks still in flight */
    enum dl_status st;         /* first chunk failure (under run->lock) */
    char err[512];
    int fetches; /* how many times the whole file was fetched (1 or 2) */
    struct file_task *next_done;
};

struct run {
    struct dl_source *src;
    struct dl_fetch *fetch;
    const struct dl_download_opts *opts;
    struct dl_progress *progress;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct file_task *done; /* files whose chunks all finished, to finalize */
};

/* ---- verification ------------------------------------------------------------------------ */

enum dl_status dl_verify_file(int fd, const struct dl_entry *e, char *err, size_t errlen)
{
    char got[65];
    if (e->digest_kind == CM_HASH_NONE)
        return DL_OK;
    struct cm_hash *h = cm_hash_new(e->digest_kind, e->size);
    int rc = h ? cm_hash_fd(h, fd, 0, UINT64_MAX) : -ENOMEM;
    if (rc) {
        cm_hash_free(h);
        snprintf(err, errlen, "%s: read while verifying: %s", e->path, strerror(-rc));
        return DL_ERR_LOCAL;
    }
    cm_hash_final(h, got);
    cm_hash_free(h);
    return dl_digest_check(e, got, err, errlen);
}

enum dl_status dl_digest_check(const struct dl_entry *e, const char *got, char *err, size_t errlen)
{
    static const char *const kind_names[] = {"none", "sha256", "git-sha1", "md5", "crc64ecma"};
    if (strcmp(got, e->digest) == 0)
        return DL_OK;
    snprintf(err, errlen, "%s: %s mismatch: expected %s, got %s", e->path,
             kind_names[e->digest_kind], e->digest, got);
    return DL_ERR_INTEGRITY;
}

/* ---- the part file and its chunk map ------------------------------------------------- */

/* Open the chunk map and the sparse .part file. A map made for another size, chunk size or
 * version of the file is started afresh, and so is the part file. */
static int open_part(struct file_task *t, uint64_t chunk)
{
    char id[300];
    bool reuse;
    struct stat sb;
    dl_entry_identity(t->e, id, sizeof id);
    int rc =
        dl_chunkmap_open(&t->map, t->record, id, t->e->size, chunk, t->run->opts->force, &reuse);
    if (rc)
        return rc;
    reuse = reuse && stat(t->part, &sb) == 0 && (uint64_t)sb.st_size == t->e->size;
    if (!reuse) {
        if ((rc = dl_chunkmap_reset(&t->map)) != 0)
            return rc;
        unlink(t->part);
    }
    t->fd = open(t->part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->fd < 0)
        return -errno;
    /* sparse: chunks land at their offsets in any order */
    if (!reuse && ftruncate(t->fd, (off_t)t->e->size) != 0)
        return -errno;
    return 0;
}

static int sink_pwrite(void *ctx, uint64_t off, const void *data, size_t len)
{
    struct file_task *t = ctx;
    return cm_pwrite_all(t->fd, data, len, off);
}

static void chunk_done(struct dl_fetch_job *job, enum dl_status st, const char *err)
{
    struct file_task *t = job->user;
    struct run *r = t->run;
    uint64_t idx = (uint64_t)(job - t->jobs);

    if (st == DL_OK) {
        /* the flag is written after the chunk's bytes: a crash between them refetches the
         * chunk, never trusts one that was not written */
        int rc = dl_chunkmap_set(&t->map, idx);
        if (rc)
            cm_warn("download", "cannot update chunk record of %s: %s", t->e->path, strerror(-rc));
        atomic_fetch_add(&r->progress->bytes_done, job->len);
    }
    pthread_mutex_lock(&r->lock);
    if (st != DL_OK && t->st == DL_OK) {
        t->st = st;
        snprintf(t->err, sizeof t->err, "%s", err);
    }
    if (atomic_fetch_sub(&t->left, 1) == 1) {
        t->next_done = r->done;
        r->done = t;
        pthread_cond_signal(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
}

/* Queue every chunk the map does not have. Returns how many were queued. */
static uint64_t submit_missing(struct file_task *t)
{
    const char *flags = t->map.flags;
    uint64_t missing = t->nchunks - dl_chunkmap_count(&t->map);
    atomic_store(&t->left, missing);
    for (uint64_t i = 0; i < t->nchunks; i++) {
        if (flags[i] == '1')
            continue;
        struct dl_fetch_job *j = &t->jobs[i];
        *j = (struct dl_fetch_job){
            .src = t->run->src,
            .entry = t->e,
            .off = i * t->map.chunk,
            .len = dl_chunkmap_len(&t->map, i),
            .sink = sink_pwrite,
            .sink_ctx = t,
            .done = chunk_done,
            .user = t,
            .prio = DL_PRIO_BACKGROUND,
        };
        dl_fetch_submit(t->run->fetch, j);
    }
    return missing;
}

/* ---- per-file planning and finishing ----------------------------------------------------- */

static bool already_there(const struct file_task *t)
{
    struct stat sb;
    char want[300], have[512];
    if (stat(t->dest, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != t->e->size)
        return false;
    dl_entry_identity(t->e, want, sizeof want);
    ssize_t n = cm_read_file(t->meta, have, sizeof have - 1);
    if (n <= 0)
        return false;
    have[strcspn(have, "\r\n")] = '\0';
    return strcmp(have, want) == 0;
}

static void close_task(struct file_task *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    dl_chunkmap_close(&t->map);
}

/* Start fetching t. Returns DL_OK with *queued set (0 when the file was complete at once). */
static enum dl_status start_task(struct file_task *t, uint64_t chunk, uint64_t *queued, char *err,
                                 size_t errlen)
{
    int rc;
    if ((rc = cm_mkdirs_parent(t->part, 0755)) != 0 ||
        (rc = cm_mkdirs_parent(t->dest, 0755)) != 0 || (rc = open_part(t, chunk)) != 0) {
        snprintf(err, errlen, "%s: cannot prepare download: %s", t->e->path, strerror(-rc));
        return DL_ERR_LOCAL;
    }
    uint64_t have = dl_chunkmap_count(&t->map);
    if (have) {
        uint64_t bytes = 0;
        for (uint64_t i = 0; i < t->nchunks; i++)
            if (t->map.flags[i] == '1')
                bytes += dl_chunkmap_len(&t->map, i);
        cm_info("download", "resuming %s: %" PRIu64 " of %" PRIu64 " chunks already here",
                t->e->path, have, t->nchunks);
        atomic_fetch_add(&t->run->progress->bytes_done, bytes);
    }
    *queued = submit_missing(t);
    return DL_OK;
}

/* Verify, rename into place and record. Returns DL_OK when t is finished, or a status; when
 * the first fetch failed verification the file is queued again and *again is set. */
static enum dl_status finish_task(struct file_task *t, bool *again, char *err, size_t errlen)
{
    char id[300];
    *again = false;
    if (t->st != DL_OK) {
        snprintf(err, errlen, "%s", t->err);
        return t->st;
    }
    enum dl_status st = dl_verify_file(t->fd, t->e, err, errlen);
    if (st == DL_ERR_INTEGRITY) {
        cm_warn("download", "integrity check failed: %s", err);
        /* drop every byte of the bad copy and fetch it once more */
        if (t->fetches++ < 2 && dl_chunkmap_reset(&t->map) == 0 && ftruncate(t->fd, 0) == 0 &&
            ftruncate(t->fd, (off_t)t->e->size) == 0) {
            atomic_fetch_sub(&t->run->progress->bytes_done, t->e->size);
            *again = submit_missing(t) > 0;
            if (*again)
                return DL_OK;
        }
        unlink(t->part);
        unlink(t->record);
        return DL_ERR_INTEGRITY;
    }
    if (st != DL_OK)
        return st;
    if (fdatasync(t->fd) != 0 || rename(t->part, t->dest) != 0) {
        snprintf(err, errlen, "%s: cannot move into place: %s", t->e->path, strerror(errno));
        return DL_ERR_LOCAL;
    }
    dl_entry_identity(t->e, id, sizeof id);
    strcat(id, "\n");
    int rc = cm_write_file_atomic(t->meta, id, strlen(id));
    if (rc)
        cm_warn("download", "cannot write %s: %s", t->meta, strerror(-rc));
    unlink(t->record);
    return DL_OK;
}

/* ---- progress bar ------------------------------------------------------------------------ */

static void draw_bar(const struct dl_progress *p, double elapsed, bool final)
{
    char done[32], total[32], rate[32];
    uint64_t d = atomic_load(&p->bytes_done), tot = atomic_load(&p->bytes_total);
    double frac = tot ? (double)d / (double)tot : 1.0;
    double bps = elapsed > 0 ? (double)d / elapsed : 0;
    int width = 30, fill = (int)(frac * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    cm_format_bytes((double)d, done, sizeof done);
    cm_format_bytes((double)tot, total, sizeof total);
    cm_format_bytes(bps, rate, sizeof rate);
    long eta = bps > 0 && tot > d ? (long)((double)(tot - d) / bps) : 0;
    fprintf(stderr, "\r[%s] %3.0f%% %s / %s  %s/s  ETA %02ld:%02ld  files %llu/%llu%s", bar,
            frac * 100, done, total, rate, eta / 60, eta % 60,
            (unsigned long long)atomic_load(&p->files_done),
            (unsigned long long)atomic_load(&p->files_total), final ? "\n" : "");
    fflush(stderr);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the run ----------------------------------------------------------------------------- */

static int task_paths(struct file_task *t, const char *dir, const char *source)
{
    const char *rel = t->e->path;
    int a = snprintf(t->dest, sizeof t->dest, "%s/%s", dir, rel);
    int b = snprintf(t->part, sizeof t->part, "%s/.cache/%s/download/%s.part", dir, source, rel);
    int c =
        snprintf(t->record, sizeof t->record, "%s/.cache/%s/download/%s.chunks", dir, source, rel);
    int d =
        snprintf(t->meta, sizeof t->meta, "%s/.cache/%s/download/%s.metadata", dir, source, rel);
    return (a >= PATH_MAX || b >= PATH_MAX || c >= PATH_MAX || d >= PATH_MAX) ? -ENAMETOOLONG : 0;
}

enum dl_status dl_download(struct dl_source *src, struct dl_fetch *f, const struct dl_listing *l,
                           const char *dir, const struct dl_download_opts *opts,
                           struct dl_progress *progress, char *err, size_t errlen)
{
    struct dl_progress local = {0};
    struct run r = {.src = src, .fetch = f, .opts = opts, .progress = progress ? progress : &local};
    uint64_t chunk = opts->chunk_size ? opts->chunk_size : 8u << 20;
    struct file_task *tasks = calloc(l->n ? l->n : 1, sizeof *tasks);
    enum dl_status first = DL_OK;
    size_t pending = 0;
    double t0 = now_s(), last_draw = 0;
    char msg[1024];

    if (!tasks) {
        snprintf(err, errlen, "out of memory");
        return DL_ERR_LOCAL;
    }
    err[0] = '\0';
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    atomic_store(&r.progress->files_total, l->n);

    /* plan: skip what is there, size the rest */
    for (size_t i = 0; i < l->n; i++) {
        struct file_task *t = &tasks[i];
        *t = (struct file_task){.run = &r, .e = &l->entries[i], .fd = -1, .map.fd = -1};
        t->fetches = 1;
        t->nchunks = (t->e->size + chunk - 1) / chunk;
        if (task_paths(t, dir, cm_uri_source_name(src->kind)) != 0) {
            t->st = DL_ERR_LOCAL;
            snprintf(t->err, sizeof t->err, "%s: path too long", t->e->path);
        } else if (!opts->force && already_there(t)) {
            t->nchunks = 0;
            t->st = DL_ERR_CANCELLED; /* marks "skipped": never started */
            atomic_fetch_add(&r.progress->files_done, 1);
            atomic_fetch_add(&r.progress->files_skipped, 1);
            cm_debug("download", "up to date: %s", t->e->path);
            continue;
        }
        atomic_fetch_add(&r.progress->bytes_total, t->e->size);
    }

    /* start: every chunk of every file goes into the one pool */
    for (size_t i = 0; i < l->n; i++) {
        struct file_task *t = &tasks[i];
        uint64_t queued = 0;
        if (t->st == DL_ERR_CANCELLED)
            continue;
        if (t->st == DL_OK) {
            t->jobs = calloc(t->nchunks ? t->nchunks : 1, sizeof *t->jobs);
            t->st = t->jobs ? start_task(t, chunk, &queued, t->err, sizeof t->err) : DL_ERR_LOCAL;
        }
        pending++;
        if (t->st != DL_OK || queued == 0) {
            /* nothing in flight: finish it in the loop below */
            pthread_mutex_lock(&r.lock);
            t->next_done = r.done;
            r.done = t;
            pthread_mutex_unlock(&r.lock);
        }
    }

    /* finish files as their last chunk lands */
    while (pending) {
        pthread_mutex_lock(&r.lock);
        if (!r.done) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L)
                ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&r.cond, &r.lock, &ts);
        }
        struct file_task *ready = r.done;
        r.done = NULL;
        pthread_mutex_unlock(&r.lock);

        for (struct file_task *t = ready, *next; t; t = next) {
            bool again = false;
            next = t->next_done;
            enum dl_status st = finish_task(t, &again, msg, sizeof msg);
            if (again)
                continue;
            close_task(t);
            pending--;
            atomic_fetch_add(&r.progress->files_done, 1);
            if (st != DL_OK) {
                cm_error("download", "failed: %s (%s)", msg, dl_status_name(st));
                if (first == DL_OK) {
                    first = st;
                    snprintf(err, errlen, "%s", msg);
                }
            } else {
                cm_debug("download", "done: %s", t->e->path);
            }
        }
        if (opts->progress_bar && now_s() - last_draw >= 0.2) {
            last_draw = now_s();
            draw_bar(r.progress, last_draw - t0, false);
        }
    }
    if (opts->progress_bar)
        draw_bar(r.progress, now_s() - t0, true);

    for (size_t i = 0; i < l->n; i++)
        free(tasks[i].jobs);
    free(tasks);
    pthread_mutex_destroy(&r.lock);
    pthread_cond_destroy(&r.cond);
    return first;
}
