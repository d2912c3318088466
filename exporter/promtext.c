/* promtext.c - Prometheus text format 0.0.4: the model, the line parser and the writer (see
 * promtext.h for the grouping rule and what is strict or lenient).
 *
 * Shape: every string of a model is bump-allocated from an arena of 64 KiB chunks, so a parse
 * that fails halfway frees everything with one call and a 5,000-series scrape costs a handful
 * of mallocs. Families sit in one array with an open-addressing hash index by name, because
 * each sample line resolves its family. Parsing is line by line on a private copy of the line;
 * names and unescaped label values go to a scratch buffer and are copied into the arena when
 * the sample is added, so the builder's checks are the parser's checks. */
#include "promtext.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/hash.h"

/* ---- arena ---------------------------------------------------------------------------- */

#define ARENA_CHUNK (64u << 10)

struct exp_arena_chunk {
    struct exp_arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

/* n bytes, aligned for any type when align is set. A request too big for a normal chunk gets
 * its own chunk behind the head, so the head's free room is not wasted. */
static void *arena_alloc(struct exp_families *f, size_t n, bool align)
{
    struct exp_arena_chunk *c = f->arena;
    size_t a = _Alignof(max_align_t), at;

    if (n > SIZE_MAX / 4)
        return NULL;
    if (c) {
        at = align ? (c->used + a - 1) & ~(a - 1) : c->used;
        if (at <= c->cap && c->cap - at >= n) {
            c->used = at + n;
            return (char *)c->data + at;
        }
    }
    size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
    struct exp_arena_chunk *nc = malloc(sizeof *nc + cap);
    if (!nc)
        return NULL;
    nc->cap = cap;
    nc->used = n;
    if (cap == n && c) {
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        f->arena = nc;
    }
    return nc->data;
}

static const char *arena_strdup(struct exp_families *f, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = arena_alloc(f, n, false);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- lexical checks --------------------------------------------------------------------- */

static bool is_name_start(unsigned char c, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static bool is_name_char(unsigned char c, bool colon)
{
    return is_name_start(c, colon) || (c >= '0' && c <= '9');
}

static size_t scan_name(const char *s, const char *end, bool colon)
{
    size_t n = 0;
    if (s < end && is_name_start((unsigned char)s[0], colon))
        for (n = 1; s + n < end && is_name_char((unsigned char)s[n], colon); n++)
            ;
    return n;
}

bool exp_metric_name_valid(const char *s, size_t n)
{
    return n > 0 && n <= EXP_MAX_NAME && scan_name(s, s + n, true) == n;
}

bool exp_label_name_valid(const char *s, size_t n)
{
    return n > 0 && n <= EXP_MAX_NAME && scan_name(s, s + n, false) == n;
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4;
        else
            return false;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        else if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

/* A float as Go's parser takes it: decimal with optional fraction and exponent, or Inf,
 * Infinity (any case, optional sign), NaN (any case, no sign). No hex, no underscores.
 * s[n] must be readable and is the end of the token (NUL or a blank). Returns 0, -EINVAL, or
 * -ERANGE when the value does not fit a double. */
static int parse_float_tok(const char *s, size_t n, double *out)
{
    static const struct {
        const char *word;
        double value;
        bool sign_ok;
    } specials[] = {
        {"inf", INFINITY, true},
        {"infinity", INFINITY, true},
        {"nan", NAN, false},
    };
    size_t i = 0, digits = 0;
    bool neg = n > 0 && s[0] == '-', sign = n > 0 && (s[0] == '+' || s[0] == '-');

    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
        size_t wl = strlen(specials[k].word), off = sign ? 1 : 0;
        if (n == wl + off && strncasecmp(s + off, specials[k].word, wl) == 0 &&
            (!sign || specials[k].sign_ok)) {
            *out = neg ? -specials[k].value : specials[k].value;
            return 0;
        }
    }
    if (sign)
        i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (digits == 0)
        return -EINVAL;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t exp_digits = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            exp_digits++;
        if (exp_digits == 0)
            return -EINVAL;
    }
    if (i != n)
        return -EINVAL;
    /* The syntax is checked, so strtod stops exactly at s + n. */
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE && isinf(v))
        return -ERANGE;
    *out = v;
    return 0;
}

static int parse_float_str(const char *s, double *out)
{
    return parse_float_tok(s, strlen(s), out);
}

/* [+-]?[0-9]+ fitting int64. s[n] is the token's end (NUL or a blank). */
static int parse_int64_tok(const char *s, size_t n, int64_t *out)
{
    size_t i = n > 0 && (s[0] == '+' || s[0] == '-') ? 1 : 0;
    if (i == n)
        return -EINVAL;
    for (size_t k = i; k < n; k++)
        if (s[k] < '0' || s[k] > '9')
            return -EINVAL;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return -ERANGE;
    *out = v;
    return 0;
}

/* ---- the model: families, index, samples ------------------------------------------------ */

const char *exp_type_name(enum exp_type t)
{
    static const char *const names[] = {
        [EXP_UNTYPED] = "untyped",     [EXP_COUNTER] = "counter", [EXP_GAUGE] = "gauge",
        [EXP_HISTOGRAM] = "histogram", [EXP_SUMMARY] = "summary",
    };
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "untyped";
}

/* Suffixed sample names and the family types that own them (Go's text parser). */
static const struct {
    const char *suffix;
    bool histogram, summary;
} owned_suffixes[] = {
    {"_bucket", true, false},
    {"_sum", true, true},
    {"_count", true, true},
};
#define N_SUFFIXES (sizeof owned_suffixes / sizeof owned_suffixes[0])

static bool type_owns(enum exp_type t, size_t k)
{
    return (t == EXP_HISTOGRAM && owned_suffixes[k].histogram) ||
           (t == EXP_SUMMARY && owned_suffixes[k].summary);
}

static uint64_t name_hash(const char *s, size_t n)
{
    return cm_fnv1a(CM_FNV1A_INIT, s, n);
}

static struct exp_family *find_n(const struct exp_families *f, const char *name, size_t n)
{
    if (!f->index_cap)
        return NULL;
    size_t mask = f->index_cap - 1;
    for (size_t h = name_hash(name, n) & mask;; h = (h + 1) & mask) {
        uint32_t slot = f->index[h];
        if (!slot)
            return NULL;
        struct exp_family *fam = &f->fam[slot - 1];
        if (strncmp(fam->name, name, n) == 0 && fam->name[n] == '\0')
            return fam;
    }
}

static void index_put(struct exp_families *f, size_t pos)
{
    const char *name = f->fam[pos].name;
    size_t mask = f->index_cap - 1, h = name_hash(name, strlen(name)) & mask;
    while (f->index[h])
        h = (h + 1) & mask;
    f->index[h] = (uint32_t)(pos + 1);
}

static int index_reserve(struct exp_families *f, size_t want)
{
    if (want * 2 <= f->index_cap)
        return 0;
    if (want >= UINT32_MAX / 4)
        return -ENOMEM;
    size_t cap = f->index_cap ? f->index_cap : 64;
    while (cap < want * 2)
        cap *= 2;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return -ENOMEM;
    free(f->index);
    f->index = idx;
    f->index_cap = cap;
    for (size_t i = 0; i < f->n; i++)
        index_put(f, i);
    return 0;
}

struct exp_family *exp_families_find(const struct exp_families *f, const char *name)
{
    return find_n(f, name, strlen(name));
}

struct exp_family *exp_families_resolve(const struct exp_families *f, const char *name)
{
    size_t n = strlen(name);
    struct exp_family *fam = find_n(f, name, n);
    if (fam)
        return fam;
    for (size_t k = 0; k < N_SUFFIXES; k++) {
        size_t sl = strlen(owned_suffixes[k].suffix);
        if (n <= sl || strcmp(name + n - sl, owned_suffixes[k].suffix) != 0)
            continue;
        fam = find_n(f, name, n - sl);
        if (fam && type_owns(fam->type, k))
            return fam;
    }
    return NULL;
}

void exp_families_init(struct exp_families *f)
{
    memset(f, 0, sizeof *f);
}

void exp_families_free(struct exp_families *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->fam[i].samples);
    free(f->fam);
    free(f->index);
    for (struct exp_arena_chunk *c = f->arena, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    exp_families_init(f);
}

/* Append a family without the conflict checks (the caller did them). */
static int family_push(struct exp_families *f, const char *name, enum exp_type type,
                       const char *help, struct exp_family **out)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct exp_family *grown = realloc(f->fam, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        f->fam = grown;
        f->cap = cap;
    }
    if (index_reserve(f, f->n + 1) < 0)
        return -ENOMEM;
    struct exp_family *fam = &f->fam[f->n];
    memset(fam, 0, sizeof *fam);
    fam->type = type;
    if (!(fam->name = arena_strdup(f, name)) || (help && !(fam->help = arena_strdup(f, help))))
        return -ENOMEM;
    index_put(f, f->n);
    f->n++;
    *out = fam;
    return 0;
}

