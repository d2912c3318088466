#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 proxy between a client (aibrix_download, aibrix_runtime) and
one origin. Standard library only.

Why: the fakes (tests/fakes/) can fail on purpose, but only the way each fake was taught
to. This proxy puts the same, seeded mix of network faults in front of any origin (the fake
HF Hub and its CDN, the SigV4 proxy in front of s3rver, the fake TOS), so the fault
scenarios in tests/integration/test_faults.py read the same for every source.

Faults (names used in the configuration):
  reset_before   the client connection is reset (RST) before any byte of the answer
  reset_during   status line, headers and part of the body, then RST
  500, 503, 429  an error answer with `Retry-After: <retry_after>` (the origin is not asked)
  stall          headers and a few body bytes, then nothing for <stall> seconds, then close
                 (set DOWNLOADER_STALL_TIMEOUT below <stall> in the client)
  truncate       the full Content-Length is announced, part of the body is sent, then FIN
  flip           one byte of the body is XORed (length and headers unchanged)
  wrong_range    a 206 whose Content-Range is shifted by one byte (body unchanged)
  redirect_dead  307 to the same path on 127.0.0.1:<a port nothing listens on>
Body faults (reset_during, stall, truncate, flip, wrong_range) only fire on GET answers
with a body (200/206); wrong_range only on a 206. When the drawn fault cannot apply to an
answer, the answer passes unchanged and nothing is counted.

Determinism: the proxy numbers the requests it sees that match `match` (0, 1, 2 ...); the
decision for request n (fault or not, which fault, where to cut or flip) comes from
random.Random("<seed>:<n>") only. The same seed and the same request order give the same
faults; with a multi-threaded client the order itself may vary between runs, so the
scenarios assert properties that hold for any order.

Upstream: one new connection per request (simple, and a reset never poisons a pooled
connection). Client side: keep-alive (HTTP/1.1) until a fault closes the connection. The
request is forwarded unchanged, Host header included, so SigV4 signatures made for the
proxy's address still verify at an origin that checks them.

Redirects: the fake HF Hub redirects LFS files to its CDN with an absolute URL. Run a
second proxy in front of the CDN and give the first one `--rewrite-location
http://127.0.0.1:CDN=http://127.0.0.1:CDNPROXY`: every Location header starting with the
first string gets the second instead, so CDN traffic also flows through a proxy.

Control (never faulted, never counted):
  GET  /__proxy/stats     {"requests", "matched", "faults": {name: n}, "upstream_bytes",
                           "upstream_bytes_by_path": {path: n}, "config"}
  POST /__proxy/control   JSON merged into the config: seed, rate (0..1), faults (list of
                          names, the mix drawn from uniformly), match (regex on the path,
                          which requests may be faulted), retry_after, stall, rules
                          (list of {"match": regex, "fault": name, "count": n|-1}, applied
                          before the random mix, first match wins)
  POST /__proxy/reset     statistics to zero, request numbering restarts (config kept)

Run: python3 proxy.py --upstream HOST:PORT [--port 0] [--seed 1] [--rate 0.2]
       [--faults reset_before,500,...] [--match REGEX] [--rewrite-location FROM=TO]...
