/* sign.c - AWS SigV4 and Volcengine TOS4 request signing as a pure function.
 *
 * The signer never touches the network or the clock: it gets every input (time, headers,
 * wire path and query) from the caller and returns the Authorization value, so the published
 * vectors exercise exactly the code that signs real requests. The two flavours share all of
 * the canonicalisation and differ only in the names held in struct flavor_names. */
#include "sign.h"
#include "hash.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct flavor_names {
    const char *algorithm;  /* first line of the string to sign, first word of auth */
    const char *key_prefix; /* prepended to the secret before deriving the signing key */
    const char *terminator; /* last element of the credential scope */
};

static const struct flavor_names flavors[] = {
    [DL_SIGN_AWS4] = {"AWS4-HMAC-SHA256", "AWS4", "aws4_request"},
    [DL_SIGN_TOS4] = {"TOS4-HMAC-SHA256", "", "request"},
};

/* A growable string; any failed allocation sets oom and later appends are ignored, so the
 * builder code checks once at the end instead of after every append. */
struct buf {
    char *p;
    size_t len, cap;
    int oom;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

struct query_pair {
    const char *key, *val;
    size_t klen, vlen;
};

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* Sorted by key, then by value, both as encoded bytes (SigV4 orders by code point). */
static int cmp_query_pair(const void *pa, const void *pb)
{
    const struct query_pair *a = pa, *b = pb;
    int c = cmp_bytes(a->key, a->klen, b->key, b->klen);
    return c ? c : cmp_bytes(a->val, a->vlen, b->val, b->vlen);
}

/* Append the canonical query: the wire pairs sorted, a bare key written as "key=", empty
 * pairs ("a&&b") dropped. The pairs are already percent-encoded by the caller. */
static int canonical_query(struct buf *b, const char *query)
{
    if (!query || !*query)
        return 0;
    size_t n = 1;
    for (const char *q = query; *q; q++)
        n += *q == '&';
    struct query_pair *pairs = calloc(n, sizeof(*pairs));
    if (!pairs)
        return -ENOMEM;

    size_t count = 0;
    for (const char *q = query; *q;) {
        size_t len = strcspn(q, "&");
        if (len > 0) {
            const char *eq = memchr(q, '=', len);
            struct query_pair *p = &pairs[count++];
            p->key = q;
            p->klen = eq ? (size_t)(eq - q) : len;
            p->val = eq ? eq + 1 : q + len;
            p->vlen = eq ? len - p->klen - 1 : 0;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    qsort(pairs, count, sizeof(*pairs), cmp_query_pair);
    for (size_t i = 0; i < count; i++) {
        if (i)
            buf_add(b, "&", 1);
        buf_add(b, pairs[i].key, pairs[i].klen);
        buf_add(b, "=", 1);
        buf_add(b, pairs[i].val, pairs[i].vlen);
    }
    free(pairs);
    return 0;
}

struct canon_header {
    char *name;   /* lowercased copy */
    char *value;  /* trimmed, inner whitespace runs collapsed to one space */
    size_t order; /* input position, so repeated names keep their order when merged */
};

static int cmp_canon_header(const void *pa, const void *pb)
{
    const struct canon_header *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    return (a->order > b->order) - (a->order < b->order);
}

/* Header names are HTTP tokens; anything that could break the canonical form is refused. */
static int header_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == ':' || c >= 0x7f)
            return 0;
    }
    return 1;
}

/* ASCII-only on purpose: <ctype.h> follows the locale (a Turkish locale lowercases 'I' to a
 * dotless i), and the canonical form must not depend on where the process runs. */
static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    return d;
}

/* Trim and collapse runs of spaces/tabs. A CR or LF would forge extra canonical lines (and
 * extra HTTP headers), so such a value is rejected with -EINVAL. */
static int normalize_value(const char *s, char **out)
{
    char *d = malloc(strlen(s) + 1), *w = d;
    if (!d)
        return -ENOMEM;
    int pending_space = 0;
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n') {
            free(d);
            return -EINVAL;
        }
        if (*s == ' ' || *s == '\t') {
            pending_space = w != d;
            continue;
        }
        if (pending_space)
            *w++ = ' ';
        pending_space = 0;
        *w++ = *s;
    }
    *w = '\0';
    *out = d;
    return 0;
}

