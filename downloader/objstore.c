/* objstore.c - the S3/TOS source body: URLs, per-attempt signing, paged listing, pinned
 * ranged reads and the mapping of origin error codes (see objstore.h).
 *
 * A source is immutable after dl_objstore_new except for two flags that only ever move one
 * way: "anonymous" (the credential chain found nothing, so stop asking it) and "single" (the
 * last listing found that the prefix names one object, so its entry maps back to the prefix
 * itself). Both are atomics, so one source serves many threads. */
#include "objstore.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../common/hash.h"
#include "../common/log.h"

/* A model has at most DL_MAX_LISTING_ENTRIES files, 1000 per full page; a server that
 * answers with tiny pages still may not keep us paging forever. */
#define MAX_LIST_PAGES 20000u
#define URL_MAX 8192

struct objstore {
    struct dl_source base; /* first: the ops get &base */
    const struct dl_objstore_kind *kind;
    struct dl_objstore_endpoint ep;
    bool path_style;
    char region[64];
    char bucket[64];
    char prefix[1024];
    struct dl_objstore_auth auth;
    atomic_bool anonymous;
    atomic_bool single;
};

/* snprintf that reports truncation: 0, or -ENAMETOOLONG. */
static int fmt(char *out, size_t outlen, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *out, size_t outlen, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, outlen, f, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

const char *dl_objstore_pick(const char *a, const char *b, const char *c)
{
    if (a && *a)
        return a;
    if (b && *b)
        return b;
    if (c && *c)
        return c;
    return NULL;
}

bool dl_objstore_host_is_literal(const char *host)
{
    struct in_addr v4;
    if (host[0] == '[' || strcasecmp(host, "localhost") == 0)
        return true;
    return inet_pton(AF_INET, host, &v4) == 1;
}

/* p[0..n) is a decimal port 1..65535. */
static bool port_ok(const char *p, size_t n)
{
    long v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
        if (v > 65535)
            return false;
    }
    return v > 0;
}

