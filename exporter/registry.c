/* registry.c - the runtime's own metrics, lock-free on the update path (see registry.h).
 *
 * Invariants:
 *  - reg.fam[0 .. reg.n) are complete families; reg.n is published with release order after
 *    the family it counts is fully built, and readers load it with acquire order.
 *  - A series slot goes FREE -> FILLING -> READY exactly once (labelled families) and its label
 *    values never change once READY. Unlabelled families have one slot, READY from the start.
 *    The overflow slot (index cap) has its values preset and turns READY on first use.
 *  - Histogram bucket counts are per bucket (not cumulative); the writer accumulates them. */
#include "registry.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/hash.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY };

struct exp_series {
    atomic_int state;
    char values[EXP_REG_MAX_LABELS][EXP_REG_VALUE_MAX];
    atomic_uint_fast64_t value;    /* counter: the count; gauge: the double's bits */
    atomic_uint_fast64_t sum;      /* histogram: the sum's bits */
    atomic_uint_fast64_t *buckets; /* histogram: nbounds + 1 counts, the last one +Inf */
};

struct exp_metric {
    char *name, *help;
    enum exp_type type;
    char *labels[EXP_REG_MAX_LABELS];
    size_t nlabels;
    double bounds[EXP_REG_MAX_BOUNDS];
    size_t nbounds;
    exp_provider_fn provider;
    void *provider_ctx;
    struct exp_series *series; /* cap slots, then the overflow slot (labelled families) */
    size_t cap;
    atomic_uint_fast64_t *bucket_store;
};

struct exp_emitter {
    struct exp_families *out;
    const struct exp_metric *m;
    struct exp_family *fam; /* added on the first sample */
    int rc;                 /* -ENOMEM stops the write */
};

static struct {
    pthread_mutex_t lock; /* registration and reset */
    struct exp_metric *fam[EXP_REG_MAX_FAMILIES];
    atomic_size_t n;
    struct exp_families names; /* every registered family without samples: name checks */
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic(struct exp_metric *) api_requests, api_latency;

static uint64_t bits_of(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double double_of(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static void metric_free(struct exp_metric *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->help);
    for (size_t i = 0; i < m->nlabels; i++)
        free(m->labels[i]);
    free(m->series);
    free(m->bucket_store);
    free(m);
}

static int def_error(char *err, size_t errlen, int rc, const char *name, const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "metric %s: %s", name ? name : "(null)", why);
    return rc;
}

/* Check what promtext cannot: label names, bounds, the type and provider combination. */
static int check_def(const struct exp_metric_def *d, size_t *nlabels, char *err, size_t errlen)
{
    size_t n = 0;
    if (!d->name || !exp_metric_name_valid(d->name, strlen(d->name)))
        return def_error(err, errlen, -EINVAL, d->name, "invalid name");
    if (d->type != EXP_COUNTER && d->type != EXP_GAUGE && d->type != EXP_HISTOGRAM)
        return def_error(err, errlen, -EINVAL, d->name, "type must be counter, gauge, histogram");
    if (d->provider && d->type == EXP_HISTOGRAM)
        return def_error(err, errlen, -EINVAL, d->name, "a histogram cannot be provided");
    while (n < EXP_REG_MAX_LABELS && d->labels[n])
        n++;
    for (size_t i = 0; i < n; i++) {
        if (!exp_label_name_valid(d->labels[i], strlen(d->labels[i])) ||
            strncmp(d->labels[i], "__", 2) == 0)
            return def_error(err, errlen, -EINVAL, d->name, "invalid label name");
        if (d->type == EXP_HISTOGRAM && strcmp(d->labels[i], "le") == 0)
            return def_error(err, errlen, -EINVAL, d->name, "le is reserved for buckets");
        for (size_t k = 0; k < i; k++)
            if (strcmp(d->labels[i], d->labels[k]) == 0)
                return def_error(err, errlen, -EINVAL, d->name, "label given twice");
    }
    for (size_t i = n; i < EXP_REG_MAX_LABELS; i++)
        if (d->labels[i])
            return def_error(err, errlen, -EINVAL, d->name, "labels after a NULL");
    if (d->type == EXP_HISTOGRAM) {
        if (d->nbounds == 0 || d->nbounds > EXP_REG_MAX_BOUNDS || !d->bounds)
            return def_error(err, errlen, -EINVAL, d->name, "histogram needs 1-32 bounds");
        for (size_t i = 0; i < d->nbounds; i++)
            if (!isfinite(d->bounds[i]) || (i > 0 && !(d->bounds[i] > d->bounds[i - 1])))
                return def_error(err, errlen, -EINVAL, d->name,
                                 "bounds must be finite and increasing");
    }
    *nlabels = n;
    return 0;
}

static struct exp_metric *metric_new(const struct exp_metric_def *d, size_t nlabels)
{
    struct exp_metric *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->name = strdup(d->name);
    m->help = strdup(d->help ? d->help : "");
    m->type = d->type;
    m->nlabels = nlabels;
    m->nbounds = d->nbounds;
    m->provider = d->provider;
    m->provider_ctx = d->provider_ctx;
    bool ok = m->name && m->help;
    for (size_t i = 0; i < nlabels; i++)
        ok &= (m->labels[i] = strdup(d->labels[i])) != NULL;
    if (d->type == EXP_HISTOGRAM)
        memcpy(m->bounds, d->bounds, d->nbounds * sizeof *d->bounds);
    if (!ok) {
        metric_free(m);
        return NULL;
    }
    if (d->provider)
        return m; /* nothing stored */

