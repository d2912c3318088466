/* test_rules.c - the standard-family rules (exporter/rules.h) over realistic scrapes of every
 * engine (tests/unit/data/metrics/<engine>-<variant>.txt): each standard family the SPEC §6
 * table gives appears with the source's type, labels and values; every original family is
 * kept unchanged; no family appears twice; and the edge cases (fallbacks, selectors, _created,
 * families the engine already exposes, unknown engines). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../exporter/promtext.h"
#include "../../exporter/rules.h"
#include "check.h"

#ifndef EXP_TEST_DATA
#define EXP_TEST_DATA "tests/unit/data/metrics"
#endif

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", EXP_TEST_DATA, name);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, fp) : 0;
    fclose(fp);
    return buf;
}

static const char *labels_str(const struct exp_sample *s, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->nlabels && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s=\"%s\"", i ? "," : "", s->labels[i].name,
                              s->labels[i].value);
    return buf;
}

/* One expected standard family: its type and sample count, and one sample's labels and value. */
struct want {
    const char *family;
    enum exp_type type;
    size_t nsamples;
    const char *sample, *labels;
    double value;
};

struct fixture {
    const char *file, *engine;
    const struct want *wants;
    size_t nwants;
};

#define VLLM0 "model_name=\"Qwen/Qwen2.5-Coder-1.5B-Instruct\""
static const struct want vllm_v0[] = {
    {"aibrix:queue_size", EXP_GAUGE, 1, "aibrix:queue_size", VLLM0, 3},
    {"aibrix:num_requests_running", EXP_GAUGE, 1, "aibrix:num_requests_running", VLLM0, 1},
    {"aibrix:kv_cache_usage_perc", EXP_GAUGE, 1, "aibrix:kv_cache_usage_perc", VLLM0, 0.0125},
    {"aibrix:gpu_cache_usage_perc", EXP_GAUGE, 1, "aibrix:gpu_cache_usage_perc", VLLM0, 0.0125},
    {"aibrix:prompt_tokens_total", EXP_COUNTER, 1, "aibrix:prompt_tokens_total", VLLM0, 148},
    {"aibrix:generation_tokens_total", EXP_COUNTER, 1, "aibrix:generation_tokens_total", VLLM0,
     955},
    {"aibrix:request_success_total", EXP_COUNTER, 1, "aibrix:request_success_total",
     "finished_reason=\"stop\"," VLLM0, 4},
    {"aibrix:time_to_first_token_seconds", EXP_HISTOGRAM, 19,
     "aibrix:time_to_first_token_seconds_bucket", "le=\"0.04\"," VLLM0, 3},
    {"aibrix:time_per_output_token_seconds", EXP_HISTOGRAM, 16,
     "aibrix:time_per_output_token_seconds_count", VLLM0, 951},
    {"aibrix:e2e_request_latency_seconds", EXP_HISTOGRAM, 13,
     "aibrix:e2e_request_latency_seconds_sum", VLLM0, 14.5},
    {"aibrix:lora_requests_info", EXP_GAUGE, 1, "aibrix:lora_requests_info",
     "max_lora=\"0\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"",
     1.7382173358407154e+09},
};

