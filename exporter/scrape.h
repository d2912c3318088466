/* scrape.h - the body of GET /metrics: the engine's metrics, standardised, then the runtime's
 * own (SPEC §6).
 *
 * A render GETs INFERENCE_ENGINE_ENDPOINT + METRIC_SCRAPE_PATH with libcurl, bounded by
 * METRIC_SCRAPE_TIMEOUT and by the parser's input bound (EXP_MAX_INPUT). Renders that arrive
 * while a request to the engine is in flight wait for it and share its result (single-flight),
 * so a burst of scrapes costs the engine one request.
 *
 * What the body holds:
 *  - transformation on (the default): every engine family as parsed, then the standard
 *    families (rules.h), written by promtext;
 *  - METRICS_ENABLE_TRANSFORMATION=0, METRICS_RAW_PASSTHROUGH_MODE=1, or an engine the rules do
 *    not know (one warning at start): the engine's bytes exactly as received (a final newline
 *    is added when they lack one), provided that they parse as exposition text;
 *  - then the runtime's own families: aibrix_engine_up, aibrix_engine_scrape_duration_seconds
 *    and the registry's. An own family whose name the engine's text already uses is left out
 *    (logged once): the engine's bytes are never altered, and no family appears twice.
 * An engine that is down, slow, answers an error status, garbage or more than EXP_MAX_INPUT
 * bytes gives a body with only the runtime's own families and aibrix_engine_up 0, within the
 * timeout plus a small margin. */
#ifndef EXP_SCRAPE_H
#define EXP_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>

#include "promtext.h"

#define EXP_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct exp_scrape_config {
    const char *engine;   /* INFERENCE_ENGINE, default "vllm" */
    const char *endpoint; /* INFERENCE_ENGINE_ENDPOINT, default "http://localhost:8000" */
    const char *path;     /* METRIC_SCRAPE_PATH, default "/metrics" */
    double timeout_s;     /* METRIC_SCRAPE_TIMEOUT, default 1; fractions allowed */
    bool transform;       /* METRICS_ENABLE_TRANSFORMATION and not METRICS_RAW_PASSTHROUGH_MODE */
};

/* Fill cfg from the environment (SPEC §1); the strings belong to the environment. A value
 * that does not parse, or a timeout outside (0, 600], is logged and the default used. */
void exp_scrape_config_from_env(struct exp_scrape_config *cfg);

struct exp_scraper;

/* The strings of cfg are copied. Logs the scrape URL, and a warning for an unknown engine.
 * NULL with err set on failure (bad URL, out of memory). */
struct exp_scraper *exp_scraper_new(const struct exp_scrape_config *cfg, char *err, size_t errlen);
/* No render may be running. */
void exp_scraper_free(struct exp_scraper *s);

/* Append the /metrics body to out. Thread-safe. Returns 0 or -ENOMEM. */
int exp_scraper_render(struct exp_scraper *s, struct exp_buf *out);

#endif
