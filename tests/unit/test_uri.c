/* test_uri.c - SPEC §2 model URIs: every accepted form, and clear errors for the rest. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "uri.h"

static struct cm_uri u;
static char err[512];

static int parse(const char *s)
{
    err[0] = '\0';
    return cm_uri_parse(s, &u, err, sizeof err);
}

static void test_hf(void)
{
    char name[256];
    CHECK_INT(parse("hf://Qwen/Qwen2.5-0.5B"), 0);
    CHECK_INT(u.kind, CM_URI_HF);
    CHECK_STR(u.repo, "Qwen/Qwen2.5-0.5B");
    CHECK_STR(u.revision, "");
    CHECK(!u.bare);
    CHECK_INT(parse("huggingface://org/name@refs/pr/1"), 0);
    CHECK_STR(u.repo, "org/name");
    CHECK_STR(u.revision, "refs/pr/1");
    CHECK_INT(parse("deepseek-ai/deepseek-coder-6.7b-instruct"), 0);
    CHECK(u.bare);
    CHECK_INT(cm_uri_default_name(&u, name, sizeof name), 0);
    CHECK_STR(name, "deepseek-ai/deepseek-coder-6.7b-instruct");
    CHECK_STR(cm_uri_source_name(u.kind), "huggingface");
    CHECK_INT(parse("org/name@"), -EINVAL);
    CHECK_INT(parse("hf://org"), -EINVAL);
    CHECK_INT(parse("hf://org/na/me"), -EINVAL);
    CHECK_INT(parse("hf://../name"), -EINVAL);
    CHECK_INT(parse("hf://org/na..me"), -EINVAL);
    CHECK_INT(parse("just-a-word"), -EINVAL);
    CHECK(strstr(err, "just-a-word") != NULL);
}

static void test_buckets(void)
{
    char name[256];
    CHECK_INT(parse("s3://my-bucket/models/llama/"), 0);
    CHECK_INT(u.kind, CM_URI_S3);
    CHECK_STR(u.bucket, "my-bucket");
    CHECK_STR(u.prefix, "models/llama/");
    CHECK_INT(cm_uri_default_name(&u, name, sizeof name), 0);
    CHECK_STR(name, "llama");
    CHECK_INT(parse("tos://bkt/a/b"), 0);
    CHECK_INT(u.kind, CM_URI_TOS);
    CHECK_STR(u.prefix, "a/b");
    CHECK_INT(cm_uri_default_name(&u, name, sizeof name), 0);
    CHECK_STR(name, "b");
    CHECK_INT(parse("s3://bucket"), 0);
    CHECK_STR(u.prefix, "");
    CHECK_INT(cm_uri_default_name(&u, name, sizeof name), 0);
    CHECK_STR(name, "bucket");
    CHECK_INT(parse("s3://Bad_Bucket/x"), -EINVAL);
    CHECK_INT(parse("s3://ab/x"), -EINVAL);
    CHECK_INT(parse("s3://bucket/../etc"), -EINVAL);
    CHECK_INT(parse("s3://bucket/a//b"), -EINVAL);
    CHECK_INT(parse("gs://bucket/x"), -EINVAL);
    CHECK(strstr(err, "unknown scheme") != NULL);
}

static void test_file(void)
{
    char name[256];
    CHECK_INT(parse("file:///srv/models/demo/"), 0);
    CHECK_INT(u.kind, CM_URI_FILE);
    CHECK_STR(u.path, "/srv/models/demo");
    CHECK_INT(cm_uri_default_name(&u, name, sizeof name), 0);
    CHECK_STR(name, "demo");
    CHECK_STR(cm_uri_source_name(u.kind), "local");
    CHECK_INT(parse("file://relative/dir"), -EINVAL);
    CHECK_INT(parse("file:///a/../b"), -EINVAL);
    CHECK_INT(parse("file:///"), 0);
    CHECK_INT(cm_uri_default_name(&u, name, sizeof name), -EINVAL);
}

static void test_hostile(void)
{
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_INT(parse(big), -EINVAL);
    CHECK_INT(parse(""), -EINVAL);
    CHECK_INT(parse(NULL), -EINVAL);
    CHECK_INT(parse("s3://bucket/a\nb"), -EINVAL);
    CHECK_INT(parse("hf://org/name@rev with space"), -EINVAL);
}

int main(void)
{
    test_hf();
    test_buckets();
    test_file();
    test_hostile();
    return check_done();
}
