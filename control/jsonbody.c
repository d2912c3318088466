/* jsonbody.c - strict JSON bodies and table-driven field checks (see jsonbody.h). */
#include "jsonbody.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const type_names[] = {
    [CTL_J_STRING] = "a string",
    [CTL_J_BOOL] = "a boolean",
    [CTL_J_INT] = "an integer",
    [CTL_J_OBJECT] = "an object",
    [CTL_J_STRLIST] = "a list of strings",
};

/* cJSON turns "\u0000" into a NUL that silently cuts the string short ("a\u0000b" would read
 * as "a"), so such bodies are refused before parsing. Raw NULs are refused too. Returns true
 * when the body is free of both. */
static bool no_nul(const char *s, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '\0')
            return false;
        if (!in_string) {
            in_string = c == '"';
            continue;
        }
        if (c == '"') {
            in_string = false;
        } else if (c == '\\' && i + 1 < len) {
            if (s[i + 1] == 'u' && i + 5 < len && memcmp(s + i + 2, "0000", 4) == 0)
                return false;
            i++; /* the escaped character */
        }
    }
    return true;
}

int ctl_body_parse(const char *body, size_t len, cJSON **out, char *msg, size_t msglen)
{
    *out = NULL;
    size_t start = 0;
    while (start < len && strchr(" \t\r\n", body[start]) && body[start])
        start++;
    if (start == len) {
        snprintf(msg, msglen, "request body is empty: a JSON object is required");
        return 422;
    }
    if (!no_nul(body, len)) {
        snprintf(msg, msglen, "malformed JSON: NUL characters are not allowed");
        return 400;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        /* cJSON points end at the error (its global error pointer is not thread-safe) */
        size_t off = end && end >= body && end <= body + len ? (size_t)(end - body) : len;
        snprintf(msg, msglen, "malformed JSON at byte %zu", off);
        return 400;
    }
    while (end && (size_t)(end - body) < len && strchr(" \t\r\n", *end) && *end)
        end++;
    if (end && (size_t)(end - body) < len) {
        snprintf(msg, msglen, "malformed JSON: unexpected data after the value at byte %zu",
                 (size_t)(end - body));
        cJSON_Delete(root);
        return 400;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(msg, msglen, "request body must be a JSON object");
        cJSON_Delete(root);
        return 422;
    }
    *out = root;
    return 0;
}

static bool type_ok(const cJSON *v, enum ctl_jtype t)
{
    switch (t) {
    case CTL_J_STRING:
        return cJSON_IsString(v) && v->valuestring;
    case CTL_J_BOOL:
        return cJSON_IsBool(v);
    case CTL_J_INT:
        return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
               v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9007199254740992.0;
    case CTL_J_OBJECT:
        return cJSON_IsObject(v);
    case CTL_J_STRLIST:
        if (cJSON_IsString(v) && v->valuestring)
            return true;
        if (!cJSON_IsArray(v))
            return false;
        for (const cJSON *s = v->child; s; s = s->next)
            if (!cJSON_IsString(s) || !s->valuestring)
                return false;
        return true;
    }
    return false;
}

/* "a, b, c" of the field names, for "unknown field" messages. */
static void list_names(const struct ctl_jfield *fields, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (const struct ctl_jfield *f = fields; f->name && n < outlen; f++)
        n += (size_t)snprintf(out + n, outlen - n, "%s%s", f == fields ? "" : ", ", f->name);
}

int ctl_json_check(const cJSON *obj, const struct ctl_jfield *fields, const char *where, char *msg,
                   size_t msglen)
{
    char names[512];
    for (const cJSON *it = obj->child; it; it = it->next) {
        const struct ctl_jfield *f = fields;
        while (f->name && strcmp(f->name, it->string) != 0)
            f++;
        if (!f->name) {
            list_names(fields, names, sizeof names);
            snprintf(msg, msglen, "unknown field '%s%.100s' (accepted: %s)", where, it->string,
                     names);
            return 422;
        }
        for (const cJSON *o = it->next; o; o = o->next) {
            if (strcmp(o->string, it->string) == 0) {
                snprintf(msg, msglen, "field '%s%s' given twice", where, f->name);
                return 422;
            }
        }
        if (cJSON_IsNull(it) && f->nullable)
            continue;
        if (!type_ok(it, f->type)) {
            snprintf(msg, msglen, "field '%s%s' must be %s", where, f->name, type_names[f->type]);
            return 422;
        }
    }
    for (const struct ctl_jfield *f = fields; f->name; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
        if (f->required && (!v || cJSON_IsNull(v))) {
            snprintf(msg, msglen, "missing field '%s%s'", where, f->name);
            return 422;
        }
    }
    return 0;
}

int ctl_body_parse_checked(const char *body, size_t len, const struct ctl_jfield *fields,
                           cJSON **out, char *msg, size_t msglen)
{
    int st = ctl_body_parse(body, len, out, msg, msglen);
    if (st == 0 && (st = ctl_json_check(*out, fields, "", msg, msglen)) != 0) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return st;
}

const char *ctl_json_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool ctl_json_bool(const cJSON *obj, const char *name, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

const cJSON *ctl_json_obj(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsObject(v) ? v : NULL;
}
