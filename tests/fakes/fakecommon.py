"""Shared plumbing for the servers in this folder (fake_hf.py, fake_tos.py,
s3_sigv4_proxy.py).

Why: they all need the same HTTP/1.1 keep-alive server, byte-range serving,
SigV4-shaped signature recomputation, test-driven fault injection (status /
429 / truncate / corrupt / reset / delay / rate / stall) and request
statistics, controlled over plain HTTP. Standard library only.

Control plane (unsigned, on every listener):
  POST /__fake/control  JSON: {"faults": [rule...]} replaces the rules,
                        {"add_faults": [...]} appends, other keys are the
                        server's own settings (see each server's docstring)
  GET  /__fake/stats    {"requests": {kind: n}, "requests_total", "status": {code: n},
                         "bytes_total", "bytes_by_path": {key: n} (body bytes of
                         file/object content actually sent), "faults_fired",
                         "faults_by_match", "faults_pending", "connections" (TCP
                         connections that made a request), "inflight_max",
                         "log": [{t, method, path, host, kind, key, status, range,
                                  auth (Authorization present?), bytes, fault, conn}]}
  POST /__fake/reset    clear rules, statistics and settings (back to the flags)

Fault rule (a JSON object in the list given to `/__fake/control` as "faults"):
    match     route kind(s) it applies to: a string or list; "any" matches all.
              fake_hf kinds: revision, tree, paths-info, model, resolve, cdn
                             ("api" = revision|tree|paths-info|model)
              fake_tos kinds: list, get, head, bucket ("object" = get|head)
              s3_sigv4_proxy kinds: service, list, bucket, get, head, put,
                             delete ("object" = get|head)
    path      optional fnmatch pattern ('*' crosses '/') on the request's key:
              the file path relative to the fake's root ("org/name/config.json",
              "bucket/models/a.bin"), or "org/name" / "bucket" for API routes
              (the same keys as stats' bytes_by_path)
    method    optional HTTP method ("GET", "HEAD", ...)
    skip      let this many matching requests pass first (default 0)
    count     how many times it fires (default 1; -1 = forever)
  actions (combinable where it makes sense):
    delay     seconds to sleep before answering (alone: then answer normally)
    reset     true: close the connection with a TCP RST before any response
    status    answer this status with an error body instead of the real answer;
              optional retry_after (seconds -> Retry-After, and for 429 also
              `RateLimit: "api";r=0;t=N`), error_code (X-Error-Code for HF, the
              JSON Code for TOS), headers {name: value}
    truncate  N: send full headers/Content-Length, then only N body bytes, close
    corrupt   true (flip the middle byte of the body) or an int body offset
    rate      bytes/second throttle of the body
    stall     seconds to pause after `stall_after` body bytes (default 0)
"""

import fnmatch
import hashlib
import hmac
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 256 * 1024
LOG_CAP = 20000


class FakeState:
    """Faults + statistics shared by every listener of one fake process."""

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.reset_stats()

    # ---- statistics -------------------------------------------------------
    def reset_stats(self):
        with self.lock:
            self.requests = {}
            self.status = {}
            self.requests_total = 0
            self.bytes_total = 0
            self.bytes_by_path = {}
            self.faults_fired = 0
            self.faults_by_match = {}
            self.connections = 0
            self.inflight = 0
            self.inflight_max = 0
            self.log = []

    def snapshot(self):
        with self.lock:
            return {
                "requests": dict(self.requests),
                "requests_total": self.requests_total,
                "status": dict(self.status),
                "bytes_total": self.bytes_total,
                "bytes_by_path": dict(self.bytes_by_path),
                "faults_fired": self.faults_fired,
                "faults_by_match": dict(self.faults_by_match),
                "faults_pending": [dict(f) for f in self.faults],
                "connections": self.connections,  # TCP connections that made a non-control request
                "inflight_max": self.inflight_max,
                "log": list(self.log),
            }

    def add_bytes(self, key, n):
        if n <= 0:
            return
        with self.lock:
            self.bytes_total += n
            if key is not None:
                self.bytes_by_path[key] = self.bytes_by_path.get(key, 0) + n

    # ---- faults -----------------------------------------------------------
    def set_faults(self, faults, append=False):
        norm = []
        for f in faults:
            if not isinstance(f, dict):
                raise ValueError("each fault must be an object")
            f = dict(f)
            f.setdefault("match", "any")
            f.setdefault("count", 1)
            f.setdefault("skip", 0)
            norm.append(f)
        with self.lock:
            if append:
                self.faults.extend(norm)
            else:
                self.faults = norm

    def take_fault(self, kind, method, key, aliases):
        """Return the first fault that applies to this request (consuming one
        use of it), or None. `aliases` maps a group name to kinds (e.g. api)."""
        with self.lock:
            for f in self.faults:
                if f["count"] == 0:
                    continue
                m = f["match"]
                ms = m if isinstance(m, list) else [m]
                ok = False
                for one in ms:
                    if one == "any" or one == kind or kind in aliases.get(one, ()):
                        ok = True
                if not ok:
                    continue
                if f.get("method") and f["method"].upper() != method:
                    continue
                if f.get("path") and not fnmatch.fnmatchcase(key or "", f["path"]):
                    continue
                if f["skip"] > 0:
                    f["skip"] -= 1
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                self.faults_fired += 1
                label = m if isinstance(m, str) else ",".join(m)
                self.faults_by_match[label] = self.faults_by_match.get(label, 0) + 1
                fired = {k: v for k, v in f.items() if k not in ("count", "skip")}
                return fired
            return None


