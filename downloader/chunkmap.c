/* chunkmap.c - the on-disk record of present chunks (see chunkmap.h). */
#include "chunkmap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC "aibrix-chunks v1"

int dl_chunkmap_open(struct dl_chunkmap *m, const char *path, const char *id, uint64_t size,
                     uint64_t chunk, bool fresh, bool *reused)
{
    char hdr[600], old[600];
    int hlen = snprintf(hdr, sizeof hdr, MAGIC " size=%" PRIu64 " chunk=%" PRIu64 " id=%.500s\n",
                        size, chunk, id);
    memset(m, 0, sizeof *m);
    m->fd = -1;
    *reused = false;
    if (chunk == 0)
        return -EINVAL;
    m->size = size;
    m->chunk = chunk;
    m->nchunks = (size + chunk - 1) / chunk;
    m->hdr = (size_t)hlen;
    m->flags = malloc(m->nchunks ? m->nchunks : 1);
    if (!m->flags)
        return -ENOMEM;
    m->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (m->fd < 0) {
        int rc = -errno;
        dl_chunkmap_close(m);
        return rc;
    }
    *reused = !fresh && pread(m->fd, old, (size_t)hlen, 0) == hlen &&
              memcmp(old, hdr, (size_t)hlen) == 0 &&
              pread(m->fd, m->flags, m->nchunks, hlen) == (ssize_t)m->nchunks;
    if (*reused) {
        /* anything but '1' (a torn write, garbage) counts as absent */
        for (uint64_t i = 0; i < m->nchunks; i++)
            if (m->flags[i] != '1')
                m->flags[i] = '0';
        return 0;
    }
    memset(m->flags, '0', m->nchunks);
    if (ftruncate(m->fd, 0) != 0 || pwrite(m->fd, hdr, (size_t)hlen, 0) != hlen ||
        pwrite(m->fd, m->flags, m->nchunks, hlen) != (ssize_t)m->nchunks) {
        int rc = errno ? -errno : -EIO;
        dl_chunkmap_close(m);
        return rc;
    }
    return 0;
}

int dl_chunkmap_set(struct dl_chunkmap *m, uint64_t i)
{
    if (i >= m->nchunks)
        return -EINVAL;
    m->flags[i] = '1';
    return pwrite(m->fd, "1", 1, (off_t)(m->hdr + i)) == 1 ? 0 : -errno;
}

bool dl_chunkmap_reload(struct dl_chunkmap *m, uint64_t i)
{
    char c;
    if (i < m->nchunks && m->flags[i] != '1' && pread(m->fd, &c, 1, (off_t)(m->hdr + i)) == 1 &&
        c == '1')
        m->flags[i] = '1';
    return i < m->nchunks && m->flags[i] == '1';
}

int dl_chunkmap_reset(struct dl_chunkmap *m)
{
    memset(m->flags, '0', m->nchunks);
    return pwrite(m->fd, m->flags, m->nchunks, (off_t)m->hdr) == (ssize_t)m->nchunks ? 0 : -errno;
}

uint64_t dl_chunkmap_count(const struct dl_chunkmap *m)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < m->nchunks; i++)
        n += m->flags[i] == '1';
    return n;
}

uint64_t dl_chunkmap_len(const struct dl_chunkmap *m, uint64_t i)
{
    return (i + 1) * m->chunk <= m->size ? m->chunk : m->size - i * m->chunk;
}

void dl_chunkmap_close(struct dl_chunkmap *m)
{
    if (m->fd >= 0)
        close(m->fd);
    free(m->flags);
    m->fd = -1;
    m->flags = NULL;
}
