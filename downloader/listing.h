/* listing.h - what a source says is there, and the parsers of the origins' listing formats.
 *
 * A listing is a flat array of file entries. Parsers here turn one page of an origin's
 * answer (S3 ListObjectsV2 XML, TOS list JSON, HF tree JSON) into entries carrying the raw
 * remote key; the source then strips its prefix and passes every name through
 * cm_name_sanitize (common/names.h) before anyone sees it. Every parser treats its input as
 * hostile: bounded sizes, no trust in lengths, a clear message in err on failure. */
#ifndef DL_LISTING_H
#define DL_LISTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/hash.h"

#define DL_MAX_LISTING_ENTRIES 1000000 /* no model has a million files; bound memory */
#define DL_MAX_KEY_LEN 4096

struct dl_entry {
    char *path;      /* owned; raw key from a parser, relative path once the source is done */
    uint64_t size;
    int64_t mtime;   /* unix seconds; 0 when unknown */
    char *etag;      /* owned, may be NULL; normalized (no W/ prefix, no quotes) */
    enum cm_hash_kind digest_kind; /* CM_HASH_NONE when nothing can be verified */
    char digest[65]; /* lowercase hex (decimal for CRC64ECMA), "" when digest_kind is NONE */
};

struct dl_listing {
    struct dl_entry *entries; /* owned */
    size_t n, cap;
    bool truncated;      /* the origin said there is another page */
    char *next_token;    /* owned; S3/TOS continuation token, or HF next-page URL */
};

/* Append an entry; path and etag are copied. Returns 0, -ENOMEM, or -E2BIG past
 * DL_MAX_LISTING_ENTRIES. The new entry is listing->entries[listing->n - 1]. */
int dl_listing_add(struct dl_listing *l, const char *path, uint64_t size, int64_t mtime,
                   const char *etag);
/* Remove entry i (frees its strings, keeps order). */
void dl_listing_remove(struct dl_listing *l, size_t i);
/* Free everything the listing owns and zero it. */
void dl_listing_free(struct dl_listing *l);
/* Normalize an ETag in place: strip a leading W/ and surrounding double quotes. */
void dl_etag_normalize(char *etag);
/* Parse an ISO-8601 UTC time ("2024-01-02T03:04:05.000Z"); returns -1 on error. */
int64_t dl_parse_iso8601(const char *s);

/* S3 ListObjectsV2 page (XML). Elements are matched by local name, whatever the namespace.
 * Appends one entry per <Contents> (keys ending in '/' are directory markers and skipped),
 * with etag normalized and digest MD5 when the ETag is a plain 32-hex md5 (single-part
 * upload). Sets truncated and next_token (NextContinuationToken). */
int dl_parse_s3_list(const char *xml, size_t len, struct dl_listing *out, char *err,
                     size_t errlen);
/* S3 error document <Error><Code>..</Code><Message>..</Message></Error>: copies Code and
 * Message (either may come back empty). Returns 0 when it was an error document. */
int dl_parse_s3_error(const char *xml, size_t len, char *code, size_t codelen, char *msg,
                      size_t msglen);

/* TOS list-type=2 page (JSON). Appends entries from Contents[{Key,Size,ETag,LastModified,
 * HashCrc64ecma}] with digest CRC64ECMA when HashCrc64ecma is present; sets truncated
 * (IsTruncated) and next_token (NextContinuationToken). */
int dl_parse_tos_list(const char *json, size_t len, struct dl_listing *out, char *err,
                      size_t errlen);
/* TOS error JSON {Code, Message, ...}. Returns 0 when it was one. */
int dl_parse_tos_error(const char *json, size_t len, char *code, size_t codelen, char *msg,
                       size_t msglen);

/* HF tree page: JSON array of {type, oid, size, path, lfs?:{oid,size}}. Files only
 * (directories are skipped). LFS files: etag = lfs.oid, digest SHA256 = lfs.oid, size =
 * lfs.size (else size). Others: etag = oid, digest GIT_SHA1 = oid. Does not touch
 * truncated/next_token (HF pages by the Link header). */
int dl_parse_hf_tree(const char *json, size_t len, struct dl_listing *out, char *err,
                     size_t errlen);
/* HF revision info {"sha": "<40 hex>", ...}: copies the commit sha (41 bytes). */
int dl_parse_hf_revision(const char *json, size_t len, char sha[41], char *err, size_t errlen);

#endif
