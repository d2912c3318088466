/* jsonbody.h - request bodies: parse strictly, then check against a table of fields.
 *
 * Every JSON route of the API declares what it accepts as a table of {name, type, required}
 * and gets SPEC §5's statuses from here: malformed JSON (including a truncated body, a raw NUL
 * byte, or "\u0000" inside a string, which C strings cannot carry) is 400; a body that is not
 * an object, an unknown field, a repeated field, a missing required field or a value of the
 * wrong type is 422, with a message naming the field. Nothing here knows about HTTP, so the
 * parser is unit-tested and fuzzed on its own. */
#ifndef CTL_JSONBODY_H
#define CTL_JSONBODY_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

enum ctl_jtype {
    CTL_J_STRING,
    CTL_J_BOOL,
    CTL_J_INT,     /* a number with an integral value */
    CTL_J_OBJECT,  /* any JSON object (its members are checked by the route, if at all) */
    CTL_J_STRLIST, /* an array of strings, or one string holding a comma-separated list */
};

struct ctl_jfield {
    const char *name;
    enum ctl_jtype type;
    bool required;
    bool nullable; /* JSON null is accepted and means "absent" */
};

/* Parse body[0..len) into a JSON object. Returns 0 with *out set (free with cJSON_Delete),
 * 400 (malformed) or 422 (empty body, not an object) with msg set and *out NULL. */
int ctl_body_parse(const char *body, size_t len, cJSON **out, char *msg, size_t msglen);

/* Check obj against fields (terminated by an entry with name NULL). where prefixes field
 * names in messages ("credentials." gives "credentials.ak"); may be "". Returns 0, or 422
 * with msg set. */
int ctl_json_check(const cJSON *obj, const struct ctl_jfield *fields, const char *where, char *msg,
                   size_t msglen);

/* Both at once: parse the body and check it. Same returns. */
int ctl_body_parse_checked(const char *body, size_t len, const struct ctl_jfield *fields,
                           cJSON **out, char *msg, size_t msglen);

/* Members of a checked object. NULL / def when absent or null. */
const char *ctl_json_str(const cJSON *obj, const char *name);
bool ctl_json_bool(const cJSON *obj, const char *name, bool def);
const cJSON *ctl_json_obj(const cJSON *obj, const char *name);

#endif
