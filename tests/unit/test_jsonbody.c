/* test_jsonbody.c - request bodies: 400 for what is not JSON, 422 for what does not fit the
 * route's table of fields (SPEC §5), with messages naming the field. */
#include <string.h>

#include "../../control/jsonbody.h"
#include "check.h"

static const struct ctl_jfield fields[] = {
    {"name", CTL_J_STRING, true, false},  {"flag", CTL_J_BOOL, false, true},
    {"count", CTL_J_INT, false, false},   {"opts", CTL_J_OBJECT, false, true},
    {"list", CTL_J_STRLIST, false, true}, {NULL, 0, false, false},
};

static char msg[512];

static int parse(const char *body)
{
    cJSON *o = NULL;
    msg[0] = '\0';
    int st = ctl_body_parse_checked(body, strlen(body), fields, &o, msg, sizeof msg);
    CHECK((st == 0) == (o != NULL));
    cJSON_Delete(o);
    return st;
}

static void test_syntax(void)
{
    CHECK_INT(parse("{\"name\":\"a\"}"), 0);
    CHECK_INT(parse("  {\"name\":\"a\"}\r\n"), 0);
    CHECK_INT(parse("{\"name\":\"a\""), 400);
    CHECK_INT(parse("{\"name\": a}"), 400);
    CHECK_INT(parse("{\"name\":\"a\"} {}"), 400);
    CHECK(strstr(msg, "after the value") != NULL);
    CHECK_INT(parse("{\"name\":\"a\\u0000b\"}"), 400);
    CHECK(strstr(msg, "NUL") != NULL);
    CHECK_INT(parse("{\"name\":\"a\\\\u0000b\"}"), 0); /* an escaped backslash, then text */
    CHECK_INT(parse("{\"name\":\"\\\"\\u0000\"}"), 400);
    cJSON *o = NULL;
    CHECK_INT(ctl_body_parse("{\"name\":\"a\0\"}", 13, &o, msg, sizeof msg), 400);
    CHECK_INT(parse(""), 422);
    CHECK_INT(parse(" \n"), 422);
    CHECK_INT(parse("[]"), 422);
    CHECK_INT(parse("\"x\""), 422);
    CHECK_INT(parse("null"), 422);
}

static void test_fields(void)
{
    CHECK_INT(parse("{}"), 422);
    CHECK_STR(msg, "missing field 'name'");
    CHECK_INT(parse("{\"name\":null}"), 422);
    CHECK_INT(parse("{\"name\":\"a\",\"nope\":1}"), 422);
    CHECK(strncmp(msg, "unknown field 'nope' (accepted: name, flag, count", 49) == 0);
    CHECK_INT(parse("{\"name\":\"a\",\"name\":\"b\"}"), 422);
    CHECK_STR(msg, "field 'name' given twice");
    CHECK_INT(parse("{\"name\":1}"), 422);
    CHECK_STR(msg, "field 'name' must be a string");
    CHECK_INT(parse("{\"name\":\"a\",\"flag\":\"true\"}"), 422);
    CHECK_INT(parse("{\"name\":\"a\",\"flag\":null}"), 0);
    CHECK_INT(parse("{\"name\":\"a\",\"flag\":false}"), 0);
    CHECK_INT(parse("{\"name\":\"a\",\"count\":3}"), 0);
    CHECK_INT(parse("{\"name\":\"a\",\"count\":3.5}"), 422);
    CHECK_INT(parse("{\"name\":\"a\",\"count\":true}"), 422);
    CHECK_INT(parse("{\"name\":\"a\",\"count\":null}"), 422); /* not nullable */
    CHECK_INT(parse("{\"name\":\"a\",\"count\":1e300}"), 422);
    CHECK_INT(parse("{\"name\":\"a\",\"opts\":{}}"), 0);
    CHECK_INT(parse("{\"name\":\"a\",\"opts\":[]}"), 422);
    CHECK_INT(parse("{\"name\":\"a\",\"list\":[\"x\",\"y\"]}"), 0);
    CHECK_INT(parse("{\"name\":\"a\",\"list\":\"x,y\"}"), 0);
    CHECK_INT(parse("{\"name\":\"a\",\"list\":[\"x\",1]}"), 422);
    CHECK_STR(msg, "field 'list' must be a list of strings");
}

static void test_nested(void)
{
    static const struct ctl_jfield inner[] = {{"k", CTL_J_STRING, false, false},
                                              {NULL, 0, false, false}};
    cJSON *o = NULL;
    const char *body = "{\"opts\":{\"x\":1}}";
    CHECK_INT(ctl_body_parse(body, strlen(body), &o, msg, sizeof msg), 0);
    CHECK_INT(ctl_json_check(ctl_json_obj(o, "opts"), inner, "opts.", msg, sizeof msg), 422);
    CHECK(strncmp(msg, "unknown field 'opts.x'", 22) == 0);
    CHECK(ctl_json_str(o, "opts") == NULL);
    CHECK(ctl_json_bool(o, "missing", true));
    cJSON_Delete(o);
}

int main(void)
{
    test_syntax();
    test_fields();
    test_nested();
    return check_done();
}
