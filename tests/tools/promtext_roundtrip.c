/* promtext_roundtrip.c - read exposition text on stdin, parse it (exporter/promtext.h),
 * optionally apply an engine's rules (exporter/rules.h), write the result on stdout.
 *
 *   promtext_roundtrip [ENGINE] < metrics.txt
 *
 * Exit 0 on success (an unknown engine is a warning on stderr, output unchanged), 2 when the
 * input does not parse (the parser's message on stderr), 1 on any other failure. The
 * integration test feeds its output to `promtool check metrics`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../exporter/promtext.h"
#include "../../exporter/rules.h"

/* All of stdin, up to one byte past the parser's limit so that it reports the bound. */
static char *read_all(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *grown = cap > EXP_MAX_INPUT ? NULL : realloc(buf, cap * 2);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0)
            break;
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    struct exp_families in = {0}, out = {0};
    struct exp_buf text = {0};
    char err[512];
    size_t len;
    int rc;

    if (argc > 2) {
        fprintf(stderr, "usage: %s [ENGINE] < metrics.txt\n", argv[0]);
        return 1;
    }
    char *input = read_all(&len);
    if (!input) {
        fprintf(stderr, "promtext_roundtrip: out of memory\n");
        return 1;
    }
    rc = exp_parse(input, len, &in, err, sizeof err);
    free(input);
    if (rc < 0) {
        fprintf(stderr, "promtext_roundtrip: parse error: %s\n", err);
        return 2;
    }
    const struct exp_families *result = &in;
    if (argc == 2) {
        rc = exp_transform(&in, argv[1], &out, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "promtext_roundtrip: transform: %s\n", err);
            exp_families_free(&in);
            return 1;
        }
        if (rc == EXP_WARN_UNKNOWN_ENGINE)
            fprintf(stderr, "promtext_roundtrip: warning: %s\n", err);
        result = &out;
    }
    rc = exp_write(result, &text);
    if (rc == 0 && text.len && fwrite(text.data, 1, text.len, stdout) != text.len)
        rc = -EIO;
    exp_families_free(&in);
    exp_families_free(&out);
    exp_buf_free(&text);
    if (rc < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "promtext_roundtrip: writing output: %s\n", strerror(rc < 0 ? -rc : EIO));
        return 1;
    }
    return 0;
}
