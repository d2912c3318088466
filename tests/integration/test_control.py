"""The control plane as the AIBrix controller and operators meet it (SPEC §5, §7; docs/api.md).

Every story starts a real `aibrix_runtime` beside a fake engine (tests/fakes/fake_lora_engine.py)
that opens adapters the way vLLM does: it reads adapter_config.json, parses the safetensors
header and reads every tensor. With --mount-point the runtime hands the engine a path inside
its FUSE mount, so a successful load proves the engine's reads went through the mount; the
fake records the sha256 of what it read, and the tests compare it with the source.
Origins are the usual loopback servers (s3rver behind the SigV4 proxy, fake HF, fake TOS).
"""

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest_plugins = ["runtime"]  # runtime_factory and the watchdog

import secrets_audit  # noqa: E402
from conftest import FAKES_DIR, PYTHON, ServerProcess, get_free_port, http_json  # noqa: E402
from runtime import RUNTIME, clean_env, is_mounted, scaled, sha256, wait_until, wrapped  # noqa: E402

ADAPTER = "sql-lora"
KEY = secrets_audit.secret("sk-test-0123456789abcdef")


# --------------------------------------------------------------------------
# helpers

class Resp:
    def __init__(self, status, ctype, raw):
        self.status, self.ctype, self.raw = status, ctype or "", raw

    @property
    def text(self):
        return self.raw.decode(errors="replace")

    def json(self):
        return json.loads(self.raw)

    def __repr__(self):
        return "<%s %s %s>" % (self.status, self.ctype, self.text[:500])


