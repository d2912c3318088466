/* test_hash.c - the digests against published values (FIPS 180 / RFC 1321 examples, git's
 * blob ids, the CRC-64/XZ check value, RFC 4231 HMAC cases), and the slice-by-8 CRC against a
 * bit-at-a-time reference over every alignment, since the fast path is where a table or
 * byte-order slip would hide. */
#include "../../common/hash.h"
#include "check.h"

#include <inttypes.h>
#include <stdlib.h>

/* Hash buf with kind, feeding it in pieces of the given sizes (cycled). */
static void hash_pieces(enum cm_hash_kind kind, const void *buf, size_t len, const size_t *sizes,
                        size_t nsizes, char out[65])
{
    struct cm_hash *h = cm_hash_new(kind, len);
    CHECK(h != NULL);
    if (!h) {
        out[0] = '\0';
        return;
    }
    const unsigned char *p = buf;
    for (size_t off = 0, i = 0; off < len; i++) {
        size_t n = sizes[i % nsizes];
        if (n > len - off)
            n = len - off;
        cm_hash_update(h, p + off, n);
        off += n;
    }
    cm_hash_final(h, out);
    cm_hash_free(h);
}

static void hash_once(enum cm_hash_kind kind, const void *buf, size_t len, char out[65])
{
    size_t whole = len ? len : 1;
    hash_pieces(kind, buf, len, &whole, 1, out);
}

static uint64_t crc64_bitwise(uint64_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0xC96C5795D7870F42ULL : crc >> 1;
    }
    return ~crc;
}

