/* names.h - remote file names are untrusted (SPEC §3), and the filters that select them.
 *
 * cm_name_check decides whether a relative path from a listing may be used at all: no empty
 * or "." / ".." component, no leading '/', no "//", no NUL or control character, every
 * component at most 255 bytes, whole path at most 4095 bytes. A rejected name is skipped with
 * a warning by the caller: nothing is ever written or exposed outside the model directory.
 *
 * Filters: suffix lists (DOWNLOADER_ALLOW_FILE_SUFFIX, allow_file_suffix: "json" and ".json"
 * mean the same and match only after a dot, so "json" does not match "xjson") and
 * huggingface_hub-style fnmatch patterns where '*' crosses '/'. */
#ifndef CM_NAMES_H
#define CM_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define CM_NAME_MAX_COMPONENT 255
#define CM_NAME_MAX_PATH 4095

/* Returns NULL when rel is safe, else a short reason ("contains ..", "absolute path", ...). */
const char *cm_name_check(const char *rel, size_t len);

/* A list of strings parsed from "a, b ,c" (items trimmed, empties dropped). */
struct cm_strlist {
    char **items; /* owned */
    size_t n;
};

/* Split a comma list into out (appending). Returns 0 or -ENOMEM. */
int cm_strlist_split(struct cm_strlist *out, const char *csv);
int cm_strlist_add(struct cm_strlist *out, const char *item);
void cm_strlist_free(struct cm_strlist *l);

struct cm_filter {
    struct cm_strlist suffixes; /* stored without the leading '.'; empty = allow all */
    struct cm_strlist allow;    /* fnmatch patterns; empty = allow all */
    struct cm_strlist ignore;   /* fnmatch patterns; any match hides the file */
};

/* True when rel passes every part of the filter. */
bool cm_filter_match(const struct cm_filter *f, const char *rel);
bool cm_suffix_match(const struct cm_strlist *suffixes, const char *rel);
void cm_filter_free(struct cm_filter *f);

#endif
