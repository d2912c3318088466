#!/usr/bin/env python3
"""A SigV4-checking front for s3rver (stdlib only): verifies, then forwards.

Why: s3rver (the npm S3 server the tests use) does not verify AWS Signature V4
at all: its source says "Signature version 4 calculation is unimplemented", it
only checks that the access key id exists, and it lets unsigned requests
through. So a client signing S3 requests wrongly would pass every test. This
front RECOMPUTES each request's AWS4-HMAC-SHA256 signature (header or
pre-signed query form, service s3, key "AWS4"+secret, scope
date/region/s3/aws4_request; a hex x-amz-content-sha256 must match the body)
and answers 403 SignatureDoesNotMatch / AccessDenied / InvalidAccessKeyId /
RequestTimeTooSkewed, 400 AuthorizationHeaderMalformed for a wrong region,
with S3's XML error body, before anything reaches s3rver. Valid requests are
forwarded unchanged (same Host) and the answers relayed back. It also gives
S3 tests the same fault injection and statistics as the other fakes
(/__fake/control, /__fake/stats, /__fake/reset; see fakecommon.py), with route
kinds: service, list, bucket, get, head, put, delete ("object" = get|head).
Control keys besides faults: access_key, secret_key, region, session_token
(require x-amz-security-token), check_skew, anonymous (true: unsigned requests
pass, like a public-read bucket; signed ones are still checked).

Run: python3 s3_sigv4_proxy.py --upstream http://127.0.0.1:S3RVERPORT
     [--port P] [--ak S3RVER --sk S3RVER --region us-east-1]   prints "READY <port>".
"""

import argparse
import calendar
import hashlib
import hmac
import os
import secrets
import sys
import threading
import time
import urllib.parse
import http.client  # noqa: I100

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon  # noqa: E402
from fakecommon import FakeHandler, FakeServer, FakeState  # noqa: E402

ALGORITHM = "AWS4-HMAC-SHA256"
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
       "transfer-encoding", "upgrade", "content-length",
       "expect"}  # the proxy already answered 100-continue and holds the whole body


def s3_signature(secret, region, datetime_str, method, c_uri, c_query, headers, signed, payload_hash,
                 service="s3"):
    """AWS SigV4 -> (signature_hex, canonical_request, string_to_sign)."""
    return fakecommon.v4_signature(ALGORITHM, ("AWS4" + secret).encode(), "aws4_request", service, region,
                                   datetime_str, method, c_uri, c_query, headers, signed, payload_hash)


