/* test_http.c - the HTTP layer's header parsers: Content-Range, Retry-After, RateLimit, Link.
 * Their input comes from origins and is hostile; each must answer or refuse, never guess. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "../../downloader/http.h"
#include "check.h"

static void test_content_range(void)
{
    uint64_t a, b;
    int64_t t;
    CHECK_INT(dl_parse_content_range("bytes 0-9/100", &a, &b, &t), 0);
    CHECK_INT(a, 0);
    CHECK_INT(b, 9);
    CHECK_INT(t, 100);
    CHECK_INT(dl_parse_content_range("bytes 10-19/*", &a, &b, &t), 0);
    CHECK_INT(t, -1);
    CHECK_INT(dl_parse_content_range("BYTES 5-5/6\r\n", &a, &b, &t), 0);
    CHECK_INT(dl_parse_content_range("bytes 9-1/100", &a, &b, &t), -EINVAL);
    CHECK_INT(dl_parse_content_range("bytes 0-99/100", &a, &b, &t), 0);
    CHECK_INT(dl_parse_content_range("bytes 0-100/100", &a, &b, &t), -EINVAL);
    CHECK_INT(dl_parse_content_range("bytes */100", &a, &b, &t), -EINVAL);
    CHECK_INT(dl_parse_content_range("items 0-1/2", &a, &b, &t), -EINVAL);
    CHECK_INT(dl_parse_content_range("bytes 0-1/2x", &a, &b, &t), -EINVAL);
    CHECK_INT(dl_parse_content_range("bytes 0-1/99999999999999999999999", &a, &b, &t), -EINVAL);
    CHECK_INT(dl_parse_content_range("", &a, &b, &t), -EINVAL);
}

static void test_retry_after(void)
{
    time_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */
    CHECK(dl_parse_retry_after("3", now) == 3);
    CHECK(dl_parse_retry_after(" 1.5\r\n", now) == 1.5);
    CHECK(dl_parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now) == 10);
    CHECK(dl_parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now) == 0);
    CHECK(dl_parse_retry_after("soon", now) < 0);
    CHECK(dl_parse_retry_after("3 apples", now) < 0);
    CHECK(dl_parse_retry_after("1e999", now) < 0);
}

static void test_ratelimit(void)
{
    CHECK(dl_parse_ratelimit("\"api\";r=0;t=55") == 55);
    CHECK(dl_parse_ratelimit("\"api\"; r=0; t=7") == 7);
    CHECK(dl_parse_ratelimit("\"api\";r=0") < 0);
    CHECK(dl_parse_ratelimit("t=5") < 0);
    CHECK(dl_parse_ratelimit("") < 0);
}

static void test_link(void)
{
    char out[256];
    CHECK_INT(dl_parse_link_next("<https://h/api?cursor=a>; rel=\"next\"", out, sizeof out), 0);
    CHECK_STR(out, "https://h/api?cursor=a");
    CHECK_INT(dl_parse_link_next("<https://h/p1>; rel=\"prev\", <https://h/p3>; rel=\"next\"", out,
                                 sizeof out),
              0);
    CHECK_STR(out, "https://h/p3");
    CHECK_INT(dl_parse_link_next("<https://h/p1>; rel=\"last\"", out, sizeof out), -ENOENT);
    CHECK_INT(dl_parse_link_next("<https://h/p1; rel=\"next\"", out, sizeof out), -ENOENT);
    CHECK_INT(dl_parse_link_next("<>; rel=\"next\"", out, sizeof out), -ENOENT);
    CHECK_INT(dl_parse_link_next("<https://a-very-long-url>; rel=\"next\"", out, 8), -ENOENT);
}

int main(void)
{
    test_content_range();
    test_retry_after();
    test_ratelimit();
    test_link();
    return check_done();
}
