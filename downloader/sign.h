/* sign.h - AWS Signature Version 4 and its Volcengine TOS twin (TOS4-HMAC-SHA256).
 *
 * Both sign a canonical request:
 *   METHOD \n canonical-URI \n canonical-query \n canonical-headers \n signed-headers \n payload
 * and differ only in names: AWS4 derives its key from "AWS4"+secret and scopes to
 * date/region/service/aws4_request; TOS4 derives from the bare secret and scopes to
 * date/region/tos/request. The signer is a pure function of its input, so the published
 * vectors test it directly. */
#ifndef DL_SIGN_H
#define DL_SIGN_H

#include <stddef.h>

enum dl_sign_flavor { DL_SIGN_AWS4, DL_SIGN_TOS4 };

struct dl_sign_header {
    const char *name; /* any case; lowercased and sorted by the signer */
    const char *value; /* leading/trailing spaces trimmed, inner runs collapsed by the signer */
};

struct dl_sign_input {
    enum dl_sign_flavor flavor;
    const char *access_key;
    const char *secret_key;
    const char *region;
    const char *service;  /* AWS4 only ("s3", "sts", "service"); TOS4 always uses "tos" */
    const char *datetime; /* ISO basic, "20150830T123600Z"; its first 8 chars are the date */
    const char *method;   /* "GET", "HEAD", ... */
    const char *path;     /* the path exactly as sent on the wire, already URI-encoded */
    const char *query;    /* query as sent on the wire without '?', pairs already encoded;
                             NULL or "" for none. The signer sorts the pairs and adds '=' to
                             bare keys. */
    const struct dl_sign_header *headers; /* every header to sign (must include host) */
    size_t nheaders;
    const char *payload_hash; /* hex sha256 of the body, or "UNSIGNED-PAYLOAD" */
};

/* Sign. On success returns 0 and writes the full Authorization header value
 * ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...") into auth, and the
 * hex signature into signature (65 bytes) when signature is not NULL.
 * Returns -EINVAL for a missing field, -ENOSPC when auth is too small. */
int dl_sign(const struct dl_sign_input *in, char *auth, size_t authlen, char *signature);

/* URI-encode s per the SigV4 rules (unreserved A-Z a-z 0-9 - _ . ~ kept, everything else
 * %XX uppercase); '/' is kept when keep_slash. Returns the length written, or -ENOSPC. */
int dl_sign_uri_encode(const char *s, int keep_slash, char *out, size_t outlen);

/* The hex sha256 of the empty string, for bodiless requests. */
#define DL_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#endif
