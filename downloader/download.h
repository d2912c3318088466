/* download.h - download a whole listing into a directory: parallel, resumable, verified.
 *
 * This is the engine behind aibrix_download, the API's /v1/model/download and the LoRA flow
 * without a mount. For every entry it:
 *   - skips the file when <dir>/<rel> has the listed size and
 *     <dir>/.cache/<source>/download/<rel>.metadata holds its ETag (AIBrix's layout);
 *   - otherwise fetches the missing chunks into <dir>/.cache/<source>/download/<rel>.part,
 *     recording finished chunks in <rel>.chunks so an interrupted run resumes;
 *   - verifies the whole file against the published digest (a mismatch refetches once, a
 *     second mismatch is DL_ERR_INTEGRITY and leaves no file in place);
 *   - renames it into place and writes the metadata.
 * All chunks of all files share one dl_fetch pool. */
#ifndef DL_DOWNLOAD_H
#define DL_DOWNLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fetch.h"
#include "listing.h"
#include "source.h"

struct dl_progress {
    atomic_uint_fast64_t bytes_total;  /* bytes the run has to fetch (skipped files excluded) */
    atomic_uint_fast64_t bytes_done;   /* bytes fetched and written so far */
    atomic_uint_fast64_t files_total;
    atomic_uint_fast64_t files_done;   /* finished, including skipped */
    atomic_uint_fast64_t files_skipped;
};

struct dl_download_opts {
    uint64_t chunk_size;  /* bytes per ranged request */
    bool force;           /* ignore what is already there */
    bool progress_bar;    /* redraw a bar on stderr */
};

/* Download every entry of l from src into dir using f. Returns DL_OK, or the status of the
 * first file that failed (the others are still completed); err names that file and cause.
 * progress may be NULL. */
enum dl_status dl_download(struct dl_source *src, struct dl_fetch *f, const struct dl_listing *l,
                           const char *dir, const struct dl_download_opts *opts,
                           struct dl_progress *progress, char *err, size_t errlen);

/* Verify a complete local file against e's digest. DL_OK when it matches or e publishes
 * none; DL_ERR_INTEGRITY with err describing both digests otherwise. */
enum dl_status dl_verify_file(int fd, const struct dl_entry *e, char *err, size_t errlen);
/* Compare a finished digest (hex, or decimal for CRC64) with e's. DL_OK when they match;
 * DL_ERR_INTEGRITY with err naming the file and both digests otherwise. */
enum dl_status dl_digest_check(const struct dl_entry *e, const char *got, char *err,
                               size_t errlen);

#endif
