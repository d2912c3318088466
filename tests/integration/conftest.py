"""Shared pytest fixtures for the integration tests: real servers on loopback.

Why: every integration test talks to a real server over a real socket. These
fixtures own the servers' lifecycle (start on free ports, wait until they
answer, kill them at teardown even when the test fails) so tests read like user
stories. Servers: the fake Hugging Face Hub and fake TOS (tests/fakes/, run as
subprocesses) and s3rver (npm, tests/node_modules). Sample data comes from
tests/fakes/modelgen.py.

Fixtures:
  free_port            an unused TCP port on 127.0.0.1 (int)
  free_port_factory    callable() -> another unused port
  model_tree           a generated model tree (ModelTree: .path, .manifest, .files())
  model_tree_factory   callable(size="3M", seed=1, lora=False, shards=None, odd_names=False, path=None)
  hf_hub               fake HF Hub (HFHub): .url .cdn_url .root .port .cdn_port
                       .add_repo() .add_revision() .control() .faults() .stats() .reset() .env()
  tos_server           fake TOS (TOSServer): .url .endpoint .host .port .root .ak .sk .region
                       .add_bucket() .put_tree() .control() .faults() .stats() .reset() .env()
  s3_server            s3rver behind a SigV4-checking proxy (S3Server): .endpoint (the proxy:
                       clients use this) .proxy_port .port/.upstream (s3rver itself, unchecked)
                       .ak .sk .region .bucket .client() .create_bucket() .upload_tree()
                       .control() .faults() .stats() .reset() .env()
  run_node             callable(script, cfg) -> JSON: runs a Node script from tests/
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

# runtime.py is a plugin the test modules also import from: have its asserts rewritten
# whichever comes first
pytest.register_assert_rewrite("runtime")

TESTS_DIR = Path(__file__).resolve().parent.parent
FAKES_DIR = TESTS_DIR / "fakes"
NODE_MODULES = TESTS_DIR / "node_modules"
PYTHON = sys.executable

sys.path.insert(0, str(FAKES_DIR))
import modelgen  # noqa: E402
import secrets_audit  # noqa: E402 - watches our programs' output for the suite's credentials
from secrets_audit import pytest_sessionfinish, pytest_terminal_summary  # noqa: E402,F401


def get_free_port():
    """A port nothing listens on right now (bind to 0 and release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# process management

class ServerProcess:
    """A child process started in its own session, with stderr in a log file.
    `wait_line(prefix)` reads stdout until a line starting with prefix."""

    def __init__(self, argv, log_path, cwd=None, env=None):
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                     cwd=cwd, env=env, start_new_session=True)
        self._lines = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            with self._cond:
                self._lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._lines.append(None)  # EOF
            self._cond.notify_all()

    def wait_line(self, prefix, timeout=30):
        deadline = time.monotonic() + timeout
        i = 0
        with self._cond:
            while True:
                while i < len(self._lines):
                    line = self._lines[i]
                    i += 1
                    if line is None:
                        raise RuntimeError("%s exited (%s) before printing %r; log:\n%s"
                                           % (self.argv[:3], self.proc.poll(), prefix, self.log_tail()))
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timed out waiting for %r from %s; log:\n%s"
                                       % (prefix, self.argv[:3], self.log_tail()))
                self._cond.wait(left)

    def log_tail(self, n=4000):
        try:
            self._log.flush()
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM the process group we started, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