static void free_headers(struct canon_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

/* Append "name:value\n" for each header (repeats joined by ',') and then the blank line,
 * and write the signed-headers list ("a;b;c") into signed_list. Requires a host header. */
static int canonical_headers(struct buf *b, struct buf *signed_list,
                             const struct dl_sign_header *in, size_t n)
{
    if (n == 0 || !in)
        return -EINVAL;
    struct canon_header *h = calloc(n, sizeof(*h));
    if (!h)
        return -ENOMEM;
    int rc = 0, have_host = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!in[i].name || !in[i].value || !header_name_ok(in[i].name)) {
            rc = -EINVAL;
            break;
        }
        h[i].order = i;
        h[i].name = lower_dup(in[i].name);
        if (!h[i].name) {
            rc = -ENOMEM;
            break;
        }
        rc = normalize_value(in[i].value, &h[i].value);
        have_host |= strcmp(h[i].name, "host") == 0;
    }
    if (rc == 0 && !have_host)
        rc = -EINVAL;
    if (rc) {
        free_headers(h, n);
        return rc;
    }

    qsort(h, n, sizeof(*h), cmp_canon_header);
    for (size_t i = 0; i < n; i++) {
        int repeat = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (repeat) {
            buf_add(b, ",", 1);
        } else {
            if (i > 0) {
                buf_add(b, "\n", 1);
                buf_add(signed_list, ";", 1);
            }
            buf_str(b, h[i].name);
            buf_add(b, ":", 1);
            buf_str(signed_list, h[i].name);
        }
        buf_str(b, h[i].value);
    }
    buf_add(b, "\n\n", 2);
    free_headers(h, n);
    return 0;
}

/* ISO 8601 basic, "YYYYMMDDTHHMMSSZ": the date part goes into the key and the scope. */
static int datetime_ok(const char *s)
{
    static const char shape[] = "ddddddddTddddddZ";
    if (strlen(s) != sizeof(shape) - 1)
        return 0;
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? !is_digit((unsigned char)s[i]) : s[i] != shape[i])
            return 0;
    }
    return 1;
}

static int input_ok(const struct dl_sign_input *in)
{
    if (!in || (in->flavor != DL_SIGN_AWS4 && in->flavor != DL_SIGN_TOS4))
        return 0;
    if (!in->access_key || !*in->access_key || !in->secret_key || !*in->secret_key || !in->region ||
        !*in->region || !in->datetime || !in->method || !*in->method || !in->path ||
        !in->payload_hash || !*in->payload_hash)
        return 0;
    if (in->flavor == DL_SIGN_AWS4 && (!in->service || !*in->service))
        return 0;
    /* These are joined into '/'-separated scope and newline-separated canonical text. */
    if (strpbrk(in->access_key, "/\r\n, ") || strpbrk(in->region, "/\r\n") ||
        (in->flavor == DL_SIGN_AWS4 && strpbrk(in->service, "/\r\n")) ||
        strpbrk(in->method, "\r\n ") || strpbrk(in->path, "\r\n ") ||
        (in->query && strpbrk(in->query, "\r\n ")) || strpbrk(in->payload_hash, "\r\n"))
        return 0;
    return datetime_ok(in->datetime);
}

/* signing key = HMAC chain over date, region, service, terminator starting from
 * key_prefix+secret; the caller cleanses it after use. */
static int derive_key(const struct flavor_names *f, const char *secret, const char *date,
                      const char *region, const char *service, unsigned char key[32])
{
    size_t plen = strlen(f->key_prefix), slen = strlen(secret);
    char *k0 = malloc(plen + slen + 1);
    if (!k0)
        return -ENOMEM;
    memcpy(k0, f->key_prefix, plen);
    memcpy(k0 + plen, secret, slen + 1);
    unsigned char k[32];
    cm_hmac_sha256(k0, plen + slen, date, 8, k);
    OPENSSL_cleanse(k0, plen + slen);
    free(k0);
    cm_hmac_sha256(k, 32, region, strlen(region), k);
    cm_hmac_sha256(k, 32, service, strlen(service), k);
    cm_hmac_sha256(k, 32, f->terminator, strlen(f->terminator), key);
    OPENSSL_cleanse(k, sizeof(k));
    return 0;
}

