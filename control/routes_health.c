/* routes_health.c - GET /healthz and GET /ready (SPEC §5).
 *
 * Ready means: the model filesystem serves (with --mount-point), and every mount made at start
 * is listed and, with prefetch=all, fully fetched and verified. Until then /ready answers 503
 * with each start mount's progress, so a startup probe can gate the engine on the model being
 * local, and a LoRA load or a mount sent after /ready is never refused as "still starting". */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "control.h"
#include "runtime.h"

void rt_route_healthz(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    (void)ctx, (void)req;
    ctl_json(resp, 200, "{\"status\":\"ok\"}");
}

void rt_route_ready(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct runtime *rt = ctx;
    /* the mount point can be a mount a moment before the filesystem is attached to the API */
    bool serving = !rt->cfg->mount_point || ctl_state_fs(rt->control);
    bool ready = serving;
    (void)req;
    cJSON *body = cJSON_CreateObject();
    if (!serving)
        cJSON_AddStringToObject(body, "filesystem", "starting");
    cJSON *mounts = cJSON_CreateArray();
    for (size_t i = 0; i < rt->cfg->nmodels; i++) {
        pthread_mutex_lock(&rt->lock);
        struct rt_start_mount sm = rt->start[i];
        pthread_mutex_unlock(&rt->lock);
        struct fs_mount_status st = {0};
        bool have = sm.done && !sm.failed && fs_mount_get(rt->fs, sm.name, &st);
        bool ok = have && st.state != FS_MOUNT_ERROR &&
                  (sm.prefetch != FS_PREFETCH_ALL || st.state == FS_MOUNT_FETCHED);
        ready &= ok;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "model_name", sm.name);
        cJSON_AddStringToObject(m, "state",
                                !sm.done    ? "listing"
                                : sm.failed ? "error"
                                            : fs_mount_state_name(st.state));
        cJSON_AddNumberToObject(m, "bytes_total", (double)st.bytes_total);
        cJSON_AddNumberToObject(m, "bytes_cached", (double)st.bytes_cached);
        if (sm.failed)
            cJSON_AddStringToObject(m, "error", sm.error);
        else if (st.error[0])
            cJSON_AddStringToObject(m, "error", st.error);
        cJSON_AddItemToArray(mounts, m);
    }
    cJSON_AddStringToObject(body, "status", ready ? "ready" : "not ready");
    if (!ready)
        cJSON_AddItemToObject(body, "mounts", mounts);
    else
        cJSON_Delete(mounts);
    resp->status = ready ? 200 : 503;
    resp->body = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
}
