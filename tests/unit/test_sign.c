/* test_sign.c - the SigV4/TOS4 signer against published vectors (AWS SigV4 test suite, the
 * AWS S3 documentation examples, the TOS Go SDK's TestAlgV4) and against the project's own
 * botocore-matched vectors from reference/wire-protocols.md, plus URI encoding and query
 * canonicalisation. */
#include "../../downloader/sign.h"
#include "check.h"

#include <errno.h>

#define NH(a) (sizeof(a) / sizeof((a)[0]))

static const char *sign_sig(const struct dl_sign_input *in)
{
    static char auth[1024], sig[65];
    int rc = dl_sign(in, auth, sizeof(auth), sig);
    CHECK_INT(rc, 0);
    return rc == 0 ? sig : "";
}

/* AWS SigV4 test suite, credentials shared by every case there. */
static struct dl_sign_input suite_input(const struct dl_sign_header *h, size_t n)
{
    return (struct dl_sign_input){
        .flavor = DL_SIGN_AWS4,
        .access_key = "AKIDEXAMPLE",
        .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        .region = "us-east-1",
        .service = "service",
        .datetime = "20150830T123600Z",
        .method = "GET",
        .path = "/",
        .headers = h,
        .nheaders = n,
        .payload_hash = DL_EMPTY_SHA256,
    };
}

static void test_get_vanilla(void)
{
    const struct dl_sign_header h[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    struct dl_sign_input in = suite_input(h, NH(h));
    char auth[512], sig[65];
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), sig), 0);
    CHECK_STR(sig, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                    "aws4_request, SignedHeaders=host;x-amz-date, "
                    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

    /* Header order and name case in the input must not matter, nor padding in values. */
    const struct dl_sign_header shuffled[] = {
        {"x-amz-date", "  20150830T123600Z "},
        {"HOST", "example.amazonaws.com"},
    };
    in = suite_input(shuffled, NH(shuffled));
    CHECK_STR(sign_sig(&in), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

    /* Signature output is optional. */
    in = suite_input(h, NH(h));
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), 0);
}

static void test_get_vanilla_session_token(void)
{
    const struct dl_sign_header h[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z"},
        {"X-Amz-Security-Token",
         "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"},
    };
    struct dl_sign_input in = suite_input(h, NH(h));
    char auth[512], sig[65];
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), sig), 0);
    CHECK_STR(sig, "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8");
    CHECK(strstr(auth, "SignedHeaders=host;x-amz-date;x-amz-security-token,") != NULL);
}

/* AWS S3 documentation examples ("Signature Calculations for the Authorization Header"). */
static struct dl_sign_input s3doc_input(const char *path, const char *query,
                                        const struct dl_sign_header *h, size_t n)
{
    return (struct dl_sign_input){
        .flavor = DL_SIGN_AWS4,
        .access_key = "AKIAIOSFODNN7EXAMPLE",
        .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        .region = "us-east-1",
        .service = "s3",
        .datetime = "20130524T000000Z",
        .method = "GET",
        .path = path,
        .query = query,
        .headers = h,
        .nheaders = n,
        .payload_hash = DL_EMPTY_SHA256,
    };
}

