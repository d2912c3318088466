"""test_objstore_source.py - the s3:// and tos:// sources (downloader/objstore.c,
source_s3.c, source_tos.c) end to end over real sockets.

Every test runs tests/tools/source_probe (the real library) against a real server:
s3rver for S3 and tests/fakes/fake_tos.py for TOS, and checks what a user sees:
paths, sizes, ETags and digests of a listing, exact bytes of a ranged read, and exit
codes and messages (3 = not found / access denied, 2 = bad configuration, 4 = stale).

s3rver 3.7 accepts any SigV4 signature made with a known access key (its V4 check is
unimplemented), so the S3 tests go through `SigV4Gate`, a small proxy in front of it that
recomputes every signature with botocore (the official AWS signer) and answers
SignatureDoesNotMatch like S3 when it differs. The fake TOS checks TOS4 itself.
Run: /usr/bin/python3 -m pytest tests/integration/test_objstore_source.py
     (AIBRIX_BUILD_DIR = build dir, default <repo>/build)
"""
import hashlib
import http.client
import math
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
PROBE = BUILD / "tests" / "tools" / "source_probe"
WRONG_SECRET = "WrongSecretKeyValue/For+Tests=="


def probe(args, env, timeout=120):
    """Run source_probe with exactly env (plus PATH); returns CompletedProcess (bytes)."""
    if not PROBE.exists():
        pytest.fail("%s not built (ninja -C %s tests/tools/source_probe)" % (PROBE, BUILD))
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_EC2_METADATA_DISABLED": "true",
            "HOME": "/nonexistent", "DOWNLOADER_MAX_ATTEMPTS": "2"}
    full.update(env)
    return subprocess.run([str(PROBE), *args], env=full, capture_output=True, timeout=timeout)


def listing(r):
    """Parse `source_probe list` output into {path: (size, etag, digest_kind, digest)}."""
    assert r.returncode == 0, r.stderr.decode()
    out = {}
    for line in r.stdout.decode().splitlines():
        path, size, etag, kind, digest = line.split("\t")
        out[path] = (int(size), etag, kind, digest)
    return out


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def tree_files(root):
    root = Path(root)
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------
# S3: s3rver behind a SigV4-checking gate

class SigV4Gate:
    """A reverse proxy that verifies SigV4 with botocore, then forwards to s3rver."""

    def __init__(self, upstream_port, ak, sk):
        self.upstream_port, self.ak, self.sk = upstream_port, ak, sk
        self.checked = 0
        self.seen_headers = []
        self.paths = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                auth = self.headers.get("Authorization")
                gate.seen_headers.append({k.lower(): v for k, v in self.headers.items()})
                gate.paths.append(self.path)
                if auth is not None and not gate.verify(self.command, self.path, self.headers, auth):
                    body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch'
                            b'</Code><Message>The request signature we calculated does not match the '
                            b'signature you provided.</Message></Error>')
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", gate.upstream_port, timeout=30)
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, headers=fwd)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verify(self, method, path, headers, auth):
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, "
                     r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$", auth)
        if not m or m.group(1) != self.ak:
            return False
        req = AWSRequest(method=method, url="http://%s%s" % (headers["Host"], path))
        for h in m.group(4).split(";"):
            if h != "host":
                req.headers[h] = headers[h]
        req.context["timestamp"] = headers["x-amz-date"]
        signer = S3SigV4Auth(Credentials(self.ak, self.sk, headers.get("x-amz-security-token")),
                             "s3", m.group(3))
        want = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        self.checked += 1
        return want == m.group(5)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3rver_legacy_des(monkeypatch):
    """s3rver makes continuation tokens with DES, which Node's OpenSSL 3 refuses (every
    second list page is a 500 ERR_OSSL_EVP_UNSUPPORTED) unless the legacy provider is on.
    conftest.py's s3_server starts node with our environment, so set it before it starts."""
    monkeypatch.setenv("NODE_OPTIONS", "--openssl-legacy-provider")


