/* test_listing.c - the listing container and every origin's listing parser, fed real-looking
 * pages and hostile ones. The hostile cases are the specification of "never trust the
 * origin": each must fail cleanly (or degrade a digest) and leave the listing as it was. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../downloader/listing.h"
#include "check.h"

/* a literal and its length, for the parsers that take (buf, len) */
#define S(lit) lit, strlen(lit)
#define MD5 "9e107d9d372bb6826bd81d3542a419d6"
#define SHA1 "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"
#define SHA256 "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"

static char err[512];

static int s3(const char *xml, struct dl_listing *l)
{
    err[0] = '\0';
    return dl_parse_s3_list(xml, strlen(xml), l, err, sizeof(err));
}

static int tos(const char *json, struct dl_listing *l)
{
    err[0] = '\0';
    return dl_parse_tos_list(json, strlen(json), l, err, sizeof(err));
}

static int hf(const char *json, struct dl_listing *l)
{
    err[0] = '\0';
    return dl_parse_hf_tree(json, strlen(json), l, err, sizeof(err));
}

/* A failed parse must say something and must not have added anything. */
#define CHECK_FAILS(call, listing, n_before)                                                       \
    do {                                                                                           \
        CHECK((call) < 0);                                                                         \
        CHECK(err[0] != '\0');                                                                     \
        CHECK_INT((listing).n, (n_before));                                                        \
    } while (0)

static void test_container(void)
{
    struct dl_listing l = {0};
    int rc = 0;
    size_t i;

    CHECK_INT(dl_listing_add(&l, "a", 1, 2, "\"e\""), 0);
    CHECK_INT(dl_listing_add(&l, "b", 3, 0, NULL), 0);
    CHECK_INT(dl_listing_add(&l, "c", 4, 0, "x"), 0);
    CHECK_INT(l.n, 3);
    CHECK_STR(l.entries[0].etag, "\"e\""); /* add copies verbatim; parsers normalize */
    CHECK(l.entries[1].etag == NULL);
    CHECK_INT(l.entries[1].digest_kind, CM_HASH_NONE);
    CHECK_STR(l.entries[1].digest, "");
    dl_listing_remove(&l, 1);
    CHECK_INT(l.n, 2);
    CHECK_STR(l.entries[1].path, "c");
    dl_listing_remove(&l, 5); /* out of range: nothing */
    CHECK_INT(l.n, 2);
    dl_listing_free(&l);
    CHECK(l.entries == NULL && l.n == 0 && l.cap == 0);

    for (i = 0; i < DL_MAX_LISTING_ENTRIES && rc == 0; i++)
        rc = dl_listing_add(&l, "k", 0, 0, NULL);
    CHECK_INT(rc, 0);
    CHECK_INT(l.n, DL_MAX_LISTING_ENTRIES);
    CHECK_INT(dl_listing_add(&l, "k", 0, 0, NULL), -E2BIG);
    dl_listing_free(&l);
}

static void test_etag(void)
{
    char a[] = "\"abc\"", b[] = "W/\"abc\"", c[] = "abc", d[] = "\"", e[] = "", f[] = "W/";

    dl_etag_normalize(a);
    dl_etag_normalize(b);
    dl_etag_normalize(c);
    dl_etag_normalize(d);
    dl_etag_normalize(e);
    dl_etag_normalize(f);
    dl_etag_normalize(NULL);
    CHECK_STR(a, "abc");
    CHECK_STR(b, "abc");
    CHECK_STR(c, "abc");
    CHECK_STR(d, "\"");
    CHECK_STR(e, "");
    CHECK_STR(f, "");
}

