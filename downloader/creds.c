/* creds.c - the S3 credential chain of creds.h: env keys, STS web identity, container
 * endpoint, IMDSv2, tried in that order on every (re)fetch.
 *
 * Shape: the chain is a table of sources. A source whose variables are set is authoritative:
 * when it fails the chain stops with its error instead of falling through to the next one (as
 * the AWS SDKs do), so a broken web-identity setup is never silently replaced by an instance
 * role. Only IMDS, which nothing configures, turns "no metadata service here" into -ENOENT.
 *
 * Every fetch is one small libcurl easy request with a short timeout and a body capped at
 * MAX_BODY; redirects are never followed, so a token only goes where it was configured. The
 * provider keeps the last credentials under a mutex and fetches again when they are within
 * REFRESH_WINDOW_S of expiry; if that fetch fails while they are still valid they are kept and
 * the next attempt waits RETRY_AFTER_FAIL_S. Every secret is registered with
 * cm_log_add_secret before anything could log it, and error messages pass through cm_redact. */
#include "creds.h"

#include "../common/env.h"
#include "../common/log.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define COMP "creds"
#define REFRESH_WINDOW_S 300  /* refresh when this close to Expiration */
#define RETRY_AFTER_FAIL_S 10 /* after a failed refresh, keep valid creds this long */
#define MAX_BODY (64 * 1024)  /* cap on any response body and token file */
#define CONNECT_MS 2000L
#define TOTAL_MS 5000L
#define IMDS_MS 1000L          /* connect and total: off EC2 this must fail fast */
#define IMDS_TOKEN_TTL "21600" /* seconds; a fresh token is taken on every fetch */
#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_DEFAULT_V6 "http://[fd00:ec2::254]"
#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"
#define CONTAINER_HOST "http://169.254.170.2"

/* A source returns this when its variables are not set: the chain moves on. */
#define NOT_CONFIGURED 1

struct dl_creds_provider {
    pthread_mutex_t lock;
    struct dl_aws_creds cur; /* meaningful when have */
    bool have;
    bool fixed;       /* explicit keys: never fetched again */
    int64_t retry_at; /* after a failed refresh, no new attempt before this */
};

/* Format a message into err with every registered secret masked; returns rc. */
__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int rc,
                                                      const char *fmt, ...)
{
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    if (err && errlen)
        cm_redact(raw, err, errlen);
    return rc;
}

/* Copy src into dst[cap]; -E2BIG when it does not fit. */
static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return -E2BIG;
    memcpy(dst, src, n + 1);
    return 0;
}

