/* mounts.c - named mounts: parsing their specs, listing, building their trees, prefetch and
 * status. The FUSE side (ops.c) only reads what is built here. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/env.h"
#include "../common/log.h"
#include "../common/uri.h"
#include "fs_private.h"

/* Files up to this size are prefetched first: configs and tokenizers before weights. */
#define SMALL_FILE (1u << 20)

const char *fs_mount_state_name(enum fs_mount_state s)
{
    static const char *const names[] = {"listing", "ready", "fetching", "fetched", "error"};
    return names[s];
}

bool fs_mount_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

/* ---- NAME=URI[,opt=val...] --------------------------------------------------------------- */

static int parse_option(struct fs_mount_spec *spec, const char *opt, char *err, size_t errlen)
{
    const char *eq = strchr(opt, '=');
    if (!eq) {
        snprintf(err, errlen, "mount option '%s' has no value (expected opt=val)", opt);
        return -EINVAL;
    }
    size_t klen = (size_t)(eq - opt);
    const char *val = eq + 1;
    struct cm_strlist *list = NULL;
    if (klen == 17 && strncmp(opt, "allow_file_suffix", klen) == 0)
        list = &spec->filter.suffixes;
    else if (klen == 14 && strncmp(opt, "allow_patterns", klen) == 0)
        list = &spec->filter.allow;
    else if (klen == 15 && strncmp(opt, "ignore_patterns", klen) == 0)
        list = &spec->filter.ignore;
    if (list) {
        /* lists use ';' inside one option, since ',' separates options */
        char *copy = strdup(val);
        if (!copy)
            return -ENOMEM;
        for (char *p = copy; *p; p++)
            if (*p == ';')
                *p = ',';
        int rc = cm_strlist_split(list, copy);
        free(copy);
        return rc;
    }
    if (klen == 8 && strncmp(opt, "prefetch", klen) == 0) {
        static const char *const names[] = {"all", "open", "none"};
        for (int i = 0; i < 3; i++) {
            if (strcmp(val, names[i]) == 0) {
                spec->prefetch = (enum fs_prefetch)i;
                return 0;
            }
        }
        snprintf(err, errlen, "prefetch must be all, open or none, not '%s'", val);
        return -EINVAL;
    }
    snprintf(err, errlen,
             "unknown mount option '%.*s' (allow_file_suffix, allow_patterns, "
             "ignore_patterns, prefetch)",
             (int)klen, opt);
    return -EINVAL;
}

int fs_parse_mount_spec(const char *text, struct fs_mount_spec *spec, char *err, size_t errlen)
{
    memset(spec, 0, sizeof *spec);
    spec->prefetch = FS_PREFETCH_ALL;
    const char *eq = strchr(text, '=');
    if (!eq || eq == text) {
        snprintf(err, errlen, "model '%s' is not NAME=URI", text);
        return -EINVAL;
    }
    size_t nlen = (size_t)(eq - text);
    if (nlen >= sizeof spec->name) {
        snprintf(err, errlen, "model name longer than 128 characters");
        return -EINVAL;
    }
    memcpy(spec->name, text, nlen);
    if (!fs_mount_name_ok(spec->name)) {
        snprintf(err, errlen,
                 "invalid model name '%s' (letters, digits, '.', '_', '-'; "
                 "starting with a letter or digit)",
                 spec->name);
        return -EINVAL;
    }
    const char *uri = eq + 1;
    const char *comma = strchr(uri, ',');
    size_t ulen = comma ? (size_t)(comma - uri) : strlen(uri);
    if (ulen == 0 || ulen >= sizeof spec->uri) {
        snprintf(err, errlen, "model '%s' has an empty or too long URI", spec->name);
        return -EINVAL;
    }
    memcpy(spec->uri, uri, ulen);
    while (comma) {
        const char *opt = comma + 1;
        comma = strchr(opt, ',');
        char buf[2048];
        size_t olen = comma ? (size_t)(comma - opt) : strlen(opt);
        if (olen >= sizeof buf) {
            snprintf(err, errlen, "mount option too long");
            cm_filter_free(&spec->filter);
            return -EINVAL;
        }
        memcpy(buf, opt, olen);
        buf[olen] = '\0';
        int rc = olen ? parse_option(spec, buf, err, errlen) : 0;
        if (rc) {
            cm_filter_free(&spec->filter);
            return rc;
        }
    }
    return 0;
}