def api(url, method, path, body=None, raw=None, token=None, headers=None, timeout=120):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        hdrs["Authorization"] = "Bearer " + token
    hdrs.update(headers or {})
    req = urllib.request.Request(url + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Resp(r.status, r.headers.get("Content-Type"), r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers.get("Content-Type"), e.read())


def assert_error(resp, status, contains=None):
    """An AIBrix error body with the given status."""
    assert resp.status == status, resp
    assert resp.ctype.startswith("application/json"), resp
    b = resp.json()
    assert b["object"] == "error" and b["code"] == status and b["param"] is None, b
    assert isinstance(b["type"], str) and b["type"], b
    if contains:
        assert contains in b["message"], b
    return b


def success_text(name, path):
    return "Success: LoRA adapter '%s' loaded successfully from '%s'." % (name, path)


def mounts(rt, token=None):
    r = api(rt.url, "GET", "/v1/model/mounts", token=token)
    assert r.status == 200, r
    return {m["model_name"]: m for m in r.json()["data"]}


class Engine:
    def __init__(self, proc, port, kind):
        self.proc, self.port, self.kind = proc, port, kind
        self.url = "http://127.0.0.1:%d" % port

    def requests(self, lora_only=True):
        reqs = http_json("GET", self.url + "/__fake/requests")
        return [r for r in reqs if not lora_only or "lora" in r["path"]]

    def adapters(self):
        return http_json("GET", self.url + "/__fake/adapters")

    def loaded(self):
        return http_json("GET", self.url + "/__fake/loaded")

    def control(self, **kw):
        return http_json("POST", self.url + "/__fake/control", kw)

    def env(self):
        return {"INFERENCE_ENGINE": self.kind, "INFERENCE_ENGINE_ENDPOINT": self.url}


@pytest.fixture
def engine_factory(tmp_path):
    procs = []

    def make(kind="vllm", error_shape="new", api_key=None):
        argv = [PYTHON, FAKES_DIR / "fake_lora_engine.py", "--port", 0, "--engine", kind,
                "--error-shape", error_shape]
        if api_key:
            argv += ["--api-key", api_key]
        proc = ServerProcess(argv, tmp_path / ("engine%d.log" % len(procs)))
        procs.append(proc)
        return Engine(proc, int(proc.wait_line("READY ").split()[1]), kind)

    try:
        yield make
    finally:
        for p in procs:
            p.stop()


@pytest.fixture
def engine(engine_factory):
    return engine_factory()


class PlainRuntime:
    """aibrix_runtime without --mount-point (runtime.Runtime always mounts)."""

    def __init__(self, workdir, env, extra_args=()):
        self.port = get_free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = Path(workdir) / ("plain-runtime-%d.log" % self.port)
        self._log = open(self.log_path, "wb")
        argv = [str(RUNTIME), "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "debug"]
        self.proc = __import__("subprocess").Popen(wrapped(argv + list(extra_args)), env=clean_env(env),
                                                   stdout=self._log, stderr=self._log, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if api(self.url, "GET", "/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, "runtime exited: %s" % self.log()
            assert time.monotonic() < deadline, "runtime did not answer: %s" % self.log()
            time.sleep(0.05)

    def log(self):
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(15))
            except Exception:  # noqa: BLE001 - teardown
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def plain_runtime_factory(tmp_path):
    started = []

    def make(env=None, extra_args=()):
        rt = PlainRuntime(tmp_path, env, extra_args)
        started.append(rt)
        return rt

    try:
        yield make
    finally:
        for rt in started:
            rc = rt.stop()
            print("plain runtime rc=%s; log tail:\n%s" % (rc, rt.log_path.read_text(errors="replace")[-3000:]))
            assert rc == 0, "the runtime did not exit cleanly (sanitizer report?)"


@pytest.fixture
def lora_tree(model_tree_factory):
    return model_tree_factory(size="2M", seed=7, lora=True)


def lora_origin(kind, request, tree, name=ADAPTER):
    """Put the adapter on an origin: -> (uri, env, server)."""
    if kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        s3.upload_tree(tree.path, prefix="adapters/" + name)
        s3.reset()
        return "s3://%s/adapters/%s/" % (s3.bucket, name), s3.env(), s3
    if kind == "hf":
        hub = request.getfixturevalue("hf_hub")
        hub.add_repo("acme/" + name, tree.path)
        return "hf://acme/" + name, hub.env(), hub
    if kind == "tos":
        tos = request.getfixturevalue("tos_server")
        tos.put_tree("models", "adapters/" + name, tree.path)
        return "tos://models/adapters/%s/" % name, tos.env(), tos
    return "file://%s" % tree.path, {}, None


def assert_engine_read(engine, name, tree, path):
    """The engine opened path and read every byte of every file, equal to the source."""
    rec = engine.adapters()[name]
    assert rec["path"] == str(path)
    for rel in ("adapter_config.json", "adapter_model.safetensors"):
        got = rec["files"][rel]
        assert got["sha256"] == tree.manifest[rel]["sha256"], rel
        assert got["bytes_read"] == tree.manifest[rel]["size"], rel
    assert rec["tensors"] == 8


# --------------------------------------------------------------------------
# LoRA through the mount

@pytest.mark.parametrize("kind", [pytest.param("s3", marks=pytest.mark.valgrind), "hf", "tos"])
def test_lora_load_mounts_the_adapter_and_the_engine_reads_every_tensor_through_it(kind, request, lora_tree,
                                                                                    engine, runtime_factory):
    uri, env, server = lora_origin(kind, request, lora_tree)
    rt = runtime_factory(env={**env, **engine.env()})
    r = api(rt.url, "POST", "/v1/lora_adapter/load", {"lora_name": ADAPTER, "lora_path": uri})
    path = rt.mount / ADAPTER
    assert r.status == 200, r
    assert r.text == success_text(ADAPTER, path)
    assert r.ctype.startswith("text/plain")

    # the engine was asked to load the mounted path, with JSON, and read it all through FUSE
    (call,) = engine.requests()
    assert call["path"] == "/v1/load_lora_adapter"
    assert call["content_type"] == "application/json"
    assert json.loads(call["body"]) == {"lora_name": ADAPTER, "lora_path": str(path)}
    assert is_mounted(rt.mount)
    assert_engine_read(engine, ADAPTER, lora_tree, path)
    m = mounts(rt)[ADAPTER]
    assert m["state"] == "fetched" and m["model_uri"] == uri
    assert m["bytes_cached"] == m["bytes_total"] == sum(v["size"] for v in lora_tree.manifest.values())
    if kind == "s3":  # the bytes came from the origin, through the runtime
        served = server.stats()["bytes_by_path"]
        assert sum(n for k, n in served.items() if k.endswith("adapter_model.safetensors")) >= \
            lora_tree.manifest["adapter_model.safetensors"]["size"]

    # a mount with a LoRA loaded from it cannot be unmounted
    assert_error(api(rt.url, "POST", "/v1/model/unmount", {"model_name": ADAPTER}), 409, "unload it first")

    r = api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER})
    assert r.status == 200, r
    assert r.json() == {"status": "success", "message": "Successfully unloaded adapter %s" % ADAPTER}
    assert [c["path"] for c in engine.requests()] == ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]
    assert engine.loaded() == []
    assert ADAPTER not in mounts(rt)
    assert ADAPTER not in os.listdir(rt.mount)


