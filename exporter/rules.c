/* rules.c - the SPEC §6 table as data, and the transform that applies it (see rules.h). */
#include "rules.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Standard families and what they mean, whatever the engine. */
static const struct {
    const char *name, *help;
} std_families[] = {
    {"aibrix:queue_size", "Requests waiting to be scheduled by the engine."},
    {"aibrix:num_requests_running", "Requests the engine is processing now."},
    {"aibrix:kv_cache_usage_perc", "KV-cache usage as a fraction; 1 means 100 percent."},
    {"aibrix:gpu_cache_usage_perc", "GPU KV-cache usage as a fraction; 1 means 100 percent."},
    {"aibrix:prompt_tokens_total", "Prompt (prefill) tokens processed."},
    {"aibrix:generation_tokens_total", "Tokens generated."},
    {"aibrix:request_success_total", "Requests that finished successfully."},
    {"aibrix:time_to_first_token_seconds", "Time to first token in seconds."},
    {"aibrix:time_per_output_token_seconds", "Time per output token in seconds."},
    {"aibrix:e2e_request_latency_seconds", "End-to-end request latency in seconds."},
    {"aibrix:generation_throughput", "Generation throughput in tokens per second."},
    {"aibrix:cache_hit_rate", "Prefix cache hit rate."},
    {"aibrix:token_usage", "Fraction of the KV-cache token pool in use."},
    {"aibrix:kv_cache_hit_rate", "KV-cache block hit rate."},
    {"aibrix:lora_requests_info",
     "Running and waiting LoRA adapters in labels; the value is the unix time of the update."},
};

#define SRC(name)                                                                                  \
    {                                                                                              \
        name, NULL, NULL                                                                           \
    }
#define SEL(name, label, value)                                                                    \
    {                                                                                              \
        name, label, value                                                                         \
    }

static const struct exp_rule vllm_rules[] = {
    {"aibrix:queue_size", {SRC("vllm:num_requests_waiting")}},
    {"aibrix:num_requests_running", {SRC("vllm:num_requests_running")}},
    {"aibrix:kv_cache_usage_perc",
     {SRC("vllm:kv_cache_usage_perc"), SRC("vllm:gpu_cache_usage_perc")}},
    {"aibrix:gpu_cache_usage_perc", {SRC("vllm:gpu_cache_usage_perc")}},
    {"aibrix:prompt_tokens_total", {SRC("vllm:prompt_tokens_total")}},
    {"aibrix:generation_tokens_total", {SRC("vllm:generation_tokens_total")}},
    {"aibrix:request_success_total", {SRC("vllm:request_success_total")}},
    {"aibrix:time_to_first_token_seconds", {SRC("vllm:time_to_first_token_seconds")}},
    {"aibrix:time_per_output_token_seconds",
     {SRC("vllm:time_per_output_token_seconds"), SRC("vllm:inter_token_latency_seconds")}},
    {"aibrix:e2e_request_latency_seconds", {SRC("vllm:e2e_request_latency_seconds")}},
    {"aibrix:lora_requests_info", {SRC("vllm:lora_requests_info")}},
};

static const struct exp_rule sglang_rules[] = {
    {"aibrix:queue_size", {SRC("sglang:num_queue_reqs")}},
    {"aibrix:num_requests_running", {SRC("sglang:num_running_reqs")}},
    {"aibrix:kv_cache_usage_perc", {SRC("sglang:token_usage")}},
    {"aibrix:prompt_tokens_total", {SRC("sglang:prompt_tokens_total")}},
    {"aibrix:generation_tokens_total", {SRC("sglang:generation_tokens_total")}},
    {"aibrix:time_to_first_token_seconds", {SRC("sglang:time_to_first_token_seconds")}},
    {"aibrix:time_per_output_token_seconds",
     {SRC("sglang:time_per_output_token_seconds"), SRC("sglang:inter_token_latency_seconds")}},
    {"aibrix:e2e_request_latency_seconds", {SRC("sglang:e2e_request_latency_seconds")}},
    {"aibrix:generation_throughput", {SRC("sglang:gen_throughput")}},
    {"aibrix:cache_hit_rate", {SRC("sglang:cache_hit_rate")}},
    {"aibrix:token_usage", {SRC("sglang:token_usage")}},
};