def http_json(method, url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def wait_http(url, timeout=30, proc=None):
    """Poll until the URL answers any HTTP status (readiness, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc is not None and proc.proc.poll() is not None:
                raise RuntimeError("server exited (%s); log:\n%s" % (proc.proc.poll(), proc.log_tail()))
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class _FakeControl:
    """control/faults/stats/reset over the fakes' /__fake/ routes."""

    url = ""

    def control(self, body=None, **kw):
        """POST /__fake/control. e.g. control(page_size=2) or
        control(faults=[{"match": "resolve", "status": 503, "count": 3}])."""
        req = dict(body or {})
        req.update(kw)
        return http_json("POST", self.url + "/__fake/control", req)

    def faults(self, *faults, append=False):
        """Install fault rules (replacing the current list unless append)."""
        return self.control({"add_faults" if append else "faults": list(faults)})

    def stats(self):
        return http_json("GET", self.url + "/__fake/stats")

    def reset(self):
        """Clear faults, statistics and runtime config (back to start-up flags)."""
        return http_json("POST", self.url + "/__fake/reset", {})


# --------------------------------------------------------------------------
# model trees

class ModelTree:
    def __init__(self, path, manifest):
        self.path = Path(path)
        self.manifest = manifest  # {relpath: {"size", "sha256"}}

    def files(self):
        return sorted(self.manifest)

    def __fspath__(self):
        return str(self.path)


@pytest.fixture
def model_tree_factory(tmp_path_factory):
    def make(size="3M", seed=1, lora=False, shards=None, odd_names=False, path=None):
        out = Path(path) if path else tmp_path_factory.mktemp("model") / "tree"
        m = modelgen.generate(str(out), size=size, seed=seed, lora=lora, shards=shards, odd_names=odd_names)
        return ModelTree(out, m)
    return make


@pytest.fixture
def model_tree(model_tree_factory):
    """A ~3 MiB model tree (seed 1): config/tokenizer files, nested folders,
    one safetensors file above the 1 MiB LFS threshold."""
    return model_tree_factory()


@pytest.fixture
def free_port():
    return get_free_port()


@pytest.fixture
def free_port_factory():
    return get_free_port


def _copy_tree(src, dst):
    src = Path(src)
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


# --------------------------------------------------------------------------
# fake Hugging Face Hub

class HFHub(_FakeControl):
    token = secrets_audit.secret("hf_fake_test_token_0123456789")

    def __init__(self, root, proc, port, cdn_port):
        self.root = Path(root)
        self.proc = proc
        self.port = port
        self.cdn_port = cdn_port
        self.url = "http://127.0.0.1:%d" % port
        self.cdn_url = "http://127.0.0.1:%d" % cdn_port

    def add_repo(self, repo_id, src=None, **gen):
        """Create repo `org/name` (main revision) from a directory or a ModelTree,
        or generate one with modelgen (gen: size, seed, lora, shards, odd_names).
        Returns the manifest {relpath: {size, sha256}}."""
        dst = self.root / repo_id
        if src is not None:
            _copy_tree(src, dst)
            return modelgen.tree_manifest(str(dst))
        return modelgen.generate(str(dst), **{"size": "3M", **gen})

    def add_revision(self, repo_id, rev, src=None, **gen):
        """Another revision (branch, tag, refs/pr/N) of an existing repo."""
        import urllib.parse
        dst = self.root / ".revisions" / repo_id / urllib.parse.quote(rev, safe="")
        if src is not None:
            _copy_tree(src, dst)
            return modelgen.tree_manifest(str(dst))
        return modelgen.generate(str(dst), **{"size": "3M", **gen})

    def commit(self, repo_id, rev="main"):
        import urllib.parse
        return http_json("GET", "%s/api/models/%s/revision/%s" % (self.url, repo_id,
                                                                  urllib.parse.quote(rev, safe="")))["sha"]

    def env(self, token=None):
        """Environment for a client of this hub (HF_ENDPOINT, HF_TOKEN, HF_HOME)."""
        e = {"HF_ENDPOINT": self.url, "HF_HOME": str(self.root.parent / "hf_home")}
        if token:
            e["HF_TOKEN"] = token
        return e


@pytest.fixture
def hf_hub(tmp_path):
    """The fake HF Hub on free ports with an empty root (add repos with add_repo).
    Valid token: HFHub.token. Gated/private repos, page size, aliases: control()."""
    root = tmp_path / "hf_root"
    root.mkdir()
    proc = ServerProcess([PYTHON, FAKES_DIR / "fake_hf.py", "--root", root, "--port", 0, "--cdn-port", 0,
                          "--token", HFHub.token], tmp_path / "fake_hf.log")
    try:
        _, port, cdn_port = proc.wait_line("READY ").split()
        hub = HFHub(root, proc, int(port), int(cdn_port))
        wait_http(hub.url + "/__fake/stats", proc=proc)
        yield hub
    finally:
        proc.stop()


# --------------------------------------------------------------------------
# fake TOS

class TOSServer(_FakeControl):
    ak = "AKLTfakeAccessKeyId0001"
    sk = secrets_audit.secret("fakeSecretKey/with+chars==")
    region = "cn-beijing"

    def __init__(self, root, proc, port):
        self.root = Path(root)
        self.proc = proc
        self.port = port
        self.host = "127.0.0.1"
        self.endpoint = "127.0.0.1:%d" % port
        self.url = "http://127.0.0.1:%d" % port

    def add_bucket(self, bucket):
        (self.root / bucket).mkdir(parents=True, exist_ok=True)
        return self.root / bucket

    def put_tree(self, bucket, prefix, src):
        """Copy a local tree (dir or ModelTree) under bucket/prefix; returns the keys."""
        base = self.add_bucket(bucket) / prefix.strip("/") if prefix.strip("/") else self.add_bucket(bucket)
        _copy_tree(src, base)
        keys = []
        for p in sorted(base.rglob("*")):
            if p.is_file():
                keys.append(p.relative_to(self.root / bucket).as_posix())
        return keys

    def env(self):
        """TOS_* environment pointing a client at this server (path-style, http)."""
        return {"TOS_ENDPOINT": self.url, "TOS_REGION": self.region,
                "TOS_ACCESS_KEY": self.ak, "TOS_SECRET_KEY": self.sk}


@pytest.fixture
def tos_server(tmp_path):
    """The fake TOS on a free port, empty root (add data with put_tree)."""
    root = tmp_path / "tos_root"
    root.mkdir()
    proc = ServerProcess([PYTHON, FAKES_DIR / "fake_tos.py", "--root", root, "--port", 0,
                          "--ak", TOSServer.ak, "--sk", TOSServer.sk, "--region", TOSServer.region],
                         tmp_path / "fake_tos.log")
    try:
        port = int(proc.wait_line("READY ").split()[1])
        srv = TOSServer(root, proc, port)
        wait_http(srv.url + "/__fake/stats", proc=proc)
        yield srv
    finally:
        proc.stop()


# --------------------------------------------------------------------------
# s3rver

def _s3rver_js():
    js = NODE_MODULES / "s3rver" / "bin" / "s3rver.js"
    if not js.exists():
        pytest.fail("s3rver is not installed: run `npm ci` in tests/ (make deps does)")
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not installed (make deps installs it)")
    return node, js


class S3Server(_FakeControl):
    """s3rver behind s3_sigv4_proxy.py: `endpoint` is the proxy, which checks every
    SigV4 signature (s3rver itself does not) and offers faults/stats like the fakes."""

    ak = "S3RVER"
    sk = secrets_audit.secret("S3RVER-test-secret/key+0123")  # the proxy checks it; s3rver does not
    region = "us-east-1"
    bucket = "models"

    def __init__(self, s3rver, s3rver_port, proxy, proxy_port, directory):
        self.proc = proxy
        self.s3rver_proc = s3rver
        self.port = s3rver_port  # s3rver itself (no signature checks)
        self.upstream = "http://127.0.0.1:%d" % s3rver_port
        self.proxy_port = proxy_port
        self.endpoint = self.url = "http://127.0.0.1:%d" % proxy_port  # what clients should use
        self.directory = Path(directory)
        self._client = None

    def client(self, **kw):
        """A boto3 S3 client (path-style, no retries) for this server; kw override
        aws_secret_access_key / aws_access_key_id / region_name / endpoint_url."""
        import boto3
        from botocore.config import Config
        args = dict(endpoint_url=self.endpoint, aws_access_key_id=self.ak, aws_secret_access_key=self.sk,
                    region_name=self.region)
        args.update(kw)
        cfg = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1})
        if kw:
            return boto3.client("s3", config=cfg, **args)
        if self._client is None:
            self._client = boto3.client("s3", config=cfg, **args)
        return self._client

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)

    def upload_tree(self, src, bucket=None, prefix=""):
        """Upload every file of a local tree under bucket/prefix; returns the keys.
        Returns only once s3rver lists every object at its full size: s3rver's
        putObject resolves when it has hashed the body, not when its file
        write has finished, so an immediate list or GET could see a short object."""
        bucket = bucket or self.bucket
        src = Path(src)
        want = {}
        for p in sorted(src.rglob("*")):
            if p.is_file():
                key = "/".join(x for x in (prefix.strip("/"), p.relative_to(src).as_posix()) if x)
                self.client().upload_file(str(p), bucket, key)
                want[key] = p.stat().st_size
        direct = self.client(endpoint_url=self.upstream)  # keeps the proxy's stats clean
        deadline = time.monotonic() + 30
        delay = 0.01
        while True:
            seen = {}
            for page in direct.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.strip("/")):
                seen.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
            if all(seen.get(k) == n for k, n in want.items()):
                return list(want)
            if time.monotonic() > deadline:
                raise AssertionError("s3rver never showed complete objects: %r"
                                     % {k: (seen.get(k), n) for k, n in want.items() if seen.get(k) != n})
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def env(self):
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.ak,
                "AWS_SECRET_ACCESS_KEY": self.sk, "AWS_REGION": self.region}