class SigError(Exception):
    def __init__(self, status, code, message, extra=None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


def _xml_escape(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ProxyApp:
    def __init__(self, args):
        self.state = FakeState()
        self.verbose = args.verbose
        u = urllib.parse.urlsplit(args.upstream)
        self.upstream = (u.hostname, u.port or 80)
        self.initial = {"access_key": args.ak, "secret_key": args.sk, "region": args.region,
                        "session_token": args.session_token, "check_skew": True, "anonymous": False}
        self.cfg_lock = threading.Lock()
        self.reset_config()
        self.local = threading.local()
        self.port = None

    def reset_config(self):
        with self.cfg_lock:
            self.cfg = dict(self.initial)

    def configure(self, req):
        with self.cfg_lock:
            for k, v in req.items():
                if k not in self.cfg:
                    raise KeyError("unknown control key %r" % k)
                self.cfg[k] = v

    def describe(self):
        with self.cfg_lock:
            d = dict(self.cfg)
        d["secret_key"] = "***"
        d["port"], d["upstream"] = self.port, "http://%s:%d" % self.upstream
        return d

    def conf(self, k):
        with self.cfg_lock:
            return self.cfg[k]


class ProxyHandler(FakeHandler):
    server_version = "AmazonS3"
    KIND_ALIASES = {"object": ("get", "head")}

    def error_body(self, status, code, message, extra=None):
        code = code or {403: "AccessDenied", 404: "NoSuchKey", 416: "InvalidRange", 429: "SlowDown",
                        500: "InternalError", 503: "SlowDown"}.get(status, "InternalError")
        rid = secrets.token_hex(8).upper()
        parts = ["<Code>%s</Code>" % code, "<Message>%s</Message>" % _xml_escape(message)]
        for k, v in (extra or {}).items():
            parts.append("<%s>%s</%s>" % (k, _xml_escape(v), k))
        parts.append("<RequestId>%s</RequestId>" % rid)
        body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>%s</Error>' % "".join(parts)
        return "application/xml", body.encode(), {"x-amz-request-id": rid}

    def read_request_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(out)
                out.append(self.rfile.read(size))
                self.rfile.readline()
        return self.read_body()

    # ---- SigV4 verification -------------------------------------------------
    def verify(self, raw_path, raw_query, body):
        q = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        hdrs = {k.lower(): ",".join(v.strip() for v in self.headers.get_all(k)) for k in set(self.headers.keys())}
        auth = self.headers.get("Authorization")
        presigned = "X-Amz-Algorithm" in q
        if auth is None and not presigned:
            if self.app.conf("anonymous"):
                return  # like a public-read bucket
            raise SigError(403, "AccessDenied", "Access Denied")
        if auth is not None and presigned:
            raise SigError(400, "InvalidArgument", "Only one auth mechanism allowed")
        if auth is not None:
            if not auth.startswith(ALGORITHM + " "):
                raise SigError(400, "InvalidArgument", "Unsupported Authorization Type")
            fields = {}
            for part in auth[len(ALGORITHM) + 1:].split(","):
                k, _, v = part.strip().partition("=")
                fields[k] = v
            try:
                cred, signed_s, got = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
            except KeyError as e:
                raise SigError(400, "AuthorizationHeaderMalformed", "missing %s" % e)
            dt = hdrs.get("x-amz-date", "")
            payload = hdrs.get("x-amz-content-sha256")
            if payload is None:
                payload = hashlib.sha256(body).hexdigest()
            drop = ()
        else:
            g = lambda k: q.get(k, [""])[0]  # noqa: E731
            cred, signed_s, got, dt = g("X-Amz-Credential"), g("X-Amz-SignedHeaders"), g("X-Amz-Signature"), \
                g("X-Amz-Date")
            payload = hdrs.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            drop = ("X-Amz-Signature",)
            try:
                t0 = calendar.timegm(time.strptime(dt, "%Y%m%dT%H%M%SZ"))
                exp = int(g("X-Amz-Expires") or 0)
            except ValueError:
                raise SigError(403, "AccessDenied", "bad X-Amz-Date or X-Amz-Expires")
            if time.time() > t0 + exp:
                raise SigError(403, "AccessDenied", "Request has expired")
        parts = cred.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise SigError(400, "AuthorizationHeaderMalformed", "malformed credential %r" % cred)
        ak, date, region, service = parts[0], parts[1], parts[2], parts[3]
        if ak != self.app.conf("access_key"):
            raise SigError(403, "InvalidAccessKeyId",
                           "The AWS Access Key Id you provided does not exist in our records.")
        if region != self.app.conf("region"):
            raise SigError(400, "AuthorizationHeaderMalformed",
                           "the region '%s' is wrong; expecting '%s'" % (region, self.app.conf("region")))
        if service != "s3":
            raise SigError(400, "AuthorizationHeaderMalformed", "service must be s3, not %r" % service)
        if len(dt) != 16 or dt[:8] != date:
            raise SigError(403, "SignatureDoesNotMatch", "x-amz-date %r does not match the scope date" % dt)
        if auth is not None and self.app.conf("check_skew"):
            try:
                t = calendar.timegm(time.strptime(dt, "%Y%m%dT%H%M%SZ"))
            except ValueError:
                raise SigError(403, "AccessDenied", "bad x-amz-date")
            if abs(t - time.time()) > 15 * 60:
                raise SigError(403, "RequestTimeTooSkewed",
                               "The difference between the request time and the current time is too large.")
        signed = signed_s.split(";")
        if "host" not in signed:
            raise SigError(403, "SignatureDoesNotMatch", "host must be signed")
        for h in signed:
            if h not in hdrs:
                raise SigError(403, "SignatureDoesNotMatch", "signed header %r is missing" % h)
        tok = self.app.conf("session_token")
        if tok and hdrs.get("x-amz-security-token", q.get("X-Amz-Security-Token", [""])[0]) != tok:
            raise SigError(403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
        want, creq, sts = s3_signature(self.app.conf("secret_key"), region, dt, self.command,
                                       fakecommon.canonical_uri(raw_path),
                                       fakecommon.canonical_query(raw_query, drop), hdrs, signed, payload)
        if not hmac.compare_digest(want, got):
            raise SigError(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature you provided. "
                           "Check your key and signing method.",
                           {"AWSAccessKeyId": ak, "StringToSign": sts, "SignatureProvided": got,
                            "CanonicalRequest": creq})
        if auth is not None and len(payload) == 64 and payload != hashlib.sha256(body).hexdigest():
            raise SigError(400, "XAmzContentSHA256Mismatch",
                           "The provided 'x-amz-content-sha256' header does not match what was computed.")

    # ---- routing / forwarding ----------------------------------------------
    def route(self):
        raw_path, _, raw_query = self.path.partition("?")
        segs = raw_path.split("/")[1:]
        if segs and segs[0] == "__fake" and len(segs) == 2:
            return self.handle_control(segs[1])
        bucket = urllib.parse.unquote(segs[0]) if segs else ""
        key = urllib.parse.unquote("/".join(segs[1:]))
        if not bucket:
            kind = "service"
        elif not key:
            kind = "list" if self.command == "GET" else "bucket"
        else:
            kind = {"GET": "get", "HEAD": "head", "PUT": "put", "DELETE": "delete"}.get(self.command, "other")
        if self.classify(kind, bucket + ("/" + key if key else "")):
            return
        body = self.read_request_body()
        try:
            self.verify(raw_path, raw_query, body)
        except SigError as e:
            ctype, b, extra = self.error_body(e.status, e.code, e.message, e.extra)
            self.send_simple(e.status, b, ctype, extra)
            return
        self.forward(body, "%s/%s" % (bucket, key) if kind == "get" else None)

    def _upstream(self, fresh=False):
        """-> (connection, reused?) — one keep-alive connection per handler thread."""
        c = getattr(self.app.local, "conn", None)
        if c is not None and not fresh:
            return c, True
        if c is not None:
            c.close()
        c = http.client.HTTPConnection(*self.app.upstream, timeout=120)
        self.app.local.conn = c
        return c, False

    def forward(self, body, stats_key):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn, reused = self._upstream()
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
            # the idle keep-alive connection had been closed by s3rver: resend once on a new one
            conn, _ = self._upstream(fresh=True)
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
        out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP and k.lower() not in ("date", "server")}
        length = resp.getheader("Content-Length")
        if self.command == "HEAD" or resp.status in (204, 304):
            out["Content-Length"] = length if length is not None else "0"
            resp.read()
            self.send_head_only(resp.status, out)
            return
        if length is None:  # chunked upstream: buffer it (error bodies, listings)
            data = resp.read()
            out["Content-Length"] = str(len(data))
            self.send_head_only(resp.status, out)
            self.wfile.write(data)
            return
        n = int(length)
        out["Content-Length"] = str(n)
        self.send_head_only(resp.status, out)
        sent = self.relay_body(resp, n, stats_key if resp.status in (200, 206) else None)
        if sent < n:
            self._upstream(fresh=True)  # the upstream response was not drained: drop that connection
        else:
            resp.read()  # reach EOF so the connection can carry the next request


def start(args):
    app = ProxyApp(args)
    srv = FakeServer((args.host, args.port), ProxyHandler, app)
    app.port = srv.server_address[1]
    fakecommon.serve_forever_in_thread(srv)
    return app, srv


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True, help="s3rver's URL, e.g. http://127.0.0.1:4568")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ak", default="S3RVER")
    p.add_argument("--sk", default="S3RVER")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--session-token", default=None, help="require this x-amz-security-token")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    app, _ = start(args)
    sys.stdout.write("READY %d\n" % app.port)
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