int dl_objstore_parse_endpoint(const char *value, const char *what, struct dl_objstore_endpoint *ep,
                               char *err, size_t errlen)
{
    memset(ep, 0, sizeof *ep);
    const char *p = value, *sep = strstr(value, "://");
    snprintf(ep->scheme, sizeof ep->scheme, "https");
    if (sep) {
        size_t n = (size_t)(sep - value);
        if (!((n == 4 && strncasecmp(value, "http", 4) == 0) ||
              (n == 5 && strncasecmp(value, "https", 5) == 0))) {
            snprintf(err, errlen, "%s '%s': only http:// and https:// endpoints are supported",
                     what, value);
            return -EINVAL;
        }
        snprintf(ep->scheme, sizeof ep->scheme, "%s", n == 4 ? "http" : "https");
        p = sep + 3;
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (alen == 0 || alen >= sizeof ep->host || memchr(p, '@', alen) || strpbrk(rest, "?#")) {
        snprintf(err, errlen,
                 "%s '%s' is not an endpoint (expected host[:port] or "
                 "http(s)://host[:port])",
                 what, value);
        return -EINVAL;
    }
    memcpy(ep->hostport, p, alen);
    const char *colon;
    if (p[0] == '[') { /* IPv6 literal keeps its brackets, as in a Host header */
        const char *close = memchr(p, ']', alen);
        if (!close || (close + 1 < p + alen && close[1] != ':')) {
            snprintf(err, errlen, "%s '%s': malformed IPv6 address", what, value);
            return -EINVAL;
        }
        memcpy(ep->host, p, (size_t)(close - p) + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(p, ':', alen);
        memcpy(ep->host, p, colon ? (size_t)(colon - p) : alen);
    }
    if (colon && !port_ok(colon + 1, (size_t)(p + alen - colon - 1))) {
        snprintf(err, errlen, "%s '%s': bad port", what, value);
        return -EINVAL;
    }
    size_t blen = strlen(rest);
    while (blen > 0 && rest[blen - 1] == '/')
        blen--;
    if (blen >= sizeof ep->base) {
        snprintf(err, errlen, "%s '%s': path too long", what, value);
        return -EINVAL;
    }
    memcpy(ep->base, rest, blen);
    return 0;
}

/* "scheme://[bucket.]hostport/base[/bucket]": every URL of this source starts so. */
static int bucket_root(const struct objstore *o, char *out, size_t outlen)
{
    if (o->path_style)
        return fmt(out, outlen, "%s://%s%s/%s", o->ep.scheme, o->ep.hostport, o->ep.base,
                   o->bucket);
    return fmt(out, outlen, "%s://%s.%s%s", o->ep.scheme, o->bucket, o->ep.hostport, o->ep.base);
}

/* The remote key of a listed entry: the prefix itself when the listing found the prefix to
 * name one object (dl_listing_finish then keeps only its base name), else prefix/path. */
static int object_key(const struct objstore *o, const char *path, char *out, size_t outlen)
{
    const char *pfx = o->prefix;
    size_t plen = strlen(pfx);
    const char *slash = strrchr(pfx, '/');
    const char *base = slash ? slash + 1 : pfx;
    if (atomic_load(&o->single) && strcmp(path, base) == 0)
        return fmt(out, outlen, "%s", pfx);
    if (plen == 0 || pfx[plen - 1] == '/')
        return fmt(out, outlen, "%s%s", pfx, path);
    return fmt(out, outlen, "%s/%s", pfx, path);
}

static int object_url(const struct objstore *o, const char *key, char *out, size_t outlen)
{
    char root[1024], *enc;
    size_t enclen = 3 * strlen(key) + 1;
    int rc = bucket_root(o, root, sizeof root);
    if (rc)
        return rc;
    enc = malloc(enclen);
    if (!enc)
        return -ENOMEM;
    rc = dl_sign_uri_encode(key, 1, enc, enclen);
    if (rc >= 0)
        rc = fmt(out, outlen, "%s/%s", root, enc);
    free(enc);
    return rc < 0 ? rc : 0;
}

/* ListObjectsV2 page URL; query keys in sorted order, values SigV4-encoded, so the query
 * on the wire is already canonical. */
static int list_url(const struct objstore *o, const char *token, char *out, size_t outlen)
{
    char root[1024], pfx[3 * sizeof o->prefix + 1];
    int rc = bucket_root(o, root, sizeof root);
    if (rc || dl_sign_uri_encode(o->prefix, 0, pfx, sizeof pfx) < 0)
        return rc ? rc : -ENAMETOOLONG;
    const char *slash = o->path_style ? "" : "/";
    if (!token)
        return fmt(out, outlen, "%s%s?list-type=2&prefix=%s", root, slash, pfx);
    size_t toklen = 3 * strlen(token) + 1;
    char *tok = malloc(toklen);
    if (!tok)
        return -ENOMEM;
    rc = dl_sign_uri_encode(token, 0, tok, toklen);
    if (rc >= 0)
        rc = fmt(out, outlen, "%s%s?continuation-token=%s&list-type=2&prefix=%s", root, slash, tok,
                 pfx);
    free(tok);
    return rc < 0 ? rc : 0;
}

/* Split url into the Host header curl will send (default port dropped), the wire path and
 * the wire query. */
static int split_url(const char *url, char *host, size_t hostlen, char *path, size_t pathlen,
                     char *query, size_t querylen)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return -EINVAL;
    bool https = (size_t)(sep - url) == 5;
    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?#");
    const char *p = a + alen;
    size_t plen = strcspn(p, "?#");
    const char *q = p[plen] == '?' ? p + plen + 1 : "";
    size_t qlen = strcspn(q, "#");
    const char *dflt = https ? ":443" : ":80";
    size_t dlen = strlen(dflt);
    if (alen > dlen && strncmp(a + alen - dlen, dflt, dlen) == 0)
        alen -= dlen;
    if (alen >= hostlen || plen + 2 > pathlen || qlen >= querylen)
        return -ENAMETOOLONG;
    memcpy(host, a, alen);
    host[alen] = '\0';
    if (plen == 0)
        snprintf(path, pathlen, "/");
    else {
        memcpy(path, p, plen);
        path[plen] = '\0';
    }
    memcpy(query, q, qlen);
    query[qlen] = '\0';
    return 0;
}

/* Credentials for one request: 0, -ENOENT for anonymous, or another error with err set. */
static int current_creds(struct objstore *o, struct dl_aws_creds *c, char *err, size_t errlen)
{
    if (!o->auth.provider) {
        if (!o->auth.keys.access_key[0])
            return -ENOENT;
        *c = o->auth.keys;
        return 0;
    }
    if (atomic_load(&o->anonymous))
        return -ENOENT;
    int rc = dl_creds_get(o->auth.provider, c, err, errlen);
    if (rc == -ENOENT && !atomic_exchange(&o->anonymous, true))
        cm_info(o->kind->scheme, "no credentials found; sending unsigned requests bucket=%s",
                o->bucket);
    if (rc == 0) {
        /* chain credentials change on refresh; the log dedupes what it already knows */
        cm_log_add_secret(c->access_key);
        cm_log_add_secret(c->secret_key);
        cm_log_add_secret(c->session_token);
    }
    return rc;
}

static int add_header(struct curl_slist **headers, const char *name, const char *value)
{
    char line[4400];
    if (fmt(line, sizeof line, "%s: %s", name, value))
        return -ENAMETOOLONG;
    struct curl_slist *n = curl_slist_append(*headers, line);
    if (!n)
        return -ENOMEM;
    *headers = n;
    return 0;
}

/* dl_http_sign_fn: sign exactly this attempt. Signed: host, the date, the payload hash and
 * the session token. Range and If-Match are sent unsigned, which both SigV4 and TOS4
 * allow, so the signature never depends on how the HTTP layer resumes a range. */
static int sign_request(void *ctx, const char *method, const char *url, struct curl_slist **headers,
                        char *err, size_t errlen)
{
    struct objstore *o = ctx;
    const struct dl_objstore_kind *k = o->kind;
    struct dl_aws_creds c;
    int rc = current_creds(o, &c, err, errlen);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;

    char host[300], path[URL_MAX], query[URL_MAX], date[32], auth[1024];
    if (split_url(url, host, sizeof host, path, sizeof path, query, sizeof query)) {
        snprintf(err, errlen, "%s://%s: request URL too long to sign", k->scheme, o->bucket);
        return -ENAMETOOLONG;
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    struct dl_sign_header h[] = {
        {"host", host},
        {k->hdr_date, date},
        {k->hdr_payload, "UNSIGNED-PAYLOAD"},
        {k->hdr_token, c.session_token},
    };
    struct dl_sign_input in = {
        .flavor = k->flavor,
        .access_key = c.access_key,
        .secret_key = c.secret_key,
        .region = o->region,
        .service = k->service,
        .datetime = date,
        .method = method,
        .path = path,
        .query = query,
        .headers = h,
        .nheaders = c.session_token[0] ? 4 : 3,
        .payload_hash = "UNSIGNED-PAYLOAD",
    };
    rc = dl_sign(&in, auth, sizeof auth, NULL);
    if (rc) {
        snprintf(err, errlen, "%s://%s: cannot sign the request: %s", k->scheme, o->bucket,
                 strerror(-rc));
        goto out;
    }
    rc = add_header(headers, k->hdr_date, date);
    if (!rc)
        rc = add_header(headers, k->hdr_payload, "UNSIGNED-PAYLOAD");
    if (!rc && c.session_token[0])
        rc = add_header(headers, k->hdr_token, c.session_token);
    if (!rc)
        rc = add_header(headers, "Authorization", auth);
    if (rc)
        snprintf(err, errlen, "%s://%s: cannot add the signature headers: %s", k->scheme, o->bucket,
                 strerror(-rc));
out:
    explicit_bzero(&c, sizeof c);
    return rc;
}

/* Turn a failed request into a message naming the bucket and key (or prefix). The origin's
 * error code wins over the HTTP class; 412 on a pinned read is always "changed". */
static enum dl_status map_failure(const struct objstore *o, enum dl_status st,
                                  const struct dl_http_resp *r, const char *key,
                                  const char *http_err, char *err, size_t errlen)
{
    const char *scheme = o->kind->scheme;
    char target[1200], code[128] = "", msg[256] = "", safe[256] = "";
    snprintf(target, sizeof target, "%s://%s/%s", scheme, o->bucket, key ? key : o->prefix);
    if (r->status == 412 && key) {
        snprintf(err, errlen, "%s changed since it was listed", target);
        return DL_ERR_STALE;
    }
    if (r->status >= 400 && r->body && r->body_len)
        o->kind->parse_error(r->body, r->body_len, code, sizeof code, msg, sizeof msg);
    cm_redact(msg, safe, sizeof safe);
    for (const struct dl_objstore_error *e = o->kind->errors; code[0] && e->code; e++) {
        if (strcmp(e->code, code) != 0)
            continue;
        if (e->bucket_level)
            snprintf(target, sizeof target, "%s://%s", scheme, o->bucket);
        snprintf(err, errlen, "%s: %s (%s%s%s)", target, e->text, code, safe[0] ? ": " : "", safe);
        return e->status;
    }
    if (code[0])
        snprintf(err, errlen, "%s: %s (%s%s%s)", target, http_err, code, safe[0] ? ": " : "", safe);
    else
        snprintf(err, errlen, "%s: %s", target, http_err);
    return st;
}

/* Fetch every page into out (raw keys). */
static enum dl_status list_pages(struct objstore *o, struct dl_http_conn *c, struct dl_listing *out,
                                 unsigned *pages, char *err, size_t errlen)
{
    char url[URL_MAX], herr[1024], perr[256];
    char *token = NULL;
    enum dl_status st = DL_OK;
    for (*pages = 0;; (*pages)++) {
        if (*pages >= MAX_LIST_PAGES) {
            snprintf(err, errlen, "%s: listing did not end after %u pages", o->base.uri,
                     MAX_LIST_PAGES);
            st = DL_ERR_INVALID;
            break;
        }
        if (list_url(o, token, url, sizeof url)) {
            snprintf(err, errlen, "%s: listing URL too long", o->base.uri);
            st = DL_ERR_INVALID;
            break;
        }
        struct dl_http_req req = {
            .url = url, .sign = sign_request, .sign_ctx = o, .origin = o->kind->origin};
        struct dl_http_resp resp;
        st = dl_http_do(c, &req, &resp, herr, sizeof herr);
        if (st != DL_OK)
            st = map_failure(o, st, &resp, NULL, herr, err, errlen);
        else if (o->kind->parse_list(resp.body, resp.body_len, out, perr, sizeof perr) != 0) {
            snprintf(err, errlen, "%s: bad listing page %u: %s", o->base.uri, *pages + 1, perr);
            st = DL_ERR_INVALID;
        }
        dl_http_resp_free(&resp);
        if (st != DL_OK || !out->truncated)
            break;
        if (token && strcmp(token, out->next_token) == 0) {
            snprintf(err, errlen, "%s: the server repeated a continuation token", o->base.uri);
            st = DL_ERR_INVALID;
            break;
        }
        free(token);
        token = out->next_token; /* ours now; the next page's parse sets a new one */
        out->next_token = NULL;
    }
    free(token);
    if (st == DL_OK)
        (*pages)++;
    return st;
}

/* A prefix without a trailing '/' ("models/llama") also matches its siblings
 * ("models/llama-2/..."): those are other objects, not unsafe names, so they leave quietly
 * here rather than as warnings in dl_listing_finish. Returns whether the prefix names an
 * object itself. */
static bool drop_siblings(const char *prefix, struct dl_listing *l)
{
    size_t plen = strlen(prefix), w = 0;
    bool single = false;
    if (plen == 0 || prefix[plen - 1] == '/')
        return false;
    for (size_t i = 0; i < l->n; i++) {
        struct dl_entry *e = &l->entries[i];
        bool under = strncmp(e->path, prefix, plen) == 0; /* then path[plen] exists */
        if (under && (e->path[plen] == '\0' || e->path[plen] == '/')) {
            single |= e->path[plen] == '\0';
            l->entries[w++] = *e;
        } else {
            free(e->path);
            free(e->etag);
        }
    }
    l->n = w;
    return single;
}

static enum dl_status os_list(struct dl_source *s, struct dl_http_conn *c, struct dl_listing *out,
                              char *err, size_t errlen)
{
    struct objstore *o = (struct objstore *)s;
    unsigned pages;
    enum dl_status st = list_pages(o, c, out, &pages, err, errlen);
    if (st != DL_OK) {
        dl_listing_free(out);
        return st;
    }
    bool single = drop_siblings(o->prefix, out);
    atomic_store(&o->single, single);
    if (out->n > 0) /* an empty listing has nothing to finish (and a NULL array) */
        dl_listing_finish(out, o->prefix, s->uri);
    if (out->n == 0) {
        dl_listing_free(out);
        snprintf(err, errlen, "no objects under %s", s->uri);
        return DL_ERR_NOTFOUND;
    }
    cm_info(o->kind->scheme, "listed %s files=%zu pages=%u single=%d", s->uri, out->n, pages,
            (int)single);
    return DL_OK;
}

static enum dl_status os_read(struct dl_source *s, struct dl_http_conn *c, const struct dl_entry *e,
                              uint64_t off, uint64_t len, dl_http_sink_fn sink, void *ctx,
                              char *err, size_t errlen)
{
    struct objstore *o = (struct objstore *)s;
    char key[DL_MAX_KEY_LEN + sizeof o->prefix], url[URL_MAX], ifmatch[320], herr[1024];
    const char *headers[] = {ifmatch, NULL};
    if (len == 0)
        return DL_OK;
    if (off + len < off) {
        snprintf(err, errlen, "%s/%s: range overflows", s->uri, e->path);
        return DL_ERR_INVALID;
    }
    if (object_key(o, e->path, key, sizeof key) || object_url(o, key, url, sizeof url)) {
        snprintf(err, errlen, "%s/%s: object URL too long", s->uri, e->path);
        return DL_ERR_INVALID;
    }
    bool pinned = e->etag && e->etag[0];
    if (pinned && fmt(ifmatch, sizeof ifmatch, "If-Match: \"%s\"", e->etag)) {
        snprintf(err, errlen, "%s://%s/%s: ETag too long", o->kind->scheme, o->bucket, key);
        return DL_ERR_INVALID;
    }
    struct dl_http_req req = {
        .url = url,
        .origin = o->kind->origin,
        .headers = pinned ? headers : NULL,
        .sign = sign_request,
        .sign_ctx = o,
        .has_range = true,
        .range_start = off,
        .range_end = off + len,
        .sink = sink,
        .sink_ctx = ctx,
    };
    struct dl_http_resp resp;
    enum dl_status st = dl_http_do(c, &req, &resp, herr, sizeof herr);
    if (st != DL_OK) {
        st = map_failure(o, st, &resp, key, herr, err, errlen);
    } else if (pinned && resp.etag[0]) {
        /* a server that ignores If-Match still cannot hand us another version unnoticed */
        dl_etag_normalize(resp.etag);
        if (strcmp(resp.etag, e->etag) != 0) {
            snprintf(err, errlen, "%s://%s/%s changed since it was listed", o->kind->scheme,
                     o->bucket, key);
            st = DL_ERR_STALE;
        }
    }
    dl_http_resp_free(&resp);
    return st;
}

static void os_destroy(struct dl_source *s)
{
    struct objstore *o = (struct objstore *)s;
    dl_creds_free(o->auth.provider);
    explicit_bzero(&o->auth.keys, sizeof o->auth.keys);
    free(o);
}

static const struct dl_source_ops objstore_ops = {
    .list = os_list,
    .read = os_read,
    .destroy = os_destroy,
};

/* "<endpoint-host>/<bucket>/<prefix>"; a prefix too long for the field is replaced by its
 * sha256 so two long prefixes never share an identity. */
static void set_identity(struct objstore *o)
{
    char *id = o->base.identity;
    size_t idlen = sizeof o->base.identity;
    if (fmt(id, idlen, "%s/%s/%s", o->ep.hostport, o->bucket, o->prefix) == 0)
        return;
    char hex[65];
    cm_sha256_hex(o->prefix, strlen(o->prefix), hex);
    snprintf(id, idlen, "%s/%s/sha256:%s", o->ep.hostport, o->bucket, hex);
}

struct dl_source *dl_objstore_new(const struct dl_objstore_kind *kind,
                                  const struct dl_source_config *cfg, struct dl_http *http,
                                  const struct dl_objstore_endpoint *ep, bool path_style,
                                  const char *region, struct dl_objstore_auth *auth, char *err,
                                  size_t errlen)
{
    const struct cm_uri *u = cfg->uri;
    struct objstore *o = NULL;
    if (!u->bucket[0]) {
        snprintf(err, errlen, "%s URI has no bucket", kind->scheme);
        goto fail;
    }
    if (strlen(region) >= sizeof o->region) {
        snprintf(err, errlen, "%s region '%.64s...' is too long", kind->scheme, region);
        goto fail;
    }
    o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    o->base.ops = &objstore_ops;
    o->base.http = http;
    o->base.kind = u->kind;
    snprintf(o->base.uri, sizeof o->base.uri, "%s://%s/%s", kind->scheme, u->bucket, u->prefix);
    o->kind = kind;
    o->ep = *ep;
    o->path_style = path_style;
    snprintf(o->region, sizeof o->region, "%s", region);
    snprintf(o->bucket, sizeof o->bucket, "%s", u->bucket);
    snprintf(o->prefix, sizeof o->prefix, "%s", u->prefix);
    o->auth = *auth;
    explicit_bzero(auth, sizeof *auth);
    cm_log_add_secret(o->auth.keys.access_key);
    cm_log_add_secret(o->auth.keys.secret_key);
    cm_log_add_secret(o->auth.keys.session_token);
    set_identity(o);
    cm_debug(kind->scheme, "opened %s endpoint=%s://%s region=%s style=%s auth=%s", o->base.uri,
             ep->scheme, ep->hostport, o->region, path_style ? "path" : "virtual-hosted",
             o->auth.provider             ? "chain"
             : o->auth.keys.access_key[0] ? "keys"
                                          : "anonymous");
    return &o->base;
fail:
    dl_creds_free(auth->provider);
    explicit_bzero(auth, sizeof *auth);
    return NULL;
}
