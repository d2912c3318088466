/* control.h - the control plane's routes beyond health: LoRA adapters (SPEC §7), model mounts
 * and downloads (SPEC §5), and the engine's /v1/models.
 *
 * The state they share (engine client, LoRA registry, download jobs) is a struct ctl_state
 * owned by the runtime: made before the HTTP server starts, stopped before it stops (so a
 * request waiting on a fetch or a lock returns at once), freed after. Route handlers take the
 * struct runtime as their context, like every route of runtime.c's table. */
#ifndef CTL_CONTROL_H
#define CTL_CONTROL_H

#include <stddef.h>

#include "../fs/fs.h"
#include "server.h"

struct ctl_state;

/* mount_point is NULL without --mount-point. NULL with err set on failure. */
struct ctl_state *ctl_state_new(const char *mount_point, char *err, size_t errlen);
/* The filesystem serving mount_point, once it serves (borrowed; must outlive the state).
 * Until then mount routes answer 503. */
void ctl_state_attach_fs(struct ctl_state *c, struct fs *fs);
/* That filesystem, or NULL without --mount-point or before it serves. */
struct fs *ctl_state_fs(struct ctl_state *c);
/* Wake every waiting request (they answer 503) and cancel downloads. Idempotent. */
void ctl_state_stop(struct ctl_state *c);
/* Stop, join the download threads, free. No request may be running. NULL is a no-op. */
void ctl_state_free(struct ctl_state *c);

/* routes_lora.c */
void ctl_route_lora_load(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void ctl_route_lora_unload(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
/* routes_models.c */
void ctl_route_model_mount(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void ctl_route_model_unmount(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void ctl_route_model_mounts(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void ctl_route_model_download(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void ctl_route_model_list(void *ctx, const struct ctl_request *req, struct ctl_response *resp);
void ctl_route_models(void *ctx, const struct ctl_request *req, struct ctl_response *resp);

#endif
