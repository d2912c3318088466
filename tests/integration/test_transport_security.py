"""Transport security: TLS peers are verified, a private CA is trusted only when given, and a
hostile redirect can neither fetch a local file nor downgrade HTTPS to plain HTTP.

Real parts: the fake Hugging Face Hub serving HTTPS on both its ports (fake_hf.py
--tls-cert) with a certificate from a throwaway CA made here by the openssl CLI, and a small
S3-shaped origin (stdlib http.server, optionally TLS) whose object answers are redirects
chosen by the test. Clients: aibrix_download and aibrix_runtime's mount.
"""

import hashlib
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest_plugins = ["runtime"]  # runtime_factory

import secrets_audit  # noqa: E402
from conftest import FAKES_DIR, PYTHON, HFHub, ServerProcess  # noqa: E402
from runtime import BUILD, clean_env, read_all, sha256  # noqa: E402

DOWNLOAD = BUILD / "downloader" / "aibrix_download"
REPO_ID = "acme/tls-llm"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                "-subj", "/CN=aibrix test %s" % ca, cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


@pytest.fixture
def tls_hub(pki, tmp_path):
    root = tmp_path / "hf_root"
    root.mkdir()
    proc = ServerProcess([PYTHON, FAKES_DIR / "fake_hf.py", "--root", root, "--port", 0, "--cdn-port", 0,
                          "--tls-cert", pki / "server.pem", "--tls-key", pki / "server.key"],
                         tmp_path / "fake_hf.log")
    try:
        _, port, cdn_port = proc.wait_line("READY ").split()
        hub = HFHub(root, proc, int(port), int(cdn_port))
        # READY comes after both listeners are up; only add_repo and env are used (on disk)
        hub.url, hub.cdn_url = "https://localhost:%s" % port, "https://localhost:%s" % cdn_port
        yield hub
    finally:
        proc.stop()


