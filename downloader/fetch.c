/* fetch.c - the worker pool and its priority queue (see fetch.h). */
#include "fetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/log.h"

struct queue {
    struct dl_fetch_job *head, *tail;
};

struct dl_fetch {
    struct dl_http *http;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct queue q[DL_PRIO_COUNT];
    atomic_bool cancel;
    bool stopping;
    unsigned nthreads;
    pthread_t *threads;
};

static void push(struct queue *q, struct dl_fetch_job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static bool unlink_job(struct queue *q, struct dl_fetch_job *j)
{
    struct dl_fetch_job *prev = NULL;
    for (struct dl_fetch_job *p = q->head; p; prev = p, p = p->next) {
        if (p != j)
            continue;
        if (prev)
            prev->next = p->next;
        else
            q->head = p->next;
        if (q->tail == p)
            q->tail = prev;
        p->next = NULL;
        return true;
    }
    return false;
}

/* Highest-priority job, or NULL. Caller holds the lock. */
static struct dl_fetch_job *pop(struct dl_fetch *f)
{
    for (int p = 0; p < DL_PRIO_COUNT; p++) {
        struct dl_fetch_job *j = f->q[p].head;
        if (j) {
            unlink_job(&f->q[p], j);
            j->queued = false;
            return j;
        }
    }
    return NULL;
}

struct worker_ctx {
    struct dl_fetch *f;
};

static void *worker(void *arg)
{
    struct dl_fetch *f = arg;
    struct dl_http_conn *conn = dl_http_conn_new(f->http);
    char err[1024];

    for (;;) {
        pthread_mutex_lock(&f->lock);
        struct dl_fetch_job *j;
        while (!(j = pop(f)) && !f->stopping)
            pthread_cond_wait(&f->ready, &f->lock);
        pthread_mutex_unlock(&f->lock);
        if (!j)
            break;
        enum dl_status st;
        err[0] = '\0';
        if (atomic_load(&f->cancel)) {
            st = DL_ERR_CANCELLED;
            snprintf(err, sizeof err, "cancelled");
        } else if (!conn) {
            st = DL_ERR_LOCAL;
            snprintf(err, sizeof err, "cannot create an HTTP connection");
        } else {
            st = j->src->ops->read(j->src, conn, j->entry, j->off, j->len, j->sink, j->sink_ctx,
                                   err, sizeof err);
        }
        j->done(j, st, st == DL_OK ? "" : err);
    }
    dl_http_conn_free(conn);
    return NULL;
}

struct dl_fetch *dl_fetch_new(struct dl_http *http, unsigned nthreads)
{
    struct dl_fetch *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (nthreads == 0)
        nthreads = 1;
    f->http = http;
    f->threads = calloc(nthreads, sizeof *f->threads);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->ready, NULL);
    for (unsigned i = 0; f->threads && i < nthreads; i++) {
        if (pthread_create(&f->threads[i], NULL, worker, f) != 0)
            break;
        f->nthreads++;
    }
    if (f->nthreads == 0) {
        cm_error("fetch", "cannot start fetch workers");
        dl_fetch_free(f);
        return NULL;
    }
    return f;
}

void dl_fetch_submit(struct dl_fetch *f, struct dl_fetch_job *job)
{
    pthread_mutex_lock(&f->lock);
    job->queued = true;
    push(&f->q[job->prio], job);
    pthread_cond_signal(&f->ready);
    pthread_mutex_unlock(&f->lock);
}

bool dl_fetch_promote(struct dl_fetch *f, struct dl_fetch_job *job, enum dl_prio prio)
{
    bool moved = false;
    pthread_mutex_lock(&f->lock);
    if (job->queued && prio < job->prio && unlink_job(&f->q[job->prio], job)) {
        job->prio = prio;
        push(&f->q[prio], job);
        moved = true;
    }
    pthread_mutex_unlock(&f->lock);
    return moved;
}

bool dl_fetch_unqueue(struct dl_fetch *f, struct dl_fetch_job *job)
{
    bool taken = false;
    pthread_mutex_lock(&f->lock);
    if (job->queued && unlink_job(&f->q[job->prio], job)) {
        job->queued = false;
        taken = true;
    }
    pthread_mutex_unlock(&f->lock);
    return taken;
}

void dl_fetch_cancel(struct dl_fetch *f)
{
    atomic_store(&f->cancel, true);
}

void dl_fetch_free(struct dl_fetch *f)
{
    if (!f)
        return;
    dl_fetch_cancel(f);
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_broadcast(&f->ready);
    pthread_mutex_unlock(&f->lock);
    for (unsigned i = 0; i < f->nthreads; i++)
        pthread_join(f->threads[i], NULL);
    free(f->threads);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->ready);
    free(f);
}

unsigned dl_fetch_threads(const struct dl_fetch *f)
{
    return f->nthreads;
}
