/* hash.h - the digests the sources publish, behind one streaming interface.
 *
 * SHA-256 (HF LFS files), git blob SHA-1 (HF small files: sha1("blob <size>\0" + bytes)),
 * MD5 (S3 single-part ETag) come from OpenSSL's EVP. CRC-64/ECMA-182 as TOS computes it
 * (reflected, poly 0xC96C5795D7870F42, init and xorout all ones; TOS prints it as an unsigned
 * decimal string) has no OpenSSL implementation and is a small table here. */
#ifndef CM_HASH_H
#define CM_HASH_H

#include <stddef.h>
#include <stdint.h>

enum cm_hash_kind {
    CM_HASH_NONE,
    CM_HASH_SHA256,
    CM_HASH_GIT_SHA1, /* sha1 over "blob <size>\0" then the bytes */
    CM_HASH_MD5,
    CM_HASH_CRC64ECMA,
};

struct cm_hash;

/* Start a digest. total_size is needed by CM_HASH_GIT_SHA1 (ignored by the others).
 * Returns NULL on allocation failure or CM_HASH_NONE. Free with cm_hash_free. */
struct cm_hash *cm_hash_new(enum cm_hash_kind kind, uint64_t total_size);
void cm_hash_update(struct cm_hash *h, const void *data, size_t len);
/* Write the result as lowercase hex (decimal for CRC64ECMA) into out; out needs 65 bytes.
 * The hash may not be updated afterwards. */
void cm_hash_final(struct cm_hash *h, char out[65]);
void cm_hash_free(struct cm_hash *h);

/* Feed bytes [off, off+len) of the file fd to h, or up to the end of the file when len is
 * UINT64_MAX. Returns 0; -EIO when the file ends first; -ENOMEM; or a read's negative errno. */
int cm_hash_fd(struct cm_hash *h, int fd, uint64_t off, uint64_t len);

/* CRC-64/ECMA of a buffer, continuing from crc (start with 0). */
uint64_t cm_crc64ecma(uint64_t crc, const void *data, size_t len);

/* One-shot helpers: hex digest of a buffer (out needs 65 bytes). */
void cm_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA256 of msg under key; out gets 32 raw bytes. */
void cm_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    unsigned char out[32]);
/* Raw bytes to lowercase hex; out needs 2*len+1 bytes. */
void cm_hex(const unsigned char *in, size_t len, char *out);

/* FNV-1a (64-bit) of a buffer, continuing from h (start with CM_FNV1A_INIT): for hash tables
 * in memory, never for integrity. Inline, so parsers built without this library (the fuzz
 * harnesses) can use it. */
#define CM_FNV1A_INIT 1469598103934665603ull
static inline uint64_t cm_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

#endif