@pytest.mark.valgrind
def test_controller_sequence_with_bearer_token_and_credentials_secret(request, lora_tree, engine_factory,
                                                                      runtime_factory, tmp_path):
    """Replays the AIBrix controller: GET /v1/models, the delegation load with Authorization,
    then unload with cleanup_local. Keys come from a mounted secret; the runtime needs the
    API key and forwards the caller's Authorization to the engine."""
    engine = engine_factory(api_key=KEY)
    tos = request.getfixturevalue("tos_server")
    tos.put_tree("models", "adapters/" + ADAPTER, lora_tree.path)
    secrets = tmp_path / "secrets"
    (secrets / "tos-creds").mkdir(parents=True)
    (secrets / "tos-creds" / "TOS_ACCESS_KEY").write_text(tos.ak + "\n")
    (secrets / "tos-creds" / "TOS_SECRET_KEY").write_text(tos.sk + "\n")
    (secrets / "tos-creds" / "unrelated.txt").write_text("ignored")
    keyfile = tmp_path / "api-key"
    keyfile.write_text("  %s\n" % KEY)
    env = {"TOS_ENDPOINT": tos.url, "TOS_REGION": tos.region, "AIBRIX_SECRETS_DIR": str(secrets), **engine.env()}
    rt = runtime_factory(env=env, extra_args=["--api-key-file", keyfile])

    r = api(rt.url, "GET", "/v1/models", token=KEY)
    assert r.status == 200 and r.json()["data"][0]["id"] == "fake-base", r
    body = {"lora_name": ADAPTER, "artifact_url": "tos://models/adapters/%s/" % ADAPTER,
            "credentials_secret": "tos-creds", "additional_config": {}}
    r = api(rt.url, "POST", "/v1/lora_adapter/load", body, token=KEY)
    path = str(rt.mount / ADAPTER)
    assert r.status == 200, r
    assert r.json() == {"status": "success", "message": success_text(ADAPTER, path), "local_path": path,
                        "engine_response": {"message": "Success: LoRA adapter '%s' added successfully." % ADAPTER}}
    assert_engine_read(engine, ADAPTER, lora_tree, path)
    r = api(rt.url, "GET", "/v1/models", token=KEY)
    assert [m["id"] for m in r.json()["data"]] == ["fake-base", ADAPTER]
    r = api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER, "cleanup_local": True}, token=KEY)
    assert r.status == 200, r
    assert ADAPTER not in mounts(rt, KEY)

    calls = engine.requests(lora_only=False)
    assert [c["path"] for c in calls] == ["/v1/models", "/v1/load_lora_adapter", "/v1/models",
                                          "/v1/unload_lora_adapter"]
    assert all(c["authorization"] == "Bearer " + KEY for c in calls)
    assert tos.sk not in rt.log() and KEY not in rt.log()


def test_delegation_credentials_in_the_body_override_the_environment(request, lora_tree, engine, runtime_factory):
    s3 = request.getfixturevalue("s3_server")
    s3.upload_tree(lora_tree.path, prefix="adapters/" + ADAPTER)
    env = {"AWS_ENDPOINT_URL_S3": s3.endpoint, "AWS_REGION": s3.region, "AWS_ACCESS_KEY_ID": "WRONG",
           "AWS_SECRET_ACCESS_KEY": secrets_audit.secret("WRONGWRONG"), **engine.env()}
    rt = runtime_factory(env=env)
    body = {"lora_name": ADAPTER, "artifact_url": "s3://%s/adapters/%s/" % (s3.bucket, ADAPTER),
            "credentials": {"AWS_ACCESS_KEY_ID": s3.ak, "AWS_SECRET_ACCESS_KEY": s3.sk}}
    r = api(rt.url, "POST", "/v1/lora_adapter/load", body)
    assert r.status == 200, r
    assert_engine_read(engine, ADAPTER, lora_tree, rt.mount / ADAPTER)
    # an unknown credential name is refused, naming it
    body["lora_name"] = "other"
    body["credentials"] = {"AWS_SECRET_KEY": "x"}
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", body), 422, "AWS_SECRET_KEY")


def test_missing_adapter_config_is_404_and_fetches_nothing(request, model_tree_factory, engine, runtime_factory):
    tree = model_tree_factory(size="2M", seed=8)  # a model, not an adapter
    uri, env, s3 = lora_origin("s3", request, tree)
    rt = runtime_factory(env={**env, **engine.env()})
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", {"lora_name": ADAPTER, "lora_path": uri}), 404,
                 "adapter_config.json")
    assert mounts(rt) == {} and os.listdir(rt.mount) == []
    assert engine.requests() == []
    time.sleep(0.5)
    assert s3.stats()["requests"].get("get", 0) == 0, "a file was fetched for a rejected adapter"


def test_unknown_origin_path_is_404(request, engine, runtime_factory):
    s3 = request.getfixturevalue("s3_server")
    rt = runtime_factory(env={**s3.env(), **engine.env()})
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load",
                     {"lora_name": ADAPTER, "lora_path": "s3://%s/nothing/here/" % s3.bucket}), 404)
    assert mounts(rt) == {}


def test_engine_down_is_502_and_leaves_no_mount(lora_tree, runtime_factory):
    dead = "http://127.0.0.1:%d" % get_free_port()
    rt = runtime_factory(env={"INFERENCE_ENGINE": "vllm", "INFERENCE_ENGINE_ENDPOINT": dead})
    r = api(rt.url, "POST", "/v1/lora_adapter/load", {"lora_name": ADAPTER, "lora_path": "file://%s" % lora_tree.path})
    assert_error(r, 502, "unreachable")
    assert mounts(rt) == {} and os.listdir(rt.mount) == []
    assert_error(api(rt.url, "GET", "/v1/models"), 502)
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER}), 502)