prints "READY <port>" on stdout.
"""

import argparse
import http.client
import json
import random
import re
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALL_FAULTS = ("reset_before", "reset_during", "500", "503", "429", "stall", "truncate", "flip",
              "wrong_range", "redirect_dead")
BODY_FAULTS = ("reset_during", "stall", "truncate", "flip", "wrong_range")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "proxy-authenticate", "proxy-authorization"}


def dead_port():
    """A port that refuses connections: bound once, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class State:
    def __init__(self, upstream, seed, rate, faults, match, rewrites, retry_after=1, stall=3.0):
        self.lock = threading.Lock()
        self.upstream = upstream
        self.rewrites = list(rewrites)
        self.dead = dead_port()
        self.config = {"seed": seed, "rate": rate, "faults": list(faults), "match": match,
                       "retry_after": retry_after, "stall": stall, "rules": []}
        self.stop = threading.Event()
        self.reset()

    def reset(self):
        with self.lock:
            self.n = 0
            self.requests = 0
            self.fired = {}
            self.upstream_bytes = 0
            self.by_path = {}

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "matched": self.n, "faults": dict(self.fired),
                    "fault_total": sum(self.fired.values()), "upstream_bytes": self.upstream_bytes,
                    "upstream_bytes_by_path": dict(self.by_path), "config": dict(self.config)}

    def decide(self, path):
        """-> (fault name or None, rng for the details)."""
        with self.lock:
            self.requests += 1
            cfg = self.config
            for rule in cfg["rules"]:
                if rule.get("count", -1) != 0 and re.search(rule["match"], path):
                    if rule.get("count", -1) > 0:
                        rule["count"] -= 1
                    return rule["fault"], random.Random("rule:%d" % self.requests)
            if not re.search(cfg["match"], path):
                return None, None
            n = self.n
            self.n += 1
            rng = random.Random("%s:%d" % (cfg["seed"], n))
            if cfg["faults"] and rng.random() < cfg["rate"]:
                return rng.choice(cfg["faults"]), rng
            return None, rng

    def fire(self, name):
        with self.lock:
            self.fired[name] = self.fired.get(name, 0) + 1

    def count(self, path, n):
        with self.lock:
            self.upstream_bytes += n
            p = path.split("?", 1)[0]
            self.by_path[p] = self.by_path.get(p, 0) + n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy/1"
    st = None  # State, set on the class by main()

    def log_message(self, fmt, *args):  # quiet: the tests read /__proxy/stats
        pass

    # ---- helpers ----------------------------------------------------------
    def _reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj):
        self._reply(status, json.dumps(obj).encode(), [("Content-Type", "application/json")])

    def _rst(self):
        """Abort the client connection with a TCP reset."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    # ---- control ----------------------------------------------------------
    def _control(self):
        st = self.st
        if self.path.startswith("/__proxy/stats"):
            return self._json(200, st.stats())
        if self.path.startswith("/__proxy/reset"):
            self._body()
            st.reset()
            return self._json(200, st.stats())
        if self.path.startswith("/__proxy/control"):
            req = json.loads(self._body() or b"{}")
            unknown = [f for f in req.get("faults", []) if f not in ALL_FAULTS]
            unknown += [r.get("fault") for r in req.get("rules", []) if r.get("fault") not in ALL_FAULTS]
            if unknown:
                return self._json(400, {"error": "unknown faults %r" % unknown})
            with st.lock:
                st.config.update(req)
            return self._json(200, st.stats())
        return self._json(404, {"error": "unknown control route"})

    # ---- proxying ---------------------------------------------------------
    def _proxy(self):
        st = self.st
        if self.path.startswith("/__proxy/"):
            return self._control()
        body = self._body()
        fault, rng = st.decide(self.path)
        cfg = st.config
        ra = str(cfg.get("retry_after", 1))
        if fault == "reset_before":
            st.fire(fault)
            return self._rst()
        if fault in ("500", "503", "429"):
            st.fire(fault)
            msg = b'{"error":"injected %s"}' % fault.encode()
            self.close_connection = True
            return self._reply(int(fault), msg, [("Retry-After", ra), ("Content-Type", "application/json"),
                                                 ("Connection", "close")])
        if fault == "redirect_dead":
            st.fire(fault)
            self.close_connection = True
            return self._reply(307, b"", [("Location", "http://127.0.0.1:%d%s" % (st.dead, self.path)),
                                          ("Connection", "close")])

        host, port = st.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if body is not None and "content-length" not in {k.lower() for k in headers}:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read() if self.command != "HEAD" else b""
            status, rheaders = resp.status, resp.getheaders()
        except (OSError, http.client.HTTPException) as e:
            self.close_connection = True
            return self._reply(502, ("proxy: upstream failed: %s" % e).encode())
        finally:
            conn.close()
        if self.command != "HEAD":
            st.count(self.path, len(data))

        out = []
        for k, v in rheaders:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk == "content-length":
                continue
            if lk == "location":
                for a, b in st.rewrites:
                    if v.startswith(a):
                        v = b + v[len(a):]
                        break
            out.append((k, v))

        applicable = (fault in BODY_FAULTS and self.command == "GET" and status in (200, 206)
                      and len(data) >= 2)
        if fault == "wrong_range":
            cr = next((v for k, v in out if k.lower() == "content-range"), None)
            m = re.match(r"bytes (\d+)-(\d+)/(\d+)", cr or "")
            applicable = applicable and status == 206 and m is not None
            if applicable:
                a, b, total = map(int, m.groups())
                d = 1 if b + 1 < total else -1
                if a + d < 0:
                    applicable = False
                else:
                    out = [(k, "bytes %d-%d/%d" % (a + d, b + d, total) if k.lower() == "content-range" else v)
                           for k, v in out]
        if not applicable:
            fault = None
        if fault:
            st.fire(fault)

        if fault == "flip":
            i = rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]

        self.send_response(status)
        for k, v in out:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if fault in ("reset_during", "stall", "truncate"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD" or not data:
            return
        if fault == "reset_during":
            self.wfile.write(data[:rng.randrange(1, len(data))])
            return self._rst()
        if fault == "truncate":
            self.wfile.write(data[:rng.randrange(1, len(data))])
            self.wfile.flush()
            return
        if fault == "stall":
            self.wfile.write(data[:min(16, len(data) - 1)])
            self.wfile.flush()
            st.stop.wait(float(cfg.get("stall", 3.0)))
            return self._rst()
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _proxy

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, socket.timeout, OSError):
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the origin")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--faults", default=",".join(ALL_FAULTS))
    ap.add_argument("--match", default=".*")
    ap.add_argument("--retry-after", default="1")
    ap.add_argument("--stall", type=float, default=3.0)
    ap.add_argument("--rewrite-location", action="append", default=[], metavar="FROM=TO")
    a = ap.parse_args(argv)
    host, _, port = a.upstream.rpartition(":")
    faults = [f for f in a.faults.split(",") if f]
    bad = [f for f in faults if f not in ALL_FAULTS]
    if bad:
        ap.error("unknown faults %r (known: %s)" % (bad, ", ".join(ALL_FAULTS)))
    rewrites = [tuple(r.split("=", 1)) for r in a.rewrite_location]
    Handler.st = State((host or "127.0.0.1", int(port)), a.seed, a.rate, faults, a.match, rewrites,
                       a.retry_after, a.stall)
    srv = Server(("127.0.0.1", a.port), Handler)
    print("READY %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        Handler.st.stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
