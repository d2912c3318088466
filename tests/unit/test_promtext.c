/* test_promtext.c - the exposition-format parser and writer (exporter/promtext.h): every type,
 * grouping, escapes, special values, timestamps, the writer's formatting, round trips, the
 * builder's checks, and hostile input (each bound, malformed lines, bytes that are not text). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../exporter/promtext.h"
#include "check.h"

static int parse(const char *text, struct exp_families *f, char *err, size_t errlen)
{
    return exp_parse(text, strlen(text), f, err, errlen);
}

/* Labels as the writer prints them: a="1",b="2". */
static const char *labels_str(const struct exp_sample *s, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->nlabels && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s=\"%s\"", i ? "," : "", s->labels[i].name,
                              s->labels[i].value);
    return buf;
}

static char *write_str(const struct exp_families *f)
{
    struct exp_buf b = {0};
    if (exp_write(f, &b) < 0) {
        exp_buf_free(&b);
        return NULL;
    }
    return b.data ? b.data : calloc(1, 1);
}

static bool same_value(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/* Two models hold the same families, samples, labels, values and timestamps. */
static bool same_model(const struct exp_families *a, const struct exp_families *b)
{
    if (a->n != b->n || a->nseries != b->nseries)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const struct exp_family *x = &a->fam[i], *y = &b->fam[i];
        if (strcmp(x->name, y->name) || x->type != y->type || x->nsamples != y->nsamples ||
            !x->help != !y->help || (x->help && strcmp(x->help, y->help)))
            return false;
        for (size_t k = 0; k < x->nsamples; k++) {
            const struct exp_sample *s = &x->samples[k], *t = &y->samples[k];
            if (strcmp(s->name, t->name) || s->nlabels != t->nlabels ||
                !same_value(s->value, t->value) || s->has_ts != t->has_ts || s->ts_ms != t->ts_ms)
                return false;
            for (size_t l = 0; l < s->nlabels; l++)
                if (strcmp(s->labels[l].name, t->labels[l].name) ||
                    strcmp(s->labels[l].value, t->labels[l].value))
                    return false;
        }
    }
    return true;
}

/* parse -> write -> parse gives the same model, and writing again gives the same bytes. */
static void check_round_trip(const char *text)
{
    struct exp_families a, b;
    char err[256];
    CHECK_INT(parse(text, &a, err, sizeof err), 0);
    char *w1 = write_str(&a);
    CHECK(w1 != NULL);
    CHECK_INT(parse(w1 ? w1 : "", &b, err, sizeof err), 0);
    CHECK(same_model(&a, &b));
    char *w2 = write_str(&b);
    CHECK(w2 != NULL);
    if (w1 && w2)
        CHECK_STR(w2, w1);
    free(w1);
    free(w2);
    exp_families_free(&a);
    exp_families_free(&b);
}