static void test_s3_docs(void)
{
    const struct dl_sign_header get[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"Range", "bytes=0-9"},
        {"x-amz-content-sha256", DL_EMPTY_SHA256},
        {"x-amz-date", "20130524T000000Z"},
    };
    struct dl_sign_input in = s3doc_input("/test.txt", NULL, get, NH(get));
    char auth[512], sig[65];
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), sig), 0);
    CHECK_STR(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    CHECK_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                    "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

    const struct dl_sign_header list[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"x-amz-content-sha256", DL_EMPTY_SHA256},
        {"x-amz-date", "20130524T000000Z"},
    };
    in = s3doc_input("/", "max-keys=2&prefix=J", list, NH(list));
    CHECK_STR(sign_sig(&in), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    /* The signer sorts the pairs, so the wire order is free. */
    in = s3doc_input("/", "prefix=J&max-keys=2", list, NH(list));
    CHECK_STR(sign_sig(&in), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

/* Own vectors, matched against botocore (reference/wire-protocols.md). */
static void test_own_s3(void)
{
    const struct dl_sign_header b[] = {
        {"host", "examplebucket.s3.amazonaws.com"},           {"range", "bytes=0-1048575"},
        {"x-amz-content-sha256", "UNSIGNED-PAYLOAD"},         {"x-amz-date", "20130524T000000Z"},
        {"x-amz-security-token", "FQoGZXIvYXdzEXAMPLETOKEN"},
    };
    struct dl_sign_input in =
        s3doc_input("/models/llama/model-00001-of-00002.safetensors", NULL, b, NH(b));
    in.payload_hash = "UNSIGNED-PAYLOAD";
    CHECK_STR(sign_sig(&in), "44d37b2c3b8523425faa8f647159ec2f6164476700e40cfcfc43f71fe3529020");

    const struct dl_sign_header c[] = {
        {"host", "127.0.0.1:9000"},
        {"x-amz-content-sha256", DL_EMPTY_SHA256},
        {"x-amz-date", "20130524T000000Z"},
    };
    in = s3doc_input("/models/dir%20a/w%2Bb.bin", NULL, c, NH(c));
    CHECK_STR(sign_sig(&in), "196f6ae0ef4a836ae1acf274a27d4ec0abc754f2590573b9893758ae2af189a6");
}

static struct dl_sign_input tos_input(const char *region, const char *query,
                                      const struct dl_sign_header *h, size_t n)
{
    return (struct dl_sign_input){
        .flavor = DL_SIGN_TOS4,
        .access_key = "AKIAIOSFODNN7EXAMPLE",
        .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        .region = region,
        .datetime = "20210721T104454Z",
        .method = "GET",
        .path = "/",
        .query = query,
        .headers = h,
        .nheaders = n,
        .payload_hash = DL_EMPTY_SHA256,
    };
}

static void test_tos(void)
{
    /* TOS Go SDK TestAlgV4: GET https://test.tos.com:8080/test.txt. */
    const struct dl_sign_header h[] = {
        {"Host", "test.tos.com:8080"},
        {"X-Tos-Date", "20210721T104454Z"},
    };
    struct dl_sign_input in = tos_input("cn-north-1", NULL, h, NH(h));
    in.path = "/test.txt";
    char auth[512], sig[65];
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), sig), 0);
    CHECK_STR(sig, "3453b54ecfc50e6ed3fc15cbdb82f8a18d644063302080fb18ee10daa4f1a23f");
    CHECK_STR(auth, "TOS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20210721/cn-north-1/tos/"
                    "request, SignedHeaders=host;x-tos-date, "
                    "Signature=3453b54ecfc50e6ed3fc15cbdb82f8a18d644063302080fb18ee10daa4f1a23f");
    /* service is ignored for TOS4. */
    in.service = "s3";
    CHECK_STR(sign_sig(&in), "3453b54ecfc50e6ed3fc15cbdb82f8a18d644063302080fb18ee10daa4f1a23f");
}

/* Captured from the official @volcengine/tos-sdk 2.9.1 (Node) with the clock pinned to
 * 2021-07-21T10:44:54Z and the requests sent through a capturing proxy; the TOS4 twin of the
 * botocore-matched S3 vectors. */
static void test_tos_sdk_captured(void)
{
    const struct dl_sign_header list[] = {
        {"host", "examplebucket.tos-cn-beijing.volces.com"},
        {"x-tos-content-sha256", "UNSIGNED-PAYLOAD"},
        {"x-tos-date", "20210721T104454Z"},
        {"x-tos-security-token", "SESSIONTOKEN123"},
    };
    /* The SDK's wire order; the signer sorts it. */
    struct dl_sign_input in = tos_input(
        "cn-beijing", "list-type=2&prefix=models%2F&max-keys=1000&fetch-owner=true", list, 3);
    in.payload_hash = "UNSIGNED-PAYLOAD";
    CHECK_STR(sign_sig(&in), "78429ffb7169d532f3ec78e0823e6bb4436401af92f0f30373da45e65725134d");
    in.nheaders = 4;
    CHECK_STR(sign_sig(&in), "668909bb32349792481215dff14af0e43aab573dc39d814511c01c4ee5598b8c");

    /* Ranged GET of key "dir a/w+b~<e-acute>.bin" (range is sent but not signed). The SDK puts
     * %2F for the key's '/' on the wire but signs '/' (its getEncodePath undoes %2F), so the
     * server evidently canonicalises %2F to '/'; sending '/' unencoded keeps wire and
     * signature identical, which is what this path is. */
    char path[128] = "/";
    CHECK_INT(dl_sign_uri_encode("dir a/w+b~\xc3\xa9.bin", 1, path + 1, sizeof(path) - 1), 24);
    CHECK_STR(path, "/dir%20a/w%2Bb~%C3%A9.bin");
    in = tos_input("cn-beijing", NULL, list, 3);
    in.path = path;
    in.payload_hash = "UNSIGNED-PAYLOAD";
    CHECK_STR(sign_sig(&in), "f01907302d0ba977cad336ef37064db5481e30ee321b6db2c435830a50218939");
    in.nheaders = 4;
    CHECK_STR(sign_sig(&in), "2ec63d960632bdb877c44f18cbd8d878c05f5b23a800486b2353593920b86141");
}

