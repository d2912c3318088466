/* env.h - configuration values from the environment and from strings.
 *
 * Booleans accept 1/0, true/false, on/off, yes/no in any case (SPEC §1). Sizes accept a plain
 * byte count or a K/M/G/T suffix (binary, with optional "i" and "B": 8M, 8MiB, 8MB all mean
 * 8*2^20). Every parser rejects trailing garbage and overflow with -EINVAL / -ERANGE. */
#ifndef CM_ENV_H
#define CM_ENV_H

#include <stdbool.h>
#include <stdint.h>

int cm_parse_bool(const char *s, bool *out);
int cm_parse_u64(const char *s, uint64_t *out);
int cm_parse_size(const char *s, uint64_t *out);
int cm_parse_double(const char *s, double *out);

/* Read an env var; unset or empty gives def. A value that does not parse is logged as a
 * warning naming the variable and def is used. */
bool cm_env_bool(const char *name, bool def);
uint64_t cm_env_u64(const char *name, uint64_t def);
uint64_t cm_env_size(const char *name, uint64_t def);
double cm_env_double(const char *name, double def);
/* getenv, but NULL for an empty value. The string belongs to the environment. */
const char *cm_env_str(const char *name);
/* The PEM bundle TLS peers are verified against instead of the system store, from the first
 * of AIBRIX_CA_BUNDLE, CURL_CA_BUNDLE, REQUESTS_CA_BUNDLE, SSL_CERT_FILE that is set and not
 * empty (*var names it); NULL when none is, which means the system store. */
const char *cm_ca_bundle(const char **var);

#endif
