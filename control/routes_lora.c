/* routes_lora.c - POST /v1/lora_adapter/load and /v1/lora_adapter/unload (SPEC §7).
 *
 * A load of a remote adapter (a URI, or an org/name that is not a local path) is:
 *   mount it at <mount-point>/<lora_name> (prefetch=all) -> adapter_config.json must be there
 *   -> wait until every file is fetched and verified -> ask the engine to load that path.
 * Without --mount-point the adapter is downloaded to <AIBRIX_ADAPTER_DIR>/<lora_name> instead.
 * A plain path goes to the engine unchanged. Any failure undoes what the load made (the mount
 * or the directory), so a failed load leaves nothing behind.
 *
 * The registry (struct ctl_lora, under c->lock) remembers every name being loaded or loaded:
 * where it came from, what the engine got, and which mount it reads from (that mount cannot
 * be unmounted while the adapter is loaded). One load or unload holds a name at a time; a
 * second request for the same name waits, then sees the outcome: the same source already
 * loaded is answered with the same success (loads are idempotent), another source with 409. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/log.h"
#include "control_private.h"
#include "jsonbody.h"

#define ADAPTER_CONFIG "adapter_config.json"
#define FETCH_POLL_NS (20 * 1000 * 1000)

static const struct ctl_jfield direct_fields[] = {
    {"lora_name", CTL_J_STRING, true, false},
    {"lora_path", CTL_J_STRING, true, false},
    {NULL, 0, false, false},
};

/* What AIBrix's controller sends; local_dir is accepted and ignored, as AIBrix does. */
static const struct ctl_jfield delegation_fields[] = {
    {"lora_name", CTL_J_STRING, true, false},
    {"artifact_url", CTL_J_STRING, true, false},
    {"credentials", CTL_J_OBJECT, false, true},
    {"credentials_secret", CTL_J_STRING, false, true},
    {"additional_config", CTL_J_OBJECT, false, true},
    {"local_dir", CTL_J_STRING, false, true},
    {NULL, 0, false, false},
};

static const struct ctl_jfield unload_fields[] = {
    {"lora_name", CTL_J_STRING, true, false},
    {"cleanup_local", CTL_J_BOOL, false, true},
    {"lora_int_id", CTL_J_INT, false, true},
    {NULL, 0, false, false},
};

/* ---- the registry ----------------------------------------------------------------------- */

