/* listing.c - the listing container and the parsers of one page of each origin's listing.
 *
 * Every document parsed here comes from the network and is treated as hostile. The rules
 * that hold for all parsers:
 *   - the whole document is bounded (DL_MAX_DOC) before a parser sees it, every string we keep
 *     is bounded by DL_MAX_KEY_LEN, and the entry count by DL_MAX_LISTING_ENTRIES;
 *   - a field with the wrong type or an impossible value (negative or fractional size, a size
 *     past 2^53 in JSON, a bad date) fails the page with a message naming the field; a digest
 *     that is not exact hex of the right length only downgrades the entry to CM_HASH_NONE;
 *   - a failed page leaves the listing as it was before the call (entries appended by the
 *     page are removed), so a caller never acts on half a page.
 * XML goes through expat with namespace processing so elements are matched by local name
 * (AWS, MinIO and s3rver disagree on namespaces and prefixes), and any DOCTYPE is refused so
 * no entity can be declared: that closes both entity expansion and external entities.
 * JSON goes through cJSON, whose nesting limit bounds recursion. */
#include "listing.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <expat.h>

/* A 1000-key page is well under 1 MiB; cJSON spends ~64 bytes per value, so a document of
 * tiny values costs ~30x its size in memory. 16 MiB keeps the worst case around half a GB. */
#define DL_MAX_DOC (16u * 1024 * 1024)
/* JSON numbers are doubles: past 2^53 a size can no longer be trusted to the byte. */
#define DL_MAX_JSON_SIZE 9007199254740992.0
#define DL_MAX_XML_DEPTH 64

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void copy_bounded(char *dst, size_t dstlen, const char *src)
{
    if (!dst || dstlen == 0)
        return;
    snprintf(dst, dstlen, "%s", src ? src : "");
}

/* ---- the container ---- */

int dl_listing_add(struct dl_listing *l, const char *path, uint64_t size, int64_t mtime,
                   const char *etag)
{
    struct dl_entry *e;

    if (!l || !path)
        return -EINVAL;
    if (l->n >= DL_MAX_LISTING_ENTRIES)
        return -E2BIG;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct dl_entry *grown;

        if (cap > DL_MAX_LISTING_ENTRIES)
            cap = DL_MAX_LISTING_ENTRIES;
        grown = realloc(l->entries, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        l->entries = grown;
        l->cap = cap;
    }
    e = &l->entries[l->n];
    memset(e, 0, sizeof(*e));
    e->path = strdup(path);
    if (!e->path)
        return -ENOMEM;
    if (etag) {
        e->etag = strdup(etag);
        if (!e->etag) {
            free(e->path);
            e->path = NULL;
            return -ENOMEM;
        }
    }
    e->size = size;
    e->mtime = mtime;
    e->digest_kind = CM_HASH_NONE;
    l->n++;
    return 0;
}

void dl_listing_remove(struct dl_listing *l, size_t i)
{
    if (!l || i >= l->n)
        return;
    free(l->entries[i].path);
    free(l->entries[i].etag);
    memmove(&l->entries[i], &l->entries[i + 1], (l->n - i - 1) * sizeof(l->entries[0]));
    l->n--;
}

/* Drop entries from index n0 on: how a failed page is undone. */
static void listing_truncate(struct dl_listing *l, size_t n0)
{
    while (l->n > n0) {
        l->n--;
        free(l->entries[l->n].path);
        free(l->entries[l->n].etag);
    }
}

void dl_listing_free(struct dl_listing *l)
{
    if (!l)
        return;
    listing_truncate(l, 0);
    free(l->entries);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}

void dl_etag_normalize(char *etag)
{
    size_t len;

    if (!etag)
        return;
    if (etag[0] == 'W' && etag[1] == '/')
        memmove(etag, etag + 2, strlen(etag + 2) + 1);
    len = strlen(etag);
    if (len >= 2 && etag[0] == '"' && etag[len - 1] == '"') {
        memmove(etag, etag + 1, len - 2);
        etag[len - 2] = '\0';
    }
}

/* ---- small validators shared by the parsers ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* s is exactly `want` hex digits: write it lowercased into out (65 bytes). */
static bool hex_digest(const char *s, size_t want, char out[65])
{
    size_t i;

    if (!s || want > 64 || strlen(s) != want)
        return false;
    for (i = 0; i < want; i++)
        if (hexval(s[i]) < 0)
            return false;
    for (i = 0; i < want; i++)
        out[i] = (char)"0123456789abcdef"[hexval(s[i])];
    out[want] = '\0';
    return true;
}

