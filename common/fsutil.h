/* fsutil.h - small filesystem helpers shared by the downloader and the block cache. */
#ifndef CM_FSUTIL_H
#define CM_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* mkdir -p: create dir and its missing parents with mode. Returns 0 or a negative errno. */
int cm_mkdirs(const char *dir, mode_t mode);
/* Create the parent directories of path. Returns 0 or a negative errno. */
int cm_mkdirs_parent(const char *path, mode_t mode);
/* Write data to path atomically (temp file in the same directory, fsync, rename).
 * Returns 0 or a negative errno. */
int cm_write_file_atomic(const char *path, const void *data, size_t len);
/* Read at most max bytes of path into buf (which holds max + 1) and NUL-terminate. Returns bytes
 * read or a negative errno. */
ssize_t cm_read_file(const char *path, char *buf, size_t max);
/* pwrite all of data at off, retrying short writes and EINTR. Returns 0 or a negative errno. */
int cm_pwrite_all(int fd, const void *data, size_t len, uint64_t off);
/* Human-readable byte count ("1.5 GiB") into out. */
void cm_format_bytes(double bytes, char *out, size_t outlen);

#endif
