/* control_private.h - what the files of the control plane share (not part of its API).
 *
 * Locking: c->lock guards the LoRA registry and the download jobs. A LoRA name is held by at
 * most one load or unload at a time (ctl_lora.busy); others wait on c->changed, which is also
 * broadcast at stop. Nothing slow (network, engine, FUSE) runs under c->lock. */
#ifndef CTL_CONTROL_PRIVATE_H
#define CTL_CONTROL_PRIVATE_H

#include <cjson/cJSON.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/names.h"
#include "../common/uri.h"
#include "../downloader/download.h"
#include "control.h"
#include "engine.h"

/* One LoRA adapter name the runtime knows: loading, or loaded in the engine. */
struct ctl_lora {
    char name[129];
    char source[CM_URI_MAX];   /* what the caller asked for (URI or path) */
    char path[PATH_MAX];       /* what the engine was given */
    char mount[129];           /* the named mount the engine reads from, "" for none */
    bool owns_mount;           /* the load created that mount: unload removes it */
    char local_dir[PATH_MAX];  /* without --mount-point: the downloaded directory */
    char engine_message[1024]; /* the engine's answer to the load */
    bool loaded;
    bool busy; /* a load or unload holds the name */
    struct ctl_lora *next;
};

enum ctl_job_state { CTL_JOB_RUNNING, CTL_JOB_DONE, CTL_JOB_FAILED };

/* A download of a listing into a directory: POST /v1/model/download (background), and LoRA
 * adapters without --mount-point (in the request). */
struct ctl_job {
    char model_name[512];
    char root[PATH_MAX]; /* where the files land */
    char uri[CM_URI_MAX];
    const char *source; /* "huggingface", "s3", "tos", "local" */
    enum ctl_job_state state;
    char error[1024];
    bool background;
    pthread_t thread;
    struct ctl_state *owner;
    /* owned while running; released when the job ends */
    struct dl_http *http;
    struct dl_source *src;
    struct dl_fetch *fetch;
    struct dl_listing listing;
    struct dl_download_opts opts;
    struct dl_progress progress;
    struct ctl_job *next;
};

struct ctl_state {
    char mount_point[PATH_MAX]; /* absolute; "" without --mount-point */
    struct fs *_Atomic fs;      /* NULL until the mount serves (ctl_state_fs) */
    struct ctl_engine engine;
    char adapter_dir[PATH_MAX]; /* AIBRIX_ADAPTER_DIR, default /tmp/aibrix/adapters */
    char secrets_dir[PATH_MAX]; /* AIBRIX_SECRETS_DIR, default /var/run/secrets/aibrix */
    uint64_t fetch_timeout_s;   /* AIBRIX_LORA_FETCH_TIMEOUT, default 600 */
    atomic_bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    pthread_mutex_t download_lock; /* serializes POST /v1/model/download: one job per root */
    struct ctl_lora *loras;
    struct ctl_job *jobs;
};

/* The state of a route's context (the struct runtime). */
struct ctl_state *ctl_state_of(void *ctx);

/* ---- credentials (control.c) ------------------------------------------------------------ */

/* Explicit credentials for a source, from an API body and/or a mounted secret. Strings are
 * owned. Accepted names (any case), in a body's "credentials" object or as file names in
 * <secrets-dir>/<secret>/:
 *   ak             AWS_ACCESS_KEY_ID, TOS_ACCESS_KEY, access_key_id, access_key, ak
 *   sk             AWS_SECRET_ACCESS_KEY, TOS_SECRET_KEY, secret_access_key, secret_key, sk
 *   session_token  AWS_SESSION_TOKEN, TOS_SECURITY_TOKEN, session_token, security_token
 *   endpoint       AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, TOS_ENDPOINT, endpoint_url, endpoint
 *   region         AWS_REGION, AWS_DEFAULT_REGION, TOS_REGION, region
 *   hf_token       HF_TOKEN, HUGGING_FACE_HUB_TOKEN, hf_token, token
 *   hf_endpoint    HF_ENDPOINT, hf_endpoint
 *   hf_revision    HF_REVISION, hf_revision, revision
 * Secret values are registered with the log's redaction ring as they are read. */
struct ctl_creds {
    char *ak, *sk, *session_token, *endpoint, *region, *hf_token, *hf_endpoint, *hf_revision;
};

