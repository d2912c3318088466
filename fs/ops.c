/* ops.c - the FUSE low-level operations table: the single entry point of the filesystem.
 *
 * Everything is read-only and immutable: entries and attributes are cached by the kernel for
 * a day (the root, whose mounts come and go, for a second), files are opened with keep_cache
 * so the page cache survives across opens, and reads are answered with an fd-backed buffer
 * pointing into the block cache's data file, so the kernel can splice instead of copying.
 * Inode bookkeeping lives in mounts.c; bytes come from cache.c. */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <pthread.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../common/fsutil.h"
#include "../common/log.h"
#include "fs_private.h"

#define IMMUTABLE_TIMEOUT 86400.0
#define ROOT_TIMEOUT 1.0
/* A sequential reader's window starts at what the fetch pool carries at once (a chunk for every
 * connection: a cold file streams on all of them from its first read, instead of after a few
 * doublings that each cost a whole chunk's wait) and doubles from there, within these bounds.
 * The price: a reader that only peeks at a big file's head has fetched the first window. */
#define READAHEAD_MIN (32u << 20)
#define READAHEAD_MAX (256u << 20)

/* Per open file: where a sequential reader will read next, and its read-ahead window. */
struct handle {
    struct handle *prev, *next; /* fs->handles */
    struct fs_node *node;
    struct fs_object *obj;
    pthread_mutex_t lock; /* the fields below: FUSE threads read one handle concurrently */
    uint64_t next_off;
    uint64_t window;
    bool reading;      /* has read at least once */
    unsigned bad_seen; /* the object's bad-copy count at the first read */
};

static struct fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* A chunk for every connection, within the bounds above. */
static uint64_t first_window(const struct fs *fs)
{
    uint64_t pool = (uint64_t)fs->cfg.threads * fs->cfg.chunk_size;
    return pool < READAHEAD_MIN ? READAHEAD_MIN : pool > READAHEAD_MAX ? READAHEAD_MAX : pool;
}

static void fill_attr(const struct fs_node *n, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = n->ino;
    st->st_mode = n->is_dir ? S_IFDIR | 0555 : S_IFREG | 0444;
    st->st_nlink = n->is_dir ? 2 : 1;
    st->st_size = n->is_dir ? 4096 : (off_t)n->size;
    st->st_blksize = 1 << 20;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_mtim.tv_sec = n->mtime;
    st->st_ctim = st->st_atim = st->st_mtim;
}

