/* uri.c - model URI parsing (SPEC §2, see uri.h). */
#include "uri.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "names.h"

const char *cm_uri_source_name(enum cm_uri_kind kind)
{
    static const char *const names[] = {"huggingface", "s3", "tos", "local"};
    return names[kind];
}

static int fail(char *err, size_t errlen, const char *msg, const char *uri)
{
    snprintf(err, errlen, "invalid model URI '%.200s': %s", uri, msg);
    return -EINVAL;
}

/* HF repo ids: one or two segments of [A-Za-z0-9._-], no leading/trailing '.', '-', no "..". */
static bool hf_segment_ok(const char *s, size_t n)
{
    if (n == 0 || n > 96 || s[0] == '.' || s[0] == '-' || s[n - 1] == '.' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || (c == '.' && i + 1 < n && s[i + 1] == '.'))
            return false;
    }
    return true;
}

static int parse_hf(const char *rest, const char *uri, struct cm_uri *out, char *err, size_t errlen)
{
    const char *at = strchr(rest, '@');
    size_t rlen = at ? (size_t)(at - rest) : strlen(rest);
    const char *slash = memchr(rest, '/', rlen);
    if (!slash)
        return fail(err, errlen, "a Hugging Face repo is 'org/name'", uri);
    if (!hf_segment_ok(rest, (size_t)(slash - rest)) ||
        !hf_segment_ok(slash + 1, rlen - (size_t)(slash - rest) - 1))
        return fail(err, errlen,
                    "a Hugging Face repo is 'org/name' with letters, digits, '.', '_', '-'", uri);
    if (rlen >= sizeof out->repo)
        return fail(err, errlen, "repo id too long", uri);
    memcpy(out->repo, rest, rlen);
    out->repo[rlen] = '\0';
    if (at) {
        const char *rev = at + 1;
        size_t n = strlen(rev);
        if (n == 0 || n >= sizeof out->revision)
            return fail(err, errlen, "empty or too long revision after '@'", uri);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)rev[i] <= 0x20 || rev[i] == 0x7f)
                return fail(err, errlen, "revision contains a space or control character", uri);
        memcpy(out->revision, rev, n + 1);
    }
    out->kind = CM_URI_HF;
    return 0;
}

/* S3 bucket rules (3-63 of [a-z0-9.-], starting and ending alphanumeric); TOS uses the same. */
static bool bucket_ok(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '.') && i > 0 && i + 1 < n))
            return false;
    }
    return true;
}

static int parse_bucket(const char *rest, const char *uri, struct cm_uri *out, char *err,
                        size_t errlen)
{
    const char *slash = strchr(rest, '/');
    size_t blen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!bucket_ok(rest, blen))
        return fail(err, errlen, "bucket names are 3-63 characters of a-z, 0-9, '.', '-'", uri);
    memcpy(out->bucket, rest, blen);
    out->bucket[blen] = '\0';
    const char *prefix = slash ? slash + 1 : "";
    size_t plen = strlen(prefix);
    if (plen >= sizeof out->prefix)
        return fail(err, errlen, "key prefix too long", uri);
    /* the prefix must itself be a safe relative name (a trailing '/' is allowed) */
    size_t check = plen && prefix[plen - 1] == '/' ? plen - 1 : plen;
    const char *why = check ? cm_name_check(prefix, check) : NULL;
    if (why)
        return fail(err, errlen, why, uri);
    memcpy(out->prefix, prefix, plen + 1);
    return 0;
}

int cm_uri_parse(const char *s, struct cm_uri *out, char *err, size_t errlen)
{
    static const struct {
        const char *scheme;
        enum cm_uri_kind kind;
    } schemes[] = {
        {"hf://", CM_URI_HF},   {"huggingface://", CM_URI_HF}, {"s3://", CM_URI_S3},
        {"tos://", CM_URI_TOS}, {"file://", CM_URI_FILE},
    };
    memset(out, 0, sizeof *out);
    if (!s || !*s)
        return fail(err, errlen, "empty", "");
    if (strlen(s) >= CM_URI_MAX)
        return fail(err, errlen, "longer than 4095 bytes", "(long)");
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail(err, errlen, "contains a control character", s);
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncmp(s, schemes[i].scheme, n) != 0)
            continue;
        const char *rest = s + n;
        out->kind = schemes[i].kind;
        if (out->kind == CM_URI_HF)
            return parse_hf(rest, s, out, err, errlen);
        if (out->kind != CM_URI_FILE)
            return parse_bucket(rest, s, out, err, errlen);
        if (rest[0] != '/')
            return fail(err, errlen, "file:// needs an absolute path (file:///dir)", s);
        snprintf(out->path, sizeof out->path, "%s", rest);
        size_t plen = strlen(out->path);
        while (plen > 1 && out->path[plen - 1] == '/')
            out->path[--plen] = '\0';
        if (plen > 1 && cm_name_check(out->path + 1, plen - 1))
            return fail(err, errlen, "path has '.', '..' or '//' components", s);
        return 0;
    }
    if (strstr(s, "://"))
        return fail(err, errlen, "unknown scheme (use hf://, s3://, tos:// or file://)", s);
    int rc = parse_hf(s, s, out, err, errlen);
    if (rc == 0)
        out->bare = true;
    else
        fail(err, errlen,
             "expected hf://org/name, s3://bucket/prefix, tos://bucket/prefix, "
             "file:///dir or org/name",
             s);
    return rc;
}

int cm_uri_default_name(const struct cm_uri *u, char *out, size_t outlen)
{
    const char *src;
    char buf[CM_URI_MAX];
    if (u->kind == CM_URI_HF) {
        src = u->repo;
    } else {
        snprintf(buf, sizeof buf, "%s", u->kind == CM_URI_FILE ? u->path : u->prefix);
        size_t n = strlen(buf);
        while (n && buf[n - 1] == '/')
            buf[--n] = '\0';
        const char *last = strrchr(buf, '/');
        src = last ? last + 1 : buf;
        if (!*src)
            src = u->kind == CM_URI_FILE ? "" : u->bucket;
    }
    if (!*src || strlen(src) >= outlen)
        return -EINVAL;
    strcpy(out, src);
    return 0;
}
