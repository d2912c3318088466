/* uri.h - model URIs (SPEC §2).
 *
 *   hf://org/name[@rev]  huggingface://org/name[@rev]  org/name[@rev]  -> Hugging Face
 *   s3://bucket/prefix[/]                                              -> S3
 *   tos://bucket/prefix[/]                                             -> Volcengine TOS
 *   file:///abs/dir                                                    -> local directory
 *
 * A bare org/name is HF only when it is not an existing local path (the caller checks the
 * filesystem; cm_uri_parse reports CM_URI_HF and sets bare). Anything else is an error with a
 * message saying what was expected. */
#ifndef CM_URI_H
#define CM_URI_H

#include <stdbool.h>
#include <stddef.h>

enum cm_uri_kind { CM_URI_HF, CM_URI_S3, CM_URI_TOS, CM_URI_FILE };

#define CM_URI_MAX 4096

struct cm_uri {
    enum cm_uri_kind kind;
    bool bare;             /* HF given as plain org/name */
    char repo[256];        /* HF: "org/name" */
    char revision[256];    /* HF: "@rev" part, "" when absent (caller applies HF_REVISION/main) */
    char bucket[64];       /* S3/TOS */
    char prefix[1024];     /* S3/TOS key prefix (may be "" or end in '/') */
    char path[CM_URI_MAX]; /* FILE: absolute directory path */
};

/* Parse s into out. Returns 0, or -EINVAL with a message in err. */
int cm_uri_parse(const char *s, struct cm_uri *out, char *err, size_t errlen);

/* The source name used in AIBrix's cache layout and the API: "huggingface", "s3", "tos",
 * "local". */
const char *cm_uri_source_name(enum cm_uri_kind kind);

/* Default model name (SPEC §1): HF "org/name"; S3/TOS/file: last non-empty path segment of
 * the prefix (the bucket when the prefix is empty). Returns -EINVAL when none can be made. */
int cm_uri_default_name(const struct cm_uri *u, char *out, size_t outlen);

#endif
