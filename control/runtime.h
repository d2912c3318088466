/* runtime.h - the aibrix_runtime process: its configuration and the state its routes share.
 *
 * rt_start brings up the HTTP listener, the FUSE filesystem and the start mounts; rt_stop
 * takes them down in the opposite order. Route handlers reach the runtime through the
 * server's context pointer. */
#ifndef CTL_RUNTIME_H
#define CTL_RUNTIME_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../fs/fs.h"
#include "server.h"

#define RT_MAX_MODELS 64

struct rt_config {
    const char *host;
    unsigned port;
    const char *mount_point; /* NULL: no FUSE mount */
    char cache_dir[4096];
    uint64_t cache_max_bytes;
    const char *api_key_file;
    struct fs_mount_spec *models; /* owned */
    size_t nmodels;
};

/* Parse "NAME=URI[,opt=val...]" into cfg->models; prints the reason and returns -EINVAL when
 * it is not valid. */
int rt_config_add_model(struct rt_config *cfg, const char *text);
void rt_config_free(struct rt_config *cfg);

/* A mount made at start: /ready waits for it. */
struct rt_start_mount {
    char name[129];
    bool done; /* listing finished, successfully or not */
    bool failed;
    char error[512];
    enum fs_prefetch prefetch;
};

struct runtime {
    const struct rt_config *cfg;
    struct fs *fs; /* NULL without --mount-point */
    struct ctl_server *http;
    pthread_mutex_t lock;
    struct rt_start_mount *start; /* one per cfg->models */
    pthread_t starter;
    bool starter_running;
    struct rt_metrics *metrics; /* routes_metrics.c */
    struct ctl_state *control;  /* control.h: engine client, LoRA registry, downloads */
};

/* Start everything. NULL with err set on failure (nothing left running). */
struct runtime *rt_start(const struct rt_config *cfg, char *err, size_t errlen);
void rt_stop(struct runtime *rt);

/* Route handlers (routes_*.c). */
void rt_route_healthz(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void rt_route_ready(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void rt_route_metrics(void *ctx, const struct ctl_request *req, struct ctl_response *resp);

/* The metrics exporter's state (routes_metrics.c). rt_metrics_start registers the runtime's own
 * metrics, sets up the engine scrape from the environment and hooks the server's request
 * observer; call it before the HTTP server starts. Returns 0 or a negative errno with err set.
 * rt_metrics_attach_fs makes the filesystem's counters visible once it serves;
 * rt_metrics_on_read is the fs_config.on_read hook; rt_metrics_stop runs after the HTTP server
 * has stopped. */
int rt_metrics_start(struct runtime *rt, char *err, size_t errlen);
void rt_metrics_attach_fs(struct runtime *rt, struct fs *fs);
void rt_metrics_on_read(void *ctx, double seconds);
void rt_metrics_stop(struct runtime *rt);

#endif
