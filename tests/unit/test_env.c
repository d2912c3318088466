/* test_env.c - booleans, sizes and numbers as SPEC §1 accepts them; env fallbacks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "env.h"
#include "log.h"

static void test_bool(void)
{
    const char *yes[] = {"1", "true", "TRUE", "On", "yes", "YES"};
    const char *no[] = {"0", "false", "False", "off", "no", "NO"};
    bool b;
    for (size_t i = 0; i < 6; i++) {
        b = false;
        CHECK_INT(cm_parse_bool(yes[i], &b), 0);
        CHECK(b);
        CHECK_INT(cm_parse_bool(no[i], &b), 0);
        CHECK(!b);
    }
    CHECK_INT(cm_parse_bool("2", &b), -EINVAL);
    CHECK_INT(cm_parse_bool("", &b), -EINVAL);
    CHECK_INT(cm_parse_bool("truex", &b), -EINVAL);
}

static void test_size(void)
{
    uint64_t v;
    CHECK_INT(cm_parse_size("8388608", &v), 0);
    CHECK_INT(v, 8388608);
    CHECK_INT(cm_parse_size("8M", &v), 0);
    CHECK_INT(v, 8 << 20);
    CHECK_INT(cm_parse_size("8MiB", &v), 0);
    CHECK_INT(v, 8 << 20);
    CHECK_INT(cm_parse_size("2g", &v), 0);
    CHECK_INT(v, 2ULL << 30);
    CHECK_INT(cm_parse_size("8X", &v), -EINVAL);
    CHECK_INT(cm_parse_size("-1", &v), -EINVAL);
    CHECK_INT(cm_parse_size("99999999999999999999", &v), -ERANGE);
    CHECK_INT(cm_parse_size("17000000000T", &v), -ERANGE);
    CHECK_INT(cm_parse_u64("12a", &v), -EINVAL);
}

static void test_env(void)
{
    setenv("T_BOOL", "yes", 1);
    setenv("T_BAD", "maybe", 1);
    setenv("T_EMPTY", "", 1);
    setenv("T_SIZE", "16M", 1);
    CHECK(cm_env_bool("T_BOOL", false));
    CHECK(cm_env_bool("T_BAD", true)); /* bad value: default, with a warning */
    CHECK(!cm_env_bool("T_EMPTY", false));
    CHECK(cm_env_str("T_EMPTY") == NULL);
    CHECK_INT(cm_env_size("T_SIZE", 1), 16 << 20);
    CHECK_INT(cm_env_u64("T_UNSET_X", 7), 7);
}

static void test_redact(void)
{
    char out[256];
    cm_log_add_secret("wJalrXUtnFEMI/K7MDENG");
    cm_redact("secret=wJalrXUtnFEMI/K7MDENG!", out, sizeof out);
    CHECK_STR(out, "secret=***!");
    cm_redact("GET /x?X-Amz-Signature=abcdef&part=1", out, sizeof out);
    CHECK_STR(out, "GET /x?X-Amz-Signature=***&part=1");
    cm_redact("https://cdn/x?a=1&token=zzz", out, sizeof out);
    CHECK_STR(out, "https://cdn/x?a=1&token=***");
    cm_redact("abc", out, 2);
    CHECK_STR(out, "a");
    /* the registry is a ring: the newest secrets are always masked */
    char s[32];
    for (int i = 0; i < 100; i++) {
        snprintf(s, sizeof s, "rotating-secret-%03d", i);
        cm_log_add_secret(s);
    }
    cm_redact("k=rotating-secret-099", out, sizeof out);
    CHECK_STR(out, "k=***");
}

/* A hostile name with a newline, a carriage return and an escape in a message stays on one
 * line of the log, and a registered secret in it is masked. */
static void test_log_one_line(void)
{
    char path[] = "/tmp/test_env_logXXXXXX", buf[512] = "";
    int fd = mkstemp(path), saved = dup(2);
    CHECK(fd >= 0 && saved >= 0);
    unlink(path);
    fflush(stderr);
    dup2(fd, 2);
    cm_log_set_level(CM_LOG_INFO);
    cm_log_add_secret("hostile-secret-1234");
    cm_info("test", "skipping '%s'", "a\n2026-01-01T00:00:00.000Z ERROR fake: forged\r\x1b[2J hostile-secret-1234");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    CHECK(n > 0);
    const char *msg = strstr(buf, "INFO test: ");
    CHECK(msg != NULL);
    if (msg)
        CHECK_STR(msg, "INFO test: skipping 'a?2026-01-01T00:00:00.000Z ERROR fake: forged??[2J ***'\n");
}

int main(void)
{
    test_bool();
    test_size();
    test_env();
    test_redact();
    test_log_one_line();
    return check_done();
}
