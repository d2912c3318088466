/* http.c - requests with retries, resumable ranges and origin-safe redirects (see http.h).
 *
 * One attempt is one curl_easy_perform with redirects off. The loop in dl_http_do decides
 * what the answer means: follow a redirect (dropping credentials when the origin changes),
 * retry after a backoff, resume a ranged body, or stop with a dl_status. */
#include "http.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../common/env.h"
#include "../common/log.h"

#define MAX_REDIRECTS 8
#define ERROR_BODY_MAX (64 * 1024)
#define DEFAULT_BODY_MAX (16u * 1024 * 1024)
/* curl hands the body over 16 KiB at a time; gathering it into larger writes cuts the
 * write system calls 16-fold (15% of the downloader's CPU, measured by tests/bench) */
#define STAGE_SIZE (256u * 1024)

struct dl_http {
    CURLSH *share;
    char ca_file[4096]; /* "" = the system's CA store */
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
    struct dl_http_policy policy;
    struct dl_http_stats stats;
    atomic_bool cancelled;
};

struct dl_http_conn {
    struct dl_http *http;
    CURL *easy;
    char *stage;       /* STAGE_SIZE bytes */
    unsigned int seed; /* for jitter; per connection, so no shared state */
};

/* State of one attempt, seen by the curl callbacks. */
struct attempt {
    const struct dl_http_req *req;
    struct dl_http_resp *resp;
    struct dl_http *http;
    uint64_t want_start; /* absolute offset the body should start at */
    uint64_t skip;       /* body bytes to drop first (a 200 answering a range request) */
    uint64_t delivered;  /* body bytes passed to the sink in this logical request */
    bool success_body;   /* 2xx: body goes to the sink; else it is collected (bounded) */
    bool range_bad;      /* a 206 whose Content-Range does not match */
    bool range_filled;   /* every requested byte arrived; the transfer was cut short here */
    int sink_err;
    size_t collect_max;
    char *stage;   /* the connection's staging buffer: body bytes bound for the sink */
    size_t staged; /* bytes in stage, which start at offset stage_off */
    uint64_t stage_off;
};

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userp)
{
    (void)h;
    (void)access;
    pthread_mutex_lock(&((struct dl_http *)userp)->locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp)
{
    (void)h;
    pthread_mutex_unlock(&((struct dl_http *)userp)->locks[data]);
}

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* TLS peers are always verified; there is no switch to turn that off. A private CA (an
 * in-cluster MinIO, a corporate proxy) is trusted by pointing one of the variables the Python
 * clients read at a PEM bundle (cm_ca_bundle), which then replaces the system store, as it
 * does for them. */
static int trust_ca_bundle(struct dl_http *h)
{
    static atomic_bool told;
    const char *var = NULL, *path = cm_ca_bundle(&var);
    if (!path)
        return 0;
    if (strlen(path) >= sizeof h->ca_file || access(path, R_OK) != 0) {
        cm_error("http", "%s=%s: cannot read the CA bundle: %s", var, path,
                 strlen(path) >= sizeof h->ca_file ? "path too long" : strerror(errno));
        return -EINVAL;
    }
    snprintf(h->ca_file, sizeof h->ca_file, "%s", path);
    if (!atomic_exchange(&told, true))
        cm_info("http", "TLS peers are verified against the CA bundle %s (from %s)", path, var);
    return 0;
}

struct dl_http *dl_http_new(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct dl_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    /* curl_global_init is not thread-safe; do it exactly once */
    pthread_once(&once, global_init);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&h->locks[i], NULL);
    h->share = curl_share_init();
    if (!h->share) {
        free(h);
        return NULL;
    }
    curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    h->policy = (struct dl_http_policy){
        .max_attempts = (unsigned)cm_env_u64("DOWNLOADER_MAX_ATTEMPTS", 8),
        .backoff_base = cm_env_double("DOWNLOADER_BACKOFF_BASE", 0.2),
        .backoff_cap = cm_env_double("DOWNLOADER_BACKOFF_CAP", 20),
        .max_retry_after = cm_env_double("DOWNLOADER_MAX_RETRY_AFTER", 60),
        .connect_timeout_ms = (long)cm_env_u64("DOWNLOADER_CONNECT_TIMEOUT", 10) * 1000,
        .stall_timeout_s = (long)cm_env_u64("DOWNLOADER_STALL_TIMEOUT", 30),
    };
    if (h->policy.max_attempts == 0)
        h->policy.max_attempts = 1;
    if (trust_ca_bundle(h) != 0) {
        dl_http_free(h);
        return NULL;
    }
    return h;
}

