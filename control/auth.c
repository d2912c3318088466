/* auth.c - bearer-token check against the key of --api-key-file (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../common/fsutil.h"
#include "../common/hash.h"
#include "../common/log.h"

#define KEY_MAX 4096

static bool have_key;
static char key_digest[65];

int ctl_auth_load(const char *path, char *err, size_t errlen)
{
    static char buf[KEY_MAX + 1];
    ssize_t n = cm_read_file(path, buf, KEY_MAX);
    if (n < 0) {
        snprintf(err, errlen, "--api-key-file %s: %s", path, strerror((int)-n));
        return (int)n;
    }
    if (n == KEY_MAX) {
        snprintf(err, errlen, "--api-key-file %s: larger than %d bytes", path, KEY_MAX - 1);
        explicit_bzero(buf, sizeof buf);
        return -EINVAL;
    }
    char *s = buf, *e = buf + n;
    while (s < e && strchr(" \t\r\n", *s))
        s++;
    while (e > s && strchr(" \t\r\n", e[-1]))
        e--;
    if (s == e) {
        snprintf(err, errlen, "--api-key-file %s is empty", path);
        return -EINVAL;
    }
    cm_sha256_hex(s, (size_t)(e - s), key_digest);
    *e = '\0';
    cm_log_add_secret(s); /* masked should a caller ever echo it into a logged message */
    explicit_bzero(buf, sizeof buf);
    have_key = true;
    return 0;
}

bool ctl_auth_ok(const char *path, const char *authorization)
{
    if (!have_key || (strncmp(path, "/v1/", 4) != 0 && strcmp(path, "/v1") != 0))
        return true;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    char digest[65];
    cm_sha256_hex(tok, len, digest);
    return CRYPTO_memcmp(digest, key_digest, 64) == 0;
}
