/* control.c - the control plane's shared state, credentials and small helpers (see
 * control.h and control_private.h). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/env.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "control_private.h"
#include "runtime.h"

#define SECRET_FILE_MAX 8192

struct ctl_state *ctl_state_of(void *ctx)
{
    return ((struct runtime *)ctx)->control;
}

/* realpath of the parent + the last name: the mount point itself may hold a stale mount
 * until the filesystem starts, and lstat on it would fail. */
static int absolute_mount_point(const char *mp, char *out, size_t outlen)
{
    char parent[PATH_MAX], copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", mp);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    if (slash == copy)
        snprintf(parent, sizeof parent, "/");
    else if (slash)
        *slash = '\0', snprintf(parent, sizeof parent, "%s", copy);
    else
        snprintf(parent, sizeof parent, ".");
    char real[PATH_MAX];
    if (!realpath(parent, real))
        return -errno;
    snprintf(out, outlen, "%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/", base);
    return 0;
}

struct fs *ctl_state_fs(struct ctl_state *c)
{
    return atomic_load(&c->fs);
}

void ctl_state_attach_fs(struct ctl_state *c, struct fs *fs)
{
    atomic_store(&c->fs, fs);
}

struct ctl_state *ctl_state_new(const char *mount_point, char *err, size_t errlen)
{
    struct ctl_state *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc =
        mount_point ? absolute_mount_point(mount_point, c->mount_point, sizeof c->mount_point) : 0;
    if (rc != 0) {
        snprintf(err, errlen, "--mount-point %s: %s", mount_point, strerror(-rc));
        free(c);
        return NULL;
    }
    ctl_engine_init(&c->engine);
    c->engine.cancel = &c->stopping;
    const char *ad = cm_env_str("AIBRIX_ADAPTER_DIR");
    const char *sd = cm_env_str("AIBRIX_SECRETS_DIR");
    snprintf(c->adapter_dir, sizeof c->adapter_dir, "%s", ad ? ad : "/tmp/aibrix/adapters");
    snprintf(c->secrets_dir, sizeof c->secrets_dir, "%s", sd ? sd : "/var/run/secrets/aibrix");
    c->fetch_timeout_s = cm_env_u64("AIBRIX_LORA_FETCH_TIMEOUT", 600);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    pthread_mutex_init(&c->download_lock, NULL);
    cm_info("control", "engine=%s endpoint=%s adapters=%s", c->engine.name, c->engine.endpoint,
            mount_point ? c->mount_point : c->adapter_dir);
    return c;
}

void ctl_state_stop(struct ctl_state *c)
{
    if (!c)
        return;
    atomic_store(&c->stopping, true);
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    ctl_jobs_cancel(c);
}