static struct ctl_lora *find_lora(const struct ctl_state *c, const char *name)
{
    for (struct ctl_lora *l = c->loras; l; l = l->next)
        if (strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

bool ctl_lora_uses_mount(const struct ctl_state *c, const char *mount)
{
    for (const struct ctl_lora *l = c->loras; l; l = l->next)
        if (l->mount[0] && strcmp(l->mount, mount) == 0)
            return true;
    return false;
}

bool ctl_lora_claims(const struct ctl_state *c, const char *name)
{
    const struct ctl_lora *l = find_lora(c, name);
    return ctl_lora_uses_mount(c, name) || (l && l->busy);
}

/* Hold name for this request, waiting while another request holds it. NULL when the runtime
 * stops meanwhile (or out of memory). */
static struct ctl_lora *lora_acquire(struct ctl_state *c, const char *name)
{
    struct ctl_lora *l = NULL;
    pthread_mutex_lock(&c->lock);
    while (!atomic_load(&c->stopping)) {
        l = find_lora(c, name);
        if (!l && (l = calloc(1, sizeof *l)) != NULL) {
            snprintf(l->name, sizeof l->name, "%s", name);
            l->next = c->loras;
            c->loras = l;
        }
        if (!l || !l->busy)
            break;
        l = NULL;
        pthread_cond_wait(&c->changed, &c->lock);
    }
    if (l)
        l->busy = true;
    pthread_mutex_unlock(&c->lock);
    return l;
}

/* Let go of the name; a name that is not loaded is forgotten. */
static void lora_release(struct ctl_state *c, struct ctl_lora *l)
{
    pthread_mutex_lock(&c->lock);
    l->busy = false;
    if (!l->loaded) {
        for (struct ctl_lora **p = &c->loras; *p; p = &(*p)->next) {
            if (*p == l) {
                *p = l->next;
                break;
            }
        }
        free(l);
    }
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

/* Record which mount the engine reads from (under the lock: unmount looks at it). */
static void lora_set_mount(struct ctl_state *c, struct ctl_lora *l, const char *mount, bool owns)
{
    pthread_mutex_lock(&c->lock);
    snprintf(l->mount, sizeof l->mount, "%s", mount ? mount : "");
    l->owns_mount = mount && owns;
    pthread_mutex_unlock(&c->lock);
}

/* ---- loading ---------------------------------------------------------------------------- */

struct load_req {
    const char *name;
    const char *source;       /* lora_path or artifact_url */
    const struct cm_uri *uri; /* NULL: source is a local path */
    const struct ctl_creds *creds;
    const char *authorization;
};

/* The named mount a local path lies in ("" when it is not under the mount point). */
static void mount_of_path(const struct ctl_state *c, const char *path, char *out, size_t outlen)
{
    size_t n = strlen(c->mount_point);
    out[0] = '\0';
    if (!n || strncmp(path, c->mount_point, n) != 0 || path[n] != '/')
        return;
    const char *name = path + n + 1, *end = strchr(name, '/');
    size_t len = end ? (size_t)(end - name) : strlen(name);
    if (len < outlen)
        snprintf(out, outlen, "%.*s", (int)len, name);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait until the adapter's mount is fetched and verified. Returns 0 or an API status. */
static int wait_fetched(struct ctl_state *c, const struct load_req *rq, char *msg, size_t msglen)
{
    struct fs_mount_status st;
    double deadline = now_s() + (double)c->fetch_timeout_s;
    for (;;) {
        if (!fs_mount_get(ctl_state_fs(c), rq->name, &st)) {
            snprintf(msg, msglen, "the mount of adapter '%s' disappeared while loading", rq->name);
            return 500;
        }
        if (st.state == FS_MOUNT_FETCHED)
            return 0;
        if (st.state == FS_MOUNT_ERROR) {
            snprintf(msg, msglen, "fetching adapter '%s' from %s failed: %s", rq->name, rq->source,
                     st.error);
            return 502;
        }
        if (atomic_load(&c->stopping)) {
            snprintf(msg, msglen, "the runtime is shutting down");
            return 503;
        }
        if (now_s() > deadline) {
            snprintf(msg, msglen,
                     "adapter '%s' was not fetched within %llu s (%llu of %llu bytes; "
                     "AIBRIX_LORA_FETCH_TIMEOUT)",
                     rq->name, (unsigned long long)c->fetch_timeout_s,
                     (unsigned long long)st.bytes_cached, (unsigned long long)st.bytes_total);
            return 504;
        }
        nanosleep(&(struct timespec){0, FETCH_POLL_NS}, NULL);
    }
}

/* Mount the adapter and wait for it; l->path is the mounted directory. Returns 0 or an API
 * status with nothing left behind. */
static int stage_mounted(struct ctl_state *c, struct ctl_lora *l, const struct load_req *rq,
                         char *msg, size_t msglen)
{
    struct fs *fs = ctl_state_fs(c);
    struct fs_mount_status ms;
    char err[1024] = "", cfg_path[PATH_MAX];
    struct stat sb;
    if (!fs) {
        snprintf(msg, msglen, "the model filesystem is still starting; try again");
        return 503;
    }
    bool exists = fs_mount_get(fs, rq->name, &ms);
    if (exists && strcmp(ms.uri, rq->source) != 0) {
        snprintf(msg, msglen, "name '%s' is taken by the mount of %s", rq->name, ms.uri);
        return 409;
    }
    if (!exists) {
        /* list first: a wrong URI (a whole base model, say) must not start a prefetch that
         * would go on after the mount is removed again */
        struct cm_strlist all_files = {0};
        struct ctl_job_req check = {.uri_text = rq->source,
                                    .uri = rq->uri,
                                    .creds = rq->creds,
                                    .suffixes = &all_files,
                                    .required_file = ADAPTER_CONFIG};
        int st = ctl_source_check(&check, msg, msglen);
        if (st != 0)
            return st;
    }
    lora_set_mount(c, l, rq->name, !exists);
    if (!exists) {
        struct fs_mount_spec spec;
        memset(&spec, 0, sizeof spec);
        snprintf(spec.name, sizeof spec.name, "%s", rq->name);
        snprintf(spec.uri, sizeof spec.uri, "%s", rq->source);
        spec.prefetch = FS_PREFETCH_ALL;
        if (rq->creds)
            ctl_creds_apply(rq->creds, &spec.creds);
        enum dl_status st = fs_mount_add(fs, &spec, err, sizeof err);
        cm_filter_free(&spec.filter);
        if (st != DL_OK) {
            bool taken = strncmp(err, "exists", 6) == 0;
            snprintf(msg, msglen, "cannot mount adapter '%s' from %s: %s", rq->name, rq->source,
                     err);
            lora_set_mount(c, l, NULL, false);
            return taken ? 409 : ctl_http_status(st);
        }
    }
    snprintf(l->path, sizeof l->path, "%s/%s", c->mount_point, rq->name);
    snprintf(cfg_path, sizeof cfg_path, "%s/%s", l->path, ADAPTER_CONFIG);
    int status = 0;
    if (stat(cfg_path, &sb) != 0) {
        snprintf(msg, msglen, "%s not found in %s", ADAPTER_CONFIG, rq->source);
        status = 404;
    } else {
        status = wait_fetched(c, rq, msg, msglen);
    }
    if (status != 0) {
        if (l->owns_mount)
            fs_mount_remove(fs, rq->name, true);
        lora_set_mount(c, l, NULL, false);
    }
    return status;
}

/* Download the adapter (no --mount-point); l->path is the directory. */
static int stage_downloaded(struct ctl_state *c, struct ctl_lora *l, const struct load_req *rq,
                            char *msg, size_t msglen)
{
    struct ctl_job *job;
    struct cm_strlist all_files = {0}; /* an adapter needs every file, whatever the env says */
    snprintf(l->path, sizeof l->path, "%s/%s", c->adapter_dir, rq->name);
    struct ctl_job_req jr = {
        .uri_text = rq->source,
        .uri = rq->uri,
        .model_name = rq->name,
        .root = l->path,
        .creds = rq->creds,
        .suffixes = &all_files,
        .required_file = ADAPTER_CONFIG,
    };
    int status = ctl_job_prepare(c, &jr, &job, msg, msglen);
    if (status == 0)
        status = ctl_job_run(c, job, msg, msglen);
    if (status == 0)
        snprintf(l->local_dir, sizeof l->local_dir, "%s", l->path);
    return status;
}

/* The whole load for a name this request holds. Returns 0 with l loaded, or an API status. */
static int load(struct ctl_state *c, struct ctl_lora *l, const struct load_req *rq, char *msg,
                size_t msglen)
{
    char mount[129];
    int status;
    if (!rq->uri) {
        snprintf(l->path, sizeof l->path, "%s", rq->source);
        mount_of_path(c, rq->source, mount, sizeof mount);
        lora_set_mount(c, l, mount[0] ? mount : NULL, false);
        status = 0;
    } else if (c->mount_point[0]) {
        status = stage_mounted(c, l, rq, msg, msglen);
    } else {
        status = stage_downloaded(c, l, rq, msg, msglen);
    }
    if (status != 0)
        return status;

    struct ctl_engine_result er;
    ctl_engine_load_lora(&c->engine, rq->name, l->path, rq->authorization, &er);
    if (er.status != 200) {
        snprintf(msg, msglen, "%s", er.message);
        if (l->owns_mount)
            fs_mount_remove(ctl_state_fs(c), rq->name, true);
        if (l->local_dir[0])
            ctl_remove_tree(l->local_dir);
        l->local_dir[0] = '\0';
        lora_set_mount(c, l, NULL, false);
        return er.status;
    }
    snprintf(l->source, sizeof l->source, "%s", rq->source);
    snprintf(l->engine_message, sizeof l->engine_message, "%s", er.message);
    pthread_mutex_lock(&c->lock);
    l->loaded = true;
    pthread_mutex_unlock(&c->lock);
    cm_info("lora", "loaded %s from %s (engine path %s)", rq->name, rq->source, l->path);
    return 0;
}

static void answer_loaded(struct ctl_response *resp, const struct ctl_lora *l, bool delegation)
{
    char text[PATH_MAX + 512];
    snprintf(text, sizeof text, "Success: LoRA adapter '%s' loaded successfully from '%s'.",
             l->name, l->path);
    if (!delegation) {
        ctl_json(resp, 200, text);
        resp->content_type = "text/plain; charset=utf-8";
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    cJSON_AddStringToObject(o, "message", text);
    cJSON_AddStringToObject(o, "local_path", l->path);
    cJSON *er = cJSON_AddObjectToObject(o, "engine_response");
    cJSON_AddStringToObject(er, "message", l->engine_message);
    free(resp->body);
    resp->body = cJSON_PrintUnformatted(o);
    resp->status = 200;
    resp->content_type = NULL;
    cJSON_Delete(o);
}

static bool name_ok(const char *name, struct ctl_response *resp)
{
    if (fs_mount_name_ok(name))
        return true;
    char msg[512];
    snprintf(msg, sizeof msg,
             "invalid lora_name '%.160s': 1-128 letters, digits, '.', '_' or '-', starting "
             "with a letter or digit",
             name);
    ctl_error(resp, 400, msg);
    return false;
}

/* Credentials of a delegation body: the secret's files, then the body's values over them. */
static int gather_creds(struct ctl_state *c, const cJSON *body, struct ctl_creds *cr, char *msg,
                        size_t msglen)
{
    const char *secret = ctl_json_str(body, "credentials_secret");
    int st = secret ? ctl_creds_from_secret(cr, c->secrets_dir, secret, msg, msglen) : 0;
    if (st == 0)
        st =
            ctl_creds_from_json(cr, ctl_json_obj(body, "credentials"), "credentials.", msg, msglen);
    return st;
}

/* Check what the body asks for. Returns 0 with *remote set (uri parsed when true), or an
 * API status with resp filled. */
static int check_load(struct ctl_state *c, const cJSON *body, bool delegation,
                      struct ctl_creds *creds, struct cm_uri *uri, bool *remote,
                      struct ctl_response *resp)
{
    char msg[2048];
    const char *field = delegation ? "artifact_url" : "lora_path";
    const char *source = ctl_json_str(body, field);
    bool bad = false;
    int st = 400;
    if (!name_ok(ctl_json_str(body, "lora_name"), resp))
        return 400;
    if (!source[0])
        snprintf(msg, sizeof msg, "%s is empty", field);
    else if (strlen(source) >= CM_URI_MAX || strlen(source) >= PATH_MAX)
        snprintf(msg, sizeof msg, "%s is too long", field);
    else if ((*remote = ctl_is_model_uri(source, uri, &bad, msg, sizeof msg)) && bad)
        ;
    else if (!delegation || (st = gather_creds(c, body, creds, msg, sizeof msg)) == 0)
        return 0;
    ctl_error(resp, st, msg);
    return st;
}

void ctl_route_lora_load(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    char msg[2048];
    struct ctl_creds creds = {0};
    struct cm_uri uri;
    bool remote = false;
    cJSON *body;
    int st = ctl_body_parse(req->body, req->body_len, &body, msg, sizeof msg);
    if (st != 0) {
        ctl_error(resp, st, msg);
        return;
    }
    bool delegation = cJSON_GetObjectItemCaseSensitive(body, "artifact_url") != NULL;
    st = ctl_json_check(body, delegation ? delegation_fields : direct_fields, "", msg, sizeof msg);
    if (st != 0)
        ctl_error(resp, st, msg);
    else
        st = check_load(c, body, delegation, &creds, &uri, &remote, resp);
    if (st != 0) {
        ctl_creds_free(&creds);
        cJSON_Delete(body);
        return;
    }
    const char *name = ctl_json_str(body, "lora_name");
    const char *source = ctl_json_str(body, delegation ? "artifact_url" : "lora_path");
    struct load_req rq = {
        .name = name,
        .source = source,
        .uri = remote ? &uri : NULL,
        .creds = &creds,
        .authorization = req->authorization,
    };
    struct ctl_lora *l = lora_acquire(c, name);
    if (!l) {
        ctl_error(resp, 503, "the runtime is shutting down");
    } else if (l->loaded && strcmp(l->source, source) == 0) {
        answer_loaded(resp, l, delegation); /* the same load again: the same answer */
    } else if (l->loaded) {
        snprintf(msg, sizeof msg, "LoRA adapter '%s' is already loaded from '%.1024s'", name,
                 l->source);
        ctl_error(resp, 409, msg);
    } else if ((st = load(c, l, &rq, msg, sizeof msg)) != 0) {
        cm_warn("lora", "load of %s from %s failed (%d): %s", name, source, st, msg);
        ctl_error(resp, st, msg);
    } else {
        answer_loaded(resp, l, delegation);
    }
    if (l)
        lora_release(c, l);
    ctl_creds_free(&creds);
    cJSON_Delete(body);
}

/* ---- unloading -------------------------------------------------------------------------- */

void ctl_route_lora_unload(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    char msg[2048];
    cJSON *body;
    int st =
        ctl_body_parse_checked(req->body, req->body_len, unload_fields, &body, msg, sizeof msg);
    if (st != 0) {
        ctl_error(resp, st, msg);
        return;
    }
    const char *name = ctl_json_str(body, "lora_name");
    bool cleanup = ctl_json_bool(body, "cleanup_local", true);
    struct ctl_lora *l = name_ok(name, resp) ? lora_acquire(c, name) : NULL;
    if (!l) {
        if (resp->status != 400)
            ctl_error(resp, 503, "the runtime is shutting down");
        cJSON_Delete(body);
        return;
    }
    struct ctl_engine_result er;
    ctl_engine_unload_lora(&c->engine, name, req->authorization, &er);
    /* the engine may have forgotten an adapter the runtime loaded (it restarted): the
     * runtime's side is still undone */
    if (er.status != 200 && !(er.status == 404 && l->loaded)) {
        if (er.status == 404)
            snprintf(msg, sizeof msg, "LoRA adapter '%s' is not loaded (engine: %.1024s)", name,
                     er.message);
        else
            snprintf(msg, sizeof msg, "%s", er.message);
        ctl_error(resp, er.status, msg);
    } else {
        if (l->owns_mount && ctl_state_fs(c))
            fs_mount_remove(ctl_state_fs(c), l->mount, cleanup);
        if (cleanup && l->local_dir[0])
            ctl_remove_tree(l->local_dir);
        lora_set_mount(c, l, NULL, false);
        pthread_mutex_lock(&c->lock);
        l->loaded = false;
        pthread_mutex_unlock(&c->lock);
        cm_info("lora", "unloaded %s", name);
        cJSON *o = cJSON_CreateObject();
        snprintf(msg, sizeof msg, "Successfully unloaded adapter %s", name);
        cJSON_AddStringToObject(o, "status", "success");
        cJSON_AddStringToObject(o, "message", msg);
        free(resp->body);
        resp->body = cJSON_PrintUnformatted(o);
        resp->status = 200;
        cJSON_Delete(o);
    }
    lora_release(c, l);
    cJSON_Delete(body);
}