static double timeout_for(const struct fs_node *n)
{
    return n->ino == FS_ROOT_INO || (n->parent && n->parent->ino == FS_ROOT_INO)
               ? ROOT_TIMEOUT
               : IMMUTABLE_TIMEOUT;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* the largest requests the kernel takes (256 pages): max_write drives max_pages, which
     * also bounds reads; libfuse's receive buffer is sized for exactly this much */
    conn->max_write = 256 * 4096;
    conn->max_readahead = conn->max_readahead ? conn->max_readahead : UINT_MAX;
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    if (conn->capable & FUSE_CAP_SPLICE_MOVE)
        conn->want |= FUSE_CAP_SPLICE_MOVE;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    /* attributes never change: no need to drop the page cache when they are refetched */
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs *fs = fs_of(req);
    struct fuse_entry_param e;
    pthread_rwlock_rdlock(&fs->lock);
    struct fs_node *dir = fs_node_get(fs, parent);
    struct fs_node *n = dir && dir->is_dir ? fs_node_child(dir, name) : NULL;
    if (!n) {
        pthread_rwlock_unlock(&fs->lock);
        fuse_reply_err(req, dir ? ENOENT : ESTALE);
        return;
    }
    memset(&e, 0, sizeof e);
    e.ino = n->ino;
    e.attr_timeout = e.entry_timeout = timeout_for(n);
    fill_attr(n, &e.attr);
    pthread_rwlock_unlock(&fs->lock);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fs_of(req);
    struct stat st;
    (void)fi;
    pthread_rwlock_rdlock(&fs->lock);
    struct fs_node *n = fs_node_get(fs, ino);
    if (n)
        fill_attr(n, &st);
    double t = n ? timeout_for(n) : 0;
    pthread_rwlock_unlock(&fs->lock);
    if (n)
        fuse_reply_attr(req, &st, t);
    else
        fuse_reply_err(req, ESTALE);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fs_of(req);
    char err[512];
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    pthread_rwlock_rdlock(&fs->lock);
    struct fs_node *n = fs_node_get(fs, ino);
    pthread_rwlock_unlock(&fs->lock);
    if (!n || n->is_dir) {
        fuse_reply_err(req, n ? EISDIR : ESTALE);
        return;
    }
    struct fs_object *o = fs_node_object(n, err, sizeof err);
    struct handle *h = o ? calloc(1, sizeof *h) : NULL;
    if (!h) {
        cm_error("fs", "open %s: %s", n->entry->path, o ? "out of memory" : err);
        fuse_reply_err(req, EIO);
        return;
    }
    h->node = n;
    h->obj = o;
    h->window = first_window(fs);
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_lock(&fs->handles_lock);
    h->next = fs->handles;
    if (h->next)
        h->next->prev = h;
    fs->handles = h;
    pthread_mutex_unlock(&fs->handles_lock);
    fs_object_open(o);
    if (n->mount->prefetch == FS_PREFETCH_OPEN)
        fs_object_prefetch(o, 0, n->size, DL_PRIO_OPEN);
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

/* Sequential readers get a growing window fetched ahead of them; others get none. The kernel
 * sends a stream's reads on several threads and slightly out of order, so a read counts as
 * sequential when it lands within the current window of where the stream is. Runs before the
 * read waits for its own bytes, so a cold start fetches on many connections at once. */
static void read_ahead(struct handle *h, uint64_t off, uint64_t len)
{
    if (h->node->mount->prefetch == FS_PREFETCH_ALL)
        return; /* everything is queued already */
    pthread_mutex_lock(&h->lock);
    bool near = off + h->window >= h->next_off && off <= h->next_off + h->window;
    uint64_t start = off + len, window = h->window;
    if (near)
        h->window = h->window * 2 > READAHEAD_MAX ? READAHEAD_MAX : h->window * 2;
    else
        h->window = first_window(h->node->mount->fs);
    if (off + len > h->next_off || !near)
        h->next_off = off + len;
    pthread_mutex_unlock(&h->lock);
    if (near)
        fs_object_prefetch(h->obj, start, window, DL_PRIO_OPEN);
}

static void read_data(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    struct fs *fs = fs_of(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    uint64_t fsize = h->node->size;
    (void)ino;
    if ((uint64_t)off >= fsize || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    uint64_t len = (uint64_t)off + size > fsize ? fsize - (uint64_t)off : size;
    pthread_mutex_lock(&h->lock);
    if (!h->reading) {
        h->reading = true;
        h->bad_seen = fs_object_bad_copies(h->obj);
    }
    unsigned bad_seen = h->bad_seen;
    pthread_mutex_unlock(&h->lock);
    read_ahead(h, (uint64_t)off, len);
    int rc = fs_object_ensure(h->obj, (uint64_t)off, len, DL_PRIO_DEMAND);
    /* a copy failed verification after this descriptor started reading: it may hold bytes of
     * that copy, so it must not finish the file as if all were well; a new open reads the
     * good copy */
    if (!rc && fs_object_bad_copies(h->obj) != bad_seen)
        rc = -EIO;
    if (rc) {
        cm_warn("fs", "read %s/%s at %lld: %s", h->node->mount->name, h->node->entry->path,
                (long long)off, strerror(-rc));
        fuse_reply_err(req, -rc);
        return;
    }
    atomic_fetch_add(&fs->read_bytes, len);
    atomic_fetch_add(&fs->read_ops, 1);
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(len);
    buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    buf.buf[0].fd = fs_object_fd(h->obj);
    buf.buf[0].pos = off;
    fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/* read_data, timed for the metrics hook (fs_config.on_read). */
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct fs *fs = fs_of(req); /* req is gone once answered */
    struct timespec t0, t1;
    if (!fs->cfg.on_read) {
        read_data(req, ino, size, off, fi);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    read_data(req, ino, size, off, fi);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fs->cfg.on_read(fs->cfg.on_read_ctx,
                    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fs_of(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    (void)ino;
    if (h) {
        pthread_mutex_lock(&fs->handles_lock);
        if (h->prev)
            h->prev->next = h->next;
        else
            fs->handles = h->next;
        if (h->next)
            h->next->prev = h->prev;
        pthread_mutex_unlock(&fs->handles_lock);
        fs_object_release(h->obj);
        pthread_mutex_destroy(&h->lock);
        free(h);
    }
    fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fs_of(req);
    pthread_rwlock_rdlock(&fs->lock);
    struct fs_node *n = fs_node_get(fs, ino);
    pthread_rwlock_unlock(&fs->lock);
    if (!n || !n->is_dir) {
        fuse_reply_err(req, n ? ENOTDIR : ESTALE);
        return;
    }
    fi->cache_readdir = ino != FS_ROOT_INO;
    fi->keep_cache = ino != FS_ROOT_INO;
    fuse_reply_open(req, fi);
}

/* Entries: 0 ".", 1 "..", then the children in name order. */
static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    struct fs *fs = fs_of(req);
    char *buf = malloc(size);
    size_t used = 0;
    (void)fi;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_rwlock_rdlock(&fs->lock);
    struct fs_node *dir = fs_node_get(fs, ino);
    for (off_t i = off; dir && i < (off_t)dir->nkids + 2; i++) {
        struct stat st;
        const struct fs_node *n = i == 0   ? dir
                                  : i == 1 ? (dir->parent ? dir->parent : dir)
                                           : dir->kids[i - 2];
        const char *name = i == 0 ? "." : i == 1 ? ".." : n->name;
        fill_attr(n, &st);
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    pthread_rwlock_unlock(&fs->lock);
    if (dir)
        fuse_reply_buf(req, buf, used);
    else
        fuse_reply_err(req, ESTALE);
    free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct fs *fs = fs_of(req);
    struct statvfs st;
    uint64_t bytes = 0;
    (void)ino;
    pthread_rwlock_rdlock(&fs->lock);
    for (size_t i = 0; i < fs->nmounts; i++)
        if (!fs->mounts[i]->removed)
            bytes += fs->mounts[i]->bytes_total;
    uint64_t files = fs->nnodes;
    pthread_rwlock_unlock(&fs->lock);
    memset(&st, 0, sizeof st);
    st.f_bsize = st.f_frsize = 4096;
    st.f_blocks = (bytes + 4095) / 4096;
    st.f_files = files;
    st.f_namemax = 255;
    st.f_flag = ST_RDONLY;
    fuse_reply_statfs(req, &st);
}

/* Every operation that would change the snapshot. */
static void ro_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int to_set,
                       struct fuse_file_info *fi)
{
    (void)ino, (void)a, (void)to_set, (void)fi;
    fuse_reply_err(req, EROFS);
}
static void ro_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d)
{
    (void)p, (void)n, (void)m, (void)d;
    fuse_reply_err(req, EROFS);
}
static void ro_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m)
{
    (void)p, (void)n, (void)m;
    fuse_reply_err(req, EROFS);
}
static void ro_unlink(fuse_req_t req, fuse_ino_t p, const char *n)
{
    (void)p, (void)n;
    fuse_reply_err(req, EROFS);
}
static void ro_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n)
{
    (void)l, (void)p, (void)n;
    fuse_reply_err(req, EROFS);
}
static void ro_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn,
                      unsigned int f)
{
    (void)p, (void)n, (void)np, (void)nn, (void)f;
    fuse_reply_err(req, EROFS);
}
static void ro_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t np, const char *nn)
{
    (void)i, (void)np, (void)nn;
    fuse_reply_err(req, EROFS);
}
static void ro_write(fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o,
                     struct fuse_file_info *fi)
{
    (void)i, (void)b, (void)s, (void)o, (void)fi;
    fuse_reply_err(req, EROFS);
}
static void ro_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m,
                      struct fuse_file_info *fi)
{
    (void)p, (void)n, (void)m, (void)fi;
    fuse_reply_err(req, EROFS);
}
static void ro_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f)
{
    (void)i, (void)n, (void)v, (void)s, (void)f;
    fuse_reply_err(req, EROFS);
}
static void no_getxattr(fuse_req_t req, fuse_ino_t i, const char *n, size_t s)
{
    (void)i, (void)n, (void)s;
    fuse_reply_err(req, ENOTSUP);
}
static void no_listxattr(fuse_req_t req, fuse_ino_t i, size_t s)
{
    (void)i;
    if (s == 0)
        fuse_reply_xattr(req, 0);
    else
        fuse_reply_buf(req, NULL, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .statfs = op_statfs,
    .setattr = ro_setattr,
    .mknod = ro_mknod,
    .mkdir = ro_mkdir,
    .unlink = ro_unlink,
    .rmdir = ro_unlink,
    .symlink = ro_symlink,
    .rename = ro_rename,
    .link = ro_link,
    .write = ro_write,
    .create = ro_create,
    .setxattr = ro_setxattr,
    .removexattr = ro_unlink,
    .getxattr = no_getxattr,
    .listxattr = no_listxattr,
};

/* ---- serving ----------------------------------------------------------------------------- */

/* A mount left by a crashed run answers "Transport endpoint is not connected". statfs is
 * never answered from the kernel's attribute cache, so it tells even right after the crash.
 * Mounts may be stacked by earlier failures: detach until none is dead. */
static void clean_stale_mount(const char *mountpoint)
{
    struct statfs sf;
    for (int i = 0; i < 8 && statfs(mountpoint, &sf) != 0 && errno == ENOTCONN; i++) {
        cm_warn("fs", "cleaning a stale mount on %s", mountpoint);
        if (umount2(mountpoint, MNT_DETACH) != 0) {
            char cmd[PATH_MAX + 64];
            snprintf(cmd, sizeof cmd, "fusermount3 -u -z '%s' 2>/dev/null", mountpoint);
            if (system(cmd) != 0) {
                cm_error("fs", "cannot clean the stale mount on %s", mountpoint);
                return;
            }
        }
    }
}

/* The minor device number of the newest mount on mountpoint, from /proc/self/mountinfo (not
 * from stat, which would ask our own, possibly not yet answering, filesystem). */
static unsigned mount_minor(const char *mountpoint)
{
    char line[8192], real[PATH_MAX];
    unsigned found = 0;
    if (!realpath(mountpoint, real))
        snprintf(real, sizeof real, "%s", mountpoint);
    FILE *f = fopen("/proc/self/mountinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        unsigned maj, min;
        char mp[PATH_MAX];
        if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &maj, &min, mp) == 3 && strcmp(mp, real) == 0)
            found = min;
    }
    if (f)
        fclose(f);
    return found;
}