/* ---- nodes ------------------------------------------------------------------------------- */

struct fs_node *fs_node_new(struct fs *fs, struct fs_node *parent, const char *name, size_t namelen,
                            bool is_dir)
{
    struct fs_node *n = calloc(1, sizeof *n);
    if (!n || !(n->name = strndup(name, namelen))) {
        free(n);
        return NULL;
    }
    if (fs->nnodes == fs->capnodes) {
        uint64_t cap = fs->capnodes ? fs->capnodes * 2 : 1024;
        struct fs_node **grown = realloc(fs->nodes, cap * sizeof *grown);
        if (!grown) {
            free(n->name);
            free(n);
            return NULL;
        }
        fs->nodes = grown;
        fs->capnodes = cap;
    }
    if (fs->nnodes == 0)
        fs->nodes[fs->nnodes++] = NULL; /* inode 0 does not exist */
    n->ino = fs->nnodes;
    fs->nodes[fs->nnodes++] = n;
    n->is_dir = is_dir;
    n->parent = parent;
    if (parent) {
        if (parent->nkids == parent->capkids) {
            size_t cap = parent->capkids ? parent->capkids * 2 : 8;
            struct fs_node **grown = realloc(parent->kids, cap * sizeof *grown);
            if (!grown)
                return NULL; /* the node stays registered and is freed with the table */
            parent->kids = grown;
            parent->capkids = cap;
        }
        parent->kids[parent->nkids++] = n;
        n->mount = parent->mount;
    }
    return n;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(struct fs_node *const *)a)->name, (*(struct fs_node *const *)b)->name);
}

struct fs_node *fs_node_child(const struct fs_node *dir, const char *name)
{
    struct fs_node key = {.name = (char *)name}, *kp = &key;
    struct fs_node **hit =
        dir->nkids ? bsearch(&kp, dir->kids, dir->nkids, sizeof *dir->kids, by_name) : NULL;
    return hit ? *hit : NULL;
}

struct fs_node *fs_node_get(struct fs *fs, uint64_t ino)
{
    return ino > 0 && ino < fs->nnodes ? fs->nodes[ino] : NULL;
}

static void sort_tree(struct fs_node *dir)
{
    if (dir->nkids > 1)
        qsort(dir->kids, dir->nkids, sizeof *dir->kids, by_name);
    for (size_t i = 0; i < dir->nkids; i++)
        if (dir->kids[i]->is_dir)
            sort_tree(dir->kids[i]);
}

/* Find or create the directory named by path[0..len) below dir (children still unsorted:
 * a linear scan of the last directory touched is enough while building, since the listing
 * is sorted and siblings arrive together). */
static struct fs_node *ensure_dir(struct fs *fs, struct fs_node *dir, const char *name, size_t len)
{
    for (size_t i = dir->nkids; i-- > 0;) {
        struct fs_node *k = dir->kids[i];
        if (k->is_dir && strlen(k->name) == len && memcmp(k->name, name, len) == 0)
            return k;
    }
    return fs_node_new(fs, dir, name, len, true);
}

/* Build the subtree of m from its listing. Caller holds fs->lock for writing. A file whose
 * path collides with a directory (a key "a" and a key "a/b") keeps the directory. */
static int build_tree(struct fs *fs, struct fs_mount *m)
{
    for (size_t i = 0; i < m->listing.n; i++) {
        const struct dl_entry *e = &m->listing.entries[i];
        struct fs_node *dir = m->dir;
        const char *p = e->path, *slash;
        while (dir && (slash = strchr(p, '/')) != NULL) {
            dir = ensure_dir(fs, dir, p, (size_t)(slash - p));
            p = slash + 1;
        }
        if (!dir)
            return -ENOMEM;
        struct fs_node *f = fs_node_new(fs, dir, p, strlen(p), false);
        if (!f)
            return -ENOMEM;
        f->size = e->size;
        f->mtime = e->mtime;
        f->entry = e;
    }
    sort_tree(m->dir);
    return 0;
}

