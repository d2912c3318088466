"""A stand-in for the inference engine's LoRA API: vLLM, SGLang or llama.cpp (stdlib only).

Why: the control plane's LoRA flow ends in an engine call, and the story worth testing is
that the engine really reads the adapter through the runtime's mount. So the vLLM and SGLang
modes open lora_path the way vLLM does: they read adapter_config.json, parse the
safetensors header of adapter_model.safetensors and read every tensor (or read
adapter_model.bin whole), and record what they read (bytes and sha256 per file) for the test
to compare with the source. Replies copy the engines' texts and error shapes (the engine
table in docs/api.md).

    fake_lora_engine.py --port 0 --engine vllm|sglang|llamacpp [--error-shape new|old]
                        [--api-key KEY]
prints "READY <port>" on stdout once it listens.

Engine routes:
  vllm      POST /v1/load_lora_adapter {lora_name, lora_path, load_inplace?}
                 200 text "Success: LoRA adapter '<n>' added successfully."
                 400 missing fields / already loaded / not JSON; 404 no adapter at the path
            POST /v1/unload_lora_adapter {lora_name, lora_int_id?}
                 200 text "Success: LoRA adapter '<n>' removed successfully."; 404 unknown
            errors: new {"error": {"message", "type", "param", "code"}} (vLLM >= 0.10.1) or
                    old {"object": "error", "message", "type", "param", "code"}
  sglang    POST /load_lora_adapter, /unload_lora_adapter -> {"success", "error_message",
            "loaded_adapters"}, 200 or 400
  llamacpp  GET /lora-adapters, POST /lora-adapters (scales of preloaded adapters only)
  all       GET /v1/models (base model plus one card per loaded adapter)
  --api-key KEY makes every /v1/ route need "Authorization: Bearer KEY" (vLLM --api-key).

Test control (never authenticated):
  GET  /__fake/requests  [{method, path, authorization, content_type, body}] of engine calls
  GET  /__fake/adapters  {name: {path, files: {rel: {size, sha256, bytes_read}}, tensors}}
                         for every adapter loaded so far (kept after unload)
  GET  /__fake/loaded    [names currently loaded]
  POST /__fake/control   {"faults": [{"path": "/v1/load_lora_adapter", "status": 500,
                          "message": "boom", "count": 1, "delay": 0}], "error_shape": "old",
                          "load_delay": seconds}
  POST /__fake/reset     forget requests, adapters and faults
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE_MODEL = "fake-base"


class State:
    def __init__(self, engine, error_shape, api_key):
        self.lock = threading.Lock()
        self.engine = engine
        self.api_key = api_key
        self.initial_shape = error_shape
        self.reset()

    def reset(self):
        with self.lock:
            self.error_shape = self.initial_shape
            self.requests = []
            self.loaded = {}  # name -> path
            self.adapters = {}  # name -> what was read
            self.faults = []
            self.load_delay = 0.0

    def take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if f.get("path", path) == path and f.get("count", 1) != 0:
                    if f.get("count", 1) > 0:
                        f["count"] = f.get("count", 1) - 1
                    return dict(f)
        return None


def read_adapter(path):
    """Open an adapter directory as vLLM does. Returns (record, None) or (None, reason)."""
    cfg_path = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(cfg_path):
        return None, "no adapter_config.json"
    files = {}

    def note(rel, data_iter):
        h = hashlib.sha256()
        n = 0
        for chunk in data_iter:
            h.update(chunk)
            n += len(chunk)
        files[rel] = {"size": os.path.getsize(os.path.join(path, rel)), "sha256": h.hexdigest(), "bytes_read": n}

    with open(cfg_path, "rb") as f:
        raw = f.read()
    json.loads(raw)  # vLLM parses it (PEFTHelper); a broken config fails the load
    note("adapter_config.json", [raw])
    st_path = os.path.join(path, "adapter_model.safetensors")
    bin_path = os.path.join(path, "adapter_model.bin")
    tensors = 0
    if os.path.isfile(st_path):
        with open(st_path, "rb") as f:
            head = f.read(8)
            (hlen,) = struct.unpack("<Q", head)
            header_raw = f.read(hlen)
            header = json.loads(header_raw)
            start = 8 + hlen
            pieces = []
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                a, b = meta["data_offsets"]
                pieces.append((a, b))
            pieces.sort()
            chunks = [head, header_raw]
            for a, b in pieces:  # every tensor, by offset, as a loader streams them
                chunk = os.pread(f.fileno(), b - a, start + a)
                if len(chunk) != b - a:
                    return None, "short read in adapter_model.safetensors"
                chunks.append(chunk)
                tensors += 1
        note("adapter_model.safetensors", chunks)
    elif os.path.isfile(bin_path):
        with open(bin_path, "rb") as f:
            note("adapter_model.bin", [f.read()])
    else:
        return None, "no adapter_model.safetensors or adapter_model.bin"
    return {"path": path, "files": files, "tensors": tensors}, None


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-lora-engine/1"
    protocol_version = "HTTP/1.1"

    # ---- plumbing --------------------------------------------------------
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    @property
    def st(self):
        return self.server.state

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, payload, ctype="application/json"):
        data = payload if isinstance(payload, bytes) else (
            json.dumps(payload).encode() if ctype == "application/json" else payload.encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def vllm_error(self, status, message, etype):
        err = {"message": message, "type": etype, "param": None, "code": status}
        if self.st.error_shape == "old":
            self.send(status, dict({"object": "error"}, **err))
        else:
            self.send(status, {"error": err})

    def record(self, raw):
        with self.st.lock:
            self.st.requests.append({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization"),
                                     "content_type": self.headers.get("Content-Type"),
                                     "body": raw.decode(errors="replace")})

    # ---- routes ------------------------------------------------------------
    def do_GET(self):
        if self.path.startswith("/__fake/"):
            return self.fake_get()
        self.record(b"")
        if not self.authorized():
            return
        if self.path == "/v1/models":
            with self.st.lock:
                data = [{"id": BASE_MODEL, "object": "model", "owned_by": self.st.engine, "root": BASE_MODEL,
                         "parent": None}]
                data += [{"id": n, "object": "model", "owned_by": self.st.engine, "root": p, "parent": BASE_MODEL}
                         for n, p in sorted(self.st.loaded.items())]
            return self.send(200, {"object": "list", "data": data})
        if self.path == "/lora-adapters" and self.st.engine == "llamacpp":
            return self.send(200, [])
        self.send(404, {"detail": "Not Found"})

    def do_POST(self):
        raw = self.body()
        if self.path.startswith("/__fake/"):
            return self.fake_post(raw)
        self.record(raw)
        if not self.authorized():
            return
        fault = self.st.take_fault(self.path)
        if fault:
            time.sleep(fault.get("delay", 0))
            if "status" in fault:
                return self.fault_reply(fault)
        eng = self.st.engine
        routes = {
            ("vllm", "/v1/load_lora_adapter"): self.vllm_load,
            ("vllm", "/v1/unload_lora_adapter"): self.vllm_unload,
            ("sglang", "/load_lora_adapter"): self.sglang_load,
            ("sglang", "/unload_lora_adapter"): self.sglang_unload,
            ("llamacpp", "/lora-adapters"): lambda req: self.send(200, []),
        }
        fn = routes.get((eng, self.path))
        if not fn:
            return self.send(404, {"detail": "Not Found"})
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self.vllm_error(400, "Content-Type must be application/json", "BadRequestError")
        try:
            req = json.loads(raw or b"null")
        except ValueError:
            return self.vllm_error(400, "JSON decode error", "BadRequestError")
        if not isinstance(req, dict):
            return self.vllm_error(400, "body must be an object", "BadRequestError")
        fn(req)

    def authorized(self):
        key = self.st.api_key
        if key and self.path.startswith("/v1/") and self.headers.get("Authorization") != "Bearer " + key:
            self.send(401, {"error": "Unauthorized"})
            return False
        return True

    def fault_reply(self, fault):
        status, msg = fault["status"], fault.get("message", "injected failure")
        if self.st.engine == "sglang":
            return self.send(status, {"success": False, "error_message": msg, "loaded_adapters": {}})
        return self.vllm_error(status, msg, "InternalServerError" if status >= 500 else "BadRequestError")

    def load_common(self, name, path):
        """(record, error) after reading the adapter like the engine does."""
        if self.st.load_delay:
            time.sleep(self.st.load_delay)
        return read_adapter(path)

    # vLLM
    def vllm_load(self, req):
        name, path = req.get("lora_name"), req.get("lora_path")
        if not name or not path:
            return self.vllm_error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        with self.st.lock:
            if name in self.st.loaded:
                return self.vllm_error(400, "The lora adapter '%s' has already been loaded." % name,
                                       "InvalidUserInput")
        rec, why = self.load_common(name, path)
        if rec is None:
            return self.vllm_error(404, "Loading lora %s failed: No adapter found for %s (%s)" % (name, path, why),
                                   "NotFoundError")
        with self.st.lock:
            self.st.loaded[name] = path
            self.st.adapters[name] = rec
        self.send(200, "Success: LoRA adapter '%s' added successfully." % name, "text/plain; charset=utf-8")

    def vllm_unload(self, req):
        name = req.get("lora_name")
        with self.st.lock:
            if name not in self.st.loaded:
                return self.vllm_error(404, "The lora adapter '%s' cannot be found." % name, "NotFoundError")
            del self.st.loaded[name]
        self.send(200, "Success: LoRA adapter '%s' removed successfully." % name, "text/plain; charset=utf-8")

    # SGLang
    def sglang_reply(self, ok, msg=None):
        with self.st.lock:
            loaded = dict(self.st.loaded)
        self.send(200 if ok else 400, {"success": ok, "error_message": msg, "loaded_adapters": loaded})

    def sglang_load(self, req):
        name, path = req.get("lora_name"), req.get("lora_path")
        with self.st.lock:
            dup = name in self.st.loaded
            names = sorted(self.st.loaded)
        if dup:
            return self.sglang_reply(False, "LoRA with name %s already exists. Loaded LoRAs: %s" % (name, names))
        rec, why = self.load_common(name, path)
        if rec is None:
            return self.sglang_reply(False, "Failed to load LoRA adapter %s from %s: %s" % (name, path, why))
        with self.st.lock:
            self.st.loaded[name] = path
            self.st.adapters[name] = rec
        self.sglang_reply(True)

    def sglang_unload(self, req):
        name = req.get("lora_name")
        with self.st.lock:
            if name not in self.st.loaded:
                missing = True
            else:
                missing = False
                del self.st.loaded[name]
        if missing:
            return self.sglang_reply(False, "LoRA with name %s does not exist. Loaded LoRAs: []" % name)
        self.sglang_reply(True)

    # ---- test control --------------------------------------------------------
    def fake_get(self):
        with self.st.lock:
            if self.path == "/__fake/requests":
                return self.send(200, self.st.requests)
            if self.path == "/__fake/adapters":
                return self.send(200, self.st.adapters)
            if self.path == "/__fake/loaded":
                return self.send(200, sorted(self.st.loaded))
        self.send(404, {"detail": "Not Found"})

    def fake_post(self, raw):
        req = json.loads(raw or b"{}")
        if self.path == "/__fake/reset":
            self.st.reset()
            return self.send(200, {})
        if self.path == "/__fake/control":
            with self.st.lock:
                if "faults" in req:
                    self.st.faults = list(req["faults"])
                if "error_shape" in req:
                    self.st.error_shape = req["error_shape"]
                if "load_delay" in req:
                    self.st.load_delay = float(req["load_delay"])
            return self.send(200, {})
        self.send(404, {"detail": "Not Found"})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--engine", choices=["vllm", "sglang", "llamacpp"], default="vllm")
    p.add_argument("--error-shape", choices=["new", "old"], default="new")
    p.add_argument("--api-key")
    a = p.parse_args(argv)
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.daemon_threads = True
    srv.state = State(a.engine, a.error_shape, a.api_key)
    print("READY %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