@pytest.mark.parametrize("shape", ["new", "old"])
def test_engine_errors_keep_status_and_message_in_both_vllm_shapes(shape, lora_tree, engine_factory,
                                                                   runtime_factory):
    engine = engine_factory(error_shape=shape)
    rt = runtime_factory(env=engine.env())
    body = {"lora_name": ADAPTER, "lora_path": "file://%s" % lora_tree.path}
    # the engine already has it (loaded behind the runtime's back): 409 with vLLM's words
    engine.control(faults=[{"path": "/v1/load_lora_adapter", "status": 400,
                            "message": "The lora adapter '%s' has already been loaded." % ADAPTER}])
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", body), 409, "has already been loaded")
    assert mounts(rt) == {}
    # a server error: same status, the engine's message included
    engine.control(faults=[{"path": "/v1/load_lora_adapter", "status": 500, "message": "CUDA out of memory"}])
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", body), 500, "CUDA out of memory")
    assert mounts(rt) == {} and os.listdir(rt.mount) == []
    # then it works, and the same load again is the same success without a second engine call
    r1 = api(rt.url, "POST", "/v1/lora_adapter/load", body)
    r2 = api(rt.url, "POST", "/v1/lora_adapter/load", body)
    assert r1.status == r2.status == 200 and r1.text == r2.text == success_text(ADAPTER, rt.mount / ADAPTER)
    assert len(engine.requests()) == 3
    # another source under the same name is a conflict
    other = dict(body, lora_path="file:///nonexistent/elsewhere")
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", other), 409, "already loaded")
    # unloading what nobody knows
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": "nobody"}), 404, "nobody")


def test_concurrent_loads_of_one_name_are_serialized(lora_tree, model_tree_factory, engine, runtime_factory):
    rt = runtime_factory(env=engine.env())
    engine.control(load_delay=0.5)
    body = {"lora_name": ADAPTER, "lora_path": "file://%s" % lora_tree.path}
    with ThreadPoolExecutor(6) as ex:
        rs = list(ex.map(lambda _: api(rt.url, "POST", "/v1/lora_adapter/load", body), range(6)))
    assert {r.status for r in rs} == {200}, rs
    assert {r.text for r in rs} == {success_text(ADAPTER, rt.mount / ADAPTER)}
    assert len(engine.requests()) == 1, "the engine was asked more than once"

    # two different sources for one new name: one wins, the other is told 409
    other = model_tree_factory(size="1M", seed=9, lora=True)
    bodies = [{"lora_name": "dup", "lora_path": "file://%s" % p} for p in (lora_tree.path, other.path)]
    with ThreadPoolExecutor(2) as ex:
        rs = list(ex.map(lambda b: api(rt.url, "POST", "/v1/lora_adapter/load", b), bodies))
    assert sorted(r.status for r in rs) == [200, 409], rs
    assert sorted(mounts(rt)) == sorted([ADAPTER, "dup"])


def test_fetch_timeout_is_504_and_leaves_no_mount(request, lora_tree, engine, runtime_factory):
    uri, env, s3 = lora_origin("s3", request, lora_tree)
    s3.faults({"match": "get", "delay": 8, "count": -1})
    rt = runtime_factory(env={**env, **engine.env(), "AIBRIX_LORA_FETCH_TIMEOUT": "1"})
    t0 = time.monotonic()
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", {"lora_name": ADAPTER, "lora_path": uri}), 504,
                 "AIBRIX_LORA_FETCH_TIMEOUT")
    assert time.monotonic() - t0 < 6
    assert mounts(rt) == {}
    assert engine.requests() == []
    s3.faults()


def test_plain_paths_go_to_the_engine_unchanged_and_pin_their_mount(lora_tree, engine, runtime_factory):
    rt = runtime_factory("base=file://%s,prefetch=none" % lora_tree.path, env=engine.env())
    # a path outside the mount: passed as is
    r = api(rt.url, "POST", "/v1/lora_adapter/load", {"lora_name": "plain", "lora_path": str(lora_tree.path)})
    assert r.status == 200 and r.text == success_text("plain", lora_tree.path), r
    # a path inside a model mount: that mount cannot go while the adapter is loaded
    r = api(rt.url, "POST", "/v1/model/mount", {"model_name": "extra", "model_uri": "file://%s" % lora_tree.path})
    assert r.status == 200, r
    inside = str(rt.mount / "extra")
    r = api(rt.url, "POST", "/v1/lora_adapter/load", {"lora_name": "inside", "lora_path": inside})
    assert r.status == 200, r
    assert_engine_read(engine, "inside", lora_tree, inside)
    assert_error(api(rt.url, "POST", "/v1/model/unmount", {"model_name": "extra"}), 409)
    assert api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": "inside"}).status == 200
    assert "extra" in mounts(rt), "unloading an adapter removed a mount it did not make"
    assert api(rt.url, "POST", "/v1/model/unmount", {"model_name": "extra"}).status == 200