struct fs_object *fs_node_object(struct fs_node *n, char *err, size_t errlen)
{
    struct fs_mount *m = n->mount;
    pthread_mutex_lock(&m->lock);
    if (!n->obj) {
        n->obj = fs_object_get(m->fs->cache, m->src, n->entry, err, errlen);
        if (n->obj)
            fs_object_set_owner(n->obj, n);
    }
    struct fs_object *o = n->obj;
    pthread_mutex_unlock(&m->lock);
    return o;
}

/* ---- prefetch ---------------------------------------------------------------------------- */

static int prefetch_order(const void *a, const void *b)
{
    const struct fs_node *x = *(struct fs_node *const *)a, *y = *(struct fs_node *const *)b;
    bool xs = x->size <= SMALL_FILE, ys = y->size <= SMALL_FILE;
    if (xs != ys)
        return xs ? -1 : 1;
    return strcmp(x->entry->path, y->entry->path);
}

static size_t collect_files(struct fs_node *dir, struct fs_node **out, size_t n)
{
    for (size_t i = 0; i < dir->nkids; i++) {
        if (dir->kids[i]->is_dir)
            n = collect_files(dir->kids[i], out, n);
        else
            out[n++] = dir->kids[i];
    }
    return n;
}

/* prefetch=all: every file, small ones first, then the rest in name order; chunks of a file
 * in ascending offset. The fetch queue is FIFO within a priority, so this order holds. */
static void prefetch_all(struct fs_mount *m)
{
    char err[512];
    struct fs_node **files = calloc(m->listing.n ? m->listing.n : 1, sizeof *files);
    if (!files)
        return;
    size_t n = collect_files(m->dir, files, 0);
    qsort(files, n, sizeof *files, prefetch_order);
    for (size_t i = 0; i < n; i++) {
        struct fs_object *o = fs_node_object(files[i], err, sizeof err);
        if (o)
            fs_object_prefetch(o, 0, files[i]->size, DL_PRIO_BACKGROUND);
        else
            cm_error("mount", "%s: cannot prefetch: %s", m->name, err);
    }
    free(files);
}

/* A prefetch=all mount whose background fetch gave up (the origin was down for longer than
 * the retries last) would stay "error", and /ready 503, until a reader happened to ask for
 * the missing chunks. The keeper asks again: AIBRIX_PREFETCH_RETRY_SECONDS (default 10)
 * after it sees the failure, then at doubling intervals up to 5 minutes while failures
 * remain. Chunks already present are not fetched again. */
#define KEEPER_MAX_WAIT_S 300

static bool prefetch_gave_up(struct fs_mount *m)
{
    struct fs_node **files = calloc(m->listing.n ? m->listing.n : 1, sizeof *files);
    size_t n = files ? collect_files(m->dir, files, 0) : 0;
    bool failed = false;
    for (size_t i = 0; i < n && !failed; i++) {
        pthread_mutex_lock(&m->lock);
        struct fs_object *o = files[i]->obj;
        pthread_mutex_unlock(&m->lock);
        failed = o && fs_object_error(o) == DL_OK && fs_object_chunk_failure(o) != DL_OK;
    }
    free(files);
    return failed;
}

static void *keeper_main(void *arg)
{
    struct fs *fs = arg;
    uint64_t base = cm_env_u64("AIBRIX_PREFETCH_RETRY_SECONDS", 10);
    if (base == 0)
        base = 1;
    uint64_t wait = base;
    pthread_mutex_lock(&fs->keeper_lock);
    while (!fs->keeper_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)wait;
        while (!fs->keeper_stop &&
               pthread_cond_timedwait(&fs->keeper_wake, &fs->keeper_lock, &until) == 0)
            ;
        if (fs->keeper_stop)
            break;
        pthread_mutex_unlock(&fs->keeper_lock);
        bool retried = false;
        pthread_rwlock_rdlock(&fs->lock);
        for (size_t i = 0; i < fs->nmounts; i++) {
            struct fs_mount *m = fs->mounts[i];
            if (m->removed || m->prefetch != FS_PREFETCH_ALL || !prefetch_gave_up(m))
                continue;
            cm_info("mount", "%s: fetching again what the prefetch gave up on", m->name);
            prefetch_all(m);
            retried = true;
        }
        pthread_rwlock_unlock(&fs->lock);
        if (!retried)
            wait = base;
        else if ((wait *= 2) > KEEPER_MAX_WAIT_S)
            wait = KEEPER_MAX_WAIT_S;
        pthread_mutex_lock(&fs->keeper_lock);
    }
    pthread_mutex_unlock(&fs->keeper_lock);
    return NULL;
}