static void test_types(void)
{
    static const char text[] =
        "# HELP http_requests_total The total number of HTTP requests.\n"
        "# TYPE http_requests_total counter\n"
        "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n"
        "http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n"
        "\n"
        "# A comment that is not HELP or TYPE.\n"
        "# TYPE temperature gauge\n"
        "temperature -3.5\n"
        "# HELP rpc_duration_seconds A summary of the RPC duration in seconds.\n"
        "# TYPE rpc_duration_seconds summary\n"
        "rpc_duration_seconds{quantile=\"0.01\"} 3102\n"
        "rpc_duration_seconds{quantile=\"0.5\"} 4773\n"
        "rpc_duration_seconds_sum 1.7560473e+07\n"
        "rpc_duration_seconds_count 2693\n"
        "# TYPE latency_seconds histogram\n"
        "latency_seconds_bucket{le=\"0.05\"} 24054\n"
        "latency_seconds_bucket{le=\"+Inf\"} 144320\n"
        "latency_seconds_sum 53423\n"
        "latency_seconds_count 144320\n"
        "# TYPE declared_untyped untyped\n"
        "declared_untyped 1\n"
        "metric_without_type_or_help{a=\"b\"} 12.47\n";
    struct exp_families f;
    char err[256], lb[256];

    CHECK_INT(parse(text, &f, err, sizeof err), 0);
    CHECK_INT(f.n, 6);
    CHECK_INT(f.nseries, 13);
    if (f.n != 6)
        return;
    CHECK_STR(f.fam[0].name, "http_requests_total");
    CHECK_INT(f.fam[0].type, EXP_COUNTER);
    CHECK_STR(f.fam[0].help, "The total number of HTTP requests.");
    CHECK_INT(f.fam[0].nsamples, 2);
    CHECK_STR(labels_str(&f.fam[0].samples[1], lb, sizeof lb), "method=\"post\",code=\"400\"");
    CHECK(f.fam[0].samples[1].value == 3);
    CHECK(f.fam[0].samples[1].has_ts);
    CHECK(f.fam[0].samples[1].ts_ms == 1395066363000LL);
    CHECK_STR(f.fam[1].name, "temperature");
    CHECK_INT(f.fam[1].type, EXP_GAUGE);
    CHECK(f.fam[1].help == NULL);
    CHECK(f.fam[1].samples[0].value == -3.5);
    CHECK(!f.fam[1].samples[0].has_ts);
    CHECK_INT(f.fam[2].type, EXP_SUMMARY);
    CHECK_INT(f.fam[2].nsamples, 4);
    CHECK_STR(f.fam[2].samples[2].name, "rpc_duration_seconds_sum");
    CHECK(f.fam[2].samples[2].value == 17560473);
    CHECK_STR(f.fam[2].samples[3].name, "rpc_duration_seconds_count");
    CHECK_INT(f.fam[3].type, EXP_HISTOGRAM);
    CHECK_INT(f.fam[3].nsamples, 4);
    CHECK_STR(f.fam[3].samples[1].name, "latency_seconds_bucket");
    CHECK_STR(f.fam[3].samples[1].labels[0].value, "+Inf");
    CHECK_INT(f.fam[4].type, EXP_UNTYPED);
    CHECK_STR(f.fam[5].name, "metric_without_type_or_help");
    CHECK_INT(f.fam[5].type, EXP_UNTYPED);
    CHECK(f.fam[5].samples[0].value == 12.47);
    CHECK(exp_families_find(&f, "temperature") == &f.fam[1]);
    CHECK(exp_families_find(&f, "latency_seconds_count") == NULL);
    CHECK(exp_families_resolve(&f, "latency_seconds_count") == &f.fam[3]);
    CHECK(exp_families_resolve(&f, "rpc_duration_seconds_sum") == &f.fam[2]);
    CHECK(exp_families_resolve(&f, "rpc_duration_seconds_bucket") == NULL);
    CHECK(exp_families_resolve(&f, "temperature_count") == NULL);
    exp_families_free(&f);
    CHECK_INT(f.n, 0);
    exp_families_free(&f); /* twice is harmless */
    check_round_trip(text);
}

