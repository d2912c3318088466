/* log.c - leveled logging to stderr with secret redaction (see log.h). */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_SECRETS 32

static enum cm_log_level g_level = CM_LOG_INFO;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_secrets[MAX_SECRETS];
static size_t g_nsecrets;
static size_t g_next; /* next slot to overwrite once the ring is full */

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

/* Query parameters whose values are credentials; matched case-insensitively. */
static const char *const secret_params[] = {
    "x-amz-signature=",
    "x-amz-credential=",
    "x-amz-security-token=",
    "x-tos-signature=",
    "x-tos-credential=",
    "x-tos-security-token=",
    "signature=",
    "token=",
    "access_token=",
};

int cm_log_parse_level(const char *s, enum cm_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (s && strcasecmp(s, names[i]) == 0) {
            *out = (enum cm_log_level)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *out = CM_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void cm_log_set_level(enum cm_log_level level)
{
    g_level = level;
}

enum cm_log_level cm_log_get_level(void)
{
    return g_level;
}

void cm_log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nsecrets; i++) {
        if (strcmp(g_secrets[i], secret) == 0) {
            pthread_mutex_unlock(&g_lock);
            return;
        }
    }
    /* a ring: refreshed credentials keep arriving in a long-running process, and the oldest
     * ones (expired by then) make room for them */
    char *copy = strdup(secret);
    if (copy && g_nsecrets < MAX_SECRETS) {
        g_secrets[g_nsecrets++] = copy;
    } else if (copy) {
        size_t slot = g_next++ % MAX_SECRETS;
        free(g_secrets[slot]);
        g_secrets[slot] = copy;
    }
    pthread_mutex_unlock(&g_lock);
}

/* Length of the secret registered at src, or 0. Caller holds g_lock. */
static size_t secret_at(const char *src)
{
    for (size_t i = 0; i < g_nsecrets; i++) {
        size_t n = strlen(g_secrets[i]);
        if (strncmp(src, g_secrets[i], n) == 0)
            return n;
    }
    return 0;
}

/* Length of a credential query parameter name at src (including '='), or 0. */
static size_t secret_param_at(const char *src, const char *start)
{
    if (src != start && src[-1] != '?' && src[-1] != '&' && src[-1] != ' ')
        return 0;
    for (size_t i = 0; i < sizeof secret_params / sizeof secret_params[0]; i++) {
        size_t n = strlen(secret_params[i]);
        if (strncasecmp(src, secret_params[i], n) == 0)
            return n;
    }
    return 0;
}

void cm_redact(const char *src, char *dst, size_t dstlen)
{
    static const char mask[] = "***";
    size_t o = 0;
    if (dstlen == 0)
        return;
    pthread_mutex_lock(&g_lock);
    for (const char *p = src; *p && o + 1 < dstlen;) {
        size_t n = secret_at(p);
        size_t pn = n ? 0 : secret_param_at(p, src);
        if (pn) {
            /* keep the parameter name, mask its value */
            for (size_t i = 0; i < pn && o + 1 < dstlen; i++)
                dst[o++] = p[i];
            p += pn;
            while (*p && *p != '&' && *p != ' ' && *p != '"' && *p != '\n')
                p++;
        } else if (!n) {
            dst[o++] = *p++;
            continue;
        } else {
            p += n;
        }
        for (size_t i = 0; mask[i] && o + 1 < dstlen; i++)
            dst[o++] = mask[i];
    }
    dst[o] = '\0';
    pthread_mutex_unlock(&g_lock);
}

void cm_log(enum cm_log_level level, const char *component, const char *fmt, ...)
{
    char raw[2048], clean[2048];
    va_list ap;
    struct timespec ts;
    struct tm tm;

    if (level < g_level)
        return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    cm_redact(raw, clean, sizeof clean);
    /* one line per event: a name or a message from outside cannot forge a line */
    for (char *p = clean; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_names[level], component, clean);
}