static void test_uri_encode(void)
{
    char out[64];
    CHECK_INT(dl_sign_uri_encode("a b", 1, out, sizeof(out)), 5);
    CHECK_STR(out, "a%20b");
    CHECK_INT(dl_sign_uri_encode("a+b", 1, out, sizeof(out)), 5);
    CHECK_STR(out, "a%2Bb");
    CHECK_INT(dl_sign_uri_encode("models/a.b/c", 1, out, sizeof(out)), 12);
    CHECK_STR(out, "models/a.b/c");
    CHECK_INT(dl_sign_uri_encode("models/a.b/c", 0, out, sizeof(out)), 16);
    CHECK_STR(out, "models%2Fa.b%2Fc");
    CHECK_INT(dl_sign_uri_encode("A-Z_a~z.0-9", 0, out, sizeof(out)), 11);
    CHECK_STR(out, "A-Z_a~z.0-9");
    /* UTF-8 is encoded byte by byte, uppercase hex. */
    CHECK_INT(dl_sign_uri_encode("\xe6\xa8\xa1\xe5\x9e\x8b", 1, out, sizeof(out)), 18);
    CHECK_STR(out, "%E6%A8%A1%E5%9E%8B");
    CHECK_INT(dl_sign_uri_encode("=&?%*", 1, out, sizeof(out)), 15);
    CHECK_STR(out, "%3D%26%3F%25%2A");
    CHECK_INT(dl_sign_uri_encode("", 1, out, sizeof(out)), 0);
    CHECK_STR(out, "");

    /* The terminating NUL must fit too; a short buffer gets "" and -ENOSPC. */
    CHECK_INT(dl_sign_uri_encode("abc", 1, out, 4), 3);
    CHECK_INT(dl_sign_uri_encode("abc", 1, out, 3), -ENOSPC);
    CHECK_STR(out, "");
    CHECK_INT(dl_sign_uri_encode("a b", 1, out, 5), -ENOSPC);
    CHECK_INT(dl_sign_uri_encode("a b", 1, out, 6), 5);
}

static void test_query_canonical(void)
{
    /* botocore 1.43 (S3SigV4Auth) for ?a-b=1&a=2&acl&a=1: pairs sort by key then value, a key
     * that is a prefix of another sorts first, and the bare key becomes "acl=". */
    const struct dl_sign_header h[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"X-Amz-Meta-Note", "  two   spaced\twords  "},
        {"X-Amz-Date", "20261127T052518Z"},
        {"X-Amz-Content-SHA256", DL_EMPTY_SHA256},
    };
    struct dl_sign_input in = s3doc_input("/", "a-b=1&a=2&acl&a=1", h, NH(h));
    in.datetime = "20261127T052518Z";
    CHECK_STR(sign_sig(&in), "b2bff62e704cc544f13f81953e0aa09b764d0644c9185c392db3c13a2003a354");
    in.query = "a=1&a-b=1&acl=&a=2";
    CHECK_STR(sign_sig(&in), "b2bff62e704cc544f13f81953e0aa09b764d0644c9185c392db3c13a2003a354");
    /* Empty pairs are dropped. */
    in.query = "&a=1&&a-b=1&acl&a=2&";
    CHECK_STR(sign_sig(&in), "b2bff62e704cc544f13f81953e0aa09b764d0644c9185c392db3c13a2003a354");
    /* ...and the query does take part in the signature. */
    in.query = "a=1&a-b=1&acl=x&a=2";
    CHECK(
        strcmp(sign_sig(&in), "b2bff62e704cc544f13f81953e0aa09b764d0644c9185c392db3c13a2003a354"));
}

static void test_errors(void)
{
    const struct dl_sign_header h[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    char auth[512], sig[65] = "untouched";
    struct dl_sign_input in = suite_input(h, NH(h));

    /* Too small for the Authorization value: -ENOSPC, nothing half-written. */
    CHECK_INT(dl_sign(&in, auth, 64, sig), -ENOSPC);
    CHECK_STR(auth, "");
    CHECK_STR(sig, "untouched");
    CHECK_INT(dl_sign(&in, auth, 0, NULL), -ENOSPC);

    CHECK_INT(dl_sign(NULL, auth, sizeof(auth), NULL), -EINVAL);
    CHECK_INT(dl_sign(&in, NULL, 0, NULL), -EINVAL);
    in.secret_key = NULL;
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), -EINVAL);
    in = suite_input(h, NH(h));
    in.service = NULL;
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), -EINVAL);
    in = suite_input(h, NH(h));
    in.datetime = "2015-08-30T12:36:00Z";
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), -EINVAL);
    in = suite_input(h, NH(h));
    in.nheaders = 0;
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), -EINVAL);
    /* host is mandatory. */
    in = suite_input(h + 1, 1);
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), -EINVAL);
    /* A newline in a value would forge canonical lines; a bad name would too. */
    const struct dl_sign_header crlf[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z\r\nx-evil: 1"},
    };
    in = suite_input(crlf, NH(crlf));
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), -EINVAL);
    const struct dl_sign_header badname[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz Date", "20150830T123600Z"},
    };
    in = suite_input(badname, NH(badname));
    CHECK_INT(dl_sign(&in, auth, sizeof(auth), NULL), -EINVAL);
}

int main(void)
{
    test_get_vanilla();
    test_get_vanilla_session_token();
    test_s3_docs();
    test_own_s3();
    test_tos();
    test_tos_sdk_captured();
    test_uri_encode();
    test_query_canonical();
    test_errors();
    return check_done();
}