    m->cap = nlabels ? (d->max_series ? d->max_series : EXP_REG_DEFAULT_SERIES) : 1;
    size_t slots = m->cap + (nlabels ? 1 : 0);
    m->series = calloc(slots, sizeof *m->series);
    if (d->type == EXP_HISTOGRAM)
        m->bucket_store = calloc(slots * (d->nbounds + 1), sizeof *m->bucket_store);
    if (!m->series || (d->type == EXP_HISTOGRAM && !m->bucket_store)) {
        metric_free(m);
        return NULL;
    }
    for (size_t i = 0; i < slots; i++) {
        atomic_init(&m->series[i].state, SLOT_FREE);
        if (m->bucket_store)
            m->series[i].buckets = m->bucket_store + i * (d->nbounds + 1);
    }
    if (nlabels == 0)
        atomic_init(&m->series[0].state, SLOT_READY);
    else
        for (size_t i = 0; i < nlabels; i++)
            snprintf(m->series[m->cap].values[i], EXP_REG_VALUE_MAX, "%s", EXP_REG_OVERFLOW);
    return m;
}

struct exp_metric *exp_metric_register(const struct exp_metric_def *def, char *err, size_t errlen)
{
    struct exp_family *fam;
    struct exp_metric *m = NULL;
    size_t nlabels = 0;
    int rc;

    if (check_def(def, &nlabels, err, errlen) != 0)
        return NULL;
    pthread_mutex_lock(&reg.lock);
    size_t n = atomic_load_explicit(&reg.n, memory_order_relaxed);
    if (n == EXP_REG_MAX_FAMILIES) {
        def_error(err, errlen, -ENOSPC, def->name, "the registry is full");
        goto out;
    }
    /* the model applies the exposition format's naming rules, grouping conflicts included */
    rc = exp_family_add(&reg.names, def->name, def->type, NULL, &fam);
    if (rc != 0) {
        def_error(err, errlen, rc, def->name,
                  rc == -EEXIST ? "name taken by another family" : strerror(-rc));
        goto out;
    }
    m = metric_new(def, nlabels);
    if (!m) {
        /* the name stays reserved in reg.names: harmless, and only on ENOMEM at start */
        def_error(err, errlen, -ENOMEM, def->name, "out of memory");
        goto out;
    }
    reg.fam[n] = m;
    atomic_store_explicit(&reg.n, n + 1, memory_order_release);
out:
    pthread_mutex_unlock(&reg.lock);
    return m;
}

void exp_registry_reset(void)
{
    pthread_mutex_lock(&reg.lock);
    size_t n = atomic_load_explicit(&reg.n, memory_order_relaxed);
    atomic_store_explicit(&reg.n, 0, memory_order_release);
    atomic_store(&api_requests, NULL);
    atomic_store(&api_latency, NULL);
    for (size_t i = 0; i < n; i++) {
        metric_free(reg.fam[i]);
        reg.fam[i] = NULL;
    }
    exp_families_free(&reg.names);
    pthread_mutex_unlock(&reg.lock);
}

/* FNV-1a over the values, each followed by a 0xff separator (not valid in UTF-8 text). */
static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = CM_FNV1A_INIT;
    for (size_t i = 0; i < n; i++)
        h = cm_fnv1a(cm_fnv1a(h, values[i], strlen(values[i])), "\xff", 1);
    return h;
}

static bool same_values(const struct exp_series *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    return true;
}

static struct exp_series *overflow(struct exp_metric *m)
{
    struct exp_series *s = &m->series[m->cap];
    /* its values were preset before the family was published */
    if (atomic_load_explicit(&s->state, memory_order_relaxed) != SLOT_READY)
        atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
    return s;
}