@pytest.fixture
def s3(s3rver_legacy_des, s3_server):
    gate = SigV4Gate(s3_server.port, s3_server.ak, s3_server.sk)
    s3_server.gate = gate
    s3_server.probe_env = dict(s3_server.env(), AWS_ENDPOINT_URL_S3=gate.endpoint)
    try:
        yield s3_server
    finally:
        gate.stop()


@pytest.fixture
def s3_model(s3, model_tree_factory):
    """A model under models/llama/ (odd names included) and a sibling models/llama-2/."""
    tree = model_tree_factory(size="2M", odd_names=True)
    s3.upload_tree(tree.path, prefix="models/llama")
    s3.client().put_object(Bucket=s3.bucket, Key="models/llama-2/config.json", Body=b"{}")
    return tree


def test_s3_lists_nested_prefix_with_sizes_and_md5(s3, s3_model):
    files = tree_files(s3_model.path)
    assert any("/" in f for f in files) and any(" " in f for f in files)
    for uri in ("s3://models/models/llama/", "s3://models/models/llama"):
        got = listing(probe([uri, "list"], s3.probe_env))
        assert sorted(got) == sorted(files), uri  # llama-2 is a sibling, not content
        for rel, p in files.items():
            size, etag, kind, digest = got[rel]
            assert size == p.stat().st_size
            assert etag == md5_of(p) and kind == "md5" and digest == etag
    assert s3.gate.checked > 0


def test_s3_paginates_past_1000_keys(s3):
    n = 1007  # s3rver caps a page at 1000 keys
    c = s3.client()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: c.put_object(Bucket=s3.bucket, Key="many/f%05d.txt" % i,
                                           Body=b"%d" % i), range(n)))
    got = listing(probe(["s3://models/many/", "list"], s3.probe_env))
    assert len(got) == n
    assert got["f01006.txt"][0] == 4
    pages = [p for p in s3.gate.paths if "list-type=2" in p]
    assert len(pages) == 2 and "continuation-token=" in pages[1]