# --------------------------------------------------------------------------
# other engines

def test_sglang_end_to_end(request, lora_tree, engine_factory, runtime_factory):
    engine = engine_factory(kind="sglang")
    uri, env, _ = lora_origin("hf", request, lora_tree)
    rt = runtime_factory(env={**env, **engine.env()})
    body = {"lora_name": ADAPTER, "artifact_url": uri}
    r = api(rt.url, "POST", "/v1/lora_adapter/load", body, token="engine-token")
    assert r.status == 200, r
    assert r.json()["local_path"] == str(rt.mount / ADAPTER)
    assert_engine_read(engine, ADAPTER, lora_tree, rt.mount / ADAPTER)
    (call,) = engine.requests()
    assert call["path"] == "/load_lora_adapter" and call["authorization"] == "Bearer engine-token"
    # SGLang says success=false, "already exists": 409
    engine.control(faults=[{"path": "/load_lora_adapter", "status": 400,
                            "message": "LoRA with name x already exists. Loaded LoRAs: [x]"}])
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", {"lora_name": "x", "lora_path": uri}), 409)
    assert sorted(mounts(rt)) == [ADAPTER]
    assert api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER}).status == 200
    assert engine.requests()[-1]["path"] == "/unload_lora_adapter"
    assert mounts(rt) == {}
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER}), 404)


def test_llamacpp_cannot_add_adapters_at_run_time(lora_tree, engine_factory, runtime_factory):
    engine = engine_factory(kind="llamacpp")
    rt = runtime_factory(env=engine.env())
    body = {"lora_name": ADAPTER, "lora_path": "file://%s" % lora_tree.path}
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/load", body), 501, "run time")
    assert mounts(rt) == {} and os.listdir(rt.mount) == []
    assert_error(api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER}), 501)
    assert api(rt.url, "GET", "/v1/models").status == 200  # passthrough still works


# --------------------------------------------------------------------------
# bad requests: status, AIBrix body, and the process keeps serving

LOAD = "/v1/lora_adapter/load"
BAD_REQUESTS = [
    ("name ../x", LOAD, {"lora_name": "../x", "lora_path": "/a"}, None, 400),
    ("empty name", LOAD, {"lora_name": "", "lora_path": "/a"}, None, 400),
    ("129-char name", LOAD, {"lora_name": "a" * 129, "lora_path": "/a"}, None, 400),
    ("name with a space", LOAD, {"lora_name": "a b", "lora_path": "/a"}, None, 400),
    ("name with NUL", LOAD, {"lora_name": "a\x00b", "lora_path": "/a"}, None, 400),
    ("empty path", LOAD, {"lora_name": "a", "lora_path": ""}, None, 400),
    ("unsupported scheme", LOAD, {"lora_name": "a", "lora_path": "gs://b/x"}, None, 400),
    ("missing lora_path", LOAD, {"lora_name": "a"}, None, 422),
    ("missing lora_name", LOAD, {"lora_path": "/a"}, None, 422),
    ("unknown field", LOAD, {"lora_name": "a", "lora_path": "/a", "extra": 1}, None, 422),
    ("unknown delegation field", LOAD, {"lora_name": "a", "artifact_url": "/a", "lora_path": "/a"}, None, 422),
    ("wrong type", LOAD, {"lora_name": 5, "lora_path": "/a"}, None, 422),
    ("wrong type credentials", LOAD, {"lora_name": "a", "artifact_url": "/a", "credentials": "x"}, None, 422),
    ("repeated field", LOAD, None, b'{"lora_name":"a","lora_name":"b","lora_path":"/a"}', 422),
    ("not an object", LOAD, None, b'["lora_name"]', 422),
    ("empty body", LOAD, None, b"", 422),
    ("malformed JSON", LOAD, None, b'{"lora_name": a}', 400),
    ("truncated JSON", LOAD, None, b'{"lora_name": "a", "lora_pa', 400),
    ("trailing garbage", LOAD, None, b'{"lora_name": "a", "lora_path": "/a"} x', 400),
    ("raw NUL byte", LOAD, None, b'{"lora_name": "a\x00", "lora_path": "/a"}', 400),
    ("2 MiB body", LOAD, None, b'{"lora_name": "' + b"a" * (2 << 20) + b'"}', 413),
    ("unload unknown field", "/v1/lora_adapter/unload", {"lora_name": "a", "x": 1}, None, 422),
    ("unload wrong type", "/v1/lora_adapter/unload", {"lora_name": "a", "cleanup_local": "yes"}, None, 422),
    ("unload bad name", "/v1/lora_adapter/unload", {"lora_name": "../x"}, None, 400),
    ("mount bad name", "/v1/model/mount", {"model_name": "a/b", "model_uri": "file:///x"}, None, 400),
    ("mount missing uri", "/v1/model/mount", {"model_name": "a"}, None, 422),
    ("mount bad prefetch", "/v1/model/mount", {"model_name": "a", "model_uri": "file:///x", "prefetch": "x"}, None,
     422),
    ("mount bad suffix list", "/v1/model/mount", {"model_name": "a", "model_uri": "file:///x",
                                                  "allow_file_suffix": [1]}, None, 422),
    ("mount bad URI", "/v1/model/mount", {"model_name": "a", "model_uri": "ftp://x/y"}, None, 400),
    ("unmount missing name", "/v1/model/unmount", {}, None, 422),
    ("download unknown extra key", "/v1/model/download", {"model_uri": "s3://b/m",
                                                          "download_extra_config": {"nope": 1}}, None, 422),
    ("download bad URI", "/v1/model/download", {"model_uri": "ftp://x"}, None, 422),
    ("wrong method", "/v1/model/mounts", None, b"{}", 405),
]


