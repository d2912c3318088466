/* routes_metrics.c - GET /metrics (and /metrics/, no redirect), and the runtime's own metrics
 * that come from the control plane and the model filesystem (SPEC §6).
 *
 * The exporter knows nothing of the filesystem (DESIGN.md: exporter needs only common/), so
 * this file maps the filesystem's numbers to metric families: one table of provided families
 * that read fs_get_stats() at scrape time, the per-mount progress from fs_mount_list(), and a
 * read latency histogram fed by the fs read hook (fs_config.on_read). API requests are counted
 * by the server's observer hook (server.h) into aibrix:api_request_total/latency. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/env.h"
#include "../common/log.h"
#include "../exporter/registry.h"
#include "../exporter/scrape.h"
#include "runtime.h"
#include "version.h"

struct rt_metrics {
    struct exp_scraper *scraper;
    _Atomic(struct fs *) fs; /* NULL until the filesystem serves */
    struct exp_metric *read_latency;
};

/* The one read latency histogram; fs reads reach it through rt_metrics_on_read. */
static _Atomic(struct exp_metric *) read_latency;

/* Families read from struct fs_stats at every scrape. */
static const struct {
    const char *name, *help;
    enum exp_type type;
    size_t off;
} fs_families[] = {
#define STAT(f) offsetof(struct fs_stats, f)
    {"aibrix_mount_read_bytes_total", "Bytes returned to readers of files in the model mount.",
     EXP_COUNTER, STAT(read_bytes)},
    {"aibrix_mount_reads_total", "Read requests the model mount answered with data.", EXP_COUNTER,
     STAT(read_ops)},
    {"aibrix_cache_hit_bytes_total",
     "Bytes read through the mount that were already in the block cache.", EXP_COUNTER,
     STAT(cache_hit_bytes)},
    {"aibrix_cache_miss_bytes_total",
     "Bytes read through the mount that had to be fetched from the model's source first.",
     EXP_COUNTER, STAT(cache_miss_bytes)},
    {"aibrix_cache_size_bytes", "Bytes of model data in the block cache on disk.", EXP_GAUGE,
     STAT(cache_used_bytes)},
    {"aibrix_cache_max_bytes",
     "The block cache's bound in bytes (--cache-max-bytes, or what keeps 10% of the cache "
     "filesystem free); least recently used files are evicted beyond it.",
     EXP_GAUGE, STAT(cache_max_bytes)},
    {"aibrix_cache_evictions_total", "Files evicted from the block cache to stay under its bound.",
     EXP_COUNTER, STAT(cache_evictions)},
    {"aibrix_integrity_failures_total",
     "Fetched files whose content did not match the source's checksum (sha256, git sha1, md5 "
     "ETag, crc64); each mismatch counts, the first one is fetched again.",
     EXP_COUNTER, STAT(integrity_failures)},
    {"aibrix_remote_retries_total",
     "Requests to model sources that failed transiently and were tried again.", EXP_COUNTER,
     STAT(remote_retries)},
    {"aibrix_remote_failures_total",
     "Requests to model sources that failed for good (not retryable, or out of retries).",
     EXP_COUNTER, STAT(remote_failures)},
#undef STAT
};

/* Upper bounds of the read latency histogram: a page-cache-speed hit is ~10 us, a demand
 * fetch from an object store tens of milliseconds to seconds. */
static const double read_bounds[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05,
                                     0.1,    0.25,   0.5,   1,     2.5,  10};

static struct fs *fs_of(struct rt_metrics *m)
{
    return atomic_load_explicit(&m->fs, memory_order_acquire);
}

/* Each fs_families row's provider context: the metrics state and the row. */
static struct fs_stat_ctx {
    struct rt_metrics *m;
    size_t row;
} fs_ctx[sizeof fs_families / sizeof fs_families[0]];

static void provide_fs_stat(void *ctx, struct exp_emitter *e)
{
    const struct fs_stat_ctx *c = ctx;
    struct fs *fs = fs_of(c->m);
    struct fs_stats st;
    uint64_t v;
    if (!fs)
        return;
    fs_get_stats(fs, &st);
    memcpy(&v, (const char *)&st + fs_families[c->row].off, sizeof v);
    exp_emit(e, NULL, (double)v);
}

/* aibrix_remote_requests_total{source,status}: every attempt, by the answer it got
 * ("error" when none came); aibrix_remote_bytes_total{source}. */
static void provide_remote_requests(void *ctx, struct exp_emitter *e)
{
    struct fs *fs = fs_of(ctx);
    if (!fs)
        return;
    const struct dl_http_stats *hs = fs_remote_stats(fs);
    for (int o = 0; o < DL_ORIGIN_COUNT; o++) {
        for (int s = 0; s < DL_HTTP_STATUS_SLOTS; s++) {
            uint64_t n = atomic_load_explicit(&hs->attempts_by[o][s], memory_order_relaxed);
            if (!n)
                continue;
            char status[8];
            snprintf(status, sizeof status, "%d", s);
            const char *vals[] = {dl_origin_name((enum dl_origin)o), s ? status : "error"};
            exp_emit(e, vals, (double)n);
        }
    }
}

static void provide_remote_bytes(void *ctx, struct exp_emitter *e)
{
    struct fs *fs = fs_of(ctx);
    if (!fs)
        return;
    const struct dl_http_stats *hs = fs_remote_stats(fs);
    for (int o = 0; o < DL_ORIGIN_COUNT; o++) {
        uint64_t n = atomic_load_explicit(&hs->bytes_by_origin[o], memory_order_relaxed);
        const char *vals[] = {dl_origin_name((enum dl_origin)o)};
        if (n)
            exp_emit(e, vals, (double)n);
    }
}