static void trim_right(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/* Read a small text file (a token) into a malloc'd, NUL-terminated, right-trimmed string the
 * caller frees. var names the variable the path came from, for the message. */
static int read_token_file(const char *path, const char *var, char **out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, -EIO, "cannot open %s=%s: %s", var, path, strerror(errno));
    char *buf = malloc(MAX_BODY + 1);
    if (!buf) {
        close(fd);
        return fail(err, errlen, -ENOMEM, "out of memory reading %s", var);
    }
    size_t len = 0;
    ssize_t n;
    do {
        n = read(fd, buf + len, MAX_BODY + 1 - len);
        if (n > 0)
            len += (size_t)n;
    } while ((n > 0 && len <= MAX_BODY) || (n < 0 && errno == EINTR));
    int read_errno = n < 0 ? errno : 0;
    close(fd);
    buf[len < MAX_BODY ? len : MAX_BODY] = '\0';
    int rc = 0;
    if (read_errno)
        rc = fail(err, errlen, -EIO, "cannot read %s=%s: %s", var, path, strerror(read_errno));
    else if (len > MAX_BODY)
        rc = fail(err, errlen, -EIO, "%s=%s is larger than %d bytes", var, path, MAX_BODY);
    else if (memchr(buf, '\0', len))
        rc = fail(err, errlen, -EIO, "%s=%s contains a NUL byte", var, path);
    if (rc == 0) {
        trim_right(buf);
        if (!buf[0])
            rc = fail(err, errlen, -EIO, "%s=%s is empty", var, path);
    }
    if (rc < 0) {
        explicit_bzero(buf, MAX_BODY + 1);
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

/* Append a formatted header line to *list; -ENOMEM leaves *list as it was. The formatted
 * copy may hold a token, so it is wiped. */
__attribute__((format(printf, 2, 3))) static int add_header(struct curl_slist **list,
                                                            const char *fmt, ...)
{
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    struct curl_slist *l = curl_slist_append(*list, line);
    explicit_bzero(line, (size_t)n);
    free(line);
    if (!l)
        return -ENOMEM;
    *list = l;
    return 0;
}

/* ---- HTTP: one bounded request per call ---------------------------------------------- */

struct http_req {
    const char *method; /* "GET", "PUT" or "POST" */
    const char *url;
    const struct curl_slist *headers;
    const char *body; /* sent with Content-Length when non-NULL (may be "") */
    long timeout_ms;  /* total; connect gets min(timeout_ms, CONNECT_MS) */
    bool no_proxy;    /* link-local and loopback services are never proxied */
};

struct http_resp {
    long status;
    char *body; /* NUL-terminated, at most MAX_BODY bytes; free() it */
    size_t len;
    bool overflow;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http_resp *r = ud;
    size_t n = size * nmemb;
    if (n > MAX_BODY - r->len) {
        r->overflow = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static CURLcode http_setup(CURL *h, const struct http_req *rq, struct http_resp *rs, char *curl_err)
{
    long connect_ms = rq->timeout_ms < CONNECT_MS ? rq->timeout_ms : CONNECT_MS;
    const char *ca = cm_ca_bundle(NULL); /* STS behind a private CA, as the sources */
    CURLcode c = curl_easy_setopt(h, CURLOPT_URL, rq->url);
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
    if (c == CURLE_OK)
#if LIBCURL_VERSION_NUM >= 0x075500
        c = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        c = curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (c == CURLE_OK && ca)
        c = curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_USERAGENT, "aibrix-runtime");
    if (c == CURLE_OK && rq->headers)
        c = curl_easy_setopt(h, CURLOPT_HTTPHEADER, rq->headers);
    if (c == CURLE_OK && rq->no_proxy)
        c = curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (c == CURLE_OK && rq->body)
        c = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(rq->body));
    if (c == CURLE_OK && rq->body)
        c = curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body);
    if (c == CURLE_OK && strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "POST") != 0)
        c = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    if (c == CURLE_OK)
        c = curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
    return c;
}

/* Perform one request. Any HTTP status is a success here (0, rs->status set, rs->body owned
 * by the caller); a transport failure or an oversized body is -EIO with err naming the URL. */
static int http_do(const struct http_req *rq, struct http_resp *rs, char *err, size_t errlen)
{
    char curl_err[CURL_ERROR_SIZE] = "";
    memset(rs, 0, sizeof *rs);
    rs->body = malloc(MAX_BODY + 1);
    CURL *h = curl_easy_init();
    if (!rs->body || !h) {
        free(rs->body);
        rs->body = NULL;
        curl_easy_cleanup(h);
        return fail(err, errlen, -ENOMEM, "%s %s: out of memory", rq->method, rq->url);
    }
    rs->body[0] = '\0';
    CURLcode c = http_setup(h, rq, rs, curl_err);
    if (c == CURLE_OK)
        c = curl_easy_perform(h);
    if (c == CURLE_OK)
        c = curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    curl_easy_cleanup(h);
    if (c == CURLE_OK)
        return 0;
    free(rs->body);
    rs->body = NULL;
    if (rs->overflow)
        return fail(err, errlen, -EIO, "%s %s: response larger than %d bytes", rq->method, rq->url,
                    MAX_BODY);
    return fail(err, errlen, -EIO, "%s %s: %s", rq->method, rq->url,
                curl_err[0] ? curl_err : curl_easy_strerror(c));
}

/* HTTP statuses that mean "the service refused these credentials"; anything else that is not
 * 200 is reported as -EIO. */
static const struct {
    long status;
    int err;
} status_errnos[] = {{400, -EACCES}, {401, -EACCES}, {403, -EACCES}};

static int status_errno(long status)
{
    for (size_t i = 0; i < sizeof status_errnos / sizeof status_errnos[0]; i++)
        if (status_errnos[i].status == status)
            return status_errnos[i].err;
    return -EIO;
}

/* ---- response parsing ----------------------------------------------------------------- */

/* ISO 8601 as AWS writes it: 2024-05-01T12:00:00Z, optional fraction, Z or +hh:mm (no
 * suffix is taken as UTC). */
static int parse_iso8601(const char *s, int64_t *out)
{
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n == 0)
        return -EINVAL;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0)
        return -EINVAL;
    const char *p = s + n;
    if (*p == '.') {
        if (!isdigit((unsigned char)*++p))
            return -EINVAL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &k) != 2 || k != 5)
            return -EINVAL;
        offset = (int64_t)(hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
        p += 1 + k;
    }
    if (*p)
        return -EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) - offset;
    return 0;
}

