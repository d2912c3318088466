/* routes_models.c - the model routes of SPEC §5: named mounts (POST /v1/model/mount,
 * /v1/model/unmount, GET /v1/model/mounts), AIBrix's downloads (POST /v1/model/download,
 * GET /v1/model/list) and the engine's GET /v1/models, passed through.
 *
 * Without --mount-point, mount and unmount answer 501 (the runtime was started without the
 * feature) and the list of mounts is empty. Mounts made at start (--model, AIBRIX_MODELS) are
 * configuration: /ready depends on them, so they cannot be unmounted through the API (409). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/env.h"
#include "../common/log.h"
#include "control_private.h"
#include "jsonbody.h"
#include "runtime.h"

static const struct ctl_jfield mount_fields[] = {
    {"model_name", CTL_J_STRING, true, false},
    {"model_uri", CTL_J_STRING, true, false},
    {"allow_file_suffix", CTL_J_STRLIST, false, true},
    {"allow_patterns", CTL_J_STRLIST, false, true},
    {"ignore_patterns", CTL_J_STRLIST, false, true},
    {"prefetch", CTL_J_STRING, false, true},
    {"credentials", CTL_J_OBJECT, false, true},
    {NULL, 0, false, false},
};

static const struct ctl_jfield unmount_fields[] = {
    {"model_name", CTL_J_STRING, true, false},
    {NULL, 0, false, false},
};

static const struct ctl_jfield download_fields[] = {
    {"model_uri", CTL_J_STRING, true, false},
    {"local_dir", CTL_J_STRING, false, true},
    {"model_name", CTL_J_STRING, false, true},
    {"download_extra_config", CTL_J_OBJECT, false, true},
    {NULL, 0, false, false},
};

/* AIBrix's download_extra_config keys (as aibrix_download's --download-extra-config). The
 * boto3 tuning knobs are accepted and have no effect here. */
static const struct ctl_jfield extra_fields[] = {
    {"ak", CTL_J_STRING, false, true},
    {"sk", CTL_J_STRING, false, true},
    {"endpoint", CTL_J_STRING, false, true},
    {"region", CTL_J_STRING, false, true},
    {"hf_endpoint", CTL_J_STRING, false, true},
    {"hf_token", CTL_J_STRING, false, true},
    {"hf_revision", CTL_J_STRING, false, true},
    {"num_threads", CTL_J_INT, false, true},
    {"part_chunksize", CTL_J_INT, false, true},
    {"allow_file_suffix", CTL_J_STRLIST, false, true},
    {"force_download", CTL_J_BOOL, false, true},
    {"max_io_queue", CTL_J_INT, false, true},
    {"io_chunksize", CTL_J_INT, false, true},
    {"part_threshold", CTL_J_INT, false, true},
    {NULL, 0, false, false},
};

static const struct ctl_jfield list_fields[] = {
    {"local_dir", CTL_J_STRING, false, true},
    {NULL, 0, false, false},
};

static const char *const prefetch_names[] = {
    [FS_PREFETCH_ALL] = "all", [FS_PREFETCH_OPEN] = "open", [FS_PREFETCH_NONE] = "none"};

/* Append a CTL_J_STRLIST value (array, or comma-separated string) to list. */
static int add_strlist(struct cm_strlist *list, const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v))
        return cm_strlist_split(list, v->valuestring);
    for (const cJSON *s = v->child; s; s = s->next)
        if (s->valuestring[0] && cm_strlist_add(list, s->valuestring) != 0)
            return -ENOMEM;
    return 0;
}

static void respond_object(struct ctl_response *resp, int status, cJSON *o)
{
    free(resp->body);
    resp->body = cJSON_PrintUnformatted(o);
    resp->status = status;
    resp->content_type = NULL;
    cJSON_Delete(o);
}

static cJSON *mount_card(const struct fs_mount_status *st)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "model_name", st->name);
    cJSON_AddStringToObject(m, "model_uri", st->uri);
    cJSON_AddStringToObject(m, "state", fs_mount_state_name(st->state));
    cJSON_AddNumberToObject(m, "bytes_total", (double)st->bytes_total);
    cJSON_AddNumberToObject(m, "bytes_cached", (double)st->bytes_cached);
    cJSON_AddNumberToObject(m, "files", (double)st->files);
    if (st->error[0])
        cJSON_AddStringToObject(m, "error", st->error);
    return m;
}