static void test_grouping(void)
{
    struct exp_families f;
    char err[256];

    /* Without TYPE, samples group by exact name, wherever they appear. */
    CHECK_INT(parse("foo 1\nfoo{a=\"b\"} 2\nbar 3\nfoo 4\nx_bucket{le=\"1\"} 1\nx_count 1\n", &f,
                    err, sizeof err),
              0);
    CHECK_INT(f.n, 4);
    if (f.n == 4) {
        CHECK_STR(f.fam[0].name, "foo");
        CHECK_INT(f.fam[0].nsamples, 3);
        CHECK(f.fam[0].samples[2].value == 4);
        CHECK_STR(f.fam[1].name, "bar");
        CHECK_STR(f.fam[2].name, "x_bucket");
        CHECK_STR(f.fam[3].name, "x_count");
    }
    exp_families_free(&f);

    /* A counter keeps its _total name; x_created is its own family (format 0.0.4). */
    CHECK_INT(parse("# TYPE c_total counter\nc_total 5\n# TYPE c_created gauge\nc_created 1.7e9\n",
                    &f, err, sizeof err),
              0);
    CHECK_INT(f.n, 2);
    CHECK(exp_families_find(&f, "c_total") && exp_families_find(&f, "c_total")->nsamples == 1);
    CHECK(exp_families_find(&f, "c_created") != NULL);
    exp_families_free(&f);

    /* x_count seen before "TYPE x summary" stays its own family; later x_sum joins x. */
    CHECK_INT(parse("x_count 1\n# TYPE x summary\nx_sum 2\nx_count 3\n", &f, err, sizeof err), 0);
    CHECK_INT(f.n, 2);
    if (f.n == 2) {
        CHECK_INT(f.fam[0].nsamples, 2);
        CHECK_INT(f.fam[1].nsamples, 1);
    }
    exp_families_free(&f);
    check_round_trip("x_count 1\n# TYPE x summary\nx_sum 2\nx_count 3\n");

    /* HELP for x_count after histogram x is x's HELP (as promtool reads it). */
    CHECK_INT(parse("# TYPE x histogram\n# HELP x_count doc\nx_count 1\n", &f, err, sizeof err), 0);
    CHECK_INT(f.n, 1);
    CHECK(f.n == 1 && f.fam[0].help && strcmp(f.fam[0].help, "doc") == 0);
    exp_families_free(&f);

    /* HELP before TYPE, HELP after samples. */
    CHECK_INT(
        parse("# HELP g doc\n# TYPE g gauge\ng 1\nh 2\n# HELP h later\n", &f, err, sizeof err), 0);
    CHECK(f.n == 2 && f.fam[0].type == EXP_GAUGE && strcmp(f.fam[1].help, "later") == 0);
    exp_families_free(&f);

    /* A family with HELP/TYPE and no samples is kept (and written back). */
    CHECK_INT(parse("# HELP empty nothing yet\n# TYPE empty counter\n", &f, err, sizeof err), 0);
    CHECK(f.n == 1 && f.fam[0].nsamples == 0);
    exp_families_free(&f);
    check_round_trip("# HELP empty nothing yet\n# TYPE empty counter\n");

    /* Empty input and input without a final newline. */
    CHECK_INT(parse("", &f, err, sizeof err), 0);
    CHECK_INT(f.n, 0);
    exp_families_free(&f);
    CHECK_INT(parse("a 1", &f, err, sizeof err), 0);
    CHECK(f.n == 1 && f.fam[0].samples[0].value == 1);
    exp_families_free(&f);
}

static void test_lexical(void)
{
    struct exp_families f;
    char err[256], lb[256];

    /* Blanks around label tokens, a trailing comma, no blank after '}', CRLF, leading blanks,
     * TYPE in capitals, "#HELP" without a blank, tabs. */
    CHECK_INT(parse("  # TYPE a COUNTER\r\n#HELP a doc\r\n a { x = \"1\" , y=\"2\", } 3 \r\n"
                    "b{c=\"d\"}4\n\t\nc\t5\t-7\n",
                    &f, err, sizeof err),
              0);
    CHECK_INT(f.n, 3);
    if (f.n == 3) {
        CHECK_INT(f.fam[0].type, EXP_COUNTER);
        CHECK_STR(f.fam[0].help, "doc");
        CHECK_STR(labels_str(&f.fam[0].samples[0], lb, sizeof lb), "x=\"1\",y=\"2\"");
        CHECK(f.fam[0].samples[0].value == 3);
        CHECK(f.fam[1].samples[0].value == 4);
        CHECK(f.fam[2].samples[0].has_ts && f.fam[2].samples[0].ts_ms == -7);
    }
    exp_families_free(&f);

    /* Names with colons, label names with leading underscores, empty label set, "# HELP"
     * alone, other comments. */
    CHECK_INT(parse("vllm:x{_a=\"\"} 1\ny{} 2\n# HELP\n#\n# TYPE_NOT x\n#HELPER x\n", &f, err,
                    sizeof err),
              0);
    CHECK(f.n == 2 && strcmp(f.fam[0].name, "vllm:x") == 0 && f.fam[1].samples[0].nlabels == 0);
    exp_families_free(&f);

    /* A CR left at the end of a HELP text has no escape: it is not written. */
    CHECK_INT(parse("# HELP x doc\r\r\nx 1\n# HELP y \r\r\ny 2\n", &f, err, sizeof err), 0);
    CHECK(f.n == 2 && strcmp(f.fam[0].help, "doc\r") == 0 && strcmp(f.fam[1].help, "\r") == 0);
    char *w = write_str(&f);
    CHECK_STR(w, "# HELP x doc\n# TYPE x untyped\nx 1\n# HELP y\n# TYPE y untyped\ny 2\n");
    free(w);
    exp_families_free(&f);

    CHECK(exp_metric_name_valid("a:b_c9", 6));
    CHECK(!exp_metric_name_valid("9a", 2));
    CHECK(!exp_metric_name_valid("", 0));
    CHECK(exp_label_name_valid("_a9", 3));
    CHECK(!exp_label_name_valid("a:b", 3));
}

