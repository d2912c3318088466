/* promtext.h - the Prometheus text exposition format 0.0.4: parser, in-memory model, writer.
 *
 * The model is a list of families in the order they first appear. A family has a name, a type,
 * an optional HELP text and its samples; a sample has its full name (x, x_total, x_bucket,
 * x_sum, x_count, x_created ...), ordered labels, a value and an optional timestamp. Strings
 * are stored unescaped; the writer escapes them again.
 *
 * Grouping follows the Go parser that `promtool check metrics` uses, so that what we write is
 * what promtool reads back: a sample, HELP or TYPE line named N belongs to the family named N;
 * else, when N ends in _sum/_count and a summary N' = N minus the suffix exists, to N'; else,
 * when N ends in _bucket/_sum/_count and a histogram N' exists, to N'; else it starts a new
 * untyped family N. So a counter's samples are x_total under "# TYPE x_total counter" (what
 * prometheus_client writes) and a `_created` line is its own family, as in 0.0.4.
 *
 * Strict where promtool is strict (names, label syntax, escapes in label values, UTF-8 label
 * values, float syntax, a second HELP/TYPE, TYPE after samples, le/quantile values), lenient
 * where the writer's output is valid anyway: CRLF line ends, blanks at the end of a line,
 * unknown escapes in HELP (kept verbatim). A histogram or summary may not be declared next to a
 * family that already owns one of its suffixed names (promtool would merge them differently).
 *
 * All strings of a model live in an arena owned by its struct exp_families; pointers stay
 * valid until exp_families_free. Not thread-safe; one model per thread, or read-only sharing. */
#ifndef EXP_PROMTEXT_H
#define EXP_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds on parser input: the engine is untrusted and a scrape must not take the runtime down.
 * Going over one is an error (-E2BIG) that names the line; nothing of the input is kept. */
#define EXP_MAX_INPUT (16u << 20) /* bytes of exposition text (16 MiB) */
#define EXP_MAX_LINE (64u << 10)  /* bytes in one line, without its '\n' (64 KiB) */
#define EXP_MAX_LABELS 64         /* labels on one sample */
#define EXP_MAX_SERIES 200000     /* samples (every bucket counts) in one input */
#define EXP_MAX_FAMILIES 200000   /* families in one input (HELP/TYPE-only ones count) */
#define EXP_MAX_NAME 1024         /* bytes in a metric or label name */

/* Room for any value exp_format_value writes, with its NUL. */
#define EXP_VALUE_MAX 32

enum exp_type { EXP_UNTYPED, EXP_COUNTER, EXP_GAUGE, EXP_HISTOGRAM, EXP_SUMMARY };

struct exp_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]* */
    const char *value; /* unescaped, valid UTF-8 */
};

struct exp_sample {
    const char *name; /* full sample name: the family name, or it plus _bucket/_sum/_count */
    struct exp_label *labels; /* in input order, names unique */
    size_t nlabels;
    double value; /* NaN and +-Inf allowed */
    bool has_ts;
    int64_t ts_ms; /* milliseconds since the epoch, when has_ts */
};

struct exp_family {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]* */
    enum exp_type type;
    const char *help; /* unescaped; NULL when there was no HELP line */
    struct exp_sample *samples;
    size_t nsamples;
    /* private */
    size_t cap;
    bool declared; /* a TYPE line was seen (parser bookkeeping) */
};

struct exp_arena_chunk;

/* A model. Zero-initialise ({0}) or exp_families_init before use; free with
 * exp_families_free. */
struct exp_families {
    struct exp_family *fam;
    size_t n;
    size_t nseries; /* samples over all families */
    /* private */
    size_t cap;
    struct exp_arena_chunk *arena;
    uint32_t *index; /* open addressing: family position + 1, 0 = empty */
    size_t index_cap;
};

/* A growable output buffer; zero-initialise. data is NUL-terminated when len > 0. */
struct exp_buf {
    char *data;
    size_t len, cap;
};

void exp_families_init(struct exp_families *f);
/* Frees everything f owns and leaves it empty (safe to free twice). */
void exp_families_free(struct exp_families *f);

/* Parse len bytes of exposition text into out, which is overwritten (it need not be
 * initialised, and anything it held is not freed). Returns 0; -EINVAL for malformed input;
 * -E2BIG when a bound is exceeded; -ENOMEM. On error, out is empty and err says which line
 * and what ("line 7: unterminated label value for metric \"x\""). */
int exp_parse(const char *text, size_t len, struct exp_families *out, char *err, size_t errlen);

/* Append f as exposition text to out: "# HELP" (when help is set) and "# TYPE" once per
 * family, then its samples. Returns 0 or -ENOMEM (out keeps what was appended before). */
int exp_write(const struct exp_families *f, struct exp_buf *out);

int exp_buf_append(struct exp_buf *b, const char *s, size_t n);
void exp_buf_free(struct exp_buf *b);

/* Building a model by hand (the transform, the runtime's own metrics).
 *
 * exp_family_add copies name and help (help may be NULL) and returns the new family through
 * *out; the pointer is valid until the next exp_family_add on f. Returns 0; -EINVAL for an
 * invalid name; -EEXIST when the name is taken or would be grouped differently by a reader
 * (x_count next to a histogram x, and the reverse); -ENOMEM. */
int exp_family_add(struct exp_families *f, const char *name, enum exp_type type, const char *help,
                   struct exp_family **out);

/* Append a sample to fam (a family of f); every string is copied. The name must be one this
 * family owns (see the grouping rule above); label names valid and unique, at most
 * EXP_MAX_LABELS, values valid UTF-8; le (histogram _bucket) and quantile (summary) values
 * must be floats. Returns 0, -EINVAL or -ENOMEM. */
int exp_sample_add(struct exp_families *f, struct exp_family *fam, const char *name,
                   const struct exp_label *labels, size_t nlabels, double value, bool has_ts,
                   int64_t ts_ms);

/* Deep-copy src (a family of another model) into f under the same name. Same errors as
 * exp_family_add. */
int exp_family_copy(struct exp_families *f, const struct exp_family *src);

/* The family named exactly name, or NULL. */
struct exp_family *exp_families_find(const struct exp_families *f, const char *name);
/* The family a sample (or HELP/TYPE line) named name belongs to, by the grouping rule; NULL
 * when it would start a new family. */
struct exp_family *exp_families_resolve(const struct exp_families *f, const char *name);

/* "counter", "gauge", "histogram", "summary", "untyped". */
const char *exp_type_name(enum exp_type t);

/* Write v the way Go's Prometheus client does: NaN, +Inf, -Inf; integers of magnitude below
 * 2^53 in full without exponent (1234567); anything else as the shortest decimal that reads
 * back exactly, in Go's %g style (0.25, 1.5e-07, 1.7382173358407154e+09). buf holds at least
 * EXP_VALUE_MAX bytes. Returns the length written. */
size_t exp_format_value(double v, char *buf);

bool exp_metric_name_valid(const char *s, size_t n);
bool exp_label_name_valid(const char *s, size_t n);

#endif