void dl_http_free(struct dl_http *h)
{
    if (!h)
        return;
    curl_share_cleanup(h->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&h->locks[i]);
    free(h);
}

const struct dl_http_policy *dl_http_policy(const struct dl_http *h)
{
    return &h->policy;
}

void dl_http_set_policy(struct dl_http *h, const struct dl_http_policy *p)
{
    h->policy = *p;
}

struct dl_http_stats *dl_http_stats(struct dl_http *h)
{
    return &h->stats;
}

void dl_http_cancel(struct dl_http *h)
{
    atomic_store(&h->cancelled, true);
}

static bool cancelled(const struct dl_http *h, const struct dl_http_req *req)
{
    return atomic_load(&h->cancelled) || (req->cancel && atomic_load(req->cancel));
}

struct dl_http_conn *dl_http_conn_new(struct dl_http *h)
{
    struct dl_http_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->http = h;
    c->easy = curl_easy_init();
    c->stage = malloc(STAGE_SIZE);
    if (!c->easy || !c->stage) {
        curl_easy_cleanup(c->easy);
        free(c->stage);
        free(c);
        return NULL;
    }
    c->seed = (unsigned int)time(NULL) ^ (unsigned int)(uintptr_t)c;
    return c;
}

void dl_http_conn_free(struct dl_http_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->easy);
    free(c->stage);
    free(c);
}

void dl_http_resp_free(struct dl_http_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

/* ---- header parsers ---------------------------------------------------------------------- */

int dl_parse_content_range(const char *v, uint64_t *first, uint64_t *last, int64_t *total)
{
    unsigned long long a, b, t;
    int n = 0;
    while (*v == ' ')
        v++;
    if (strncasecmp(v, "bytes ", 6) != 0)
        return -EINVAL;
    v += 6;
    if (sscanf(v, "%llu-%llu/%n", &a, &b, &n) != 2 || n == 0 || b < a)
        return -EINVAL;
    v += n;
    if (*v == '*') {
        *total = -1;
    } else {
        char *end;
        if (*v < '0' || *v > '9')
            return -EINVAL;
        errno = 0;
        t = strtoull(v, &end, 10);
        if (errno || (*end && *end != '\r' && *end != '\n' && *end != ' ') || t <= b ||
            t > INT64_MAX)
            return -EINVAL;
        *total = (int64_t)t;
    }
    *first = a;
    *last = b;
    return 0;
}

double dl_parse_retry_after(const char *v, time_t now)
{
    struct tm tm;
    char *end;
    while (*v == ' ')
        v++;
    if (*v >= '0' && *v <= '9') {
        double d = strtod(v, &end);
        while (*end == ' ' || *end == '\r' || *end == '\n')
            end++;
        if (end == v || *end || !isfinite(d))
            return -1;
        return d;
    }
    memset(&tm, 0, sizeof tm);
    end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end)
        return -1;
    time_t at = timegm(&tm);
    return at > now ? (double)(at - now) : 0;
}

double dl_parse_ratelimit(const char *v)
{
    /* "api";r=0;t=55 -- the reset time is the t= parameter */
    for (const char *p = v; (p = strchr(p, ';')) != NULL;) {
        p++;
        while (*p == ' ')
            p++;
        if (p[0] == 't' && p[1] == '=' && p[2] >= '0' && p[2] <= '9') {
            char *end;
            double d = strtod(p + 2, &end);
            return isfinite(d) ? d : -1;
        }
    }
    return -1;
}

