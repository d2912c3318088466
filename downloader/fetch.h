/* fetch.h - the fetch engine: one pool of connections shared by every file and chunk.
 *
 * N workers (DOWNLOADER_NUM_THREADS), each owning one HTTP connection, take jobs from a
 * priority queue: demand reads first, then open-prefetch, then background prefetch; FIFO
 * within a priority. A job is a byte range of one entry delivered to a sink. Jobs are owned
 * by the caller (no allocation per job here), so the queue is bounded by what callers hold.
 * The CLI and the mount share this engine; chunk de-duplication is the caller's (a chunk is
 * submitted once however many readers wait for it). */
#ifndef DL_FETCH_H
#define DL_FETCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "source.h"

enum dl_prio { DL_PRIO_DEMAND, DL_PRIO_OPEN, DL_PRIO_BACKGROUND, DL_PRIO_COUNT };

struct dl_fetch_job;
/* Called on a worker thread once the job finished; err is "" on success. The job may be
 * resubmitted or freed from here. */
typedef void (*dl_fetch_done_fn)(struct dl_fetch_job *job, enum dl_status st, const char *err);

struct dl_fetch_job {
    struct dl_source *src;
    const struct dl_entry *entry;
    uint64_t off, len;
    dl_http_sink_fn sink;
    void *sink_ctx;
    dl_fetch_done_fn done;
    void *user;
    enum dl_prio prio;
    struct dl_fetch_job *next; /* private: queue link */
    bool queued;               /* private */
};

struct dl_fetch;

/* Start nthreads workers on http. NULL on failure. */
struct dl_fetch *dl_fetch_new(struct dl_http *http, unsigned nthreads);
/* Queue a job; it must stay valid until its done callback runs. */
void dl_fetch_submit(struct dl_fetch *f, struct dl_fetch_job *job);
/* Move a still-queued job to a higher priority (a reader now waits for it). Returns true
 * when the job was still queued. */
bool dl_fetch_promote(struct dl_fetch *f, struct dl_fetch_job *job, enum dl_prio prio);
/* Take a job back out of the queue. Returns true when it was still queued (its done callback
 * will not run: the caller owns it again), false when a worker already has it. */
bool dl_fetch_unqueue(struct dl_fetch *f, struct dl_fetch_job *job);
/* Ask every running transfer to stop; queued jobs complete with DL_ERR_CANCELLED. */
void dl_fetch_cancel(struct dl_fetch *f);
/* Cancel, join the workers and free. */
void dl_fetch_free(struct dl_fetch *f);
unsigned dl_fetch_threads(const struct dl_fetch *f);

#endif