/* The series for these label values, claimed on first use. */
static struct exp_series *series_for(struct exp_metric *m, const char *const *values)
{
    bool all_overflow = true;
    if (m->nlabels == 0)
        return &m->series[0];
    if (!values)
        return overflow(m);
    for (size_t i = 0; i < m->nlabels; i++) {
        if (!values[i] || strlen(values[i]) >= EXP_REG_VALUE_MAX)
            return overflow(m);
        all_overflow &= strcmp(values[i], EXP_REG_OVERFLOW) == 0;
    }
    if (all_overflow)
        return overflow(m); /* one series for that key, never two */
    uint64_t h = hash_values(values, m->nlabels);
    for (size_t k = 0; k < m->cap; k++) {
        struct exp_series *s = &m->series[(h + k) % m->cap];
        int st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == SLOT_FREE) {
            int expect = SLOT_FREE;
            if (atomic_compare_exchange_strong_explicit(
                    &s->state, &expect, SLOT_FILLING, memory_order_acquire, memory_order_acquire)) {
                for (size_t i = 0; i < m->nlabels; i++)
                    snprintf(s->values[i], EXP_REG_VALUE_MAX, "%s", values[i]);
                atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
                return s;
            }
            st = expect;
        }
        /* another thread is copying its values in: a few hundred bytes at most */
        while (st == SLOT_FILLING) {
            sched_yield();
            st = atomic_load_explicit(&s->state, memory_order_acquire);
        }
        if (same_values(s, values, m->nlabels))
            return s;
    }
    return overflow(m);
}

void exp_counter_add(struct exp_metric *m, const char *const *values, uint64_t n)
{
    if (!m || m->provider || m->type != EXP_COUNTER)
        return;
    atomic_fetch_add_explicit(&series_for(m, values)->value, n, memory_order_relaxed);
}

void exp_gauge_set(struct exp_metric *m, const char *const *values, double v)
{
    if (!m || m->provider || m->type != EXP_GAUGE)
        return;
    atomic_store_explicit(&series_for(m, values)->value, bits_of(v), memory_order_relaxed);
}

