/* fuzz_jsonbody.c - libFuzzer harness for the API's request-body parser and field checks
 * (control/jsonbody.h), the first code every JSON route runs on what a client sent.
 *
 * Invariants: the status is 0, 400 or 422; a refusal always says why; an accepted body is an
 * object whose every member is in the table with the declared type, and every required
 * member is there. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../control/jsonbody.h"

static const struct ctl_jfield fields[] = {
    {"lora_name", CTL_J_STRING, true, false},
    {"artifact_url", CTL_J_STRING, false, true},
    {"credentials", CTL_J_OBJECT, false, true},
    {"cleanup_local", CTL_J_BOOL, false, true},
    {"lora_int_id", CTL_J_INT, false, true},
    {"allow_patterns", CTL_J_STRLIST, false, true},
    {NULL, 0, false, false},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[512];
    cJSON *o = NULL;
    if (size > (1u << 20))
        return 0;
    msg[0] = '\0';
    int st = ctl_body_parse_checked((const char *)data, size, fields, &o, msg, sizeof msg);
    if (st != 0) {
        if ((st != 400 && st != 422) || o || !msg[0] || strnlen(msg, sizeof msg) == sizeof msg)
            abort();
        return 0;
    }
    if (!cJSON_IsObject(o) || !ctl_json_str(o, "lora_name"))
        abort();
    for (const cJSON *it = o->child; it; it = it->next) {
        const struct ctl_jfield *f = fields;
        while (f->name && strcmp(f->name, it->string) != 0)
            f++;
        if (!f->name)
            abort();
    }
    /* checking an accepted object again gives the same verdict */
    if (ctl_json_check(o, fields, "", msg, sizeof msg) != 0)
        abort();
    cJSON_Delete(o);
    return 0;
}
