"""aibrix_download as users run it, against real origins on loopback (SPEC §1-§3).

Each origin kind (the fake HF Hub with its CDN, s3rver, the fake TOS that checks TOS4
signatures, and a local directory) gets the same stories: every byte arrives, a rerun
transfers nothing, a killed run resumes. Then the failures a user meets: unknown names,
denied access, flaky and lying servers, hostile listings.
"""

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import secrets_audit
from runtime import sha256

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
DOWNLOAD = BUILD / "downloader" / "aibrix_download"

REPO_ID = "acme/tiny-llm"


def clean_env(extra):
    """The process environment without any origin configuration, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "HF_", "HUGGING_FACE", "TOS_", "DOWNLOADER_"))}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "DOWNLOADER_BACKOFF_BASE": "0.02",
                "HOME": env.get("HOME", "/root")})
    env.update(extra)
    return env


def run_download(uri, local_dir, env, *args, timeout=120):
    return subprocess.run([str(DOWNLOAD), "--model-uri", uri, "--local-dir", str(local_dir), *args],
                          env=clean_env(env), capture_output=True, text=True, timeout=timeout)


def model_files(model_dir):
    """{relpath: sha256} of what the downloader left, without its own .cache records."""
    model_dir = Path(model_dir)
    return {p.relative_to(model_dir).as_posix(): sha256(p)
            for p in sorted(model_dir.rglob("*"))
            if p.is_file() and not p.relative_to(model_dir).as_posix().startswith(".cache/")}


def expected(manifest):
    return {k: v["sha256"] for k, v in manifest.items()}


class Origin:
    """One model on one origin: the URI to ask for, the env a client needs, and the bytes
    of file content the origin has served so far (None where the origin cannot say)."""

    def __init__(self, kind, uri, env, manifest, model_name, served=None, server=None):
        self.kind, self.uri, self.env, self.manifest = kind, uri, env, manifest
        self.model_name, self._served, self.server = model_name, served, server

    def served(self):
        return self._served() if self._served else None


def make_origin(kind, request, tree):
    if kind == "hf":
        hub = request.getfixturevalue("hf_hub")
        manifest = hub.add_repo(REPO_ID, tree.path)
        return Origin(kind, "hf://" + REPO_ID, hub.env(), manifest, REPO_ID,
                      lambda: sum(hub.stats()["bytes_by_path"].values()), hub)
    if kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        s3.upload_tree(tree.path, prefix="models/tiny-llm")
        return Origin(kind, "s3://%s/models/tiny-llm/" % s3.bucket, s3.env(), tree.manifest, "tiny-llm",
                      lambda: sum(s3.stats()["bytes_by_path"].values()), s3)
    if kind == "tos":
        tos = request.getfixturevalue("tos_server")
        tos.put_tree("models", "llm/tiny-llm", tree.path)
        return Origin(kind, "tos://models/llm/tiny-llm/", tos.env(), tree.manifest, "tiny-llm",
                      lambda: sum(tos.stats()["bytes_by_path"].values()), tos)
    return Origin(kind, "file://%s" % tree.path, {}, tree.manifest, tree.path.name)


@pytest.fixture(params=["hf", "s3", "tos", "file"])
def origin(request, model_tree_factory):
    # two LFS-sized shards plus small files; 256 KiB chunks make every shard many chunks
    tree = model_tree_factory(size="6M", seed=3)
    return make_origin(request.param, request, tree)


# ---- every origin ----------------------------------------------------------------------

def test_download_brings_every_byte_and_prints_the_model_dir(origin, tmp_path):
    out = tmp_path / "out"
    r = run_download(origin.uri, out, {**origin.env, "DOWNLOADER_PART_CHUNKSIZE": "256K"})
    assert r.returncode == 0, r.stderr
    model_dir = out / origin.model_name
    assert r.stdout.strip().splitlines()[-1] == str(model_dir)
    assert model_files(model_dir) == expected(origin.manifest)
    # nothing half-done is left behind
    assert not list(model_dir.rglob("*.part")) and not list(model_dir.rglob("*.chunks"))


def test_second_run_transfers_nothing(origin, tmp_path):
    out = tmp_path / "out"
    assert run_download(origin.uri, out, origin.env).returncode == 0
    before = origin.served()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / origin.model_name).rglob("*") if p.is_file()}
    r = run_download(origin.uri, out, origin.env)
    assert r.returncode == 0, r.stderr
    if before is not None:
        assert origin.served() == before, "the second run fetched file bytes again"
    assert "%d up to date" % len(origin.manifest) in r.stderr
    for p, m in mtimes.items():
        assert p.stat().st_mtime_ns == m, "%s was rewritten" % p


def test_allow_file_suffix_filters_what_is_fetched(origin, tmp_path):
    out = tmp_path / "out"
    r = run_download(origin.uri, out, {**origin.env, "DOWNLOADER_ALLOW_FILE_SUFFIX": " json ,.txt"})
    assert r.returncode == 0, r.stderr
    want = {k: v for k, v in expected(origin.manifest).items() if k.endswith((".json", ".txt"))}
    assert want and model_files(out / origin.model_name) == want


# ---- resume ------------------------------------------------------------------------------

def test_killed_run_resumes_and_fetches_less_than_everything(hf_hub, model_tree_factory, tmp_path):
    tree = model_tree_factory(size="8M", seed=4, shards=1)
    manifest = hf_hub.add_repo(REPO_ID, tree.path)
    total = sum(v["size"] for v in manifest.values())
    # a slow CDN, so the first run is surely mid-way when it is killed
    hf_hub.faults({"match": "cdn", "rate": 1 << 20, "count": -1})
    env = clean_env({**hf_hub.env(), "DOWNLOADER_PART_CHUNKSIZE": "256K", "DOWNLOADER_NUM_THREADS": "4"})
    out = tmp_path / "out"
    p = subprocess.Popen([str(DOWNLOAD), "--model-uri", "hf://" + REPO_ID, "--local-dir", str(out)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while sum(hf_hub.stats()["bytes_by_path"].values()) < total // 3:
        assert p.poll() is None and time.monotonic() < deadline, "first run ended too early"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close(), p.stderr.close()
    assert not (out / REPO_ID / "model.safetensors").exists()

    hf_hub.reset()
    r = run_download("hf://" + REPO_ID, out, {**hf_hub.env(), "DOWNLOADER_PART_CHUNKSIZE": "256K"})
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    second = sum(hf_hub.stats()["bytes_by_path"].values())
    assert second < total, "the resumed run fetched %d of %d bytes" % (second, total)
    assert model_files(out / REPO_ID) == expected(manifest)


# ---- not found, access denied ----------------------------------------------------------

def test_unknown_repo_exits_3_naming_it(hf_hub, tmp_path):
    r = run_download("hf://acme/no-such-model", tmp_path, hf_hub.env())
    assert r.returncode == 3
    assert "acme/no-such-model" in r.stderr and "not found" in r.stderr


def test_unknown_bucket_and_empty_prefix_exit_3(s3_server, tos_server, tmp_path):
    r = run_download("s3://no-such-bucket/x/", tmp_path, s3_server.env())
    assert r.returncode == 3 and "no-such-bucket" in r.stderr
    r = run_download("s3://%s/nothing-here/" % s3_server.bucket, tmp_path, s3_server.env())
    assert r.returncode == 3 and "nothing-here" in r.stderr
    tos_server.add_bucket("models")
    r = run_download("tos://models/missing/", tmp_path, tos_server.env())
    assert r.returncode == 3 and "missing" in r.stderr


def test_gated_repo_without_token_is_access_denied(hf_hub, tmp_path):
    hf_hub.add_repo(REPO_ID, size="2M")
    hf_hub.control(gated=[REPO_ID])
    r = run_download("hf://" + REPO_ID, tmp_path / "a", hf_hub.env())
    assert r.returncode == 3
    assert "access" in r.stderr.lower()
    r = run_download("hf://" + REPO_ID, tmp_path / "b", hf_hub.env(token=hf_hub.token))
    assert r.returncode == 0, r.stderr
    assert hf_hub.token not in r.stderr


def test_wrong_tos_secret_is_access_denied_and_not_logged(tos_server, model_tree, tmp_path):
    tos_server.put_tree("models", "m", model_tree.path)
    env = {**tos_server.env(), "TOS_SECRET_KEY": secrets_audit.secret("wrong-secret-value-123")}
    r = run_download("tos://models/m/", tmp_path, env)
    assert r.returncode == 3
    assert "access" in r.stderr.lower() and "wrong-secret-value-123" not in r.stderr


def test_only_one_aws_key_is_a_clear_error(s3_server, tmp_path):
    env = {"AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_ACCESS_KEY_ID": "S3RVER"}
    r = run_download("s3://%s/x/" % s3_server.bucket, tmp_path, env)
    assert r.returncode == 2
    assert "AWS_SECRET_ACCESS_KEY" in r.stderr


# ---- flaky and lying servers -----------------------------------------------------------

def test_503_and_429_bursts_are_survived(hf_hub, model_tree, tmp_path):
    manifest = hf_hub.add_repo(REPO_ID, model_tree.path)
    hf_hub.faults({"match": "cdn", "status": 503, "count": 3},
                  {"match": "resolve", "status": 429, "retry_after": 1, "count": 2},
                  {"match": "tree", "status": 503, "count": 2})
    r = run_download("hf://" + REPO_ID, tmp_path, hf_hub.env())
    assert r.returncode == 0, r.stderr
    assert hf_hub.stats()["faults_fired"] == 7
    assert model_files(tmp_path / REPO_ID) == expected(manifest)


def test_truncated_and_reset_bodies_are_retried(tos_server, model_tree, tmp_path):
    tos_server.put_tree("models", "m", model_tree.path)
    tos_server.faults({"match": "get", "truncate": 1000, "count": 3},
                      {"match": "get", "reset": True, "count": 2})
    r = run_download("tos://models/m/", tmp_path, {**tos_server.env(), "DOWNLOADER_PART_CHUNKSIZE": "256K"})
    assert r.returncode == 0, r.stderr
    assert tos_server.stats()["faults_fired"] == 5
    assert model_files(tmp_path / "m") == expected(model_tree.manifest)


def test_a_corrupted_copy_is_refetched(hf_hub, model_tree, tmp_path):
    manifest = hf_hub.add_repo(REPO_ID, model_tree.path)
    hf_hub.faults({"match": "cdn", "corrupt": True, "count": 1})
    r = run_download("hf://" + REPO_ID, tmp_path, hf_hub.env())
    assert r.returncode == 0, r.stderr
    assert "integrity check failed" in r.stderr
    assert model_files(tmp_path / REPO_ID) == expected(manifest)


def test_persistent_corruption_exits_5_and_leaves_no_file(hf_hub, model_tree, tmp_path):
    hf_hub.add_repo(REPO_ID, model_tree.path)
    hf_hub.faults({"match": "cdn", "corrupt": True, "count": -1})
    r = run_download("hf://" + REPO_ID, tmp_path, hf_hub.env())
    assert r.returncode == 5
    assert "sha256 mismatch" in r.stderr and ".safetensors" in r.stderr
    model_dir = tmp_path / REPO_ID
    assert not [p for p in model_dir.rglob("*.safetensors")]
    assert not list(model_dir.rglob("*.part"))


def test_server_that_never_recovers_exits_4(tos_server, model_tree, tmp_path):
    tos_server.put_tree("models", "m", model_tree.path)
    tos_server.faults({"match": "get", "status": 503, "count": -1})
    r = run_download("tos://models/m/", tmp_path, {**tos_server.env(), "DOWNLOADER_MAX_ATTEMPTS": "3"})
    assert r.returncode == 4
    assert "503" in r.stderr and "gave up" in r.stderr


# ---- hostile listings --------------------------------------------------------------------

HOSTILE_NAMES = ["../escape.json", "/etc/evil.json", "a/../../up.json", "nul\u0000byte.json",
                 "ctl\u0001char.json", "a//b.json", "x" * 300 + ".json", "ok.json"]


class HostileHub(BaseHTTPRequestHandler):
    """A Hub whose tree listing names files outside the model directory."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        sha = "1" * 40
        if "/revision/" in self.path:
            return self._send(200, json.dumps({"id": REPO_ID, "sha": sha}).encode())
        if "/tree/" in self.path:
            blob = hashlib.sha1(b"blob 3\x00{}\n").hexdigest()
            entries = [{"type": "file", "oid": blob, "size": 3, "path": n} for n in HOSTILE_NAMES]
            return self._send(200, json.dumps(entries).encode())
        if "/resolve/" in self.path:
            self.server.resolved.append(self.path)
            return self._send(200, b"{}\n", "application/octet-stream")
        self._send(404, b"{}")