@pytest.mark.valgrind
def test_bad_requests_get_their_status_and_an_aibrix_error_body(engine, runtime_factory, lora_tree):
    rt = runtime_factory(env=engine.env())
    wrong = []
    for what, path, body, raw, status in BAD_REQUESTS:
        r = api(rt.url, "POST", path, body, raw=raw)
        try:
            assert_error(r, status)
        except AssertionError:
            wrong.append("%s: %r (want %d)" % (what, r, status))
    assert not wrong, "\n".join(wrong)
    assert engine.requests() == [], "a bad request reached the engine"
    assert mounts(rt) == {}
    assert api(rt.url, "GET", "/healthz").status == 200
    r = api(rt.url, "POST", LOAD, {"lora_name": "ok", "lora_path": "file://%s" % lora_tree.path})
    assert r.status == 200, r


@pytest.mark.valgrind
def test_api_key_guards_v1_only(engine, runtime_factory, tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    rt = runtime_factory(env=engine.env(), extra_args=["--api-key-file", keyfile])
    for path in ("/healthz", "/ready"):
        assert api(rt.url, "GET", path).status == 200, path
    assert api(rt.url, "GET", "/metrics").status == 200
    for token, headers in ((None, None), ("wrong", None), (KEY + "x", None), (KEY[:-1], None),
                           (None, {"Authorization": KEY}), (None, {"Authorization": "Basic " + KEY})):
        for method, path in (("GET", "/v1/models"), ("GET", "/v1/model/mounts"), ("POST", LOAD),
                             ("GET", "/v1/no/such/route")):
            assert_error(api(rt.url, method, path, {} if method == "POST" else None, token=token, headers=headers),
                         401)
    assert api(rt.url, "GET", "/v1/model/mounts", token=KEY).status == 200
    assert api(rt.url, "GET", "/v1/model/mounts", headers={"Authorization": "bearer " + KEY}).status == 200
    # a 2 MiB body without the key: 401, not 413
    assert_error(api(rt.url, "POST", LOAD, raw=b"x" * (2 << 20)), 401)
    assert [r for r in engine.requests(lora_only=False) if r["path"].startswith("/v1/")] == []
    assert KEY not in rt.log()


def test_unreadable_or_empty_key_file_stops_the_start(tmp_path):
    import subprocess
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    for f in (empty, tmp_path / "missing"):
        r = subprocess.run([str(RUNTIME), "--port", str(get_free_port()), "--host", "127.0.0.1",
                            "--api-key-file", str(f)], capture_output=True, timeout=30, env=clean_env())
        assert r.returncode == 1 and str(f) in r.stderr.decode(), r


# --------------------------------------------------------------------------
# model mounts

@pytest.mark.valgrind
def test_ready_waits_for_the_filesystem_so_a_mount_sent_after_it_is_never_refused(model_tree_factory,
                                                                                  runtime_factory):
    """The mount point becomes a mount a moment before the API can use the filesystem; /ready
    must cover that moment (under valgrind it was long enough for a LoRA load to get 503)."""
    tree = model_tree_factory(size="1M", seed=5)
    rt = runtime_factory(wait="healthz")
    seen = []

    def ready():
        status, body = rt.get("/ready")
        seen.append((status, body))
        return status == 200

    wait_until(ready, 60, "/ready", interval=0.005)
    r = api(rt.url, "POST", "/v1/model/mount", {"model_name": "m", "model_uri": "file://%s" % tree.path})
    assert r.status == 200, (r, seen)
    for status, body in seen[:-1]:
        assert status == 503 and body["status"] == "not ready", seen


@pytest.mark.valgrind
def test_model_mount_unmount_and_progress(request, model_tree_factory, engine, runtime_factory):
    tree = model_tree_factory(size="3M", seed=11)
    hub = request.getfixturevalue("hf_hub")
    hub.add_repo("acme/tiny", tree.path)
    rt = runtime_factory("start=file://%s,prefetch=none" % tree.path, env={**hub.env(), **engine.env()})
    body = {"model_name": "tiny", "model_uri": "hf://acme/tiny", "allow_file_suffix": ["json", ".safetensors"],
            "prefetch": "all"}
    r = api(rt.url, "POST", "/v1/model/mount", body)
    assert r.status == 200, r
    card = r.json()
    visible = {k: v for k, v in tree.manifest.items() if k.endswith((".json", ".safetensors"))}
    assert card["model_name"] == "tiny" and card["model_uri"] == "hf://acme/tiny"
    assert card["state"] in ("fetching", "fetched") and card["files"] == len(visible)
    assert card["bytes_total"] == sum(v["size"] for v in visible.values())
    # the same again is fine; another URI under the name is a conflict
    assert api(rt.url, "POST", "/v1/model/mount", body).status == 200
    assert_error(api(rt.url, "POST", "/v1/model/mount", {"model_name": "tiny", "model_uri": "hf://acme/other"}),
                 409)
    assert_error(api(rt.url, "POST", "/v1/model/mount", {"model_name": "nope", "model_uri": "hf://acme/nope"}),
                 404)
    deadline = time.monotonic() + 60
    while mounts(rt)["tiny"]["state"] != "fetched":
        assert time.monotonic() < deadline, mounts(rt)
        time.sleep(0.1)
    m = mounts(rt)
    assert m["tiny"]["bytes_cached"] == m["tiny"]["bytes_total"] and "error" not in m["tiny"]
    assert m["start"]["state"] == "ready" and set(m["start"]) >= {"model_name", "model_uri", "state",
                                                                 "bytes_total", "bytes_cached", "files"}
    assert sorted(os.listdir(rt.mount / "tiny")) == sorted({k.split("/")[0] for k in visible})
    # the start mount is configuration; the API's mount goes
    assert_error(api(rt.url, "POST", "/v1/model/unmount", {"model_name": "start"}), 409)
    r = api(rt.url, "POST", "/v1/model/unmount", {"model_name": "tiny"})
    assert r.status == 200 and r.json()["status"] == "success", r
    assert_error(api(rt.url, "POST", "/v1/model/unmount", {"model_name": "tiny"}), 404)
    assert sorted(mounts(rt)) == ["start"]
    assert api(rt.url, "GET", "/ready").status == 200


# --------------------------------------------------------------------------
# without --mount-point

def wait_listed(rt, root, status, timeout=60, local_dir=None):
    deadline = time.monotonic() + timeout
    while True:
        r = api(rt.url, "GET", "/v1/model/list", {"local_dir": local_dir} if local_dir else None)
        assert r.status == 200, r
        cards = {c["model_root_path"]: c for c in r.json()["data"]}
        if root in cards and cards[root]["model_status"] == status:
            return cards[root]
        assert time.monotonic() < deadline, "%s never became %s: %r" % (root, status, cards)
        time.sleep(0.1)


@pytest.mark.valgrind
def test_model_download_and_list(request, model_tree_factory, engine, plain_runtime_factory, tmp_path):
    tree = model_tree_factory(size="3M", seed=12)
    s3 = request.getfixturevalue("s3_server")
    s3.upload_tree(tree.path, prefix="llm/tiny")
    local = tmp_path / "models"
    rt = plain_runtime_factory(env={**s3.env(), **engine.env(), "DOWNLOADER_LOCAL_DIR": str(local)})
    assert_error(api(rt.url, "POST", "/v1/model/mount", {"model_name": "a", "model_uri": "s3://models/llm/tiny"}),
                 501, "--mount-point")
    assert api(rt.url, "GET", "/v1/model/mounts").json() == {"object": "list", "data": []}

    r = api(rt.url, "POST", "/v1/model/download", {"model_uri": "s3://models/llm/tiny/"})
    assert r.status == 200, r
    root = str(local / "tiny")
    assert r.json()["model_name"] == "tiny" and r.json()["model_root_path"] == root
    assert r.json()["source"] == "s3" and r.json()["model_status"] in ("downloading", "downloaded")
    wait_listed(rt, root, "downloaded")
    for rel, v in tree.manifest.items():
        assert sha256(Path(root) / rel) == v["sha256"], rel
    r = api(rt.url, "POST", "/v1/model/download", {"model_uri": "s3://models/llm/tiny/"})
    assert r.json()["model_status"] == "downloaded", r

    # another local_dir and name, HF-style two-level names, and a suffix filter
    other = tmp_path / "elsewhere"
    r = api(rt.url, "POST", "/v1/model/download", {"model_uri": "s3://models/llm/tiny/", "local_dir": str(other),
                                                   "model_name": "org/tiny",
                                                   "download_extra_config": {"allow_file_suffix": ["json"],
                                                                             "num_threads": 2}})
    assert r.status == 200, r
    card = wait_listed(rt, str(other / "org" / "tiny"), "downloaded", local_dir=str(other))
    assert card["model_name"] == "org/tiny"
    got = sorted(str(p.relative_to(other / "org" / "tiny")) for p in (other / "org" / "tiny").rglob("*")
                 if p.is_file() and ".cache" not in p.parts)
    assert got == sorted(k for k in tree.manifest if k.endswith(".json"))
    assert_error(api(rt.url, "POST", "/v1/model/download", {"model_uri": "s3://models/nothing/"}), 404)


def test_lora_without_mount_point_downloads_to_the_adapter_dir(request, lora_tree, engine, plain_runtime_factory,
                                                               tmp_path):
    uri, env, _ = lora_origin("s3", request, lora_tree)
    adapters = tmp_path / "adapters"
    rt = plain_runtime_factory(env={**env, **engine.env(), "AIBRIX_ADAPTER_DIR": str(adapters)})
    r = api(rt.url, "POST", LOAD, {"lora_name": ADAPTER, "lora_path": uri})
    path = adapters / ADAPTER
    assert r.status == 200 and r.text == success_text(ADAPTER, path), r
    assert_engine_read(engine, ADAPTER, lora_tree, path)
    r = api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER, "cleanup_local": False})
    assert r.status == 200 and path.is_dir(), r
    assert api(rt.url, "POST", LOAD, {"lora_name": ADAPTER, "lora_path": uri}).status == 200
    assert api(rt.url, "POST", "/v1/lora_adapter/unload", {"lora_name": ADAPTER}).status == 200
    assert not path.exists(), "cleanup_local (default true) left the download"
    # a failed load leaves no directory behind
    engine.control(faults=[{"path": "/v1/load_lora_adapter", "status": 500, "message": "boom"}])
    assert_error(api(rt.url, "POST", LOAD, {"lora_name": ADAPTER, "lora_path": uri}), 500, "boom")
    assert not path.exists()