/* Set one credential by any of its accepted names. Returns 0, -ENOENT for an unknown name,
 * -ENOMEM. */
int ctl_creds_set(struct ctl_creds *cr, const char *name, const char *value);
/* Take every member of obj (a body's credentials object); a later call overrides earlier
 * values. Returns 0, or 422 with msg naming an unknown or non-string member. */
int ctl_creds_from_json(struct ctl_creds *cr, const cJSON *obj, const char *where, char *msg,
                        size_t msglen);
/* Read the files of <dir>/<secret>/ (unknown and dot files are ignored). Returns 0, 400 for
 * a secret name that is not a plain name, 404 when the directory does not exist. */
int ctl_creds_from_secret(struct ctl_creds *cr, const char *dir, const char *secret, char *msg,
                          size_t msglen);
/* Point cfg's explicit fields at cr's strings (borrowed: cr must outlive the use of cfg). */
void ctl_creds_apply(const struct ctl_creds *cr, struct dl_source_config *cfg);
void ctl_creds_free(struct ctl_creds *cr);

/* ---- shared helpers (control.c) --------------------------------------------------------- */

/* The API status of a downloader outcome (404 not found, 403 access, 502 transient, ...). */
int ctl_http_status(enum dl_status st);
/* rm -rf path (never follows symlinks). Returns 0 or a negative errno. */
int ctl_remove_tree(const char *path);
/* "hf://", "s3://", ...: true when s names a remote (or file://) model rather than a path. A
 * bare org/name counts when it is not an existing local path (SPEC §2). On true, uri is
 * parsed; on a URI that does not parse, returns true with *bad set and msg filled. */
bool ctl_is_model_uri(const char *s, struct cm_uri *uri, bool *bad, char *msg, size_t msglen);

/* ---- downloads (downloads.c) ------------------------------------------------------------ */

struct ctl_job_req {
    const char *uri_text;
    const struct cm_uri *uri;
    const char *model_name;
    const char *root;                  /* destination directory */
    const struct ctl_creds *creds;     /* may be NULL */
    const struct cm_strlist *suffixes; /* may be NULL: DOWNLOADER_ALLOW_FILE_SUFFIX applies */
    uint64_t threads, chunk_size;      /* 0: from the environment */
    bool force;
    const char *required_file; /* NULL, or a file the listing must hold (404 if not) */
};

/* List rq's source and check rq->required_file, without downloading. Returns 0 or an API
 * status with msg set. */
int ctl_source_check(const struct ctl_job_req *rq, char *msg, size_t msglen);
/* Open the source and list it (one round trip, so "not found" is answered at once). Returns
 * 0 with *out (registered in c->jobs, state RUNNING), or an API status with msg set. */
int ctl_job_prepare(struct ctl_state *c, const struct ctl_job_req *rq, struct ctl_job **out,
                    char *msg, size_t msglen);
/* Download now, in this thread; the job is unregistered and freed. Returns 0 or an API status
 * with msg set (the partial directory is removed). */
int ctl_job_run(struct ctl_state *c, struct ctl_job *job, char *msg, size_t msglen);
/* Download on a thread of its own; the job stays listed with its outcome. Returns 0 or 500. */
int ctl_job_start(struct ctl_state *c, struct ctl_job *job, char *msg, size_t msglen);
/* The job downloading (or that downloaded) into root, or NULL. Caller holds c->lock. */
struct ctl_job *ctl_job_find(struct ctl_state *c, const char *root);
/* Unlink a finished job, join its thread and free it. Caller holds nothing. */
void ctl_job_drop(struct ctl_state *c, struct ctl_job *job);
/* Cancel running jobs (at stop). Caller holds nothing. */
void ctl_jobs_cancel(struct ctl_state *c);
/* Join and free every job. */
void ctl_jobs_free(struct ctl_state *c);

/* ---- LoRA registry (routes_lora.c) ------------------------------------------------------ */

/* True when a LoRA adapter is loaded (or being loaded) from the named mount. Caller holds
 * c->lock. */
bool ctl_lora_uses_mount(const struct ctl_state *c, const char *mount);
/* True when the mount name is claimed by the LoRA side: an adapter is loaded from it, or a
 * load or unload of an adapter by that name is in progress (it may be mounting it). Caller
 * holds c->lock. */
bool ctl_lora_claims(const struct ctl_state *c, const char *name);

#endif
