/* auth.h - the API key of --api-key-file (SPEC §1, §5).
 *
 * With a key loaded, every path under /v1/ needs "Authorization: Bearer <key>"; /healthz,
 * /ready and /metrics stay open (probes and Prometheus carry no token). The key file is read
 * once at start and trimmed of surrounding whitespace (a trailing newline is the usual
 * shape of a Kubernetes secret file). Only the key's SHA-256 is kept, and tokens are compared
 * by their digests with a constant-time compare, so neither the key's bytes nor its length
 * leak through timing. The key is never logged. */
#ifndef CTL_AUTH_H
#define CTL_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Read and remember the key in path. Returns 0, or a negative errno with err set (unreadable,
 * empty, or larger than 4 KiB). Call before the server starts; not thread-safe. */
int ctl_auth_load(const char *path, char *err, size_t errlen);

/* True when the request may proceed: no key is loaded, the path is outside /v1/, or
 * authorization (the header's value, NULL when absent) is "Bearer <key>" (scheme in any
 * case). Thread-safe. */
bool ctl_auth_ok(const char *path, const char *authorization);

#endif