def test_s3_ranged_get_returns_exact_bytes(s3, s3_model):
    files = tree_files(s3_model.path)
    big = max(files, key=lambda f: files[f].stat().st_size)
    data = files[big].read_bytes()
    # not (0, 1): s3rver answers "bytes=0-0" with the whole object (its end 0 is falsy)
    for off, ln in ((0, 2), (5, 1), (0, 4096), (len(data) // 2 - 7, 100003), (len(data) - 10, 10)):
        r = probe(["s3://models/models/llama", "get", big, str(off), str(ln)], s3.probe_env)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == data[off:off + ln]
    odd = next(f for f in files if "+" in f)
    r = probe(["s3://models/models/llama/", "get", odd, "0", str(files[odd].stat().st_size)],
              s3.probe_env)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == files[odd].read_bytes()
    # the read is pinned to the listed ETag and the signature covered what was sent
    gets = [h for h in s3.gate.seen_headers if "range" in h]
    assert gets and all(h.get("if-match", "").startswith('"') for h in gets)
    assert all(h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD" for h in gets)


def test_s3_single_object_uri(s3, s3_model):
    files = tree_files(s3_model.path)
    got = listing(probe(["s3://models/models/llama/config.json", "list"], s3.probe_env))
    assert list(got) == ["config.json"]
    assert got["config.json"][0] == files["config.json"].stat().st_size
    r = probe(["s3://models/models/llama/config.json", "get", "config.json", "0", "5"], s3.probe_env)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == files["config.json"].read_bytes()[:5]


def test_s3_empty_prefix_is_not_found(s3, s3_model):
    r = probe(["s3://models/nothing/here/", "list"], s3.probe_env)
    assert r.returncode == 3
    assert b"no objects under s3://models/nothing/here/" in r.stderr


def test_s3_unknown_bucket_names_it(s3):
    r = probe(["s3://no-such-bucket-x1/models/", "list"], s3.probe_env)
    assert r.returncode == 3, r.stderr.decode()
    err = r.stderr.decode()
    assert "no-such-bucket-x1" in err and "does not exist" in err


def test_s3_wrong_secret_is_access_denied(s3, s3_model):
    env = dict(s3.probe_env, AWS_SECRET_ACCESS_KEY=WRONG_SECRET)
    r = probe(["s3://models/models/llama/", "list"], env)
    assert r.returncode == 3, r.stderr.decode()
    err = r.stderr.decode()
    assert "access denied" in err and "s3://models" in err
    assert WRONG_SECRET not in err


def test_s3_unknown_access_key_is_access_denied(s3, s3_model):
    r = probe(["s3://models/models/llama/", "list"], dict(s3.probe_env, AWS_ACCESS_KEY_ID="AKIDUNKNOWN0001"))
    assert r.returncode == 3, r.stderr.decode()
    assert b"access denied" in r.stderr


def test_s3_only_access_key_is_a_clear_error(s3):
    env = dict(s3.probe_env)
    del env["AWS_SECRET_ACCESS_KEY"]
    r = probe(["s3://models/models/llama/", "list"], env)
    assert r.returncode == 2
    assert b"AWS_SECRET_ACCESS_KEY" in r.stderr
    assert not s3.gate.seen_headers  # refused before any request


def test_s3_without_credentials_sends_unsigned_requests(s3, s3_model):
    env = {k: v for k, v in s3.probe_env.items() if not k.startswith("AWS_") or k in
           ("AWS_ENDPOINT_URL_S3", "AWS_REGION")}
    got = listing(probe(["s3://models/models/llama/", "list"], env))
    assert "config.json" in got
    assert s3.gate.seen_headers and all("authorization" not in h for h in s3.gate.seen_headers)


def test_s3_session_token_is_signed(s3, s3_model):
    env = dict(s3.probe_env, AWS_SESSION_TOKEN="FQoGZXIvYXdzEXAMPLETOKEN-session-0001")
    listing(probe(["s3://models/models/llama/", "list"], env))
    h = s3.gate.seen_headers[-1]
    assert h["x-amz-security-token"] == "FQoGZXIvYXdzEXAMPLETOKEN-session-0001"
    assert "x-amz-security-token" in h["authorization"]


# --------------------------------------------------------------------------
# TOS: the fake checks TOS4 signatures itself

@pytest.fixture
def tos_model(tos_server, model_tree_factory):
    tree = model_tree_factory(size="2M", odd_names=True)
    tos_server.put_tree("models", "org/llama", tree.path)
    (tos_server.root / "models" / "org" / "llama-2").mkdir(parents=True)
    (tos_server.root / "models" / "org" / "llama-2" / "x.json").write_bytes(b"{}")
    return tree


def test_tos_lists_nested_prefix_with_crc64(tos_server, tos_model):
    import fake_tos
    files = tree_files(tos_model.path)
    for uri in ("tos://models/org/llama/", "tos://models/org/llama"):
        got = listing(probe([uri, "list"], tos_server.env()))
        assert sorted(got) == sorted(files), uri
        for rel, p in files.items():
            size, etag, kind, digest = got[rel]
            assert size == p.stat().st_size
            assert etag == md5_of(p)
            assert kind == "crc64ecma" and digest == str(fake_tos.crc64_reference(p.read_bytes()))


def test_tos_paginates(tos_server, tos_model):
    files = tree_files(tos_model.path)
    tos_server.control(page_size=2)
    got = listing(probe(["tos://models/org/llama/", "list"], tos_server.env()))
    assert sorted(got) == sorted(files)
    assert tos_server.stats()["requests"]["list"] == math.ceil(len(files) / 2)


def test_tos_ranged_get_returns_exact_bytes(tos_server, tos_model):
    files = tree_files(tos_model.path)
    big = max(files, key=lambda f: files[f].stat().st_size)
    data = files[big].read_bytes()
    for off, ln in ((0, 8), (12345, 200000), (len(data) - 1, 1)):
        r = probe(["tos://models/org/llama", "get", big, str(off), str(ln)], tos_server.env())
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == data[off:off + ln]
    log = tos_server.stats()["log"]
    gets = [e for e in log if e["kind"] == "get"]
    assert gets and all(e["auth"] and e["range"] for e in gets)


def test_tos_single_object_uri(tos_server, tos_model):
    files = tree_files(tos_model.path)
    got = listing(probe(["tos://models/org/llama/config.json", "list"], tos_server.env()))
    assert list(got) == ["config.json"]
    r = probe(["tos://models/org/llama/config.json", "get", "config.json", "1", "4"], tos_server.env())
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == files["config.json"].read_bytes()[1:5]


def test_tos_localhost_endpoint_is_path_style(tos_server, tos_model):
    env = dict(tos_server.env(), TOS_ENDPOINT="http://localhost:%d" % tos_server.port)
    got = listing(probe(["tos://models/org/llama/", "list"], env))
    assert "config.json" in got


def test_tos_bare_host_endpoint_means_https(tos_server, tos_model):
    env = dict(tos_server.env(), TOS_ENDPOINT=tos_server.endpoint, DOWNLOADER_MAX_ATTEMPTS="1")
    r = probe(["tos://models/org/llama/", "list"], env)
    assert r.returncode == 4
    assert ("https://127.0.0.1:%d/models" % tos_server.port).encode() in r.stderr


def test_tos_empty_prefix_is_not_found(tos_server, tos_model):
    r = probe(["tos://models/org/nothing/", "list"], tos_server.env())
    assert r.returncode == 3
    assert b"no objects under tos://models/org/nothing/" in r.stderr


def test_tos_wrong_secret_is_rejected(tos_server, tos_model):
    r = probe(["tos://models/org/llama/", "list"], dict(tos_server.env(), TOS_SECRET_KEY=WRONG_SECRET))
    assert r.returncode == 3, r.stderr.decode()
    err = r.stderr.decode()
    assert "access denied" in err and "tos://models" in err
    assert WRONG_SECRET not in err and tos_server.sk not in err


def test_tos_unknown_bucket_names_it(tos_server, tos_model):
    r = probe(["tos://no-such-bucket-y2/org/", "list"], tos_server.env())
    assert r.returncode == 3
    err = r.stderr.decode()
    assert "no-such-bucket-y2" in err and "does not exist" in err


def test_tos_only_one_key_is_a_clear_error(tos_server):
    env = tos_server.env()
    del env["TOS_SECRET_KEY"]
    r = probe(["tos://models/org/llama/", "list"], env)
    assert r.returncode == 2
    assert b"TOS_SECRET_KEY" in r.stderr


def test_tos_security_token(tos_server, tos_model):
    token = "STStoken-for-tests-0123456789"
    tos_server.control(security_token=token)
    r = probe(["tos://models/org/llama/", "list"], tos_server.env())
    assert r.returncode == 3
    got = listing(probe(["tos://models/org/llama/", "list"], dict(tos_server.env(), TOS_SECURITY_TOKEN=token)))
    assert "config.json" in got


def test_tos_changed_object_is_stale(tos_server, tos_model):
    """The object changes between the listing and the read: If-Match makes it a 412,
    reported as stale (exit 4) naming the object, never mixed bytes."""
    obj = tos_server.root / "models" / "org" / "llama" / "config.json"
    tos_server.faults({"match": "get", "delay": 3})
    p = subprocess.Popen([str(PROBE), "tos://models/org/llama/", "get", "config.json", "0", "4"],
                         env=dict(tos_server.env(), PATH=os.environ.get("PATH", "/usr/bin"),
                                  DOWNLOADER_MAX_ATTEMPTS="1"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while tos_server.stats()["requests"].get("list", 0) < 1:
        assert time.monotonic() < deadline, "the probe never listed"
        time.sleep(0.05)
    obj.write_bytes(b'{"changed": true}\n')
    out, err = p.communicate(timeout=30)
    assert p.returncode == 4, err.decode()
    assert b"tos://models/org/llama/config.json changed since it was listed" in err
    assert out == b""
