/* source.h - the Source interface: what is there, bytes [a, b) of an entry, how to verify.
 *
 * HF, S3, TOS and local directories implement it; the CLI, the mount and the LoRA flow all
 * go through it. Signing, credentials and retries live below it (http.c, creds.c, sign.c);
 * chunking, parallelism and caching live above it (fetch.c, fs/). A source is immutable
 * after dl_source_open and safe to use from many threads, each with its own connection. */
#ifndef DL_SOURCE_H
#define DL_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/uri.h"
#include "http.h"
#include "listing.h"
#include "status.h"

/* Everything a source may be configured with. NULL fields fall back to the environment
 * (SPEC §3: HF_ENDPOINT, HF_TOKEN, AWS_*, TOS_*), then to defaults. */
struct dl_source_config {
    const struct cm_uri *uri;
    const char *hf_endpoint, *hf_token, *hf_revision;
    const char *ak, *sk, *session_token; /* S3 or TOS keys given explicitly */
    const char *endpoint, *region;       /* S3 or TOS endpoint and region */
};

struct dl_source;

struct dl_source_ops {
    /* List every file under the URI: relative paths, sanitized (unsafe names skipped with a
     * warning), sorted by path. Single-object URIs list one entry named by its base name. */
    enum dl_status (*list)(struct dl_source *s, struct dl_http_conn *c, struct dl_listing *out,
                           char *err, size_t errlen);
    /* Deliver bytes [off, off+len) of e to sink. The read is pinned to what was listed
     * (commit, ETag), so a changed object gives DL_ERR_STALE, never mixed bytes. */
    enum dl_status (*read)(struct dl_source *s, struct dl_http_conn *c, const struct dl_entry *e,
                           uint64_t off, uint64_t len, dl_http_sink_fn sink, void *ctx,
                           char *err, size_t errlen);
    void (*destroy)(struct dl_source *s);
};

struct dl_source {
    const struct dl_source_ops *ops;
    struct dl_http *http;   /* shared, not owned */
    enum cm_uri_kind kind;
    char uri[CM_URI_MAX];   /* as given, for messages */
    char identity[512];     /* stable content identity of the snapshot: HF "repo@commit" (set
                               by list), S3/TOS "endpoint/bucket/prefix", file "path" */
};

/* Open the source for cfg->uri. Does no network I/O beyond credential discovery; problems
 * found later surface from list/read. Returns NULL with err set (configuration errors, e.g.
 * only one of two keys). The source borrows http. */
struct dl_source *dl_source_open(const struct dl_source_config *cfg, struct dl_http *http,
                                 char *err, size_t errlen);
void dl_source_close(struct dl_source *s);

/* Per-kind constructors, called by dl_source_open. */
struct dl_source *dl_source_hf_open(const struct dl_source_config *cfg, struct dl_http *http,
                                    char *err, size_t errlen);
struct dl_source *dl_source_s3_open(const struct dl_source_config *cfg, struct dl_http *http,
                                    char *err, size_t errlen);
struct dl_source *dl_source_tos_open(const struct dl_source_config *cfg, struct dl_http *http,
                                     char *err, size_t errlen);
struct dl_source *dl_source_file_open(const struct dl_source_config *cfg, struct dl_http *http,
                                      char *err, size_t errlen);

/* Shared by the sources: strip prefix from every raw key, drop keys that are not under it,
 * drop (with a warning naming the key) every unsafe name (cm_name_check), and sort by path.
 * When the prefix names a single object (no trailing '/', exact key match), that entry keeps
 * its base name. */
void dl_listing_finish(struct dl_listing *l, const char *prefix, const char *what);

/* What identifies this version of e: its ETag, else its digest, else "size=N,mtime=M".
 * Written to AIBrix's .metadata files and to chunk maps. */
void dl_entry_identity(const struct dl_entry *e, char *out, size_t outlen);

#endif
