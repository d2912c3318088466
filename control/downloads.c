/* downloads.c - downloads into a directory, for POST /v1/model/download (in the background)
 * and for LoRA adapters when there is no --mount-point (in the request).
 *
 * Each job lists its source first, in the request, so "not found" and "access denied" are
 * answered at once; the transfer itself is dl_download on a fetch pool of the job's own
 * (DOWNLOADER_NUM_THREADS connections). Finished background jobs stay in c->jobs with their
 * outcome for GET /v1/model/list until the next download into the same directory replaces
 * them. At stop, running transfers are cancelled and their threads joined. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/env.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "control_private.h"

/* Release what a job holds while it runs (not the job itself). */
static void job_release(struct ctl_state *c, struct ctl_job *job)
{
    pthread_mutex_lock(&c->lock);
    struct dl_fetch *f = job->fetch;
    job->fetch = NULL; /* from now on ctl_jobs_cancel leaves it alone */
    pthread_mutex_unlock(&c->lock);
    dl_fetch_free(f);
    dl_listing_free(&job->listing);
    dl_source_close(job->src);
    job->src = NULL;
    dl_http_free(job->http);
    job->http = NULL;
}

static void job_unlink(struct ctl_state *c, struct ctl_job *job)
{
    for (struct ctl_job **p = &c->jobs; *p; p = &(*p)->next) {
        if (*p == job) {
            *p = job->next;
            return;
        }
    }
}

static void filter_listing(struct dl_listing *l, const struct cm_strlist *suffixes)
{
    struct cm_strlist env = {0};
    if (!suffixes) {
        const char *s = cm_env_str("DOWNLOADER_ALLOW_FILE_SUFFIX");
        if (s)
            cm_strlist_split(&env, s);
        suffixes = &env;
    }
    for (size_t i = 0; i < l->n;) {
        if (cm_suffix_match(suffixes, l->entries[i].path))
            i++;
        else
            dl_listing_remove(l, i);
    }
    cm_strlist_free(&env);
}

static bool listing_has(const struct dl_listing *l, const char *path)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->entries[i].path, path) == 0)
            return true;
    return false;
}

/* Open the source of uri with creds and list it into l, keeping what suffixes allow and
 * checking that required_file is there. Returns 0 (src and http set, owned by the caller) or
 * an API status with msg set (nothing left open). */
static int open_and_list(const struct ctl_job_req *rq, struct dl_http **http,
                         struct dl_source **src, struct dl_listing *l, char *msg, size_t msglen)
{
    char err[1024] = "";
    struct dl_source_config cfg = {0};
    int status = 0;
    if (rq->creds)
        ctl_creds_apply(rq->creds, &cfg);
    cfg.uri = rq->uri;
    *http = dl_http_new();
    *src = *http ? dl_source_open(&cfg, *http, err, sizeof err) : NULL;
    if (!*src) {
        snprintf(msg, msglen, "%s", *http ? err : "cannot start the HTTP client");
        status = *http ? 400 : 500;
    } else {
        struct dl_http_conn *conn = dl_http_conn_new(*http);
        enum dl_status st = conn ? (*src)->ops->list(*src, conn, l, err, sizeof err) : DL_ERR_LOCAL;
        dl_http_conn_free(conn);
        if (st != DL_OK) {
            snprintf(msg, msglen, "cannot list %s: %s", rq->uri_text, err);
            status = ctl_http_status(st);
        }
    }
    if (status == 0) {
        filter_listing(l, rq->suffixes);
        if (rq->required_file && !listing_has(l, rq->required_file)) {
            snprintf(msg, msglen, "%s not found in %s", rq->required_file, rq->uri_text);
            status = 404;
        }
    }
    if (status != 0) {
        dl_listing_free(l);
        dl_source_close(*src);
        dl_http_free(*http);
        *src = NULL;
        *http = NULL;
    }
    return status;
}

int ctl_source_check(const struct ctl_job_req *rq, char *msg, size_t msglen)
{
    struct dl_http *http;
    struct dl_source *src;
    struct dl_listing l = {0};
    int status = open_and_list(rq, &http, &src, &l, msg, msglen);
    if (status == 0) {
        dl_listing_free(&l);
        dl_source_close(src);
        dl_http_free(http);
    }
    return status;
}

