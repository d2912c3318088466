/* registry.h - the runtime's own metrics: counters, gauges and histograms that every room
 * writes to without a lock, written out as exposition text on every scrape.
 *
 * The registry is process-wide (the one global the rooms share, DESIGN.md). Families are
 * registered once at start and never removed while the process serves; every update after
 * that is a few C11 atomic operations:
 *  - a counter is an unsigned 64-bit integer (everything we count is a whole number);
 *  - a gauge is a double kept as its bit pattern;
 *  - a histogram keeps one count per bucket and its sum as a double (compare-and-swap).
 * A family with labels keeps a fixed table of series, one per combination of label values,
 * claimed on first use (a compare-and-swap on the slot's state). Label values must come from
 * bounded sets chosen by the caller (route paths, not raw URLs); when the table is full, the
 * update goes to one overflow series whose label values are all "other", so totals stay right.
 *
 * A "provided" family stores nothing: its provider is called on every write and emits the
 * current values. That is how numbers owned elsewhere (the filesystem's counters, per-mount
 * progress) appear without copying them on every change.
 *
 * Writes read the atomics one by one: a histogram's _count is the sum of the bucket counts
 * read, so buckets, +Inf and _count always agree; _sum may lag by an observation in flight. */
#ifndef EXP_REGISTRY_H
#define EXP_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "promtext.h"

#define EXP_REG_MAX_FAMILIES 64
#define EXP_REG_MAX_LABELS 4
#define EXP_REG_MAX_BOUNDS 32
#define EXP_REG_VALUE_MAX 96       /* bytes of a stored label value, with its NUL */
#define EXP_REG_DEFAULT_SERIES 128 /* series of a labelled family when max_series is 0 */
#define EXP_REG_OVERFLOW "other"   /* label value of the overflow series */

struct exp_metric;
struct exp_emitter;

/* Called on every write of a provided family: emit its series with exp_emit. */
typedef void (*exp_provider_fn)(void *ctx, struct exp_emitter *e);

struct exp_metric_def {
    const char *name; /* a valid metric name; counters end in _total by convention */
    const char *help;
    enum exp_type type; /* EXP_COUNTER, EXP_GAUGE or EXP_HISTOGRAM (not provided) */
    const char *labels[EXP_REG_MAX_LABELS]; /* label names in order; unused ones NULL */
    const double *bounds; /* histograms: upper bounds, strictly increasing; +Inf is implied */
    size_t nbounds;
    size_t max_series;        /* labelled stored families: table size (0: default) */
    exp_provider_fn provider; /* non-NULL: a provided family (counter or gauge) */
    void *provider_ctx;
};

/* Register a family; its strings are copied. Returns the family, or NULL with err set when
 * the definition is invalid, the name is taken or the registry is full. Registration is
 * serialised internally and may run while other threads write, but families are meant to
 * be registered at start. */
struct exp_metric *exp_metric_register(const struct exp_metric_def *def, char *err, size_t errlen);

/* Updates; values holds one string per label of the family, in order (NULL when it has
 * none). m may be NULL (the update is dropped), so callers need not check registration. */
void exp_counter_add(struct exp_metric *m, const char *const *values, uint64_t n);
void exp_gauge_set(struct exp_metric *m, const char *const *values, double v);
void exp_gauge_add(struct exp_metric *m, const char *const *values, double d);
void exp_histogram_observe(struct exp_metric *m, const char *const *values, double v);

/* Inside a provider: one series of the family being written. */
void exp_emit(struct exp_emitter *e, const char *const *values, double v);

/* Append every family that has at least one series to out, in registration order. A series
 * that the model refuses (a label value that is not UTF-8) is skipped. Returns 0 or
 * -ENOMEM. */
int exp_registry_write(struct exp_families *out);

/* Forget every family (tests; process end). Nothing may use the registry meanwhile, and
 * pointers returned before are invalid afterwards. */
void exp_registry_reset(void);

/* The AIBrix-compatible metrics the Python runtime exposes, registered by
 * exp_api_metrics_register:
 *   aibrix:info_info{version,engine,engine_version} 1
 *   aibrix:api_request_total{method,endpoint,status}        counter
 *   aibrix:api_request_latency{method,endpoint,status}      histogram, .1 .2 .5 1 2 5 s
 * Returns 0 or -EEXIST/-ENOSPC/-EINVAL with err set. */
int exp_api_metrics_register(const char *version, const char *engine, const char *engine_version,
                             char *err, size_t errlen);
/* Count one answered API request. endpoint is the route's path ("other" for a path no route
 * serves), never the raw URL; a method outside the HTTP standard set is counted as "other". */
void exp_api_observe(const char *method, const char *endpoint, int status, double seconds);

#endif
