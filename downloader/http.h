/* http.h - the one HTTP client of the project, on libcurl.
 *
 * A struct dl_http holds what all connections share: one CURLSH for DNS, TLS sessions and the
 * connection cache, plus the retry policy. Each worker owns a struct dl_http_conn (one easy
 * handle, reused so keep-alive works). dl_http_do runs one logical request to completion:
 *   - retries 408/429/500/502/503/504 and network errors with exponential backoff and full
 *     jitter, honouring Retry-After (seconds or HTTP date) and HF's "RateLimit: ...;t=N";
 *   - a ranged GET that fails mid-body resumes from the last byte delivered, and a 206 whose
 *     Content-Range does not match the request is treated as a transient failure;
 *   - redirects are followed by hand: Authorization (bearer or signature) is sent only to
 *     the origin (scheme, host, port) of the first URL, never to another;
 *   - 404 -> DL_ERR_NOTFOUND, 401/403 -> DL_ERR_ACCESS, 412 -> DL_ERR_STALE; the caller may
 *     refine these from the error body, which is always collected (bounded).
 * Secrets never reach a log line (URLs are passed through cm_redact). */
#ifndef DL_HTTP_H
#define DL_HTTP_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "status.h"

struct dl_http_policy {
    unsigned max_attempts;   /* total tries per request (DOWNLOADER_MAX_ATTEMPTS, default 8) */
    double backoff_base;     /* seconds (default 0.2); attempt n sleeps U(0, base*2^n) */
    double backoff_cap;      /* seconds (default 20) */
    double max_retry_after;  /* cap on a server's Retry-After (default 60 s) */
    long connect_timeout_ms; /* DOWNLOADER_CONNECT_TIMEOUT seconds (default 10) */
    long stall_timeout_s;    /* abort a transfer slower than 1 KiB/s for this long (default 30,
                                DOWNLOADER_STALL_TIMEOUT) */
};

/* Which kind of origin a request is for: the metrics' source label. */
enum dl_origin { DL_ORIGIN_OTHER, DL_ORIGIN_HF, DL_ORIGIN_S3, DL_ORIGIN_TOS, DL_ORIGIN_COUNT };
/* "other", "huggingface", "s3", "tos" (the names cm_uri_source_name gives the URI kinds). */
const char *dl_origin_name(enum dl_origin o);

/* Per-attempt answers are counted by HTTP status; slot 0 counts attempts that got none
 * (connection refused, reset, timeout, TLS failure). */
#define DL_HTTP_STATUS_SLOTS 600

/* Counters for metrics; updated atomically by every connection. */
struct dl_http_stats {
    atomic_uint_fast64_t retries;
    atomic_uint_fast64_t failures;
    atomic_uint_fast64_t bytes_by_origin[DL_ORIGIN_COUNT];                  /* body bytes */
    atomic_uint_fast64_t attempts_by[DL_ORIGIN_COUNT][DL_HTTP_STATUS_SLOTS]; /* every attempt */
};

struct dl_http;
struct dl_http_conn;

/* Create the shared state, with the policy read from the environment. NULL on failure. */
struct dl_http *dl_http_new(void);
void dl_http_free(struct dl_http *h);
const struct dl_http_policy *dl_http_policy(const struct dl_http *h);
void dl_http_set_policy(struct dl_http *h, const struct dl_http_policy *p);
struct dl_http_stats *dl_http_stats(struct dl_http *h);
/* Stop every transfer in flight on h, and fail every later request with DL_ERR_CANCELLED
 * (shutdown). */
void dl_http_cancel(struct dl_http *h);

/* One connection (easy handle) for one thread at a time. */
struct dl_http_conn *dl_http_conn_new(struct dl_http *h);
void dl_http_conn_free(struct dl_http_conn *c);

/* Called before every attempt sent to the first URL's origin, to add signature headers for
 * exactly this method and URL (signatures carry a timestamp, so each attempt signs anew).
 * Append "Name: value" strings to *headers with curl_slist_append. Return 0, or a negative
 * errno with a message in err (the request then fails with DL_ERR_ACCESS). */
typedef int (*dl_http_sign_fn)(void *ctx, const char *method, const char *url,
                               struct curl_slist **headers, char *err, size_t errlen);
/* Receives the body of a successful (2xx) response; off is the absolute offset of data
 * within the object (range_start + bytes before). Return 0, or a negative errno to abort
 * (the request fails with DL_ERR_LOCAL). Bytes at one offset may be delivered again after a
 * retry; sinks write at offsets and so are idempotent. */
typedef int (*dl_http_sink_fn)(void *ctx, uint64_t off, const void *data, size_t len);

struct dl_http_req {
    const char *method; /* NULL = "GET" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" list, or NULL; sent to the
                                   first origin only */
    const char *bearer;         /* Authorization: Bearer <token>; first origin only */
    dl_http_sign_fn sign;
    void *sign_ctx;
    const char *body; /* request body for POST/PUT, or NULL */
    size_t body_len;
    bool has_range; /* ask for bytes [range_start, range_end) */
    uint64_t range_start, range_end;
    dl_http_sink_fn sink; /* NULL: the 2xx body is collected into resp->body */
    void *sink_ctx;
    size_t max_body;           /* bound on collected bodies; 0 = 16 MiB */
    bool no_retry;             /* one attempt only (probes such as IMDS) */
    const atomic_bool *cancel; /* when set and true, the request stops with DL_ERR_CANCELLED */
    enum dl_origin origin;     /* for the metrics only */
    char *final_url;           /* when set, a success copies the URL that answered (after
                                  redirects) here, truncated to final_url_len */
    size_t final_url_len;
};

struct dl_http_resp {
    long status; /* final HTTP status (0 when no response arrived) */
    char *body;  /* owned, NUL-terminated: the collected 2xx body, or the error
                    body of a failed request (bounded) */
    size_t body_len;
    unsigned attempts;
    /* response headers of interest, from the final response ("" when absent) */
    char etag[256];
    char linked_etag[256]; /* X-Linked-Etag */
    char repo_commit[64];  /* X-Repo-Commit */
    char error_code[128];  /* X-Error-Code */
    char link_next[2048];  /* the rel="next" URL of a Link header */
    char crc64[32];        /* x-tos-hash-crc64ecma */
    char last_modified[64];
    int64_t linked_size;    /* X-Linked-Size, -1 when absent */
    int64_t content_length; /* -1 when absent */
    int64_t total_size;     /* from Content-Range ".../total", -1 when absent */
};

/* Run req to completion on c. resp is zeroed first; free it with dl_http_resp_free. On
 * failure err names the URL (redacted) and the cause. */
enum dl_status dl_http_do(struct dl_http_conn *c, const struct dl_http_req *req,
                          struct dl_http_resp *resp, char *err, size_t errlen);
void dl_http_resp_free(struct dl_http_resp *resp);

/* Header parsers, exposed for tests and fuzzing. All bound their input and never crash. */
/* "bytes a-b/total" (total may be '*'): 0, or -EINVAL. total is -1 for '*'. */
int dl_parse_content_range(const char *v, uint64_t *first, uint64_t *last, int64_t *total);
/* Retry-After: delta seconds or an HTTP date; seconds to wait, or -1 when unparseable. */
double dl_parse_retry_after(const char *v, time_t now);
/* HF's RateLimit header ("api";r=0;t=55): the t= reset seconds, or -1. */
double dl_parse_ratelimit(const char *v);
/* The rel="next" target of a Link header into out; 0 when found, -ENOENT otherwise. */
int dl_parse_link_next(const char *v, char *out, size_t outlen);

#endif
