/* fuzz_uri.c - libFuzzer harness for cm_uri_parse (common/uri.h).
 *
 * The input becomes a C string (inputs with a NUL are cut there, as a C caller would see
 * them). An accepted URI must leave every field NUL-terminated within its array and must
 * yield a source name; a refused one must say why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/uri.h"

#define TERMINATED(field) (strnlen((field), sizeof(field)) < sizeof(field))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_uri u;
    char *s, err[256], name[512];
    int rc;

    if (size > 2 * CM_URI_MAX)
        return 0;
    s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    memset(&u, 0xa5, sizeof(u));
    err[0] = '\0';
    rc = cm_uri_parse(s, &u, err, sizeof(err));
    if (rc == 0) {
        if (!TERMINATED(u.repo) || !TERMINATED(u.revision) || !TERMINATED(u.bucket) ||
            !TERMINATED(u.prefix) || !TERMINATED(u.path))
            abort();
        if (!cm_uri_source_name(u.kind))
            abort();
        rc = cm_uri_default_name(&u, name, sizeof(name));
        if (rc == 0 && !TERMINATED(name))
            abort();
        if (rc != 0 && rc != -EINVAL)
            abort();
    } else if (rc != -EINVAL || err[0] == '\0') {
        abort();
    }
    free(s);
    return 0;
}