static void test_iso8601(void)
{
    CHECK_INT(dl_parse_iso8601("1970-01-01T00:00:00Z"), 0);
    CHECK_INT(dl_parse_iso8601("2024-01-02T03:04:05.000Z"), 1704164645);
    CHECK_INT(dl_parse_iso8601("2024-01-02T03:04:05Z"), 1704164645);
    CHECK_INT(dl_parse_iso8601("2024-01-02T04:04:05+01:00"), 1704164645);
    CHECK_INT(dl_parse_iso8601("2024-02-29T00:00:00Z"), 1709164800);
    CHECK_INT(dl_parse_iso8601("2000-03-01T00:00:00.123456789Z"), 951868800);
    CHECK_INT(dl_parse_iso8601("2023-02-29T00:00:00Z"), -1);
    CHECK_INT(dl_parse_iso8601("1900-02-29T00:00:00Z"), -1);
    CHECK_INT(dl_parse_iso8601("2024-13-01T00:00:00Z"), -1);
    CHECK_INT(dl_parse_iso8601("2024-01-01T24:00:00Z"), -1);
    CHECK_INT(dl_parse_iso8601("2024-01-01T00:00:00"), -1);
    CHECK_INT(dl_parse_iso8601("2024-01-01T00:00:00.Z"), -1);
    CHECK_INT(dl_parse_iso8601("2024-01-01T00:00:00Zjunk"), -1);
    CHECK_INT(dl_parse_iso8601("2024-1-01T00:00:00Z"), -1);
    CHECK_INT(dl_parse_iso8601("1969-12-31T23:59:59Z"), -1);
    CHECK_INT(dl_parse_iso8601("Tue, 02 Jan 2024 03:04:05 GMT"), -1);
    CHECK_INT(dl_parse_iso8601(""), -1);
    CHECK_INT(dl_parse_iso8601(NULL), -1);
}

