/* server.c - libmicrohttpd glue: body collection with limits, routing, error bodies.
 *
 * Threads: a small pool of MHD threads (epoll) answers every request whose route is quick
 * (health, readiness, the mounts list...). A route marked blocking (it waits on the engine, a
 * fetch or a listing: /metrics, LoRA loads, mounts) runs on a thread of its own while its
 * connection is suspended, so a LoRA load that takes minutes never holds up /healthz, and a
 * wrk on /healthz costs a handful of threads instead of one per connection. */
#include "server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "auth.h"

/* How long ctl_server_stop lets requests in flight finish before closing connections. */
#define DRAIN_BUDGET_MS 5000
/* MHD threads answering quick routes (blocking ones get a thread each). */
#define POOL_THREADS 2

struct ctl_server {
    struct MHD_Daemon *daemon;
    const struct ctl_route *routes;
    size_t nroutes;
    void *ctx;
    int inflight;  /* requests between their headers and their completion (atomic) */
    int workers;   /* blocking handlers running on their own threads (atomic) */
    bool stopping; /* ctl_server_stop has begun (atomic): see there */
};

/* Per-connection state while the body arrives. */
struct upload {
    char *buf;
    size_t len;
    bool too_large;
    bool late;          /* the headers arrived after ctl_server_stop began */
    struct timespec t0; /* when the headers arrived */
    /* a blocking route: its worker fills resp, sets answered, then resumes the connection */
    struct ctl_response resp;
    bool answered; /* atomic */
    struct ctl_request req;
    const struct ctl_route *route;
    struct ctl_server *s;
    struct MHD_Connection *conn;
};

/* Process-wide: every server reports to the one metrics registry. */
static ctl_observer_fn observer;

void ctl_server_set_observer(ctl_observer_fn fn)
{
    __atomic_store_n(&observer, fn, __ATOMIC_RELEASE);
}

/* The route path that url names, or "other": a bounded label, never the raw URL. */
static const char *route_label(const struct ctl_server *s, const char *url)
{
    for (size_t i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].path, url) == 0)
            return s->routes[i].path;
    return "other";
}

static void observe(const struct ctl_server *s, const char *method, const char *url, int status,
                    const struct upload *up)
{
    ctl_observer_fn fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    struct timespec t1;
    if (!fn)
        return;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fn(method, route_label(s, url), status,
       (double)(t1.tv_sec - up->t0.tv_sec) + (double)(t1.tv_nsec - up->t0.tv_nsec) / 1e9);
}

static const struct {
    int status;
    const char *type;
} error_types[] = {
    {400, "BadRequestError"},     {401, "AuthenticationError"},  {403, "PermissionDeniedError"},
    {404, "NotFoundError"},       {405, "MethodNotAllowed"},     {409, "ConflictError"},
    {413, "RequestTooLarge"},     {422, "InvalidArgumentError"}, {500, "InternalServerError"},
    {501, "NotImplementedError"}, {502, "BadGatewayError"},      {503, "ServiceUnavailable"},
};

void ctl_error(struct ctl_response *resp, int status, const char *message)
{
    const char *type = "ServerError";
    for (size_t i = 0; i < sizeof error_types / sizeof *error_types; i++)
        if (error_types[i].status == status)
            type = error_types[i].type;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "error");
    cJSON_AddStringToObject(o, "message", message);
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddNullToObject(o, "param");
    cJSON_AddNumberToObject(o, "code", status);
    free(resp->body);
    resp->body = cJSON_PrintUnformatted(o);
    resp->status = status;
    resp->content_type = NULL;
    cJSON_Delete(o);
}

void ctl_json(struct ctl_response *resp, int status, const char *json)
{
    free(resp->body);
    resp->body = strdup(json);
    resp->status = status;
    resp->content_type = NULL;
}

/* The body moves into the MHD response, which frees it (no copy: /metrics bodies are large);
 * r->body is NULL afterwards unless that failed. Once the server is stopping, the answer also
 * closes its connection. */
static enum MHD_Result send_response(struct ctl_server *s, struct MHD_Connection *conn,
                                     struct ctl_response *r)
{
    struct MHD_Response *m =
        r->body ? MHD_create_response_from_buffer(strlen(r->body), r->body, MHD_RESPMEM_MUST_FREE)
                : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!m)
        return MHD_NO;
    r->body = NULL;
    MHD_add_response_header(m, "Content-Type",
                            r->content_type ? r->content_type : "application/json");
    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)r->status, m);
    MHD_destroy_response(m);
    return ok;
}