static void test_known_digests(void)
{
    char out[65];
    hash_once(CM_HASH_SHA256, "abc", 3, out);
    CHECK_STR(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hash_once(CM_HASH_SHA256, "", 0, out);
    CHECK_STR(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cm_sha256_hex("abc", 3, out);
    CHECK_STR(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cm_sha256_hex("", 0, out);
    CHECK_STR(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    hash_once(CM_HASH_MD5, "", 0, out);
    CHECK_STR(out, "d41d8cd98f00b204e9800998ecf8427e");
    const char *fox = "The quick brown fox jumps over the lazy dog";
    hash_once(CM_HASH_MD5, fox, strlen(fox), out);
    CHECK_STR(out, "9e107d9d372bb6826bd81d3542a419d6");

    /* `git hash-object` of a file holding "hello\n", and of an empty file. */
    hash_once(CM_HASH_GIT_SHA1, "hello\n", 6, out);
    CHECK_STR(out, "ce013625030ba8dba906f756967f9e9ca394464a");
    hash_once(CM_HASH_GIT_SHA1, "", 0, out);
    CHECK_STR(out, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");

    hash_once(CM_HASH_CRC64ECMA, "123456789", 9, out);
    CHECK_STR(out, "11051210869376104954");
    hash_once(CM_HASH_CRC64ECMA, "", 0, out);
    CHECK_STR(out, "0");

    CHECK(cm_hash_new(CM_HASH_NONE, 0) == NULL);
}

static void test_final_is_sticky(void)
{
    char a[65], b[65];
    struct cm_hash *h = cm_hash_new(CM_HASH_SHA256, 0);
    CHECK(h != NULL);
    if (!h)
        return;
    cm_hash_update(h, "abc", 3);
    cm_hash_final(h, a);
    cm_hash_update(h, "more", 4); /* ignored after final */
    cm_hash_final(h, b);
    CHECK_STR(a, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_STR(b, a);
    cm_hash_free(h);
    cm_hash_free(NULL);
}

static void test_crc64(void)
{
    CHECK(cm_crc64ecma(0, "123456789", 9) == UINT64_C(0x995DC9BBDF1939FA));
    CHECK(cm_crc64ecma(0, "", 0) == 0);
    /* Continuing from a previous result equals one pass. */
    CHECK(cm_crc64ecma(cm_crc64ecma(0, "1234", 4), "56789", 5) == UINT64_C(0x995DC9BBDF1939FA));

    /* Every start alignment and every tail length of the 8-byte fast path. */
    enum { N = 4096 + 64 };
    unsigned char *buf = malloc(N);
    CHECK(buf != NULL);
    if (!buf)
        return;
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
    int mismatches = 0;
    for (size_t start = 0; start < 16; start++)
        for (size_t len = 0; len < 80; len++)
            mismatches += cm_crc64ecma(0, buf + start, len) != crc64_bitwise(0, buf + start, len);
    CHECK_INT(mismatches, 0);
    CHECK(cm_crc64ecma(0, buf, N) == crc64_bitwise(0, buf, N));
    CHECK(cm_crc64ecma(cm_crc64ecma(0, buf, 1001), buf + 1001, N - 1001) ==
          crc64_bitwise(0, buf, N));
    free(buf);
}

static void test_streaming(void)
{
    enum { N = 1000000 };
    char *a = malloc(N);
    CHECK(a != NULL);
    if (!a)
        return;
    memset(a, 'a', N);
    /* Odd sizes so pieces straddle the 64-byte block and 8-byte CRC word boundaries. */
    static const size_t odd[] = {1, 7, 63, 65, 3, 4093, 13, 65537};
    static const enum cm_hash_kind kinds[] = {CM_HASH_SHA256, CM_HASH_GIT_SHA1, CM_HASH_MD5,
                                              CM_HASH_CRC64ECMA};
    char whole[65], pieces[65];
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        hash_once(kinds[k], a, N, whole);
        hash_pieces(kinds[k], a, N, odd, sizeof(odd) / sizeof(odd[0]), pieces);
        CHECK(whole[0] != '\0');
        CHECK_STR(pieces, whole);
    }
    /* FIPS 180-2 and RFC 1321-suite value for a million 'a's. */
    hash_pieces(CM_HASH_SHA256, a, N, odd, sizeof(odd) / sizeof(odd[0]), pieces);
    CHECK_STR(pieces, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    hash_pieces(CM_HASH_MD5, a, N, odd, sizeof(odd) / sizeof(odd[0]), pieces);
    CHECK_STR(pieces, "7707d6ae4e027c70eea2a935c2296f21");
    hash_pieces(CM_HASH_CRC64ECMA, a, N, odd, sizeof(odd) / sizeof(odd[0]), pieces);
    char want[32];
    snprintf(want, sizeof(want), "%" PRIu64, crc64_bitwise(0, (unsigned char *)a, N));
    CHECK_STR(pieces, want);

    hash_pieces(CM_HASH_GIT_SHA1, "hello\n", 6, odd, 3, pieces);
    CHECK_STR(pieces, "ce013625030ba8dba906f756967f9e9ca394464a");
    free(a);
}

static void test_hmac_hex(void)
{
    unsigned char mac[32];
    char hex[65];
    /* RFC 4231 test case 2. */
    const char *msg = "what do ya want for nothing?";
    cm_hmac_sha256("Jefe", 4, msg, strlen(msg), mac);
    cm_hex(mac, sizeof(mac), hex);
    CHECK_STR(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* RFC 4231 test case 6: a key longer than the block is hashed first. */
    unsigned char key[131];
    memset(key, 0xaa, sizeof(key));
    const char *big = "Test Using Larger Than Block-Size Key - Hash Key First";
    cm_hmac_sha256(key, sizeof(key), big, strlen(big), mac);
    cm_hex(mac, sizeof(mac), hex);
    CHECK_STR(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    const unsigned char raw[] = {0x00, 0x0f, 0xa5, 0xff};
    cm_hex(raw, sizeof(raw), hex);
    CHECK_STR(hex, "000fa5ff");
    cm_hex(raw, 0, hex);
    CHECK_STR(hex, "");
}

int main(void)
{
    test_known_digests();
    test_final_is_sticky();
    test_crc64();
    test_streaming();
    test_hmac_hex();
    return check_done();
}