static const char s3_page_default_ns[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "  <Name>models</Name><Prefix>llama/</Prefix><KeyCount>4</KeyCount>\n"
    "  <MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>\n"
    "  "
    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\n"
    "  <Contents><Key>llama/</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>"
    "<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size></Contents>\n"
    "  <Contents><Key>llama/config.json</Key>"
    "<LastModified>2024-01-02T03:04:05.000Z</LastModified>"
    "<ETag>&quot;" MD5 "&quot;</ETag><Size>123</Size>"
    "<Owner><ID>x</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>\n"
    "  <Contents><Key>llama/model.safetensors</Key>"
    "<LastModified>2024-01-02T03:04:05Z</LastModified>"
    "<ETag>\"0123456789abcdef0123456789abcdef-3\"</ETag><Size>9876543210</Size></Contents>\n"
    "  <Contents><Key>llama/a &amp; b.txt</Key><ETag>&quot;9E107D9D372BB6826BD81D3542A419D6"
    "&quot;</ETag><Size>\n 7 \n</Size></Contents>\n"
    "  <CommonPrefixes><Prefix>llama/sub/</Prefix></CommonPrefixes>\n"
    "</ListBucketResult>\n";

static const char s3_page_prefixed_ns[] =
    "<s3:ListBucketResult xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<s3:IsTruncated>false</s3:IsTruncated>"
    "<s3:Contents><s3:Key>x/y.bin</s3:Key><s3:Size>5</s3:Size>"
    "<s3:ETag>&quot;" MD5 "&quot;</s3:ETag></s3:Contents>"
    "</s3:ListBucketResult>";

static void test_s3_good(void)
{
    struct dl_listing l = {0};

    CHECK_INT(s3(s3_page_default_ns, &l), 0);
    CHECK_INT(l.n, 3); /* the "llama/" directory marker is skipped */
    CHECK(l.truncated);
    CHECK_STR(l.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    if (l.n == 3) {
        CHECK_STR(l.entries[0].path, "llama/config.json");
        CHECK_INT(l.entries[0].size, 123);
        CHECK_INT(l.entries[0].mtime, 1704164645);
        CHECK_STR(l.entries[0].etag, MD5);
        CHECK_INT(l.entries[0].digest_kind, CM_HASH_MD5);
        CHECK_STR(l.entries[0].digest, MD5);
        CHECK_STR(l.entries[1].path, "llama/model.safetensors");
        CHECK_INT(l.entries[1].size, 9876543210ULL);
        CHECK_STR(l.entries[1].etag, "0123456789abcdef0123456789abcdef-3");
        CHECK_INT(l.entries[1].digest_kind, CM_HASH_NONE); /* multipart: not an md5 */
        CHECK_STR(l.entries[1].digest, "");
        CHECK_STR(l.entries[2].path, "llama/a & b.txt");
        CHECK_INT(l.entries[2].size, 7);
        CHECK_INT(l.entries[2].mtime, 0);
        CHECK_INT(l.entries[2].digest_kind, CM_HASH_MD5);
        CHECK_STR(l.entries[2].digest, MD5); /* lowercased */
    }

    /* the next page appends and replaces the continuation state */
    CHECK_INT(s3(s3_page_prefixed_ns, &l), 0);
    CHECK_INT(l.n, 4);
    CHECK(!l.truncated);
    CHECK(l.next_token == NULL);
    if (l.n == 4) {
        CHECK_STR(l.entries[3].path, "x/y.bin");
        CHECK_INT(l.entries[3].size, 5);
        CHECK_INT(l.entries[3].digest_kind, CM_HASH_MD5);
    }
    dl_listing_free(&l);

    /* keys keep their spaces; other fields may be pretty-printed */
    CHECK_INT(s3("<ListBucketResult><Contents><Key> a b </Key><Size> 1 </Size></Contents>"
                 "</ListBucketResult>",
                 &l),
              0);
    CHECK_INT(l.n, 1);
    if (l.n == 1)
        CHECK_STR(l.entries[0].path, " a b ");
    dl_listing_free(&l);

    /* a token on the last page is dropped */
    CHECK_INT(s3("<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>t"
                 "</NextContinuationToken></ListBucketResult>",
                 &l),
              0);
    CHECK(!l.truncated);
    CHECK(l.next_token == NULL);

    /* MinIO-style: no namespace at all, empty bucket */
    CHECK_INT(s3("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>", &l), 0);
    CHECK_INT(l.n, 0);
    /* the document's encoding declaration does not change how it is read */
    CHECK_INT(s3("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><ListBucketResult>"
                 "<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>",
                 &l),
              0);
    CHECK_INT(l.n, 1);
    dl_listing_free(&l);
}

static void test_s3_hostile(void)
{
    struct dl_listing l = {0};
    char *big;
    size_t i, n;

    CHECK_INT(dl_listing_add(&l, "before", 1, 0, NULL), 0);

    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents>", &l), l, 1);
    CHECK(strstr(err, "not well-formed") != NULL);
    CHECK_FAILS(s3("", &l), l, 1);
    CHECK_FAILS(s3("<Foo/>", &l), l, 1);
    CHECK(strstr(err, "ListBucketResult") != NULL);
    CHECK_FAILS(s3("<Error><Code>AccessDenied</Code></Error>", &l), l, 1);
    CHECK(strstr(err, "Error") != NULL);
    CHECK_FAILS(s3("<?xml version=\"1.0\"?>\n"
                   "<!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                   "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
                   "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
                   "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">]>"
                   "<ListBucketResult><Contents><Key>&lol4;</Key><Size>1</Size></Contents>"
                   "</ListBucketResult>",
                   &l),
                l, 1);
    CHECK(strstr(err, "DOCTYPE") != NULL);
    CHECK_FAILS(s3("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
                   "<ListBucketResult><Contents><Key>&e;</Key><Size>1</Size></Contents>"
                   "</ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>&undefined;</Key><Size>1</Size>"
                   "</Contents></ListBucketResult>",
                   &l),
                l, 1);

    /* sizes */
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Size>99999999999999999999999"
                   "</Size></Contents></ListBucketResult>",
                   &l),
                l, 1);
    CHECK(strstr(err, "Size") != NULL);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Size>9223372036854775808</Size>"
                   "</Contents></ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents>"
                   "</ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Size>1.5</Size></Contents>"
                   "</ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Size></Size></Contents>"
                   "</ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>", &l), l,
                1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>", &l),
                l, 1);

    /* structure */
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Key>b</Key><Size>1</Size>"
                   "</Contents></ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a<b/></Key><Size>1</Size></Contents>"
                   "</ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key></Key><Size>1</Size></Contents>"
                   "</ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><Contents><Key>a</Key><Size>1</Size>"
                   "<LastModified>yesterday</LastModified></Contents></ListBucketResult>",
                   &l),
                l, 1);
    CHECK_FAILS(s3("<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>", &l), l,
                1);
    CHECK_FAILS(s3("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", &l), l,
                1);
    CHECK(strstr(err, "NextContinuationToken") != NULL);
    CHECK_FAILS(s3("<s3:ListBucketResult><s3:Key>a</s3:Key></s3:ListBucketResult>", &l), l, 1);

    /* a good entry followed by a bad one: the page is undone, continuation state cleared */
    l.truncated = true;
    CHECK_FAILS(s3("<ListBucketResult><IsTruncated>true</IsTruncated>"
                   "<NextContinuationToken>t</NextContinuationToken>"
                   "<Contents><Key>ok</Key><Size>1</Size></Contents>"
                   "<Contents><Key>bad</Key><Size>x</Size></Contents></ListBucketResult>",
                   &l),
                l, 1);
    CHECK(!l.truncated);
    CHECK(l.next_token == NULL);

    /* NUL bytes inside the document */
    {
        static const char nul[] = "<ListBucketResult><Contents><Key>a\0b</Key><Size>1</Size>"
                                  "</Contents></ListBucketResult>";
        err[0] = '\0';
        CHECK(dl_parse_s3_list(nul, sizeof(nul) - 1, &l, err, sizeof(err)) < 0);
        CHECK(err[0] != '\0');
        CHECK_INT(l.n, 1);
        CHECK(dl_parse_s3_list(&nul[0], 0, &l, err, sizeof(err)) < 0);
        CHECK(dl_parse_s3_list(NULL, 10, &l, err, sizeof(err)) < 0);
    }

    /* a key longer than DL_MAX_KEY_LEN */
    big = malloc(DL_MAX_KEY_LEN + 200);
    if (big) {
        n = (size_t)sprintf(big, "<ListBucketResult><Contents><Key>");
        memset(big + n, 'k', DL_MAX_KEY_LEN + 1);
        n += DL_MAX_KEY_LEN + 1;
        sprintf(big + n, "</Key><Size>1</Size></Contents></ListBucketResult>");
        CHECK_FAILS(s3(big, &l), l, 1);
        CHECK(strstr(err, "longer than") != NULL);
        /* exactly DL_MAX_KEY_LEN is fine */
        n = (size_t)sprintf(big, "<ListBucketResult><Contents><Key>");
        memset(big + n, 'k', DL_MAX_KEY_LEN);
        n += DL_MAX_KEY_LEN;
        sprintf(big + n, "</Key><Size>1</Size></Contents></ListBucketResult>");
        CHECK_INT(s3(big, &l), 0);
        CHECK_INT(l.n, 2);
        if (l.n == 2)
            CHECK_INT(strlen(l.entries[1].path), DL_MAX_KEY_LEN);
        dl_listing_remove(&l, 1);
        free(big);
    }

    /* deep nesting */
    big = malloc(200 * 8 + 64);
    if (big) {
        n = (size_t)sprintf(big, "<ListBucketResult>");
        for (i = 0; i < 200; i++)
            n += (size_t)sprintf(big + n, "<a>");
        CHECK_FAILS(dl_parse_s3_list(big, n, &l, err, sizeof(err)), l, 1);
        free(big);
    }

    /* a document over the size bound is refused before parsing */
    err[0] = '\0';
    CHECK_INT(dl_parse_s3_list("<", (size_t)64 * 1024 * 1024 + 1, &l, err, sizeof(err)), -E2BIG);
    CHECK(err[0] != '\0');

    /* no room for the message: still no crash */
    CHECK(dl_parse_s3_list("<x/>", 4, &l, NULL, 0) < 0);
    dl_listing_free(&l);
}

