/* scrape.c - one engine request shared by concurrent renders, and the /metrics body built
 * from it (see scrape.h).
 *
 * Single-flight: s->inflight is the scrape in progress, or NULL. The first render creates it
 * and does the work without holding the lock (the leader); renders that come while it runs
 * take a reference and wait on s->done until it is marked done or their deadline passes.
 * A scrape is immutable once done and freed by whoever drops its last reference. Only the
 * leader touches the curl handle and the logging state, and there is one leader at a time. */
#include "scrape.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/env.h"
#include "../common/log.h"
#include "registry.h"
#include "rules.h"

#define DEFAULT_ENGINE "vllm"
#define DEFAULT_ENDPOINT "http://localhost:8000"
#define DEFAULT_PATH "/metrics"
#define DEFAULT_TIMEOUT_S 1.0
#define MAX_TIMEOUT_S 600.0
#define MAX_URL 4096
/* A waiting render gives up this long after the leader's own deadline would have passed:
 * room for parsing and standardising a body at the input bound. */
#define WAIT_MARGIN_S 0.5
/* Bytes reserved after the engine's text for the runtime's own families. */
#define OWN_ROOM (64u << 10)

struct scrape {
    int refs;  /* under the scraper's lock */
    bool done; /* under the scraper's lock; the fields below are fixed once it is set */
    bool up;
    double seconds;
    struct exp_buf text;       /* the engine part of the body */
    struct exp_families model; /* what text holds, parsed: to keep our names out of it */
};

struct exp_scraper {
    pthread_mutex_t lock;
    pthread_cond_t done; /* CLOCK_MONOTONIC */
    struct scrape *inflight;
    CURL *curl;
    char *engine;
    bool transform;
    double timeout_s;
    char url[MAX_URL];
    char safe_url[MAX_URL]; /* redacted, for logs */
    /* the leader's log state: one line when the engine's state or the reason changes */
    bool logged_once;
    bool last_up;
    int last_reason;
    atomic_bool warned_conflict;
};

/* Renders that could not get a scrape (a wait that ran out, no memory) use this. */
static struct scrape no_scrape = {.done = true};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void exp_scrape_config_from_env(struct exp_scrape_config *cfg)
{
    const char *engine = cm_env_str("INFERENCE_ENGINE");
    const char *endpoint = cm_env_str("INFERENCE_ENGINE_ENDPOINT");
    const char *path = cm_env_str("METRIC_SCRAPE_PATH");
    double t = cm_env_double("METRIC_SCRAPE_TIMEOUT", DEFAULT_TIMEOUT_S);
    if (!(t > 0 && t <= MAX_TIMEOUT_S)) {
        cm_warn("exporter", "ignoring METRIC_SCRAPE_TIMEOUT=%g: seconds in (0, %g] expected", t,
                MAX_TIMEOUT_S);
        t = DEFAULT_TIMEOUT_S;
    }
    *cfg = (struct exp_scrape_config){
        .engine = engine ? engine : DEFAULT_ENGINE,
        .endpoint = endpoint ? endpoint : DEFAULT_ENDPOINT,
        .path = path ? path : DEFAULT_PATH,
        .timeout_s = t,
        .transform = cm_env_bool("METRICS_ENABLE_TRANSFORMATION", true) &&
                     !cm_env_bool("METRICS_RAW_PASSTHROUGH_MODE", false),
    };
}

/* endpoint + path with exactly one '/' between them; http:// when no scheme is given. */
static int build_url(char *url, size_t cap, const char *endpoint, const char *path)
{
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/')
        n--;
    int len = snprintf(url, cap, "%s%.*s%s%s", strstr(endpoint, "://") ? "" : "http://", (int)n,
                       endpoint, path[0] == '/' ? "" : "/", path);
    return len > 0 && (size_t)len < cap ? 0 : -ENAMETOOLONG;
}

struct sink {
    struct exp_buf *buf;
    bool too_large;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *k = arg;
    size_t n = size * nmemb;
    if (k->buf->len + n > EXP_MAX_INPUT) {
        k->too_large = true;
        return 0; /* curl aborts the transfer */
    }
    return exp_buf_append(k->buf, data, n) == 0 ? n : 0;
}

