#!/usr/bin/env python3
"""A fake inference engine (vLLM, SGLang, TGI, Triton/TRT-LLM, trtllm-serve, llama.cpp) for the
metrics tests and benchmarks. Standard library only.

Why: the runtime's /metrics must standardise each engine's real exposition text and survive an
engine that is down, slow, broken or enormous. This server plays the engine: it serves one
engine's real format (the fixtures in tests/unit/data/metrics/<name>.txt, written from those
engines' own output) and misbehaves on request.

  fake_engine.py [--fixture vllm-v1 | --metrics-file PATH] [--metrics-path /metrics]
                 [--mode normal|down|slow|garbage|huge|huge_chunked|error|redirect|reset]
                 [--delay 5] [--huge-bytes 52428800] [--status 500] [--series N]
                 [--host 127.0.0.1] [--port 0]
  prints "READY <port>" on stdout once it listens ("down": a port nobody listens on).

Modes of the metrics route:
  normal    200, the fixture text, Content-Type text/plain; version=0.0.4
  slow      sleep --delay seconds, then answer normally
  garbage   200 with bytes that are not exposition text
  huge      200 with --huge-bytes of valid-looking lines (default 50 MB), streamed
  huge_chunked  the same without Content-Length (chunked): the size is known only as it comes
  error     --status (default 500) with a short text body
  redirect  307 to the path plus "/" (what a Starlette mount does), which serves the text
  reset     close the connection without an answer
  down      nothing listens (only at start)
--series N replaces the text with about N series in vLLM V1 names (load tests).
trtllm-serve serves at /prometheus/metrics: that fixture's default --metrics-path.

Control (JSON, not counted in the statistics):
  POST /__fake/control  {"mode", "delay", "status", "text", "fixture", "huge_bytes"}: change
                        how the metrics route behaves from now on
  GET  /__fake/stats    {"requests": {route: n}, "requests_total", "inflight_max"}
  POST /__fake/reset    back to the start-up settings, statistics cleared

Routes are a table (EngineApp.routes: (method, path) -> handler method name), so engine APIs
(LoRA load/unload, /v1/models) can be added next to the metrics route.
"""

import argparse
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "unit" / "data" / "metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODES = ("normal", "down", "slow", "garbage", "huge", "huge_chunked", "error", "redirect", "reset")
GARBAGE = (b"<html><head><title>502 Bad Gateway</title></head>\n<body>upstream went away</body>"
           b"</html>\n{{{ not: metrics }}}\n\x00\xff\xfe binary tail\n")


def fixture_text(name):
    return (FIXTURES / (name + ".txt")).read_bytes()


def synth_series(n, model_prefix="model"):
    """About n series in vLLM V1 names: per model 3 gauges, 2 counters, 3 request_success
    series and two 12-bucket histograms (15 series each) = 38 series."""
    per_model = 38
    models = max(1, (n + per_model - 1) // per_model)
    buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0]
    out = []

    def fam(name, typ, help_text):
        out.append("# HELP %s %s\n# TYPE %s %s\n" % (name, help_text, name, typ))

    def lab(j, extra=""):
        return '{engine="0",model_name="%s-%d"%s}' % (model_prefix, j, extra)

    for name, help_text, f in (("vllm:num_requests_running", "Requests in execution batches.", 1),
                               ("vllm:num_requests_waiting", "Requests waiting.", 3),
                               ("vllm:kv_cache_usage_perc", "KV-cache usage.", 0.01)):
        fam(name, "gauge", help_text)
        out.extend("%s%s %r\n" % (name, lab(j), float(j * f % 97)) for j in range(models))
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        fam(name, "counter", "Tokens processed.")
        out.extend("%s%s %r\n" % (name, lab(j), float(1000 + j)) for j in range(models))
    fam("vllm:request_success_total", "counter", "Successful requests.")
    for j in range(models):
        for reason in ("stop", "length", "abort"):
            out.append("vllm:request_success_total%s %r\n"
                       % (lab(j, ',finished_reason="%s"' % reason), float(j + len(reason))))
    for name in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"):
        fam(name, "histogram", "Latency in seconds.")
        for j in range(models):
            cum = 0
            for i, le in enumerate(buckets):
                cum += (j + i) % 5
                out.append("%s_bucket%s %r\n" % (name, lab(j, ',le="%s"' % le), float(cum)))
            out.append("%s_bucket%s %r\n" % (name, lab(j, ',le="+Inf"'), float(cum)))
            out.append("%s_sum%s %r\n" % (name, lab(j), cum * 0.75))
            out.append("%s_count%s %r\n" % (name, lab(j), float(cum)))
    return "".join(out).encode()


class EngineState:
    def __init__(self, settings):
        self.start = dict(settings)
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.settings = dict(self.start)
            self.requests = {}
            self.requests_total = 0
            self.inflight = 0
            self.inflight_max = 0


class EngineApp:
    def __init__(self, settings, metrics_path, verbose=False):
        self.state = EngineState(settings)
        self.verbose = verbose
        self.metrics_path = metrics_path
        self.routes = {
            ("GET", metrics_path): "serve_metrics",
            ("GET", metrics_path.rstrip("/") + "/"): "serve_metrics_slash",
            ("POST", "/__fake/control"): "control",
            ("GET", "/__fake/stats"): "stats",
            ("POST", "/__fake/reset"): "reset",
        }

    def add_route(self, method, path, handler_name):
        self.routes[(method, path)] = handler_name


class EngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeEngine/1.0"
    sys_version = ""
    timeout = 120

    @property
    def app(self):
        return self.server.app

    @property
    def state(self):
        return self.server.app.state

    def log_message(self, fmt, *args):
        if self.app.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def _dispatch(self):
        path = self.path.split("?", 1)[0]
        name = self.app.routes.get((self.command, path))
        if name is None:
            known = any(p == path for (_, p) in self.app.routes)
            return self.send_body(405 if known else 404, b'{"detail":"Not Found"}', "application/json")
        counted = not path.startswith("/__fake/")
        if counted:
            with self.state.lock:
                self.state.requests[name] = self.state.requests.get(name, 0) + 1
                self.state.requests_total += 1
                self.state.inflight += 1
                self.state.inflight_max = max(self.state.inflight_max, self.state.inflight)
        try:
            getattr(self, name)()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if counted:
                with self.state.lock:
                    self.state.inflight -= 1

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    # ---- helpers ------------------------------------------------------------------------
    def send_body(self, status, body, ctype, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw or b"{}")

    def settings(self):
        with self.state.lock:
            return dict(self.state.settings)

    # ---- the metrics route ----------------------------------------------------------------
    def serve_metrics(self, redirected=False):
        s = self.settings()
        mode = s["mode"]
        if mode == "slow":
            time.sleep(float(s["delay"]))
            mode = "normal"
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if mode == "redirect" and not redirected:
            return self.send_body(307, b"", "text/plain",
                                  {"Location": self.app.metrics_path.rstrip("/") + "/"})
        if mode == "garbage":
            return self.send_body(200, GARBAGE, CONTENT_TYPE)
        if mode == "error":
            return self.send_body(int(s["status"]), b"Internal Server Error\n", "text/plain")
        if mode in ("huge", "huge_chunked"):
            return self.send_huge(int(s["huge_bytes"]), chunked=mode == "huge_chunked")
        self.send_body(200, s["text"], CONTENT_TYPE)

    def serve_metrics_slash(self):
        self.serve_metrics(redirected=True)

    def send_huge(self, size, chunked=False):
        """size bytes of distinct, valid-looking lines, written block by block until the
        client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        sent, i = 0, 0
        while sent < size:
            lines = []
            n = 0
            while n < (1 << 20):
                line = 'huge_filler{i="%d"} %d\n' % (i, i)
                lines.append(line)
                n += len(line)
                i += 1
            block = "".join(lines).encode()[: size - sent]
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            else:
                self.wfile.write(block)
            sent += len(block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    # ---- control --------------------------------------------------------------------------
    def control(self):
        req = self.read_json()
        with self.state.lock:
            s = self.state.settings
            for key in ("mode", "delay", "status", "huge_bytes"):
                if key in req:
                    s[key] = req[key]
            if "fixture" in req:
                s["text"] = fixture_text(req["fixture"])
            if "text" in req:
                s["text"] = req["text"].encode()
            if s["mode"] not in MODES or s["mode"] == "down":
                s["mode"] = "normal"
                bad = True
            else:
                bad = False
            reply = {k: v for k, v in s.items() if k != "text"}
        self.send_body(400 if bad else 200, json.dumps(reply).encode(), "application/json")

    def stats(self):
        with self.state.lock:
            body = {"requests": dict(self.state.requests), "requests_total": self.state.requests_total,
                    "inflight_max": self.state.inflight_max}
        self.send_body(200, json.dumps(body).encode(), "application/json")

    def reset(self):
        self.state.reset()
        self.send_body(200, b"{}", "application/json")


class EngineServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, app):
        self.app = app
        super().__init__(addr, EngineHandler)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fixture", default="vllm-v1",
                   help="name of tests/unit/data/metrics/<name>.txt (vllm-v0, vllm-v1, sglang-old, "
                        "sglang-new, trtllm-serve, trtllm-triton, tgi, triton, llamacpp)")
    p.add_argument("--metrics-file", help="serve this file instead of a fixture")
    p.add_argument("--metrics-path", help="default /metrics (/prometheus/metrics for trtllm-serve)")
    p.add_argument("--mode", choices=MODES, default="normal")
    p.add_argument("--delay", type=float, default=5.0, help="seconds a slow answer waits")
    p.add_argument("--huge-bytes", type=int, default=50 * 1000 * 1000)
    p.add_argument("--status", type=int, default=500, help="status of the error mode")
    p.add_argument("--series", type=int, default=0, help="synthesize about N series (vLLM names)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    if a.series:
        text = synth_series(a.series)
    elif a.metrics_file:
        text = Path(a.metrics_file).read_bytes()
    else:
        text = fixture_text(a.fixture)
    path = a.metrics_path or ("/prometheus/metrics" if a.fixture == "trtllm-serve" else "/metrics")
    if a.mode == "down":
        # a port that was free a moment ago and that nobody listens on
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((a.host, a.port))
            port = s.getsockname()[1]
        sys.stdout.write("READY %d\n" % port)
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    settings = {"mode": a.mode, "delay": a.delay, "status": a.status, "huge_bytes": a.huge_bytes,
                "text": text}
    app = EngineApp(settings, path, verbose=a.verbose)
    srv = EngineServer((a.host, a.port), app)
    sys.stdout.write("READY %d\n" % srv.server_address[1])
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
