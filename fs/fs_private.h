/* fs_private.h - the structures shared by the files of fs/ (not part of its API).
 *
 * Inodes: node numbers are indexes into fs->nodes and are never reused, so a number the kernel
 * still holds after a mount was removed can never name another file. The tree of a mount is
 * immutable once built (mounts are snapshots); fs->lock (a rwlock) guards the node table and
 * the list of mounts, and is held for reading on every FUSE operation. */
#ifndef FS_PRIVATE_H
#define FS_PRIVATE_H

#include <pthread.h>

#include "../downloader/fetch.h"
#include "cache.h"
#include "fs.h"

#define FS_ROOT_INO 1

struct fs_mount;
struct handle; /* an open file, see ops.c */

struct fs_node {
    uint64_t ino;
    struct fs_node *parent;
    char *name; /* owned; "" for the root */
    bool is_dir;
    uint64_t size;
    int64_t mtime;
    struct fs_node **kids; /* owned array, sorted by name once the tree is built */
    size_t nkids, capkids;
    struct fs_mount *mount;       /* NULL for the root */
    const struct dl_entry *entry; /* files: the listing entry */
    struct fs_object *obj;        /* files: created on first use, under mount->lock */
};

struct fs_mount {
    struct fs *fs;
    char name[129];
    char uri[CM_URI_MAX];
    enum fs_prefetch prefetch;
    struct cm_filter filter;
    struct dl_source *src;
    struct dl_listing listing; /* visible files only */
    struct fs_node *dir;       /* <mount-point>/<name> */
    pthread_mutex_t lock;      /* creating objects */
    uint64_t bytes_total;
    bool removed;
};

struct fs {
    struct fs_config cfg;
    char cache_dir[4096];
    struct dl_http *http;
    struct dl_fetch *fetch;
    struct fs_cache *cache;
    pthread_rwlock_t lock;
    struct fs_node **nodes; /* by inode number; [0] unused */
    uint64_t nnodes, capnodes;
    struct fs_node *root;
    struct fs_mount **mounts;
    size_t nmounts;
    /* FUSE session, see ops.c */
    struct fuse_session *se;
    pthread_t loop;
    bool serving;
    char mountpoint[4096];
    unsigned conn_id; /* minor of the mount's st_dev: its fusectl directory */
    _Atomic uint64_t read_bytes, read_ops;
    pthread_mutex_t handles_lock;
    struct handle *handles; /* every open file, so shutdown can free what the kernel never
                               released */
    /* the keeper: retries prefetches that gave up (mounts.c) */
    pthread_t keeper;
    bool keeper_running, keeper_stop;
    pthread_mutex_t keeper_lock;
    pthread_cond_t keeper_wake;
};

/* Create a node under parent (NULL for the root) and register its inode. Caller holds
 * fs->lock for writing. NULL on allocation failure. */
struct fs_node *fs_node_new(struct fs *fs, struct fs_node *parent, const char *name, size_t namelen,
                            bool is_dir);
/* The child of dir named name, or NULL. dir's children must be sorted. */
struct fs_node *fs_node_child(const struct fs_node *dir, const char *name);
/* The node of an inode number, or NULL. Caller holds fs->lock. */
struct fs_node *fs_node_get(struct fs *fs, uint64_t ino);
/* The file's cache object, created on first use. Returns NULL with err set on failure. */
struct fs_object *fs_node_object(struct fs_node *n, char *err, size_t errlen);
/* Drop the kernel's cached pages of the file node (a struct fs_node *) after a copy of it
 * failed verification (ops.c; an fs_bad_copy_fn). */
void fs_drop_pages(void *fs, void *node);
/* Tell the kernel that the root entry name is gone (ops.c). */
void fs_notify_removed(struct fs *fs, const char *name);
/* Free the handles of files still open when the FUSE session ended (ops.c). */
void fs_free_handles(struct fs *fs);

#endif