/* One credential field found in a response: where it goes and how large it may be. */
struct field {
    const char *name; /* JSON member, or XML path of local names */
    char *dst;
    size_t cap;
    bool required;
};

/* Check what was collected into fields (named by what), register the secrets and convert
 * the expiration. */
static int finish_creds(struct dl_aws_creds *c, const char *expiration, const char *what, char *err,
                        size_t errlen)
{
    if (!c->access_key[0] || !c->secret_key[0])
        return fail(err, errlen, -EIO, "%s: response has no AccessKeyId/SecretAccessKey", what);
    cm_log_add_secret(c->secret_key);
    cm_log_add_secret(c->session_token);
    if (parse_iso8601(expiration, &c->expires) < 0)
        return fail(err, errlen, -EIO, "%s: bad or missing Expiration '%.64s'", what, expiration);
    return 0;
}

/* Container and IMDS answer {Code?, AccessKeyId, SecretAccessKey, Token, Expiration}. */
static int parse_json_creds(const char *body, const char *what, struct dl_aws_creds *c, char *err,
                            size_t errlen)
{
    char expiration[64] = "";
    const struct field fields[] = {
        {"AccessKeyId", c->access_key, sizeof c->access_key, true},
        {"SecretAccessKey", c->secret_key, sizeof c->secret_key, true},
        {"Token", c->session_token, sizeof c->session_token, false},
        {"Expiration", expiration, sizeof expiration, true},
    };
    cJSON *root = cJSON_Parse(body);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, errlen, -EIO, "%s: response is not a JSON object", what);
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "Code");
    if (cJSON_IsString(code) && strcmp(code->valuestring, "Success") != 0) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "Message");
        int rc = fail(err, errlen, -EIO, "%s: Code=%.64s %.200s", what, code->valuestring,
                      cJSON_IsString(msg) ? msg->valuestring : "");
        cJSON_Delete(root);
        return rc;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, fields[i].name);
        if (!cJSON_IsString(v) && !fields[i].required)
            continue;
        if (!cJSON_IsString(v) || copy_str(fields[i].dst, fields[i].cap, v->valuestring) < 0) {
            cJSON_Delete(root);
            return fail(err, errlen, -EIO, "%s: %s missing, not a string or too long", what,
                        fields[i].name);
        }
    }
    cJSON_Delete(root);
    return finish_creds(c, expiration, what, err, errlen);
}

/* Expat collector: keeps the path of local names ("/A/B/C") and appends character data to
 * the field whose path equals it. Namespaces are stripped, so any xmlns is accepted. */
struct xml_ctx {
    char path[512];
    size_t plen;
    unsigned deep; /* levels beyond what path can hold; nothing matches there */
    const struct field *fields;
    size_t nfields;
    const struct field *cur;
    bool too_long;
};

#define XML_NS_SEP '|'

static const struct field *xml_match(const struct xml_ctx *x)
{
    if (x->deep)
        return NULL;
    for (size_t i = 0; i < x->nfields; i++)
        if (strcmp(x->fields[i].name, x->path) == 0)
            return &x->fields[i];
    return NULL;
}

static void XMLCALL xml_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct xml_ctx *x = ud;
    const char *local = strrchr(name, XML_NS_SEP);
    local = local ? local + 1 : name;
    size_t n = strlen(local);
    (void)attrs;
    if (x->deep || x->plen + 1 + n >= sizeof x->path) {
        x->deep++;
    } else {
        x->path[x->plen++] = '/';
        memcpy(x->path + x->plen, local, n + 1);
        x->plen += n;
    }
    x->cur = xml_match(x);
}

static void XMLCALL xml_end(void *ud, const XML_Char *name)
{
    struct xml_ctx *x = ud;
    (void)name;
    if (x->deep) {
        x->deep--;
    } else {
        while (x->plen > 0 && x->path[x->plen - 1] != '/')
            x->plen--;
        if (x->plen > 0)
            x->plen--;
        x->path[x->plen] = '\0';
    }
    x->cur = xml_match(x);
}