struct exp_scraper *exp_scraper_new(const struct exp_scrape_config *cfg, char *err, size_t errlen)
{
    struct exp_scraper *s = calloc(1, sizeof *s);
    pthread_condattr_t ca;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (build_url(s->url, sizeof s->url, cfg->endpoint, cfg->path) != 0) {
        snprintf(err, errlen, "INFERENCE_ENGINE_ENDPOINT + METRIC_SCRAPE_PATH is too long");
        free(s);
        return NULL;
    }
    cm_redact(s->url, s->safe_url, sizeof s->safe_url);
    s->engine = strdup(cfg->engine ? cfg->engine : DEFAULT_ENGINE);
    s->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : DEFAULT_TIMEOUT_S;
    s->transform = cfg->transform;
    s->last_up = true; /* the first failure is news */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !s->engine ||
        !(s->curl = curl_easy_init())) {
        snprintf(err, errlen, "cannot set up libcurl for the engine scrape");
        free(s->engine);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->done, &ca);
    pthread_condattr_destroy(&ca);

    long ms = (long)(s->timeout_s * 1000 + 0.5);
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms > 0 ? ms : 1L);
    /* Starlette-mounted /metrics answers 307 to /metrics/ on some engine versions */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)EXP_MAX_INPUT);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "aibrix_runtime");
    /* ask for the text format we parse, not OpenMetrics or protobuf */
    struct curl_slist *h =
        curl_slist_append(NULL, "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_PRIVATE, h);

    bool known = exp_engine_known(s->engine);
    if (!known)
        cm_warn("exporter",
                "unknown inference engine \"%.64s\" (known: vllm, sglang, trtllm, tgi, triton, "
                "llamacpp); metrics pass through unchanged",
                s->engine);
    s->transform = s->transform && known;
    cm_info("exporter", "engine metrics from %s engine=%s mode=%s timeout=%gs", s->safe_url,
            s->engine, s->transform ? "standardise" : "passthrough", s->timeout_s);
    return s;
}

static void scrape_free(struct scrape *r)
{
    if (!r || r == &no_scrape)
        return;
    exp_buf_free(&r->text);
    exp_families_free(&r->model);
    free(r);
}

void exp_scraper_free(struct exp_scraper *s)
{
    if (!s)
        return;
    struct curl_slist *h = NULL;
    curl_easy_getinfo(s->curl, CURLINFO_PRIVATE, (char **)&h);
    curl_easy_cleanup(s->curl);
    curl_slist_free_all(h);
    curl_global_cleanup();
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->lock);
    free(s->engine);
    free(s);
}

/* Why a scrape failed, as a number that stays the same for the same cause (messages carry
 * timings): a CURLcode, REASON_HTTP + status, or one of these. */
enum { REASON_TOO_LARGE = -1, REASON_PARSE = -2, REASON_NOMEM = -3, REASON_HTTP = 1000 };

/* One log line when the engine goes down, comes back, or fails for another reason. */
static void note_outcome(struct exp_scraper *s, bool up, int reason, const char *why)
{
    if (up && (!s->last_up || !s->logged_once))
        cm_info("exporter", "engine metrics available from %s", s->safe_url);
    else if (!up && (s->last_up || !s->logged_once || s->last_reason != reason))
        cm_warn("exporter",
                "engine metrics unavailable from %s: %s; serving the runtime's own "
                "with aibrix_engine_up 0",
                s->safe_url, why);
    s->logged_once = true;
    s->last_up = up;
    s->last_reason = up ? 0 : reason;
}

/* GET the engine's text into body. Returns 0, or the reason it failed with why set. */
static int fetch(struct exp_scraper *s, struct exp_buf *body, char *why, size_t whylen)
{
    char cerr[CURL_ERROR_SIZE] = "";
    struct sink k = {.buf = body};
    long status = 0;
    curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl_easy_perform(s->curl);
    curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    if (k.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(why, whylen, "body larger than %u bytes", EXP_MAX_INPUT);
        return REASON_TOO_LARGE;
    }
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
        return (int)rc;
    }
    if (status != 200) {
        snprintf(why, whylen, "HTTP %ld", status);
        return REASON_HTTP + (int)status;
    }
    return 0;
}

/* The leader's work: fetch, check, standardise; fills r (not yet marked done). */
static void run_scrape(struct exp_scraper *s, struct scrape *r)
{
    struct exp_buf body = {0};
    struct exp_families in;
    char why[512];
    double t0 = now_s();

    exp_families_init(&r->model);
    int reason = fetch(s, &body, why, sizeof why);
    if (reason != 0)
        goto down;
    char perr[400];
    int rc = exp_parse(body.data ? body.data : "", body.len, &in, perr, sizeof perr);
    if (rc != 0) {
        reason = rc == -ENOMEM ? REASON_NOMEM : REASON_PARSE;
        snprintf(why, sizeof why, "not exposition text (%s)", perr);
        goto down;
    }
    if (s->transform) {
        char terr[256];
        rc = exp_transform(&in, s->engine, &r->model, terr, sizeof terr);
        if (rc == 0 && exp_write(&r->model, &r->text) == 0) {
            exp_families_free(&in);
            exp_buf_free(&body);
            goto up;
        }
        /* fall back to the engine's own text for this scrape rather than dropping it */
        cm_warn("exporter", "standardising the engine's metrics failed (%s); passing them through",
                rc != 0 ? terr : "out of memory");
        exp_families_free(&r->model);
        exp_buf_free(&r->text);
    }
    r->model = in;
    r->text = body;
    if (r->text.len > 0 && r->text.data[r->text.len - 1] != '\n' &&
        exp_buf_append(&r->text, "\n", 1) != 0) {
        snprintf(why, sizeof why, "out of memory");
        reason = REASON_NOMEM;
        exp_families_free(&r->model);
        body = r->text;
        r->text = (struct exp_buf){0};
        goto down;
    }
up:
    r->up = true;
    r->seconds = now_s() - t0;
    note_outcome(s, true, 0, "");
    return;
down:
    exp_buf_free(&body);
    r->up = false;
    r->seconds = now_s() - t0;
    note_outcome(s, false, reason, why);
}

