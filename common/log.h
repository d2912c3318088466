/* log.h - one line per event on stderr, "LEVEL component: message key=value".
 *
 * Control characters (a newline in a remote name or an API body) are written as '?', so no
 * input can forge a line. Secrets never reach the log: every registered secret (keys, tokens) is replaced by "***"
 * before the line is written, and query-string credentials (X-Amz-Signature, X-Tos-Signature,
 * X-Amz-Credential, X-Amz-Security-Token, token=...) are masked wherever they appear. */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stddef.h>

enum cm_log_level { CM_LOG_DEBUG, CM_LOG_INFO, CM_LOG_WARN, CM_LOG_ERROR };

/* Parse "debug|info|warn|error"; returns 0, or -EINVAL for anything else. */
int cm_log_parse_level(const char *s, enum cm_log_level *out);
void cm_log_set_level(enum cm_log_level level);
enum cm_log_level cm_log_get_level(void);

/* Register a secret so that it is masked in every later log line. The string is copied.
 * Secrets shorter than 4 bytes are ignored (masking them would mangle ordinary words). */
void cm_log_add_secret(const char *secret);

/* Copy src into dst (always NUL-terminated, truncated to dstlen) with every registered secret
 * and every credential-bearing query parameter masked. Used for logs and for error messages
 * that may quote a URL. */
void cm_redact(const char *src, char *dst, size_t dstlen);

void cm_log(enum cm_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define cm_debug(comp, ...) cm_log(CM_LOG_DEBUG, comp, __VA_ARGS__)
#define cm_info(comp, ...) cm_log(CM_LOG_INFO, comp, __VA_ARGS__)
#define cm_warn(comp, ...) cm_log(CM_LOG_WARN, comp, __VA_ARGS__)
#define cm_error(comp, ...) cm_log(CM_LOG_ERROR, comp, __VA_ARGS__)

#endif