static void keeper_stop(struct fs *fs)
{
    if (!fs->keeper_running)
        return;
    pthread_mutex_lock(&fs->keeper_lock);
    fs->keeper_stop = true;
    pthread_cond_signal(&fs->keeper_wake);
    pthread_mutex_unlock(&fs->keeper_lock);
    pthread_join(fs->keeper, NULL);
    fs->keeper_running = false;
}

/* ---- the filesystem ---------------------------------------------------------------------- */

struct fs *fs_new(const struct fs_config *cfg, char *err, size_t errlen)
{
    struct fs *fs = calloc(1, sizeof *fs);
    if (!fs) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fs->cfg = *cfg;
    snprintf(fs->cache_dir, sizeof fs->cache_dir, "%s", cfg->cache_dir);
    fs->cfg.cache_dir = fs->cache_dir;
    pthread_rwlock_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->handles_lock, NULL);
    pthread_mutex_init(&fs->keeper_lock, NULL);
    pthread_cond_init(&fs->keeper_wake, NULL);
    fs->http = dl_http_new();
    fs->fetch = fs->http ? dl_fetch_new(fs->http, cfg->threads) : NULL;
    fs->cache = fs->fetch ? fs_cache_open(cfg->cache_dir, cfg->cache_max_bytes, cfg->chunk_size,
                                          fs->fetch, err, errlen)
                          : NULL;
    fs->root = fs->cache ? fs_node_new(fs, NULL, "", 0, true) : NULL;
    if (!fs->root) {
        if (!fs->cache && fs->fetch)
            ; /* err set by fs_cache_open */
        else
            snprintf(err, errlen, "cannot start the fetch engine");
        fs_free(fs);
        return NULL;
    }
    fs->root->ino = FS_ROOT_INO;
    fs_cache_on_bad_copy(fs->cache, fs_drop_pages, fs);
    fs->keeper_running = pthread_create(&fs->keeper, NULL, keeper_main, fs) == 0;
    if (!fs->keeper_running)
        cm_warn("mount", "cannot start the prefetch keeper: a prefetch that gives up is not retried");
    return fs;
}

static struct fs_mount *find_mount(struct fs *fs, const char *name)
{
    for (size_t i = 0; i < fs->nmounts; i++)
        if (!fs->mounts[i]->removed && strcmp(fs->mounts[i]->name, name) == 0)
            return fs->mounts[i];
    return NULL;
}