/* A done scrape with one reference for the caller: the one in flight, or a new one. */
static struct scrape *acquire(struct exp_scraper *s)
{
    pthread_mutex_lock(&s->lock);
    struct scrape *r = s->inflight;
    if (r) {
        struct timespec deadline;
        double wait = s->timeout_s + WAIT_MARGIN_S;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)wait;
        deadline.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        r->refs++;
        while (!r->done && pthread_cond_timedwait(&s->done, &s->lock, &deadline) == 0)
            ;
        if (!r->done) {
            r->refs--; /* the leader still holds its own */
            r = &no_scrape;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        pthread_mutex_unlock(&s->lock);
        return &no_scrape;
    }
    r->refs = 1;
    s->inflight = r;
    pthread_mutex_unlock(&s->lock);

    run_scrape(s, r);

    pthread_mutex_lock(&s->lock);
    r->done = true;
    s->inflight = NULL;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void release(struct exp_scraper *s, struct scrape *r)
{
    if (r == &no_scrape)
        return;
    pthread_mutex_lock(&s->lock);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        scrape_free(r);
}

/* True when adding fam after the families of engine would reuse a name: the family's own, or
 * one of its sample names, or a name an engine histogram/summary already groups. */
static bool name_conflicts(const struct exp_families *engine, const struct exp_family *fam)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    char full[EXP_MAX_NAME + 16];
    if (exp_families_resolve(engine, fam->name))
        return true;
    if (fam->type != EXP_HISTOGRAM && fam->type != EXP_SUMMARY)
        return false;
    for (size_t k = fam->type == EXP_SUMMARY ? 1 : 0; k < 3; k++) {
        snprintf(full, sizeof full, "%s%s", fam->name, suffixes[k]);
        if (exp_families_find(engine, full))
            return true;
    }
    return false;
}

static int add_gauge(struct exp_families *own, const char *name, const char *help, double v)
{
    struct exp_family *fam;
    int rc = exp_family_add(own, name, EXP_GAUGE, help, &fam);
    if (rc == 0)
        rc = exp_sample_add(own, fam, name, NULL, 0, v, false, 0);
    return rc == -ENOMEM ? rc : 0;
}

/* The runtime's own families for this render. */
static int own_families(const struct scrape *r, struct exp_families *own)
{
    int rc = add_gauge(own, "aibrix_engine_up",
                       "1 when the last scrape of the inference engine's metrics succeeded and "
                       "parsed, else 0.",
                       r->up ? 1 : 0);
    if (rc == 0)
        rc = add_gauge(own, "aibrix_engine_scrape_duration_seconds",
                       "Seconds the scrape of the inference engine's metrics took: the request, "
                       "parsing and standardising.",
                       r->seconds);
    return rc ? rc : exp_registry_write(own);
}

/* Write own without the families whose names the engine's text already uses. */
static int write_own(struct exp_scraper *s, const struct scrape *r, const struct exp_families *own,
                     struct exp_buf *out)
{
    size_t clashes = 0;
    for (size_t i = 0; r->up && i < own->n; i++)
        clashes += name_conflicts(&r->model, &own->fam[i]);
    if (clashes == 0)
        return exp_write(own, out);

    struct exp_families kept;
    int rc = 0;
    exp_families_init(&kept);
    for (size_t i = 0; rc == 0 && i < own->n; i++) {
        if (!name_conflicts(&r->model, &own->fam[i]))
            rc = exp_family_copy(&kept, &own->fam[i]);
        else if (!atomic_exchange(&s->warned_conflict, true))
            cm_warn("exporter",
                    "the engine's metrics already have a family named %s; the runtime's own "
                    "family of that name is left out (is INFERENCE_ENGINE_ENDPOINT another "
                    "aibrix runtime?)",
                    own->fam[i].name);
    }
    if (rc == 0)
        rc = exp_write(&kept, out);
    exp_families_free(&kept);
    return rc == -ENOMEM ? rc : 0;
}

int exp_scraper_render(struct exp_scraper *s, struct exp_buf *out)
{
    struct scrape *r = acquire(s);
    struct exp_families own;
    int rc = 0;

    exp_families_init(&own);
    if (r->up && r->text.len) {
        /* one allocation for the engine's part and room for ours: no copies while growing */
        size_t want = out->len + r->text.len + OWN_ROOM;
        char *grown = out->cap < want ? realloc(out->data, want) : out->data;
        if (!grown) {
            release(s, r);
            return -ENOMEM;
        }
        out->data = grown;
        out->cap = out->cap < want ? want : out->cap;
        rc = exp_buf_append(out, r->text.data, r->text.len);
    }
    if (rc == 0)
        rc = own_families(r, &own);
    if (rc == 0)
        rc = write_own(s, r, &own, out);
    exp_families_free(&own);
    release(s, r);
    return rc;
}