static void *loop_main(void *arg)
{
    struct fs *fs = arg;
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    /* readers block on fetches: keep enough threads that one slow file never starves
     * the rest of the filesystem */
    fuse_loop_cfg_set_max_threads(cfg, 256);
    fuse_loop_cfg_set_idle_threads(cfg, 16);
    int rc = fuse_session_loop_mt(fs->se, cfg);
    fuse_loop_cfg_destroy(cfg);
    if (rc)
        cm_debug("fs", "FUSE loop ended rc=%d", rc);
    return NULL;
}

int fs_serve(struct fs *fs, const char *mountpoint, char *err, size_t errlen)
{
    char *argv[] = {"aibrix_runtime", "-o",
                    "ro,fsname=aibrix,subtype=aibrix,default_permissions,allow_other", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    clean_stale_mount(mountpoint);
    int rc = cm_mkdirs(mountpoint, 0755);
    if (rc) {
        snprintf(err, errlen, "cannot create mount point %s: %s", mountpoint, strerror(-rc));
        return rc;
    }
    fs->se = fuse_session_new(&args, &ops, sizeof ops, fs);
    fuse_opt_free_args(&args); /* libfuse may have grown the argument list */
    if (!fs->se) {
        snprintf(err, errlen, "cannot create the FUSE session");
        return -EIO;
    }
    if (fuse_session_mount(fs->se, mountpoint) != 0) {
        snprintf(err, errlen,
                 "cannot mount FUSE at %s (is /dev/fuse available and are we "
                 "privileged?)",
                 mountpoint);
        fuse_session_destroy(fs->se);
        fs->se = NULL;
        return -EIO;
    }
    snprintf(fs->mountpoint, sizeof fs->mountpoint, "%s", mountpoint);
    if (pthread_create(&fs->loop, NULL, loop_main, fs) != 0) {
        snprintf(err, errlen, "cannot start the FUSE loop");
        fuse_session_unmount(fs->se);
        fuse_session_destroy(fs->se);
        fs->se = NULL;
        return -EIO;
    }
    fs->serving = true;
    fs->conn_id = mount_minor(mountpoint);
    cm_info("fs", "serving %s", mountpoint);
    return 0;
}

/* Ask the FUSE loop to look at its exit flag: a lookup of a name that does not exist is never
 * cached by the kernel, so it always reaches a worker, which then sees the flag. */
static void *poke(void *arg)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/.aibrix-shutdown", (const char *)arg);
    stat(path, &st);
    return NULL;
}

