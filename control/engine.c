/* engine.c - LoRA and pass-through calls to the inference engine (see engine.h). */
#include "engine.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/env.h"
#include "../common/log.h"

#define CONNECT_TIMEOUT_MS 10000L
#define TOTAL_TIMEOUT_MS 30000L
#define MAX_ENGINE_BODY (16u << 20)

static const struct {
    const char *name;
    enum ctl_engine_kind kind;
} engines[] = {
    {"vllm", CTL_ENGINE_VLLM},     {"sglang", CTL_ENGINE_SGLANG}, {"llamacpp", CTL_ENGINE_LLAMACPP},
    {"trtllm", CTL_ENGINE_TRTLLM}, {"tgi", CTL_ENGINE_TGI},       {"triton", CTL_ENGINE_TRITON},
};

/* What the engine's replies mean, by the words engines use (vLLM, SGLang). */
static const char *const already_phrases[] = {"already been loaded", "already loaded",
                                              "already exists"};
static const char *const missing_phrases[] = {"cannot be found", "not found", "does not exist",
                                              "not loaded"};

void ctl_engine_init(struct ctl_engine *e)
{
    const char *name = cm_env_str("INFERENCE_ENGINE");
    const char *ep = cm_env_str("INFERENCE_ENGINE_ENDPOINT");
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name ? name : "vllm");
    for (char *p = e->name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    e->kind = CTL_ENGINE_UNKNOWN;
    for (size_t i = 0; i < sizeof engines / sizeof *engines; i++)
        if (strcmp(e->name, engines[i].name) == 0)
            e->kind = engines[i].kind;
    if (e->kind == CTL_ENGINE_UNKNOWN)
        cm_warn("engine", "unknown INFERENCE_ENGINE '%s': LoRA calls answer 501", e->name);
    snprintf(e->endpoint, sizeof e->endpoint, "%s", ep ? ep : "http://localhost:8000");
    size_t n = strlen(e->endpoint);
    while (n && e->endpoint[n - 1] == '/')
        e->endpoint[--n] = '\0';
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- one call ---------------------------------------------------------------------------- */

struct reply {
    long status; /* 0: no answer */
    char *body;  /* malloc'd, NUL-terminated */
    size_t len;
    bool json;
};

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const atomic_bool *cancel = ctx;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return cancel && atomic_load(cancel) ? 1 : 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct reply *r = ctx;
    size_t n = size * nmemb;
    if (r->len + n > MAX_ENGINE_BODY)
        return 0; /* aborts the transfer */
    char *grown = realloc(r->body, r->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + r->len, data, n);
    r->body = grown;
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* Run one request. Returns 0 when the engine answered (r->status set), else 502 (cannot
 * connect, connection dropped) or 504 (timed out), with msg naming the endpoint and cause. */
static int call(const struct ctl_engine *e, const char *method, const char *path,
                const char *json_body, const char *authorization, struct reply *r, char *msg,
                size_t msglen)
{
    char url[2048], auth[8192];
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "%s%s", e->endpoint, path);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(msg, msglen, "cannot start an HTTP client for the engine");
        return 502;
    }
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Accept: application/json, text/plain");
    if (authorization && *authorization) {
        snprintf(auth, sizeof auth, "Authorization: %s", authorization);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (json_body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)e->cancel);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(h);
    int out = 0;
    if (rc == CURLE_OK) {
        char *ctype = NULL;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
        r->json = ctype && strncasecmp(ctype, "application/json", 16) == 0;
        if (!r->body)
            r->body = strdup("");
    } else {
        out = rc == CURLE_OPERATION_TIMEDOUT ? 504 : rc == CURLE_ABORTED_BY_CALLBACK ? 503 : 502;
        snprintf(msg, msglen, "inference engine %s at %s %s: %s", e->name, e->endpoint,
                 out == 504   ? "did not answer in time"
                 : out == 503 ? "was not waited for: the runtime is shutting down"
                              : "is unreachable",
                 curl_easy_strerror(rc));
        free(r->body);
        r->body = NULL;
        cm_warn("engine", "%s %s: %s", method, url, curl_easy_strerror(rc));
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return out;
}

/* ---- reading replies --------------------------------------------------------------------- */

static bool has_phrase(const char *text, const char *const *phrases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasestr(text, phrases[i]))
            return true;
    return false;
}