static void mount_free(struct fs_mount *m)
{
    dl_listing_free(&m->listing);
    dl_source_close(m->src);
    cm_filter_free(&m->filter);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Keep only the files the mount's filter lets through. */
static void filter_listing(struct fs_mount *m)
{
    for (size_t i = 0; i < m->listing.n;) {
        if (cm_filter_match(&m->filter, m->listing.entries[i].path))
            i++;
        else
            dl_listing_remove(&m->listing, i);
    }
}

enum dl_status fs_mount_add(struct fs *fs, struct fs_mount_spec *spec, char *err, size_t errlen)
{
    struct cm_uri uri;
    if (!fs_mount_name_ok(spec->name)) {
        snprintf(err, errlen, "invalid model name '%s'", spec->name);
        return DL_ERR_INVALID;
    }
    if (cm_uri_parse(spec->uri, &uri, err, errlen) != 0)
        return DL_ERR_INVALID;
    pthread_rwlock_rdlock(&fs->lock);
    struct fs_mount *same = find_mount(fs, spec->name);
    bool taken = same && strcmp(same->uri, spec->uri) != 0;
    pthread_rwlock_unlock(&fs->lock);
    if (same) {
        if (taken)
            snprintf(err, errlen, "exists: model name '%s' is mounted from %s", spec->name,
                     same->uri);
        return taken ? DL_ERR_LOCAL : DL_OK;
    }

    struct fs_mount *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return DL_ERR_LOCAL;
    }
    m->fs = fs;
    pthread_mutex_init(&m->lock, NULL);
    snprintf(m->name, sizeof m->name, "%s", spec->name);
    snprintf(m->uri, sizeof m->uri, "%s", spec->uri);
    m->prefetch = spec->prefetch;
    m->filter = spec->filter;
    memset(&spec->filter, 0, sizeof spec->filter);

    struct dl_source_config cfg = spec->creds;
    cfg.uri = &uri;
    m->src = dl_source_open(&cfg, fs->http, err, errlen);
    if (!m->src) {
        mount_free(m);
        return DL_ERR_INVALID;
    }
    /* the listing is the only network round trip a mount costs before it appears */
    struct dl_http_conn *conn = dl_http_conn_new(fs->http);
    enum dl_status st =
        conn ? m->src->ops->list(m->src, conn, &m->listing, err, errlen) : DL_ERR_LOCAL;
    dl_http_conn_free(conn);
    if (st != DL_OK) {
        mount_free(m);
        return st;
    }
    filter_listing(m);
    for (size_t i = 0; i < m->listing.n; i++)
        m->bytes_total += m->listing.entries[i].size;

    pthread_rwlock_wrlock(&fs->lock);
    if (find_mount(fs, spec->name)) {
        /* lost a race with the same name: the first one wins */
        pthread_rwlock_unlock(&fs->lock);
        mount_free(m);
        snprintf(err, errlen, "exists: model name '%s' was mounted meanwhile", spec->name);
        return DL_ERR_LOCAL;
    }
    struct fs_mount **grown = realloc(fs->mounts, (fs->nmounts + 1) * sizeof *grown);
    m->dir = grown ? fs_node_new(fs, fs->root, m->name, strlen(m->name), true) : NULL;
    if (m->dir) {
        m->dir->mount = m;
        fs->mounts = grown;
        fs->mounts[fs->nmounts++] = m;
        if (fs->root->nkids > 1)
            qsort(fs->root->kids, fs->root->nkids, sizeof *fs->root->kids, by_name);
    }
    int rc = m->dir ? build_tree(fs, m) : -ENOMEM;
    pthread_rwlock_unlock(&fs->lock);
    if (rc) {
        snprintf(err, errlen, "out of memory building the tree of %s", m->name);
        fs_mount_remove(fs, m->name, false);
        return DL_ERR_LOCAL;
    }
    cm_info("mount", "mounted %s from %s: %zu files, %" PRIu64 " bytes, prefetch=%s", m->name,
            m->uri, m->listing.n, m->bytes_total,
            (const char *[]){"all", "open", "none"}[m->prefetch]);
    if (m->prefetch == FS_PREFETCH_ALL)
        prefetch_all(m);
    return DL_OK;
}

int fs_mount_remove(struct fs *fs, const char *name, bool drop_cache)
{
    pthread_rwlock_wrlock(&fs->lock);
    struct fs_mount *m = find_mount(fs, name);
    if (!m) {
        pthread_rwlock_unlock(&fs->lock);
        return -ENOENT;
    }
    /* unlink the directory from the root; its nodes stay registered (inode numbers are
     * never reused) and the mount is freed with the filesystem, since the kernel may still
     * hold its inodes and open files */
    m->removed = true;
    struct fs_node *root = fs->root;
    for (size_t i = 0; i < root->nkids; i++) {
        if (root->kids[i] == m->dir) {
            memmove(&root->kids[i], &root->kids[i + 1], (root->nkids - i - 1) * sizeof *root->kids);
            root->nkids--;
            break;
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    fs_notify_removed(fs, name);

    struct fs_node **files = calloc(m->listing.n ? m->listing.n : 1, sizeof *files);
    size_t n = files && m->dir ? collect_files(m->dir, files, 0) : 0;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&m->lock);
        struct fs_object *o = files[i]->obj;
        pthread_mutex_unlock(&m->lock);
        if (o)
            fs_object_quiesce(o, drop_cache);
    }
    free(files);
    cm_info("mount", "unmounted %s%s", name, drop_cache ? " (cache dropped)" : "");
    return 0;
}