static void XMLCALL xml_text(void *ud, const XML_Char *s, int len)
{
    struct xml_ctx *x = ud;
    if (!x->cur || len <= 0)
        return;
    size_t have = strlen(x->cur->dst);
    if (have + (size_t)len >= x->cur->cap) {
        x->too_long = true;
        return;
    }
    memcpy(x->cur->dst + have, s, (size_t)len);
    x->cur->dst[have + (size_t)len] = '\0';
}

/* Parse body collecting fields; -EIO with a message on malformed XML or an oversized value. */
static int xml_collect(const char *body, size_t len, const struct field *fields, size_t n,
                       const char *what, char *err, size_t errlen)
{
    struct xml_ctx x = {.fields = fields, .nfields = n};
    XML_Parser p = XML_ParserCreateNS(NULL, XML_NS_SEP);
    if (!p)
        return fail(err, errlen, -ENOMEM, "%s: out of memory", what);
    XML_SetUserData(p, &x);
    XML_SetElementHandler(p, xml_start, xml_end);
    XML_SetCharacterDataHandler(p, xml_text);
    int rc = 0;
    if (XML_Parse(p, body, (int)len, 1) != XML_STATUS_OK)
        rc = fail(err, errlen, -EIO, "%s: bad XML at line %lu: %s", what,
                  (unsigned long)XML_GetCurrentLineNumber(p), XML_ErrorString(XML_GetErrorCode(p)));
    else if (x.too_long)
        rc = fail(err, errlen, -EIO, "%s: a credential field is too long", what);
    XML_ParserFree(p);
    return rc;
}

#define STS_CREDS "/AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/"

static int parse_sts_creds(const struct http_resp *rs, struct dl_aws_creds *c, char *err,
                           size_t errlen)
{
    static const char what[] = "STS AssumeRoleWithWebIdentity";
    char expiration[64] = "";
    const struct field fields[] = {
        {STS_CREDS "AccessKeyId", c->access_key, sizeof c->access_key, true},
        {STS_CREDS "SecretAccessKey", c->secret_key, sizeof c->secret_key, true},
        {STS_CREDS "SessionToken", c->session_token, sizeof c->session_token, true},
        {STS_CREDS "Expiration", expiration, sizeof expiration, true},
    };
    int rc =
        xml_collect(rs->body, rs->len, fields, sizeof fields / sizeof fields[0], what, err, errlen);
    if (rc < 0)
        return rc;
    return finish_creds(c, expiration, what, err, errlen);
}

/* STS (and MinIO) errors: <ErrorResponse><Error><Code/><Message/></Error></ErrorResponse>. */
static int sts_error(const struct http_resp *rs, const char *url, char *err, size_t errlen)
{
    char code[128] = "", msg[512] = "";
    const struct field fields[] = {
        {"/ErrorResponse/Error/Code", code, sizeof code, false},
        {"/ErrorResponse/Error/Message", msg, sizeof msg, false},
    };
    char ignored[8];
    if (xml_collect(rs->body, rs->len, fields, 2, "STS", ignored, sizeof ignored) < 0)
        code[0] = msg[0] = '\0';
    return fail(err, errlen, status_errno(rs->status),
                "STS AssumeRoleWithWebIdentity at %s failed: HTTP %ld %s%s%s", url, rs->status,
                code[0] ? code : "(no error code)", msg[0] ? ": " : "", msg);
}

/* ---- the sources ---------------------------------------------------------------------- */

