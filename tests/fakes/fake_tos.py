#!/usr/bin/env python3
"""A fake Volcengine TOS (native API) for tests: real HTTP on loopback, stdlib only.

Why: the downloader's `tos://` source must be tested against TOS's wire behaviour
(TOS4-HMAC-SHA256 signatures, JSON ListObjectsType2 with continuation tokens and
HashCrc64ecma, ranged GETs, JSON errors) without the internet. The fake
RECOMPUTES every request's signature from the configured secret and rejects
bad or missing ones (403), so a client that signs wrongly fails here as it would
against TOS. Fidelity is proven by running the official `@volcengine/tos-sdk`
against it (tests/integration/test_fakes_fidelity.py).

Data: buckets are directories `<root>/<bucket>/<keys...>`.
Addressing: virtual-hosted (Host `bucket.anything[:port]`) and path-style
(`/bucket/key`) when Host is an IP address, `localhost`, or has no dot.
Routes:
  GET  /?list-type=2&prefix=&delimiter=&max-keys=&continuation-token=&start-after=
       -> JSON {Name, Prefix, KeyCount, MaxKeys, IsTruncated,
                NextContinuationToken, CommonPrefixes, Contents[{Key, LastModified,
                ETag, Size, StorageClass, HashCrc64ecma}]}
  GET|HEAD /key  (Range -> 206, If-Match mismatch -> 412, If-None-Match -> 304)
       headers ETag ("md5"), x-tos-hash-crc64ecma, Content-Length, Last-Modified
  HEAD /  (bucket exists?)   GET / without a bucket: ListBuckets
  /__fake/control (POST JSON), /__fake/stats (GET), /__fake/reset (POST): unsigned.
Errors: JSON {Code, Message, RequestId, HostId, Resource, EC} (EC values are
made up), 403 AccessDenied (no auth) / InvalidAccessKeyId / SignatureDoesNotMatch
(the error also carries CanonicalRequest and StringToSign, as S3 does) /
RequestTimeTooSkewed; 404 NoSuchBucket / NoSuchKey; 412 PreconditionFailed.
Control keys besides faults (see fakecommon.py): page_size (server cap on keys
per list page), access_key, secret_key, region, security_token, check_skew.

Run: python3 fake_tos.py --root DIR [--port P] --ak AK --sk SK [--region R]
     [--page-size N]     prints "READY <port>".
"""

import argparse
import base64
import calendar
import datetime
import hashlib
import hmac
import json
import lzma
import mimetypes
import os
import secrets
import struct
import sys
import threading
import time
import urllib.parse
import ipaddress  # noqa: I100

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon  # noqa: E402
from fakecommon import FakeHandler, FakeServer, FakeState, http_date, iso_date  # noqa: E402

ALGORITHM = "TOS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# ---------------------------------------------------------------------------
# CRC-64/XZ (ECMA-182 polynomial, reflected, init and xorout all ones): TOS's
# HashCrc64ecma. The xz container stores exactly this CRC of the uncompressed
# data, so liblzma (C speed) computes it; crc64_reference() is the slow
# bit-by-bit definition the tests check it against.
CRC64_POLY_REFLECTED = 0xC96C5795D7870F42


def crc64_reference(data, crc=0):
    crc ^= 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (CRC64_POLY_REFLECTED if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def crc64_chunks(chunks):
    c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=[{
        "id": lzma.FILTER_LZMA2, "mode": lzma.MODE_FAST, "mf": lzma.MF_HC3,
        "nice_len": 2, "depth": 1, "dict_size": 4096}])
    tail = b""
    total = 0
    for ch in chunks:
        total += len(ch)
        out = c.compress(ch)
        if out:
            tail = (tail + out)[-65536:]
    if total == 0:
        return 0
    tail += c.flush()
    footer = tail[-12:]
    if footer[-2:] != b"YZ":
        raise RuntimeError("unexpected xz footer")
    index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
    idx = len(tail) - 12 - index_size
    return struct.unpack("<Q", tail[idx - 8:idx])[0]


def crc64_file(path):
    def gen():
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    return
                yield b
    return crc64_chunks(gen())


