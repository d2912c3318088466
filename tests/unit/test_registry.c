/* test_registry.c - the runtime's own metrics registry (exporter/registry.h): registration
 * checks, the text each type writes, labelled tables and their overflow series, provided
 * families, the AIBrix API metrics, and updates from many threads at once adding up exactly
 * (run under ASan/UBSan in the sanitizer build). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../exporter/registry.h"
#include "check.h"

/* The registry written as text. */
static char *written(void)
{
    struct exp_families f = {0};
    struct exp_buf b = {0};
    CHECK_INT(exp_registry_write(&f), 0);
    CHECK_INT(exp_write(&f, &b), 0);
    exp_families_free(&f);
    if (!b.data)
        return strdup("");
    return b.data;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += n)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

static size_t count_lines_starting(const char *text, const char *prefix)
{
    size_t n = 0, k = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, k) == 0;
    return n;
}

static void test_register_checks(void)
{
    char err[256];
    static const double bounds[] = {1, 2};
    static const double bad_bounds[] = {2, 1};
    struct exp_metric_def ok = {.name = "t_ok_total", .help = "h", .type = EXP_COUNTER};
    CHECK(exp_metric_register(&ok, err, sizeof err) != NULL);
    CHECK(exp_metric_register(&ok, err, sizeof err) == NULL);
    CHECK(strstr(err, "taken") != NULL);

    struct exp_metric_def d = {.name = "9bad", .type = EXP_GAUGE};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);
    d = (struct exp_metric_def){.name = "t_summary", .type = EXP_SUMMARY};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);
    d = (struct exp_metric_def){.name = "t_h", .type = EXP_HISTOGRAM};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL); /* no bounds */
    d = (struct exp_metric_def){
        .name = "t_h", .type = EXP_HISTOGRAM, .bounds = bad_bounds, .nbounds = 2};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);
    d = (struct exp_metric_def){
        .name = "t_h", .type = EXP_HISTOGRAM, .bounds = bounds, .nbounds = 2, .labels = {"le"}};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);
    d = (struct exp_metric_def){.name = "t_g", .type = EXP_GAUGE, .labels = {"a", "a"}};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);
    d = (struct exp_metric_def){.name = "t_g", .type = EXP_GAUGE, .labels = {"__x"}};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);
    d = (struct exp_metric_def){.name = "t_g", .type = EXP_GAUGE, .labels = {"a-b"}};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);

    /* a histogram owns x_bucket/x_sum/x_count: a gauge named so would be read into it */
    d = (struct exp_metric_def){
        .name = "t_lat", .type = EXP_HISTOGRAM, .bounds = bounds, .nbounds = 2};
    CHECK(exp_metric_register(&d, err, sizeof err) != NULL);
    d = (struct exp_metric_def){.name = "t_lat_count", .type = EXP_GAUGE};
    CHECK(exp_metric_register(&d, err, sizeof err) == NULL);
    exp_registry_reset();

    /* after a reset the names are free again, and nothing is written */
    CHECK(exp_metric_register(&ok, err, sizeof err) != NULL);
    char *text = written();
    CHECK_STR(text, "# HELP t_ok_total h\n# TYPE t_ok_total counter\nt_ok_total 0\n");
    free(text);
    exp_registry_reset();
    text = written();
    CHECK_STR(text, "");
    free(text);
}

static void test_types_written(void)
{
    char err[256];
    static const double bounds[] = {0.1, 0.5, 1};
    struct exp_metric_def c = {.name = "t_bytes_total", .help = "Bytes.", .type = EXP_COUNTER};
    struct exp_metric_def g = {.name = "t_temp", .help = "Temp.", .type = EXP_GAUGE};
    struct exp_metric_def h = {.name = "t_seconds",
                               .help = "Latency.",
                               .type = EXP_HISTOGRAM,
                               .bounds = bounds,
                               .nbounds = 3};
    struct exp_metric *mc = exp_metric_register(&c, err, sizeof err);
    struct exp_metric *mg = exp_metric_register(&g, err, sizeof err);
    struct exp_metric *mh = exp_metric_register(&h, err, sizeof err);
    CHECK(mc && mg && mh);
    exp_counter_add(mc, NULL, 5);
    exp_counter_add(mc, NULL, 7);
    exp_gauge_set(mg, NULL, 2.5);
    exp_gauge_add(mg, NULL, -1);
    exp_histogram_observe(mh, NULL, 0.1); /* le is inclusive */
    exp_histogram_observe(mh, NULL, 0.3);
    exp_histogram_observe(mh, NULL, 3);
    exp_histogram_observe(mh, NULL, 0.0 / 0.0); /* NaN: dropped */
    /* wrong-type updates and NULL metrics are ignored */
    exp_gauge_set(mc, NULL, 100);
    exp_counter_add(NULL, NULL, 1);
    exp_histogram_observe(NULL, NULL, 1);

    char *text = written();
    CHECK_STR(text, "# HELP t_bytes_total Bytes.\n"
                    "# TYPE t_bytes_total counter\n"
                    "t_bytes_total 12\n"
                    "# HELP t_temp Temp.\n"
                    "# TYPE t_temp gauge\n"
                    "t_temp 1.5\n"
                    "# HELP t_seconds Latency.\n"
                    "# TYPE t_seconds histogram\n"
                    "t_seconds_bucket{le=\"0.1\"} 1\n"
                    "t_seconds_bucket{le=\"0.5\"} 2\n"
                    "t_seconds_bucket{le=\"1\"} 2\n"
                    "t_seconds_bucket{le=\"+Inf\"} 3\n"
                    "t_seconds_sum 3.4\n"
                    "t_seconds_count 3\n");
    free(text);
    exp_registry_reset();
}

