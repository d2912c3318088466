/* fuzz_tos_json.c - libFuzzer harness for the TOS list and error JSON parsers.
 *
 * Like fuzz_s3_xml: a failed page must leave the seeded listing untouched, and accepted
 * entries must respect the parser's bounds (CRC64 digests are canonical decimals). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../downloader/listing.h"

static void check_entries(const struct dl_listing *l)
{
    size_t i, j;

    for (i = 0; i < l->n; i++) {
        const struct dl_entry *e = &l->entries[i];
        size_t dlen = strnlen(e->digest, sizeof(e->digest));

        if (!e->path || !e->path[0] || strlen(e->path) > DL_MAX_KEY_LEN)
            abort();
        if (e->size > (1ULL << 53) || e->mtime < 0 || dlen == sizeof(e->digest))
            abort();
        if (e->digest_kind == CM_HASH_NONE && dlen != 0)
            abort();
        if (e->digest_kind == CM_HASH_CRC64ECMA) {
            if (dlen == 0 || dlen > 20 || (dlen > 1 && e->digest[0] == '0'))
                abort();
            for (j = 0; j < dlen; j++)
                if (e->digest[j] < '0' || e->digest[j] > '9')
                    abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dl_listing l = {0};
    char err[256], code[64], msg[128];
    int rc;

    if (dl_listing_add(&l, "seed", 1, 0, NULL) != 0)
        return 0;
    rc = dl_parse_tos_list((const char *)data, size, &l, err, sizeof(err));
    if (rc != 0 && (l.n != 1 || l.truncated || l.next_token || err[0] == '\0'))
        abort();
    if (rc == 0 && l.truncated && (!l.next_token || !l.next_token[0]))
        abort();
    check_entries(&l);
    dl_listing_free(&l);

    rc = dl_parse_tos_error((const char *)data, size, code, sizeof(code), msg, sizeof(msg));
    if (strnlen(code, sizeof(code)) == sizeof(code) || strnlen(msg, sizeof(msg)) == sizeof(msg))
        abort();
    if (rc != 0 && (code[0] || msg[0]))
        abort();
    return 0;
}