/* Successes are counted in the metrics, not logged (a scrape every few seconds would drown
 * the log); a refused or failed request is logged with the error body the caller got, at
 * most REFUSALS_PER_S lines a second: a client hammering a bad path cannot flood the log (the
 * next line that gets through says how many were left out). */
#define REFUSALS_PER_S 20

static void log_refusal(const char *method, const char *url, const struct ctl_response *r)
{
    static long window;
    static int logged, skipped;
    if (r->status < 400)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (__atomic_exchange_n(&window, (long)now.tv_sec, __ATOMIC_RELAXED) != (long)now.tv_sec)
        __atomic_store_n(&logged, 0, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&logged, 1, __ATOMIC_RELAXED) > REFUSALS_PER_S) {
        __atomic_add_fetch(&skipped, 1, __ATOMIC_RELAXED);
        return;
    }
    int quiet = __atomic_exchange_n(&skipped, 0, __ATOMIC_RELAXED);
    const char *body = r->body && (!r->content_type || strstr(r->content_type, "json")) ? r->body : "";
    cm_log(r->status >= 500 ? CM_LOG_WARN : CM_LOG_INFO, "http", "%s %s -> %d %.300s", method, url,
           r->status, body);
    if (quiet)
        cm_info("http", "%d more refused requests were not logged (at most %d lines a second)",
                quiet, REFUSALS_PER_S);
}

/* Send up->resp, log a refusal, count it. */
static enum MHD_Result answer(struct ctl_server *s, struct MHD_Connection *conn,
                              const char *method, const char *url, struct upload *up)
{
    if (!up->late) /* refusals during shutdown are expected: not worth a line each */
        log_refusal(method, url, &up->resp);
    enum MHD_Result ok = send_response(s, conn, &up->resp);
    free(up->resp.body);
    up->resp.body = NULL;
    observe(s, method, url, up->resp.status, up);
    return ok;
}

static void *run_blocking(void *arg)
{
    struct upload *up = arg;
    struct ctl_server *s = up->s; /* up may be freed as soon as the connection resumes */
    up->route->handler(s->ctx, &up->req, &up->resp);
    __atomic_store_n(&up->answered, true, __ATOMIC_RELEASE);
    MHD_resume_connection(up->conn);
    __atomic_sub_fetch(&s->workers, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Suspend the connection and run the route on a thread of its own; MHD calls on_request
 * again once the worker resumes it, and that call answers. */
static void start_blocking(struct ctl_server *s, struct MHD_Connection *conn, struct upload *up,
                           const struct ctl_route *route)
{
    pthread_attr_t attr;
    pthread_t t;
    up->route = route;
    up->s = s;
    up->conn = conn;
    MHD_suspend_connection(conn);
    __atomic_add_fetch(&s->workers, 1, __ATOMIC_ACQUIRE);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, run_blocking, up) != 0) {
        __atomic_sub_fetch(&s->workers, 1, __ATOMIC_RELEASE);
        ctl_error(&up->resp, 503, "out of threads: try again");
        __atomic_store_n(&up->answered, true, __ATOMIC_RELEASE);
        MHD_resume_connection(conn);
    }
    pthread_attr_destroy(&attr);
}

