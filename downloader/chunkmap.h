/* chunkmap.h - which chunks of a sparse data file hold their bytes, on disk.
 *
 * A chunk map is a small file: one header line naming what the data file holds
 * ("aibrix-chunks v1 size=N chunk=C id=ID"), then one byte per chunk, '0' or '1'. A chunk is
 * marked only after its bytes were written to the data file, so after a crash at any moment
 * a marked chunk is never garbage; at worst a written chunk is fetched again. The downloader
 * (resume) and the mount's block cache (persistence) share it. Not thread-safe by itself:
 * callers serialize set/reset per map; concurrent set of different chunks is fine (distinct
 * bytes, one pwrite each). */
#ifndef DL_CHUNKMAP_H
#define DL_CHUNKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dl_chunkmap {
    int fd;
    size_t hdr;     /* header length: flag i is at byte hdr + i */
    uint64_t size;  /* bytes of the object */
    uint64_t chunk; /* bytes per chunk */
    uint64_t nchunks;
    char *flags; /* in-memory copy, '0' / '1' per chunk (owned) */
};

/* Open path, or create it. When the file describes another object (size, chunk size or id
 * differ) or fresh is true, every flag starts at '0' and *reused is false (the caller must
 * then discard the data file). Returns 0 or a negative errno. */
int dl_chunkmap_open(struct dl_chunkmap *m, const char *path, const char *id, uint64_t size,
                     uint64_t chunk, bool fresh, bool *reused);
/* Mark chunk i present on disk. Returns 0 or a negative errno. */
int dl_chunkmap_set(struct dl_chunkmap *m, uint64_t i);
/* Re-read chunk i's flag from disk (another process sharing the file may have set it). */
bool dl_chunkmap_reload(struct dl_chunkmap *m, uint64_t i);
/* Mark every chunk absent. Returns 0 or a negative errno. */
int dl_chunkmap_reset(struct dl_chunkmap *m);
uint64_t dl_chunkmap_count(const struct dl_chunkmap *m);
/* Length of chunk i (the last one may be short). */
uint64_t dl_chunkmap_len(const struct dl_chunkmap *m, uint64_t i);
void dl_chunkmap_close(struct dl_chunkmap *m);

#endif