/* 501 without --mount-point, 503 before the filesystem serves; else the filesystem. */
static struct fs *need_fs(struct ctl_state *c, struct ctl_response *resp)
{
    if (!c->mount_point[0]) {
        ctl_error(resp, 501,
                  "this runtime was started without --mount-point, so it cannot mount models; "
                  "start it with --mount-point DIR, or use POST /v1/model/download");
        return NULL;
    }
    struct fs *fs = ctl_state_fs(c);
    if (!fs)
        ctl_error(resp, 503, "the model filesystem is still starting; try again");
    return fs;
}

static bool model_name_ok(const char *name, struct ctl_response *resp)
{
    if (fs_mount_name_ok(name))
        return true;
    char msg[512];
    snprintf(msg, sizeof msg,
             "invalid model_name '%.160s': 1-128 letters, digits, '.', '_' or '-', starting "
             "with a letter or digit",
             name);
    ctl_error(resp, 400, msg);
    return false;
}

/* A local directory is mounted as file://<absolute path>. */
static void normalize_uri(const char *in, char *out, size_t outlen)
{
    char real[PATH_MAX];
    struct stat sb;
    if (in[0] == '/' && stat(in, &sb) == 0 && S_ISDIR(sb.st_mode) && realpath(in, real))
        snprintf(out, outlen, "file://%s", real);
    else
        snprintf(out, outlen, "%s", in);
}

static bool start_mount(const struct runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->cfg->nmodels; i++)
        if (strcmp(rt->cfg->models[i].name, name) == 0)
            return true;
    return false;
}

/* ---- POST /v1/model/mount --------------------------------------------------------------- */

/* Fill spec from a checked body. Returns 0 or an API status with msg set. */
static int mount_spec(const cJSON *body, struct fs_mount_spec *spec, struct ctl_creds *creds,
                      char *msg, size_t msglen)
{
    snprintf(spec->name, sizeof spec->name, "%s", ctl_json_str(body, "model_name"));
    const char *uri = ctl_json_str(body, "model_uri");
    if (!uri[0] || strlen(uri) >= sizeof spec->uri) {
        snprintf(msg, msglen, "model_uri is empty or too long");
        return 400;
    }
    normalize_uri(uri, spec->uri, sizeof spec->uri);
    spec->prefetch = FS_PREFETCH_ALL;
    const char *prefetch = ctl_json_str(body, "prefetch");
    if (prefetch) {
        size_t i = 0;
        while (i < 3 && strcmp(prefetch, prefetch_names[i]) != 0)
            i++;
        if (i == 3) {
            snprintf(msg, msglen, "prefetch must be all, open or none, not '%.64s'", prefetch);
            return 422;
        }
        spec->prefetch = (enum fs_prefetch)i;
    }
    if (add_strlist(&spec->filter.suffixes,
                    cJSON_GetObjectItemCaseSensitive(body, "allow_file_suffix")) ||
        add_strlist(&spec->filter.allow,
                    cJSON_GetObjectItemCaseSensitive(body, "allow_patterns")) ||
        add_strlist(&spec->filter.ignore,
                    cJSON_GetObjectItemCaseSensitive(body, "ignore_patterns"))) {
        snprintf(msg, msglen, "out of memory");
        return 500;
    }
    for (size_t i = 0; i < spec->filter.suffixes.n; i++) {
        char *s = spec->filter.suffixes.items[i]; /* stored without the dot (names.h) */
        if (s[0] == '.')
            memmove(s, s + 1, strlen(s));
    }
    int st =
        ctl_creds_from_json(creds, ctl_json_obj(body, "credentials"), "credentials.", msg, msglen);
    if (st == 0)
        ctl_creds_apply(creds, &spec->creds);
    return st;
}