void ctl_state_free(struct ctl_state *c)
{
    if (!c)
        return;
    ctl_state_stop(c);
    ctl_jobs_free(c);
    for (struct ctl_lora *l = c->loras, *next; l; l = next) {
        next = l->next;
        free(l);
    }
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->download_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- credentials ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t field; /* offset of the char * in struct ctl_creds */
    bool secret;  /* masked in logs */
} cred_names[] = {
    {"AWS_ACCESS_KEY_ID", offsetof(struct ctl_creds, ak), false},
    {"TOS_ACCESS_KEY", offsetof(struct ctl_creds, ak), false},
    {"access_key_id", offsetof(struct ctl_creds, ak), false},
    {"access_key", offsetof(struct ctl_creds, ak), false},
    {"ak", offsetof(struct ctl_creds, ak), false},
    {"AWS_SECRET_ACCESS_KEY", offsetof(struct ctl_creds, sk), true},
    {"TOS_SECRET_KEY", offsetof(struct ctl_creds, sk), true},
    {"secret_access_key", offsetof(struct ctl_creds, sk), true},
    {"secret_key", offsetof(struct ctl_creds, sk), true},
    {"sk", offsetof(struct ctl_creds, sk), true},
    {"AWS_SESSION_TOKEN", offsetof(struct ctl_creds, session_token), true},
    {"TOS_SECURITY_TOKEN", offsetof(struct ctl_creds, session_token), true},
    {"session_token", offsetof(struct ctl_creds, session_token), true},
    {"security_token", offsetof(struct ctl_creds, session_token), true},
    {"AWS_ENDPOINT_URL_S3", offsetof(struct ctl_creds, endpoint), false},
    {"AWS_ENDPOINT_URL", offsetof(struct ctl_creds, endpoint), false},
    {"TOS_ENDPOINT", offsetof(struct ctl_creds, endpoint), false},
    {"endpoint_url", offsetof(struct ctl_creds, endpoint), false},
    {"endpoint", offsetof(struct ctl_creds, endpoint), false},
    {"AWS_REGION", offsetof(struct ctl_creds, region), false},
    {"AWS_DEFAULT_REGION", offsetof(struct ctl_creds, region), false},
    {"TOS_REGION", offsetof(struct ctl_creds, region), false},
    {"region", offsetof(struct ctl_creds, region), false},
    {"HF_TOKEN", offsetof(struct ctl_creds, hf_token), true},
    {"HUGGING_FACE_HUB_TOKEN", offsetof(struct ctl_creds, hf_token), true},
    {"hf_token", offsetof(struct ctl_creds, hf_token), true},
    {"token", offsetof(struct ctl_creds, hf_token), true},
    {"HF_ENDPOINT", offsetof(struct ctl_creds, hf_endpoint), false},
    {"hf_endpoint", offsetof(struct ctl_creds, hf_endpoint), false},
    {"HF_REVISION", offsetof(struct ctl_creds, hf_revision), false},
    {"hf_revision", offsetof(struct ctl_creds, hf_revision), false},
    {"revision", offsetof(struct ctl_creds, hf_revision), false},
};
#define NCRED_NAMES (sizeof cred_names / sizeof *cred_names)

static int cred_index(const char *name)
{
    for (size_t i = 0; i < NCRED_NAMES; i++)
        if (strcasecmp(name, cred_names[i].name) == 0)
            return (int)i;
    return -1;
}

/* Set field i to value[0..len) trimmed. Returns 0 or -ENOMEM. */
static int cred_set(struct ctl_creds *cr, int i, const char *value, size_t len)
{
    while (len && strchr(" \t\r\n", *value))
        value++, len--;
    while (len && strchr(" \t\r\n", value[len - 1]))
        len--;
    char **dst = (char **)((char *)cr + cred_names[i].field);
    char *copy = strndup(value, len);
    if (!copy)
        return -ENOMEM;
    if (*dst)
        explicit_bzero(*dst, strlen(*dst));
    free(*dst);
    *dst = copy;
    if (cred_names[i].secret)
        cm_log_add_secret(copy);
    return 0;
}

int ctl_creds_set(struct ctl_creds *cr, const char *name, const char *value)
{
    int i = cred_index(name);
    return i < 0 ? -ENOENT : cred_set(cr, i, value, strlen(value));
}

int ctl_creds_from_json(struct ctl_creds *cr, const cJSON *obj, const char *where, char *msg,
                        size_t msglen)
{
    for (const cJSON *it = obj ? obj->child : NULL; it; it = it->next) {
        int i = cred_index(it->string);
        if (i < 0) {
            snprintf(msg, msglen,
                     "unknown credential '%s%.64s' (accepted: AWS_ACCESS_KEY_ID, "
                     "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION, "
                     "TOS_ACCESS_KEY, TOS_SECRET_KEY, TOS_SECURITY_TOKEN, TOS_ENDPOINT, "
                     "TOS_REGION, HF_TOKEN, HF_ENDPOINT, HF_REVISION, or ak, sk, "
                     "session_token, endpoint, region, hf_token, hf_endpoint, hf_revision)",
                     where, it->string);
            return 422;
        }
        if (!cJSON_IsString(it) || !it->valuestring) {
            snprintf(msg, msglen, "credential '%s%s' must be a string", where, it->string);
            return 422;
        }
        if (cred_set(cr, i, it->valuestring, strlen(it->valuestring)) != 0) {
            snprintf(msg, msglen, "out of memory");
            return 500;
        }
    }
    return 0;
}