int exp_family_add(struct exp_families *f, const char *name, enum exp_type type, const char *help,
                   struct exp_family **out)
{
    if (!exp_metric_name_valid(name, strlen(name)) || (unsigned)type > EXP_SUMMARY)
        return -EINVAL;
    /* A name a reader would fold into an earlier family cannot start a new one. A histogram
     * or summary declared after x_count/x_sum/x_bucket families is fine: those come first in
     * the output and keep their samples by exact name. */
    if (exp_families_resolve(f, name))
        return -EEXIST;
    return family_push(f, name, type, help, out);
}

/* Why a sample may not join fam, or NULL. Shared by the parser and exp_sample_add. */
static const char *sample_problem(const struct exp_families *f, const struct exp_family *fam,
                                  const char *name, const struct exp_label *labels, size_t nl)
{
    static const struct {
        enum exp_type type;
        const char *label;
        const char *problem;
    } float_labels[] = {
        {EXP_HISTOGRAM, "le", "expected a float as value of the 'le' label"},
        {EXP_SUMMARY, "quantile", "expected a float as value of the 'quantile' label"},
    };
    if (exp_families_resolve(f, name) != fam)
        return "sample name does not belong to its family";
    if (nl > EXP_MAX_LABELS)
        return "too many labels";
    for (size_t i = 0; i < nl; i++) {
        size_t len = strlen(labels[i].name);
        double ignored;
        if (!exp_label_name_valid(labels[i].name, len))
            return "invalid label name";
        if (strcmp(labels[i].name, "__name__") == 0)
            return "label name __name__ is reserved";
        for (size_t j = 0; j < i; j++)
            if (labels[j].name[0] == labels[i].name[0] &&
                strcmp(labels[j].name, labels[i].name) == 0)
                return "duplicate label name";
        if (!utf8_valid((const unsigned char *)labels[i].value, strlen(labels[i].value)))
            return "label value is not valid UTF-8";
        for (size_t k = 0; k < sizeof float_labels / sizeof float_labels[0]; k++)
            if (fam->type == float_labels[k].type &&
                strcmp(labels[i].name, float_labels[k].label) == 0 &&
                parse_float_str(labels[i].value, &ignored) < 0)
                return float_labels[k].problem;
    }
    return NULL;
}

