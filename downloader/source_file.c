/* source_file.c - a local directory as a source (file:///dir, and bare paths).
 *
 * It is the embedded default of `make demo` and the way to re-export a host path through the
 * mount with filtering. Listing walks the tree without following symlinks out of it; reads
 * are pread. Digests are not published by a directory, so nothing is verified. */
#include "source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/log.h"

#define MAX_DEPTH 64

struct file_source {
    struct dl_source base;
    char root[CM_URI_MAX];
};

static enum dl_status walk(const char *root, const char *rel, int depth, struct dl_listing *out,
                           char *err, size_t errlen)
{
    char path[CM_URI_MAX * 2];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "cannot open directory %s: %s", path, strerror(errno));
        return errno == ENOENT ? DL_ERR_NOTFOUND : DL_ERR_ACCESS;
    }
    enum dl_status st = DL_OK;
    struct dirent *de;
    while (st == DL_OK && (de = readdir(d)) != NULL) {
        char child[CM_URI_MAX];
        struct stat sb;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(child, sizeof child, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
            (int)sizeof child)
            continue;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth < MAX_DEPTH)
                st = walk(root, child, depth + 1, out, err, errlen);
        } else if (S_ISREG(sb.st_mode)) {
            if (dl_listing_add(out, child, (uint64_t)sb.st_size, sb.st_mtime, NULL) != 0) {
                snprintf(err, errlen, "listing of %s too large", root);
                st = DL_ERR_INVALID;
            }
        }
    }
    closedir(d);
    return st;
}

static enum dl_status file_list(struct dl_source *s, struct dl_http_conn *c,
                                struct dl_listing *out, char *err, size_t errlen)
{
    struct file_source *fs = (struct file_source *)s;
    struct stat sb;
    (void)c;
    if (stat(fs->root, &sb) != 0) {
        snprintf(err, errlen, "%s: %s", fs->root, strerror(errno));
        return errno == ENOENT ? DL_ERR_NOTFOUND : DL_ERR_ACCESS;
    }
    if (S_ISREG(sb.st_mode)) {
        const char *base = strrchr(fs->root, '/');
        if (dl_listing_add(out, base ? base + 1 : fs->root, (uint64_t)sb.st_size, sb.st_mtime,
                           NULL) != 0)
            return DL_ERR_LOCAL;
        /* a single file: reads open the root itself */
        return DL_OK;
    }
    enum dl_status st = walk(fs->root, "", 0, out, err, errlen);
    if (st == DL_OK)
        dl_listing_finish(out, "", s->uri);
    return st;
}

static enum dl_status file_read(struct dl_source *s, struct dl_http_conn *c,
                                const struct dl_entry *e, uint64_t off, uint64_t len,
                                dl_http_sink_fn sink, void *ctx, char *err, size_t errlen)
{
    struct file_source *fs = (struct file_source *)s;
    char path[CM_URI_MAX * 2];
    struct stat sb;
    (void)c;
    if (stat(fs->root, &sb) == 0 && S_ISREG(sb.st_mode))
        snprintf(path, sizeof path, "%s", fs->root);
    else
        snprintf(path, sizeof path, "%s/%s", fs->root, e->path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? DL_ERR_NOTFOUND : DL_ERR_ACCESS;
    }
    enum dl_status st = DL_OK;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != e->size) {
        snprintf(err, errlen, "%s changed since it was listed", path);
        st = DL_ERR_STALE;
    }
    char *buf = st == DL_OK ? malloc(1 << 20) : NULL;
    if (st == DL_OK && !buf)
        st = DL_ERR_LOCAL;
    while (st == DL_OK && len > 0) {
        size_t want = len < (1 << 20) ? (size_t)len : (1 << 20);
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0) {
            snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "unexpected end");
            st = n < 0 ? DL_ERR_LOCAL : DL_ERR_STALE;
            break;
        }
        int rc = sink(ctx, off, buf, (size_t)n);
        if (rc) {
            snprintf(err, errlen, "writing %s: %s", e->path, strerror(-rc));
            st = DL_ERR_LOCAL;
        }
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    free(buf);
    close(fd);
    return st;
}

static void file_destroy(struct dl_source *s)
{
    free(s);
}

static const struct dl_source_ops file_ops = {
    .list = file_list,
    .read = file_read,
    .destroy = file_destroy,
};

struct dl_source *dl_source_file_open(const struct dl_source_config *cfg, struct dl_http *http,
                                      char *err, size_t errlen)
{
    struct file_source *fs = calloc(1, sizeof *fs);
    (void)err, (void)errlen;
    if (!fs)
        return NULL;
    fs->base.ops = &file_ops;
    fs->base.http = http;
    fs->base.kind = CM_URI_FILE;
    snprintf(fs->root, sizeof fs->root, "%s", cfg->uri->path);
    snprintf(fs->base.uri, sizeof fs->base.uri, "file://%s", cfg->uri->path);
    snprintf(fs->base.identity, sizeof fs->base.identity, "file:%s", cfg->uri->path);
    return &fs->base;
}
