/* hash.c - streaming digests for verifying downloaded files, plus the HMAC and hex helpers
 * the request signer needs.
 *
 * SHA-256, SHA-1 and MD5 are OpenSSL EVP digests; git blob SHA-1 is SHA-1 primed with the
 * "blob <size>\0" header. CRC-64 (the TOS HashCrc64ecma value) has no OpenSSL implementation,
 * so it is a slice-by-8 table here: it runs over every byte of multi-GB files, and eight
 * lookups per 8-byte word is several times faster than the bytewise loop. The tables are
 * built once, on first use, under pthread_once. */
#include "hash.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reflected form of the ECMA-182 polynomial 0x42F0E1EBA9EA3693. */
#define CRC64_POLY_REFLECTED 0xC96C5795D7870F42ULL

/* crc64_table[0] is the classic bytewise table; crc64_table[k][b] is the CRC of byte b
 * followed by k zero bytes, which is what lets eight bytes be folded in at once. */
static uint64_t crc64_table[8][256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

struct cm_hash {
    enum cm_hash_kind kind;
    EVP_MD_CTX *md; /* NULL for CRC64ECMA */
    uint64_t crc;   /* running CRC for CRC64ECMA, in cm_crc64ecma's convention */
    int failed;     /* an EVP call failed; final reports an empty digest */
    int finished;   /* final has run; result holds the answer */
    char result[65];
};

static void crc64_init_tables(void)
{
    for (unsigned n = 0; n < 256; n++) {
        uint64_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC64_POLY_REFLECTED : c >> 1;
        crc64_table[0][n] = c;
    }
    for (unsigned n = 0; n < 256; n++) {
        uint64_t c = crc64_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc64_table[0][c & 0xff] ^ (c >> 8);
            crc64_table[k][n] = c;
        }
    }
}

/* Little-endian load, independent of host byte order (compiles to one load on x86/arm64). */
static uint64_t load_le64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

uint64_t cm_crc64ecma(uint64_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    pthread_once(&crc64_once, crc64_init_tables);
    /* The public value is pre- and post-inverted, so continuing from a previous result
     * means undoing the final inversion first; starting from 0 gives the all-ones init. */
    crc = ~crc;
    while (len >= 8) {
        crc ^= load_le64(p);
        crc = crc64_table[7][crc & 0xff] ^ crc64_table[6][(crc >> 8) & 0xff] ^
              crc64_table[5][(crc >> 16) & 0xff] ^ crc64_table[4][(crc >> 24) & 0xff] ^
              crc64_table[3][(crc >> 32) & 0xff] ^ crc64_table[2][(crc >> 40) & 0xff] ^
              crc64_table[1][(crc >> 48) & 0xff] ^ crc64_table[0][crc >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc64_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void cm_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static const EVP_MD *hash_md(enum cm_hash_kind kind)
{
    switch (kind) {
    case CM_HASH_SHA256:
        return EVP_sha256();
    case CM_HASH_GIT_SHA1:
        return EVP_sha1();
    case CM_HASH_MD5:
        return EVP_md5();
    default:
        return NULL;
    }
}

struct cm_hash *cm_hash_new(enum cm_hash_kind kind, uint64_t total_size)
{
    if (kind != CM_HASH_SHA256 && kind != CM_HASH_GIT_SHA1 && kind != CM_HASH_MD5 &&
        kind != CM_HASH_CRC64ECMA)
        return NULL;
    struct cm_hash *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->kind = kind;
    if (kind == CM_HASH_CRC64ECMA)
        return h;

    h->md = EVP_MD_CTX_new();
    if (!h->md || EVP_DigestInit_ex(h->md, hash_md(kind), NULL) != 1) {
        cm_hash_free(h);
        return NULL;
    }
    if (kind == CM_HASH_GIT_SHA1) {
        char hdr[32];
        int n = snprintf(hdr, sizeof(hdr), "blob %" PRIu64, total_size);
        /* The header's terminating NUL is part of what git hashes, hence n + 1. */
        if (EVP_DigestUpdate(h->md, hdr, (size_t)n + 1) != 1) {
            cm_hash_free(h);
            return NULL;
        }
    }
    return h;
}

void cm_hash_update(struct cm_hash *h, const void *data, size_t len)
{
    if (h->finished || h->failed || len == 0)
        return;
    if (h->kind == CM_HASH_CRC64ECMA)
        h->crc = cm_crc64ecma(h->crc, data, len);
    else if (EVP_DigestUpdate(h->md, data, len) != 1)
        h->failed = 1;
}

/* A failed digest yields "" so that it can never compare equal to a published value. */
void cm_hash_final(struct cm_hash *h, char out[65])
{
    if (!h->finished) {
        h->finished = 1;
        if (h->failed) {
            h->result[0] = '\0';
        } else if (h->kind == CM_HASH_CRC64ECMA) {
            snprintf(h->result, sizeof(h->result), "%" PRIu64, h->crc);
        } else {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int mdlen = 0;
            if (EVP_DigestFinal_ex(h->md, md, &mdlen) != 1 || mdlen > 32)
                h->result[0] = '\0';
            else
                cm_hex(md, mdlen, h->result);
        }
    }
    memcpy(out, h->result, sizeof(h->result));
}

void cm_hash_free(struct cm_hash *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->md);
    free(h);
}

void cm_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        out[0] = '\0';
        return;
    }
    cm_hex(md, mdlen, out);
}

void cm_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    unsigned char out[32])
{
    unsigned int outlen = 0;
    /* Key lengths here are a secret or a 32-byte derived key, far below INT_MAX. */
    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) || outlen != 32)
        memset(out, 0, 32);
}

int cm_hash_fd(struct cm_hash *h, int fd, uint64_t off, uint64_t len)
{
    enum { PIECE = 1 << 20 };
    char *buf = malloc(PIECE);
    int rc = 0;
    if (!buf)
        return -ENOMEM;
    while (len) {
        size_t want = len < PIECE ? (size_t)len : PIECE;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : len == UINT64_MAX ? 0 : -EIO;
            break;
        }
        cm_hash_update(h, buf, (size_t)n);
        off += (uint64_t)n;
        if (len != UINT64_MAX)
            len -= (uint64_t)n;
    }
    free(buf);
    return rc;
}
