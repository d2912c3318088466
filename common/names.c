/* names.c - untrusted remote names and the suffix/pattern filters (see names.h). */
#include "names.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

const char *cm_name_check(const char *rel, size_t len)
{
    size_t comp = 0;
    if (len == 0)
        return "empty name";
    if (len > CM_NAME_MAX_PATH)
        return "path longer than 4095 bytes";
    if (rel[0] == '/')
        return "absolute path";
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)rel[i] : '/';
        if (i < len && c == '\0')
            return "contains a NUL byte";
        if (c < 0x20 || c == 0x7f)
            return "contains a control character";
        if (c != '/') {
            if (++comp > CM_NAME_MAX_COMPONENT)
                return "component longer than 255 bytes";
            continue;
        }
        const char *start = rel + i - comp;
        if (comp == 0)
            return i == len ? "ends with '/'" : "contains '//'";
        if ((comp == 1 && start[0] == '.') || (comp == 2 && start[0] == '.' && start[1] == '.'))
            return "contains a '.' or '..' component";
        comp = 0;
    }
    return NULL;
}

int cm_strlist_add(struct cm_strlist *out, const char *item)
{
    char **grown = realloc(out->items, (out->n + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    out->items = grown;
    if (!(out->items[out->n] = strdup(item)))
        return -ENOMEM;
    out->n++;
    return 0;
}

int cm_strlist_split(struct cm_strlist *out, const char *csv)
{
    const char *p = csv;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *a = p, *b = p + n;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            char *item = strndup(a, (size_t)(b - a));
            int rc = item ? cm_strlist_add(out, item) : -ENOMEM;
            free(item);
            if (rc)
                return rc;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

void cm_strlist_free(struct cm_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

bool cm_suffix_match(const struct cm_strlist *suffixes, const char *rel)
{
    if (suffixes->n == 0)
        return true;
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    size_t blen = strlen(base);
    for (size_t i = 0; i < suffixes->n; i++) {
        const char *s = suffixes->items[i];
        if (*s == '.')
            s++;
        size_t slen = strlen(s);
        /* the suffix must follow a dot: "json" matches "a.json", not "xjson" */
        if (slen && blen > slen && base[blen - slen - 1] == '.' &&
            strcmp(base + blen - slen, s) == 0)
            return true;
    }
    return false;
}

static bool any_pattern(const struct cm_strlist *pats, const char *rel)
{
    for (size_t i = 0; i < pats->n; i++) {
        /* no FNM_PATHNAME: '*' crosses '/', as huggingface_hub's fnmatch does */
        if (fnmatch(pats->items[i], rel, 0) == 0)
            return true;
    }
    return false;
}

bool cm_filter_match(const struct cm_filter *f, const char *rel)
{
    if (!cm_suffix_match(&f->suffixes, rel))
        return false;
    if (f->allow.n && !any_pattern(&f->allow, rel))
        return false;
    return !any_pattern(&f->ignore, rel);
}

void cm_filter_free(struct cm_filter *f)
{
    cm_strlist_free(&f->suffixes);
    cm_strlist_free(&f->allow);
    cm_strlist_free(&f->ignore);
}
