/* source_hf.c - the Hugging Face Hub as a Source (SPEC §3).
 *
 * The whole protocol is three requests: resolve the revision to a commit once
 * (/api/models/{repo}/revision/{rev}), list the tree at that commit (pages chained by the Link
 * header), and read files with ranged GETs of /{repo}/resolve/{commit}/{path}. Pinning every
 * read to the commit means a branch that moves while we download can never mix two versions
 * of a file. Following the LFS redirect to the CDN, retries, and keeping the token away from
 * other origins are the HTTP layer's job (http.c); this file builds URLs and turns the Hub's
 * X-Error-Code answers into statuses and messages naming the repo, revision or file.
 *
 * The CDN target of a redirect is not cached between reads: http.h does not expose it, and a
 * presigned URL expires anyway, so every chunk pays the resolve round trip. */
#include "source.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "env.h"
#include "hash.h"
#include "log.h"

#define HF_DEFAULT_ENDPOINT "https://huggingface.co"
#define HF_MAX_PAGES 10000 /* 10 million files at the Hub's 1000 per page */
#define HF_MAX_TOKEN_FILE 4096

struct hf_source {
    struct dl_source base; /* first: a struct dl_source * is a struct hf_source * */
    char endpoint[1024];   /* no trailing '/' */
    char origin[1024];     /* "scheme://host:port" of endpoint: where the token may go */
    char authority[512];   /* "host[:port]" of endpoint, for identity */
    char repo[256];
    char revision[256];
    char *token;          /* owned; NULL when none was found */
    pthread_mutex_t lock; /* guards commit and cdn */
    char commit[41];      /* "" until list resolved the revision; never changes after */
    struct cdn_url {
        char *path, *url; /* owned */
        time_t until;
    } cdn[64];
};

/* ---- configuration ---------------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A malloc'd copy of s without surrounding white space, or NULL when nothing is left (or on
 * allocation failure, which then reads as "no token"). */
static char *trimmed_dup(const char *s, size_t n)
{
    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1]))
        n--;
    return n ? strndup(s, n) : NULL;
}

/* The trimmed first line of a token file. A missing file is simply no token. */
static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno != ENOENT)
            cm_warn("hf", "cannot read token file path=%s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[HF_MAX_TOKEN_FILE];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    return trimmed_dup(buf, nl ? (size_t)(nl - buf) : n);
}

/* Token order as huggingface_hub: explicit, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token
 * file ($HF_TOKEN_PATH, else $HF_HOME/token, HF_HOME defaulting to
 * $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface). Returns a malloc'd token or NULL. */
static char *discover_token(const struct dl_source_config *cfg)
{
    const char *given[] = {cfg->hf_token, cm_env_str("HF_TOKEN"),
                           cm_env_str("HUGGING_FACE_HUB_TOKEN")};
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
        char *t = given[i] ? trimmed_dup(given[i], strlen(given[i])) : NULL;
        if (t)
            return t;
    }
    char path[4096];
    const char *p = cm_env_str("HF_TOKEN_PATH");
    if (p)
        snprintf(path, sizeof path, "%s", p);
    else if ((p = cm_env_str("HF_HOME")))
        snprintf(path, sizeof path, "%s/token", p);
    else if ((p = cm_env_str("XDG_CACHE_HOME")))
        snprintf(path, sizeof path, "%s/huggingface/token", p);
    else if ((p = cm_env_str("HOME")))
        snprintf(path, sizeof path, "%s/.cache/huggingface/token", p);
    else
        return NULL;
    return read_token_file(path);
}

/* Fill origin ("scheme://host:port", lowercase, port explicit) and authority ("host[:port]"
 * as written) of url. Returns 0 or -EINVAL. */