int ctl_job_prepare(struct ctl_state *c, const struct ctl_job_req *rq, struct ctl_job **out,
                    char *msg, size_t msglen)
{
    *out = NULL;
    uint64_t threads = rq->threads ? rq->threads : cm_env_u64("DOWNLOADER_NUM_THREADS", 16);
    uint64_t chunk =
        rq->chunk_size ? rq->chunk_size : cm_env_size("DOWNLOADER_PART_CHUNKSIZE", 8u << 20);
    if (threads == 0 || threads > 1024 || chunk < 64 * 1024) {
        snprintf(msg, msglen, "num_threads must be 1-1024 and part_chunksize at least 64 KiB");
        return 422;
    }
    struct ctl_job *job = calloc(1, sizeof *job);
    if (!job) {
        snprintf(msg, msglen, "out of memory");
        return 500;
    }
    snprintf(job->model_name, sizeof job->model_name, "%s", rq->model_name);
    snprintf(job->root, sizeof job->root, "%s", rq->root);
    snprintf(job->uri, sizeof job->uri, "%s", rq->uri_text);
    job->source = cm_uri_source_name(rq->uri->kind);
    job->opts = (struct dl_download_opts){.chunk_size = chunk, .force = rq->force};
    job->owner = c;
    int status = open_and_list(rq, &job->http, &job->src, &job->listing, msg, msglen);
    if (status != 0)
        goto fail;
    job->fetch = dl_fetch_new(job->http, (unsigned)threads);
    if (!job->fetch) {
        snprintf(msg, msglen, "cannot start the fetch pool");
        status = 500;
        goto fail;
    }
    pthread_mutex_lock(&c->lock);
    bool stopping = atomic_load(&c->stopping);
    if (!stopping) {
        job->next = c->jobs;
        c->jobs = job;
    }
    pthread_mutex_unlock(&c->lock);
    if (stopping) {
        snprintf(msg, msglen, "the runtime is shutting down");
        status = 503;
        goto fail;
    }
    *out = job;
    return 0;
fail:
    job_release(c, job);
    free(job);
    return status;
}

/* The transfer. Returns DL_OK or the failure, with job->error set. */
static enum dl_status job_transfer(struct ctl_job *job)
{
    int rc = cm_mkdirs(job->root, 0755);
    if (rc != 0) {
        snprintf(job->error, sizeof job->error, "cannot create %s: %s", job->root, strerror(-rc));
        return DL_ERR_LOCAL;
    }
    cm_info("control", "downloading %s: %zu files to %s", job->uri, job->listing.n, job->root);
    enum dl_status st = dl_download(job->src, job->fetch, &job->listing, job->root, &job->opts,
                                    &job->progress, job->error, sizeof job->error);
    if (st == DL_OK)
        cm_info("control", "downloaded %s to %s", job->uri, job->root);
    else
        cm_error("control", "download of %s to %s failed: %s", job->uri, job->root, job->error);
    return st;
}

int ctl_job_run(struct ctl_state *c, struct ctl_job *job, char *msg, size_t msglen)
{
    enum dl_status st = job_transfer(job);
    job_release(c, job);
    pthread_mutex_lock(&c->lock);
    job_unlink(c, job);
    pthread_mutex_unlock(&c->lock);
    int status = 0;
    if (st != DL_OK) {
        snprintf(msg, msglen, "downloading %s failed: %s", job->uri, job->error);
        status = ctl_http_status(st);
        ctl_remove_tree(job->root);
    }
    free(job);
    return status;
}

static void *job_thread(void *arg)
{
    struct ctl_job *job = arg;
    struct ctl_state *c = job->owner;
    enum dl_status st = job_transfer(job);
    job_release(c, job);
    pthread_mutex_lock(&c->lock);
    job->state = st == DL_OK ? CTL_JOB_DONE : CTL_JOB_FAILED;
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int ctl_job_start(struct ctl_state *c, struct ctl_job *job, char *msg, size_t msglen)
{
    job->background = true;
    int rc = pthread_create(&job->thread, NULL, job_thread, job);
    if (rc == 0)
        return 0;
    job->background = false;
    snprintf(msg, msglen, "cannot start a download thread: %s", strerror(rc));
    job_release(c, job);
    pthread_mutex_lock(&c->lock);
    job_unlink(c, job);
    pthread_mutex_unlock(&c->lock);
    free(job);
    return 500;
}

struct ctl_job *ctl_job_find(struct ctl_state *c, const char *root)
{
    for (struct ctl_job *j = c->jobs; j; j = j->next)
        if (strcmp(j->root, root) == 0)
            return j;
    return NULL;
}

void ctl_job_drop(struct ctl_state *c, struct ctl_job *job)
{
    pthread_mutex_lock(&c->lock);
    job_unlink(c, job);
    pthread_mutex_unlock(&c->lock);
    if (job->background)
        pthread_join(job->thread, NULL);
    free(job);
}

void ctl_jobs_cancel(struct ctl_state *c)
{
    pthread_mutex_lock(&c->lock);
    for (struct ctl_job *j = c->jobs; j; j = j->next)
        if (j->fetch)
            dl_fetch_cancel(j->fetch);
    pthread_mutex_unlock(&c->lock);
}

void ctl_jobs_free(struct ctl_state *c)
{
    pthread_mutex_lock(&c->lock);
    struct ctl_job *jobs = c->jobs;
    c->jobs = NULL;
    pthread_mutex_unlock(&c->lock);
    for (struct ctl_job *j = jobs, *next; j; j = next) {
        next = j->next;
        if (j->background)
            pthread_join(j->thread, NULL);
        free(j);
    }
}
