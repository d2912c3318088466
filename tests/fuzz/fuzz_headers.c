/* fuzz_headers.c - libFuzzer harness for the HTTP header parsers (Content-Range, Retry-After,
 * RateLimit, Link): origins control these bytes. Asserts the parsers' promises: a parsed
 * range is ordered, a next link fits its buffer and is NUL-terminated. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../../downloader/http.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = malloc(size + 1);
    char out[128];
    uint64_t a, b;
    int64_t t;
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (dl_parse_content_range(s, &a, &b, &t) == 0)
        assert(a <= b && (t < 0 || (uint64_t)t > b));
    (void)dl_parse_retry_after(s, 1700000000);
    (void)dl_parse_ratelimit(s);
    if (dl_parse_link_next(s, out, sizeof out) == 0)
        assert(strlen(out) < sizeof out && out[0]);
    free(s);
    return 0;
}