static int url_origin(const char *url, char *origin, size_t olen, char *authority, size_t alen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *given_port = NULL;
    int rc = -EINVAL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        for (char *c = host; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        int n = snprintf(origin, olen, "%s://%s:%s", scheme, host, port);
        if (curl_url_get(u, CURLUPART_PORT, &given_port, 0) == CURLUE_OK)
            snprintf(authority, alen, "%s:%s", host, given_port);
        else
            snprintf(authority, alen, "%s", host);
        rc = n > 0 && (size_t)n < olen ? 0 : -EINVAL;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(given_port);
    curl_url_cleanup(u);
    return rc;
}

static int set_endpoint(struct hf_source *hs, const char *ep, char *err, size_t errlen)
{
    size_t n = strlen(ep);
    while (n > 0 && ep[n - 1] == '/')
        n--;
    if (strncasecmp(ep, "http://", 7) != 0 && strncasecmp(ep, "https://", 8) != 0) {
        snprintf(err, errlen, "HF endpoint '%.200s' must start with http:// or https://", ep);
        return -EINVAL;
    }
    if (n >= sizeof hs->endpoint) {
        snprintf(err, errlen, "HF endpoint '%.200s...' is too long", ep);
        return -EINVAL;
    }
    memcpy(hs->endpoint, ep, n);
    hs->endpoint[n] = '\0';
    if (url_origin(hs->endpoint, hs->origin, sizeof hs->origin, hs->authority,
                   sizeof hs->authority) != 0) {
        snprintf(err, errlen, "HF endpoint '%.200s' is not a valid URL", hs->endpoint);
        return -EINVAL;
    }
    return 0;
}

/* ---- URLs --------------------------------------------------------------------------------- */

/* Percent-encode s, keeping RFC 3986 unreserved bytes (and '/' when keep_slash), as
 * huggingface_hub's quote(). Returns a malloc'd string or NULL. */
static char *pct_encode(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * strlen(s) + 1), *p = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
        if (keep) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return out;
}

/* Resolve a Link target (absolute or relative) against the page it came from. Returns a
 * malloc'd URL or NULL. */
static char *resolve_link(const char *base, const char *link)
{
    CURLU *u = curl_url();
    char *got = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, link, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &got, 0) == CURLUE_OK)
        out = strdup(got);
    curl_free(got);
    curl_url_cleanup(u);
    return out;
}

/* The token goes only to the endpoint's origin: a Link header naming another host must not
 * collect it (the HTTP layer would treat that host as the first origin of a new request). */
static const char *bearer_for(const struct hf_source *hs, const char *url)
{
    char origin[1024], authority[512];
    if (!hs->token || url_origin(url, origin, sizeof origin, authority, sizeof authority) != 0)
        return NULL;
    return strcmp(origin, hs->origin) == 0 ? hs->token : NULL;
}

/* ---- errors ------------------------------------------------------------------------------- */

/* What an error answer says is wrong; the message for each is built by hf_message. */
enum hf_problem {
    HF_P_NONE, /* nothing the Hub explained: keep the HTTP layer's status and message */
    HF_P_REPO,
    HF_P_REVISION,
    HF_P_REPO_OR_REVISION, /* a bare 404 from the API: either may be missing */
    HF_P_ENTRY,
    HF_P_GATED,
    HF_P_DENIED,
};

static const struct {
    const char *code; /* X-Error-Code */
    enum hf_problem problem;
} hf_error_codes[] = {
    {"RepoNotFound", HF_P_REPO}, {"RevisionNotFound", HF_P_REVISION}, {"EntryNotFound", HF_P_ENTRY},
    {"GatedRepo", HF_P_GATED},   {"DisabledRepoError", HF_P_DENIED},
};

static const enum dl_status hf_problem_status[] = {
    [HF_P_NONE] = DL_OK,
    [HF_P_REPO] = DL_ERR_NOTFOUND,
    [HF_P_REVISION] = DL_ERR_NOTFOUND,
    [HF_P_REPO_OR_REVISION] = DL_ERR_NOTFOUND,
    [HF_P_ENTRY] = DL_ERR_NOTFOUND,
    [HF_P_GATED] = DL_ERR_ACCESS,
    [HF_P_DENIED] = DL_ERR_ACCESS,
};