def parse_range(header, size):
    """Parse a single-range `Range: bytes=...` header.
    Returns None (no/ignored range -> 200), (start, end_inclusive), or
    "unsatisfiable" (-> 416)."""
    if not header:
        return None
    h = header.strip()
    if not h.lower().startswith("bytes="):
        return None
    spec = h[6:].strip()
    if "," in spec:
        return None  # multi-range: serve the whole body, as many servers do
    if "-" not in spec:
        return None
    a, b = spec.split("-", 1)
    a, b = a.strip(), b.strip()
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                return "unsatisfiable"
            start = max(0, size - n)
            end = size - 1
        else:
            start = int(a)
            end = int(b) if b else None
            if end is not None and end < start:
                return None  # syntactically invalid: ignore the header
            if start >= size:
                return "unsatisfiable"
            if end is None:
                end = size - 1
            end = min(end, size - 1)
    except ValueError:
        return None
    if size == 0:
        return "unsatisfiable"
    return (start, end)


# ---- SigV4-shaped request signing (S3's AWS4-HMAC-SHA256, TOS's TOS4-HMAC-SHA256)

def uri_encode(s, keep_slash):
    """RFC 3986 encoding as SigV4 wants it (unreserved A-Za-z0-9-_.~ kept)."""
    return urllib.parse.quote(s, safe="/~" if keep_slash else "~")


def canonical_uri(raw_path):
    """The canonical URI of a request path as received: decoded once, then
    encoded once (so /a%2Fb and /a/b both sign as /a/b, '+' as %2B)."""
    return uri_encode(urllib.parse.unquote(raw_path), keep_slash=True) or "/"


def canonical_query(raw_query, drop=()):
    pairs = []
    if raw_query:
        for part in raw_query.split("&"):
            if not part:
                continue
            k, _, v = part.partition("=")
            k, v = urllib.parse.unquote_plus(k), urllib.parse.unquote_plus(v)
            if k in drop:
                continue
            pairs.append((uri_encode(k, False), uri_encode(v, False)))
    pairs.sort()
    return "&".join("%s=%s" % kv for kv in pairs)