static void copy_trimmed(char *out, size_t outlen, const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    snprintf(out, outlen, "%s", s);
    size_t n = strlen(out);
    while (n && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
}

static const char *str_member(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The message of an engine's error body, whatever its shape: vLLM >= 0.10.1
 * {"error":{"message"}}, older vLLM {"object":"error","message"}, SGLang {"error_message"},
 * FastAPI {"detail": "..." | [{"msg"}]}; else the body's text. */
static void error_message(const char *body, char *out, size_t outlen)
{
    cJSON *j = cJSON_Parse(body);
    const char *m = NULL;
    if (cJSON_IsObject(j)) {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(j, "detail");
        if (cJSON_IsObject(err))
            m = str_member(err, "message");
        if (!m)
            m = str_member(j, "message");
        if (!m)
            m = str_member(j, "error_message");
        if (!m && cJSON_IsString(err))
            m = err->valuestring;
        if (!m && cJSON_IsString(detail))
            m = detail->valuestring;
        if (!m && cJSON_IsArray(detail) && cJSON_IsObject(detail->child))
            m = str_member(detail->child, "msg");
    }
    copy_trimmed(out, outlen, m ? m : body);
    if (!out[0])
        snprintf(out, outlen, "(no message)");
    cJSON_Delete(j);
}

/* Map an engine's failure to the API's status: its words first ("already loaded" is 409,
 * "not found" on unload is 404), else its own status when that is an error status. */
static int failure_status(long engine_status, const char *message, bool unload)
{
    if (has_phrase(message, already_phrases, sizeof already_phrases / sizeof *already_phrases))
        return unload ? (int)engine_status : 409;
    if (unload &&
        has_phrase(message, missing_phrases, sizeof missing_phrases / sizeof *missing_phrases))
        return 404;
    if (engine_status >= 400 && engine_status <= 599)
        return (int)engine_status;
    return 502;
}

static bool no_lora_api(const struct ctl_engine *e, struct ctl_engine_result *out)
{
    out->status = 501;
    if (e->kind == CTL_ENGINE_LLAMACPP)
        snprintf(out->message, sizeof out->message,
                 "llama.cpp cannot add LoRA adapters at run time: llama-server only re-scales "
                 "adapters given at start with --lora (POST /lora-adapters); restart it with "
                 "--lora <path> instead");
    else if (e->kind != CTL_ENGINE_VLLM && e->kind != CTL_ENGINE_SGLANG)
        snprintf(out->message, sizeof out->message,
                 "inference engine '%s' has no run-time LoRA API (vllm and sglang have one)",
                 e->name);
    else
        return false;
    return true;
}

/* One LoRA call: POST body to path and read the reply in the engine's dialect. */
static void lora_call(const struct ctl_engine *e, const char *path, const char *name, cJSON *body,
                      const char *authorization, bool unload, struct ctl_engine_result *out)
{
    struct reply r;
    char *text = cJSON_PrintUnformatted(body);
    memset(out, 0, sizeof *out);
    out->status =
        text ? call(e, "POST", path, text, authorization, &r, out->message, sizeof out->message)
             : 500;
    free(text);
    if (out->status != 0)
        return;
    bool ok = r.status >= 200 && r.status < 300;
    if (e->kind == CTL_ENGINE_SGLANG) {
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *success = cJSON_GetObjectItemCaseSensitive(j, "success");
        if (cJSON_IsBool(success))
            ok = ok && cJSON_IsTrue(success);
        cJSON_Delete(j);
        if (ok)
            snprintf(out->message, sizeof out->message, "SGLang %s LoRA adapter '%s'.",
                     unload ? "unloaded" : "loaded", name);
    } else if (ok) {
        copy_trimmed(out->message, sizeof out->message, r.body);
    }
    if (ok) {
        out->status = 200;
    } else {
        error_message(r.body, out->message, sizeof out->message);
        /* SGLang answers 400 with success=false; a 2xx with success=false counts as 400 */
        out->status = failure_status(r.status < 300 ? 400 : r.status, out->message, unload);
        cm_warn("engine", "%s %s: %ld %s", unload ? "unload" : "load", name, r.status,
                out->message);
    }
    free(r.body);
}

void ctl_engine_load_lora(const struct ctl_engine *e, const char *name, const char *path,
                          const char *authorization, struct ctl_engine_result *out)
{
    memset(out, 0, sizeof *out);
    if (no_lora_api(e, out))
        return;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "lora_name", name);
    cJSON_AddStringToObject(body, "lora_path", path);
    lora_call(e, e->kind == CTL_ENGINE_SGLANG ? "/load_lora_adapter" : "/v1/load_lora_adapter",
              name, body, authorization, false, out);
    cJSON_Delete(body);
}

void ctl_engine_unload_lora(const struct ctl_engine *e, const char *name, const char *authorization,
                            struct ctl_engine_result *out)
{
    memset(out, 0, sizeof *out);
    if (no_lora_api(e, out))
        return;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "lora_name", name);
    lora_call(e, e->kind == CTL_ENGINE_SGLANG ? "/unload_lora_adapter" : "/v1/unload_lora_adapter",
              name, body, authorization, true, out);
    cJSON_Delete(body);
}

int ctl_engine_get(const struct ctl_engine *e, const char *path, const char *authorization,
                   char **body, bool *json, char *msg, size_t msglen)
{
    struct reply r;
    *body = NULL;
    *json = false;
    int st = call(e, "GET", path, NULL, authorization, &r, msg, msglen);
    if (st != 0)
        return st;
    *body = r.body;
    *json = r.json;
    return (int)r.status;
}