def test_hostile_listing_writes_nothing_outside_the_model_dir(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), HostileHub)
    srv.resolved = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        root = tmp_path / "jail"
        out = root / "local"
        r = run_download("hf://" + REPO_ID, out, {"HF_ENDPOINT": "http://127.0.0.1:%d" % srv.server_port})
    finally:
        srv.shutdown()
    assert r.returncode == 0, r.stderr
    written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                     and ".cache" not in p.parts)
    assert written == ["local/%s/ok.json" % REPO_ID]
    assert not Path("/etc/evil.json").exists()
    assert len(srv.resolved) == 1
    assert r.stderr.count("skipping remote name") == len(HOSTILE_NAMES) - 1


# ---- arguments ---------------------------------------------------------------------------

def test_bad_arguments_exit_2(tmp_path):
    cases = [
        ["--model-uri", "gs://bucket/x"],
        ["--model-uri", "hf://acme/x", "--download-extra-config", "{\"bogus\": 1}"],
        ["--model-uri", "hf://acme/x", "--download-extra-config", "[1"],
        ["--model-uri", "hf://acme/x", "--model-name", "../up"],
        ["--local-dir", str(tmp_path)],
    ]
    for args in cases:
        r = subprocess.run([str(DOWNLOAD), *args], env=clean_env({}), capture_output=True, text=True)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip(), args


def test_extra_config_keys_configure_the_source(hf_hub, model_tree, tmp_path):
    manifest = hf_hub.add_repo(REPO_ID, model_tree.path)
    extra = {"hf_endpoint": hf_hub.url, "num_threads": 2, "part_chunksize": 131072,
             "allow_file_suffix": ["safetensors"], "force_download": True}
    r = run_download("hf://" + REPO_ID, tmp_path, {}, "--download-extra-config", json.dumps(extra))
    assert r.returncode == 0, r.stderr
    want = {k: v for k, v in expected(manifest).items() if k.endswith(".safetensors")}
    assert model_files(tmp_path / REPO_ID) == want
