/* engine.h - the inference engine beside the runtime, as the control plane talks to it.
 *
 * INFERENCE_ENGINE picks the dialect, INFERENCE_ENGINE_ENDPOINT (default
 * http://localhost:8000) the address. LoRA calls (SPEC §7):
 *   vllm      POST /v1/load_lora_adapter, /v1/unload_lora_adapter; 2xx text on success; errors
 *             are {"object":"error","message":..} (before 0.10.1) or {"error":{"message":..}}
 *   sglang    POST /load_lora_adapter, /unload_lora_adapter; JSON {"success":bool,
 *             "error_message":..} (400 on failure)
 *   llamacpp  cannot add adapters at run time (only re-scale those given with --lora): 501
 *   trtllm, tgi, triton and unknown engines have no run-time LoRA API: 501
 * Every request carries Content-Type: application/json and the caller's Authorization header
 * (AIBrix's controller sends the engine's API key there). One curl easy handle per call:
 * these calls are rare, and a fresh connection never inherits a half-dead one. Timeouts:
 * connect 10 s, whole call 30 s.
 *
 * Outcomes are reduced to the HTTP status the API answers: 200; 409 "already loaded"; 404
 * "not found" (unload of an unknown name, or the engine found no adapter at the path); the
 * engine's own 4xx/5xx; 501 no LoRA API; 502 unreachable; 504 timed out; 503 cancelled
 * (shutdown). */
#ifndef CTL_ENGINE_H
#define CTL_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum ctl_engine_kind {
    CTL_ENGINE_VLLM,
    CTL_ENGINE_SGLANG,
    CTL_ENGINE_LLAMACPP,
    CTL_ENGINE_TRTLLM,
    CTL_ENGINE_TGI,
    CTL_ENGINE_TRITON,
    CTL_ENGINE_UNKNOWN,
};

struct ctl_engine {
    enum ctl_engine_kind kind;
    char name[32];             /* as configured, lowercased */
    char endpoint[1024];       /* without a trailing '/' */
    const atomic_bool *cancel; /* when set and true, calls stop at once (503); may be NULL */
};

/* Fill e from the environment (an unknown engine name is a warning, not an error). Calls
 * curl_global_init: call once, before threads start. */
void ctl_engine_init(struct ctl_engine *e);

struct ctl_engine_result {
    int status;         /* what the API answers: 200 or an error status (see above) */
    char message[1024]; /* the engine's words: its success text or its error message */
};

/* Ask the engine to load / unload an adapter. authorization is the caller's header value (or
 * NULL). Thread-safe. */
void ctl_engine_load_lora(const struct ctl_engine *e, const char *name, const char *path,
                          const char *authorization, struct ctl_engine_result *out);
void ctl_engine_unload_lora(const struct ctl_engine *e, const char *name, const char *authorization,
                            struct ctl_engine_result *out);

/* GET path from the engine, to pass its answer through. Returns the engine's status (502 /
 * 504 when it cannot be reached, with *body an AIBrix-style message left to the caller:
 * *body NULL and msg set); *body is malloc'd (the caller frees it), *json tells whether the
 * engine said it is JSON. */
int ctl_engine_get(const struct ctl_engine *e, const char *path, const char *authorization,
                   char **body, bool *json, char *msg, size_t msglen);

#endif