/* "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not", or 0 when both or neither. */
static int check_env_pair(char *err, size_t errlen)
{
    const char *ak = cm_env_str("AWS_ACCESS_KEY_ID");
    const char *sk = cm_env_str("AWS_SECRET_ACCESS_KEY");
    if (!ak == !sk)
        return 0;
    return fail(err, errlen, -EINVAL, "%s is set but %s is not: set both or neither",
                ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
}

/* Static keys (env or explicit); expires 0. */
static int set_static(struct dl_aws_creds *c, const char *ak, const char *sk, const char *token,
                      const char *what, char *err, size_t errlen)
{
    if (copy_str(c->access_key, sizeof c->access_key, ak) < 0 ||
        copy_str(c->secret_key, sizeof c->secret_key, sk) < 0 ||
        copy_str(c->session_token, sizeof c->session_token, token ? token : "") < 0)
        return fail(err, errlen, -EINVAL, "%s: access key, secret or session token too long", what);
    cm_log_add_secret(c->secret_key);
    cm_log_add_secret(c->session_token);
    c->expires = 0;
    return 0;
}

static int from_env(struct dl_aws_creds *c, char *err, size_t errlen)
{
    int rc = check_env_pair(err, errlen);
    if (rc < 0)
        return rc;
    const char *ak = cm_env_str("AWS_ACCESS_KEY_ID");
    if (!ak)
        return NOT_CONFIGURED;
    return set_static(c, ak, cm_env_str("AWS_SECRET_ACCESS_KEY"), cm_env_str("AWS_SESSION_TOKEN"),
                      "AWS_ACCESS_KEY_ID", err, errlen);
}

/* https://sts.<region>.amazonaws.com unless AWS_ENDPOINT_URL_STS is set. The regional
 * endpoint is used (the SDKs' current default) rather than the global one: it needs no
 * cross-region hop and keeps working in opt-in regions. AWS_ENDPOINT_URL is deliberately not
 * used: in this project it usually names an S3-compatible store. */
static int sts_url(char *url, size_t cap, char *err, size_t errlen)
{
    const char *ep = cm_env_str("AWS_ENDPOINT_URL_STS");
    if (ep) {
        if ((size_t)snprintf(url, cap, "%s", ep) >= cap)
            return fail(err, errlen, -EINVAL, "AWS_ENDPOINT_URL_STS is too long");
        return 0;
    }
    const char *region = cm_env_str("AWS_REGION");
    if (!region)
        region = cm_env_str("AWS_DEFAULT_REGION");
    if (!region)
        region = "us-east-1";
    for (const char *p = region; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-')
            return fail(err, errlen, -EINVAL, "invalid AWS region '%.64s'", region);
    if ((size_t)snprintf(url, cap, "https://sts.%s.amazonaws.com/", region) >= cap)
        return fail(err, errlen, -EINVAL, "AWS region is too long");
    return 0;
}

/* The form body; every value is percent-encoded (curl_easy_escape without a handle needs
 * libcurl 7.82). Caller frees. */
static char *sts_form(const char *role_arn, const char *session, const char *token)
{
    char *arn = curl_easy_escape(NULL, role_arn, 0);
    char *name = curl_easy_escape(NULL, session, 0);
    char *tok = curl_easy_escape(NULL, token, 0);
    char *form = NULL;
    if (arn && name && tok &&
        asprintf(&form,
                 "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s"
                 "&RoleSessionName=%s&WebIdentityToken=%s",
                 arn, name, tok) < 0)
        form = NULL;
    curl_free(arn);
    curl_free(name);
    curl_free(tok);
    return form;
}

static int from_web_identity(struct dl_aws_creds *c, char *err, size_t errlen)
{
    const char *arn = cm_env_str("AWS_ROLE_ARN");
    const char *file = cm_env_str("AWS_WEB_IDENTITY_TOKEN_FILE");
    if (!arn && !file)
        return NOT_CONFIGURED;
    if (!arn || !file) {
        cm_warn(COMP, "web identity skipped: %s is set but %s is not",
                arn ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE",
                arn ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN");
        return NOT_CONFIGURED;
    }
    char url[1024], session[64];
    int rc = sts_url(url, sizeof url, err, errlen);
    if (rc < 0)
        return rc;
    const char *name = cm_env_str("AWS_ROLE_SESSION_NAME");
    if (!name) {
        snprintf(session, sizeof session, "aibrix-runtime-%lld", (long long)time(NULL));
        name = session;
    }
    char *token = NULL;
    rc = read_token_file(file, "AWS_WEB_IDENTITY_TOKEN_FILE", &token, err, errlen);
    if (rc < 0)
        return rc;
    cm_log_add_secret(token);
    char *form = sts_form(arn, name, token);
    explicit_bzero(token, strlen(token));
    free(token);
    if (!form)
        return fail(err, errlen, -ENOMEM, "out of memory building the STS request");

    struct curl_slist *hdrs = NULL;
    if (add_header(&hdrs, "Accept: application/xml") < 0) {
        free(form);
        return fail(err, errlen, -ENOMEM, "out of memory");
    }
    struct http_req rq = {
        .method = "POST", .url = url, .headers = hdrs, .body = form, .timeout_ms = TOTAL_MS};
    struct http_resp rs;
    rc = http_do(&rq, &rs, err, errlen);
    curl_slist_free_all(hdrs);
    explicit_bzero(form, strlen(form));
    free(form);
    if (rc < 0)
        return rc;
    if (rs.status == 200)
        rc = parse_sts_creds(&rs, c, err, errlen);
    else
        rc = sts_error(&rs, url, err, errlen);
    free(rs.body);
    return rc;
}

/* Plain http is accepted only for loopback and the ECS/EKS agent addresses (as the SDKs do):
 * the Authorization token must not cross a network in clear text. */
static bool container_host_ok(const char *host)
{
    static const char *const allowed[] = {"localhost", "169.254.170.2", "169.254.170.23",
                                          "fd00:ec2::23"};
    char h[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof h)
        return false;
    memcpy(h, host, n);
    h[n] = '\0';
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (strcasecmp(h, allowed[i]) == 0)
            return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static int check_full_uri(const char *uri, char *err, size_t errlen)
{
    static const char var[] = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    if (!u)
        return fail(err, errlen, -ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, uri, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        rc = fail(err, errlen, -EINVAL, "%s=%s is not a valid URL", var, uri);
    else if (strcasecmp(scheme, "https") != 0 &&
             (strcasecmp(scheme, "http") != 0 || !container_host_ok(host)))
        rc = fail(err, errlen, -EINVAL,
                  "%s=%s: only https, or http to loopback or 169.254.170.2/23, is allowed", var,
                  uri);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* The Authorization header value: the token file (re-read each time, EKS rotates it) wins
 * over AWS_CONTAINER_AUTHORIZATION_TOKEN. *out is NULL when neither is set; caller frees. */
static int container_auth(char **out, char *err, size_t errlen)
{
    const char *file = cm_env_str("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tok = cm_env_str("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    *out = NULL;
    if (file) {
        int rc = read_token_file(file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", out, err, errlen);
        if (rc < 0)
            return rc;
    } else if (tok && !(*out = strdup(tok))) {
        return fail(err, errlen, -ENOMEM, "out of memory");
    }
    if (*out && strpbrk(*out, "\r\n")) {
        free(*out);
        *out = NULL;
        return fail(err, errlen, -EINVAL,
                    "the container authorization token contains a "
                    "line break");
    }
    cm_log_add_secret(*out);
    return 0;
}

static int from_container(struct dl_aws_creds *c, char *err, size_t errlen)
{
    const char *rel = cm_env_str("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = cm_env_str("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    char url[1024];
    int rc;
    /* The relative URI wins when both are set, as in the SDKs. */
    if (rel) {
        if (rel[0] != '/' ||
            (size_t)snprintf(url, sizeof url, "%s%s", CONTAINER_HOST, rel) >= sizeof url)
            return fail(err, errlen, -EINVAL,
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path starting with /");
    } else if (full) {
        if ((rc = check_full_uri(full, err, errlen)) < 0)
            return rc;
        if ((size_t)snprintf(url, sizeof url, "%s", full) >= sizeof url)
            return fail(err, errlen, -EINVAL, "AWS_CONTAINER_CREDENTIALS_FULL_URI is too long");
    } else {
        return NOT_CONFIGURED;
    }

    char *auth = NULL;
    if ((rc = container_auth(&auth, err, errlen)) < 0)
        return rc;
    struct curl_slist *hdrs = NULL;
    rc = add_header(&hdrs, "Accept: application/json");
    if (rc == 0 && auth)
        rc = add_header(&hdrs, "Authorization: %s", auth);
    if (auth)
        explicit_bzero(auth, strlen(auth));
    free(auth);
    if (rc < 0) {
        curl_slist_free_all(hdrs);
        return fail(err, errlen, -ENOMEM, "out of memory");
    }
    struct http_req rq = {
        .method = "GET", .url = url, .headers = hdrs, .timeout_ms = TOTAL_MS, .no_proxy = true};
    struct http_resp rs;
    rc = http_do(&rq, &rs, err, errlen);
    curl_slist_free_all(hdrs);
    if (rc < 0)
        return rc;
    char what[1100];
    snprintf(what, sizeof what, "container credentials at %s", url);
    if (rs.status == 200)
        rc = parse_json_creds(rs.body, what, c, err, errlen);
    else
        rc = fail(err, errlen, status_errno(rs.status), "%s: HTTP %ld", what, rs.status);
    free(rs.body);
    return rc;
}

/* GET base+path with the IMDS session token; the body is left in rs on 0. */
static int imds_get(const char *base, const char *path, const char *token, struct http_resp *rs,
                    char *err, size_t errlen)
{
    char url[1024];
    struct curl_slist *hdrs = NULL;
    if ((size_t)snprintf(url, sizeof url, "%s%s", base, path) >= sizeof url)
        return fail(err, errlen, -EIO, "IMDS: URL too long");
    if (add_header(&hdrs, "X-aws-ec2-metadata-token: %s", token) < 0)
        return fail(err, errlen, -ENOMEM, "out of memory");
    struct http_req rq = {
        .method = "GET", .url = url, .headers = hdrs, .timeout_ms = IMDS_MS, .no_proxy = true};
    int rc = http_do(&rq, rs, err, errlen);
    curl_slist_free_all(hdrs);
    return rc;
}

/* PUT /latest/api/token. Anything but a token (no service, or a non-AWS metadata service
 * answering at the same address) means "no IMDS here": -ENOENT, so the caller may go
 * anonymous. IMDSv1 is not used. */
static int imds_token(const char *base, char *token, size_t cap, char *err, size_t errlen)
{
    char url[1024];
    if ((size_t)snprintf(url, sizeof url, "%s/latest/api/token", base) >= sizeof url)
        return fail(err, errlen, -EINVAL, "AWS_EC2_METADATA_SERVICE_ENDPOINT is too long");
    struct curl_slist *hdrs = NULL;
    if (add_header(&hdrs, "X-aws-ec2-metadata-token-ttl-seconds: %s", IMDS_TOKEN_TTL) < 0)
        return fail(err, errlen, -ENOMEM, "out of memory");
    struct http_req rq = {.method = "PUT",
                          .url = url,
                          .headers = hdrs,
                          .body = "",
                          .timeout_ms = IMDS_MS,
                          .no_proxy = true};
    struct http_resp rs;
    char why[512];
    int rc = http_do(&rq, &rs, why, sizeof why);
    curl_slist_free_all(hdrs);
    if (rc == -EIO)
        return fail(err, errlen, -ENOENT, "no credentials: IMDS not reachable (%s)", why);
    if (rc < 0)
        return fail(err, errlen, rc, "%s", why);
    if (rs.status != 200) {
        free(rs.body);
        return fail(err, errlen, -ENOENT, "no credentials: IMDS at %s gave no token (HTTP %ld)",
                    base, rs.status);
    }
    trim_right(rs.body);
    rc = copy_str(token, cap, rs.body);
    free(rs.body);
    if (rc < 0 || !token[0])
        return fail(err, errlen, -EIO, "IMDS at %s: empty or oversized token", base);
    cm_log_add_secret(token);
    return 0;
}

/* The first line of the role listing: the instance profile's role name. */
static int imds_role(const char *base, const char *token, char *role, size_t cap, char *err,
                     size_t errlen)
{
    struct http_resp rs;
    int rc = imds_get(base, IMDS_CREDS_PATH, token, &rs, err, errlen);
    if (rc < 0)
        return rc;
    if (rs.status == 404) {
        free(rs.body);
        return fail(err, errlen, -ENOENT, "no credentials: no IAM role attached (IMDS at %s)",
                    base);
    }
    if (rs.status != 200) {
        free(rs.body);
        return fail(err, errlen, -EIO, "IMDS at %s: listing roles gave HTTP %ld", base, rs.status);
    }
    rs.body[strcspn(rs.body, "\r\n")] = '\0';
    trim_right(rs.body);
    rc = copy_str(role, cap, rs.body);
    bool bad = rc < 0 || !role[0] || strchr(role, '/') || strchr(role, '?') || strchr(role, '#') ||
               strcmp(role, "..") == 0 || strcmp(role, ".") == 0;
    free(rs.body);
    if (bad)
        return fail(err, errlen, -EIO, "IMDS at %s: unusable role name", base);
    return 0;
}

static int from_imds(struct dl_aws_creds *c, char *err, size_t errlen)
{
    if (cm_env_bool("AWS_EC2_METADATA_DISABLED", false))
        return NOT_CONFIGURED;
    const char *mode = cm_env_str("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    const char *ep = cm_env_str("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!ep)
        ep = mode && strcasecmp(mode, "IPv6") == 0 ? IMDS_DEFAULT_V6 : IMDS_DEFAULT;
    char base[512], token[128], role[256], path[512];
    size_t n = strlen(ep);
    while (n > 0 && ep[n - 1] == '/')
        n--;
    if (n >= sizeof base)
        return fail(err, errlen, -EINVAL, "AWS_EC2_METADATA_SERVICE_ENDPOINT is too long");
    memcpy(base, ep, n);
    base[n] = '\0';

    int rc = imds_token(base, token, sizeof token, err, errlen);
    if (rc == 0)
        rc = imds_role(base, token, role, sizeof role, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof path, "%s%s", IMDS_CREDS_PATH, role);
    struct http_resp rs;
    if ((rc = imds_get(base, path, token, &rs, err, errlen)) < 0)
        return rc;
    if (rs.status == 200)
        rc = parse_json_creds(rs.body, "IMDS role credentials", c, err, errlen);
    else
        rc = fail(err, errlen, -EIO, "IMDS at %s: role credentials gave HTTP %ld", base, rs.status);
    free(rs.body);
    return rc;
}

/* The chain, in SPEC §3 order. */
static const struct {
    const char *name;
    int (*fetch)(struct dl_aws_creds *c, char *err, size_t errlen);
} chain[] = {
    {"env", from_env},
    {"web-identity", from_web_identity},
    {"container", from_container},
    {"imds", from_imds},
};

static int fetch_chain(struct dl_aws_creds *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
        memset(c, 0, sizeof *c);
        int rc = chain[i].fetch(c, err, errlen);
        if (rc == NOT_CONFIGURED)
            continue;
        if (rc == 0)
            c->provider = chain[i].name;
        return rc;
    }
    return fail(err, errlen, -ENOENT,
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_ROLE_ARN "
                "and AWS_WEB_IDENTITY_TOKEN_FILE, or AWS_CONTAINER_CREDENTIALS_FULL_URI "
                "(IMDS is disabled by AWS_EC2_METADATA_DISABLED)");
}

/* ---- the provider --------------------------------------------------------------------- */

struct dl_creds_provider *dl_creds_new(const char *explicit_ak, const char *explicit_sk,
                                       const char *explicit_token, char *err, size_t errlen)
{
    struct dl_creds_provider *p = NULL;
    int rc;
    if (!explicit_ak != !explicit_sk)
        rc = fail(err, errlen, -EINVAL,
                  "explicit credentials need both the access key and the secret key");
    else if (!explicit_ak)
        rc = check_env_pair(err, errlen); /* the chain will be used: check it now */
    else
        rc = 0;
    if (rc == 0 && !(p = calloc(1, sizeof *p)))
        rc = fail(err, errlen, -ENOMEM, "out of memory");
    if (rc == 0 && explicit_ak) {
        rc = set_static(&p->cur, explicit_ak, explicit_sk, explicit_token, "explicit credentials",
                        err, errlen);
        p->cur.provider = "explicit";
        p->have = p->fixed = true;
    }
    if (rc == 0 && pthread_mutex_init(&p->lock, NULL) != 0)
        rc = fail(err, errlen, -ENOMEM, "cannot create the credentials mutex");
    if (rc == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        pthread_mutex_destroy(&p->lock);
        rc = fail(err, errlen, -ENOMEM, "curl_global_init failed");
    }
    if (rc < 0) {
        if (p)
            explicit_bzero(p, sizeof *p);
        free(p);
        errno = -rc;
        return NULL;
    }
    return p;
}

static bool still_fresh(const struct dl_aws_creds *c, int64_t now)
{
    return c->expires == 0 || c->expires - now > REFRESH_WINDOW_S;
}

int dl_creds_get(struct dl_creds_provider *p, struct dl_aws_creds *out, char *err, size_t errlen)
{
    struct dl_aws_creds next;
    char why[1024] = "";
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    int64_t now = (int64_t)time(NULL);
    bool valid = p->have && (p->cur.expires == 0 || p->cur.expires > now);
    if (p->have && (p->fixed || still_fresh(&p->cur, now) || (valid && now < p->retry_at))) {
        *out = p->cur;
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    rc = fetch_chain(&next, why, sizeof why);
    if (rc == 0) {
        p->cur = next;
        p->have = true;
        p->retry_at = 0;
        cm_info(COMP, "credentials obtained provider=%s expires=%lld", next.provider,
                (long long)next.expires);
    } else if (valid) {
        cm_warn(COMP, "refresh failed, keeping credentials valid until %lld: %s",
                (long long)p->cur.expires, why);
        p->retry_at = now + RETRY_AFTER_FAIL_S;
        rc = 0;
    }
    if (rc == 0)
        *out = p->cur;
    pthread_mutex_unlock(&p->lock);
    explicit_bzero(&next, sizeof next);
    if (rc < 0)
        fail(err, errlen, rc, "%s", why);
    return rc;
}

void dl_creds_free(struct dl_creds_provider *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    explicit_bzero(p, sizeof *p);
    free(p);
    curl_global_cleanup();
}