static void test_escapes(void)
{
    static const char text[] = "# HELP e Line one\\nline \\\\two \\q kept \\\n"
                               "e{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",nl=\"a\\nb\"} 1\n";
    struct exp_families f;
    char err[256];

    CHECK_INT(parse(text, &f, err, sizeof err), 0);
    if (f.n == 1) {
        CHECK_STR(f.fam[0].help, "Line one\nline \\two \\q kept \\");
        CHECK_STR(f.fam[0].samples[0].labels[0].value, "C:\\dir");
        CHECK_STR(f.fam[0].samples[0].labels[1].value, "say \"hi\"");
        CHECK_STR(f.fam[0].samples[0].labels[2].value, "a\nb");
    }
    char *w = write_str(&f);
    CHECK_STR(w, "# HELP e Line one\\nline \\\\two \\\\q kept \\\\\n# TYPE e untyped\n"
                 "e{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",nl=\"a\\nb\"} 1\n");
    free(w);
    exp_families_free(&f);
    check_round_trip(text);

    /* UTF-8 in label values and HELP is kept as is. */
    CHECK_INT(parse("# HELP u caf\xc3\xa9\nu{m=\"\xe6\xa8\xa1\xe5\x9e\x8b\xf0\x9f\x98\x80\"} 1\n",
                    &f, err, sizeof err),
              0);
    CHECK(f.n == 1 && strcmp(f.fam[0].samples[0].labels[0].value,
                             "\xe6\xa8\xa1\xe5\x9e\x8b\xf0\x9f\x98\x80") == 0);
    exp_families_free(&f);
}

static void test_special_values(void)
{
    static const struct {
        const char *text;
        double want;
    } values[] = {
        {"NaN", NAN},
        {"nan", NAN},
        {"+Inf", INFINITY},
        {"-Inf", -INFINITY},
        {"Inf", INFINITY},
        {"-inf", -INFINITY},
        {"+Infinity", INFINITY},
        {"1e-400", 0},
        {".5", 0.5},
        {"1.", 1},
        {"-.5e-3", -0.0005},
        {"+1", 1},
        {"00012", 12},
        {"1E+05", 100000},
        {"1.7976931348623157e+308", DBL_MAX},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct exp_families f;
        char text[128], err[256];
        snprintf(text, sizeof text, "x %s\n", values[i].text);
        CHECK_INT(parse(text, &f, err, sizeof err), 0);
        CHECK(f.n == 1 && same_value(f.fam[0].samples[0].value, values[i].want));
        if (!(f.n == 1 && same_value(f.fam[0].samples[0].value, values[i].want)))
            fprintf(stderr, "  value %s\n", values[i].text);
        exp_families_free(&f);
    }
    check_round_trip("# TYPE h histogram\nh_bucket{le=\"+Inf\"} NaN\nh_sum -Inf\nh_count +Inf\n"
                     "g NaN 0\ng{a=\"b\"} -Inf -9223372036854775808\ng{a=\"c\"} 1 "
                     "9223372036854775807\n");
}