/* METHOD \n path \n query \n headers \n\n signed-list \n payload-hash, into creq; the
 * signed-header list also goes into signed_list for the Authorization value. */
static int canonical_request(const struct dl_sign_input *in, struct buf *creq,
                             struct buf *signed_list)
{
    buf_str(creq, in->method);
    buf_add(creq, "\n", 1);
    buf_str(creq, *in->path ? in->path : "/");
    buf_add(creq, "\n", 1);
    int rc = canonical_query(creq, in->query);
    if (rc)
        return rc;
    buf_add(creq, "\n", 1);
    rc = canonical_headers(creq, signed_list, in->headers, in->nheaders);
    if (rc)
        return rc;
    if (signed_list->oom)
        return -ENOMEM;
    buf_str(creq, signed_list->p);
    buf_add(creq, "\n", 1);
    buf_str(creq, in->payload_hash);
    return creq->oom ? -ENOMEM : 0;
}

/* ALGORITHM \n datetime \n scope \n hex(sha256(creq)), signed with the derived key. */
static int compute_signature(const struct dl_sign_input *in, const char *date, const char *service,
                             const struct buf *creq, char sig[65])
{
    const struct flavor_names *f = &flavors[in->flavor];
    char creq_hash[65];
    cm_sha256_hex(creq->p, creq->len, creq_hash);

    struct buf sts = {0};
    const char *parts[] = {f->algorithm, "\n", in->datetime,  "\n", date,     "/", in->region, "/",
                           service,      "/",  f->terminator, "\n", creq_hash};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        buf_str(&sts, parts[i]);
    if (sts.oom) {
        free(sts.p);
        return -ENOMEM;
    }

    unsigned char key[32], mac[32];
    int rc = derive_key(f, in->secret_key, date, in->region, service, key);
    if (rc == 0) {
        cm_hmac_sha256(key, sizeof(key), sts.p, sts.len, mac);
        OPENSSL_cleanse(key, sizeof(key));
        cm_hex(mac, sizeof(mac), sig);
    }
    free(sts.p);
    return rc;
}

int dl_sign(const struct dl_sign_input *in, char *auth, size_t authlen, char *signature)
{
    if (auth && authlen)
        auth[0] = '\0';
    if (!auth || !input_ok(in))
        return -EINVAL;
    const struct flavor_names *f = &flavors[in->flavor];
    const char *service = in->flavor == DL_SIGN_TOS4 ? "tos" : in->service;
    char date[9], sig[65];
    memcpy(date, in->datetime, 8);
    date[8] = '\0';

    struct buf creq = {0}, signed_list = {0};
    int rc = canonical_request(in, &creq, &signed_list);
    if (rc == 0)
        rc = compute_signature(in, date, service, &creq, sig);
    if (rc == 0) {
        int n = snprintf(auth, authlen,
                         "%s Credential=%s/%s/%s/%s/%s, SignedHeaders=%s, "
                         "Signature=%s",
                         f->algorithm, in->access_key, date, in->region, service, f->terminator,
                         signed_list.p, sig);
        if (n < 0 || (size_t)n >= authlen) {
            if (authlen)
                auth[0] = '\0';
            rc = -ENOSPC;
        } else if (signature) {
            memcpy(signature, sig, sizeof(sig));
        }
    }
    free(creq.p);
    free(signed_list.p);
    return rc;
}

int dl_sign_uri_encode(const char *s, int keep_slash, char *out, size_t outlen)
{
    static const char hexu[] = "0123456789ABCDEF";
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        int keep =
            is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
        size_t need = keep ? 1 : 3;
        if (w + need >= outlen || w + need > INT_MAX)
            goto nospc;
        if (keep) {
            out[w++] = (char)c;
        } else {
            out[w++] = '%';
            out[w++] = hexu[c >> 4];
            out[w++] = hexu[c & 0x0f];
        }
    }
    if (w >= outlen)
        goto nospc;
    out[w] = '\0';
    return (int)w;
nospc:
    if (outlen)
        out[0] = '\0';
    return -ENOSPC;
}