int dl_parse_link_next(const char *v, char *out, size_t outlen)
{
    /* Link: <url1>; rel="next", <url2>; rel="last" */
    const char *p = v;
    while ((p = strchr(p, '<')) != NULL) {
        const char *close = strchr(p, '>');
        if (!close)
            return -ENOENT;
        const char *params = close + 1;
        const char *comma = strchr(params, ',');
        size_t plen = comma ? (size_t)(comma - params) : strlen(params);
        char pbuf[256];
        snprintf(pbuf, sizeof pbuf, "%.*s", (int)(plen < 255 ? plen : 255), params);
        if (strstr(pbuf, "rel=\"next\"") || strstr(pbuf, "rel=next")) {
            size_t ulen = (size_t)(close - p - 1);
            if (ulen == 0 || ulen >= outlen)
                return -ENOENT;
            memcpy(out, p + 1, ulen);
            out[ulen] = '\0';
            return 0;
        }
        p = close + 1;
    }
    return -ENOENT;
}

/* ---- curl callbacks ---------------------------------------------------------------------- */

static void copy_header_value(char *dst, size_t dstlen, const char *v, size_t n)
{
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    while (n && *v == ' ') {
        v++;
        n--;
    }
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userp)
{
    struct attempt *a = userp;
    struct dl_http_resp *r = a->resp;
    size_t n = size * nitems;
    const char *colon = memchr(buf, ':', n);
    char tmp[2048];

    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (after 100-continue): forget the previous one's headers */
        r->etag[0] = r->linked_etag[0] = r->repo_commit[0] = r->error_code[0] = '\0';
        r->link_next[0] = r->crc64[0] = r->last_modified[0] = '\0';
        r->linked_size = r->content_length = r->total_size = -1;
        return n;
    }
    if (!colon)
        return n;
    size_t klen = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = n - klen - 1;
#define IS(name) (klen == sizeof(name) - 1 && strncasecmp(buf, name, klen) == 0)
    if (IS("etag")) {
        copy_header_value(r->etag, sizeof r->etag, v, vlen);
    } else if (IS("x-linked-etag")) {
        copy_header_value(r->linked_etag, sizeof r->linked_etag, v, vlen);
    } else if (IS("x-repo-commit")) {
        copy_header_value(r->repo_commit, sizeof r->repo_commit, v, vlen);
    } else if (IS("x-error-code")) {
        copy_header_value(r->error_code, sizeof r->error_code, v, vlen);
    } else if (IS("x-tos-hash-crc64ecma")) {
        copy_header_value(r->crc64, sizeof r->crc64, v, vlen);
    } else if (IS("last-modified")) {
        copy_header_value(r->last_modified, sizeof r->last_modified, v, vlen);
    } else if (IS("link")) {
        copy_header_value(tmp, sizeof tmp, v, vlen);
        if (dl_parse_link_next(tmp, r->link_next, sizeof r->link_next) != 0)
            r->link_next[0] = '\0';
    } else if (IS("x-linked-size") || IS("content-length")) {
        copy_header_value(tmp, sizeof tmp, v, vlen);
        uint64_t val;
        int64_t *dst = IS("content-length") ? &r->content_length : &r->linked_size;
        *dst = cm_parse_u64(tmp, &val) == 0 && val <= INT64_MAX ? (int64_t)val : -1;
    } else if (IS("content-range")) {
        uint64_t first, last;
        int64_t total;
        copy_header_value(tmp, sizeof tmp, v, vlen);
        /* a 206 may run past the requested end (on_body stops there), never start elsewhere */
        if (dl_parse_content_range(tmp, &first, &last, &total) != 0 || first != a->want_start)
            a->range_bad = true;
        else
            r->total_size = total;
    }
#undef IS
    return n;
}

