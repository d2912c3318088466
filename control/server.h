/* server.h - the HTTP control plane's server: libmicrohttpd, a routing table, AIBrix errors.
 *
 * Handlers receive the whole request (the body is collected first, bounded at 1 MiB; larger
 * bodies are answered 413 before any handler runs) and fill a response. Errors anywhere use
 * AIBrix's body {"object":"error","message":...,"type":...,"param":null,"code":N}. */
#ifndef CTL_SERVER_H
#define CTL_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_MAX_BODY (1u << 20)

struct ctl_request {
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated, may be "" */
    size_t body_len;
    const char *authorization; /* the Authorization header, or NULL */
};

struct ctl_response {
    int status;
    char *body;               /* owned (malloc); the server frees it */
    const char *content_type; /* static string; NULL = application/json */
};

typedef void (*ctl_handler_fn)(void *ctx, const struct ctl_request *req, struct ctl_response *resp);

struct ctl_route {
    const char *method;
    const char *path;
    ctl_handler_fn handler;
    bool blocking; /* may wait (engine, fetch, listing): runs on a thread of its own */
};

struct ctl_server;

/* Serve routes on host:port: quick routes on a small thread pool, blocking ones on a thread
 * each. routes must outlive the server.
 * NULL with err set on failure. */
struct ctl_server *ctl_server_start(const char *host, unsigned port, const struct ctl_route *routes,
                                    size_t nroutes, void *ctx, char *err, size_t errlen);
/* Called after every response with the method, the path of the route the URL names ("other"
 * for a path no route serves: a bounded label, never the raw URL), the status and the seconds
 * since the request's headers arrived (the metrics hook). Process-wide; set it before
 * ctl_server_start, NULL to stop. It runs on the server's threads and must not block. */
typedef void (*ctl_observer_fn)(const char *method, const char *route, int status, double seconds);
void ctl_server_set_observer(ctl_observer_fn fn);

/* Stop accepting, finish in-flight requests (bounded), free. Requests that arrive on open
 * connections meanwhile are answered 503, and every answer from then on closes its connection. */
void ctl_server_stop(struct ctl_server *s);

/* Fill resp with an AIBrix error body; message is copied (and JSON-escaped). */
void ctl_error(struct ctl_response *resp, int status, const char *message);
/* Fill resp with a JSON text (copied). */
void ctl_json(struct ctl_response *resp, int status, const char *json);

#endif
