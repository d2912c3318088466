/* env.c - typed parsing of configuration strings and environment variables. */
#include "env.h"
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cm_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "on", "yes"};
    static const char *const no[] = {"0", "false", "off", "no"};
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int cm_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end)
        return -EINVAL;
    *out = v;
    return 0;
}

int cm_parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "KMGT";
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end) {
        const char *u = strchr(units, *end >= 'a' ? *end - 32 : *end);
        if (!u || !*u)
            return -EINVAL;
        int shift = 10 * (int)(u - units + 1);
        end++;
        if (*end == 'i')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
        if (*end)
            return -EINVAL;
        if (v > (UINT64_MAX >> shift))
            return -ERANGE;
        v <<= shift;
    }
    *out = v;
    return 0;
}

int cm_parse_double(const char *s, double *out)
{
    char *end;
    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || isnan(v))
        return -EINVAL;
    *out = v;
    return 0;
}

const char *cm_env_str(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

const char *cm_ca_bundle(const char **var)
{
    static const char *const vars[] = {"AIBRIX_CA_BUNDLE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
                                       "SSL_CERT_FILE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = cm_env_str(vars[i]);
        if (v) {
            if (var)
                *var = vars[i];
            return v;
        }
    }
    return NULL;
}

bool cm_env_bool(const char *name, bool def)
{
    const char *v = cm_env_str(name);
    bool b;
    if (!v)
        return def;
    if (cm_parse_bool(v, &b) == 0)
        return b;
    cm_warn("env", "ignoring %s=%s: not a boolean (use 1/0, true/false, on/off, yes/no)", name, v);
    return def;
}

uint64_t cm_env_u64(const char *name, uint64_t def)
{
    const char *v = cm_env_str(name);
    uint64_t n;
    if (!v)
        return def;
    if (cm_parse_u64(v, &n) == 0)
        return n;
    cm_warn("env", "ignoring %s=%s: not a non-negative integer", name, v);
    return def;
}

uint64_t cm_env_size(const char *name, uint64_t def)
{
    const char *v = cm_env_str(name);
    uint64_t n;
    if (!v)
        return def;
    if (cm_parse_size(v, &n) == 0)
        return n;
    cm_warn("env", "ignoring %s=%s: not a size (bytes, or with K/M/G/T suffix)", name, v);
    return def;
}

double cm_env_double(const char *name, double def)
{
    const char *v = cm_env_str(name);
    double d;
    if (!v)
        return def;
    if (cm_parse_double(v, &d) == 0)
        return d;
    cm_warn("env", "ignoring %s=%s: not a number", name, v);
    return def;
}