/* trtllm-serve (unprefixed; trtllm_ in newer releases) and Triton's TensorRT-LLM backend. */
static const struct exp_rule trtllm_rules[] = {
    {"aibrix:queue_size",
     {SEL("nv_trt_llm_request_metrics", "request_type", "waiting"),
      SRC("trtllm_num_requests_waiting")}},
    {"aibrix:num_requests_running",
     {SEL("nv_trt_llm_request_metrics", "request_type", "scheduled"),
      SRC("trtllm_num_requests_running")}},
    {"aibrix:kv_cache_usage_perc",
     {SRC("kv_cache_utilization"), SRC("trtllm_kv_cache_utilization"),
      SEL("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "fraction")}},
    {"aibrix:request_success_total",
     {SRC("request_success_total"), SRC("trtllm_request_success_total")}},
    {"aibrix:time_to_first_token_seconds",
     {SRC("time_to_first_token_seconds"), SRC("trtllm_time_to_first_token_seconds")}},
    {"aibrix:time_per_output_token_seconds",
     {SRC("time_per_output_token_seconds"), SRC("trtllm_time_per_output_token_seconds")}},
    {"aibrix:e2e_request_latency_seconds",
     {SRC("e2e_request_latency_seconds"), SRC("trtllm_e2e_request_latency_seconds")}},
    {"aibrix:kv_cache_hit_rate", {SRC("kv_cache_hit_rate"), SRC("trtllm_kv_cache_hit_rate")}},
};

static const struct exp_rule tgi_rules[] = {
    {"aibrix:queue_size", {SRC("tgi_queue_size")}},
    {"aibrix:num_requests_running", {SRC("tgi_batch_current_size")}},
    {"aibrix:request_success_total", {SRC("tgi_request_success")}},
    {"aibrix:e2e_request_latency_seconds", {SRC("tgi_request_duration")}},
};

static const struct exp_rule triton_rules[] = {
    {"aibrix:queue_size", {SRC("nv_inference_pending_request_count")}},
    {"aibrix:request_success_total", {SRC("nv_inference_request_success")}},
};

static const struct exp_rule llamacpp_rules[] = {
    {"aibrix:queue_size", {SRC("llamacpp:requests_deferred")}},
    {"aibrix:num_requests_running", {SRC("llamacpp:requests_processing")}},
    {"aibrix:kv_cache_usage_perc", {SRC("llamacpp:kv_cache_usage_ratio")}},
    {"aibrix:prompt_tokens_total", {SRC("llamacpp:prompt_tokens_total")}},
    {"aibrix:generation_tokens_total", {SRC("llamacpp:tokens_predicted_total")}},
    {"aibrix:generation_throughput", {SRC("llamacpp:predicted_tokens_seconds")}},
};

#define ENGINE(name, rules)                                                                        \
    {                                                                                              \
        name, rules, sizeof rules / sizeof rules[0]                                                \
    }

static const struct exp_engine engines[] = {
    ENGINE("vllm", vllm_rules), ENGINE("sglang", sglang_rules), ENGINE("trtllm", trtllm_rules),
    ENGINE("tgi", tgi_rules),   ENGINE("triton", triton_rules), ENGINE("llamacpp", llamacpp_rules),
};

const struct exp_engine *exp_engine_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof engines / sizeof engines[0]; i++)
        if (strcasecmp(engines[i].name, name) == 0)
            return &engines[i];
    return NULL;
}

bool exp_engine_known(const char *name)
{
    return exp_engine_find(name) != NULL;
}

const char *exp_std_help(const char *std)
{
    for (size_t i = 0; i < sizeof std_families / sizeof std_families[0]; i++)
        if (strcmp(std_families[i].name, std) == 0)
            return std_families[i].help;
    return NULL;
}

static bool selected(const struct exp_sample *s, const struct exp_source *src)
{
    if (!src->sel_label)
        return true;
    for (size_t i = 0; i < s->nlabels; i++)
        if (strcmp(s->labels[i].name, src->sel_label) == 0)
            return strcmp(s->labels[i].value, src->sel_value) == 0;
    return false;
}

static bool any_selected(const struct exp_family *fam, const struct exp_source *src)
{
    for (size_t i = 0; i < fam->nsamples; i++)
        if (selected(&fam->samples[i], src))
            return true;
    return false;
}

/* True when a family named name of this type could be added to out with all its samples:
 * neither the name nor a suffixed sample name it would own is taken. */
static bool name_free(const struct exp_families *out, const char *name, enum exp_type type)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    char full[EXP_MAX_NAME + 16];
    if (exp_families_resolve(out, name))
        return false;
    for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
        if (type != EXP_HISTOGRAM && !(type == EXP_SUMMARY && k > 0))
            continue;
        snprintf(full, sizeof full, "%s%s", name, suffixes[k]);
        if (exp_families_find(out, full))
            return false;
    }
    return true;
}

/* Copy the selected samples of src_fam into out as family std: renamed, suffix kept,
 * selector label dropped. Skipped (0) when the name is taken. */