_hash_lock = threading.Lock()
_hash_cache = {}  # (path, size, mtime_ns) -> (md5hex, crc64 decimal string)


def object_hashes(path, st):
    key = (path, st.st_size, st.st_mtime_ns)
    with _hash_lock:
        hit = _hash_cache.get(key)
    if hit:
        return hit
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            md5.update(b)
    val = (md5.hexdigest(), str(crc64_file(path)))
    with _hash_lock:
        _hash_cache[key] = val
    return val


# ---------------------------------------------------------------------------
# TOS4-HMAC-SHA256 (SigV4 shape; key derivation from the bare secret).

canonical_uri = fakecommon.canonical_uri
canonical_query = fakecommon.canonical_query


def signing_key(secret, date, region, service="tos"):
    return fakecommon.v4_signing_key(secret.encode(), date, region, service, "request")


def compute_signature(secret, region, datetime_str, method, c_uri, c_query, headers, signed, payload_hash):
    """TOS4-HMAC-SHA256: the SigV4 shape with key derivation from the bare
    secret and the scope terminator "request". headers: {lowercase: value};
    signed: lowercase names. Returns (signature_hex, canonical_request, string_to_sign)."""
    return fakecommon.v4_signature(ALGORITHM, secret.encode(), "request", "tos", region, datetime_str, method,
                                   c_uri, c_query, headers, signed, payload_hash)


class AuthError(Exception):
    def __init__(self, code, message, extra=None):
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra or {}


EC = {  # made-up but stable "EC" values, one per error code
    "AccessDenied": "0003-00000001", "SignatureDoesNotMatch": "0002-00000001",
    "InvalidAccessKeyId": "0002-00000002", "RequestTimeTooSkewed": "0002-00000003",
    "InvalidSecurityToken": "0002-00000004", "NoSuchBucket": "0006-00000001",
    "NoSuchKey": "0017-00000003", "PreconditionFailed": "0017-00000012",
    "InvalidArgument": "0001-00000001", "InvalidRange": "0017-00000007",
    "MethodNotAllowed": "0001-00000002", "ServiceUnavailable": "0000-00000503",
    "InternalError": "0000-00000500", "ExceedAccountQPSLimit": "0000-00000429",
    "RequestTimeout": "0000-00000408",
}
STATUS_CODE = {400: "InvalidArgument", 403: "AccessDenied", 404: "NoSuchKey", 405: "MethodNotAllowed",
               408: "RequestTimeout", 412: "PreconditionFailed", 416: "InvalidRange",
               429: "ExceedAccountQPSLimit", 500: "InternalError", 503: "ServiceUnavailable"}


class TOSApp:
    def __init__(self, args):
        self.root = os.path.abspath(args.root)
        self.verbose = args.verbose
        self.state = FakeState()
        self.initial = {
            "page_size": args.page_size,
            "access_key": args.ak,
            "secret_key": args.sk,
            "region": args.region,
            "security_token": args.security_token,
            "check_skew": True,
        }
        self.cfg_lock = threading.Lock()
        self.reset_config()
        self.port = None

    def reset_config(self):
        with self.cfg_lock:
            self.cfg = dict(self.initial)

    def configure(self, req):
        with self.cfg_lock:
            for k, v in req.items():
                if k not in self.cfg:
                    raise KeyError("unknown control key %r" % k)
                if k == "page_size":
                    v = int(v)
                    if v < 1:
                        raise ValueError("page_size must be >= 1")
                self.cfg[k] = v

    def describe(self):
        with self.cfg_lock:
            d = dict(self.cfg)
        d["secret_key"] = "***"
        d["port"], d["root"] = self.port, self.root
        return d

    def conf(self, k):
        with self.cfg_lock:
            return self.cfg[k]

    def bucket_dir(self, bucket):
        if not bucket or bucket.startswith(".") or "/" in bucket:
            return None
        d = os.path.join(self.root, bucket)
        return d if os.path.isdir(d) else None

    def keys(self, bdir):
        out = []
        for dp, dns, fns in os.walk(bdir):
            for fn in fns:
                p = os.path.join(dp, fn)
                out.append(os.path.relpath(p, bdir).replace(os.sep, "/"))
        out.sort()
        return out