static void provide_model_bytes(struct rt_metrics *m, struct exp_emitter *e, bool cached)
{
    struct fs_mount_status *st = NULL;
    struct fs *fs = fs_of(m);
    if (!fs)
        return;
    size_t n = fs_mount_list(fs, &st);
    for (size_t i = 0; st && i < n; i++) {
        const char *vals[] = {st[i].name};
        exp_emit(e, vals, (double)(cached ? st[i].bytes_cached : st[i].bytes_total));
    }
    free(st);
}

static void provide_model_total(void *ctx, struct exp_emitter *e)
{
    provide_model_bytes(ctx, e, false);
}

static void provide_model_cached(void *ctx, struct exp_emitter *e)
{
    provide_model_bytes(ctx, e, true);
}

static int register_fs_families(struct rt_metrics *m, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof fs_families / sizeof fs_families[0]; i++) {
        fs_ctx[i] = (struct fs_stat_ctx){m, i};
        struct exp_metric_def d = {
            .name = fs_families[i].name,
            .help = fs_families[i].help,
            .type = fs_families[i].type,
            .provider = provide_fs_stat,
            .provider_ctx = &fs_ctx[i],
        };
        if (!exp_metric_register(&d, err, errlen))
            return -EINVAL;
    }
    const struct exp_metric_def latency = {
        .name = "aibrix_mount_read_duration_seconds",
        .help = "Seconds a read of the model mount took, from the kernel's request to the "
                "reply (a cache miss waits for the fetch).",
        .type = EXP_HISTOGRAM,
        .bounds = read_bounds,
        .nbounds = sizeof read_bounds / sizeof read_bounds[0],
    };
    const struct exp_metric_def total = {
        .name = "aibrix_model_bytes_total",
        .help = "Size in bytes of the visible files of each named mount (a gauge; the name is "
                "AIBrix's).",
        .type = EXP_GAUGE,
        .labels = {"model"},
        .provider = provide_model_total,
        .provider_ctx = m,
    };
    const struct exp_metric_def cached = {
        .name = "aibrix_model_bytes_cached",
        .help = "Bytes of each named mount present in the block cache: prefetch progress, "
                "equal to aibrix_model_bytes_total when fully fetched.",
        .type = EXP_GAUGE,
        .labels = {"model"},
        .provider = provide_model_cached,
        .provider_ctx = m,
    };
    const struct exp_metric_def requests = {
        .name = "aibrix_remote_requests_total",
        .help = "HTTP requests sent to model sources, every attempt counted, by source "
                "(huggingface, s3, tos) and the status it got (\"error\": no answer).",
        .type = EXP_COUNTER,
        .labels = {"source", "status"},
        .provider = provide_remote_requests,
        .provider_ctx = m,
    };
    const struct exp_metric_def bytes = {
        .name = "aibrix_remote_bytes_total",
        .help = "Body bytes received from model sources, by source.",
        .type = EXP_COUNTER,
        .labels = {"source"},
        .provider = provide_remote_bytes,
        .provider_ctx = m,
    };
    m->read_latency = exp_metric_register(&latency, err, errlen);
    if (!m->read_latency || !exp_metric_register(&total, err, errlen) ||
        !exp_metric_register(&cached, err, errlen) || !exp_metric_register(&requests, err, errlen) ||
        !exp_metric_register(&bytes, err, errlen))
        return -EINVAL;
    atomic_store(&read_latency, m->read_latency);
    return 0;
}

static void observe_request(const char *method, const char *route, int status, double seconds)
{
    exp_api_observe(method, route, status, seconds);
}

void rt_metrics_on_read(void *ctx, double seconds)
{
    (void)ctx;
    exp_histogram_observe(atomic_load_explicit(&read_latency, memory_order_relaxed), NULL, seconds);
}

int rt_metrics_start(struct runtime *rt, char *err, size_t errlen)
{
    struct exp_scrape_config sc;
    const char *engine_version = cm_env_str("INFERENCE_ENGINE_VERSION");
    struct rt_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rt->metrics = m;
    exp_scrape_config_from_env(&sc);
    if (exp_api_metrics_register(AIBRIX_VERSION, sc.engine,
                                 engine_version ? engine_version : "unknown", err, errlen) != 0 ||
        (rt->cfg->mount_point && register_fs_families(m, err, errlen) != 0))
        return -EINVAL;
    m->scraper = exp_scraper_new(&sc, err, errlen);
    if (!m->scraper)
        return -EINVAL;
    ctl_server_set_observer(observe_request);
    return 0;
}

void rt_metrics_attach_fs(struct runtime *rt, struct fs *fs)
{
    if (rt->metrics)
        atomic_store_explicit(&rt->metrics->fs, fs, memory_order_release);
}

void rt_metrics_stop(struct runtime *rt)
{
    struct rt_metrics *m = rt->metrics;
    if (!m)
        return;
    ctl_server_set_observer(NULL);
    atomic_store(&read_latency, NULL);
    exp_scraper_free(m->scraper);
    exp_registry_reset();
    free(m);
    rt->metrics = NULL;
}

void rt_route_metrics(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct runtime *rt = ctx;
    struct exp_buf out = {0};
    (void)req;
    if (exp_scraper_render(rt->metrics->scraper, &out) != 0) {
        exp_buf_free(&out);
        ctl_error(resp, 500, "out of memory while writing the metrics");
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->body = out.data; /* NUL-terminated: the own families are never empty */
    resp->content_type = EXP_CONTENT_TYPE;
}