static int collect(struct dl_http_resp *r, const char *data, size_t n, size_t max)
{
    if (r->body_len + n > max)
        return -EFBIG;
    char *grown = realloc(r->body, r->body_len + n + 1);
    if (!grown)
        return -ENOMEM;
    memcpy(grown + r->body_len, data, n);
    r->body = grown;
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

/* Hand the staged bytes to the sink. Returns the sink's status. */
static int flush_stage(struct attempt *a)
{
    int rc = a->staged ? a->req->sink(a->req->sink_ctx, a->stage_off, a->stage, a->staged) : 0;
    a->staged = 0;
    return rc;
}

/* Body bytes at absolute offset off go to the sink through the staging buffer. */
static int stage_body(struct attempt *a, uint64_t off, const char *data, size_t len)
{
    if (a->staged && (a->staged + len > STAGE_SIZE || a->stage_off + a->staged != off)) {
        int rc = flush_stage(a);
        if (rc)
            return rc;
    }
    if (len >= STAGE_SIZE)
        return a->req->sink(a->req->sink_ctx, off, data, len);
    if (!a->staged)
        a->stage_off = off;
    memcpy(a->stage + a->staged, data, len);
    a->staged += len;
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct attempt *a = userp;
    size_t n = size * nmemb;

    if (!a->success_body || !a->req->sink) {
        size_t max = a->success_body ? a->collect_max : ERROR_BODY_MAX;
        if (collect(a->resp, data, n, max) != 0) {
            /* error bodies are only for messages: keep the head, drop the rest */
            if (!a->success_body)
                return n;
            a->sink_err = -EFBIG;
            return 0;
        }
        return n;
    }
    size_t off = 0;
    if (a->skip) {
        size_t drop = a->skip < n ? (size_t)a->skip : n;
        a->skip -= drop;
        off = drop;
    }
    if (off < n) {
        bool overrun = false;
        if (a->req->has_range) {
            uint64_t room = a->req->range_end - (a->want_start + a->delivered);
            if (n - off > room) {
                n = off + (size_t)room;
                overrun = true;
            }
        }
        int rc = stage_body(a, a->want_start + a->delivered, data + off, n - off);
        if (rc) {
            a->sink_err = rc;
            return 0;
        }
        a->delivered += n - off;
        atomic_fetch_add(&a->http->stats.bytes_by_origin[a->req->origin], n - off);
        /* a server that ignored the range sends the rest of the object: stop here (a
         * response that ends exactly at the range end keeps its connection alive) */
        if (overrun) {
            a->range_filled = true;
            return 0;
        }
    }
    return size * nmemb;
}

static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct attempt *a = userp;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return cancelled(a->http, a->req) ? 1 : 0;
}

/* ---- the request loop -------------------------------------------------------------------- */

/* Same scheme, host and port: credentials may be sent. */
static bool same_origin(const char *a, const char *b)
{
    char *sa = NULL, *ha = NULL, *pa = NULL, *sb = NULL, *hb = NULL, *pb = NULL;
    CURLU *ua = curl_url(), *ub = curl_url();
    bool same = false;
    if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
        curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK &&
        curl_url_get(ua, CURLUPART_SCHEME, &sa, 0) == CURLUE_OK &&
        curl_url_get(ub, CURLUPART_SCHEME, &sb, 0) == CURLUE_OK &&
        curl_url_get(ua, CURLUPART_HOST, &ha, 0) == CURLUE_OK &&
        curl_url_get(ub, CURLUPART_HOST, &hb, 0) == CURLUE_OK &&
        curl_url_get(ua, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        curl_url_get(ub, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT) == CURLUE_OK)
        same = strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0 && strcmp(pa, pb) == 0;
    curl_free(sa), curl_free(ha), curl_free(pa), curl_free(sb), curl_free(hb), curl_free(pb);
    curl_url_cleanup(ua);
    curl_url_cleanup(ub);
    return same;
}

