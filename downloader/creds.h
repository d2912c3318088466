/* creds.h - S3 credentials, found in the order the AWS SDKs use (SPEC §3):
 *   1. env: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); only one of the
 *      two keys set is a configuration error, never a silent fall-through;
 *   2. web identity: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE -> STS
 *      AssumeRoleWithWebIdentity (AWS_ENDPOINT_URL_STS honoured, AWS_ROLE_SESSION_NAME);
 *   3. container: AWS_CONTAINER_CREDENTIALS_FULL_URI (+ AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
 *      or AWS_CONTAINER_AUTHORIZATION_TOKEN) or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
 *   4. IMDSv2: PUT token, then the instance role (AWS_EC2_METADATA_SERVICE_ENDPOINT,
 *      AWS_EC2_METADATA_DISABLED).
 * Temporary credentials are refreshed when they are within 5 minutes of expiry. No provider
 * ever logs a key, secret or token. */
#ifndef DL_CREDS_H
#define DL_CREDS_H

#include <stddef.h>
#include <stdint.h>

struct dl_aws_creds {
    char access_key[256];
    char secret_key[256];
    char session_token[4096]; /* "" when none */
    int64_t expires;          /* unix seconds; 0 = never */
    const char *provider;     /* "env", "web-identity", "container", "imds", "explicit" */
};

struct dl_creds_provider;

/* Create a provider. Explicit keys (from --download-extra-config ak/sk, or an API body) win
 * over the chain when both are non-NULL; exactly one of them set is -EINVAL.
 * Checks the env keys' consistency at once: only one set gives -EINVAL with a message
 * naming the missing variable. Returns NULL with err set on failure. Free with
 * dl_creds_free. */
struct dl_creds_provider *dl_creds_new(const char *explicit_ak, const char *explicit_sk,
                                       const char *explicit_token, char *err, size_t errlen);

/* Current credentials, fetched or refreshed as needed; thread-safe.
 * Returns 0; -ENOENT when no provider in the chain has credentials (anonymous access is then
 * the caller's choice); -EACCES / -EIO for a provider that answered with an error. */
int dl_creds_get(struct dl_creds_provider *p, struct dl_aws_creds *out, char *err,
                 size_t errlen);

void dl_creds_free(struct dl_creds_provider *p);

#endif