/* Append a checked sample: copies name and labels into the arena. */
static int sample_push(struct exp_families *f, struct exp_family *fam, const char *name,
                       const struct exp_label *labels, size_t nl, double value, bool has_ts,
                       int64_t ts)
{
    if (fam->nsamples == fam->cap) {
        size_t cap = fam->cap ? fam->cap * 2 : 4;
        struct exp_sample *grown = realloc(fam->samples, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        fam->samples = grown;
        fam->cap = cap;
    }
    struct exp_sample *s = &fam->samples[fam->nsamples];
    memset(s, 0, sizeof *s);
    /* The family's own name is shared rather than copied for every sample. */
    s->name = strcmp(name, fam->name) == 0 ? fam->name : arena_strdup(f, name);
    if (!s->name)
        return -ENOMEM;
    if (nl) {
        s->labels = arena_alloc(f, nl * sizeof *s->labels, true);
        if (!s->labels)
            return -ENOMEM;
        for (size_t i = 0; i < nl; i++)
            if (!(s->labels[i].name = arena_strdup(f, labels[i].name)) ||
                !(s->labels[i].value = arena_strdup(f, labels[i].value)))
                return -ENOMEM;
    }
    s->nlabels = nl;
    s->value = value;
    s->has_ts = has_ts;
    s->ts_ms = has_ts ? ts : 0;
    fam->nsamples++;
    f->nseries++;
    return 0;
}

int exp_sample_add(struct exp_families *f, struct exp_family *fam, const char *name,
                   const struct exp_label *labels, size_t nlabels, double value, bool has_ts,
                   int64_t ts_ms)
{
    if (sample_problem(f, fam, name, labels, nlabels))
        return -EINVAL;
    return sample_push(f, fam, name, labels, nlabels, value, has_ts, ts_ms);
}

int exp_family_copy(struct exp_families *f, const struct exp_family *src)
{
    struct exp_family *fam;
    int rc = exp_family_add(f, src->name, src->type, src->help, &fam);
    for (size_t i = 0; rc == 0 && i < src->nsamples; i++) {
        const struct exp_sample *s = &src->samples[i];
        rc = exp_sample_add(f, fam, s->name, s->labels, s->nlabels, s->value, s->has_ts, s->ts_ms);
    }
    return rc;
}

/* ---- parser ----------------------------------------------------------------------------- */

/* Scratch room for one line's names and unescaped values, with their NULs. */
#define SCRATCH_CAP (EXP_MAX_LINE + 2 * (EXP_MAX_LABELS + 2))

struct parser {
    struct exp_families *out;
    size_t lineno;
    char *err;
    size_t errlen;
    char *line;    /* private, NUL-terminated copy of the current line */
    char *scratch; /* names and values of the current line */
    size_t used;
    struct exp_label labels[EXP_MAX_LABELS];
};

__attribute__((format(printf, 3, 4))) static int fail(struct parser *ps, int rc, const char *fmt,
                                                      ...)
{
    va_list ap;
    size_t n = 0;
    if (!ps->err || !ps->errlen)
        return rc;
    if (ps->lineno)
        n = (size_t)snprintf(ps->err, ps->errlen, "line %zu: ", ps->lineno);
    if (n < ps->errlen) {
        va_start(ap, fmt);
        vsnprintf(ps->err + n, ps->errlen - n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* A token quoted for a message: printable ASCII only, at most 40 bytes. */
static const char *quote_tok(const char *s, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        if (i == 39 && n > 40) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
    }
    buf[o] = '\0';
    return buf;
}

static char *scratch_put(struct parser *ps, const char *s, size_t n)
{
    if (SCRATCH_CAP - ps->used < n + 1)
        return NULL;
    char *d = ps->scratch + ps->used;
    memcpy(d, s, n);
    d[n] = '\0';
    ps->used += n + 1;
    return d;
}

static char *skip_blanks(char *p, char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

static char *skip_token(char *p, char *end)
{
    while (p < end && *p != ' ' && *p != '\t')
        p++;
    return p;
}

/* HELP text: \\ and \n are escapes; any other backslash is kept as written (lenient: the
 * writer escapes it again, so the output stays valid). */
static const char *unescape_help(struct parser *ps, const char *s, size_t n)
{
    char *d = ps->scratch + ps->used, *o = d;
    if (SCRATCH_CAP - ps->used < n + 1)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '\\' || s[i + 1] == 'n')) {
            *o++ = s[i + 1] == 'n' ? '\n' : '\\';
            i++;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    ps->used += (size_t)(o - d) + 1;
    return d;
}

static int parse_help(struct parser *ps, const char *name, char *p, char *end)
{
    struct exp_family *fam = exp_families_resolve(ps->out, name);
    const char *text = unescape_help(ps, p, (size_t)(end - p));

    if (!text)
        return fail(ps, -E2BIG, "HELP text too long");
    if (fam && fam->help)
        return fail(ps, -EINVAL, "second HELP line for metric name \"%s\"", fam->name);
    if (!fam) {
        if (ps->out->n >= EXP_MAX_FAMILIES)
            return fail(ps, -E2BIG, "more than %d metric families", EXP_MAX_FAMILIES);
        return family_push(ps->out, name, EXP_UNTYPED, text, &fam) < 0
                   ? fail(ps, -ENOMEM, "out of memory")
                   : 0;
    }
    if (!(fam->help = arena_strdup(ps->out, text)))
        return fail(ps, -ENOMEM, "out of memory");
    return 0;
}

static int parse_type(struct parser *ps, const char *name, char *p, char *end)
{
    static const enum exp_type types[] = {EXP_COUNTER, EXP_GAUGE, EXP_HISTOGRAM, EXP_SUMMARY,
                                          EXP_UNTYPED};
    char *tok = p, q[48];
    size_t n, k;
    struct exp_family *fam;

    p = skip_token(p, end);
    n = (size_t)(p - tok);
    if (n == 0)
        return fail(ps, -EINVAL, "TYPE line for \"%s\" has no type", name);
    for (k = 0; k < sizeof types / sizeof types[0]; k++)
        if (strlen(exp_type_name(types[k])) == n &&
            strncasecmp(tok, exp_type_name(types[k]), n) == 0)
            break;
    if (k == sizeof types / sizeof types[0])
        return fail(ps, -EINVAL, "unknown metric type \"%s\"", quote_tok(tok, n, q, sizeof q));
    if (skip_blanks(p, end) != end)
        return fail(ps, -EINVAL, "unexpected text after the type of \"%s\"", name);

    fam = exp_families_resolve(ps->out, name);
    if (!fam) {
        if (ps->out->n >= EXP_MAX_FAMILIES)
            return fail(ps, -E2BIG, "more than %d metric families", EXP_MAX_FAMILIES);
        if (family_push(ps->out, name, types[k], NULL, &fam) < 0)
            return fail(ps, -ENOMEM, "out of memory");
        fam->declared = true;
        return 0;
    }
    if (fam->declared || fam->nsamples)
        return fail(ps, -EINVAL,
                    "second TYPE line for metric name \"%s\", or TYPE reported after samples",
                    fam->name);
    /* The family came from a HELP line. Its suffixed names must not be families placed after
     * it, or a reader would fold their TYPE lines into this one. */
    for (size_t s = 0; s < N_SUFFIXES; s++) {
        char full[EXP_MAX_NAME + 16];
        struct exp_family *other;
        if (!type_owns(types[k], s))
            continue;
        snprintf(full, sizeof full, "%s%s", fam->name, owned_suffixes[s].suffix);
        other = exp_families_find(ps->out, full);
        if (other && other > fam)
            return fail(ps, -EINVAL, "TYPE %s for \"%s\" comes after samples of \"%s\"",
                        exp_type_name(types[k]), fam->name, full);
    }
    fam->type = types[k];
    fam->declared = true;
    return 0;
}

/* "# HELP name text", "# TYPE name type", or any other comment (ignored). */
static int parse_comment(struct parser *ps, char *p, char *end)
{
    char *kw, *name, q[48];
    size_t n;
    bool help;

    p = skip_blanks(p, end);
    kw = p;
    p = skip_token(p, end);
    n = (size_t)(p - kw);
    if (n == 4 && memcmp(kw, "HELP", 4) == 0)
        help = true;
    else if (n == 4 && memcmp(kw, "TYPE", 4) == 0)
        help = false;
    else
        return 0;
    p = skip_blanks(p, end);
    if (p == end)
        return 0; /* a bare "# HELP" is a comment to promtool too */
    name = p;
    n = scan_name(p, end, true);
    p += n;
    if (n == 0 || (p < end && *p != ' ' && *p != '\t'))
        return fail(ps, -EINVAL, "invalid metric name \"%s\" in %s line",
                    quote_tok(name, (size_t)(skip_token(p, end) - name), q, sizeof q),
                    help ? "HELP" : "TYPE");
    if (n > EXP_MAX_NAME)
        return fail(ps, -E2BIG, "metric name longer than %d bytes", EXP_MAX_NAME);
    const char *sname = scratch_put(ps, name, n);
    if (!sname)
        return fail(ps, -E2BIG, "line too long");
    p = skip_blanks(p, end);
    return help ? parse_help(ps, sname, p, end) : parse_type(ps, sname, p, end);
}

/* Label value after the opening quote: \\ \" \n are the only escapes. Leaves *pp after the
 * closing quote. */
static int parse_label_value(struct parser *ps, char **pp, char *end, const char *metric,
                             const char **out)
{
    char *p = *pp, *d = ps->scratch + ps->used, *o = d;
    /* The value is no longer than the rest of the line, and scratch holds a whole line. */
    if (SCRATCH_CAP - ps->used < (size_t)(end - p) + 1)
        return fail(ps, -E2BIG, "line too long");
    for (;; p++) {
        if (p == end)
            return fail(ps, -EINVAL, "unterminated label value for metric \"%s\"", metric);
        if (*p == '"')
            break;
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        if (++p == end)
            return fail(ps, -EINVAL, "unterminated label value for metric \"%s\"", metric);
        if (*p == 'n')
            *o++ = '\n';
        else if (*p == '\\' || *p == '"')
            *o++ = *p;
        else if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
            return fail(ps, -EINVAL, "invalid escape sequence '\\%c' in label value of \"%s\"", *p,
                        metric);
        else
            return fail(ps, -EINVAL, "invalid escape sequence '\\x%02x' in label value of \"%s\"",
                        (unsigned char)*p, metric);
    }
    *o = '\0';
    ps->used += (size_t)(o - d) + 1;
    *out = d;
    *pp = p + 1;
    return 0;
}

/* "{name="value",...}" with blanks allowed around tokens and a trailing comma. *pp is at '{'. */
static int parse_labels(struct parser *ps, char **pp, char *end, const char *metric, size_t *nl)
{
    char *p = *pp + 1;
    for (;;) {
        p = skip_blanks(p, end);
        if (p == end)
            return fail(ps, -EINVAL, "unterminated label set for metric \"%s\"", metric);
        if (*p == '}')
            break;
        size_t n = scan_name(p, end, false);
        if (n == 0)
            return fail(ps, -EINVAL, "invalid label name for metric \"%s\"", metric);
        if (n > EXP_MAX_NAME)
            return fail(ps, -E2BIG, "label name longer than %d bytes", EXP_MAX_NAME);
        if (*nl == EXP_MAX_LABELS)
            return fail(ps, -E2BIG, "more than %d labels on metric \"%s\"", EXP_MAX_LABELS, metric);
        struct exp_label *l = &ps->labels[*nl];
        if (!(l->name = scratch_put(ps, p, n)))
            return fail(ps, -E2BIG, "line too long");
        p = skip_blanks(p + n, end);
        if (p == end || *p != '=')
            return fail(ps, -EINVAL, "expected '=' after label name \"%s\" of \"%s\"", l->name,
                        metric);
        p = skip_blanks(p + 1, end);
        if (p == end || *p != '"')
            return fail(ps, -EINVAL, "expected '\"' to start the value of label \"%s\" of \"%s\"",
                        l->name, metric);
        p++;
        int rc = parse_label_value(ps, &p, end, metric, &l->value);
        if (rc < 0)
            return rc;
        (*nl)++;
        p = skip_blanks(p, end);
        if (p == end)
            return fail(ps, -EINVAL, "unterminated label set for metric \"%s\"", metric);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}')
            break;
        return fail(ps, -EINVAL, "expected ',' or '}' after label value in \"%s\"", metric);
    }
    *pp = p + 1;
    return 0;
}

static int parse_sample(struct parser *ps, char *p, char *end)
{
    char q[48], *tok;
    size_t n = scan_name(p, end, true), nl = 0;
    const char *name, *problem;
    double value;
    int64_t ts = 0;
    bool has_ts = false;
    int rc;
    struct exp_family *fam;

    if (n == 0)
        return fail(ps, -EINVAL, "invalid metric name \"%s\"",
                    quote_tok(p, (size_t)(skip_token(p, end) - p), q, sizeof q));
    if (n > EXP_MAX_NAME)
        return fail(ps, -E2BIG, "metric name longer than %d bytes", EXP_MAX_NAME);
    if (!(name = scratch_put(ps, p, n)))
        return fail(ps, -E2BIG, "line too long");
    p += n;
    if (p < end && *p != ' ' && *p != '\t' && *p != '{')
        return fail(ps, -EINVAL, "invalid character after metric name \"%s\"", name);
    p = skip_blanks(p, end);
    if (p < end && *p == '{' && (rc = parse_labels(ps, &p, end, name, &nl)) < 0)
        return rc;
    p = skip_blanks(p, end);
    tok = p;
    p = skip_token(p, end);
    if (p == tok)
        return fail(ps, -EINVAL, "missing value for metric \"%s\"", name);
    rc = parse_float_tok(tok, (size_t)(p - tok), &value);
    if (rc == -ERANGE)
        return fail(ps, -EINVAL, "value of \"%s\" is out of range", name);
    if (rc < 0)
        return fail(ps, -EINVAL, "expected a float as value of \"%s\", got \"%s\"", name,
                    quote_tok(tok, (size_t)(p - tok), q, sizeof q));
    p = skip_blanks(p, end);
    if (p < end) {
        tok = p;
        p = skip_token(p, end);
        if (parse_int64_tok(tok, (size_t)(p - tok), &ts) < 0)
            return fail(ps, -EINVAL, "expected an integer timestamp for \"%s\", got \"%s\"", name,
                        quote_tok(tok, (size_t)(p - tok), q, sizeof q));
        has_ts = true;
        if (skip_blanks(p, end) != end)
            return fail(ps, -EINVAL, "unexpected text after the timestamp of \"%s\"", name);
    }

    if (ps->out->nseries >= EXP_MAX_SERIES)
        return fail(ps, -E2BIG, "more than %d series", EXP_MAX_SERIES);
    fam = exp_families_resolve(ps->out, name);
    if (!fam) {
        if (ps->out->n >= EXP_MAX_FAMILIES)
            return fail(ps, -E2BIG, "more than %d metric families", EXP_MAX_FAMILIES);
        if (family_push(ps->out, name, EXP_UNTYPED, NULL, &fam) < 0)
            return fail(ps, -ENOMEM, "out of memory");
    }
    if ((problem = sample_problem(ps->out, fam, name, ps->labels, nl)))
        return fail(ps, -EINVAL, "%s in \"%s\"", problem, name);
    if (sample_push(ps->out, fam, name, ps->labels, nl, value, has_ts, ts) < 0)
        return fail(ps, -ENOMEM, "out of memory");
    return 0;
}

static int parse_line(struct parser *ps, char *p, char *end)
{
    ps->used = 0;
    p = skip_blanks(p, end);
    if (p == end)
        return 0;
    if (*p == '#')
        return parse_comment(ps, p + 1, end);
    return parse_sample(ps, p, end);
}

int exp_parse(const char *text, size_t len, struct exp_families *out, char *err, size_t errlen)
{
    struct parser ps = {.out = out, .err = err, .errlen = errlen};
    const char *p = text, *end = text + len;
    int rc = 0;

    exp_families_init(out);
    if (err && errlen)
        err[0] = '\0';
    if (len > EXP_MAX_INPUT)
        return fail(&ps, -E2BIG, "input of %zu bytes is over the limit of %u bytes", len,
                    EXP_MAX_INPUT);
    ps.line = malloc(EXP_MAX_LINE + 1);
    ps.scratch = malloc(SCRATCH_CAP);
    if (!ps.line || !ps.scratch)
        rc = fail(&ps, -ENOMEM, "out of memory");
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        ps.lineno++;
        if (n > EXP_MAX_LINE) {
            rc = fail(&ps, -E2BIG, "line longer than %u bytes", EXP_MAX_LINE);
            break;
        }
        if (memchr(p, '\0', n)) {
            rc = fail(&ps, -EINVAL, "NUL byte in input");
            break;
        }
        memcpy(ps.line, p, n);
        if (n && ps.line[n - 1] == '\r') /* CRLF: tolerated, the writer emits LF */
            n--;
        ps.line[n] = '\0';
        rc = parse_line(&ps, ps.line, ps.line + n);
        p = nl ? nl + 1 : end;
    }
    free(ps.line);
    free(ps.scratch);
    if (rc < 0)
        exp_families_free(out);
    return rc;
}

/* ---- writer ----------------------------------------------------------------------------- */

int exp_buf_append(struct exp_buf *b, const char *s, size_t n)
{
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        char *grown = realloc(b->data, cap);
        if (!grown)
            return -ENOMEM;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void exp_buf_free(struct exp_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int buf_puts(struct exp_buf *b, const char *s)
{
    return exp_buf_append(b, s, strlen(s));
}

/* n bytes of s escaped for a HELP text (\\ and \n) or, with quote, for a label value (also
 * \"). */
static int buf_escaped(struct exp_buf *b, const char *s, size_t n, bool quote)
{
    const char *run = s, *end = s + n;
    for (; s < end; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : quote && *s == '"' ? "\\\""
                                               : NULL;
        if (!esc)
            continue;
        if (exp_buf_append(b, run, (size_t)(s - run)) < 0 || buf_puts(b, esc) < 0)
            return -ENOMEM;
        run = s + 1;
    }
    return exp_buf_append(b, run, (size_t)(s - run));
}

/* "# HELP name text\n". A CR that ends the text has no escape and would read back as part of
 * a CRLF line end, so it is left out: what we write reads back as what we wrote. */
static int write_help(struct exp_buf *b, const struct exp_family *fam)
{
    size_t n = strlen(fam->help);
    while (n && fam->help[n - 1] == '\r')
        n--;
    int rc = buf_puts(b, "# HELP ");
    if (rc == 0)
        rc = buf_puts(b, fam->name);
    if (rc == 0 && n)
        rc = buf_puts(b, " ");
    if (rc == 0)
        rc = buf_escaped(b, fam->help, n, false);
    return rc == 0 ? buf_puts(b, "\n") : rc;
}

size_t exp_format_value(double v, char *buf)
{
    char e[40], digits[24];
    int exp, nd = 0, o = 0;

    if (isnan(v))
        return (size_t)snprintf(buf, EXP_VALUE_MAX, "NaN");
    if (isinf(v))
        return (size_t)snprintf(buf, EXP_VALUE_MAX, v > 0 ? "+Inf" : "-Inf");
    if (v == 0)
        return (size_t)snprintf(buf, EXP_VALUE_MAX, "0");
    if (v == trunc(v) && fabs(v) < 9007199254740992.0) /* 2^53: every integer is exact */
        return (size_t)snprintf(buf, EXP_VALUE_MAX, "%.0f", v);
    /* The shortest digit string that reads back as v; printf rounds correctly. */
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v)
            break;
    }
    const char *s = e + (e[0] == '-');
    for (; *s && *s != 'e'; s++)
        if (*s != '.')
            digits[nd++] = *s;
    exp = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (v < 0)
        buf[o++] = '-';
    if (exp < -4 || exp >= 6) { /* Go's %g switches to an exponent here for shortest output */
        buf[o++] = digits[0];
        if (nd > 1) {
            buf[o++] = '.';
            memcpy(buf + o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        o += snprintf(buf + o, EXP_VALUE_MAX - (size_t)o, "e%c%02d", exp < 0 ? '-' : '+',
                      exp < 0 ? -exp : exp);
        return (size_t)o;
    }
    int dp = exp + 1; /* digits before the decimal point */
    if (dp <= 0) {
        buf[o++] = '0';
        buf[o++] = '.';
        for (int z = 0; z < -dp; z++)
            buf[o++] = '0';
        memcpy(buf + o, digits, (size_t)nd);
        o += nd;
    } else {
        for (int i = 0; i < dp || i < nd; i++) {
            if (i == dp)
                buf[o++] = '.';
            buf[o++] = i < nd ? digits[i] : '0';
        }
    }
    buf[o] = '\0';
    return (size_t)o;
}

static int write_sample(struct exp_buf *b, const struct exp_sample *s)
{
    char num[EXP_VALUE_MAX + 24];
    int rc = buf_puts(b, s->name);
    for (size_t i = 0; rc == 0 && i < s->nlabels; i++) {
        rc = buf_puts(b, i ? "," : "{");
        if (rc == 0)
            rc = buf_puts(b, s->labels[i].name);
        if (rc == 0)
            rc = buf_puts(b, "=\"");
        if (rc == 0)
            rc = buf_escaped(b, s->labels[i].value, strlen(s->labels[i].value), true);
        if (rc == 0)
            rc = buf_puts(b, "\"");
    }
    if (rc == 0 && s->nlabels)
        rc = buf_puts(b, "}");
    if (rc < 0)
        return rc;
    size_t n = 0;
    num[n++] = ' ';
    n += exp_format_value(s->value, num + n);
    if (s->has_ts)
        n += (size_t)snprintf(num + n, sizeof num - n, " %lld", (long long)s->ts_ms);
    num[n++] = '\n';
    return exp_buf_append(b, num, n);
}

int exp_write(const struct exp_families *f, struct exp_buf *out)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < f->n; i++) {
        const struct exp_family *fam = &f->fam[i];
        if (fam->help)
            rc = write_help(out, fam);
        if (rc == 0)
            rc = buf_puts(out, "# TYPE ");
        if (rc == 0)
            rc = buf_puts(out, fam->name);
        if (rc == 0)
            rc = buf_puts(out, " ");
        if (rc == 0)
            rc = buf_puts(out, exp_type_name(fam->type));
        if (rc == 0)
            rc = buf_puts(out, "\n");
        for (size_t k = 0; rc == 0 && k < fam->nsamples; k++)
            rc = write_sample(out, &fam->samples[k]);
    }
    return rc;
}