/* The Hub's code wins; without one, 401/403 is denied and 404 means not_found. */
static enum hf_problem classify(const struct dl_http_resp *resp, enum hf_problem not_found)
{
    for (size_t i = 0; i < sizeof hf_error_codes / sizeof hf_error_codes[0]; i++)
        if (strcmp(resp->error_code, hf_error_codes[i].code) == 0)
            return hf_error_codes[i].problem;
    if (resp->status == 401 || resp->status == 403)
        return HF_P_DENIED;
    if (resp->status == 404)
        return not_found;
    return HF_P_NONE;
}

/* Messages name the repo, revision or file, and say whether a token was sent; never the
 * token itself. */
static void hf_message(const struct hf_source *hs, enum hf_problem p, long status, const char *path,
                       char *err, size_t errlen)
{
    bool tok = hs->token != NULL;
    switch (p) {
    case HF_P_REPO:
        snprintf(err, errlen, "repository '%s' not found on %s (or it is private and %s)", hs->repo,
                 hs->endpoint,
                 tok ? "the token does not grant access to it" : "no token was given");
        break;
    case HF_P_REVISION:
        snprintf(err, errlen, "revision '%s' not found in repository '%s' on %s", hs->revision,
                 hs->repo, hs->endpoint);
        break;
    case HF_P_REPO_OR_REVISION:
        snprintf(err, errlen, "repository '%s' or its revision '%s' not found on %s", hs->repo,
                 hs->revision, hs->endpoint);
        break;
    case HF_P_ENTRY:
        snprintf(err, errlen, "file '%s' not found in repository '%s' at commit %s", path, hs->repo,
                 hs->commit);
        break;
    case HF_P_GATED:
        snprintf(err, errlen, "access to '%s' is gated: accept its terms on the Hub and %s",
                 hs->repo, tok ? "check that HF_TOKEN belongs to that account" : "set HF_TOKEN");
        break;
    case HF_P_DENIED:
        snprintf(err, errlen, "access to '%s' on %s denied (HTTP %ld; %s)", hs->repo, hs->endpoint,
                 status,
                 tok ? "a token was sent but does not grant access"
                     : "no token was sent: set HF_TOKEN");
        break;
    case HF_P_NONE:
        break;
    }
}

/* Run one request; on a client error refine the status and message from the Hub's answer.
 * path names the file for EntryNotFound (NULL for API calls). */
static enum dl_status hf_do(struct hf_source *hs, struct dl_http_conn *c,
                            const struct dl_http_req *req, struct dl_http_resp *resp,
                            enum hf_problem not_found, const char *path, char *err, size_t errlen)
{
    enum dl_status st = dl_http_do(c, req, resp, err, errlen);
    if (st != DL_ERR_NOTFOUND && st != DL_ERR_ACCESS && st != DL_ERR_INVALID)
        return st;
    enum hf_problem p = classify(resp, not_found);
    if (p == HF_P_NONE)
        return st;
    hf_message(hs, p, resp->status, path ? path : "", err, errlen);
    return hf_problem_status[p];
}

/* ---- list --------------------------------------------------------------------------------- */

static enum dl_status resolve_commit(struct hf_source *hs, struct dl_http_conn *c, char sha[41],
                                     char *err, size_t errlen)
{
    char *rev = pct_encode(hs->revision, false), *url = NULL;
    if (!rev || asprintf(&url, "%s/api/models/%s/revision/%s", hs->endpoint, hs->repo, rev) < 0) {
        free(rev);
        snprintf(err, errlen, "out of memory");
        return DL_ERR_LOCAL;
    }
    free(rev);
    struct dl_http_req req = {.url = url, .bearer = hs->token, .origin = DL_ORIGIN_HF};
    struct dl_http_resp resp;
    enum dl_status st = hf_do(hs, c, &req, &resp, HF_P_REPO_OR_REVISION, NULL, err, errlen);
    if (st == DL_OK) {
        char why[256];
        if (dl_parse_hf_revision(resp.body, resp.body_len, sha, why, sizeof why) != 0) {
            snprintf(err, errlen, "malformed revision answer for '%s@%s' from %s: %s", hs->repo,
                     hs->revision, hs->endpoint, why);
            st = DL_ERR_INVALID;
        }
    }
    dl_http_resp_free(&resp);
    free(url);
    return st;
}