const char *dl_origin_name(enum dl_origin o)
{
    static const char *const names[DL_ORIGIN_COUNT] = {"other", "huggingface", "s3", "tos"};
    return o < DL_ORIGIN_COUNT ? names[o] : "other";
}

static void count_attempt(struct dl_http *h, enum dl_origin o, long status)
{
    size_t slot = status >= 100 && status < DL_HTTP_STATUS_SLOTS ? (size_t)status : 0;
    atomic_fetch_add(&h->stats.attempts_by[o < DL_ORIGIN_COUNT ? o : DL_ORIGIN_OTHER][slot], 1);
}

static bool retryable_status(long s)
{
    return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

static bool retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        return true;
    default:
        return false;
    }
}

static enum dl_status status_class(long s)
{
    if (s == 404 || s == 410)
        return DL_ERR_NOTFOUND;
    if (s == 401 || s == 403)
        return DL_ERR_ACCESS;
    if (s == 412)
        return DL_ERR_STALE;
    if (retryable_status(s) || s >= 500)
        return DL_ERR_TRANSIENT;
    return DL_ERR_INVALID;
}

/* Sleep for the backoff before attempt n (n >= 1), or the server's hint when it gave one.
 * Returns false when cancelled while waiting. */
static bool backoff(struct dl_http_conn *c, const struct dl_http_req *req, unsigned n, double hint)
{
    const struct dl_http_policy *p = &c->http->policy;
    double ceil_s = p->backoff_base * pow(2.0, n - 1);
    if (ceil_s > p->backoff_cap)
        ceil_s = p->backoff_cap;
    double wait = ceil_s * ((double)rand_r(&c->seed) / RAND_MAX);
    if (hint >= 0)
        wait = hint < p->max_retry_after ? hint : p->max_retry_after;
    /* sleep in slices so a cancel is noticed quickly */
    for (double left = wait; left > 0; left -= 0.05) {
        if (cancelled(c->http, req))
            return false;
        struct timespec ts = {0, (long)((left < 0.05 ? left : 0.05) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return !cancelled(c->http, req);
}

/* Build the header list for an attempt at url. Credentials only when creds is true. */
static struct curl_slist *attempt_headers(const struct dl_http_req *req, const char *method,
                                          const char *url, bool creds, uint64_t start, char *err,
                                          size_t errlen, int *sign_rc)
{
    struct curl_slist *h = NULL;
    char line[4200];
    *sign_rc = 0;
    if (creds && req->headers)
        for (const char *const *p = req->headers; *p; p++)
            h = curl_slist_append(h, *p);
    if (req->has_range) {
        snprintf(line, sizeof line, "Range: bytes=%llu-%llu", (unsigned long long)start,
                 (unsigned long long)(req->range_end - 1));
        h = curl_slist_append(h, line);
    }
    if (creds && req->bearer) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", req->bearer);
        h = curl_slist_append(h, line);
    }
    if (creds && req->sign)
        *sign_rc = req->sign(req->sign_ctx, method, url, &h, err, errlen);
    /* no "Expect: 100-continue" round trip for small bodies */
    h = curl_slist_append(h, "Expect:");
    return h;
}

static void configure(struct dl_http_conn *c, const struct dl_http_req *req, const char *method,
                      const char *url, struct curl_slist *hdrs, struct attempt *a)
{
    CURL *e = c->easy;
    const struct dl_http_policy *p = &c->http->policy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_SHARE, c->http->share);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* a hostile Location (file://, ftp://, ...) must never be fetched */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->http->ca_file[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, c->http->ca_file);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, p->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, p->stall_timeout_s);
    curl_easy_setopt(e, CURLOPT_USERAGENT,
                     "aibrix-runtime/"
                     "0.1");
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, a);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* the connection cache is shared by every worker: the default of 5 would close a
     * connection per chunk once more than 5 workers run */
    curl_easy_setopt(e, CURLOPT_MAXCONNECTS, 1024L);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (req->body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
    }
}

/* Decides whether the 2xx body of this attempt goes to the sink. Called by curl before the
 * first body byte via the header callback's final line; set from the status line here. */
static size_t on_header_status(char *buf, size_t size, size_t nitems, void *userp)
{
    struct attempt *a = userp;
    size_t n = size * nitems;
    if (n >= 12 && strncmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', n);
        long status = sp ? strtol(sp + 1, NULL, 10) : 0;
        a->resp->status = status;
        a->success_body = status >= 200 && status < 300;
        /* a 200 carries the object from byte 0 (range ignored, or a whole-object retry):
         * drop what precedes the offset this attempt wants */
        if (status == 200)
            a->skip = a->want_start;
    }
    return on_header(buf, size, nitems, userp);
}

enum dl_status dl_http_do(struct dl_http_conn *c, const struct dl_http_req *req,
                          struct dl_http_resp *resp, char *err, size_t errlen)
{
    const char *method = req->method ? req->method : "GET";
    char url[8192], safe[1024], msg[512];
    unsigned redirects = 0;
    enum dl_status st = DL_ERR_TRANSIENT;
    struct attempt a = {.req = req, .resp = resp, .http = c->http};

    memset(resp, 0, sizeof *resp);
    a.collect_max = req->max_body ? req->max_body : DEFAULT_BODY_MAX;
    a.want_start = req->has_range ? req->range_start : 0;
    if (strlen(req->url) >= sizeof url) {
        snprintf(err, errlen, "URL longer than %zu bytes", sizeof url - 1);
        return DL_ERR_INVALID;
    }
    snprintf(url, sizeof url, "%s", req->url);
    msg[0] = '\0';
    if (req->has_range && req->range_end <= req->range_start) {
        snprintf(err, errlen, "empty range requested");
        return DL_ERR_INVALID;
    }

    for (unsigned attempt = 1;; attempt++) {
        int sign_rc;
        bool creds = same_origin(url, req->url);
        uint64_t start = a.want_start + a.delivered;
        struct curl_slist *hdrs =
            attempt_headers(req, method, url, creds, start, msg, sizeof msg, &sign_rc);
        if (sign_rc) {
            curl_slist_free_all(hdrs);
            snprintf(err, errlen, "cannot sign request: %s", msg);
            return DL_ERR_ACCESS;
        }
        /* each attempt starts where the previous one stopped delivering */
        struct attempt cur = a;
        cur.want_start = start;
        cur.delivered = 0;
        cur.skip = 0;
        cur.range_bad = false;
        cur.sink_err = 0;
        free(resp->body);
        memset(resp, 0, offsetof(struct dl_http_resp, etag));
        resp->etag[0] = resp->linked_etag[0] = resp->repo_commit[0] = resp->error_code[0] = '\0';
        resp->link_next[0] = resp->crc64[0] = resp->last_modified[0] = '\0';
        resp->linked_size = resp->content_length = resp->total_size = -1;
        resp->attempts = attempt;
        configure(c, req, method, url, hdrs, &cur);
        curl_easy_setopt(c->easy, CURLOPT_HEADERFUNCTION, on_header_status);
        cur.stage = c->stage;
        cur.staged = 0;
        CURLcode rc = curl_easy_perform(c->easy);
        curl_slist_free_all(hdrs);
        if (!cur.sink_err)
            cur.sink_err = flush_stage(&cur);
        if (rc == CURLE_WRITE_ERROR && cur.range_filled)
            rc = CURLE_OK;
        a.delivered += cur.delivered;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &resp->status);
        count_attempt(c->http, req->origin, rc == CURLE_OK ? resp->status : 0);

        double hint = -1;
        cm_redact(url, safe, sizeof safe);
        if (cur.sink_err) {
            snprintf(err, errlen, "%s: %s", safe,
                     cur.sink_err == -EFBIG ? "response body too large" : strerror(-cur.sink_err));
            return cur.sink_err == -EFBIG ? DL_ERR_INVALID : DL_ERR_LOCAL;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
            snprintf(err, errlen, "%s: cancelled", safe);
            return DL_ERR_CANCELLED;
        }
        if (rc == CURLE_OK && resp->status >= 300 && resp->status < 400 && resp->status != 304) {
            char *loc = NULL;
            curl_easy_getinfo(c->easy, CURLINFO_REDIRECT_URL, &loc);
            if (!loc || ++redirects > MAX_REDIRECTS || strlen(loc) >= sizeof url) {
                snprintf(err, errlen, "%s: %s", safe,
                         !loc                        ? "redirect without Location"
                         : redirects > MAX_REDIRECTS ? "too many redirects"
                                                     : "redirect target too long");
                return DL_ERR_INVALID;
            }
            if (strncasecmp(url, "https:", 6) == 0 && strncasecmp(loc, "https:", 6) != 0) {
                snprintf(err, errlen, "%s: redirect from https to a plain or unknown scheme refused",
                         safe);
                return DL_ERR_INVALID;
            }
            snprintf(url, sizeof url, "%s", loc);
            attempt--; /* a redirect is not a failed attempt */
            continue;
        }
        if (rc == CURLE_OK && resp->status >= 200 && resp->status < 300 && !cur.range_bad) {
            bool short_body = req->has_range && req->sink && strcmp(method, "HEAD") != 0 &&
                              a.want_start + a.delivered < req->range_end;
            if (!short_body) {
                if (req->final_url && req->final_url_len)
                    snprintf(req->final_url, req->final_url_len, "%s", url);
                return DL_OK;
            }
            snprintf(msg, sizeof msg, "body ended %llu bytes early",
                     (unsigned long long)(req->range_end - a.want_start - a.delivered));
            st = DL_ERR_TRANSIENT;
        } else if (rc == CURLE_OK && cur.range_bad) {
            snprintf(msg, sizeof msg, "Content-Range does not match the requested range");
            st = DL_ERR_TRANSIENT;
        } else if (rc != CURLE_OK) {
            if (!retryable_curl(rc)) {
                snprintf(err, errlen, "%s: %s", safe, curl_easy_strerror(rc));
                atomic_fetch_add(&c->http->stats.failures, 1);
                return DL_ERR_TRANSIENT;
            }
            snprintf(msg, sizeof msg, "%s", curl_easy_strerror(rc));
            st = DL_ERR_TRANSIENT;
        } else {
            st = status_class(resp->status);
            snprintf(msg, sizeof msg, "HTTP %ld", resp->status);
            if (st != DL_ERR_TRANSIENT) {
                snprintf(err, errlen, "%s: HTTP %ld%s%s", safe, resp->status,
                         resp->error_code[0] ? " " : "", resp->error_code);
                return st;
            }
            struct curl_header *ra = NULL, *rl = NULL;
            if (curl_easy_header(c->easy, "Retry-After", 0, CURLH_HEADER, -1, &ra) == CURLHE_OK)
                hint = dl_parse_retry_after(ra->value, time(NULL));
            if (hint < 0 &&
                curl_easy_header(c->easy, "RateLimit", 0, CURLH_HEADER, -1, &rl) == CURLHE_OK)
                hint = dl_parse_ratelimit(rl->value);
        }
        if (req->no_retry || attempt >= c->http->policy.max_attempts) {
            snprintf(err, errlen, "%s: %s (gave up after %u attempts)", safe, msg, attempt);
            atomic_fetch_add(&c->http->stats.failures, 1);
            return st;
        }
        cm_debug("http", "retrying %s %s: %s attempt=%u", method, safe, msg, attempt + 1);
        atomic_fetch_add(&c->http->stats.retries, 1);
        if (!backoff(c, req, attempt, hint)) {
            snprintf(err, errlen, "%s: cancelled", safe);
            return DL_ERR_CANCELLED;
        }
        /* a retry starts again from the first URL: a redirect target may have expired */
        snprintf(url, sizeof url, "%s", req->url);
        redirects = 0;
    }
}