@pytest.mark.valgrind
def test_sigterm_during_a_load_waiting_for_its_fetch(request, lora_tree, engine, runtime_factory):
    """A load waiting on a stalled origin does not hold up shutdown: it is answered 503 and
    the runtime exits 0 within the 10 s budget."""
    uri, env, s3 = lora_origin("s3", request, lora_tree)
    s3.faults({"match": "get", "delay": 60, "count": -1})
    rt = runtime_factory(env={**env, **engine.env()})
    box = {}
    t = threading.Thread(target=lambda: box.update(r=api(rt.url, "POST", LOAD, {"lora_name": ADAPTER,
                                                                                 "lora_path": uri})))
    t.start()
    deadline = time.monotonic() + 30
    while ADAPTER not in mounts(rt):
        assert time.monotonic() < deadline and t.is_alive(), box
        time.sleep(0.05)
    rc, secs = rt.stop(timeout=15)
    t.join(15)
    assert rc == 0 and secs < 10, (rc, secs)
    assert_error(box["r"], 503, "shutting down")
    assert engine.requests() == []
    s3.faults()


def test_mounts_made_at_start_are_listed_while_listing_and_when_they_failed(hf_hub, runtime_factory):
    """GET /v1/model/mounts shows a start mount whose listing is still running as "listing",
    and one whose listing failed as "error" with the reason, not only the mounts that are up."""
    hf_hub.add_repo("acme/slow", size="1M", seed=81)
    hf_hub.faults({"match": "tree", "delay": 3, "count": 1})
    # start mounts are listed one after the other, in order
    rt = runtime_factory("gone=hf://acme/no-such-repo", "slow=hf://acme/slow", env=hf_hub.env(), wait="healthz")
    states = lambda: mounts(rt)  # noqa: E731

    deadline = time.monotonic() + 20
    while not (states().get("slow", {}).get("state") == "listing" and states().get("gone", {}).get("state") == "error"):
        assert time.monotonic() < deadline, states()
        time.sleep(0.05)
    card = states()
    assert card["slow"]["model_uri"] == "hf://acme/slow"
    assert "no-such-repo" in card["gone"]["error"], card["gone"]
    assert rt.get("/ready")[0] == 503
    while states()["slow"]["state"] == "listing":
        assert time.monotonic() < deadline + 10, states()
        time.sleep(0.05)
    assert states()["slow"]["state"] in ("fetching", "fetched")
    assert states()["gone"]["state"] == "error"
    assert len(mounts(rt)) == 2


def test_refused_requests_are_logged_but_cannot_flood_the_log(runtime_factory):
    """Each refused request is logged with its answer, at most 20 lines a second; the next
    line that gets through says how many were left out."""
    rt = runtime_factory(wait="healthz")
    t0 = time.monotonic()
    for _ in range(200):
        assert api(rt.url, "GET", "/v1/no/such/route").status == 404
    seconds = time.monotonic() - t0
    time.sleep(1.1)
    assert api(rt.url, "GET", "/v1/no/such/route").status == 404
    lines = [l for l in rt.log().splitlines() if "GET /v1/no/such/route -> 404" in l]
    assert 20 <= len(lines) <= 20 * (int(seconds) + 2) + 1, (len(lines), seconds)
    assert len(lines) < 201
    assert re.search(r"\d+ more refused requests were not logged", rt.log())
