/* source_probe.c - drive one Source from the command line, for the integration tests.
 *
 *   source_probe URI list                 one line per entry: path, size, etag, digest kind, digest
 *   source_probe URI get PATH OFF LEN     bytes [OFF, OFF+LEN) of PATH on stdout
 *
 * Configuration comes from the environment exactly as for aibrix_download. On failure the
 * message goes to stderr and the exit status is dl_status_exit_code() (2 for bad arguments).
 * A read is pinned by its listing, so get lists first. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "../../downloader/source.h"

#define PROBE_MAX_GET (1ULL << 30)

static const char *const digest_names[] = {
    [CM_HASH_NONE] = "none", [CM_HASH_SHA256] = "sha256",       [CM_HASH_GIT_SHA1] = "git-sha1",
    [CM_HASH_MD5] = "md5",   [CM_HASH_CRC64ECMA] = "crc64ecma",
};

/* The requested range collected in memory: the HTTP layer may deliver an offset twice after
 * a retry, so bytes are placed by offset and written out once at the end. */
struct span {
    unsigned char *buf;
    uint64_t off, len;
};

static int span_sink(void *ctx, uint64_t off, const void *data, size_t len)
{
    struct span *sp = ctx;
    if (off < sp->off || off - sp->off > sp->len || len > sp->len - (off - sp->off))
        return -ERANGE;
    memcpy(sp->buf + (off - sp->off), data, len);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: source_probe URI list\n"
                    "       source_probe URI get PATH OFF LEN\n");
    return 2;
}

static void print_listing(const struct dl_listing *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct dl_entry *e = &l->entries[i];
        printf("%s\t%llu\t%s\t%s\t%s\n", e->path, (unsigned long long)e->size,
               e->etag ? e->etag : "", digest_names[e->digest_kind], e->digest);
    }
}

static enum dl_status get(struct dl_source *s, struct dl_http_conn *c, const struct dl_listing *l,
                          const char *path, uint64_t off, uint64_t len, char *err, size_t errlen)
{
    const struct dl_entry *e = NULL;
    for (size_t i = 0; i < l->n && !e; i++)
        if (strcmp(l->entries[i].path, path) == 0)
            e = &l->entries[i];
    if (!e) {
        snprintf(err, errlen, "'%s' is not in the listing", path);
        return DL_ERR_NOTFOUND;
    }
    if (len > PROBE_MAX_GET) {
        snprintf(err, errlen, "LEN %llu is over the probe's limit", (unsigned long long)len);
        return DL_ERR_INVALID;
    }
    struct span sp = {.buf = malloc(len ? len : 1), .off = off, .len = len};
    if (!sp.buf) {
        snprintf(err, errlen, "out of memory");
        return DL_ERR_LOCAL;
    }
    enum dl_status st = s->ops->read(s, c, e, off, len, span_sink, &sp, err, errlen);
    if (st == DL_OK && fwrite(sp.buf, 1, len, stdout) != len) {
        snprintf(err, errlen, "writing to stdout: %s", strerror(errno));
        st = DL_ERR_LOCAL;
    }
    free(sp.buf);
    return st;
}

int main(int argc, char **argv)
{
    bool is_list = argc == 3 && strcmp(argv[2], "list") == 0;
    bool is_get = argc == 6 && strcmp(argv[2], "get") == 0;
    uint64_t off = 0, len = 0;
    if (!is_list && !is_get)
        return usage();
    if (is_get && (cm_parse_u64(argv[4], &off) != 0 || cm_parse_u64(argv[5], &len) != 0))
        return usage();
    char err[1024] = "";
    struct cm_uri uri;
    if (cm_uri_parse(argv[1], &uri, err, sizeof err) != 0) {
        fprintf(stderr, "source_probe: %s\n", err);
        return 2;
    }
    struct dl_http *http = dl_http_new();
    struct dl_http_conn *conn = http ? dl_http_conn_new(http) : NULL;
    if (!conn) {
        fprintf(stderr, "source_probe: cannot set up the HTTP client\n");
        dl_http_free(http);
        return dl_status_exit_code(DL_ERR_LOCAL);
    }
    struct dl_source_config cfg = {.uri = &uri};
    struct dl_source *s = dl_source_open(&cfg, http, err, sizeof err);
    enum dl_status st = s ? DL_OK : DL_ERR_INVALID;
    struct dl_listing l = {0};
    if (s)
        st = s->ops->list(s, conn, &l, err, sizeof err);
    if (st == DL_OK && is_list)
        print_listing(&l);
    else if (st == DL_OK)
        st = get(s, conn, &l, argv[3], off, len, err, sizeof err);
    if (fflush(stdout) != 0 && st == DL_OK) {
        snprintf(err, sizeof err, "writing to stdout: %s", strerror(errno));
        st = DL_ERR_LOCAL;
    }
    if (st != DL_OK)
        fprintf(stderr, "source_probe: %s\n", err);
    dl_listing_free(&l);
    dl_source_close(s);
    dl_http_conn_free(conn);
    dl_http_free(http);
    return st == DL_OK ? 0 : dl_status_exit_code(st);
}
