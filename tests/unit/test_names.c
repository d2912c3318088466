/* test_names.c - the untrusted-name check and the suffix/pattern filters (SPEC §3). */
#include <string.h>

#include "check.h"
#include "names.h"

static const char *check(const char *s)
{
    return cm_name_check(s, strlen(s));
}

static void test_check(void)
{
    char longc[300];
    CHECK(check("config.json") == NULL);
    CHECK(check("a/b/c.safetensors") == NULL);
    CHECK(check(".hidden/x") == NULL);
    CHECK(check("a/..b/c") == NULL);
    CHECK(check("../x") != NULL);
    CHECK(check("a/../x") != NULL);
    CHECK(check("a/..") != NULL);
    CHECK(check("./x") != NULL);
    CHECK(check("/etc/passwd") != NULL);
    CHECK(check("a//b") != NULL);
    CHECK(check("a/") != NULL);
    CHECK(check("") != NULL);
    CHECK(check("a\tb") != NULL);
    CHECK(check("a\x7f") != NULL);
    CHECK(cm_name_check("a\0b", 3) != NULL);
    memset(longc, 'x', 256);
    longc[256] = '\0';
    CHECK(check(longc) != NULL);
    longc[255] = '\0';
    CHECK(check(longc) == NULL);
}

static void test_suffix(void)
{
    struct cm_strlist l = {0};
    CHECK_INT(cm_strlist_split(&l, " json, .safetensors ,,"), 0);
    CHECK_INT(l.n, 2);
    CHECK(cm_suffix_match(&l, "config.json"));
    CHECK(cm_suffix_match(&l, "sub/model.safetensors"));
    CHECK(!cm_suffix_match(&l, "xjson"));
    CHECK(!cm_suffix_match(&l, "a.xjson"));
    CHECK(!cm_suffix_match(&l, "json"));
    CHECK(!cm_suffix_match(&l, "dir.json/file"));
    cm_strlist_free(&l);
    CHECK(cm_suffix_match(&l, "anything"));
}

static void test_filter(void)
{
    struct cm_filter f = {0};
    CHECK(cm_filter_match(&f, "x/y.bin"));
    cm_strlist_add(&f.allow, "*.json");
    cm_strlist_add(&f.allow, "*.safetensors");
    cm_strlist_add(&f.ignore, "original/*");
    CHECK(cm_filter_match(&f, "config.json"));
    CHECK(cm_filter_match(&f, "sub/dir/tok.json")); /* '*' crosses '/' */
    CHECK(!cm_filter_match(&f, "original/consolidated.safetensors"));
    CHECK(!cm_filter_match(&f, "pytorch_model.bin"));
    cm_strlist_split(&f.suffixes, "safetensors");
    CHECK(!cm_filter_match(&f, "config.json"));
    CHECK(cm_filter_match(&f, "model.safetensors"));
    cm_filter_free(&f);
}

int main(void)
{
    test_check();
    test_suffix();
    test_filter();
    return check_done();
}