static void test_s3_many(void)
{
    struct dl_listing l = {0};
    size_t cap = 10000 * 160 + 256, n, i;
    char *doc = malloc(cap);

    if (!doc) {
        CHECK(doc != NULL);
        return;
    }
    n = (size_t)sprintf(doc, "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                             "<IsTruncated>false</IsTruncated>");
    for (i = 0; i < 10000; i++)
        n += (size_t)sprintf(doc + n,
                             "<Contents><Key>m/shard-%05zu.bin</Key><Size>%zu</Size>"
                             "<ETag>&quot;%032zx&quot;</ETag></Contents>",
                             i, i, i);
    n += (size_t)sprintf(doc + n, "</ListBucketResult>");
    err[0] = '\0';
    CHECK_INT(dl_parse_s3_list(doc, n, &l, err, sizeof(err)), 0);
    CHECK_INT(l.n, 10000);
    if (l.n == 10000) {
        CHECK_STR(l.entries[9999].path, "m/shard-09999.bin");
        CHECK_INT(l.entries[9999].size, 9999);
        CHECK_STR(l.entries[9999].digest, "0000000000000000000000000000270f");
    }
    dl_listing_free(&l);
    free(doc);
}

static void test_s3_error(void)
{
    char code[32], msg[16];
    static const char doc[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                              "<Error><Code>NoSuchBucket</Code>"
                              "<Message>The specified bucket does not exist</Message>"
                              "<BucketName>x</BucketName><RequestId>1</RequestId></Error>";

    CHECK_INT(dl_parse_s3_error(doc, strlen(doc), code, sizeof(code), msg, sizeof(msg)), 0);
    CHECK_STR(code, "NoSuchBucket");
    CHECK_STR(msg, "The specified b"); /* truncated to the buffer */
    CHECK_INT(dl_parse_s3_error(S("<Error/>"), code, sizeof(code), msg, sizeof(msg)), 0);
    CHECK_STR(code, "");
    CHECK_STR(msg, "");
    CHECK_INT(dl_parse_s3_error(S("<e:Error xmlns:e=\"urn:x\"><e:Code>SlowDown</e:Code></e:Error>"),
                                code, sizeof(code), msg, sizeof(msg)),
              0);
    CHECK_STR(code, "SlowDown");
    CHECK(dl_parse_s3_error(S("<ListBucketResult/>"), code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK(dl_parse_s3_error(S("<Error><Code>x"), code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK_STR(code, "");
    CHECK(
        dl_parse_s3_error(S("<!DOCTYPE Error [<!ENTITY a \"b\">]><Error><Code>&a;</Code></Error>"),
                          code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK(dl_parse_s3_error(S("not xml"), code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK_INT(dl_parse_s3_error(doc, strlen(doc), NULL, 0, NULL, 0), 0);
}

static const char tos_page[] =
    "{\"Name\":\"models\",\"Prefix\":\"qwen/\",\"KeyCount\":3,\"MaxKeys\":1000,"
    "\"IsTruncated\":true,\"NextContinuationToken\":\"cW13ZW4vbW9kZWw=\","
    "\"CommonPrefixes\":[{\"Prefix\":\"qwen/sub/\"}],"
    "\"Contents\":["
    "{\"Key\":\"qwen/config.json\",\"LastModified\":\"2024-01-02T03:04:05.000Z\","
    "\"ETag\":\"\\\"" MD5 "\\\"\",\"Size\":123,\"StorageClass\":\"STANDARD\","
    "\"HashCrc64ecma\":\"1234567890\"},"
    "{\"Key\":\"qwen/\",\"Size\":0},"
    "{\"Key\":\"qwen/model.safetensors\",\"Size\":9876543210,\"ETag\":\"\\\"x-2\\\"\","
    "\"HashCrc64ecma\":\"18446744073709551615\"},"
    "{\"Key\":\"qwen/a\",\"Size\":1,\"HashCrc64ecma\":\"12ab\"},"
    "{\"Key\":\"qwen/b\",\"Size\":1,\"HashCrc64ecma\":\"18446744073709551616\"},"
    "{\"Key\":\"qwen/c\",\"Size\":1,\"HashCrc64ecma\":12345},"
    "{\"Key\":\"qwen/d\",\"Size\":1,\"HashCrc64ecma\":\"000042\"},"
    "{\"Key\":\"qwen/e\",\"Size\":1e3,\"HashCrc64ecma\":\"\"}"
    "]}";

static void test_tos_good(void)
{
    struct dl_listing l = {0};

    CHECK_INT(tos(tos_page, &l), 0);
    CHECK(l.truncated);
    CHECK_STR(l.next_token, "cW13ZW4vbW9kZWw=");
    CHECK_INT(l.n, 7);
    if (l.n == 7) {
        CHECK_STR(l.entries[0].path, "qwen/config.json");
        CHECK_INT(l.entries[0].size, 123);
        CHECK_INT(l.entries[0].mtime, 1704164645);
        CHECK_STR(l.entries[0].etag, MD5);
        CHECK_INT(l.entries[0].digest_kind, CM_HASH_CRC64ECMA);
        CHECK_STR(l.entries[0].digest, "1234567890");
        CHECK_INT(l.entries[1].size, 9876543210ULL);
        CHECK_STR(l.entries[1].etag, "x-2");
        CHECK_STR(l.entries[1].digest, "18446744073709551615");
        CHECK_INT(l.entries[2].digest_kind, CM_HASH_NONE); /* not digits */
        CHECK_INT(l.entries[3].digest_kind, CM_HASH_NONE); /* past UINT64_MAX */
        CHECK_INT(l.entries[4].digest_kind, CM_HASH_NONE); /* a number, not a string */
        CHECK_INT(l.entries[5].digest_kind, CM_HASH_CRC64ECMA);
        CHECK_STR(l.entries[5].digest, "42");
        CHECK_INT(l.entries[6].size, 1000);
        CHECK_INT(l.entries[6].digest_kind, CM_HASH_NONE);
        CHECK(l.entries[6].etag == NULL);
    }
    CHECK_INT(tos("{\"Name\":\"m\",\"IsTruncated\":false} \n", &l), 0);
    CHECK(!l.truncated);
    CHECK(l.next_token == NULL);
    CHECK_INT(l.n, 7);
    CHECK_INT(tos("{\"Contents\":null}", &l), 0);
    dl_listing_free(&l);
}

static void test_tos_hostile(void)
{
    struct dl_listing l = {0};
    char *doc;
    size_t n, i;

    CHECK_INT(dl_listing_add(&l, "before", 1, 0, NULL), 0);
    CHECK_FAILS(tos("[]", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":1}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":{}}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[1]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":1,\"Size\":1}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"\",\"Size\":1}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\"}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":\"1\"}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":-1}]}", &l), l, 1);
    CHECK(strstr(err, "Size") != NULL);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":1.5}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":1e300}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":1e999}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":18014398509481984}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":1,\"ETag\":[]}]}", &l), l, 1);
    CHECK_FAILS(tos("{\"Contents\":[{\"Key\":\"a\",\"Size\":1,\"LastModified\":\"x\"}]}", &l), l,
                1);
    CHECK_FAILS(tos("{\"IsTruncated\":\"true\"}", &l), l, 1);
    CHECK_FAILS(tos("{\"IsTruncated\":true}", &l), l, 1);
    CHECK_FAILS(tos("{\"IsTruncated\":true,\"NextContinuationToken\":7}", &l), l, 1);
    CHECK_FAILS(tos("{} x", &l), l, 1);
    CHECK(strstr(err, "trailing") != NULL);
    CHECK_FAILS(
        tos("{\"Contents\":[{\"Key\":\"ok\",\"Size\":1},{\"Key\":\"bad\",\"Size\":-2}]}", &l), l,
        1);
    /* a \u0000 escape keeps the key whole, as a control character the name check rejects */
    CHECK_INT(tos("{\"Contents\":[{\"Key\":\"a\\u0000.txt\",\"Size\":1}]}", &l), 0);
    CHECK_INT(l.n, 2);
    if (l.n == 2)
        CHECK(memcmp(l.entries[1].path, "a\001.txt", 7) == 0);
    dl_listing_remove(&l, 1);
    /* an escaped backslash before "u0000" is not a NUL */
    CHECK_INT(tos("{\"Contents\":[{\"Key\":\"a\\\\u0000\",\"Size\":1}]}", &l), 0);
    CHECK_INT(l.n, 2);
    if (l.n == 2)
        CHECK_STR(l.entries[1].path, "a\\u0000");
    dl_listing_remove(&l, 1);
    {
        static const char nul[] = "{\"Contents\":[{\"Key\":\"a\0b\",\"Size\":1}]}";
        err[0] = '\0';
        CHECK_FAILS(dl_parse_tos_list(nul, sizeof(nul) - 1, &l, err, sizeof(err)), l, 1);
    }

    /* deep nesting hits cJSON's limit, not the stack */
    n = 200000;
    doc = malloc(n + 1);
    if (doc) {
        memset(doc, '[', n);
        doc[n] = '\0';
        CHECK_FAILS(tos(doc, &l), l, 1);
        for (i = 0; i < n; i++)
            doc[i] = (i % 2) ? '{' : '"';
        CHECK_FAILS(tos(doc, &l), l, 1);
        free(doc);
    }

    /* 10k entries */
    doc = malloc(10000 * 80 + 64);
    if (doc) {
        n = (size_t)sprintf(doc, "{\"IsTruncated\":false,\"Contents\":[");
        for (i = 0; i < 10000; i++)
            n += (size_t)sprintf(doc + n,
                                 "%s{\"Key\":\"k/%zu\",\"Size\":%zu,\"HashCrc64ecma\":"
                                 "\"%zu\"}",
                                 i ? "," : "", i, i, i * 7);
        sprintf(doc + n, "]}");
        CHECK_INT(tos(doc, &l), 0);
        CHECK_INT(l.n, 10001);
        if (l.n == 10001)
            CHECK_STR(l.entries[10000].digest, "69993");
        free(doc);
    }
    dl_listing_free(&l);
}

static void test_tos_error(void)
{
    char code[32], msg[64];
    static const char doc[] = "{\"Code\":\"NoSuchKey\",\"Message\":\"The specified key does not "
                              "exist.\",\"RequestId\":\"abc\",\"HostId\":\"h\",\"EC\":\"0017-1\"}";

    CHECK_INT(dl_parse_tos_error(doc, strlen(doc), code, sizeof(code), msg, sizeof(msg)), 0);
    CHECK_STR(code, "NoSuchKey");
    CHECK_STR(msg, "The specified key does not exist.");
    CHECK_INT(
        dl_parse_tos_error(S("{\"Code\":\"AccessDenied\"}"), code, sizeof(code), msg, sizeof(msg)),
        0);
    CHECK_STR(msg, "");
    CHECK(dl_parse_tos_error(S("{\"Message\":\"x\"}"), code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK(dl_parse_tos_error(S("{\"Code\":5}"), code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK(dl_parse_tos_error(S("[\"Code\"]"), code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK(dl_parse_tos_error(S("<Error/>"), code, sizeof(code), msg, sizeof(msg)) < 0);
    CHECK_STR(code, "");
}

static const char hf_page[] =
    "[{\"type\":\"file\",\"oid\":\"" SHA1 "\",\"size\":12,\"path\":\"config.json\"},"
    "{\"type\":\"directory\",\"oid\":\"" SHA1 "\",\"size\":0,\"path\":\"onnx\"},"
    "{\"type\":\"file\",\"oid\":\"" SHA1 "\",\"size\":134,\"path\":\"onnx/model.safetensors\","
    "\"lfs\":{\"oid\":\"" SHA256 "\",\"size\":1234,\"pointerSize\":134},\"xetHash\":\"x\"},"
    "{\"type\":\"file\",\"oid\":\"2AAE6C35C94FCFB415DBE95F408B9CE91EE846ED\",\"size\":1,"
    "\"path\":\"UPPER\"},"
    "{\"type\":\"file\",\"oid\":\"abc\",\"size\":1,\"path\":\"short-oid\"},"
    "{\"type\":\"file\",\"size\":1,\"path\":\"no-oid\",\"lfs\":null},"
    "{\"type\":\"file\",\"oid\":\"" SHA1 "\",\"size\":5,\"path\":\"bad-lfs-oid\","
    "\"lfs\":{\"oid\":\"" SHA1 "\",\"size\":99}}]";

static void test_hf_good(void)
{
    struct dl_listing l = {0};

    CHECK_INT(hf(hf_page, &l), 0);
    CHECK_INT(l.n, 6);
    if (l.n == 6) {
        CHECK_STR(l.entries[0].path, "config.json");
        CHECK_INT(l.entries[0].size, 12);
        CHECK_INT(l.entries[0].mtime, 0);
        CHECK_STR(l.entries[0].etag, SHA1);
        CHECK_INT(l.entries[0].digest_kind, CM_HASH_GIT_SHA1);
        CHECK_STR(l.entries[0].digest, SHA1);
        CHECK_STR(l.entries[1].path, "onnx/model.safetensors");
        CHECK_INT(l.entries[1].size, 1234);
        CHECK_STR(l.entries[1].etag, SHA256);
        CHECK_INT(l.entries[1].digest_kind, CM_HASH_SHA256);
        CHECK_STR(l.entries[1].digest, SHA256);
        CHECK_INT(l.entries[2].digest_kind, CM_HASH_GIT_SHA1);
        CHECK_STR(l.entries[2].digest, SHA1);
        CHECK_INT(l.entries[3].digest_kind, CM_HASH_NONE);
        CHECK_STR(l.entries[3].etag, "abc");
        CHECK_INT(l.entries[4].digest_kind, CM_HASH_NONE);
        CHECK(l.entries[4].etag == NULL);
        CHECK_INT(l.entries[5].size, 99);
        CHECK_INT(l.entries[5].digest_kind, CM_HASH_NONE); /* lfs oid must be a sha256 */
    }
    /* HF pages do not touch continuation state (the Link header does) */
    l.truncated = true;
    CHECK_INT(hf("[]", &l), 0);
    CHECK(l.truncated);
    dl_listing_free(&l);
}

static void test_hf_hostile(void)
{
    struct dl_listing l = {0};
    char *doc;
    size_t n, i;

    CHECK_INT(dl_listing_add(&l, "before", 1, 0, NULL), 0);
    CHECK_FAILS(hf("{}", &l), l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":1,\"path\":\"a\"", &l), l, 1);
    CHECK_FAILS(hf("[1]", &l), l, 1);
    CHECK_FAILS(hf("[{\"size\":1,\"path\":\"a\"}]", &l), l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":1}]", &l), l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":1,\"path\":[]}]", &l), l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":\"1\",\"path\":\"a\"}]", &l), l, 1);
    CHECK(strstr(err, "size") != NULL);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":-1,\"path\":\"a\"}]", &l), l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":true,\"path\":\"a\"}]", &l), l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":1,\"path\":\"a\",\"oid\":1}]", &l), l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":1,\"path\":\"a\",\"lfs\":\"x\"}]", &l), l, 1);
    CHECK_FAILS(
        hf("[{\"type\":\"file\",\"size\":1,\"path\":\"a\",\"lfs\":{\"oid\":\"" SHA256 "\"}}]", &l),
        l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":1,\"path\":\"a\",\"lfs\":{\"oid\":\"" SHA256
                   "\",\"size\":-5}}]",
                   &l),
                l, 1);
    CHECK_FAILS(hf("[{\"type\":\"file\",\"size\":1,\"path\":\"ok\"},"
                   "{\"type\":\"file\",\"size\":1.25,\"path\":\"bad\"}]",
                   &l),
                l, 1);
    CHECK_INT(hf("[{\"type\":\"file\",\"size\":1,\"path\":\"a\\u0000/../../x\"}]", &l), 0);
    CHECK_INT(l.n, 2);
    if (l.n == 2)
        CHECK_STR(l.entries[1].path, "a\001/../../x");
    dl_listing_remove(&l, 1);

    doc = malloc(DL_MAX_KEY_LEN + 128);
    if (doc) {
        n = (size_t)sprintf(doc, "[{\"type\":\"file\",\"size\":1,\"path\":\"");
        memset(doc + n, 'p', DL_MAX_KEY_LEN + 1);
        n += DL_MAX_KEY_LEN + 1;
        sprintf(doc + n, "\"}]");
        CHECK_FAILS(hf(doc, &l), l, 1);
        free(doc);
    }

    n = 100000;
    doc = malloc(n * 2 + 1);
    if (doc) {
        for (i = 0; i < n; i++)
            memcpy(doc + 2 * i, "[{", 2);
        doc[2 * n] = '\0';
        CHECK_FAILS(hf(doc, &l), l, 1);
        free(doc);
    }

    doc = malloc(10000 * 120 + 16);
    if (doc) {
        n = (size_t)sprintf(doc, "[");
        for (i = 0; i < 10000; i++)
            n += (size_t)sprintf(doc + n,
                                 "%s{\"type\":\"file\",\"oid\":\"%040zx\",\"size\":%zu,"
                                 "\"path\":\"d/%zu\"}",
                                 i ? "," : "", i, i, i);
        sprintf(doc + n, "]");
        CHECK_INT(hf(doc, &l), 0);
        CHECK_INT(l.n, 10001);
        if (l.n == 10001) {
            CHECK_STR(l.entries[10000].path, "d/9999");
            CHECK_STR(l.entries[10000].digest, "000000000000000000000000000000000000270f");
        }
        free(doc);
    }
    dl_listing_free(&l);
}