CA_VARS = ("AIBRIX_CA_BUNDLE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def ca_env(env, **ca):
    """env with only the CA variables given here: the machine may set them all (an empty value
    counts as unset), e.g. CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt."""
    return {**env, **{v: "" for v in CA_VARS}, **{k: str(p) for k, p in ca.items()}}


def download(uri, out, env):
    return subprocess.run([str(DOWNLOAD), "--model-uri", uri, "--local-dir", str(out)], env=clean_env(env),
                          capture_output=True, text=True, timeout=120)


def written(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*")
                  if p.is_file() and ".cache" not in p.relative_to(root).parts)


def test_an_unknown_ca_is_refused_and_a_given_bundle_is_trusted(tls_hub, pki, tmp_path):
    manifest = tls_hub.add_repo(REPO_ID, size="3M", seed=41)

    # the system store does not know the throwaway CA: nothing is fetched, the error says why
    r = download("hf://" + REPO_ID, tmp_path / "none", ca_env(tls_hub.env()))
    assert r.returncode != 0
    assert "certificate" in r.stderr.lower(), r.stderr
    assert not (tmp_path / "none").exists() or written(tmp_path / "none") == []

    # a bundle of some other CA is no better
    r = download("hf://" + REPO_ID, tmp_path / "other", ca_env(tls_hub.env(), REQUESTS_CA_BUNDLE=pki / "other-ca.pem"))
    assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr

    # the right CA, by each of the variables the Python clients read: every byte arrives, the
    # LFS files through the HTTPS CDN
    for i, var in enumerate(CA_VARS):
        out = tmp_path / ("ok%d" % i)
        r = download("hf://" + REPO_ID, out, ca_env(tls_hub.env(), **{var: pki / "ca.pem"}))
        assert r.returncode == 0, (var, r.stderr)
        model = Path(r.stdout.strip().splitlines()[-1])  # the model dir it printed
        assert {k: sha256(model / k) for k in manifest} == {k: v["sha256"] for k, v in manifest.items()}, var


def test_an_unreadable_ca_bundle_is_a_clear_error(tls_hub, tmp_path):
    tls_hub.add_repo(REPO_ID, size="1M", seed=42)
    missing = tmp_path / "no-such-ca.pem"
    r = download("hf://" + REPO_ID, tmp_path / "out", ca_env(tls_hub.env(), CURL_CA_BUNDLE=missing))
    assert r.returncode != 0
    assert "CURL_CA_BUNDLE" in r.stderr and str(missing) in r.stderr, r.stderr


def test_the_mount_reads_through_https_with_the_given_ca(tls_hub, pki, runtime_factory):
    manifest = tls_hub.add_repo(REPO_ID, size="3M", seed=43)
    rt = runtime_factory("m=hf://" + REPO_ID, env=ca_env(tls_hub.env(), SSL_CERT_FILE=pki / "ca.pem"))
    for rel, meta in manifest.items():
        assert read_all(rt.mount / "m" / rel) == meta["sha256"], rel
    assert "verified against the CA bundle" in rt.log()


# ---- hostile redirects --------------------------------------------------------------------------

class RedirectingS3(BaseHTTPRequestHandler):
    """Lists one object; answers every object GET with a redirect to server.location."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        if "list-type=2" in self.path:
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<Name>bkt</Name><Prefix>m/</Prefix><KeyCount>1</KeyCount><IsTruncated>false</IsTruncated>"
                    "<Contents><Key>m/config.json</Key><Size>%d</Size><ETag>\"%s\"</ETag>"
                    "<LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>"
                    % (self.server.size, self.server.md5)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.server.object_gets += 1
        self.send_response(302)
        self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def redirecting_s3(pki):
    servers = []

    def make(location, size, md5="0123456789abcdef0123456789abcdef", tls=False):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), RedirectingS3)
        srv.daemon_threads = True
        srv.location, srv.size, srv.md5, srv.object_gets = location, size, md5, 0
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        scheme = "https" if tls else "http"
        srv.endpoint = "%s://localhost:%d" % (scheme, srv.server_address[1])
        return srv

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def s3_env(endpoint, pki):
    return ca_env({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAREDIRECTTEST",
                   "AWS_SECRET_ACCESS_KEY": secrets_audit.secret("redirect-test-secret-key-0001"),
                   "AWS_REGION": "us-east-1", "DOWNLOADER_MAX_ATTEMPTS": "2", "DOWNLOADER_BACKOFF_BASE": "0.01"},
                  AIBRIX_CA_BUNDLE=pki / "ca.pem")


def test_a_redirect_to_a_local_file_is_never_followed(redirecting_s3, pki, tmp_path):
    local = tmp_path / "local-secret.txt"
    local.write_text("CONTENT-OF-A-LOCAL-FILE-THE-ORIGIN-WANTS\n")
    # listed with the local file's size and MD5 ETag, so verification alone would not stop it
    srv = redirecting_s3("file://" + str(local), size=local.stat().st_size,
                         md5=hashlib.md5(local.read_bytes()).hexdigest())
    r = download("s3://bkt/m/", tmp_path / "out", s3_env(srv.endpoint, pki))
    assert r.returncode != 0, r.stdout
    assert "Unsupported protocol" in r.stderr or "disabled" in r.stderr, r.stderr
    assert srv.object_gets >= 1
    for p in (tmp_path / "out").rglob("*") if (tmp_path / "out").exists() else ():
        assert not p.is_file() or b"CONTENT-OF-A-LOCAL-FILE" not in p.read_bytes(), p


def test_https_is_never_downgraded_by_a_redirect(redirecting_s3, pki, tmp_path):
    plain = redirecting_s3("http://127.0.0.1:9/never", size=10)  # would be the downgrade target
    srv = redirecting_s3(plain.endpoint + "/bkt/m/config.json", size=10, tls=True)
    r = download("s3://bkt/m/", tmp_path / "out", s3_env(srv.endpoint, pki))
    assert r.returncode != 0
    assert "https" in r.stderr and "refused" in r.stderr, r.stderr
    assert plain.object_gets == 0