static int emit(struct exp_families *out, const char *std, const char *help,
                const struct exp_family *src_fam, const struct exp_source *src)
{
    struct exp_label labels[EXP_MAX_LABELS];
    char text[512], name[EXP_MAX_NAME + 64];
    struct exp_family *fam;
    size_t base = strlen(src_fam->name);
    int rc;

    if (!name_free(out, std, src_fam->type))
        return 0;
    snprintf(text, sizeof text, "%s Source: %s.", help, src_fam->name);
    if ((rc = exp_family_add(out, std, src_fam->type, text, &fam)) < 0)
        return rc;
    for (size_t i = 0; i < src_fam->nsamples; i++) {
        const struct exp_sample *s = &src_fam->samples[i];
        size_t nl = 0;
        if (!selected(s, src))
            continue;
        for (size_t k = 0; k < s->nlabels; k++)
            if (!src->sel_label || strcmp(s->labels[k].name, src->sel_label) != 0)
                labels[nl++] = s->labels[k];
        /* Every sample name of a family is its name plus an optional suffix. */
        snprintf(name, sizeof name, "%s%s", std, s->name + base);
        if ((rc = exp_sample_add(out, fam, name, labels, nl, s->value, s->has_ts, s->ts_ms)) < 0)
            return rc;
    }
    return 0;
}

/* name minus a trailing "_total" on counters, for the "<base>_created" companion. */
static void created_name(char *dst, size_t cap, const char *name, enum exp_type type)
{
    size_t n = strlen(name);
    if (type == EXP_COUNTER && n > 6 && strcmp(name + n - 6, "_total") == 0)
        n -= 6;
    snprintf(dst, cap, "%.*s_created", (int)n, name);
}

/* The `_created` gauge that goes with a counter, histogram or summary source, if any. */
static int emit_created(struct exp_families *out, const struct exp_families *in, const char *std,
                        const struct exp_family *src_fam, const struct exp_source *src)
{
    char src_name[EXP_MAX_NAME + 16], std_name[EXP_MAX_NAME + 16], help[512];
    const struct exp_family *created;

    if (src_fam->type != EXP_COUNTER && src_fam->type != EXP_HISTOGRAM &&
        src_fam->type != EXP_SUMMARY)
        return 0;
    created_name(src_name, sizeof src_name, src_fam->name, src_fam->type);
    created = exp_families_find(in, src_name);
    if (!created || (created->type != EXP_GAUGE && created->type != EXP_UNTYPED) ||
        !any_selected(created, src))
        return 0;
    created_name(std_name, sizeof std_name, std, src_fam->type);
    snprintf(help, sizeof help, "Unix time at which %s started counting.", std);
    return emit(out, std_name, help, created, src);
}

static int apply_rule(struct exp_families *out, const struct exp_families *in,
                      const struct exp_rule *rule)
{
    const char *help = exp_std_help(rule->std);
    if (exp_families_resolve(out, rule->std))
        return 0; /* the engine already exposes it */
    for (size_t k = 0; k < EXP_RULE_MAX_SOURCES && rule->src[k].family; k++) {
        const struct exp_source *src = &rule->src[k];
        const struct exp_family *fam = exp_families_find(in, src->family);
        int rc;
        if (!fam || !any_selected(fam, src))
            continue;
        if ((rc = emit(out, rule->std, help ? help : "", fam, src)) < 0)
            return rc;
        return emit_created(out, in, rule->std, fam, src);
    }
    return 0;
}

int exp_transform(const struct exp_families *in, const char *engine, struct exp_families *out,
                  char *err, size_t errlen)
{
    const struct exp_engine *eng = exp_engine_find(engine);
    int rc = 0;

    exp_families_init(out);
    if (err && errlen)
        err[0] = '\0';
    for (size_t i = 0; rc == 0 && i < in->n; i++)
        if ((rc = exp_family_copy(out, &in->fam[i])) < 0 && err && errlen)
            snprintf(err, errlen, "copying family \"%s\": %s", in->fam[i].name, strerror(-rc));
    for (size_t i = 0; rc == 0 && eng && i < eng->nrules; i++)
        if ((rc = apply_rule(out, in, &eng->rules[i])) < 0 && err && errlen)
            snprintf(err, errlen, "adding %s: %s", eng->rules[i].std, strerror(-rc));
    if (rc < 0) {
        exp_families_free(out);
        return rc;
    }
    if (!eng) {
        if (err && errlen)
            snprintf(err, errlen,
                     "unknown inference engine \"%.64s\"; metrics pass through unchanged",
                     engine ? engine : "(none)");
        return EXP_WARN_UNKNOWN_ENGINE;
    }
    return 0;
}