void ctl_route_model_mount(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    struct fs *fs = need_fs(c, resp);
    char msg[2048], err[1024] = "";
    cJSON *body = NULL;
    struct fs_mount_spec spec;
    struct ctl_creds creds = {0};
    memset(&spec, 0, sizeof spec);
    if (!fs)
        return;
    int st = ctl_body_parse_checked(req->body, req->body_len, mount_fields, &body, msg, sizeof msg);
    if (st != 0) {
        ctl_error(resp, st, msg);
        return;
    }
    if (!model_name_ok(ctl_json_str(body, "model_name"), resp))
        goto out;
    if ((st = mount_spec(body, &spec, &creds, msg, sizeof msg)) != 0) {
        ctl_error(resp, st, msg);
        goto out;
    }
    pthread_mutex_lock(&c->lock);
    bool lora = ctl_lora_claims(c, spec.name);
    pthread_mutex_unlock(&c->lock);
    if (lora) {
        snprintf(msg, sizeof msg, "name '%s' belongs to a LoRA adapter", spec.name);
        ctl_error(resp, 409, msg);
        goto out;
    }
    enum dl_status ds = fs_mount_add(fs, &spec, err, sizeof err);
    struct fs_mount_status ms;
    if (ds == DL_OK && fs_mount_get(fs, spec.name, &ms)) {
        respond_object(resp, 200, mount_card(&ms));
    } else {
        bool taken = ds != DL_OK && strncmp(err, "exists", 6) == 0;
        snprintf(msg, sizeof msg, "cannot mount %s from %s: %s", spec.name, spec.uri,
                 ds == DL_OK ? "it was unmounted meanwhile" : err);
        ctl_error(resp, taken ? 409 : ds == DL_OK ? 409 : ctl_http_status(ds), msg);
    }
out:
    cm_filter_free(&spec.filter);
    ctl_creds_free(&creds);
    cJSON_Delete(body);
}

/* ---- POST /v1/model/unmount, GET /v1/model/mounts --------------------------------------- */

void ctl_route_model_unmount(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    struct fs *fs = need_fs(c, resp);
    char msg[1024];
    cJSON *body;
    if (!fs)
        return;
    int st =
        ctl_body_parse_checked(req->body, req->body_len, unmount_fields, &body, msg, sizeof msg);
    if (st != 0) {
        ctl_error(resp, st, msg);
        return;
    }
    const char *name = ctl_json_str(body, "model_name");
    if (!model_name_ok(name, resp)) {
        cJSON_Delete(body);
        return;
    }
    /* under c->lock: a LoRA load records its mount under it before using the mount */
    pthread_mutex_lock(&c->lock);
    bool in_use = ctl_lora_uses_mount(c, name);
    bool configured = !in_use && start_mount(ctx, name);
    int rc = in_use || configured ? 0 : fs_mount_remove(fs, name, false);
    pthread_mutex_unlock(&c->lock);
    if (in_use) {
        snprintf(msg, sizeof msg,
                 "a LoRA adapter is loaded from '%s'; unload it first (POST "
                 "/v1/lora_adapter/unload)",
                 name);
        ctl_error(resp, 409, msg);
    } else if (configured) {
        snprintf(msg, sizeof msg,
                 "'%s' was mounted at start (--model or AIBRIX_MODELS); /ready depends on it",
                 name);
        ctl_error(resp, 409, msg);
    } else if (rc == -ENOENT) {
        snprintf(msg, sizeof msg, "no model named '%s' is mounted", name);
        ctl_error(resp, 404, msg);
    } else {
        cJSON *o = cJSON_CreateObject();
        snprintf(msg, sizeof msg, "Successfully unmounted model %s", name);
        cJSON_AddStringToObject(o, "status", "success");
        cJSON_AddStringToObject(o, "message", msg);
        respond_object(resp, 200, o);
    }
    cJSON_Delete(body);
}