#define VLLM1 "engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\""
static const struct want vllm_v1[] = {
    {"aibrix:queue_size", EXP_GAUGE, 1, "aibrix:queue_size", VLLM1, 5},
    {"aibrix:num_requests_running", EXP_GAUGE, 1, "aibrix:num_requests_running", VLLM1, 2},
    {"aibrix:kv_cache_usage_perc", EXP_GAUGE, 1, "aibrix:kv_cache_usage_perc", VLLM1, 0.4375},
    {"aibrix:prompt_tokens_total", EXP_COUNTER, 1, "aibrix:prompt_tokens_total", VLLM1, 12345},
    {"aibrix:prompt_tokens_created", EXP_GAUGE, 1, "aibrix:prompt_tokens_created", VLLM1,
     1.7500001234567e9},
    {"aibrix:generation_tokens_total", EXP_COUNTER, 1, "aibrix:generation_tokens_total", VLLM1,
     67890},
    {"aibrix:generation_tokens_created", EXP_GAUGE, 1, "aibrix:generation_tokens_created", VLLM1,
     1.7500001234567e9},
    {"aibrix:request_success_total", EXP_COUNTER, 3, "aibrix:request_success_total",
     "engine=\"0\",finished_reason=\"length\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"", 7},
    {"aibrix:request_success_created", EXP_GAUGE, 3, "aibrix:request_success_created",
     "engine=\"0\",finished_reason=\"abort\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"",
     1.7500001234567e9},
    {"aibrix:time_to_first_token_seconds", EXP_HISTOGRAM, 19,
     "aibrix:time_to_first_token_seconds_count", VLLM1, 48},
    {"aibrix:time_to_first_token_seconds_created", EXP_GAUGE, 1,
     "aibrix:time_to_first_token_seconds_created", VLLM1, 1.7500001234567e9},
    /* V1 has no time_per_output_token_seconds: the fallback inter_token_latency_seconds. */
    {"aibrix:time_per_output_token_seconds", EXP_HISTOGRAM, 16,
     "aibrix:time_per_output_token_seconds_bucket", "le=\"0.025\"," VLLM1, 67000},
    {"aibrix:time_per_output_token_seconds_created", EXP_GAUGE, 1,
     "aibrix:time_per_output_token_seconds_created", VLLM1, 1.7500001234567e9},
    {"aibrix:e2e_request_latency_seconds", EXP_HISTOGRAM, 13,
     "aibrix:e2e_request_latency_seconds_bucket", "le=\"+Inf\"," VLLM1, 48},
    {"aibrix:e2e_request_latency_seconds_created", EXP_GAUGE, 1,
     "aibrix:e2e_request_latency_seconds_created", VLLM1, 1.7500001234567e9},
    {"aibrix:lora_requests_info", EXP_GAUGE, 1, "aibrix:lora_requests_info",
     "max_lora=\"4\",running_lora_adapters=\"sql-lora\",waiting_lora_adapters=\"\"",
     1.7500012345678e+09},
};

#define SGL_OLD "model_name=\"meta-llama/Llama-3.2-1B-Instruct\""
#define SGL_NEW                                                                                    \
    "engine_type=\"unified\",model_name=\"meta-llama/Llama-3.2-1B-Instruct\",pp_rank=\"0\","       \
    "tp_rank=\"0\""
#define SGLANG_WANTS(L)                                                                            \
    {"aibrix:queue_size", EXP_GAUGE, 1, "aibrix:queue_size", L, 7},                                \
        {"aibrix:num_requests_running", EXP_GAUGE, 1, "aibrix:num_requests_running", L, 3},        \
        {"aibrix:kv_cache_usage_perc", EXP_GAUGE, 1, "aibrix:kv_cache_usage_perc", L, 0.02},       \
        {"aibrix:token_usage", EXP_GAUGE, 1, "aibrix:token_usage", L, 0.02},                       \
        {"aibrix:generation_throughput", EXP_GAUGE, 1, "aibrix:generation_throughput", L, 157.3},  \
        {"aibrix:cache_hit_rate", EXP_GAUGE, 1, "aibrix:cache_hit_rate", L, 0.31},                 \
        {"aibrix:prompt_tokens_total", EXP_COUNTER, 1, "aibrix:prompt_tokens_total", L, 8120},     \
        {"aibrix:generation_tokens_total", EXP_COUNTER, 1,                                         \
         "aibrix:generation_tokens_total", L,           45210},                                    \
        {"aibrix:time_to_first_token_seconds",                                                     \
         EXP_HISTOGRAM,                                                                            \
         19,                                                                                       \
         "aibrix:time_to_first_token_seconds_count",                                               \
         L,                                                                                        \
         10},                                                                                      \
        {"aibrix:time_per_output_token_seconds",                                                   \
         EXP_HISTOGRAM,                                                                            \
         16,                                                                                       \
         "aibrix:time_per_output_token_seconds_sum",                                               \
         L,                                                                                        \
         530.2},                                                                                   \
    {                                                                                              \
        "aibrix:e2e_request_latency_seconds", EXP_HISTOGRAM, 13,                                   \
            "aibrix:e2e_request_latency_seconds_bucket", "le=\"5.0\"," L, 7                        \
    }

static const struct want sglang_old[] = {SGLANG_WANTS(SGL_OLD)};
static const struct want sglang_new[] = {SGLANG_WANTS(SGL_NEW)};

#define TRT "engine_type=\"trtllm\",model_name=\"TinyLlama/TinyLlama-1.1B-Chat-v1.0\""
static const struct want trtllm_serve[] = {
    {"aibrix:kv_cache_usage_perc", EXP_GAUGE, 1, "aibrix:kv_cache_usage_perc", TRT, 0.0625},
    {"aibrix:kv_cache_hit_rate", EXP_GAUGE, 1, "aibrix:kv_cache_hit_rate", TRT, 0.125},
    {"aibrix:request_success_total", EXP_COUNTER, 2, "aibrix:request_success_total",
     "engine_type=\"trtllm\",finished_reason=\"length\","
     "model_name=\"TinyLlama/TinyLlama-1.1B-Chat-v1.0\"",
     3},
    {"aibrix:request_success_created", EXP_GAUGE, 2, "aibrix:request_success_created",
     "engine_type=\"trtllm\",finished_reason=\"stop\","
     "model_name=\"TinyLlama/TinyLlama-1.1B-Chat-v1.0\"",
     1.7511223344e9},
    {"aibrix:time_to_first_token_seconds", EXP_HISTOGRAM, 13,
     "aibrix:time_to_first_token_seconds_count", TRT, 28},
    {"aibrix:time_to_first_token_seconds_created", EXP_GAUGE, 1,
     "aibrix:time_to_first_token_seconds_created", TRT, 1.7511223344e9},
    {"aibrix:time_per_output_token_seconds", EXP_HISTOGRAM, 8,
     "aibrix:time_per_output_token_seconds_bucket", "le=\"0.01\"," TRT, 20},
    {"aibrix:time_per_output_token_seconds_created", EXP_GAUGE, 1,
     "aibrix:time_per_output_token_seconds_created", TRT, 1.7511223344e9},
    {"aibrix:e2e_request_latency_seconds", EXP_HISTOGRAM, 12,
     "aibrix:e2e_request_latency_seconds_sum", TRT, 27.9},
    {"aibrix:e2e_request_latency_seconds_created", EXP_GAUGE, 1,
     "aibrix:e2e_request_latency_seconds_created", TRT, 1.7511223344e9},
};

/* The selector label (request_type, kv_cache_block_type) is dropped; model and version stay. */
static const struct want trtllm_triton[] = {
    {"aibrix:queue_size", EXP_GAUGE, 1, "aibrix:queue_size", "model=\"tensorrt_llm\",version=\"1\"",
     4},
    {"aibrix:num_requests_running", EXP_GAUGE, 1, "aibrix:num_requests_running",
     "model=\"tensorrt_llm\",version=\"1\"", 6},
    {"aibrix:kv_cache_usage_perc", EXP_GAUGE, 1, "aibrix:kv_cache_usage_perc",
     "model=\"tensorrt_llm\",version=\"1\"", 0.0625},
};

static const struct want tgi[] = {
    {"aibrix:queue_size", EXP_GAUGE, 1, "aibrix:queue_size", "", 3},
    {"aibrix:num_requests_running", EXP_GAUGE, 1, "aibrix:num_requests_running", "", 8},
    {"aibrix:request_success_total", EXP_COUNTER, 1, "aibrix:request_success_total", "", 54},
    {"aibrix:e2e_request_latency_seconds", EXP_HISTOGRAM, 18,
     "aibrix:e2e_request_latency_seconds_bucket", "le=\"3.8511\"", 48},
};

static const struct want triton[] = {
    {"aibrix:queue_size", EXP_GAUGE, 2, "aibrix:queue_size", "model=\"resnet50\",version=\"1\"", 9},
    {"aibrix:request_success_total", EXP_COUNTER, 2, "aibrix:request_success_total",
     "model=\"bert\",version=\"2\"", 18},
};

static const struct want llamacpp[] = {
    {"aibrix:queue_size", EXP_GAUGE, 1, "aibrix:queue_size", "", 2},
    {"aibrix:num_requests_running", EXP_GAUGE, 1, "aibrix:num_requests_running", "", 1},
    {"aibrix:kv_cache_usage_perc", EXP_GAUGE, 1, "aibrix:kv_cache_usage_perc", "", 0.125},
    {"aibrix:prompt_tokens_total", EXP_COUNTER, 1, "aibrix:prompt_tokens_total", "", 1849},
    {"aibrix:generation_tokens_total", EXP_COUNTER, 1, "aibrix:generation_tokens_total", "",
     1234570},
    {"aibrix:generation_throughput", EXP_GAUGE, 1, "aibrix:generation_throughput", "", 49.7461},
};

#define FIXTURE(file, engine, wants)                                                               \
    {                                                                                              \
        file, engine, wants, sizeof wants / sizeof wants[0]                                        \
    }
static const struct fixture fixtures[] = {
    FIXTURE("vllm-v0.txt", "vllm", vllm_v0),
    FIXTURE("vllm-v1.txt", "vllm", vllm_v1),
    FIXTURE("sglang-old.txt", "sglang", sglang_old),
    FIXTURE("sglang-new.txt", "sglang", sglang_new),
    FIXTURE("trtllm-serve.txt", "trtllm", trtllm_serve),
    FIXTURE("trtllm-triton.txt", "trtllm", trtllm_triton),
    FIXTURE("tgi.txt", "tgi", tgi),
    FIXTURE("triton.txt", "triton", triton),
    FIXTURE("llamacpp.txt", "llamacpp", llamacpp),
};

static bool same_family(const struct exp_family *a, const struct exp_family *b)
{
    if (strcmp(a->name, b->name) || a->type != b->type || a->nsamples != b->nsamples ||
        !a->help != !b->help || (a->help && strcmp(a->help, b->help)))
        return false;
    for (size_t k = 0; k < a->nsamples; k++) {
        const struct exp_sample *s = &a->samples[k], *t = &b->samples[k];
        char x[1024], y[1024];
        if (strcmp(s->name, t->name) ||
            (s->value != t->value && !(isnan(s->value) && isnan(t->value))) ||
            s->has_ts != t->has_ts || s->ts_ms != t->ts_ms ||
            strcmp(labels_str(s, x, sizeof x), labels_str(t, y, sizeof y)))
            return false;
    }
    return true;
}

/* Every family name once; written text parses back to the same number of families. */
static void check_unique_and_writable(const struct exp_families *out)
{
    struct exp_buf b = {0};
    struct exp_families back;
    char err[256];
    for (size_t i = 0; i < out->n; i++)
        CHECK(exp_families_find(out, out->fam[i].name) == &out->fam[i]);
    CHECK_INT(exp_write(out, &b), 0);
    CHECK_INT(exp_parse(b.data ? b.data : "", b.len, &back, err, sizeof err), 0);
    CHECK_INT(back.n, out->n);
    CHECK_INT(back.nseries, out->nseries);
    exp_families_free(&back);
    exp_buf_free(&b);
}

static const struct want *wanted(const struct fixture *fx, const char *family)
{
    for (size_t i = 0; i < fx->nwants; i++)
        if (strcmp(fx->wants[i].family, family) == 0)
            return &fx->wants[i];
    return NULL;
}

static void check_fixture(const struct fixture *fx)
{
    struct exp_families in, out;
    char err[256], lb[1024];
    size_t len;
    char *text = slurp(fx->file, &len);
    int failed_before = check_failed;

    CHECK(text != NULL);
    if (!text)
        return;
    CHECK_INT(exp_parse(text, len, &in, err, sizeof err), 0);
    free(text);
    CHECK_INT(exp_transform(&in, fx->engine, &out, err, sizeof err), 0);

    /* Originals first, unchanged and in order. */
    CHECK(out.n >= in.n);
    for (size_t i = 0; i < in.n && i < out.n; i++)
        CHECK(same_family(&in.fam[i], &out.fam[i]));
    /* Exactly the expected standard families follow. */
    CHECK_INT(out.n - in.n, fx->nwants);
    for (size_t i = in.n; i < out.n; i++) {
        const struct exp_family *fam = &out.fam[i];
        const struct want *w = wanted(fx, fam->name);
        CHECK(w != NULL);
        if (!w) {
            fprintf(stderr, "  %s: unexpected family %s\n", fx->file, fam->name);
            continue;
        }
        CHECK_INT(fam->type, w->type);
        CHECK_INT(fam->nsamples, w->nsamples);
        CHECK(fam->help && strstr(fam->help, "Source: ") != NULL);
        bool found = false;
        for (size_t k = 0; k < fam->nsamples; k++) {
            const struct exp_sample *s = &fam->samples[k];
            if (strcmp(s->name, w->sample) || strcmp(labels_str(s, lb, sizeof lb), w->labels))
                continue;
            found = true;
            CHECK(s->value == w->value);
        }
        CHECK(found);
        if (!found)
            fprintf(stderr, "  %s: no sample %s{%s}\n", fx->file, w->sample, w->labels);
    }
    for (size_t i = 0; i < fx->nwants; i++)
        CHECK(exp_families_find(&out, fx->wants[i].family) != NULL);
    check_unique_and_writable(&out);
    if (check_failed != failed_before)
        fprintf(stderr, "  (fixture %s, engine %s)\n", fx->file, fx->engine);

    /* A second pass over the transformed output adds nothing: every standard name is taken. */
    struct exp_families again;
    CHECK_INT(exp_transform(&out, fx->engine, &again, err, sizeof err), 0);
    CHECK_INT(again.n, out.n);
    exp_families_free(&again);
    exp_families_free(&out);
    exp_families_free(&in);
}

/* Parse text, transform for engine, and return rc; out is left for the caller to inspect. */
static int run(const char *text, const char *engine, struct exp_families *out, char *err,
               size_t errlen)
{
    struct exp_families in;
    int rc = exp_parse(text, strlen(text), &in, err, errlen);
    CHECK_INT(rc, 0);
    rc = exp_transform(&in, engine, out, err, errlen);
    exp_families_free(&in);
    return rc;
}

static void test_counter_total(void)
{
    /* SPEC §8: counter rules match *_total families. */
    struct exp_families out;
    char err[256];
    CHECK_INT(run("# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total 5\n", "vllm",
                  &out, err, sizeof err),
              0);
    struct exp_family *f = exp_families_find(&out, "aibrix:prompt_tokens_total");
    CHECK(f && f->type == EXP_COUNTER && f->nsamples == 1 && f->samples[0].value == 5);
    CHECK(exp_families_find(&out, "aibrix:prompt_tokens_created") == NULL);
    exp_families_free(&out);
}

static void test_fallback_priority(void)
{
    struct exp_families out;
    char err[256];
    /* Both present: the first source wins. */
    CHECK_INT(run("vllm:gpu_cache_usage_perc 0.25\nvllm:kv_cache_usage_perc 0.5\n", "vllm", &out,
                  err, sizeof err),
              0);
    struct exp_family *f = exp_families_find(&out, "aibrix:kv_cache_usage_perc");
    CHECK(f && f->samples[0].value == 0.5);
    f = exp_families_find(&out, "aibrix:gpu_cache_usage_perc");
    CHECK(f && f->samples[0].value == 0.25);
    exp_families_free(&out);

    /* A family with no samples does not count as present. */
    CHECK_INT(run("# TYPE vllm:kv_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.75\n", "vllm",
                  &out, err, sizeof err),
              0);
    f = exp_families_find(&out, "aibrix:kv_cache_usage_perc");
    CHECK(f && f->samples[0].value == 0.75);
    exp_families_free(&out);

    /* A selector that matches nothing falls through to the next source. */
    CHECK_INT(run("nv_trt_llm_request_metrics{request_type=\"active\"} 3\n"
                  "trtllm_num_requests_waiting{model_name=\"m\"} 9\n",
                  "trtllm", &out, err, sizeof err),
              0);
    f = exp_families_find(&out, "aibrix:queue_size");
    CHECK(f && f->nsamples == 1 && f->samples[0].value == 9);
    CHECK(exp_families_find(&out, "aibrix:num_requests_running") == NULL);
    exp_families_free(&out);
}

static void test_selector(void)
{
    struct exp_families out;
    char err[256], lb[256];
    CHECK_INT(
        run("nv_trt_llm_request_metrics{model=\"a\",request_type=\"waiting\",version=\"1\"} 1\n"
            "nv_trt_llm_request_metrics{model=\"b\",request_type=\"waiting\",version=\"1\"} 2\n"
            "nv_trt_llm_request_metrics{model=\"a\",request_type=\"scheduled\",version=\"1\"} "
            "3\n"
            "nv_trt_llm_request_metrics{model=\"a\",version=\"1\"} 4\n",
            "trtllm", &out, err, sizeof err),
        0);
    struct exp_family *f = exp_families_find(&out, "aibrix:queue_size");
    CHECK(f && f->nsamples == 2);
    if (f && f->nsamples == 2) {
        CHECK_STR(labels_str(&f->samples[1], lb, sizeof lb), "model=\"b\",version=\"1\"");
        CHECK(f->samples[1].value == 2);
    }
    f = exp_families_find(&out, "aibrix:num_requests_running");
    CHECK(f && f->nsamples == 1 && f->samples[0].value == 3);
    exp_families_free(&out);
}

static void test_no_duplicates(void)
{
    struct exp_families out;
    char err[256];
    /* The engine already exposes a standard name: it is kept once, as the engine wrote it. */
    CHECK_INT(
        run("aibrix:queue_size 42\nvllm:num_requests_waiting 1\n", "vllm", &out, err, sizeof err),
        0);
    CHECK_INT(out.n, 2);
    struct exp_family *f = exp_families_find(&out, "aibrix:queue_size");
    CHECK(f && f->nsamples == 1 && f->samples[0].value == 42);
    exp_families_free(&out);

    /* A family holding one of the standard histogram's sample names blocks it, quietly. */
    CHECK_INT(run("aibrix:time_to_first_token_seconds_count 1\n"
                  "# TYPE vllm:time_to_first_token_seconds histogram\n"
                  "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"
                  "vllm:time_to_first_token_seconds_count 2\n"
                  "vllm:time_to_first_token_seconds_sum 0.5\n",
                  "vllm", &out, err, sizeof err),
              0);
    CHECK_INT(out.n, 2);
    CHECK(exp_families_find(&out, "aibrix:time_to_first_token_seconds") == NULL);
    exp_families_free(&out);

    /* A `_created` companion whose name is taken is skipped; the main family is still added. */
    CHECK_INT(run("# TYPE aibrix:prompt_tokens_created gauge\naibrix:prompt_tokens_created 7\n"
                  "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total 5\n"
                  "# TYPE vllm:prompt_tokens_created gauge\nvllm:prompt_tokens_created 1\n",
                  "vllm", &out, err, sizeof err),
              0);
    CHECK_INT(out.n, 4);
    f = exp_families_find(&out, "aibrix:prompt_tokens_created");
    CHECK(f && f->samples[0].value == 7);
    check_unique_and_writable(&out);
    exp_families_free(&out);
}

static void test_unknown_engine(void)
{
    struct exp_families out;
    char err[256];
    CHECK_INT(run("vllm:num_requests_waiting 1\n", "mystery", &out, err, sizeof err),
              EXP_WARN_UNKNOWN_ENGINE);
    CHECK(strstr(err, "unknown inference engine \"mystery\"") != NULL);
    CHECK_INT(out.n, 1);
    exp_families_free(&out);
    CHECK_INT(run("x 1\n", NULL, &out, err, sizeof err), EXP_WARN_UNKNOWN_ENGINE);
    CHECK_INT(out.n, 1);
    exp_families_free(&out);
    CHECK_INT(run("vllm:num_requests_waiting 1\n", "VLLM", &out, err, sizeof err), 0);
    CHECK_INT(out.n, 2);
    exp_families_free(&out);
}

static void test_table(void)
{
    static const char *const known[] = {"vllm", "sglang", "trtllm", "tgi", "triton", "llamacpp"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        const struct exp_engine *e = exp_engine_find(known[i]);
        CHECK(exp_engine_known(known[i]));
        CHECK(e && e->nrules > 0);
        for (size_t r = 0; e && r < e->nrules; r++) {
            const struct exp_rule *rule = &e->rules[r];
            CHECK(exp_std_help(rule->std) != NULL);
            CHECK(exp_metric_name_valid(rule->std, strlen(rule->std)));
            CHECK(rule->src[0].family != NULL);
            for (size_t k = 0; k < EXP_RULE_MAX_SOURCES && rule->src[k].family; k++) {
                CHECK(exp_metric_name_valid(rule->src[k].family, strlen(rule->src[k].family)));
                CHECK(!rule->src[k].sel_label == !rule->src[k].sel_value);
            }
            for (size_t q = 0; q < r; q++)
                CHECK(strcmp(e->rules[q].std, rule->std) != 0);
        }
    }
    CHECK(exp_engine_known("Sglang"));
    CHECK(!exp_engine_known("vllm2"));
    CHECK(!exp_engine_known(""));
    CHECK(!exp_engine_known(NULL));
    CHECK(exp_std_help("vllm:num_requests_waiting") == NULL);
}

int main(void)
{
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        check_fixture(&fixtures[i]);
    test_counter_total();
    test_fallback_priority();
    test_selector();
    test_no_duplicates();
    test_unknown_engine();
    test_table();
    return check_done();
}