/* Set the entry's digest, or leave it NONE when s is not exact hex of the right length. */
static void set_hex_digest(struct dl_entry *e, enum cm_hash_kind kind, const char *s, size_t want)
{
    if (hex_digest(s, want, e->digest)) {
        e->digest_kind = kind;
    } else {
        e->digest_kind = CM_HASH_NONE;
        e->digest[0] = '\0';
    }
}

/* Unsigned decimal of at most maxdigits digits and at most max. */
static bool parse_decimal(const char *s, size_t maxdigits, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (!s || !*s)
        return false;
    for (i = 0; s[i]; i++) {
        unsigned d;

        if (i >= maxdigits || s[i] < '0' || s[i] > '9')
            return false;
        d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* TOS prints CRC-64/ECMA as an unsigned decimal; keep it canonical (no leading zeros) so it
 * compares equal to what the hash module prints. */
static void set_crc64_digest(struct dl_entry *e, const char *s)
{
    uint64_t v;

    if (parse_decimal(s, 20, UINT64_MAX, &v)) {
        snprintf(e->digest, sizeof(e->digest), "%" PRIu64, v);
        e->digest_kind = CM_HASH_CRC64ECMA;
    }
}

/* A short, printable copy of an untrusted value for an error message: the message may end up
 * in a log line, so no control bytes and no unbounded length. */
static const char *excerpt(const char *s, char buf[48])
{
    size_t i;

    for (i = 0; i < 44 && s[i]; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    memcpy(buf + i, s[i] ? "..." : "", s[i] ? 4 : 1);
    return buf;
}

static bool is_dir_marker(const char *key)
{
    size_t len = strlen(key);

    return len > 0 && key[len - 1] == '/';
}

/* ---- ISO-8601 ---- */

static int digits(const char *s, int n)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Leap years in [1, y). */
static int64_t leaps_before(int y)
{
    int64_t p = y - 1;

    return p / 4 - p / 100 + p / 400;
}

static int64_t days_since_epoch(int y, int m, int d)
{
    static const int cum[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int64_t days = 365 * (int64_t)(y - 1970) + leaps_before(y) - leaps_before(1970);

    days += cum[m - 1] + (m > 2 && is_leap(y)) + d - 1;
    return days;
}

/* "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)". Times before 1970 are refused: -1 is the
 * error value and a model file is never that old. */
int64_t dl_parse_iso8601(const char *s)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, off = 0;
    int64_t t;

    if (!s || strnlen(s, 20) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    y = digits(s, 4);
    mo = digits(s + 5, 2);
    d = digits(s + 8, 2);
    h = digits(s + 11, 2);
    mi = digits(s + 14, 2);
    sec = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
        sec > 60)
        return -1;
    if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return -1;
    s += 19;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return -1;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if ((*s == 'Z' || *s == 'z') && s[1] == '\0') {
        off = 0;
    } else if ((*s == '+' || *s == '-') && strnlen(s, 7) == 6 && s[3] == ':') {
        int oh = digits(s + 1, 2), om = digits(s + 4, 2);

        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (*s == '+' ? 1 : -1);
    } else {
        return -1;
    }
    t = days_since_epoch(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return t < 0 ? -1 : t;
}

/* ---- XML (expat) ---- */

/* Fields the S3 documents carry; the text of at most one is being collected at a time. */
enum xml_field {
    XF_NONE,
    XF_IS_TRUNCATED,
    XF_NEXT_TOKEN,
    XF_KEY,
    XF_LAST_MODIFIED,
    XF_ETAG,
    XF_SIZE,
    XF_CODE,
    XF_MESSAGE,
};

static const struct {
    const char *name;
    enum xml_field field;
    int depth; /* 2: child of the root, 3: child of <Contents> */
} xml_fields[] = {
    {"IsTruncated", XF_IS_TRUNCATED, 2},
    {"NextContinuationToken", XF_NEXT_TOKEN, 2},
    {"Key", XF_KEY, 3},
    {"LastModified", XF_LAST_MODIFIED, 3},
    {"ETag", XF_ETAG, 3},
    {"Size", XF_SIZE, 3},
};

enum xml_doc { XD_LIST, XD_ERROR };

struct xml_ctx {
    XML_Parser p;
    enum xml_doc doc;
    const char *what; /* "S3 listing", "S3 error document": prefixes every message */
    int rc;           /* first failure; once set, every handler returns at once */
    char *err;
    size_t errlen;
    int depth;
    bool in_contents;
    enum xml_field field;
    char text[DL_MAX_KEY_LEN + 1];
    size_t tlen;
    bool text_overflow;

    /* ListBucketResult */
    struct dl_listing *out;
    bool truncated, seen_truncated;
    char *token;
    /* the <Contents> being read */
    unsigned seen; /* bit per enum xml_field */
    char key[DL_MAX_KEY_LEN + 1];
    char etag[DL_MAX_KEY_LEN + 1];
    uint64_t size;
    int64_t mtime;

    /* Error */
    char *code, *msg;
    size_t codelen, msglen;
};

static void xml_fail(struct xml_ctx *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void xml_fail(struct xml_ctx *c, int rc, const char *fmt, ...)
{
    va_list ap;

    if (c->rc)
        return;
    c->rc = rc;
    if (c->err && c->errlen) {
        int n = snprintf(c->err, c->errlen, "%s: ", c->what);

        if (n > 0 && (size_t)n < c->errlen) {
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    XML_StopParser(c->p, XML_FALSE);
}

/* With namespace processing expat names an element "uri|local"; match on the local part. */
static const char *local_name(const XML_Char *name)
{
    const char *bar = strrchr(name, '|');

    return bar ? bar + 1 : name;
}

static const char *field_name(enum xml_field f)
{
    size_t i;

    if (f == XF_CODE)
        return "Code";
    if (f == XF_MESSAGE)
        return "Message";
    for (i = 0; i < sizeof(xml_fields) / sizeof(xml_fields[0]); i++)
        if (xml_fields[i].field == f)
            return xml_fields[i].name;
    return "?";
}

/* Trim ASCII whitespace in place (pretty-printed XML); keys are never trimmed. */
static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

static void start_list_element(struct xml_ctx *c, const char *name)
{
    size_t i;

    if (c->depth == 1) {
        if (strcmp(name, "ListBucketResult") == 0)
            return;
        if (strcmp(name, "Error") == 0)
            xml_fail(c, -EBADMSG, "the server answered with an <Error> document");
        else
            xml_fail(c, -EBADMSG, "root element is <%.64s>, expected <ListBucketResult>", name);
        return;
    }
    if (c->depth == 2 && strcmp(name, "Contents") == 0) {
        c->in_contents = true;
        c->seen = 0;
        c->key[0] = c->etag[0] = '\0';
        c->size = 0;
        c->mtime = 0;
        return;
    }
    if (c->depth == 3 && !c->in_contents)
        return;
    for (i = 0; i < sizeof(xml_fields) / sizeof(xml_fields[0]); i++) {
        if (xml_fields[i].depth != c->depth || strcmp(xml_fields[i].name, name) != 0)
            continue;
        if (c->depth == 2 && xml_fields[i].field == XF_IS_TRUNCATED && c->seen_truncated)
            break;
        if (c->depth == 2 && xml_fields[i].field == XF_NEXT_TOKEN && c->token)
            break;
        if (c->depth == 3 && (c->seen & (1u << xml_fields[i].field)))
            break;
        c->field = xml_fields[i].field;
        return;
    }
    if (i < sizeof(xml_fields) / sizeof(xml_fields[0]))
        xml_fail(c, -EBADMSG, "duplicate <%s>", xml_fields[i].name);
}

static void XMLCALL on_start(void *ud, const XML_Char *qname, const XML_Char **attrs)
{
    struct xml_ctx *c = ud;
    const char *name = local_name(qname);

    (void)attrs;
    if (c->rc)
        return;
    c->depth++;
    if (c->depth > DL_MAX_XML_DEPTH) {
        xml_fail(c, -EBADMSG, "XML nested deeper than %d elements", DL_MAX_XML_DEPTH);
        return;
    }
    if (c->field != XF_NONE) {
        xml_fail(c, -EBADMSG, "unexpected element <%.64s> inside <%s>", name, field_name(c->field));
        return;
    }
    c->tlen = 0;
    c->text_overflow = false;
    if (c->doc == XD_LIST) {
        start_list_element(c, name);
    } else if (c->depth == 1) {
        if (strcmp(name, "Error") != 0)
            xml_fail(c, -EBADMSG, "root element is <%.64s>, not <Error>", name);
    } else if (c->depth == 2) {
        if (strcmp(name, "Code") == 0)
            c->field = XF_CODE;
        else if (strcmp(name, "Message") == 0)
            c->field = XF_MESSAGE;
    }
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct xml_ctx *c = ud;
    size_t n;

    if (c->rc || c->field == XF_NONE || len <= 0)
        return;
    n = (size_t)len;
    if (n > DL_MAX_KEY_LEN - c->tlen) {
        n = DL_MAX_KEY_LEN - c->tlen;
        c->text_overflow = true;
    }
    memcpy(c->text + c->tlen, s, n);
    c->tlen += n;
    c->text[c->tlen] = '\0';
}

static void end_contents(struct xml_ctx *c)
{
    struct dl_entry *e;
    int rc;

    c->in_contents = false;
    if (!(c->seen & (1u << XF_KEY)) || !(c->seen & (1u << XF_SIZE))) {
        xml_fail(c, -EBADMSG, "<Contents> without <%s>",
                 (c->seen & (1u << XF_KEY)) ? "Size" : "Key");
        return;
    }
    if (is_dir_marker(c->key))
        return;
    rc = dl_listing_add(c->out, c->key, c->size, c->mtime,
                        (c->seen & (1u << XF_ETAG)) ? c->etag : NULL);
    if (rc == -E2BIG) {
        xml_fail(c, rc, "listing has more than %d entries", DL_MAX_LISTING_ENTRIES);
        return;
    }
    if (rc) {
        xml_fail(c, rc, "out of memory adding a key");
        return;
    }
    e = &c->out->entries[c->out->n - 1];
    if (e->etag)
        set_hex_digest(e, CM_HASH_MD5, e->etag, 32);
}

/* The text of a list field is complete: validate it into the context. */
static void end_list_field(struct xml_ctx *c)
{
    char *v, ex[48];

    if (c->field == XF_KEY) {
        /* the raw text, untrimmed: leading and trailing spaces are legal in keys */
        if (c->tlen == 0)
            xml_fail(c, -EBADMSG, "empty <Key>");
        memcpy(c->key, c->text, c->tlen + 1);
        c->seen |= 1u << XF_KEY;
        return;
    }
    v = trim(c->text);
    switch (c->field) {
    case XF_IS_TRUNCATED:
        c->seen_truncated = true;
        if (strcmp(v, "true") == 0)
            c->truncated = true;
        else if (strcmp(v, "false") == 0)
            c->truncated = false;
        else
            xml_fail(c, -EBADMSG, "<IsTruncated> is '%s', not true/false", excerpt(v, ex));
        break;
    case XF_NEXT_TOKEN:
        if (!*v) {
            xml_fail(c, -EBADMSG, "empty <NextContinuationToken>");
            break;
        }
        c->token = strdup(v);
        if (!c->token)
            xml_fail(c, -ENOMEM, "out of memory copying continuation token");
        break;
    case XF_LAST_MODIFIED:
        c->mtime = dl_parse_iso8601(v);
        if (c->mtime < 0)
            xml_fail(c, -EBADMSG, "<LastModified> '%s' is not an ISO-8601 time", excerpt(v, ex));
        break;
    case XF_ETAG:
        memmove(c->etag, v, strlen(v) + 1);
        dl_etag_normalize(c->etag);
        break;
    case XF_SIZE:
        if (!parse_decimal(v, 20, INT64_MAX, &c->size))
            xml_fail(c, -EBADMSG, "<Size> '%s' is not a byte count", excerpt(v, ex));
        break;
    default:
        break;
    }
    if (c->depth == 3)
        c->seen |= 1u << c->field;
}

static void XMLCALL on_end(void *ud, const XML_Char *qname)
{
    struct xml_ctx *c = ud;

    (void)qname;
    if (c->rc)
        return;
    if (c->field != XF_NONE) {
        if (c->text_overflow && c->doc == XD_LIST) {
            xml_fail(c, -EBADMSG, "<%s> is longer than %d bytes", field_name(c->field),
                     DL_MAX_KEY_LEN);
            return;
        }
        if (c->field == XF_CODE)
            copy_bounded(c->code, c->codelen, trim(c->text));
        else if (c->field == XF_MESSAGE)
            copy_bounded(c->msg, c->msglen, trim(c->text));
        else
            end_list_field(c);
        c->field = XF_NONE;
    } else if (c->depth == 2 && c->in_contents) {
        end_contents(c);
    }
    c->depth--;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    xml_fail(ud, -EBADMSG, "a DOCTYPE is refused (no entities are allowed)");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    xml_fail(ud, -EBADMSG, "XML entity declarations are refused");
}

/* Run expat over the document with the context's handlers. Returns 0 or a negative errno
 * with c->err set. */
static int xml_run(struct xml_ctx *c, const char *xml, size_t len, const char *what)
{
    enum XML_Status st;

    c->what = what;
    if (!xml) {
        set_err(c->err, c->errlen, "%s: no document", what);
        return -EINVAL;
    }
    if (len > DL_MAX_DOC) {
        set_err(c->err, c->errlen, "%s is %zu bytes, more than the %u allowed", what, len,
                DL_MAX_DOC);
        return -E2BIG;
    }
    /* "UTF-8" overrides the document's own encoding declaration; '|' separates namespace URI
     * and local name and cannot occur in a local name. */
    c->p = XML_ParserCreateNS("UTF-8", '|');
    if (!c->p) {
        set_err(c->err, c->errlen, "%s: out of memory creating XML parser", what);
        return -ENOMEM;
    }
    XML_SetUserData(c->p, c);
    XML_SetElementHandler(c->p, on_start, on_end);
    XML_SetCharacterDataHandler(c->p, on_text);
    XML_SetStartDoctypeDeclHandler(c->p, on_doctype);
    XML_SetEntityDeclHandler(c->p, on_entity_decl);
    XML_SetParamEntityParsing(c->p, XML_PARAM_ENTITY_PARSING_NEVER);
    st = XML_Parse(c->p, xml, (int)len, XML_TRUE);
    if (st != XML_STATUS_OK && !c->rc) {
        c->rc = -EBADMSG;
        set_err(c->err, c->errlen, "%s is not well-formed XML: %s at line %lu column %lu", what,
                XML_ErrorString(XML_GetErrorCode(c->p)),
                (unsigned long)XML_GetCurrentLineNumber(c->p),
                (unsigned long)XML_GetCurrentColumnNumber(c->p));
    }
    XML_ParserFree(c->p);
    c->p = NULL;
    return c->rc;
}

int dl_parse_s3_list(const char *xml, size_t len, struct dl_listing *out, char *err, size_t errlen)
{
    struct xml_ctx *c;
    size_t n0;
    int rc;

    if (!out)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c) {
        set_err(err, errlen, "out of memory parsing S3 listing");
        return -ENOMEM;
    }
    c->doc = XD_LIST;
    c->err = err;
    c->errlen = errlen;
    c->out = out;
    n0 = out->n;
    free(out->next_token);
    out->next_token = NULL;
    out->truncated = false;

    rc = xml_run(c, xml, len, "S3 listing");
    if (rc == 0 && c->truncated && !c->token) {
        set_err(err, errlen, "S3 listing is truncated but has no <NextContinuationToken>");
        rc = -EBADMSG;
    }
    if (rc) {
        listing_truncate(out, n0);
        free(c->token);
    } else if (c->truncated) {
        out->truncated = true;
        out->next_token = c->token;
    } else {
        free(c->token); /* a token on the last page means nothing, as with TOS */
    }
    free(c);
    return rc;
}

int dl_parse_s3_error(const char *xml, size_t len, char *code, size_t codelen, char *msg,
                      size_t msglen)
{
    struct xml_ctx *c;
    int rc;

    copy_bounded(code, codelen, "");
    copy_bounded(msg, msglen, "");
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->doc = XD_ERROR;
    c->code = code;
    c->codelen = codelen;
    c->msg = msg;
    c->msglen = msglen;
    rc = xml_run(c, xml, len, "S3 error document");
    free(c);
    if (rc) {
        copy_bounded(code, codelen, "");
        copy_bounded(msg, msglen, "");
    }
    return rc;
}

/* ---- JSON (cJSON) ---- */

/* cJSON keeps strings NUL-terminated, so a \u0000 escape would silently cut a key short
 * ("a.bin\u0000.txt" would become "a.bin"). Such escapes are rewritten to \u0001 in a copy
 * of the document: the key keeps its full length and carries a control character, which the
 * name check then rejects for that one entry (SPEC §3: skipped with a warning), while the
 * rest of the page is still used. The scan steps over every backslash pair so an escaped
 * backslash followed by "u0000" is not a hit. Returns the copy, or NULL when none is needed
 * (or memory ran out: *oom is then set). A raw NUL byte is not JSON and is refused earlier. */
static char *json_defuse_nul_escapes(const char *s, size_t len, bool *oom)
{
    char *copy = NULL;

    *oom = false;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u' && i + 5 < len && memcmp(s + i + 2, "0000", 4) == 0) {
            if (!copy) {
                copy = malloc(len);
                if (!copy) {
                    *oom = true;
                    return NULL;
                }
                memcpy(copy, s, len);
            }
            copy[i + 5] = '1';
        }
        i++;
    }
    return copy;
}

/* Parse a whole JSON document (trailing whitespace allowed, nothing else). Returns the tree
 * (caller frees with cJSON_Delete) or NULL with *rc and err set. */
static cJSON *json_parse(const char *json, size_t len, const char *what, int *rc, char *err,
                         size_t errlen)
{
    const char *end = NULL;
    cJSON *root;

    if (!json) {
        set_err(err, errlen, "%s: no document", what);
        *rc = -EINVAL;
        return NULL;
    }
    if (len > DL_MAX_DOC) {
        set_err(err, errlen, "%s is %zu bytes, more than the %u allowed", what, len, DL_MAX_DOC);
        *rc = -E2BIG;
        return NULL;
    }
    if (memchr(json, '\0', len)) {
        set_err(err, errlen, "%s contains a NUL character", what);
        *rc = -EBADMSG;
        return NULL;
    }
    bool oom;
    char *defused = json_defuse_nul_escapes(json, len, &oom);
    if (oom) {
        set_err(err, errlen, "%s: out of memory", what);
        *rc = -ENOMEM;
        return NULL;
    }
    if (defused)
        json = defused;
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = (end && end >= json && end <= json + len) ? (size_t)(end - json) : 0;

        set_err(err, errlen, "%s is not valid JSON (near byte %zu)", what, at);
        *rc = -EBADMSG;
        free(defused);
        return NULL;
    }
    for (; root && end && end < json + len; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            set_err(err, errlen, "%s has trailing data after the JSON value (byte %zu)", what,
                    (size_t)(end - json));
            cJSON_Delete(root);
            root = NULL;
            *rc = -EBADMSG;
        }
    }
    free(defused);
    if (root)
        *rc = 0;
    return root;
}

/* A JSON byte count: a number, integer-valued, 0 <= v <= 2^53. */
static bool json_size(const cJSON *v, uint64_t *out)
{
    double d;

    if (!cJSON_IsNumber(v))
        return false;
    d = v->valuedouble;
    if (!(d >= 0 && d <= DL_MAX_JSON_SIZE))
        return false;
    if ((double)(uint64_t)d != d)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* Optional string member: absent or null gives NULL and true; another type gives false. */
static bool json_opt_string(const cJSON *obj, const char *name, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsString(v) || !v->valuestring)
        return false;
    *out = v->valuestring;
    return true;
}

static bool too_long(const char *s)
{
    return s && strnlen(s, DL_MAX_KEY_LEN + 1) > DL_MAX_KEY_LEN;
}

/* Add an entry and normalize its etag; err names the entry index on failure. */
static int json_add(struct dl_listing *out, const char *path, uint64_t size, int64_t mtime,
                    const char *etag, const char *what, size_t idx, char *err, size_t errlen)
{
    int rc = dl_listing_add(out, path, size, mtime, etag);

    if (rc == -E2BIG)
        set_err(err, errlen, "%s: listing has more than %d entries", what, DL_MAX_LISTING_ENTRIES);
    else if (rc)
        set_err(err, errlen, "%s: out of memory at entry %zu", what, idx);
    else if (out->entries[out->n - 1].etag)
        dl_etag_normalize(out->entries[out->n - 1].etag);
    return rc;
}

static int tos_entry(const cJSON *item, size_t idx, struct dl_listing *out, char *err,
                     size_t errlen)
{
    const char *key, *etag, *lm, *crc;
    uint64_t size;
    int64_t mtime = 0;
    int rc;

    if (!cJSON_IsObject(item)) {
        set_err(err, errlen, "TOS listing Contents[%zu] is not an object", idx);
        return -EBADMSG;
    }
    if (!json_opt_string(item, "Key", &key) || !key || !*key || too_long(key)) {
        set_err(err, errlen,
                "TOS listing Contents[%zu].Key is missing, not a string, empty or too long", idx);
        return -EBADMSG;
    }
    if (!json_size(cJSON_GetObjectItemCaseSensitive(item, "Size"), &size)) {
        set_err(err, errlen, "TOS listing Contents[%zu].Size is missing or not a byte count", idx);
        return -EBADMSG;
    }
    if (!json_opt_string(item, "ETag", &etag) || too_long(etag)) {
        set_err(err, errlen, "TOS listing Contents[%zu].ETag is not a string or too long", idx);
        return -EBADMSG;
    }
    if (!json_opt_string(item, "LastModified", &lm) || (lm && (mtime = dl_parse_iso8601(lm)) < 0)) {
        set_err(err, errlen, "TOS listing Contents[%zu].LastModified is not an ISO-8601 time", idx);
        return -EBADMSG;
    }
    if (is_dir_marker(key))
        return 0;
    rc = json_add(out, key, size, mtime, etag, "TOS listing", idx, err, errlen);
    if (rc)
        return rc;
    /* a digest of the wrong type or shape leaves the entry unverifiable, not the page bad */
    if (json_opt_string(item, "HashCrc64ecma", &crc) && crc)
        set_crc64_digest(&out->entries[out->n - 1], crc);
    return 0;
}

int dl_parse_tos_list(const char *json, size_t len, struct dl_listing *out, char *err,
                      size_t errlen)
{
    const cJSON *trunc, *contents, *item;
    const char *token;
    cJSON *root;
    size_t n0, idx = 0;
    int rc;

    if (!out)
        return -EINVAL;
    n0 = out->n;
    free(out->next_token);
    out->next_token = NULL;
    out->truncated = false;
    root = json_parse(json, len, "TOS listing", &rc, err, errlen);
    if (!root)
        return rc;
    rc = -EBADMSG;
    if (!cJSON_IsObject(root)) {
        set_err(err, errlen, "TOS listing is not a JSON object");
        goto out;
    }
    trunc = cJSON_GetObjectItemCaseSensitive(root, "IsTruncated");
    if (trunc && !cJSON_IsBool(trunc)) {
        set_err(err, errlen, "TOS listing IsTruncated is not a boolean");
        goto out;
    }
    if (!json_opt_string(root, "NextContinuationToken", &token) || too_long(token)) {
        set_err(err, errlen, "TOS listing NextContinuationToken is not a string or too long");
        goto out;
    }
    if (cJSON_IsTrue(trunc) && (!token || !*token)) {
        set_err(err, errlen, "TOS listing is truncated but has no NextContinuationToken");
        goto out;
    }
    contents = cJSON_GetObjectItemCaseSensitive(root, "Contents");
    if (contents && !cJSON_IsNull(contents) && !cJSON_IsArray(contents)) {
        set_err(err, errlen, "TOS listing Contents is not an array");
        goto out;
    }
    if (cJSON_IsArray(contents)) {
        cJSON_ArrayForEach(item, contents)
        {
            rc = tos_entry(item, idx++, out, err, errlen);
            if (rc)
                goto out;
        }
    }
    rc = 0;
    if (cJSON_IsTrue(trunc)) {
        out->next_token = strdup(token);
        if (!out->next_token) {
            set_err(err, errlen, "out of memory copying TOS continuation token");
            rc = -ENOMEM;
            goto out;
        }
        out->truncated = true;
    }
out:
    if (rc)
        listing_truncate(out, n0);
    cJSON_Delete(root);
    return rc;
}

int dl_parse_tos_error(const char *json, size_t len, char *code, size_t codelen, char *msg,
                       size_t msglen)
{
    const char *c, *m;
    cJSON *root;
    int rc;

    copy_bounded(code, codelen, "");
    copy_bounded(msg, msglen, "");
    root = json_parse(json, len, "TOS error", &rc, NULL, 0);
    if (!root)
        return rc;
    rc = -EBADMSG;
    if (cJSON_IsObject(root) && json_opt_string(root, "Code", &c) && c) {
        copy_bounded(code, codelen, c);
        if (json_opt_string(root, "Message", &m))
            copy_bounded(msg, msglen, m);
        rc = 0;
    }
    cJSON_Delete(root);
    return rc;
}

static int hf_entry(const cJSON *item, size_t idx, struct dl_listing *out, char *err, size_t errlen)
{
    const char *type, *path, *oid, *lfs_oid = NULL;
    const cJSON *lfs;
    uint64_t size;
    int rc;

    if (!cJSON_IsObject(item)) {
        set_err(err, errlen, "HF tree entry %zu is not an object", idx);
        return -EBADMSG;
    }
    if (!json_opt_string(item, "type", &type) || !type) {
        set_err(err, errlen, "HF tree entry %zu has no string 'type'", idx);
        return -EBADMSG;
    }
    if (strcmp(type, "file") != 0)
        return 0; /* directories (and anything newer we do not know) carry no bytes */
    if (!json_opt_string(item, "path", &path) || !path || !*path || too_long(path)) {
        set_err(err, errlen, "HF tree entry %zu 'path' is missing, not a string, empty or too long",
                idx);
        return -EBADMSG;
    }
    if (!json_size(cJSON_GetObjectItemCaseSensitive(item, "size"), &size)) {
        set_err(err, errlen, "HF tree entry %zu 'size' is missing or not a byte count", idx);
        return -EBADMSG;
    }
    if (!json_opt_string(item, "oid", &oid) || too_long(oid)) {
        set_err(err, errlen, "HF tree entry %zu 'oid' is not a string or too long", idx);
        return -EBADMSG;
    }
    lfs = cJSON_GetObjectItemCaseSensitive(item, "lfs");
    if (lfs && !cJSON_IsNull(lfs)) {
        if (!cJSON_IsObject(lfs) || !json_opt_string(lfs, "oid", &lfs_oid) || !lfs_oid ||
            too_long(lfs_oid) || !json_size(cJSON_GetObjectItemCaseSensitive(lfs, "size"), &size)) {
            set_err(err, errlen,
                    "HF tree entry %zu 'lfs' needs a string 'oid' and a byte count 'size'", idx);
            return -EBADMSG;
        }
    }
    rc = json_add(out, path, size, 0, lfs_oid ? lfs_oid : oid, "HF tree", idx, err, errlen);
    if (rc)
        return rc;
    if (lfs_oid)
        set_hex_digest(&out->entries[out->n - 1], CM_HASH_SHA256, lfs_oid, 64);
    else if (oid)
        set_hex_digest(&out->entries[out->n - 1], CM_HASH_GIT_SHA1, oid, 40);
    return 0;
}

int dl_parse_hf_tree(const char *json, size_t len, struct dl_listing *out, char *err, size_t errlen)
{
    const cJSON *item;
    cJSON *root;
    size_t n0, idx = 0;
    int rc;

    if (!out)
        return -EINVAL;
    n0 = out->n;
    root = json_parse(json, len, "HF tree", &rc, err, errlen);
    if (!root)
        return rc;
    if (!cJSON_IsArray(root)) {
        set_err(err, errlen, "HF tree is not a JSON array");
        cJSON_Delete(root);
        return -EBADMSG;
    }
    cJSON_ArrayForEach(item, root)
    {
        rc = hf_entry(item, idx++, out, err, errlen);
        if (rc) {
            listing_truncate(out, n0);
            break;
        }
    }
    cJSON_Delete(root);
    return rc;
}

int dl_parse_hf_revision(const char *json, size_t len, char sha[41], char *err, size_t errlen)
{
    const char *s;
    cJSON *root;
    int rc;

    if (!sha)
        return -EINVAL;
    sha[0] = '\0';
    root = json_parse(json, len, "HF revision info", &rc, err, errlen);
    if (!root)
        return rc;
    rc = 0;
    if (!cJSON_IsObject(root) || !json_opt_string(root, "sha", &s) || !s) {
        set_err(err, errlen, "HF revision info has no string 'sha'");
        rc = -EBADMSG;
    } else {
        char hex[65], ex[48];

        if (hex_digest(s, 40, hex)) {
            memcpy(sha, hex, 41);
        } else {
            set_err(err, errlen, "HF revision info 'sha' '%s' is not 40 hex digits",
                    excerpt(s, ex));
            rc = -EBADMSG;
        }
    }
    cJSON_Delete(root);
    return rc;
}
