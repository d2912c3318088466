/* objstore.h - what the S3 and TOS sources share (folder-private).
 *
 * S3 (SigV4) and Volcengine TOS (TOS4) differ only in configuration (endpoint, region and
 * credential conventions), the signature flavour and header names, the listing format (XML
 * vs JSON) and their error codes. Everything else - URL building, per-attempt signing,
 * ListObjectsV2 paging, If-Match pinned ranged reads, error mapping - lives in objstore.c
 * and is driven by a struct dl_objstore_kind. source_s3.c and source_tos.c only resolve
 * their configuration and call dl_objstore_new. */
#ifndef DL_OBJSTORE_H
#define DL_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "creds.h"
#include "sign.h"
#include "source.h"

/* How an origin's error code reads and what it means. bucket_level: the message names only
 * the bucket (the bucket itself is missing or forbidden), not the key. */
struct dl_objstore_error {
    const char *code;
    enum dl_status status;
    const char *text;
    bool bucket_level;
};

struct dl_objstore_kind {
    const char *scheme; /* "s3" / "tos": URIs in messages, log component */
    enum dl_origin origin; /* the metrics' source label */
    enum dl_sign_flavor flavor;
    const char *service;     /* AWS4 service name ("s3"); unused by TOS4 */
    const char *hdr_date;    /* "x-amz-date" / "x-tos-date" */
    const char *hdr_payload; /* "x-amz-content-sha256" / "x-tos-content-sha256" */
    const char *hdr_token;   /* "x-amz-security-token" / "x-tos-security-token" */
    int (*parse_list)(const char *body, size_t len, struct dl_listing *out, char *err,
                      size_t errlen);
    int (*parse_error)(const char *body, size_t len, char *code, size_t codelen, char *msg,
                       size_t msglen);
    const struct dl_objstore_error *errors; /* terminated by a NULL code */
};

/* An endpoint split into what URLs and the Host header are made of. */
struct dl_objstore_endpoint {
    char scheme[8];     /* "http" / "https" */
    char host[256];     /* host name or IP literal (IPv6 with its brackets) */
    char hostport[272]; /* host, plus ":port" when the URL gave one */
    char base[256];     /* path before the bucket, no trailing '/'; usually "" */
};

/* Parse an endpoint value: "host[:port]" (https) or "http(s)://host[:port][/base]".
 * Returns 0, or -EINVAL with a message in err naming what (the variable) was given. */
int dl_objstore_parse_endpoint(const char *value, const char *what, struct dl_objstore_endpoint *ep,
                               char *err, size_t errlen);

/* True for an IPv4 or bracketed IPv6 literal and for "localhost": such endpoints cannot
 * serve virtual-hosted buckets. */
bool dl_objstore_host_is_literal(const char *host);

/* Who signs: either an S3 credential chain (provider, owned) or static keys (TOS; an empty
 * access_key means anonymous). */
struct dl_objstore_auth {
    struct dl_creds_provider *provider;
    struct dl_aws_creds keys;
};

/* Make a source for cfg->uri's bucket and prefix at ep, region. Takes ownership of
 * auth->provider in every case (freed on failure too). Registers static secrets with the
 * log. Returns NULL with err set on failure. */
struct dl_source *dl_objstore_new(const struct dl_objstore_kind *kind,
                                  const struct dl_source_config *cfg, struct dl_http *http,
                                  const struct dl_objstore_endpoint *ep, bool path_style,
                                  const char *region, struct dl_objstore_auth *auth, char *err,
                                  size_t errlen);

/* The first non-empty of a, b, c (config value, env var, env var); NULL when all are. */
const char *dl_objstore_pick(const char *a, const char *b, const char *c);

#endif
