/* source.c - choosing a source for a URI, and the listing clean-up every source shares. */
#include "source.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/names.h"

struct dl_source *dl_source_open(const struct dl_source_config *cfg, struct dl_http *http,
                                 char *err, size_t errlen)
{
    switch (cfg->uri->kind) {
    case CM_URI_HF:
        return dl_source_hf_open(cfg, http, err, errlen);
    case CM_URI_S3:
        return dl_source_s3_open(cfg, http, err, errlen);
    case CM_URI_TOS:
        return dl_source_tos_open(cfg, http, err, errlen);
    case CM_URI_FILE:
        return dl_source_file_open(cfg, http, err, errlen);
    }
    snprintf(err, errlen, "unsupported URI kind");
    return NULL;
}

void dl_source_close(struct dl_source *s)
{
    if (s)
        s->ops->destroy(s);
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const struct dl_entry *)a)->path, ((const struct dl_entry *)b)->path);
}

void dl_listing_finish(struct dl_listing *l, const char *prefix, const char *what)
{
    size_t plen = strlen(prefix);
    bool dir_prefix = plen == 0 || prefix[plen - 1] == '/';

    for (size_t i = 0; i < l->n;) {
        struct dl_entry *e = &l->entries[i];
        const char *rel = NULL;
        if (strncmp(e->path, prefix, plen) == 0) {
            if (dir_prefix)
                rel = e->path + plen;
            else if (e->path[plen] == '\0') /* the prefix names this very object */
                rel = strrchr(e->path, '/') ? strrchr(e->path, '/') + 1 : e->path;
            else if (e->path[plen] == '/') /* a "directory" prefix given without its '/' */
                rel = e->path + plen + 1;
        }
        const char *why = rel ? cm_name_check(rel, strlen(rel)) : "outside the prefix";
        if (why) {
            char shown[300];
            size_t n = strnlen(e->path, 200);
            /* never echo control characters into the log */
            for (size_t k = 0; k < n; k++)
                shown[k] = (unsigned char)e->path[k] < 0x20 ? '?' : e->path[k];
            shown[n] = '\0';
            cm_warn("source", "skipping remote name '%s' in %s: %s", shown, what, why);
            dl_listing_remove(l, i);
            continue;
        }
        memmove(e->path, rel, strlen(rel) + 1);
        i++;
    }
    if (l->n > 1)
        qsort(l->entries, l->n, sizeof *l->entries, by_path);
    /* two keys that clean up to the same name ("a" listed twice) keep the first */
    for (size_t i = 1; i < l->n;) {
        if (strcmp(l->entries[i].path, l->entries[i - 1].path) == 0) {
            cm_warn("source", "skipping duplicate name '%s' in %s", l->entries[i].path, what);
            dl_listing_remove(l, i);
        } else {
            i++;
        }
    }
}

void dl_entry_identity(const struct dl_entry *e, char *out, size_t outlen)
{
    if (e->etag && *e->etag)
        snprintf(out, outlen, "%s", e->etag);
    else if (e->digest[0])
        snprintf(out, outlen, "%s", e->digest);
    else
        snprintf(out, outlen, "size=%" PRIu64 ",mtime=%" PRId64, e->size, e->mtime);
}