static void test_labels_and_overflow(void)
{
    char err[256];
    struct exp_metric_def d = {
        .name = "t_req_total", .type = EXP_COUNTER, .labels = {"path", "code"}, .max_series = 4};
    struct exp_metric *m = exp_metric_register(&d, err, sizeof err);
    CHECK(m != NULL);
    const char *a[] = {"/a", "200"}, *b[] = {"/b", "404"}, *esc[] = {"q\"\\\n", "200"};
    exp_counter_add(m, a, 1);
    exp_counter_add(m, a, 2);
    exp_counter_add(m, b, 1);
    exp_counter_add(m, esc, 1);
    char *text = written();
    CHECK(has_line(text, "t_req_total{path=\"/a\",code=\"200\"} 3"));
    CHECK(has_line(text, "t_req_total{path=\"/b\",code=\"404\"} 1"));
    CHECK(has_line(text, "t_req_total{path=\"q\\\"\\\\\\n\",code=\"200\"} 1"));
    free(text);

    /* table of 4: the 5th and later combinations land in the overflow series */
    char p[32];
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof p, "/x%d", i);
        const char *v[] = {p, "200"};
        exp_counter_add(m, v, 1);
    }
    const char *other[] = {EXP_REG_OVERFLOW, EXP_REG_OVERFLOW};
    exp_counter_add(m, other, 1); /* the same series, never a duplicate */
    char longv[EXP_REG_VALUE_MAX + 8];
    memset(longv, 'y', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    const char *lv[] = {longv, "200"};
    exp_counter_add(m, lv, 1);
    exp_counter_add(m, NULL, 1);
    text = written();
    CHECK_INT(count_lines_starting(text, "t_req_total{"), 5);
    CHECK(has_line(text, "t_req_total{path=\"other\",code=\"other\"} 12"));
    free(text);

    /* a value that is not UTF-8 is skipped when written; the rest of the family stays */
    struct exp_metric_def g = {.name = "t_g", .type = EXP_GAUGE, .labels = {"k"}};
    struct exp_metric *mg = exp_metric_register(&g, err, sizeof err);
    const char *bad[] = {"\xff\xfe"}, *good[] = {"fine"};
    exp_gauge_set(mg, bad, 1);
    exp_gauge_set(mg, good, 2);
    text = written();
    CHECK(has_line(text, "t_g{k=\"fine\"} 2"));
    CHECK(strstr(text, "\xff") == NULL);
    free(text);
    exp_registry_reset();
}

struct provided_state {
    int calls;
    int n;
};

static void provide(void *ctx, struct exp_emitter *e)
{
    struct provided_state *st = ctx;
    char name[16];
    st->calls++;
    for (int i = 0; i < st->n; i++) {
        snprintf(name, sizeof name, "m%d", i);
        const char *v[] = {name};
        exp_emit(e, v, i * 10.0);
    }
}

static void test_provided(void)
{
    char err[256];
    struct provided_state st = {0};
    struct exp_metric_def d = {.name = "t_model_bytes",
                               .help = "Per model.",
                               .type = EXP_GAUGE,
                               .labels = {"model"},
                               .provider = provide,
                               .provider_ctx = &st};
    CHECK(exp_metric_register(&d, err, sizeof err) != NULL);
    char *text = written();
    CHECK_STR(text, ""); /* no series: the family is left out */
    free(text);
    st.n = 2;
    text = written();
    CHECK_STR(text, "# HELP t_model_bytes Per model.\n# TYPE t_model_bytes gauge\n"
                    "t_model_bytes{model=\"m0\"} 0\nt_model_bytes{model=\"m1\"} 10\n");
    free(text);
    CHECK_INT(st.calls, 2);
    struct exp_metric_def h = {.name = "t_ph",
                               .type = EXP_HISTOGRAM,
                               .bounds = (const double[]){1},
                               .nbounds = 1,
                               .provider = provide};
    CHECK(exp_metric_register(&h, err, sizeof err) == NULL);
    exp_registry_reset();
}