@pytest.fixture
def s3_server(tmp_path):
    """s3rver on a free port with bucket `models` (S3Server.bucket), fronted by the
    SigV4-checking proxy; S3Server.endpoint is the proxy."""
    node, js = _s3rver_js()
    data = tmp_path / "s3rver"
    data.mkdir()
    # s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only
    # has in its legacy provider: without this flag every list request is a 500.
    s3rver = ServerProcess([node, "--openssl-legacy-provider", js, "-d", data, "-p", 0, "-a", "127.0.0.1",
                            "--configure-bucket", S3Server.bucket], tmp_path / "s3rver.log")
    proxy = None
    try:
        s3port = int(s3rver.wait_line("S3rver listening on ").rsplit(":", 1)[1])
        proxy = ServerProcess([PYTHON, FAKES_DIR / "s3_sigv4_proxy.py", "--upstream", "http://127.0.0.1:%d" % s3port,
                               "--port", 0, "--ak", S3Server.ak, "--sk", S3Server.sk, "--region", S3Server.region],
                              tmp_path / "s3_sigv4_proxy.log")
        port = int(proxy.wait_line("READY ").split()[1])
        srv = S3Server(s3rver, s3port, proxy, port, data)
        wait_http(srv.upstream + "/", proc=s3rver)
        wait_http(srv.url + "/__fake/stats", proc=proxy)
        yield srv
    finally:
        if proxy is not None:
            proxy.stop()
        s3rver.stop()


def node_json(script, cfg, timeout=120):
    """Run a Node script with one JSON config argument (cwd tests/); returns the
    JSON object printed as the last line of its stdout."""
    node = shutil.which("node")
    if not node or not NODE_MODULES.exists():
        pytest.fail("node and tests/node_modules are required (run `make deps`)")
    r = subprocess.run([node, str(script), json.dumps(cfg)], capture_output=True, timeout=timeout,
                       cwd=str(TESTS_DIR))
    if r.returncode != 0:
        raise AssertionError("node %s failed (%d):\n%s\n%s" % (script, r.returncode, r.stdout.decode()[-3000:],
                                                                r.stderr.decode()[-3000:]))
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


@pytest.fixture
def run_node():
    """callable(script_path, cfg_dict, timeout=120) -> JSON printed by the script."""
    return node_json