def v4_signing_key(secret_bytes, date, region, service, terminator):
    k = hmac.new(secret_bytes, date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    return hmac.new(k, terminator.encode(), hashlib.sha256).digest()


def v4_signature(algorithm, secret_bytes, terminator, service, region, datetime_str, method, c_uri, c_query,
                 headers, signed, payload_hash):
    """-> (signature_hex, canonical_request, string_to_sign)."""
    c_headers = "".join("%s:%s\n" % (h, " ".join(str(headers.get(h, "")).split())) for h in signed)
    creq = "\n".join([method, c_uri, c_query, c_headers, ";".join(signed), payload_hash])
    scope = "%s/%s/%s/%s" % (datetime_str[:8], region, service, terminator)
    sts = "\n".join([algorithm, datetime_str, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = v4_signing_key(secret_bytes, datetime_str[:8], region, service, terminator)
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest(), creq, sts


def http_date(ts):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


def iso_date(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, app):
        self.app = app
        super().__init__(addr, handler)


class FakeHandler(BaseHTTPRequestHandler):
    """Base handler: keep-alive HTTP/1.1, every response has Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeServer/1.0"
    sys_version = ""
    timeout = 120

    # subclasses set: KIND_ALIASES (dict), and implement route() + error_body()
    KIND_ALIASES = {}

    @property
    def app(self):
        return self.server.app

    @property
    def state(self):
        return self.server.app.state

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # quiet unless asked
        if getattr(self.server.app, "verbose", False):
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    _conn_ids = iter(range(1, 1 << 62))

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):  # fake_hf --tls-cert: handshake in this thread
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()
        self.conn_id = next(FakeHandler._conn_ids)
        self._conn_counted = False  # connections are counted at their first non-control request

    # ---- request bookkeeping ----------------------------------------------
    def _begin(self):
        self._rec = {
            "t": round(time.time(), 6),
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),
            "kind": None,
            "key": None,
            "status": None,
            "range": self.headers.get("Range"),
            "auth": self.headers.get("Authorization") is not None,
            "bytes": 0,
            "fault": None,
            "conn": self.conn_id,
        }
        self._fault = None
        self._counted = False
        with self.state.lock:
            self.state.inflight += 1
            self.state.inflight_max = max(self.state.inflight_max, self.state.inflight)

    def _count(self, kind):
        """Count a request as soon as its kind is known (before it is answered),
        so a test that saw the answer always sees it in the statistics."""
        with self.state.lock:
            if not self._conn_counted:
                self._conn_counted = True
                self.state.connections += 1
            self.state.requests[kind] = self.state.requests.get(kind, 0) + 1
            self.state.requests_total += 1
            if len(self.state.log) < LOG_CAP:
                self.state.log.append(self._rec)  # status/bytes are filled in as it proceeds
        self._counted = True

    def _end(self):
        rec = self._rec
        if rec["kind"] != "control" and not self._counted:
            rec["kind"] = rec["kind"] or "other"
            self._count(rec["kind"])
        with self.state.lock:
            self.state.inflight -= 1
            if rec["kind"] != "control":
                st = str(rec["status"])
                self.state.status[st] = self.state.status.get(st, 0) + 1

    def _dispatch(self):
        if self.path.startswith(("http://", "https://")):
            # absolute-form request target (sent to proxies; HTTP/1.1 servers
            # must accept it): keep only path + query, Host stays as sent.
            u = urllib.parse.urlsplit(self.path)
            self.path = (u.path or "/") + ("?" + u.query if u.query else "")
        self._begin()
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._end()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    # ---- fault handling ---------------------------------------------------
    def classify(self, kind, key):
        """Record the route kind/key and apply any pre-response fault.
        Returns True when a fault already answered (caller must stop)."""
        self._rec["kind"] = kind
        self._rec["key"] = key
        if kind == "control":
            return False
        self._count(kind)
        f = self.state.take_fault(kind, self.command, key, self.KIND_ALIASES)
        self._fault = f
        if not f:
            return False
        self._rec["fault"] = json.dumps(f, sort_keys=True)
        if f.get("delay"):
            time.sleep(float(f["delay"]))
        if f.get("reset"):
            self.reset_connection()
            self._rec["status"] = "reset"
            return True
        if f.get("status"):
            status = int(f["status"])
            headers = dict(f.get("headers") or {})
            ra = f.get("retry_after")
            if status == 429 and ra is None:
                ra = 1
            if ra is not None:
                headers.setdefault("Retry-After", str(int(ra)))
                if status == 429:
                    headers.setdefault("RateLimit", '"api";r=0;t=%d' % int(ra))
                    headers.setdefault("RateLimit-Policy", '"fixed window";"api";q=500;w=300')
            ctype, body, extra = self.error_body(status, f.get("error_code"), "injected fault")
            extra.update(headers)
            self.send_simple(status, body, ctype, extra)
            return True
        return False

    def reset_connection(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def error_body(self, status, code, message):  # pragma: no cover - overridden
        return "text/plain", message.encode(), {}

    # ---- response helpers -------------------------------------------------
    def send_head_only(self, status, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self._rec["status"] = status

    def send_simple(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": ctype, "Content-Length": str(len(body))}
        h.update(headers or {})
        self.send_head_only(status, h)
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, status, obj, headers=None):
        self.send_simple(status, json.dumps(obj).encode(), "application/json", headers)

    def serve_file(self, abspath, size, stats_key, headers, range_header=None, status_ok=200):
        """Serve a file body (or a range of it) applying body faults.
        `headers` are the entity headers (ETag etc.); Content-Length,
        Content-Range and Accept-Ranges are added here."""
        rng = parse_range(range_header, size) if range_header else None
        h = dict(headers)
        h["Accept-Ranges"] = "bytes"
        if rng == "unsatisfiable":
            ctype, body, extra = self.error_body(416, None, "requested range not satisfiable")
            extra["Content-Range"] = "bytes */%d" % size
            self.send_simple(416, body, ctype, extra)
            return
        if rng is None:
            start, end, status = 0, size - 1, status_ok
        else:
            start, end = rng
            status = 206
            h["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
        length = end - start + 1 if size > 0 else 0
        h["Content-Length"] = str(length)
        self.send_head_only(status, h)
        if self.command == "HEAD" or length == 0:
            return
        with open(abspath, "rb") as fp:
            fp.seek(start)
            self.relay_body(fp, length, stats_key)

    def relay_body(self, src, length, stats_key):
        """Copy `length` bytes from src.read() to the client, applying the body
        faults (truncate, corrupt, rate, stall). Returns the bytes sent."""
        f = self._fault or {}
        limit = length
        if f.get("truncate") is not None:
            limit = min(length, int(f["truncate"]))
        corrupt_at = None
        if f.get("corrupt") is not None and f.get("corrupt") is not False:
            c = f["corrupt"]
            corrupt_at = length // 2 if c is True else int(c)
        rate = float(f["rate"]) if f.get("rate") else None
        stall = float(f["stall"]) if f.get("stall") else None
        stall_after = int(f.get("stall_after") or 0)
        sent = 0
        chunk = CHUNK if not rate else max(1, min(CHUNK, int(rate / 20)))
        t0 = time.monotonic()
        while sent < limit:
            if stall is not None and sent >= stall_after:
                time.sleep(stall)
                stall = None
            want = min(chunk, limit - sent)
            if stall is not None and sent < stall_after:
                want = min(want, stall_after - sent)
            buf = src.read(want)
            if not buf:
                break
            if corrupt_at is not None and sent <= corrupt_at < sent + len(buf):
                b = bytearray(buf)
                b[corrupt_at - sent] ^= 0xFF
                buf = bytes(b)
            if rate:  # wait until these bytes are due
                ahead = (sent + len(buf)) / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            # counted before the write, so a client that has the bytes sees them counted
            self._rec["bytes"] = sent + len(buf)
            self.state.add_bytes(stats_key, len(buf))
            self.wfile.write(buf)
            sent += len(buf)
        if sent < length:
            # truncated on purpose (or the source ran dry): the client must see
            # a short body, so the connection cannot be reused
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True
        return sent

    # ---- the control plane ------------------------------------------------
    def handle_control(self, sub):
        """/__fake/control (POST), /__fake/stats (GET), /__fake/reset (POST)."""
        self.classify("control", None)
        if sub == "stats":
            self.send_json(200, self.state.snapshot())
            return
        if sub == "reset":
            self.read_body()
            self.state.set_faults([])
            self.state.reset_stats()
            self.app.reset_config()
            self.send_json(200, {"ok": True})
            return
        if sub == "control":
            raw = self.read_body()
            try:
                req = json.loads(raw or b"{}")
                if "faults" in req:
                    self.state.set_faults(req["faults"])
                if "add_faults" in req:
                    self.state.set_faults(req["add_faults"], append=True)
                self.app.configure({k: v for k, v in req.items() if k not in ("faults", "add_faults")})
            except (ValueError, TypeError, KeyError) as e:
                self.send_json(400, {"error": "bad control request: %s" % e})
                return
            self.send_json(200, {"ok": True, "config": self.app.describe(),
                                 "faults": [dict(f) for f in self.state.faults]})
            return
        self.send_json(404, {"error": "unknown control route"})


def serve_forever_in_thread(server):
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t
