/* rules.h - the standard metric families (SPEC §6) and, per engine, where each comes from.
 *
 * The table is data (rules.c): one row per standard family and engine, listing source family
 * names in priority order. The first source that exists in the scrape with at least one
 * sample matching its selector is used; the others are fallbacks (vLLM kv_cache_usage_perc,
 * else gpu_cache_usage_perc). Source names are exact family names as the engine writes them,
 * prefix and `_total` included, so counter rules match (the Python runtime's parser stripped
 * `_total` and never matched them, SPEC §8).
 *
 * A standard family copies its source: same type, the same samples with the source name
 * replaced by the standard one and the suffix kept (x_bucket -> aibrix:y_bucket, _sum,
 * _count), the same labels and values and timestamps. Decisions:
 *  - Selector labels (request_type="waiting") are dropped from the standard series: they only
 *    pick rows out of a shared engine family, and keeping them would make aibrix:queue_size
 *    carry request_type="waiting" on one engine and not on the others. Other labels stay.
 *  - `_created`: in format 0.0.4 prometheus_client writes a counter's or histogram's creation
 *    time as a separate gauge family (x_created next to x_total, or next to histogram x).
 *    When the source has one, the standard family gets one too: aibrix:prompt_tokens_created
 *    next to aibrix:prompt_tokens_total, with the same selector and labels.
 *  - HELP of a standard family: the table's text plus "Source: <engine family>."
 *  - A standard family is not added when the scrape already has a family with that name, or
 *    when one of its sample names is already taken (no family is ever emitted twice).
 *  - trtllm: besides trtllm-serve's unprefixed names (SPEC) and Triton's nv_trt_llm_* rows,
 *    the same metrics under the `trtllm_` prefix that newer TensorRT-LLM releases use are
 *    accepted as fallbacks. */
#ifndef EXP_RULES_H
#define EXP_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "promtext.h"

#define EXP_RULE_MAX_SOURCES 4

/* exp_transform's warning: the engine is not in the table; out holds the input unchanged and
 * err says so. The caller logs it and serves the metrics anyway (SPEC §1). */
#define EXP_WARN_UNKNOWN_ENGINE 1

struct exp_source {
    const char *family;    /* exact family name in the engine's output */
    const char *sel_label; /* NULL, or only samples with sel_label="sel_value" are taken */
    const char *sel_value;
};

struct exp_rule {
    const char *std;                             /* "aibrix:queue_size" */
    struct exp_source src[EXP_RULE_MAX_SOURCES]; /* priority order, unused ones zero */
};

struct exp_engine {
    const char *name; /* INFERENCE_ENGINE value, compared ignoring case */
    const struct exp_rule *rules;
    size_t nrules;
};

/* The engine's rules, or NULL for an unknown (or NULL) name. */
const struct exp_engine *exp_engine_find(const char *name);
bool exp_engine_known(const char *name);

/* The HELP text of a standard family (without the "Source:" part), or NULL for a name that is
 * not standard. */
const char *exp_std_help(const char *std);

/* Build out (overwritten, need not be initialised) from in: every family of in unchanged and
 * in order, then the standard families the engine's rules produce. Returns 0;
 * EXP_WARN_UNKNOWN_ENGINE (out = copy of in, err has the warning); or -ENOMEM / -EINVAL with
 * err set and out empty. The caller frees out with exp_families_free in the first two cases. */
int exp_transform(const struct exp_families *in, const char *engine, struct exp_families *out,
                  char *err, size_t errlen);

#endif