static void mount_status(struct fs_mount *m, struct fs_mount_status *st)
{
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", m->name);
    snprintf(st->uri, sizeof st->uri, "%s", m->uri);
    st->bytes_total = m->bytes_total;
    st->files = m->listing.n;
    bool all = true;
    struct fs_node **files = calloc(m->listing.n ? m->listing.n : 1, sizeof *files);
    size_t n = files ? collect_files(m->dir, files, 0) : 0;
    enum dl_status failed = DL_OK;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < n; i++) {
        struct fs_object *o = files[i]->obj;
        if (!o) {
            all = false;
            continue;
        }
        st->bytes_cached += fs_object_cached_bytes(o);
        all &= fs_object_complete(o);
        enum dl_status bad = fs_object_error(o);
        if (bad == DL_OK && m->prefetch == FS_PREFETCH_ALL)
            bad = fs_object_chunk_failure(o); /* prefetch gave up on it: it will not finish */
        if (failed == DL_OK && bad != DL_OK) {
            failed = bad;
            snprintf(st->error, sizeof st->error, "%s: %s", files[i]->entry->path,
                     dl_status_name(failed));
        }
    }
    pthread_mutex_unlock(&m->lock);
    free(files);
    if (failed != DL_OK)
        st->state = FS_MOUNT_ERROR;
    else if (all && files)
        st->state = FS_MOUNT_FETCHED;
    else
        st->state = m->prefetch == FS_PREFETCH_ALL ? FS_MOUNT_FETCHING : FS_MOUNT_READY;
}

size_t fs_mount_list(struct fs *fs, struct fs_mount_status **out)
{
    pthread_rwlock_rdlock(&fs->lock);
    size_t n = 0;
    *out = calloc(fs->nmounts ? fs->nmounts : 1, sizeof **out);
    for (size_t i = 0; *out && i < fs->nmounts; i++)
        if (!fs->mounts[i]->removed)
            mount_status(fs->mounts[i], &(*out)[n++]);
    pthread_rwlock_unlock(&fs->lock);
    return n;
}

bool fs_mount_get(struct fs *fs, const char *name, struct fs_mount_status *st)
{
    pthread_rwlock_rdlock(&fs->lock);
    struct fs_mount *m = find_mount(fs, name);
    if (m)
        mount_status(m, st);
    pthread_rwlock_unlock(&fs->lock);
    return m != NULL;
}

const struct dl_http_stats *fs_remote_stats(struct fs *fs)
{
    return dl_http_stats(fs->http);
}

void fs_get_stats(struct fs *fs, struct fs_stats *out)
{
    struct fs_cache_stats cs;
    fs_cache_get_stats(fs->cache, &cs);
    struct dl_http_stats *hs = dl_http_stats(fs->http);
    *out = (struct fs_stats){
        .read_bytes = fs->read_bytes,
        .read_ops = fs->read_ops,
        .cache_hit_bytes = cs.hit_bytes,
        .cache_miss_bytes = cs.miss_bytes,
        .cache_used_bytes = cs.bytes_used,
        .cache_max_bytes = cs.bytes_max,
        .cache_evictions = cs.evictions,
        .integrity_failures = cs.integrity_failures,
        .remote_retries = atomic_load(&hs->retries),
        .remote_failures = atomic_load(&hs->failures),
    };
}

void fs_free(struct fs *fs)
{
    if (!fs)
        return;
    keeper_stop(fs);
    pthread_mutex_destroy(&fs->keeper_lock);
    pthread_cond_destroy(&fs->keeper_wake);
    /* the workers may still complete chunks: stop them before objects go away */
    dl_fetch_free(fs->fetch);
    fs->fetch = NULL;
    fs_free_handles(fs);
    pthread_mutex_destroy(&fs->handles_lock);
    for (uint64_t i = 1; i < fs->nnodes; i++) {
        struct fs_node *n = fs->nodes[i];
        if (!n)
            continue;
        if (n->obj)
            fs_object_put(n->obj);
        free(n->kids);
        free(n->name);
        free(n);
    }
    free(fs->nodes);
    for (size_t i = 0; i < fs->nmounts; i++)
        mount_free(fs->mounts[i]);
    free(fs->mounts);
    fs_cache_close(fs->cache);
    dl_http_free(fs->http);
    pthread_rwlock_destroy(&fs->lock);
    free(fs);
}
