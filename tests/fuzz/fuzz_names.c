/* fuzz_names.c - libFuzzer harness for remote file names: cm_name_check, the listing clean-up
 * every source runs (dl_listing_finish) and the suffix/pattern filters.
 *
 * Input: the first line is the source's prefix, every further line one remote key (a NUL
 * cuts a key, as it would the C string a parser hands over). After dl_listing_finish, every
 * name left must be one a mount or a download can use without leaving the model directory:
 * checked here by an independent walk over its components, and the listing must be sorted
 * and free of duplicates. cm_name_check must agree with that walk on every key, accepted or
 * not. The filters must answer without crashing on whatever name survives. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../../common/names.h"
#include "../../downloader/listing.h"
#include "../../downloader/source.h"

/* The rules of names.h, restated component by component. */
static bool name_is_safe(const char *rel, size_t len)
{
    size_t start = 0;

    if (len == 0 || len > CM_NAME_MAX_PATH)
        return false;
    for (size_t i = 0; i <= len; i++) {
        if (i < len) {
            unsigned char c = (unsigned char)rel[i];
            if (c < 0x20 || c == 0x7f)
                return false;
            if (c != '/')
                continue;
        }
        size_t n = i - start;
        if (n == 0 || n > CM_NAME_MAX_COMPONENT)
            return false;
        if ((n == 1 && rel[start] == '.') || (n == 2 && rel[start] == '.' && rel[start + 1] == '.'))
            return false;
        start = i + 1;
    }
    return true;
}

static void check_filters(const char *rel)
{
    static struct cm_filter f;
    static bool ready;

    if (!ready) {
        if (cm_strlist_split(&f.suffixes, "json, .safetensors,txt") ||
            cm_strlist_split(&f.allow, "*.json,model-*-of-*.safetensors,[!.]*") ||
            cm_strlist_split(&f.ignore, "*/.git/*,original/*"))
            abort();
        ready = true;
    }
    bool all = cm_filter_match(&f, rel);
    if (all && !cm_suffix_match(&f.suffixes, rel))
        abort(); /* the whole filter can only be stricter than its suffix part */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dl_listing l = {0};
    char *buf, *line, *next, *prefix;

    if (size > 64 * 1024)
        return 0;
    cm_log_set_level(CM_LOG_ERROR); /* dl_listing_finish warns once per skipped name */
    buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    prefix = buf;
    next = memchr(buf, '\n', size);
    if (next)
        *next++ = '\0';
    for (line = next; line && line < buf + size; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* the raw key, as a parser would add it, checked by both judges */
        size_t len = strlen(line);
        if ((cm_name_check(line, len) == NULL) != name_is_safe(line, len))
            abort();
        if (len <= DL_MAX_KEY_LEN && dl_listing_add(&l, line, len, 0, NULL) != 0)
            break;
        if (!next)
            break;
    }

    dl_listing_finish(&l, prefix, "fuzz");
    for (size_t i = 0; i < l.n; i++) {
        const char *rel = l.entries[i].path;
        if (!name_is_safe(rel, strlen(rel)))
            abort();
        if (i > 0 && strcmp(l.entries[i - 1].path, rel) >= 0)
            abort(); /* sorted, no duplicates */
        check_filters(rel);
    }
    dl_listing_free(&l);
    free(buf);
    return 0;
}