static enum MHD_Result dispatch(struct ctl_server *s, struct MHD_Connection *conn,
                                const char *method, const char *url, struct upload *up)
{
    bool path_known = false;
    up->resp = (struct ctl_response){.status = 200};
    up->req = (struct ctl_request){
        .method = method,
        .path = url,
        .body = up->buf ? up->buf : "",
        .body_len = up->len,
        .authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
    };
    if (up->late) {
        ctl_error(&up->resp, 503, "the runtime is shutting down");
    } else if (!ctl_auth_ok(url, up->req.authorization)) {
        /* before anything else under /v1/: an unauthenticated caller learns nothing */
        ctl_error(&up->resp, 401, "missing or wrong API key: send 'Authorization: Bearer <key>'");
    } else if (up->too_large) {
        ctl_error(&up->resp, 413, "request body larger than 1 MiB");
    } else {
        const struct ctl_route *hit = NULL;
        for (size_t i = 0; i < s->nroutes && !hit; i++) {
            if (strcmp(s->routes[i].path, url) != 0)
                continue;
            path_known = true;
            if (strcmp(s->routes[i].method, method) == 0)
                hit = &s->routes[i];
        }
        if (hit && hit->blocking) {
            start_blocking(s, conn, up, hit);
            return MHD_YES;
        }
        if (hit)
            hit->handler(s->ctx, &up->req, &up->resp);
        else if (path_known)
            ctl_error(&up->resp, 405, "method not allowed");
        else
            ctl_error(&up->resp, 404, "not found");
    }
    return answer(s, conn, method, url, up);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    struct ctl_server *s = cls;
    struct upload *up = *con_cls;
    (void)version;
    if (up && __atomic_load_n(&up->answered, __ATOMIC_ACQUIRE))
        return answer(s, conn, method, url, up); /* a blocking route's worker is done */
    if (!up) {
        /* first call: headers only */
        up = calloc(1, sizeof *up);
        if (!up)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &up->t0);
        up->late = __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
        __atomic_add_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
        *con_cls = up;
        return MHD_YES;
    }
    if (*data_size) {
        if (!up->too_large && up->len + *data_size <= CTL_MAX_BODY) {
            char *grown = realloc(up->buf, up->len + *data_size + 1);
            if (!grown)
                return MHD_NO;
            memcpy(grown + up->len, data, *data_size);
            up->buf = grown;
            up->len += *data_size;
            up->buf[up->len] = '\0';
        } else {
            up->too_large = true;
        }
        *data_size = 0;
        return MHD_YES;
    }
    return dispatch(s, conn, method, url, up);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ctl_server *s = cls;
    struct upload *up = *con_cls;
    (void)conn, (void)toe;
    if (up) {
        __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELEASE);
        free(up->resp.body);
        free(up->buf);
        free(up);
        *con_cls = NULL;
    }
}

static int resolve(const char *host, unsigned port, struct sockaddr_storage *ss, char *err,
                   size_t errlen)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%u", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve --host %s: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

struct ctl_server *ctl_server_start(const char *host, unsigned port, const struct ctl_route *routes,
                                    size_t nroutes, void *ctx, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    if (resolve(host, port, &addr, err, errlen) != 0)
        return NULL;
    struct ctl_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->routes = routes;
    s->nroutes = nroutes;
    s->ctx = ctx;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
                     MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
        MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        free(s);
        return NULL;
    }
    cm_info("http", "listening on %s:%u", host, port);
    return s;
}

void ctl_server_stop(struct ctl_server *s)
{
    if (!s)
        return;
    /* Stop accepting, let what is in flight finish (bounded), then close every connection.
     * Quiescing only closes the door to new connections: keep-alive clients would go on
     * sending requests on theirs, so under steady load the drain would never see zero in
     * flight and always cost its whole budget. From here on every answer closes its
     * connection, and a request whose headers arrive now is refused with 503 (it is not in
     * flight), so each connection carries at most the request it already had. */
    __atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
    MHD_quiesce_daemon(s->daemon);
    for (int ms = 0; ms < DRAIN_BUDGET_MS && __atomic_load_n(&s->inflight, __ATOMIC_ACQUIRE) > 0;
         ms += 10)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    int left = __atomic_load_n(&s->inflight, __ATOMIC_ACQUIRE);
    if (left > 0)
        cm_warn("http", "requests still in flight after the %d ms drain: closing them count=%d",
                DRAIN_BUDGET_MS, left);
    /* a worker still running owns a suspended connection and uses s: the daemon cannot stop
     * under it. Its waits were woken by ctl_state_stop, so this is short; if one still hangs,
     * leave the server to the process exit rather than free what it uses. */
    for (int ms = 0; ms < DRAIN_BUDGET_MS && __atomic_load_n(&s->workers, __ATOMIC_ACQUIRE) > 0;
         ms += 10)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    if (__atomic_load_n(&s->workers, __ATOMIC_ACQUIRE) > 0) {
        cm_warn("http", "a blocking request did not finish: leaving the server to the exit");
        return;
    }
    MHD_stop_daemon(s->daemon);
    free(s);
}