def _is_path_style_host(hostname):
    if not hostname or hostname == "localhost" or "." not in hostname:
        return True
    try:
        ipaddress.ip_address(hostname.strip("[]"))
        return True
    except ValueError:
        return False


class TOSHandler(FakeHandler):
    server_version = "TosServer"
    KIND_ALIASES = {"object": ("get", "head")}

    def _ids(self):
        rid = secrets.token_hex(12)
        return rid, {"x-tos-request-id": rid, "x-tos-id-2": secrets.token_hex(8)}

    def error_body(self, status, code, message, extra=None):
        code = code or STATUS_CODE.get(status, "InternalError")
        rid, hdrs = self._ids()
        body = {"Code": code, "Message": message, "RequestId": rid, "HostId": "fake-tos",
                "Resource": urllib.parse.unquote(self.path.partition("?")[0]), "EC": EC.get(code, "0000-00000000")}
        body.update(extra or {})
        hdrs["x-tos-ec"] = body["EC"]
        return "application/json", json.dumps(body).encode(), hdrs

    def tos_error(self, status, code, message, extra=None):
        ctype, body, hdrs = self.error_body(status, code, message, extra)
        self.send_simple(status, body, ctype, hdrs)

    # ---- authentication ---------------------------------------------------
    def verify(self, raw_path, raw_query, body):
        q = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        auth = self.headers.get("Authorization")
        hdrs = {k.lower(): ", ".join(self.headers.get_all(k)) for k in set(self.headers.keys())}
        if auth is None and "X-Tos-Algorithm" not in q:
            raise AuthError("AccessDenied", "Access Denied")
        if auth is not None:
            if not auth.startswith(ALGORITHM + " "):
                raise AuthError("AccessDenied", "unsupported authorization algorithm")
            fields = {}
            for part in auth[len(ALGORITHM) + 1:].split(","):
                k, _, v = part.strip().partition("=")
                fields[k] = v
            try:
                cred, signed_s, got_sig = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
            except KeyError as e:
                raise AuthError("AccessDenied", "malformed Authorization header: missing %s" % e)
            dt = self.headers.get("x-tos-date") or ""
            payload = self.headers.get("x-tos-content-sha256") or hashlib.sha256(body).hexdigest()
            drop = ()
        else:
            get = lambda k: q.get(k, [""])[0]  # noqa: E731
            cred, signed_s, got_sig, dt = get("X-Tos-Credential"), get("X-Tos-SignedHeaders"), \
                get("X-Tos-Signature"), get("X-Tos-Date")
            payload = get("X-Tos-Content-Sha256") or "UNSIGNED-PAYLOAD"
            drop = ("X-Tos-Signature",)
            try:
                t0 = calendar.timegm(time.strptime(dt, "%Y%m%dT%H%M%SZ"))
                expires = int(get("X-Tos-Expires") or 0)
            except ValueError:
                raise AuthError("AccessDenied", "bad X-Tos-Date or X-Tos-Expires")
            if self.app.conf("check_skew") and time.time() > t0 + expires:
                raise AuthError("AccessDenied", "Request has expired")
        parts = cred.split("/")
        if len(parts) != 5 or parts[3] != "tos" or parts[4] != "request":
            raise AuthError("AccessDenied", "malformed credential scope %r" % cred)
        ak, date, region = parts[0], parts[1], parts[2]
        if ak != self.app.conf("access_key"):
            raise AuthError("InvalidAccessKeyId", "The AccessKeyId you provided does not exist in our records.")
        if len(dt) != 16 or dt[:8] != date:
            raise AuthError("SignatureDoesNotMatch", "x-tos-date %r does not match the scope date %r" % (dt, date))
        if region != self.app.conf("region"):
            raise AuthError("SignatureDoesNotMatch",
                            "scope region %r, expected %r" % (region, self.app.conf("region")))
        if self.app.conf("check_skew") and auth is not None:
            try:
                t = datetime.datetime.strptime(dt, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
            except ValueError:
                raise AuthError("AccessDenied", "bad x-tos-date")
            if abs(t.timestamp() - time.time()) > 15 * 60:
                raise AuthError("RequestTimeTooSkewed", "The difference between the request time and the "
                                "server's time is too large.")
        signed = signed_s.split(";")
        if "host" not in signed:
            raise AuthError("SignatureDoesNotMatch", "host must be a signed header")
        for h in signed:
            if h not in hdrs:
                raise AuthError("SignatureDoesNotMatch", "signed header %r is missing from the request" % h)
        tok = self.app.conf("security_token")
        if tok and hdrs.get("x-tos-security-token", q.get("X-Tos-Security-Token", [""])[0]) != tok:
            raise AuthError("InvalidSecurityToken", "The security token included in the request is invalid")
        want, creq, sts = compute_signature(self.app.conf("secret_key"), region, dt, self.command,
                                            canonical_uri(raw_path), canonical_query(raw_query, drop),
                                            hdrs, signed, payload)
        if not hmac.compare_digest(want, got_sig):
            raise AuthError("SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature you provided. "
                            "Check your key and signing method.",
                            {"CanonicalRequest": creq, "StringToSign": sts, "SignatureProvided": got_sig})

    # ---- routing ----------------------------------------------------------
    def route(self):
        raw_path, _, raw_query = self.path.partition("?")
        segs = raw_path.split("/")[1:]
        if segs and segs[0] == "__fake" and len(segs) == 2:
            return self.handle_control(segs[1])
        host = (self.headers.get("Host") or "").strip()
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if _is_path_style_host(hostname):
            bucket = urllib.parse.unquote(segs[0]) if segs and segs[0] else ""
            raw_key = "/".join(segs[1:])
        else:
            bucket = hostname.split(".", 1)[0]
            raw_key = "/".join(segs)
        key = urllib.parse.unquote(raw_key)
        q = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        if not bucket:
            kind = "bucket"
        elif not key:
            kind = "list" if self.command == "GET" else "bucket"
        else:
            kind = "get" if self.command == "GET" else "head" if self.command == "HEAD" else "other"
        if self.classify(kind, bucket + ("/" + key if key else "")):
            return
        body = self.read_body()
        try:
            self.verify(raw_path, raw_query, body)
        except AuthError as e:
            self.tos_error(403, e.code, e.message, e.extra)
            return
        if not bucket:
            return self.list_buckets()
        bdir = self.app.bucket_dir(bucket)
        if bdir is None:
            self.tos_error(404, "NoSuchBucket", "The specified bucket does not exist.")
            return
        if not key:
            if self.command == "HEAD":
                _, h = self._ids()
                h["x-tos-bucket-region"] = self.app.conf("region")
                h["x-tos-storage-class"] = "STANDARD"
                self.send_simple(200, b"", "application/json", h)
                return
            if self.command == "GET":
                return self.list_objects(bucket, bdir, q)
        elif self.command in ("GET", "HEAD"):
            return self.get_object(bucket, bdir, key)
        self.tos_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    def list_buckets(self):
        _, h = self._ids()
        region = self.app.conf("region")
        out = []
        for b in sorted(os.listdir(self.app.root)):
            if self.app.bucket_dir(b):
                out.append({"Name": b, "CreationDate": iso_date(os.path.getmtime(os.path.join(self.app.root, b))),
                            "Location": region, "ExtranetEndpoint": "tos-%s.volces.com" % region,
                            "IntranetEndpoint": "tos-%s.ivolces.com" % region})
        self.send_json(200, {"Owner": {"ID": "fake-owner"}, "Buckets": out}, h)

    def list_objects(self, bucket, bdir, q):
        get = lambda k, d=None: q.get(k, [d])[0]  # noqa: E731
        prefix = get("prefix", "") or ""
        delimiter = get("delimiter", "") or ""
        start_after = get("start-after", "") or ""
        token = get("continuation-token")
        try:
            max_keys = int(get("max-keys", "1000") or "1000")
            if max_keys < 0:
                raise ValueError
        except ValueError:
            self.tos_error(400, "InvalidArgument", "invalid max-keys")
            return
        page = min(max_keys, 1000, self.app.conf("page_size"))
        after = start_after
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                self.tos_error(400, "InvalidArgument", "The continuation token provided is incorrect")
                return
        contents, prefixes = [], []
        last = None
        truncated = False
        seen_prefixes = set()
        for k in self.app.keys(bdir):
            if not k.startswith(prefix) or (after and k <= after):
                continue
            if delimiter:
                i = k.find(delimiter, len(prefix))
                if i >= 0:
                    cp = k[:i + len(delimiter)]
                    if cp in seen_prefixes:
                        continue
                    if after and cp <= after:
                        continue
                    if len(contents) + len(prefixes) >= page:
                        truncated = True
                        break
                    seen_prefixes.add(cp)
                    prefixes.append({"Prefix": cp})
                    last = cp + "\U0010ffff"  # skip everything under this prefix next page
                    continue
            if len(contents) + len(prefixes) >= page:
                truncated = True
                break
            p = os.path.join(bdir, k)
            st = os.stat(p)
            md5, crc = object_hashes(p, st)
            contents.append({"Key": k, "LastModified": iso_date(st.st_mtime), "ETag": '"%s"' % md5,
                             "Size": st.st_size, "StorageClass": "STANDARD",
                             "Owner": {"ID": "fake-owner", "DisplayName": "fake-owner"},
                             "HashCrc64ecma": crc})
            last = k
        out = {"Name": bucket, "Prefix": prefix, "MaxKeys": max_keys, "KeyCount": len(contents) + len(prefixes),
               "IsTruncated": truncated}
        if delimiter:
            out["Delimiter"] = delimiter
        if start_after:
            out["StartAfter"] = start_after
        if token:
            out["ContinuationToken"] = token
        if truncated:
            out["NextContinuationToken"] = base64.urlsafe_b64encode(last.encode()).decode()
        if prefixes:
            out["CommonPrefixes"] = prefixes
        if contents:
            out["Contents"] = contents
        _, h = self._ids()
        self.send_json(200, out, h)

    def get_object(self, bucket, bdir, key):
        p = os.path.normpath(os.path.join(bdir, key))
        if not p.startswith(bdir + os.sep) or not os.path.isfile(p) or key.endswith("/"):
            self.tos_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        st = os.stat(p)
        md5, crc = object_hashes(p, st)
        etag = '"%s"' % md5
        rid, h = self._ids()
        h.update({
            "ETag": etag,
            "Last-Modified": http_date(st.st_mtime),
            "Content-Type": mimetypes.guess_type(key)[0] or "application/octet-stream",
            "x-tos-hash-crc64ecma": crc,
            "x-tos-storage-class": "STANDARD",
        })
        norm = lambda s: s.strip().removeprefix("W/").strip('"')  # noqa: E731
        im = self.headers.get("If-Match")
        if im is not None and norm(im) != md5 and im.strip() != "*":
            self.tos_error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
            return
        inm = self.headers.get("If-None-Match")
        if inm is not None and (norm(inm) == md5 or inm.strip() == "*"):
            self.send_head_only(304, {"ETag": etag, "Content-Length": "0", **{k: v for k, v in h.items()
                                                                              if k.startswith("x-tos")}})
            return
        self.serve_file(p, st.st_size, "%s/%s" % (bucket, key), h, self.headers.get("Range"))


def start(args):
    app = TOSApp(args)
    srv = FakeServer((args.host, args.port), TOSHandler, app)
    app.port = srv.server_address[1]
    fakecommon.serve_forever_in_thread(srv)
    return app, srv


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="directory holding <bucket>/<keys...>")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ak", default="AKTPFAKEACCESSKEY", help="access key id")
    p.add_argument("--sk", default="fake/secret+key==", help="secret access key")
    p.add_argument("--region", default="cn-beijing")
    p.add_argument("--security-token", default=None, help="require this x-tos-security-token")
    p.add_argument("--page-size", type=int, default=1000, help="server cap on keys per list page")
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