/* Last resort when the loop does not end: abort the connection through fusectl, which fails
 * every pending request and wakes every worker. */
static void abort_connection(struct fs *fs)
{
    char path[128];
    snprintf(path, sizeof path, "/sys/fs/fuse/connections/%u/abort", fs->conn_id);
    FILE *f = fopen(path, "w");
    /* fusectl is often not mounted (containers, minimal hosts): mount it when we may */
    if (!f && errno == ENOENT &&
        mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL) == 0) {
        cm_info("fs", "mounted fusectl on /sys/fs/fuse/connections to abort the connection");
        f = fopen(path, "w");
    }
    if (f) {
        fputs("1", f);
        fclose(f);
    } else {
        cm_warn("fs", "cannot abort the FUSE connection through %s", path);
    }
}

void fs_shutdown(struct fs *fs)
{
    /* readers blocked on fetches answer EINTR now */
    fs_cache_cancel(fs->cache);
    dl_fetch_cancel(fs->fetch);
    dl_http_cancel(fs->http);
    if (!fs->serving)
        return;
    fuse_session_exit(fs->se);
    pthread_t t;
    if (pthread_create(&t, NULL, poke, fs->mountpoint) == 0)
        pthread_detach(t);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 3;
    if (pthread_timedjoin_np(fs->loop, NULL, &deadline) != 0) {
        abort_connection(fs);
        pthread_join(fs->loop, NULL);
    }
    fuse_session_unmount(fs->se);
    fuse_session_destroy(fs->se);
    fs->se = NULL;
    fs->serving = false;
    cm_info("fs", "unmounted %s", fs->mountpoint);
}

void fs_free_handles(struct fs *fs)
{
    pthread_mutex_lock(&fs->handles_lock);
    for (struct handle *h = fs->handles, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    fs->handles = NULL;
    pthread_mutex_unlock(&fs->handles_lock);
}

void fs_notify_removed(struct fs *fs, const char *name)
{
    if (fs->serving)
        fuse_lowlevel_notify_inval_entry(fs->se, FS_ROOT_INO, name, strlen(name));
}

void fs_drop_pages(void *arg, void *node)
{
    struct fs *fs = arg;
    const struct fs_node *n = node;
    if (fs->serving)
        fuse_lowlevel_notify_inval_inode(fs->se, n->ino, 0, 0);
}