static void test_api_metrics(void)
{
    char err[256];
    CHECK_INT(exp_api_metrics_register("1.2.3", "vllm", "0.9.0", err, sizeof err), 0);
    CHECK(exp_api_metrics_register("1.2.3", "vllm", "0.9.0", err, sizeof err) != 0);
    exp_api_observe("GET", "/healthz", 200, 0.01);
    exp_api_observe("GET", "/healthz", 200, 0.3);
    exp_api_observe("BREW", "other", 404, 7);
    exp_api_observe("POST", "/v1/model/mount", 42, -1);
    char *text = written();
    CHECK(has_line(text, "aibrix:info_info{version=\"1.2.3\",engine=\"vllm\","
                         "engine_version=\"0.9.0\"} 1"));
    CHECK(has_line(text, "# TYPE aibrix:api_request_total counter"));
    CHECK(has_line(text, "aibrix:api_request_total{method=\"GET\",endpoint=\"/healthz\","
                         "status=\"200\"} 2"));
    CHECK(has_line(text, "aibrix:api_request_total{method=\"other\",endpoint=\"other\","
                         "status=\"404\"} 1"));
    CHECK(has_line(text, "aibrix:api_request_total{method=\"POST\",endpoint=\"/v1/model/mount\","
                         "status=\"other\"} 1"));
    CHECK(has_line(text, "# TYPE aibrix:api_request_latency histogram"));
    CHECK(has_line(text, "aibrix:api_request_latency_bucket{method=\"GET\",endpoint=\"/healthz\","
                         "status=\"200\",le=\"0.1\"} 1"));
    CHECK(has_line(text, "aibrix:api_request_latency_bucket{method=\"GET\",endpoint=\"/healthz\","
                         "status=\"200\",le=\"0.5\"} 2"));
    CHECK(has_line(text, "aibrix:api_request_latency_count{method=\"other\",endpoint=\"other\","
                         "status=\"404\"} 1"));
    CHECK(has_line(text, "aibrix:api_request_latency_bucket{method=\"other\",endpoint=\"other\","
                         "status=\"404\",le=\"5\"} 0"));
    /* the AIBrix buckets */
    CHECK_INT(count_lines_starting(text, "aibrix:api_request_latency_bucket{method=\"GET\""), 7);
    free(text);
    exp_registry_reset();
}

#define THREADS 8
#define ROUNDS 20000

struct worker {
    struct exp_metric *c, *h, *g;
    int id;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char path[16];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(path, sizeof path, "/p%d", i % 16);
        const char *v[] = {path};
        exp_counter_add(w->c, v, 1);
        exp_histogram_observe(w->h, NULL, (i % 4) * 0.5);
        exp_gauge_add(w->g, NULL, 1);
        if (i % 5000 == 0) {
            char *text = written(); /* concurrent writes read consistent histograms */
            free(text);
        }
    }
    return NULL;
}

static void test_concurrent_updates(void)
{
    char err[256];
    static const double bounds[] = {0.25, 0.75, 1.25};
    struct exp_metric_def c = {
        .name = "t_hits_total", .type = EXP_COUNTER, .labels = {"path"}, .max_series = 32};
    struct exp_metric_def h = {
        .name = "t_lat_seconds", .type = EXP_HISTOGRAM, .bounds = bounds, .nbounds = 3};
    struct exp_metric_def g = {.name = "t_level", .type = EXP_GAUGE};
    struct worker w[THREADS];
    pthread_t t[THREADS];
    struct exp_metric *mc = exp_metric_register(&c, err, sizeof err);
    struct exp_metric *mh = exp_metric_register(&h, err, sizeof err);
    struct exp_metric *mg = exp_metric_register(&g, err, sizeof err);
    CHECK(mc && mh && mg);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){mc, mh, mg, i};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);

    char *text = written();
    char line[128];
    /* 16 paths, each hit ROUNDS/16 times per thread */
    CHECK_INT(count_lines_starting(text, "t_hits_total{"), 16);
    snprintf(line, sizeof line, "t_hits_total{path=\"/p3\"} %d", THREADS * ROUNDS / 16);
    CHECK(has_line(text, line));
    snprintf(line, sizeof line, "t_lat_seconds_count %d", THREADS * ROUNDS);
    CHECK(has_line(text, line));
    snprintf(line, sizeof line, "t_lat_seconds_bucket{le=\"0.25\"} %d", THREADS * ROUNDS / 4);
    CHECK(has_line(text, line));
    /* values 0, .5, 1, 1.5 in equal shares: the sum is exact in binary */
    snprintf(line, sizeof line, "t_lat_seconds_sum %d", THREADS * ROUNDS / 4 * 3);
    CHECK(has_line(text, line));
    snprintf(line, sizeof line, "t_level %d", THREADS * ROUNDS);
    CHECK(has_line(text, line));
    free(text);
    exp_registry_reset();
}

int main(void)
{
    test_register_checks();
    test_types_written();
    test_labels_and_overflow();
    test_provided();
    test_api_metrics();
    test_concurrent_updates();
    return check_done();
}