/* Fetch every page of the tree at hs->commit into out. */
static enum dl_status list_tree(struct hf_source *hs, struct dl_http_conn *c,
                                struct dl_listing *out, char *err, size_t errlen)
{
    char *url = NULL;
    if (asprintf(&url, "%s/api/models/%s/tree/%s?recursive=true", hs->endpoint, hs->repo,
                 hs->commit) < 0) {
        snprintf(err, errlen, "out of memory");
        return DL_ERR_LOCAL;
    }
    enum dl_status st = DL_OK;
    for (unsigned page = 0; url; page++) {
        if (page == HF_MAX_PAGES) {
            snprintf(err, errlen, "listing '%s' did not end after %u pages", hs->repo, page);
            st = DL_ERR_INVALID;
            break;
        }
        struct dl_http_req req = {
            .url = url, .bearer = bearer_for(hs, url), .origin = DL_ORIGIN_HF};
        struct dl_http_resp resp;
        st = hf_do(hs, c, &req, &resp, HF_P_REPO_OR_REVISION, NULL, err, errlen);
        if (st == DL_OK) {
            char why[256];
            if (dl_parse_hf_tree(resp.body, resp.body_len, out, why, sizeof why) != 0) {
                snprintf(err, errlen, "malformed tree page %u of '%s@%s' from %s: %s", page + 1,
                         hs->repo, hs->commit, hs->endpoint, why);
                st = DL_ERR_INVALID;
            }
        }
        char *next = NULL;
        if (st == DL_OK && resp.link_next[0]) {
            next = resolve_link(url, resp.link_next);
            if (!next) {
                snprintf(err, errlen, "bad next-page link in the listing of '%s' from %s", hs->repo,
                         hs->endpoint);
                st = DL_ERR_INVALID;
            }
        }
        dl_http_resp_free(&resp);
        free(url);
        url = next;
        if (st != DL_OK)
            break;
    }
    free(url);
    return st;
}

static enum dl_status hf_list(struct dl_source *s, struct dl_http_conn *c, struct dl_listing *out,
                              char *err, size_t errlen)
{
    struct hf_source *hs = (struct hf_source *)s;
    char sha[41];
    pthread_mutex_lock(&hs->lock);
    snprintf(sha, sizeof sha, "%s", hs->commit);
    pthread_mutex_unlock(&hs->lock);
    if (!sha[0]) {
        enum dl_status st = resolve_commit(hs, c, sha, err, errlen);
        if (st != DL_OK)
            return st;
        pthread_mutex_lock(&hs->lock);
        if (!hs->commit[0]) /* a concurrent list may have won; keep its commit */
            snprintf(hs->commit, sizeof hs->commit, "%s", sha);
        pthread_mutex_unlock(&hs->lock);
        cm_info("hf", "resolved repo=%s revision=%s commit=%s", hs->repo, hs->revision, hs->commit);
    }
    enum dl_status st = list_tree(hs, c, out, err, errlen);
    if (st != DL_OK) {
        dl_listing_free(out);
        return st;
    }
    dl_listing_finish(out, "", s->uri);
    snprintf(s->identity, sizeof s->identity, "%s/%s@%s", hs->authority, hs->repo, hs->commit);
    return DL_OK;
}

/* ---- read --------------------------------------------------------------------------------- */

/* The Hub answers /resolve of an LFS file with a redirect to a signed CDN URL on another
 * origin. Asking /resolve again for every chunk doubles the requests and adds a round trip to
 * the Hub, so each file's CDN URL is remembered (a slot per hash of its path) for at most
 * CDN_REUSE_S seconds, never past its own Expires, and reused without the token. When the CDN
 * refuses it, the read goes through /resolve again. */
#define CDN_REUSE_S 300
#define CDN_MARGIN_S 30

static struct cdn_url *cdn_slot(struct hf_source *hs, const char *path)
{
    uint64_t h = cm_fnv1a(CM_FNV1A_INIT, path, strlen(path));
    return &hs->cdn[h % (sizeof hs->cdn / sizeof hs->cdn[0])];
}