void ctl_route_model_mounts(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    struct fs *fs = ctl_state_fs(c);
    struct fs_mount_status *all = NULL;
    (void)req;
    size_t n = fs ? fs_mount_list(fs, &all) : 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(data, mount_card(&all[i]));
    free(all);
    /* mounts made at start that the filesystem does not hold: still listing, or failed */
    struct runtime *rt = ctx;
    for (size_t i = 0; rt->start && i < rt->cfg->nmodels; i++) {
        struct fs_mount_status st = {.state = FS_MOUNT_LISTING};
        pthread_mutex_lock(&rt->lock);
        bool done = rt->start[i].done, failed = rt->start[i].failed;
        snprintf(st.error, sizeof st.error, "%s", failed ? rt->start[i].error : "");
        pthread_mutex_unlock(&rt->lock);
        if (done && !failed)
            continue;
        snprintf(st.name, sizeof st.name, "%s", rt->cfg->models[i].name);
        snprintf(st.uri, sizeof st.uri, "%s", rt->cfg->models[i].uri);
        st.state = failed ? FS_MOUNT_ERROR : FS_MOUNT_LISTING;
        cJSON_AddItemToArray(data, mount_card(&st));
    }
    respond_object(resp, 200, o);
}

/* ---- downloads -------------------------------------------------------------------------- */

struct disk_state {
    size_t metadata, partial;
};

/* Count AIBrix cache records below dir: <rel>.metadata (a finished file) and <rel>.part. */
static void scan_cache(const char *dir, struct disk_state *ds, int depth)
{
    DIR *d = depth < 32 ? opendir(dir) : NULL;
    struct dirent *de;
    char path[PATH_MAX];
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t n = strlen(de->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (de->d_type == DT_DIR)
            scan_cache(path, ds, depth + 1);
        else if (n > 9 && strcmp(de->d_name + n - 9, ".metadata") == 0)
            ds->metadata++;
        else if (n > 5 && strcmp(de->d_name + n - 5, ".part") == 0)
            ds->partial++;
    }
    if (d)
        closedir(d);
}

/* What is on disk at root: "downloaded" (every file recorded, nothing partial), "unknown"
 * (partial files without a running job), or NULL (nothing of ours). *source gets the
 * source name of the cache record. */
static const char *disk_status(const char *root, const char **source)
{
    static const char *const sources[] = {"huggingface", "s3", "tos", "local"};
    char dir[PATH_MAX];
    struct stat sb;
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++) {
        snprintf(dir, sizeof dir, "%s/.cache/%s/download", root, sources[i]);
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        struct disk_state ds = {0};
        scan_cache(dir, &ds, 0);
        *source = sources[i];
        return ds.partial == 0 && ds.metadata > 0 ? "downloaded" : "unknown";
    }
    return NULL;
}

static cJSON *model_card(const char *name, const char *root, const char *source, const char *status,
                         const char *error)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "model_name", name);
    cJSON_AddStringToObject(m, "model_root_path", root);
    cJSON_AddStringToObject(m, "source", source);
    cJSON_AddStringToObject(m, "model_status", status);
    if (error)
        cJSON_AddStringToObject(m, "error", error);
    return m;
}

static const char *job_status(const struct ctl_job *j)
{
    static const char *const names[] = {[CTL_JOB_RUNNING] = "downloading",
                                        [CTL_JOB_DONE] = "downloaded",
                                        [CTL_JOB_FAILED] = "failed"};
    return names[j->state];
}

static void local_dir_of(const char *given, char *out, size_t outlen)
{
    const char *d = given && given[0] ? given : cm_env_str("DOWNLOADER_LOCAL_DIR");
    snprintf(out, outlen, "%s", d ? d : "/tmp/aibrix/models");
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
}

