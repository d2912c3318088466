/* source_s3.c - s3://bucket/prefix: S3 and S3-compatible stores, signed with SigV4.
 *
 * Only configuration lives here (SPEC §3): endpoint, region and the credential chain, plus
 * what S3's error codes mean. Listing, reads and signing are shared with TOS in objstore.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/env.h"
#include "listing.h"
#include "objstore.h"

static const struct dl_objstore_error s3_errors[] = {
    {"NoSuchBucket", DL_ERR_NOTFOUND, "bucket does not exist", true},
    {"NoSuchKey", DL_ERR_NOTFOUND, "no such object", false},
    {"AccessDenied", DL_ERR_ACCESS, "access denied", false},
    {"AllAccessDisabled", DL_ERR_ACCESS, "access denied: all access to this bucket is disabled",
     true},
    {"InvalidAccessKeyId", DL_ERR_ACCESS, "access denied: the server does not know this access key",
     true},
    {"SignatureDoesNotMatch", DL_ERR_ACCESS,
     "access denied: the request signature does not match (check the secret key)", true},
    {"ExpiredToken", DL_ERR_ACCESS, "access denied: the session token has expired", true},
    {"InvalidToken", DL_ERR_ACCESS, "access denied: the session token is not valid", true},
    {"AuthorizationHeaderMalformed", DL_ERR_INVALID,
     "the signing region is wrong for this bucket (set AWS_REGION)", true},
    {"PermanentRedirect", DL_ERR_INVALID,
     "the bucket is in another region or endpoint (set AWS_REGION or AWS_ENDPOINT_URL_S3)", true},
    {"InvalidBucketName", DL_ERR_INVALID, "invalid bucket name", true},
    {NULL, DL_OK, NULL, false},
};

static const struct dl_objstore_kind s3_kind = {
    .scheme = "s3",
    .origin = DL_ORIGIN_S3,
    .flavor = DL_SIGN_AWS4,
    .service = "s3",
    .hdr_date = "x-amz-date",
    .hdr_payload = "x-amz-content-sha256",
    .hdr_token = "x-amz-security-token",
    .parse_list = dl_parse_s3_list,
    .parse_error = dl_parse_s3_error,
    .errors = s3_errors,
};

/* A region goes into the signing scope (so no '/' or blanks) and, for AWS itself, into a
 * host name (lowercase letters, digits and '-' only). S3-compatible stores name their
 * regions freely ("garage", "US"). */
static bool region_ok(const char *r, bool aws)
{
    if (!*r)
        return false;
    for (; *r; r++) {
        bool host_char = (*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-';
        if (aws ? !host_char : ((unsigned char)*r <= ' ' || *r == '/' || *r == 0x7f))
            return false;
    }
    return true;
}

/* AWS itself: s3.<region>.amazonaws.com (.com.cn in the China partition). Virtual-hosted,
 * except for bucket names with a dot, which the wildcard TLS certificate cannot cover. */
static void aws_endpoint(const char *region, const char *bucket, struct dl_objstore_endpoint *ep,
                         bool *path_style)
{
    memset(ep, 0, sizeof *ep);
    snprintf(ep->scheme, sizeof ep->scheme, "https");
    snprintf(ep->host, sizeof ep->host, "s3.%s.amazonaws.com%s", region,
             strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
    snprintf(ep->hostport, sizeof ep->hostport, "%s", ep->host);
    *path_style = strchr(bucket, '.') != NULL;
}

struct dl_source *dl_source_s3_open(const struct dl_source_config *cfg, struct dl_http *http,
                                    char *err, size_t errlen)
{
    const char *region =
        dl_objstore_pick(cfg->region, cm_env_str("AWS_REGION"), cm_env_str("AWS_DEFAULT_REGION"));
    const char *endpoint = dl_objstore_pick(cfg->endpoint, cm_env_str("AWS_ENDPOINT_URL_S3"),
                                            cm_env_str("AWS_ENDPOINT_URL"));
    const char *what = cfg->endpoint && *cfg->endpoint     ? "endpoint"
                       : cm_env_str("AWS_ENDPOINT_URL_S3") ? "AWS_ENDPOINT_URL_S3"
                                                           : "AWS_ENDPOINT_URL";
    struct dl_objstore_endpoint ep;
    bool path_style = true; /* custom endpoints (MinIO, s3rver, ...) are path-style */

    if (!region)
        region = "us-east-1";
    if (!region_ok(region, endpoint == NULL)) {
        snprintf(err, errlen, "S3 region '%.64s' is not a region name", region);
        return NULL;
    }
    if (endpoint) {
        if (dl_objstore_parse_endpoint(endpoint, what, &ep, err, errlen) != 0)
            return NULL;
    } else {
        aws_endpoint(region, cfg->uri->bucket, &ep, &path_style);
    }
    struct dl_objstore_auth auth = {0};
    auth.provider = dl_creds_new(cfg->ak, cfg->sk, cfg->session_token, err, errlen);
    if (!auth.provider)
        return NULL;
    return dl_objstore_new(&s3_kind, cfg, http, &ep, path_style, region, &auth, err, errlen);
}