static void test_format_value(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {1, "1"},
        {-1, "-1"},
        {148, "148"},
        {1234567, "1234567"},
        {1738217335, "1738217335"},
        {9007199254740991.0, "9007199254740991"},
        {9007199254740992.0, "9.007199254740992e+15"},
        {1e20, "1e+20"},
        {0.5, "0.5"},
        {0.1, "0.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {-2.5, "-2.5"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {1.5e-7, "1.5e-07"},
        {123456.5, "123456.5"},
        {1234567.5, "1.2345675e+06"},
        {1.7382173358407154e+09, "1.7382173358407154e+09"},
        {1e300, "1e+300"},
        {5e-324, "5e-324"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {-DBL_MAX, "-1.7976931348623157e+308"},
        {NAN, "NaN"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[EXP_VALUE_MAX];
        size_t n = exp_format_value(cases[i].v, buf);
        CHECK_STR(buf, cases[i].want);
        CHECK_INT(n, strlen(cases[i].want));
    }
    /* Every written value reads back exactly. */
    for (int i = 0; i < 2000; i++) {
        double v = ldexp((double)rand() / RAND_MAX - 0.5, rand() % 200 - 100);
        char buf[EXP_VALUE_MAX];
        exp_format_value(v, buf);
        CHECK(strtod(buf, NULL) == v);
    }
}

static void test_writer(void)
{
    struct exp_families f = {0};
    struct exp_family *fam;
    struct exp_label l[2] = {{"le", "0.5"}, {"model", "m\"1\""}};
    struct exp_buf b = {0};

    CHECK_INT(exp_family_add(&f, "lat_seconds", EXP_HISTOGRAM, "Latency\nin seconds.", &fam), 0);
    CHECK_INT(exp_sample_add(&f, fam, "lat_seconds_bucket", l, 2, 3, false, 0), 0);
    l[0].value = "+Inf";
    CHECK_INT(exp_sample_add(&f, fam, "lat_seconds_bucket", l, 2, 4, false, 0), 0);
    CHECK_INT(exp_sample_add(&f, fam, "lat_seconds_sum", l + 1, 1, 1.25, false, 0), 0);
    CHECK_INT(exp_sample_add(&f, fam, "lat_seconds_count", l + 1, 1, 4, true, 1700000000123), 0);
    CHECK_INT(exp_family_add(&f, "up", EXP_GAUGE, NULL, &fam), 0);
    CHECK_INT(exp_sample_add(&f, fam, "up", NULL, 0, 1, false, 0), 0);
    CHECK_INT(f.nseries, 5);
    CHECK_INT(exp_buf_append(&b, "# pre\n", 6), 0);
    CHECK_INT(exp_write(&f, &b), 0);
    CHECK_STR(b.data, "# pre\n"
                      "# HELP lat_seconds Latency\\nin seconds.\n"
                      "# TYPE lat_seconds histogram\n"
                      "lat_seconds_bucket{le=\"0.5\",model=\"m\\\"1\\\"\"} 3\n"
                      "lat_seconds_bucket{le=\"+Inf\",model=\"m\\\"1\\\"\"} 4\n"
                      "lat_seconds_sum{model=\"m\\\"1\\\"\"} 1.25\n"
                      "lat_seconds_count{model=\"m\\\"1\\\"\"} 4 1700000000123\n"
                      "# TYPE up gauge\n"
                      "up 1\n");
    exp_buf_free(&b);
    exp_families_free(&f);
}

static void test_builder_checks(void)
{
    struct exp_families f = {0}, g = {0};
    struct exp_family *h, *x;
    struct exp_label dup[2] = {{"a", "1"}, {"a", "2"}}, bad_utf8 = {"a", "\xc3\x28"},
                     reserved = {"__name__", "x"}, bad_name = {"a-b", "1"}, bad_le = {"le", "z"};

    CHECK_INT(exp_family_add(&f, "h", EXP_HISTOGRAM, NULL, &h), 0);
    CHECK_INT(exp_family_add(&f, "h", EXP_GAUGE, NULL, &x), -EEXIST);
    CHECK_INT(exp_family_add(&f, "h_count", EXP_GAUGE, NULL, &x), -EEXIST);
    CHECK_INT(exp_family_add(&f, "h_created", EXP_GAUGE, NULL, &x), 0);
    CHECK_INT(exp_family_add(&f, "9bad", EXP_GAUGE, NULL, &x), -EINVAL);
    CHECK_INT(exp_family_add(&f, "ok", (enum exp_type)42, NULL, &x), -EINVAL);
    h = exp_families_find(&f, "h");
    x = exp_families_find(&f, "h_created");
    CHECK_INT(exp_sample_add(&f, h, "h_total", NULL, 0, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, h, "h_created", NULL, 0, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, x, "h_created", dup, 2, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, x, "h_created", &bad_utf8, 1, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, x, "h_created", &reserved, 1, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, x, "h_created", &bad_name, 1, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, h, "h_bucket", &bad_le, 1, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, x, "h_created", &bad_le, 1, 1, false, 0), 0); /* le is plain */
    CHECK_INT(f.nseries, 1);

    /* A summary declared after its x_sum family: allowed, the earlier family keeps x_sum. */
    CHECK_INT(exp_family_add(&f, "s_sum", EXP_GAUGE, NULL, &x), 0);
    CHECK_INT(exp_family_add(&f, "s", EXP_SUMMARY, NULL, &x), 0);
    CHECK_INT(exp_sample_add(&f, x, "s_sum", NULL, 0, 1, false, 0), -EINVAL);
    CHECK_INT(exp_sample_add(&f, x, "s_count", NULL, 0, 1, false, 0), 0);

    /* Copying a family into another model. */
    CHECK_INT(exp_family_copy(&g, exp_families_find(&f, "h_created")), 0);
    CHECK_INT(g.n, 1);
    CHECK_INT(g.nseries, 1);
    CHECK(g.n == 1 && strcmp(g.fam[0].samples[0].labels[0].value, "z") == 0);
    exp_families_free(&g);
    exp_families_free(&f);
    CHECK_STR(exp_type_name(EXP_SUMMARY), "summary");
    CHECK_STR(exp_type_name(EXP_UNTYPED), "untyped");
}

/* Malformed input: the error code, the line named in the message, and nothing kept. */
static void expect_error(const char *text, size_t len, int rc, const char *needle)
{
    struct exp_families f;
    char err[256] = "";
    int got = exp_parse(text, len, &f, err, sizeof err);
    CHECK_INT(got, rc);
    CHECK(f.n == 0 && f.fam == NULL && f.arena == NULL && f.nseries == 0);
    CHECK(strstr(err, needle) != NULL);
    if (!strstr(err, needle))
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err, needle);
    exp_families_free(&f);
}

#define EXPECT_ERROR(text, rc, needle) expect_error(text, sizeof(text) - 1, rc, needle)

static void test_malformed(void)
{
    EXPECT_ERROR("ok 1\nx{a=\"unterminated} 1\n", -EINVAL, "line 2: unterminated label value");
    EXPECT_ERROR("x{a=\"b\\q\"} 1\n", -EINVAL, "line 1: invalid escape sequence '\\q'");
    EXPECT_ERROR("x{a=\"b\\\x01\"} 1\n", -EINVAL, "invalid escape sequence '\\x01'");
    EXPECT_ERROR("x{a=\"b\\", -EINVAL, "unterminated label value");
    EXPECT_ERROR("x{a=\"b\"", -EINVAL, "unterminated label set");
    EXPECT_ERROR("x{a=\"b\" c=\"d\"} 1\n", -EINVAL, "expected ',' or '}'");
    EXPECT_ERROR("x{a \"b\"} 1\n", -EINVAL, "expected '='");
    EXPECT_ERROR("x{a=b} 1\n", -EINVAL, "expected '\"'");
    EXPECT_ERROR("x{,} 1\n", -EINVAL, "invalid label name");
    EXPECT_ERROR("x{a:b=\"1\"} 1\n", -EINVAL, "expected '='");
    EXPECT_ERROR("x{a=\"1\",a=\"2\"} 1\n", -EINVAL, "duplicate label name");
    EXPECT_ERROR("x{__name__=\"y\"} 1\n", -EINVAL, "reserved");
    EXPECT_ERROR("x{a=\"\xc3\x28\"} 1\n", -EINVAL, "not valid UTF-8");
    EXPECT_ERROR("x{a=\"\xed\xa0\x80\"} 1\n", -EINVAL, "not valid UTF-8"); /* surrogate */
    EXPECT_ERROR("x{a=\"\xc0\xaf\"} 1\n", -EINVAL, "not valid UTF-8");     /* overlong */
    EXPECT_ERROR("x\n", -EINVAL, "line 1: missing value");
    EXPECT_ERROR("x{a=\"b\"}\n", -EINVAL, "missing value");
    EXPECT_ERROR("x one\n", -EINVAL, "expected a float");
    EXPECT_ERROR("x 0x1p3\n", -EINVAL, "expected a float");
    EXPECT_ERROR("x 1_000\n", -EINVAL, "expected a float");
    EXPECT_ERROR("x -NaN\n", -EINVAL, "expected a float");
    EXPECT_ERROR("x nan(1)\n", -EINVAL, "expected a float");
    EXPECT_ERROR("x 1e\n", -EINVAL, "expected a float");
    EXPECT_ERROR("x 1e999\n", -EINVAL, "out of range");
    EXPECT_ERROR("x 1 1.5\n", -EINVAL, "integer timestamp");
    EXPECT_ERROR("x 1 9223372036854775808\n", -EINVAL, "integer timestamp");
    EXPECT_ERROR("x 1 2 3\n", -EINVAL, "after the timestamp");
    EXPECT_ERROR("x-y 1\n", -EINVAL, "invalid character after metric name");
    EXPECT_ERROR("1x 1\n", -EINVAL, "invalid metric name");
    EXPECT_ERROR("{a=\"b\"} 1\n", -EINVAL, "invalid metric name");
    EXPECT_ERROR("\xff\xfe\x80garbage\n", -EINVAL, "line 1: invalid metric name");
    EXPECT_ERROR("ok 1\nx\0 1\n", -EINVAL, "line 2: NUL byte");
    EXPECT_ERROR("# TYPE x gauge\n# TYPE x gauge\n", -EINVAL, "line 2: second TYPE line");
    EXPECT_ERROR("x 1\n# TYPE x gauge\n", -EINVAL, "TYPE reported after samples");
    EXPECT_ERROR("# TYPE x histogram\n# TYPE x_count gauge\n", -EINVAL, "second TYPE");
    EXPECT_ERROR("# HELP x a\n# HELP x b\n", -EINVAL, "second HELP line");
    EXPECT_ERROR("# TYPE x gauges\n", -EINVAL, "unknown metric type \"gauges\"");
    EXPECT_ERROR("# TYPE x\n", -EINVAL, "has no type");
    EXPECT_ERROR("# TYPE x gauge extra\n", -EINVAL, "unexpected text after the type");
    EXPECT_ERROR("# TYPE 1x gauge\n", -EINVAL, "invalid metric name");
    EXPECT_ERROR("# HELP x{ doc\n", -EINVAL, "invalid metric name");
    EXPECT_ERROR("# TYPE h histogram\nh_bucket{le=\"big\"} 1\n", -EINVAL, "'le' label");
    EXPECT_ERROR("# TYPE s summary\ns{quantile=\"\"} 1\n", -EINVAL, "'quantile' label");
    EXPECT_ERROR("# HELP x doc\nx_count 1\n# TYPE x summary\n", -EINVAL, "comes after samples");
}

static void test_bounds(void)
{
    size_t cap = EXP_MAX_LINE + 256, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return;

    /* Line length: exactly the limit parses, one byte more does not. */
    n = (size_t)snprintf(buf, cap, "ok 1\nx{a=\"");
    size_t fill = EXP_MAX_LINE - 9; /* x{a=" ... "} 1 is exactly the limit */
    memset(buf + n, 'v', fill);
    n += fill;
    n += (size_t)snprintf(buf + n, cap - n, "\"} 1\n");
    struct exp_families f;
    char err[256];
    CHECK_INT(exp_parse(buf, n, &f, err, sizeof err), 0);
    exp_families_free(&f);
    memmove(buf + 12, buf + 11, n - 11);
    n++;
    expect_error(buf, n, -E2BIG, "line 2: line longer than 65536 bytes");

    /* Labels: 64 parse, 65 do not. */
    for (int count = 64; count <= 65; count++) {
        n = (size_t)snprintf(buf, cap, "x{");
        for (int i = 0; i < count; i++)
            n += (size_t)snprintf(buf + n, cap - n, "l%d=\"%d\",", i, i);
        n += (size_t)snprintf(buf + n, cap - n, "} 1\n");
        if (count == 64) {
            CHECK_INT(exp_parse(buf, n, &f, err, sizeof err), 0);
            CHECK(f.n == 1 && f.fam[0].samples[0].nlabels == 64);
            exp_families_free(&f);
        } else {
            expect_error(buf, n, -E2BIG, "line 1: more than 64 labels");
        }
    }

    /* Name length. */
    memset(buf, 'n', EXP_MAX_NAME + 1);
    memcpy(buf + EXP_MAX_NAME + 1, " 1\n", 3);
    expect_error(buf, EXP_MAX_NAME + 4, -E2BIG, "metric name longer than 1024 bytes");
    memcpy(buf + EXP_MAX_NAME, " 1\n", 3);
    CHECK_INT(exp_parse(buf, EXP_MAX_NAME + 3, &f, err, sizeof err), 0);
    exp_families_free(&f);
    n = (size_t)snprintf(buf, cap, "x{");
    memset(buf + n, 'l', EXP_MAX_NAME + 1);
    n += EXP_MAX_NAME + 1;
    n += (size_t)snprintf(buf + n, cap - n, "=\"\"} 1\n");
    expect_error(buf, n, -E2BIG, "label name longer than 1024 bytes");
    free(buf);

    /* Series: the limit parses, one more does not. */
    size_t big = (EXP_MAX_SERIES + 1) * 4;
    buf = malloc(big);
    if (!buf)
        return;
    for (size_t i = 0; i < EXP_MAX_SERIES + 1; i++)
        memcpy(buf + i * 4, "a 1\n", 4);
    CHECK_INT(exp_parse(buf, EXP_MAX_SERIES * 4, &f, err, sizeof err), 0);
    CHECK_INT(f.nseries, EXP_MAX_SERIES);
    exp_families_free(&f);
    expect_error(buf, big, -E2BIG, "line 200001: more than 200000 series");
    free(buf);

    /* Families: HELP lines alone can create them. */
    big = (EXP_MAX_FAMILIES + 1) * 24;
    buf = malloc(big);
    if (!buf)
        return;
    n = 0;
    for (size_t i = 0; i <= EXP_MAX_FAMILIES; i++)
        n += (size_t)snprintf(buf + n, big - n, "# HELP f%zu d\n", i);
    expect_error(buf, n, -E2BIG, "more than 200000 metric families");
    free(buf);

    /* Total size is checked before anything is read. */
    buf = malloc(EXP_MAX_INPUT + 1);
    if (!buf)
        return;
    memset(buf, '\n', EXP_MAX_INPUT + 1);
    CHECK_INT(exp_parse(buf, EXP_MAX_INPUT, &f, err, sizeof err), 0);
    exp_families_free(&f);
    expect_error(buf, EXP_MAX_INPUT + 1, -E2BIG, "over the limit of 16777216 bytes");
    free(buf);

    /* A huge number of digits is still one float. */
    buf = malloc(1024);
    if (!buf)
        return;
    n = (size_t)snprintf(buf, 1024, "x 0.");
    memset(buf + n, '0', 500);
    n += 500;
    n += (size_t)snprintf(buf + n, 1024 - n, "1\n");
    CHECK_INT(exp_parse(buf, n, &f, err, sizeof err), 0);
    CHECK(f.n == 1 && f.fam[0].samples[0].value == 0);
    exp_families_free(&f);
    buf[2] = '1';
    buf[3] = '0';
    expect_error(buf, n, -EINVAL, "out of range");
    free(buf);
}

/* The message buffer may be absent or tiny. */
static void test_err_buffer(void)
{
    struct exp_families f;
    char tiny[8];
    CHECK_INT(exp_parse("x{", 2, &f, NULL, 0), -EINVAL);
    CHECK_INT(exp_parse("x{", 2, &f, tiny, sizeof tiny), -EINVAL);
    CHECK_STR(tiny, "line 1:");
}

int main(void)
{
    test_types();
    test_grouping();
    test_lexical();
    test_escapes();
    test_special_values();
    test_format_value();
    test_writer();
    test_builder_checks();
    test_malformed();
    test_bounds();
    test_err_buffer();
    return check_done();
}