/* Parse download_extra_config into creds and the job request. Returns 0 or 422/500. */
static int extra_config(const cJSON *extra, struct ctl_creds *creds, struct cm_strlist *suffixes,
                        bool *have_suffixes, struct ctl_job_req *jr, char *msg, size_t msglen)
{
    static const char *const cred_keys[] = {"ak",          "sk",       "endpoint",   "region",
                                            "hf_endpoint", "hf_token", "hf_revision"};
    if (!extra)
        return 0;
    int st = ctl_json_check(extra, extra_fields, "download_extra_config.", msg, msglen);
    if (st != 0)
        return st;
    for (size_t i = 0; i < sizeof cred_keys / sizeof *cred_keys; i++) {
        const char *v = ctl_json_str(extra, cred_keys[i]);
        if (v && ctl_creds_set(creds, cred_keys[i], v) != 0) {
            snprintf(msg, msglen, "out of memory");
            return 500;
        }
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(extra, "num_threads");
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(extra, "part_chunksize");
    if ((cJSON_IsNumber(t) && t->valuedouble < 1) || (cJSON_IsNumber(cs) && cs->valuedouble < 1)) {
        snprintf(msg, msglen, "num_threads and part_chunksize must be positive");
        return 422;
    }
    jr->threads = cJSON_IsNumber(t) ? (uint64_t)t->valuedouble : 0;
    jr->chunk_size = cJSON_IsNumber(cs) ? (uint64_t)cs->valuedouble : 0;
    jr->force = ctl_json_bool(extra, "force_download", false);
    const cJSON *sfx = cJSON_GetObjectItemCaseSensitive(extra, "allow_file_suffix");
    if (sfx && !cJSON_IsNull(sfx)) {
        *have_suffixes = true;
        if (add_strlist(suffixes, sfx) != 0) {
            snprintf(msg, msglen, "out of memory");
            return 500;
        }
    }
    return 0;
}

/* Resolve model_uri: a URI, an org/name, or an existing local directory (file://). */
static int download_uri(const char *text, struct cm_uri *uri, char *canon, size_t canonlen,
                        char *msg, size_t msglen)
{
    bool bad = false;
    char real[PATH_MAX];
    if (ctl_is_model_uri(text, uri, &bad, msg, msglen)) {
        snprintf(canon, canonlen, "%s", text);
        return bad ? 422 : 0;
    }
    if (!realpath(text, real)) {
        snprintf(msg, msglen, "model_uri '%.200s' is neither a model URI nor a local directory",
                 text);
        return 422;
    }
    snprintf(canon, canonlen, "file://%s", real);
    return cm_uri_parse(canon, uri, msg, msglen) == 0 ? 0 : 422;
}

static void download_locked(struct ctl_state *c, const cJSON *body, struct ctl_response *resp)
{
    char msg[2048], canon[CM_URI_MAX], name[512], local[PATH_MAX], root[PATH_MAX + 512];
    struct cm_uri uri;
    struct ctl_creds creds = {0};
    struct cm_strlist suffixes = {0};
    bool have_suffixes = false;
    struct ctl_job_req jr = {0};
    struct ctl_job *job = NULL;
    int st =
        download_uri(ctl_json_str(body, "model_uri"), &uri, canon, sizeof canon, msg, sizeof msg);
    const char *given = ctl_json_str(body, "model_name");
    if (st == 0) {
        if (given)
            snprintf(name, sizeof name, "%s", given);
        else if (cm_uri_default_name(&uri, name, sizeof name) != 0)
            name[0] = '\0';
        if (!name[0] || cm_name_check(name, strlen(name))) {
            snprintf(msg, sizeof msg,
                     "invalid model_name '%.200s' (a relative path inside "
                     "local_dir, without '..')",
                     name);
            st = 422;
        }
    }
    if (st == 0)
        st = extra_config(ctl_json_obj(body, "download_extra_config"), &creds, &suffixes,
                          &have_suffixes, &jr, msg, sizeof msg);
    if (st != 0) {
        ctl_error(resp, st, msg);
        goto out;
    }
    local_dir_of(ctl_json_str(body, "local_dir"), local, sizeof local);
    snprintf(root, sizeof root, "%s/%s", local, name);
    const char *source = cm_uri_source_name(uri.kind);

    pthread_mutex_lock(&c->lock);
    job = ctl_job_find(c, root);
    bool running = job && job->state == CTL_JOB_RUNNING;
    pthread_mutex_unlock(&c->lock);
    if (running) {
        respond_object(resp, 200, model_card(name, root, source, "downloading", NULL));
        goto out;
    }
    if (job)
        ctl_job_drop(c, job); /* a finished one: this request decides anew */
    const char *disk_source = NULL;
    const char *on_disk = disk_status(root, &disk_source);
    if (!jr.force && on_disk && strcmp(on_disk, "downloaded") == 0) {
        respond_object(resp, 200, model_card(name, root, source, "downloaded", NULL));
        goto out;
    }
    jr.uri_text = canon;
    jr.uri = &uri;
    jr.model_name = name;
    jr.root = root;
    jr.creds = &creds;
    jr.suffixes = have_suffixes ? &suffixes : NULL;
    if ((st = ctl_job_prepare(c, &jr, &job, msg, sizeof msg)) != 0 ||
        (st = ctl_job_start(c, job, msg, sizeof msg)) != 0) {
        ctl_error(resp, st, msg);
        goto out;
    }
    cm_info("control", "download of %s into %s started", canon, root);
    respond_object(resp, 200, model_card(name, root, source, "downloading", NULL));
out:
    ctl_creds_free(&creds);
    cm_strlist_free(&suffixes);
}

void ctl_route_model_download(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    char msg[1024];
    cJSON *body;
    int st =
        ctl_body_parse_checked(req->body, req->body_len, download_fields, &body, msg, sizeof msg);
    if (st != 0) {
        ctl_error(resp, st, msg);
        return;
    }
    pthread_mutex_lock(&c->download_lock);
    download_locked(c, body, resp);
    pthread_mutex_unlock(&c->download_lock);
    cJSON_Delete(body);
}

/* ---- GET /v1/model/list ----------------------------------------------------------------- */

static bool listed(const cJSON *data, const char *root)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, data)
    {
        const char *r =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "model_root_path"));
        if (r && strcmp(r, root) == 0)
            return true;
    }
    return false;
}