/* A copy of the remembered CDN URL of path, or NULL. */
static char *cdn_lookup(struct hf_source *hs, const char *path)
{
    char *url = NULL;
    pthread_mutex_lock(&hs->lock);
    struct cdn_url *s = cdn_slot(hs, path);
    if (s->path && strcmp(s->path, path) == 0 && time(NULL) < s->until)
        url = strdup(s->url);
    pthread_mutex_unlock(&hs->lock);
    return url;
}

static void cdn_store(struct hf_source *hs, const char *path, const char *url, time_t until)
{
    pthread_mutex_lock(&hs->lock);
    struct cdn_url *s = cdn_slot(hs, path);
    free(s->path), free(s->url);
    *s = (struct cdn_url){.path = strdup(path), .url = strdup(url), .until = until};
    if (!s->path || !s->url) /* out of memory: remember nothing */
        s->until = 0;
    pthread_mutex_unlock(&hs->lock);
}

/* The CDN refused path's URL (expired, revoked): the next read asks the Hub again. */
static void cdn_forget(struct hf_source *hs, const char *path)
{
    pthread_mutex_lock(&hs->lock);
    struct cdn_url *s = cdn_slot(hs, path);
    if (s->path && strcmp(s->path, path) == 0)
        s->until = 0;
    pthread_mutex_unlock(&hs->lock);
}

/* Remember where /resolve sent a read, when it went to another origin (never one that
 * would get the token). */
static void cdn_remember(struct hf_source *hs, const char *path, const char *url)
{
    char origin[1024], authority[512];
    if (url_origin(url, origin, sizeof origin, authority, sizeof authority) != 0 ||
        strcmp(origin, hs->origin) == 0)
        return;
    time_t now = time(NULL), until = now + CDN_REUSE_S;
    const char *q = strchr(url, '?');
    for (const char *p = q; p && (p = strstr(p, "Expires=")); p++) {
        if (p[-1] != '?' && p[-1] != '&')
            continue;
        long long exp = strtoll(p + 8, NULL, 10);
        if (exp - CDN_MARGIN_S < until)
            until = (time_t)(exp - CDN_MARGIN_S);
        break;
    }
    if (until > now)
        cdn_store(hs, path, url, until);
}

