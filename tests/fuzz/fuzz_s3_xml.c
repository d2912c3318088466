/* fuzz_s3_xml.c - libFuzzer harness for the S3 ListObjectsV2 and error-document parsers.
 *
 * The listing starts with one entry so the "a failed page leaves the listing as it was"
 * rule is checked on every input, and each accepted entry is checked against the bounds the
 * parser promises. The first bytes also go through dl_parse_iso8601. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../downloader/listing.h"

static void check_entries(const struct dl_listing *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        const struct dl_entry *e = &l->entries[i];
        size_t dlen = strnlen(e->digest, sizeof(e->digest));

        if (!e->path || strlen(e->path) > DL_MAX_KEY_LEN || dlen == sizeof(e->digest))
            abort();
        if (e->size > INT64_MAX || e->mtime < 0)
            abort();
        if (e->digest_kind == CM_HASH_NONE && dlen != 0)
            abort();
        if (e->digest_kind == CM_HASH_MD5 && dlen != 32)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dl_listing l = {0};
    char err[256], code[64], msg[128], date[40];
    int rc;

    if (dl_listing_add(&l, "seed", 1, 0, NULL) != 0)
        return 0;
    rc = dl_parse_s3_list((const char *)data, size, &l, err, sizeof(err));
    if (rc != 0 && (l.n != 1 || l.truncated || l.next_token || err[0] == '\0'))
        abort();
    if (rc == 0 && l.truncated != (l.next_token != NULL))
        abort();
    check_entries(&l);
    dl_listing_free(&l);

    rc = dl_parse_s3_error((const char *)data, size, code, sizeof(code), msg, sizeof(msg));
    if (strnlen(code, sizeof(code)) == sizeof(code) || strnlen(msg, sizeof(msg)) == sizeof(msg))
        abort();
    if (rc != 0 && (code[0] || msg[0]))
        abort();

    if (size < sizeof(date)) {
        memcpy(date, data, size);
        date[size] = '\0';
        if (dl_parse_iso8601(date) < -1)
            abort();
    }
    return 0;
}