/* Models on disk below local: <local>/<name> and <local>/<org>/<name> (HF names). */
static void list_disk(const char *local, const char *prefix, cJSON *data, int depth)
{
    char dir[PATH_MAX], root[PATH_MAX], name[512];
    snprintf(dir, sizeof dir, "%s%s%s", local, prefix[0] ? "/" : "", prefix);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || de->d_type != DT_DIR)
            continue;
        snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "/" : "", de->d_name);
        snprintf(root, sizeof root, "%s/%s", local, name);
        const char *source = NULL, *status = disk_status(root, &source);
        if (status && !listed(data, root))
            cJSON_AddItemToArray(data, model_card(name, root, source, status, NULL));
        else if (!status && depth == 0)
            list_disk(local, de->d_name, data, 1);
    }
    if (d)
        closedir(d);
}

void ctl_route_model_list(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    char msg[1024], local[PATH_MAX];
    cJSON *body = NULL;
    bool empty = strspn(req->body, " \t\r\n") == req->body_len;
    int st = empty ? 0
                   : ctl_body_parse_checked(req->body, req->body_len, list_fields, &body, msg,
                                            sizeof msg);
    if (st != 0) {
        ctl_error(resp, st, msg);
        return;
    }
    local_dir_of(body ? ctl_json_str(body, "local_dir") : NULL, local, sizeof local);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    size_t n = strlen(local);
    pthread_mutex_lock(&c->lock);
    for (struct ctl_job *j = c->jobs; j; j = j->next) {
        if (!j->background || strncmp(j->root, local, n) != 0 || j->root[n] != '/')
            continue;
        cJSON_AddItemToArray(data, model_card(j->model_name, j->root, j->source, job_status(j),
                                              j->state == CTL_JOB_FAILED ? j->error : NULL));
    }
    pthread_mutex_unlock(&c->lock);
    list_disk(local, "", data, 0);
    respond_object(resp, 200, o);
    cJSON_Delete(body);
}

/* ---- GET /v1/models --------------------------------------------------------------------- */

void ctl_route_models(void *ctx, const struct ctl_request *req, struct ctl_response *resp)
{
    struct ctl_state *c = ctl_state_of(ctx);
    char msg[1024];
    char *body = NULL;
    bool json = false;
    int st =
        ctl_engine_get(&c->engine, "/v1/models", req->authorization, &body, &json, msg, sizeof msg);
    if (!body) {
        ctl_error(resp, st, msg);
        return;
    }
    free(resp->body);
    resp->body = body;
    resp->status = st;
    resp->content_type = json ? "application/json" : "text/plain; charset=utf-8";
}
