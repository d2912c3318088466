/* fuzz_hf_json.c - libFuzzer harness for the HF tree and revision JSON parsers.
 *
 * Every input goes through both. Tree pages must never touch the continuation state, must
 * leave the seeded listing untouched on failure, and must only report digests that are
 * lowercase hex of the length their kind implies; a revision sha is 40 lowercase hex. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../downloader/listing.h"

static bool lower_hex(const char *s, size_t want)
{
    size_t i;

    if (strnlen(s, want + 1) != want)
        return false;
    for (i = 0; i < want; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static void check_entries(const struct dl_listing *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        const struct dl_entry *e = &l->entries[i];

        if (!e->path || !e->path[0] || strlen(e->path) > DL_MAX_KEY_LEN)
            abort();
        if (e->size > (1ULL << 53) || e->mtime != 0)
            abort();
        if (e->digest_kind == CM_HASH_NONE && e->digest[0])
            abort();
        if (e->digest_kind == CM_HASH_GIT_SHA1 && !lower_hex(e->digest, 40))
            abort();
        if (e->digest_kind == CM_HASH_SHA256 && !lower_hex(e->digest, 64))
            abort();
        if (e->digest_kind != CM_HASH_NONE && e->digest_kind != CM_HASH_GIT_SHA1 &&
            e->digest_kind != CM_HASH_SHA256)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dl_listing l = {0};
    char err[256], sha[41];
    int rc;

    if (dl_listing_add(&l, "seed", 1, 0, NULL) != 0)
        return 0;
    l.truncated = true;
    rc = dl_parse_hf_tree((const char *)data, size, &l, err, sizeof(err));
    if (!l.truncated || l.next_token)
        abort();
    if (rc != 0 && (l.n != 1 || err[0] == '\0'))
        abort();
    check_entries(&l);
    dl_listing_free(&l);

    rc = dl_parse_hf_revision((const char *)data, size, sha, err, sizeof(err));
    if (rc == 0 && !lower_hex(sha, 40))
        abort();
    if (rc != 0 && (sha[0] || err[0] == '\0'))
        abort();
    return 0;
}