static enum dl_status hf_read(struct dl_source *s, struct dl_http_conn *c, const struct dl_entry *e,
                              uint64_t off, uint64_t len, dl_http_sink_fn sink, void *ctx,
                              char *err, size_t errlen)
{
    struct hf_source *hs = (struct hf_source *)s;
    char sha[41];
    pthread_mutex_lock(&hs->lock);
    snprintf(sha, sizeof sha, "%s", hs->commit);
    pthread_mutex_unlock(&hs->lock);
    if (!sha[0]) {
        snprintf(err, errlen, "read of '%s' from '%s' before it was listed", e->path, hs->repo);
        return DL_ERR_INVALID;
    }
    if (off > e->size || len > e->size - off) {
        snprintf(err, errlen, "bytes [%llu, +%llu) are outside '%s' (%llu bytes)",
                 (unsigned long long)off, (unsigned long long)len, e->path,
                 (unsigned long long)e->size);
        return DL_ERR_INVALID;
    }
    if (len == 0)
        return DL_OK;

    char *path = pct_encode(e->path, true), *url = NULL;
    if (!path || asprintf(&url, "%s/%s/resolve/%s/%s", hs->endpoint, hs->repo, sha, path) < 0) {
        free(path);
        snprintf(err, errlen, "out of memory");
        return DL_ERR_LOCAL;
    }
    free(path);
    char final_url[8192];
    struct dl_http_req req = {
        .url = url,
        .bearer = hs->token,
        .origin = DL_ORIGIN_HF,
        .has_range = true,
        .range_start = off,
        .range_end = off + len,
        .sink = sink,
        .sink_ctx = ctx,
    };
    struct dl_http_resp resp;
    enum dl_status st = DL_ERR_NOTFOUND;
    char *cdn = cdn_lookup(hs, e->path);
    if (cdn) {
        struct dl_http_req direct = req;
        direct.url = cdn;
        direct.bearer = NULL;
        st = dl_http_do(c, &direct, &resp, err, errlen);
        free(cdn);
        if (st == DL_ERR_ACCESS || st == DL_ERR_NOTFOUND || st == DL_ERR_INVALID) {
            cdn_forget(hs, e->path);
            dl_http_resp_free(&resp);
            cdn = NULL;
        }
    }
    if (!cdn) {
        req.final_url = final_url;
        req.final_url_len = sizeof final_url;
        final_url[0] = '\0';
        st = hf_do(hs, c, &req, &resp, HF_P_ENTRY, e->path, err, errlen);
        if (st == DL_OK && final_url[0])
            cdn_remember(hs, e->path, final_url);
    }
    /* The commit pins the content; a size that differs from the listing means the origin
     * (or a mirror in front of it) is serving something else. */
    int64_t total = resp.total_size >= 0 ? resp.total_size
                    : resp.status == 200 ? resp.content_length
                                         : -1;
    if (st == DL_OK && total >= 0 && (uint64_t)total != e->size) {
        snprintf(err, errlen, "'%s' in '%s@%s' is %lld bytes on the origin, %llu when listed",
                 e->path, hs->repo, sha, (long long)total, (unsigned long long)e->size);
        st = DL_ERR_STALE;
    }
    dl_http_resp_free(&resp);
    free(url);
    return st;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void hf_destroy(struct dl_source *s)
{
    struct hf_source *hs = (struct hf_source *)s;
    if (!hs)
        return;
    pthread_mutex_destroy(&hs->lock);
    for (size_t i = 0; i < sizeof hs->cdn / sizeof hs->cdn[0]; i++)
        free(hs->cdn[i].path), free(hs->cdn[i].url);
    free(hs->token);
    free(hs);
}

static const struct dl_source_ops hf_ops = {
    .list = hf_list,
    .read = hf_read,
    .destroy = hf_destroy,
};

static const char *first_nonempty(const char *a, const char *b)
{
    return a && *a ? a : b;
}

struct dl_source *dl_source_hf_open(const struct dl_source_config *cfg, struct dl_http *http,
                                    char *err, size_t errlen)
{
    const struct cm_uri *u = cfg->uri;
    if (!u || u->kind != CM_URI_HF || !u->repo[0]) {
        snprintf(err, errlen, "not a Hugging Face model URI");
        return NULL;
    }
    struct hf_source *hs = calloc(1, sizeof *hs);
    if (!hs) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&hs->lock, NULL);
    hs->base.ops = &hf_ops;
    hs->base.http = http;
    hs->base.kind = CM_URI_HF;

    const char *ep = first_nonempty(cfg->hf_endpoint, cm_env_str("HF_ENDPOINT"));
    const char *rev =
        first_nonempty(u->revision, first_nonempty(cfg->hf_revision, cm_env_str("HF_REVISION")));
    if (set_endpoint(hs, ep ? ep : HF_DEFAULT_ENDPOINT, err, errlen) != 0) {
        hf_destroy(&hs->base);
        return NULL;
    }
    rev = rev ? rev : "main";
    if (strlen(rev) >= sizeof hs->revision) {
        snprintf(err, errlen, "HF revision '%.200s...' is too long", rev);
        hf_destroy(&hs->base);
        return NULL;
    }
    snprintf(hs->revision, sizeof hs->revision, "%s", rev);
    snprintf(hs->repo, sizeof hs->repo, "%s", u->repo);
    snprintf(hs->base.uri, sizeof hs->base.uri, "hf://%s@%s", hs->repo, hs->revision);
    hs->token = discover_token(cfg);
    if (hs->token)
        cm_log_add_secret(hs->token);
    cm_debug("hf", "source repo=%s revision=%s endpoint=%s token=%s", hs->repo, hs->revision,
             hs->endpoint, hs->token ? "yes" : "no");
    return &hs->base;
}