static void add_double(atomic_uint_fast64_t *cell, double d)
{
    uint_fast64_t old = atomic_load_explicit(cell, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(cell, &old, bits_of(double_of(old) + d),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void exp_gauge_add(struct exp_metric *m, const char *const *values, double d)
{
    if (!m || m->provider || m->type != EXP_GAUGE)
        return;
    add_double(&series_for(m, values)->value, d);
}

void exp_histogram_observe(struct exp_metric *m, const char *const *values, double v)
{
    if (!m || m->type != EXP_HISTOGRAM || isnan(v))
        return; /* NaN has no bucket */
    struct exp_series *s = series_for(m, values);
    size_t b = 0;
    while (b < m->nbounds && v > m->bounds[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    add_double(&s->sum, v);
}

/* Writing. */

static int emit_sample(struct exp_emitter *e, const char *suffix, const char *const *values,
                       const char *le, double v)
{
    struct exp_label labels[EXP_REG_MAX_LABELS + 1];
    char name[EXP_MAX_NAME + 16];
    size_t n = 0;
    int rc;

    if (e->rc)
        return e->rc;
    if (!e->fam) {
        rc = exp_family_add(e->out, e->m->name, e->m->type, e->m->help, &e->fam);
        if (rc != 0)
            return e->rc = rc;
    }
    for (; n < e->m->nlabels; n++)
        labels[n] = (struct exp_label){e->m->labels[n], values[n]};
    if (le)
        labels[n++] = (struct exp_label){"le", le};
    snprintf(name, sizeof name, "%s%s", e->m->name, suffix);
    rc = exp_sample_add(e->out, e->fam, name, labels, n, v, false, 0);
    if (rc == -ENOMEM)
        e->rc = rc;
    return rc; /* -EINVAL: this series is skipped, the family goes on */
}

void exp_emit(struct exp_emitter *e, const char *const *values, double v)
{
    if (e->m->nlabels && !values)
        return;
    emit_sample(e, "", values, NULL, v);
}

static void write_histogram(struct exp_emitter *e, struct exp_series *s, const char *const *vals)
{
    char le[EXP_VALUE_MAX];
    uint64_t cum = 0;
    for (size_t b = 0; b <= e->m->nbounds; b++) {
        cum += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        if (b < e->m->nbounds)
            exp_format_value(e->m->bounds[b], le);
        else
            snprintf(le, sizeof le, "+Inf");
        if (emit_sample(e, "_bucket", vals, le, (double)cum) != 0)
            return; /* a half-written histogram would be invalid: skip the rest */
    }
    double sum = double_of(atomic_load_explicit(&s->sum, memory_order_relaxed));
    if (emit_sample(e, "_sum", vals, NULL, sum) == 0)
        emit_sample(e, "_count", vals, NULL, (double)cum);
}

static void write_stored(struct exp_emitter *e, struct exp_metric *m)
{
    size_t slots = m->cap + (m->nlabels ? 1 : 0);
    for (size_t i = 0; i < slots && !e->rc; i++) {
        struct exp_series *s = &m->series[i];
        const char *vals[EXP_REG_MAX_LABELS];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY)
            continue;
        for (size_t k = 0; k < m->nlabels; k++)
            vals[k] = s->values[k];
        if (m->type == EXP_HISTOGRAM)
            write_histogram(e, s, vals);
        else if (m->type == EXP_COUNTER)
            emit_sample(e, "", vals, NULL,
                        (double)atomic_load_explicit(&s->value, memory_order_relaxed));
        else
            emit_sample(e, "", vals, NULL,
                        double_of(atomic_load_explicit(&s->value, memory_order_relaxed)));
    }
}

int exp_registry_write(struct exp_families *out)
{
    size_t n = atomic_load_explicit(&reg.n, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        struct exp_emitter e = {.out = out, .m = reg.fam[i]};
        if (e.m->provider)
            e.m->provider(e.m->provider_ctx, &e);
        else
            write_stored(&e, reg.fam[i]);
        if (e.rc == -ENOMEM)
            return -ENOMEM;
        /* -EEXIST: out already had a family of that name; ours is left out */
    }
    return 0;
}

/* The AIBrix-compatible API metrics. */

static const double api_bounds[] = {0.1, 0.2, 0.5, 1, 2, 5};

int exp_api_metrics_register(const char *version, const char *engine, const char *engine_version,
                             char *err, size_t errlen)
{
    static const struct exp_metric_def info = {
        .name = "aibrix:info_info",
        .help = "AIBrix runtime information: its version and the inference engine it serves. "
                "Always 1.",
        .type = EXP_GAUGE,
        .labels = {"version", "engine", "engine_version"},
        .max_series = 1,
    };
    static const struct exp_metric_def requests = {
        .name = "aibrix:api_request_total",
        .help = "AIBrix runtime HTTP API requests answered, by method, endpoint (the route; "
                "other for unknown paths) and status code.",
        .type = EXP_COUNTER,
        .labels = {"method", "endpoint", "status"},
        .max_series = 256,
    };
    static const struct exp_metric_def latency = {
        .name = "aibrix:api_request_latency",
        .help = "Seconds the AIBrix runtime took to answer an HTTP API request, from its "
                "arrival to its response, by method, endpoint and status code.",
        .type = EXP_HISTOGRAM,
        .labels = {"method", "endpoint", "status"},
        .bounds = api_bounds,
        .nbounds = sizeof api_bounds / sizeof api_bounds[0],
        .max_series = 256,
    };
    struct exp_metric *mi = exp_metric_register(&info, err, errlen);
    struct exp_metric *mr = mi ? exp_metric_register(&requests, err, errlen) : NULL;
    struct exp_metric *ml = mr ? exp_metric_register(&latency, err, errlen) : NULL;
    if (!ml)
        return -EINVAL;
    const char *vals[] = {version ? version : "", engine ? engine : "",
                          engine_version ? engine_version : ""};
    exp_gauge_set(mi, vals, 1);
    atomic_store(&api_requests, mr);
    atomic_store(&api_latency, ml);
    return 0;
}

static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "OPTIONS", "CONNECT", "TRACE", "PATCH"};
    for (size_t i = 0; method && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return EXP_REG_OVERFLOW;
}

void exp_api_observe(const char *method, const char *endpoint, int status, double seconds)
{
    char code[16];
    if (status >= 100 && status <= 999)
        snprintf(code, sizeof code, "%d", status);
    else
        snprintf(code, sizeof code, "%s", EXP_REG_OVERFLOW);
    const char *vals[] = {method_label(method), endpoint ? endpoint : EXP_REG_OVERFLOW, code};
    exp_counter_add(atomic_load_explicit(&api_requests, memory_order_acquire), vals, 1);
    exp_histogram_observe(atomic_load_explicit(&api_latency, memory_order_acquire), vals,
                          seconds < 0 ? 0 : seconds);
}
