/* runtime.c - bringing the process up and down, and the start mounts (see runtime.h). */
#include "runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/env.h"
#include "../common/log.h"
#include "auth.h"
#include "control.h"

/* blocking: the handler may wait on the engine, a fetch, a listing or the disk */
static const struct ctl_route routes[] = {
    {"GET", "/healthz", rt_route_healthz, false},
    {"GET", "/ready", rt_route_ready, false},
    {"GET", "/readyz", rt_route_ready, false},
    {"GET", "/metrics", rt_route_metrics, true},
    {"GET", "/metrics/", rt_route_metrics, true},
    {"GET", "/v1/models", ctl_route_models, true},
    {"POST", "/v1/lora_adapter/load", ctl_route_lora_load, true},
    {"POST", "/v1/lora_adapter/unload", ctl_route_lora_unload, true},
    {"POST", "/v1/model/mount", ctl_route_model_mount, true},
    {"POST", "/v1/model/unmount", ctl_route_model_unmount, true},
    {"GET", "/v1/model/mounts", ctl_route_model_mounts, false},
    {"POST", "/v1/model/download", ctl_route_model_download, true},
    {"GET", "/v1/model/list", ctl_route_model_list, false},
};

int rt_config_add_model(struct rt_config *cfg, const char *text)
{
    char err[512];
    if (cfg->nmodels == RT_MAX_MODELS) {
        fprintf(stderr, "aibrix_runtime: at most %d models at start\n", RT_MAX_MODELS);
        return -EINVAL;
    }
    struct fs_mount_spec *grown = realloc(cfg->models, (cfg->nmodels + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    cfg->models = grown;
    if (fs_parse_mount_spec(text, &cfg->models[cfg->nmodels], err, sizeof err) != 0) {
        fprintf(stderr, "aibrix_runtime: --model %s: %s\n", text, err);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->nmodels; i++) {
        if (strcmp(cfg->models[i].name, cfg->models[cfg->nmodels].name) == 0) {
            fprintf(stderr, "aibrix_runtime: model name '%s' given twice\n", cfg->models[i].name);
            cm_filter_free(&cfg->models[cfg->nmodels].filter);
            return -EINVAL;
        }
    }
    cfg->nmodels++;
    return 0;
}

void rt_config_free(struct rt_config *cfg)
{
    for (size_t i = 0; i < cfg->nmodels; i++)
        cm_filter_free(&cfg->models[i].filter);
    free(cfg->models);
    cfg->models = NULL;
    cfg->nmodels = 0;
}

/* Lists the start mounts one after the other, off the main thread. */
static void *start_mounts(void *arg)
{
    struct runtime *rt = arg;
    for (size_t i = 0; i < rt->cfg->nmodels; i++) {
        char err[512] = "";
        struct fs_mount_spec spec = rt->cfg->models[i];
        /* the filter moves into the mount: give it a copy of the lists */
        memset(&spec.filter, 0, sizeof spec.filter);
        const struct cm_filter *f = &rt->cfg->models[i].filter;
        for (size_t k = 0; k < f->suffixes.n; k++)
            cm_strlist_add(&spec.filter.suffixes, f->suffixes.items[k]);
        for (size_t k = 0; k < f->allow.n; k++)
            cm_strlist_add(&spec.filter.allow, f->allow.items[k]);
        for (size_t k = 0; k < f->ignore.n; k++)
            cm_strlist_add(&spec.filter.ignore, f->ignore.items[k]);
        enum dl_status st = fs_mount_add(rt->fs, &spec, err, sizeof err);
        cm_filter_free(&spec.filter);
        pthread_mutex_lock(&rt->lock);
        rt->start[i].done = true;
        rt->start[i].failed = st != DL_OK;
        snprintf(rt->start[i].error, sizeof rt->start[i].error, "%s", err);
        pthread_mutex_unlock(&rt->lock);
        if (st != DL_OK)
            cm_error("runtime", "cannot mount %s from %s: %s", spec.name, spec.uri, err);
    }
    return NULL;
}

struct runtime *rt_start(const struct rt_config *cfg, char *err, size_t errlen)
{
    struct runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->cfg = cfg;
    pthread_mutex_init(&rt->lock, NULL);
    rt->start = calloc(cfg->nmodels ? cfg->nmodels : 1, sizeof *rt->start);
    for (size_t i = 0; rt->start && i < cfg->nmodels; i++) {
        snprintf(rt->start[i].name, sizeof rt->start[i].name, "%s", cfg->models[i].name);
        rt->start[i].prefetch = cfg->models[i].prefetch;
    }
    if (!rt->start || rt_metrics_start(rt, err, errlen) != 0)
        goto fail;
    if (cfg->api_key_file && ctl_auth_load(cfg->api_key_file, err, errlen) != 0)
        goto fail;
    if (!(rt->control = ctl_state_new(cfg->mount_point, err, errlen)))
        goto fail;
    rt->http = rt->start ? ctl_server_start(cfg->host, cfg->port, routes,
                                            sizeof routes / sizeof *routes, rt, err, errlen)
                         : NULL;
    if (!rt->http)
        goto fail;
    if (cfg->mount_point) {
        struct fs_config fc = {
            .cache_dir = cfg->cache_dir,
            .cache_max_bytes = cfg->cache_max_bytes,
            .chunk_size = cm_env_size("DOWNLOADER_PART_CHUNKSIZE", 8u << 20),
            .threads = (unsigned)cm_env_u64("DOWNLOADER_NUM_THREADS", 16),
            .on_read = rt_metrics_on_read,
        };
        if (fc.chunk_size < 64 * 1024 || fc.threads == 0 || fc.threads > 1024) {
            snprintf(err, errlen,
                     "DOWNLOADER_PART_CHUNKSIZE must be at least 64 KiB and "
                     "DOWNLOADER_NUM_THREADS 1-1024");
            goto fail;
        }
        rt->fs = fs_new(&fc, err, errlen);
        if (!rt->fs || fs_serve(rt->fs, cfg->mount_point, err, errlen) != 0)
            goto fail;
        rt_metrics_attach_fs(rt, rt->fs);
        ctl_state_attach_fs(rt->control, rt->fs);
        if (pthread_create(&rt->starter, NULL, start_mounts, rt) != 0) {
            snprintf(err, errlen, "cannot start the mount thread");
            goto fail;
        }
        rt->starter_running = true;
    }
    return rt;
fail:
    rt_stop(rt);
    return NULL;
}

void rt_stop(struct runtime *rt)
{
    /* stop intake first: in-flight requests finish (those waiting on a fetch or a lock are
     * woken by ctl_state_stop), no new ones start */
    ctl_state_stop(rt->control);
    ctl_server_stop(rt->http);
    rt->http = NULL;
    ctl_state_free(rt->control);
    rt->control = NULL;
    if (rt->fs)
        fs_shutdown(rt->fs);
    if (rt->starter_running)
        pthread_join(rt->starter, NULL);
    rt_metrics_stop(rt);
    fs_free(rt->fs);
    pthread_mutex_destroy(&rt->lock);
    free(rt->start);
    free(rt);
}