static void test_hf_revision(void)
{
    char sha[41];
    static const char doc[] = "{\"_id\":\"x\",\"id\":\"org/name\",\"sha\":\"" SHA1 "\","
                              "\"private\":false,\"gated\":false,\"siblings\":[]}";

    err[0] = '\0';
    CHECK_INT(dl_parse_hf_revision(doc, strlen(doc), sha, err, sizeof(err)), 0);
    CHECK_STR(sha, SHA1);
    CHECK_INT(dl_parse_hf_revision(S("{\"sha\":\"2AAE6C35C94FCFB415DBE95F408B9CE91EE846ED\"}"), sha,
                                   err, sizeof(err)),
              0);
    CHECK_STR(sha, SHA1);

    err[0] = '\0';
    CHECK(dl_parse_hf_revision(S("{\"id\":\"org/name\"}"), sha, err, sizeof(err)) < 0);
    CHECK(strstr(err, "sha") != NULL);
    CHECK_STR(sha, "");
    CHECK(dl_parse_hf_revision(S("{\"sha\":\"abc\"}"), sha, err, sizeof(err)) < 0);
    CHECK(dl_parse_hf_revision(S("{\"sha\":\"" SHA1 "0\"}"), sha, err, sizeof(err)) < 0);
    CHECK(dl_parse_hf_revision(S("{\"sha\":\"../../../../../../../../../../etc/passwd\"}"), sha,
                               err, sizeof(err)) < 0);
    CHECK(dl_parse_hf_revision(S("{\"sha\":40}"), sha, err, sizeof(err)) < 0);
    CHECK(dl_parse_hf_revision(S("[\"sha\"]"), sha, err, sizeof(err)) < 0);
    CHECK(dl_parse_hf_revision(S("{\"sha\":\"" SHA1 "\""), sha, err, sizeof(err)) < 0);
    CHECK_STR(sha, "");
}

int main(void)
{
    test_container();
    test_etag();
    test_iso8601();
    test_s3_good();
    test_s3_hostile();
    test_s3_many();
    test_s3_error();
    test_tos_good();
    test_tos_hostile();
    test_tos_error();
    test_hf_good();
    test_hf_hostile();
    test_hf_revision();
    return check_done();
}
