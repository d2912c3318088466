/* fuzz_promtext.c - libFuzzer harness for the exposition-format parser, writer and rules
 * (exporter/promtext.h, exporter/rules.h).
 *
 * Whatever parses must write back as text that parses again into the same model (names, types,
 * HELP, labels, values, timestamps), and writing that again must give the same bytes. The rules of
 * one engine (picked by the input's length, unknown engines included) must produce a model that
 * writes and parses back the same way. A refused input must say why and leave nothing allocated. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../exporter/promtext.h"
#include "../../exporter/rules.h"

static const char *const engines[] = {"vllm",   "sglang",   "trtllm", "tgi",
                                      "triton", "llamacpp", "unknown"};

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_sample(const struct exp_sample *s, const struct exp_sample *t)
{
    if (!same_str(s->name, t->name) || s->nlabels != t->nlabels || s->has_ts != t->has_ts ||
        s->ts_ms != t->ts_ms || !(s->value == t->value || (isnan(s->value) && isnan(t->value))))
        return false;
    for (size_t l = 0; l < s->nlabels; l++)
        if (!same_str(s->labels[l].name, t->labels[l].name) ||
            !same_str(s->labels[l].value, t->labels[l].value))
            return false;
    return true;
}

static bool help_ends_in_cr(const struct exp_families *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const char *h = m->fam[i].help;
        if (h && *h && h[strlen(h) - 1] == '\r')
            return true;
    }
    return false;
}

static bool same_model(const struct exp_families *a, const struct exp_families *b)
{
    if (a->n != b->n || a->nseries != b->nseries)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const struct exp_family *x = &a->fam[i], *y = &b->fam[i];
        if (!same_str(x->name, y->name) || x->type != y->type || !same_str(x->help, y->help) ||
            x->nsamples != y->nsamples)
            return false;
        for (size_t k = 0; k < x->nsamples; k++)
            if (!same_sample(&x->samples[k], &y->samples[k]))
                return false;
    }
    return true;
}

/* Write m, parse it back, compare, and return the text (caller frees). A HELP text that ends
 * in CR is the one thing the format cannot carry; the writer drops that CR. */
static char *write_and_reparse(const struct exp_families *m)
{
    struct exp_buf text = {0}, again = {0};
    struct exp_families back;
    char err[256];

    if (exp_write(m, &text) < 0)
        abort();
    if (exp_parse(text.data ? text.data : "", text.len, &back, err, sizeof err) != 0)
        abort();
    if (back.n != m->n || back.nseries != m->nseries)
        abort();
    if (!help_ends_in_cr(m) && !same_model(m, &back))
        abort();
    if (exp_write(&back, &again) < 0)
        abort();
    if (again.len != text.len || (text.len && memcmp(again.data, text.data, text.len) != 0))
        abort();
    exp_families_free(&back);
    exp_buf_free(&again);
    return text.data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct exp_families in, out;
    char err[256];
    int rc;

    err[0] = '\0';
    rc = exp_parse((const char *)data, size, &in, err, sizeof err);
    if (rc != 0) {
        if ((rc != -EINVAL && rc != -E2BIG) || err[0] == '\0' || in.n || in.fam || in.nseries)
            abort();
        return 0;
    }
    free(write_and_reparse(&in));

    rc = exp_transform(&in, engines[size % (sizeof engines / sizeof engines[0])], &out, err,
                       sizeof err);
    if (rc < 0 || out.n < in.n)
        abort();
    free(write_and_reparse(&out));
    exp_families_free(&out);
    exp_families_free(&in);
    return 0;
}