int ctl_creds_from_secret(struct ctl_creds *cr, const char *dir, const char *secret, char *msg,
                          size_t msglen)
{
    char path[PATH_MAX], file[PATH_MAX];
    if (!secret[0] || strchr(secret, '/') || cm_name_check(secret, strlen(secret))) {
        snprintf(msg, msglen, "credentials_secret '%.128s' is not a secret name", secret);
        return 400;
    }
    snprintf(path, sizeof path, "%s/%s", dir, secret);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(msg, msglen, "credentials_secret '%s': cannot read %s: %s", secret, path,
                 strerror(errno));
        return errno == ENOENT ? 404 : 500;
    }
    int rc = 0;
    struct dirent *de;
    char *buf = malloc(SECRET_FILE_MAX + 1);
    if (!buf) {
        closedir(d);
        snprintf(msg, msglen, "out of memory");
        return 500;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat sb;
        int i = de->d_name[0] == '.' ? -1 : cred_index(de->d_name);
        if (i < 0)
            continue; /* Kubernetes' ..data links, or a key this runtime does not use */
        snprintf(file, sizeof file, "%s/%s", path, de->d_name);
        if (stat(file, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        ssize_t n = cm_read_file(file, buf, SECRET_FILE_MAX);
        if (n < 0) {
            snprintf(msg, msglen, "credentials_secret '%s': cannot read %s: %s", secret, de->d_name,
                     strerror((int)-n));
            rc = 500;
        } else if (cred_set(cr, i, buf, (size_t)n) != 0) {
            snprintf(msg, msglen, "out of memory");
            rc = 500;
        }
        explicit_bzero(buf, SECRET_FILE_MAX + 1);
    }
    free(buf);
    closedir(d);
    return rc;
}

void ctl_creds_apply(const struct ctl_creds *cr, struct dl_source_config *cfg)
{
    cfg->ak = cr->ak;
    cfg->sk = cr->sk;
    cfg->session_token = cr->session_token;
    cfg->endpoint = cr->endpoint;
    cfg->region = cr->region;
    cfg->hf_token = cr->hf_token;
    cfg->hf_endpoint = cr->hf_endpoint;
    cfg->hf_revision = cr->hf_revision;
}

void ctl_creds_free(struct ctl_creds *cr)
{
    char **all[] = {&cr->ak,     &cr->sk,       &cr->session_token, &cr->endpoint,
                    &cr->region, &cr->hf_token, &cr->hf_endpoint,   &cr->hf_revision};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        if (*all[i])
            explicit_bzero(*all[i], strlen(*all[i]));
        free(*all[i]);
        *all[i] = NULL;
    }
}

/* ---- helpers ---------------------------------------------------------------------------- */

static const int status_of[] = {
    [DL_OK] = 200,
    [DL_ERR_NOTFOUND] = 404,
    [DL_ERR_ACCESS] = 403,
    [DL_ERR_TRANSIENT] = 502,
    [DL_ERR_INTEGRITY] = 502,
    [DL_ERR_STALE] = 409,
    [DL_ERR_INVALID] = 400,
    [DL_ERR_LOCAL] = 500,
    [DL_ERR_CANCELLED] = 503,
};

int ctl_http_status(enum dl_status st)
{
    return (size_t)st < sizeof status_of / sizeof *status_of ? status_of[st] : 500;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int ctl_remove_tree(const char *path)
{
    int rc = nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    if (rc == -1 && errno == ENOENT)
        return 0;
    return rc > 0 ? 0 : rc == -1 ? -errno : rc;
}

bool ctl_is_model_uri(const char *s, struct cm_uri *uri, bool *bad, char *msg, size_t msglen)
{
    static const char *const schemes[] = {"hf://", "huggingface://", "s3://", "tos://", "file://"};
    struct stat sb;
    *bad = false;
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
        if (strncmp(s, schemes[i], strlen(schemes[i])) == 0) {
            *bad = cm_uri_parse(s, uri, msg, msglen) != 0;
            return true;
        }
    }
    if (strstr(s, "://")) {
        *bad = true;
        snprintf(msg, msglen,
                 "unsupported URI '%.200s' (hf://, huggingface://, s3://, tos://, file://, "
                 "org/name, or a local path)",
                 s);
        return true;
    }
    if (s[0] == '/' || s[0] == '.' || stat(s, &sb) == 0)
        return false; /* a local path */
    char ignored[256];
    return cm_uri_parse(s, uri, ignored, sizeof ignored) == 0 && uri->kind == CM_URI_HF;
}
