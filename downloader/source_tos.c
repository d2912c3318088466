/* source_tos.c - tos://bucket/prefix: Volcengine TOS over its native API, signed with TOS4.
 *
 * Only configuration lives here (SPEC §3): TOS_ENDPOINT, TOS_REGION and the static keys
 * TOS_ACCESS_KEY / TOS_SECRET_KEY / TOS_SECURITY_TOKEN (explicit config wins), plus what
 * TOS's error codes mean. Listing, reads and signing are shared with S3 in objstore.c.
 *
 * The endpoint and the region must agree for a signature to verify, so when only one of
 * them is given the other follows it: no TOS_ENDPOINT means tos-<region>.volces.com, and no
 * TOS_REGION with an endpoint tos-<region>.volces.com (or .ivolces.com) takes its region.
 * With neither, both defaults (tos-cn-beijing.volces.com, cn-beijing) apply. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/env.h"
#include "listing.h"
#include "objstore.h"

static const struct dl_objstore_error tos_errors[] = {
    {"NoSuchBucket", DL_ERR_NOTFOUND, "bucket does not exist", true},
    {"NoSuchKey", DL_ERR_NOTFOUND, "no such object", false},
    {"AccessDenied", DL_ERR_ACCESS, "access denied", false},
    {"SignatureDoesNotMatch", DL_ERR_ACCESS,
     "access denied: the request signature does not match (check the secret key)", true},
    {"InvalidAccessKeyId", DL_ERR_ACCESS, "access denied: the server does not know this access key",
     true},
    {"ExpiredToken", DL_ERR_ACCESS, "access denied: the security token has expired", true},
    {"InvalidSecurityToken", DL_ERR_ACCESS, "access denied: the security token is not valid", true},
    {"InvalidBucketName", DL_ERR_INVALID, "invalid bucket name", true},
    {NULL, DL_OK, NULL, false},
};

static const struct dl_objstore_kind tos_kind = {
    .scheme = "tos",
    .origin = DL_ORIGIN_TOS,
    .flavor = DL_SIGN_TOS4,
    .service = "tos",
    .hdr_date = "x-tos-date",
    .hdr_payload = "x-tos-content-sha256",
    .hdr_token = "x-tos-security-token",
    .parse_list = dl_parse_tos_list,
    .parse_error = dl_parse_tos_error,
    .errors = tos_errors,
};

/* The region of a public endpoint host "tos-<region>.volces.com" / ".ivolces.com" into out;
 * false for any other host (including the S3-compatible "tos-s3-<region>" ones). */
static bool region_of_host(const char *host, char *out, size_t outlen)
{
    static const char *const domains[] = {".volces.com", ".ivolces.com"};
    if (strncmp(host, "tos-", 4) != 0 || strncmp(host, "tos-s3-", 7) == 0)
        return false;
    for (size_t i = 0; i < sizeof domains / sizeof *domains; i++) {
        size_t hl = strlen(host), dl = strlen(domains[i]);
        if (hl <= 4 + dl || strcmp(host + hl - dl, domains[i]) != 0)
            continue;
        size_t rl = hl - 4 - dl;
        if (memchr(host + 4, '.', rl) || rl >= outlen)
            return false;
        memcpy(out, host + 4, rl);
        out[rl] = '\0';
        return true;
    }
    return false;
}

/* Copy one key into dst; -EINVAL with a message when it does not fit. */
static int copy_key(char *dst, size_t dstlen, const char *v, const char *name, char *err,
                    size_t errlen)
{
    if (strlen(v) >= dstlen) {
        snprintf(err, errlen, "%s is too long (over %zu bytes)", name, dstlen - 1);
        return -EINVAL;
    }
    snprintf(dst, dstlen, "%s", v);
    return 0;
}

/* Static keys: explicit ak/sk (+ session_token) when either is given, else the TOS_* env
 * variables. Exactly one of a pair is a configuration error; neither means anonymous. */
static int tos_keys(const struct dl_source_config *cfg, struct dl_aws_creds *k, char *err,
                    size_t errlen)
{
    bool explicit_keys = (cfg->ak && *cfg->ak) || (cfg->sk && *cfg->sk);
    const char *ak_name = explicit_keys ? "ak" : "TOS_ACCESS_KEY";
    const char *sk_name = explicit_keys ? "sk" : "TOS_SECRET_KEY";
    const char *tok_name = explicit_keys ? "session_token" : "TOS_SECURITY_TOKEN";
    const char *ak = explicit_keys ? cfg->ak : cm_env_str(ak_name);
    const char *sk = explicit_keys ? cfg->sk : cm_env_str(sk_name);
    const char *tok = explicit_keys ? cfg->session_token : cm_env_str(tok_name);
    bool have_ak = ak && *ak, have_sk = sk && *sk;

    memset(k, 0, sizeof *k);
    if (have_ak != have_sk) {
        snprintf(err, errlen, "TOS credentials incomplete: %s is set but %s is not",
                 have_ak ? ak_name : sk_name, have_ak ? sk_name : ak_name);
        return -EINVAL;
    }
    if (!have_ak)
        return 0;
    if (copy_key(k->access_key, sizeof k->access_key, ak, ak_name, err, errlen) ||
        copy_key(k->secret_key, sizeof k->secret_key, sk, sk_name, err, errlen) ||
        (tok && copy_key(k->session_token, sizeof k->session_token, tok, tok_name, err, errlen)))
        return -EINVAL;
    k->provider = explicit_keys ? "explicit" : "env";
    return 0;
}

struct dl_source *dl_source_tos_open(const struct dl_source_config *cfg, struct dl_http *http,
                                     char *err, size_t errlen)
{
    const char *region = dl_objstore_pick(cfg->region, cm_env_str("TOS_REGION"), NULL);
    const char *endpoint = dl_objstore_pick(cfg->endpoint, cm_env_str("TOS_ENDPOINT"), NULL);
    const char *what = cfg->endpoint && *cfg->endpoint ? "endpoint" : "TOS_ENDPOINT";
    char inferred[64], dflt[128];
    struct dl_objstore_endpoint ep;

    if (endpoint && dl_objstore_parse_endpoint(endpoint, what, &ep, err, errlen) != 0)
        return NULL;
    if (!region && endpoint && region_of_host(ep.host, inferred, sizeof inferred))
        region = inferred;
    if (!region)
        region = "cn-beijing";
    if (strchr(region, '/') || strpbrk(region, " \t\r\n")) {
        snprintf(err, errlen, "TOS region '%.64s' is not a region name", region);
        return NULL;
    }
    if (!endpoint) {
        snprintf(dflt, sizeof dflt, "tos-%.64s.volces.com", region);
        if (dl_objstore_parse_endpoint(dflt, "TOS_REGION", &ep, err, errlen) != 0)
            return NULL;
    }
    struct dl_objstore_auth auth = {0};
    if (tos_keys(cfg, &auth.keys, err, errlen) != 0) {
        explicit_bzero(&auth, sizeof auth);
        return NULL;
    }
    return dl_objstore_new(&tos_kind, cfg, http, &ep, dl_objstore_host_is_literal(ep.host), region,
                           &auth, err, errlen);
}
