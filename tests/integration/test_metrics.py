"""test_metrics.py - GET /metrics of aibrix_runtime against fake engines and a real Prometheus.

User stories (SPEC §5-§6): an autoscaler reads `aibrix:queue_size` whatever engine runs; every
engine family is still there; the output passes `promtool check metrics`; an engine that is
down, slow, broken or huge never breaks /metrics; the passthrough switches give the engine's
bytes unchanged; the runtime counts its own API requests; a real Prometheus server scrapes it.

Each test starts tests/fakes/fake_engine.py (a fixture file of tests/unit/data/metrics/ served
in that engine's format) and `aibrix_runtime --host 127.0.0.1 --port P` with INFERENCE_ENGINE /
INFERENCE_ENGINE_ENDPOINT pointing at it. promtool exits 1 on errors and 3 when it only has lint
remarks (':' in names and the like); only errors fail (see test_promtext_promtool.py).
Run: /usr/bin/python3 -m pytest tests/integration/test_metrics.py
(AIBRIX_BUILD_DIR = meson build dir, default build/)
"""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import FAKES_DIR, PYTHON, ServerProcess, get_free_port, wait_http

pytest_plugins = ["runtime"]  # runtime_factory: the tests that mount a model
from runtime import log_report, read_all, scaled, wrapped  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
RUNTIME = BUILD / "control" / "aibrix_runtime"
FIXTURES = REPO / "tests" / "unit" / "data" / "metrics"
LINT_ONLY = 3

# ---------------------------------------------------------------------------------------
# SPEC §6, written down again here (independently of exporter/rules.c): per engine, each
# standard family and its sources in priority order, as (family, selector label, value).
# The trtllm_ names are the fallbacks the rules accept for newer TensorRT-LLM releases.


def src(name, label=None, value=None):
    return (name, label, value)


SPEC = {
    "vllm": {
        "aibrix:queue_size": [src("vllm:num_requests_waiting")],
        "aibrix:num_requests_running": [src("vllm:num_requests_running")],
        "aibrix:kv_cache_usage_perc": [src("vllm:kv_cache_usage_perc"), src("vllm:gpu_cache_usage_perc")],
        "aibrix:gpu_cache_usage_perc": [src("vllm:gpu_cache_usage_perc")],
        "aibrix:prompt_tokens_total": [src("vllm:prompt_tokens_total")],
        "aibrix:generation_tokens_total": [src("vllm:generation_tokens_total")],
        "aibrix:request_success_total": [src("vllm:request_success_total")],
        "aibrix:time_to_first_token_seconds": [src("vllm:time_to_first_token_seconds")],
        "aibrix:time_per_output_token_seconds": [src("vllm:time_per_output_token_seconds"),
                                                 src("vllm:inter_token_latency_seconds")],
        "aibrix:e2e_request_latency_seconds": [src("vllm:e2e_request_latency_seconds")],
        "aibrix:lora_requests_info": [src("vllm:lora_requests_info")],
    },
    "sglang": {
        "aibrix:queue_size": [src("sglang:num_queue_reqs")],
        "aibrix:num_requests_running": [src("sglang:num_running_reqs")],
        "aibrix:kv_cache_usage_perc": [src("sglang:token_usage")],
        "aibrix:prompt_tokens_total": [src("sglang:prompt_tokens_total")],
        "aibrix:generation_tokens_total": [src("sglang:generation_tokens_total")],
        "aibrix:time_to_first_token_seconds": [src("sglang:time_to_first_token_seconds")],
        "aibrix:time_per_output_token_seconds": [src("sglang:time_per_output_token_seconds"),
                                                 src("sglang:inter_token_latency_seconds")],
        "aibrix:e2e_request_latency_seconds": [src("sglang:e2e_request_latency_seconds")],
        "aibrix:generation_throughput": [src("sglang:gen_throughput")],
        "aibrix:cache_hit_rate": [src("sglang:cache_hit_rate")],
        "aibrix:token_usage": [src("sglang:token_usage")],
    },
    "trtllm": {
        "aibrix:queue_size": [src("nv_trt_llm_request_metrics", "request_type", "waiting"),
                              src("trtllm_num_requests_waiting")],
        "aibrix:num_requests_running": [src("nv_trt_llm_request_metrics", "request_type", "scheduled"),
                                        src("trtllm_num_requests_running")],
        "aibrix:kv_cache_usage_perc": [src("kv_cache_utilization"), src("trtllm_kv_cache_utilization"),
                                       src("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type",
                                           "fraction")],
        "aibrix:request_success_total": [src("request_success_total"), src("trtllm_request_success_total")],
        "aibrix:time_to_first_token_seconds": [src("time_to_first_token_seconds"),
                                               src("trtllm_time_to_first_token_seconds")],
        "aibrix:time_per_output_token_seconds": [src("time_per_output_token_seconds"),
                                                 src("trtllm_time_per_output_token_seconds")],
        "aibrix:e2e_request_latency_seconds": [src("e2e_request_latency_seconds"),
                                               src("trtllm_e2e_request_latency_seconds")],
        "aibrix:kv_cache_hit_rate": [src("kv_cache_hit_rate"), src("trtllm_kv_cache_hit_rate")],
    },
    "tgi": {
        "aibrix:queue_size": [src("tgi_queue_size")],
        "aibrix:num_requests_running": [src("tgi_batch_current_size")],
        "aibrix:request_success_total": [src("tgi_request_success")],
        "aibrix:e2e_request_latency_seconds": [src("tgi_request_duration")],
    },
    "triton": {
        "aibrix:queue_size": [src("nv_inference_pending_request_count")],
        "aibrix:request_success_total": [src("nv_inference_request_success")],
    },
    "llamacpp": {
        "aibrix:queue_size": [src("llamacpp:requests_deferred")],
        "aibrix:num_requests_running": [src("llamacpp:requests_processing")],
        "aibrix:kv_cache_usage_perc": [src("llamacpp:kv_cache_usage_ratio")],
        "aibrix:prompt_tokens_total": [src("llamacpp:prompt_tokens_total")],
        "aibrix:generation_tokens_total": [src("llamacpp:tokens_predicted_total")],
        "aibrix:generation_throughput": [src("llamacpp:predicted_tokens_seconds")],
    },
}

ENGINE_FIXTURES = sorted(f.stem for f in FIXTURES.glob("*.txt"))
OWN_ALWAYS = ("aibrix_engine_up", "aibrix_engine_scrape_duration_seconds", "aibrix:info_info")


def engine_of(fixture):
    return fixture.split("-")[0]


# ---------------------------------------------------------------------------------------
# a small, independent reader of the exposition format (what the assertions need)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse_labels(s):
    out, pos = {}, 0
    while s and pos < len(s):
        m = LABEL.match(s, pos)
        assert m, "bad labels %r" % s
        out[m.group(1)] = unescape(m.group(2))
        pos = m.end()
    return out


class Exposition:
    """types {family: type}, helps {family: text}, samples [(name, labels dict, value)];
    type_lines: every family named by a TYPE line, in order (duplicates kept)."""

    def __init__(self, text):
        if isinstance(text, bytes):
            text = text.decode()
        self.text = text
        self.types, self.helps, self.samples, self.type_lines = {}, {}, [], []
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(None, 3)
                self.types[name] = typ
                self.type_lines.append(name)
            elif line.startswith("# HELP "):
                parts = line.split(None, 3)
                self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            elif line.startswith("#"):
                continue
            else:
                m = SAMPLE.match(line)
                assert m, "not a sample line: %r" % line
                self.samples.append((m.group(1), parse_labels(m.group(2) or ""), float(m.group(3))))

    def family_samples(self, family):
        """Samples of a family: its name, plus _bucket/_sum/_count for histograms and summaries."""
        typ = self.types.get(family)
        names = {family}
        if typ == "histogram":
            names |= {family + "_bucket", family + "_sum", family + "_count"}
        elif typ == "summary":
            names |= {family + "_sum", family + "_count"}
        return [s for s in self.samples if s[0] in names]

    def value(self, name, **labels):
        """The value of the one sample with exactly these labels, or None."""
        hits = [v for n, l, v in self.samples if n == name and l == labels]
        assert len(hits) <= 1, "%s%r appears %d times" % (name, labels, len(hits))
        return hits[0] if hits else None

    def find(self, name, labels):
        return [v for n, l, v in self.samples if n == name and l == labels]


def same_value(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def promtool_errors(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (make deps does)"
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    lines = (r.stdout + r.stderr).decode(errors="replace").splitlines()
    errors = [l for l in lines if l.lower().startswith("error")]
    if r.returncode not in (0, LINT_ONLY) and not errors:
        errors = ["promtool exited %d: %s" % (r.returncode, lines)]
    return errors


def assert_valid(body):
    """No error from promtool, no family twice."""
    assert promtool_errors(body) == []
    exp = Exposition(body)
    dups = sorted({n for n in exp.type_lines if exp.type_lines.count(n) > 1})
    assert dups == [], "families written twice: %s" % dups
    helps = [l.split()[2] for l in exp.text.splitlines() if l.startswith("# HELP ")]
    assert len(helps) == len(set(helps))
    return exp


# ---------------------------------------------------------------------------------------
# processes

class FakeEngine:
    def __init__(self, proc, port, fixture):
        self.proc, self.port, self.fixture = proc, port, fixture
        self.url = "http://127.0.0.1:%d" % port

    def control(self, **kw):
        req = urllib.request.Request(self.url + "/__fake/control", data=json.dumps(kw).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stats(self):
        with urllib.request.urlopen(self.url + "/__fake/stats", timeout=10) as r:
            return json.loads(r.read())

    def metrics_requests(self):
        req = self.stats()["requests"]
        return req.get("serve_metrics", 0) + req.get("serve_metrics_slash", 0)


@pytest.fixture
def engine_factory(tmp_path):
    """callable(fixture="vllm-v1", mode="normal", *extra_args) -> FakeEngine (stopped at teardown)."""
    procs = []

    def make(fixture="vllm-v1", mode="normal", *extra):
        proc = ServerProcess([PYTHON, FAKES_DIR / "fake_engine.py", "--fixture", fixture, "--mode", mode,
                              "--port", 0, *extra], tmp_path / ("engine%d.log" % len(procs)))
        procs.append(proc)
        port = int(proc.wait_line("READY ").split()[1])
        eng = FakeEngine(proc, port, fixture)
        if mode != "down":
            wait_http(eng.url + "/__fake/stats", proc=proc)
        return eng

    try:
        yield make
    finally:
        for p in procs:
            p.stop()


class MetricsRuntime:
    """aibrix_runtime without a mount: the HTTP server and the exporter."""

    def __init__(self, env, log_path):
        if not RUNTIME.exists():
            pytest.fail("%s is not built (set AIBRIX_BUILD_DIR to the meson build dir)" % RUNTIME)
        self.port = get_free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = log_path
        full = {k: v for k, v in os.environ.items() if not k.startswith(("INFERENCE_ENGINE", "METRIC"))}
        full.update(env)
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(wrapped([RUNTIME, "--host", "127.0.0.1", "--port", self.port]),
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=full,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("aibrix_runtime did not come up; log:\n" + self.log())
                time.sleep(0.02)

    def get(self, path, timeout=30):
        """-> (status, body bytes, content type, seconds)."""
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                body = r.read()
                return r.status, body, r.headers.get("Content-Type"), time.monotonic() - t0
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type"), time.monotonic() - t0

    def metrics(self, path="/metrics"):
        """GET /metrics: 200, the 0.0.4 content type, valid for promtool, no family twice."""
        status, body, ctype, secs = self.get(path)
        assert status == 200, body
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        assert_valid(body)
        return body, secs

    def log(self):
        self._log.flush()
        return self.log_path.read_bytes().decode(errors="replace")

    def stop(self):
        """SIGTERM; the process must exit 0 and its log must have no sanitizer report."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(15))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def runtime(tmp_path):
    """callable(engine=None, **env) -> MetricsRuntime; engine sets INFERENCE_ENGINE_ENDPOINT and,
    unless given, INFERENCE_ENGINE (from the fixture's name) and METRIC_SCRAPE_PATH."""
    started = []

    def make(engine=None, **env):
        env = {k: str(v) for k, v in env.items()}
        if engine is not None:
            env.setdefault("INFERENCE_ENGINE_ENDPOINT", engine.url)
            env.setdefault("INFERENCE_ENGINE", engine_of(engine.fixture))
            if engine.fixture == "trtllm-serve":
                env.setdefault("METRIC_SCRAPE_PATH", "/prometheus/metrics")
        rt = MetricsRuntime(env, tmp_path / ("runtime%d.log" % len(started)))
        started.append(rt)
        return rt

    try:
        yield make
    finally:
        problems = []
        for rt in started:
            rc = rt.stop()
            log = rt.log_path.read_text(errors="replace")
            if rc != 0:
                problems.append("runtime exited %s after SIGTERM (want 0)" % rc)
            report = log_report(log)
            if report:
                problems.append("sanitizer or memcheck report in the runtime log: %s" % report)
            print("---- runtime log ----\n" + log[-3000:])
        assert problems == []


# ---------------------------------------------------------------------------------------
# standardisation, per engine fixture

def expected_standard(source):
    """{std family: [(sample name, labels, value)]} that the SPEC table derives from source."""
    out = {}
    for std, sources in SPEC[engine_of(source.fixture)].items():
        for fam, label, value in sources:
            rows = [s for s in source.family_samples(fam) if label is None or s[1].get(label) == value]
            if not rows:
                continue
            out[std] = [(std + name[len(fam):], {k: v for k, v in labels.items() if k != label}, val)
                        for name, labels, val in rows]
            break
    return out


@pytest.mark.parametrize("fixture", ENGINE_FIXTURES)
def test_standard_families_per_engine(engine_factory, runtime, fixture):
    engine = engine_factory(fixture)
    rt = runtime(engine)
    body, _ = rt.metrics()
    out = assert_valid(body)
    source = Exposition((FIXTURES / (fixture + ".txt")).read_bytes())
    source.fixture = fixture

    want = expected_standard(source)
    assert want, "the fixture gives no standard family at all"
    for std, rows in want.items():
        assert std in out.types, "%s missing (engine %s)" % (std, fixture)
        assert len(out.family_samples(std)) == len(rows), std
        for name, labels, value in rows:
            got = out.find(name, labels)
            assert len(got) == 1 and same_value(got[0], value), (name, labels, value, got)
    # nothing standard that the table does not give
    spurious = {n for n in out.types if n.startswith("aibrix:") and not n.endswith("_created")} \
        - set(want) - {"aibrix:info_info", "aibrix:api_request_total", "aibrix:api_request_latency"}
    assert spurious == set()

    # every original family kept, every sample with its labels and value
    for fam, typ in source.types.items():
        assert out.types.get(fam) == typ, fam
    for name, labels, value in source.samples:
        got = out.find(name, labels)
        assert len(got) == 1 and same_value(got[0], value), (name, labels, value, got)

    assert out.value("aibrix_engine_up") == 1
    info = [l for n, l, v in out.samples if n == "aibrix:info_info"]
    assert info == [{"version": info[0]["version"], "engine": engine_of(fixture), "engine_version": "unknown"}]


@pytest.mark.valgrind
def test_standard_values_follow_the_engine(engine_factory, runtime):
    """Each scrape reads the engine anew: a changed value shows on the next /metrics."""
    engine = engine_factory("vllm-v1")
    rt = runtime(engine)
    labels = {"engine": "0", "model_name": "meta-llama/Llama-3.1-8B-Instruct"}
    assert Exposition(rt.metrics()[0]).value("aibrix:queue_size", **labels) == 5
    text = (FIXTURES / "vllm-v1.txt").read_text().replace(
        'vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 5.0',
        'vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 17.0')
    engine.control(text=text)
    assert Exposition(rt.metrics()[0]).value("aibrix:queue_size", **labels) == 17


def test_metrics_with_trailing_slash_and_redirecting_engine(engine_factory, runtime):
    """/metrics/ answers directly (no 307), and an engine whose /metrics redirects to /metrics/
    (a Starlette mount) is followed."""
    engine = engine_factory("sglang-new", "redirect")
    rt = runtime(engine)
    status, body, _, _ = rt.get("/metrics/")
    assert status == 200
    exp = assert_valid(body)
    assert exp.value("aibrix_engine_up") == 1
    assert "aibrix:queue_size" in exp.types
    assert engine.stats()["requests"].get("serve_metrics_slash", 0) >= 1


# ---------------------------------------------------------------------------------------
# failure modes: always 200, own metrics, aibrix_engine_up 0, within the timeout + 1 s

def assert_engine_down(rt, timeout):
    body, secs = rt.metrics()
    assert secs < timeout + 1.0, "took %.2fs" % secs
    exp = assert_valid(body)
    assert exp.value("aibrix_engine_up") == 0
    for fam in OWN_ALWAYS:
        assert fam in exp.types, fam
    assert not [n for n in exp.types if n.startswith(("vllm:", "aibrix:queue"))]
    return exp


@pytest.mark.parametrize("mode", ["down", "slow", "garbage", "huge", "huge_chunked", "error", "reset"])
def test_engine_failure_still_answers(engine_factory, runtime, mode):
    engine = engine_factory("vllm-v1", mode, "--delay", "4")
    rt = runtime(engine)
    for _ in range(2):
        assert_engine_down(rt, 1.0)
    log = rt.log()
    assert "engine metrics unavailable" in log
    # the reason is logged once, not on every scrape (a huge body may end as "too large" on
    # one scrape and as a timeout on the next when the machine is busy: two causes, two lines)
    causes = [re.sub(r"[0-9]+", "#", line.split("engine metrics unavailable", 1)[1])
              for line in log.splitlines() if "engine metrics unavailable" in line]
    assert len(causes) == len(set(causes)), causes


def test_fractional_timeout(engine_factory, runtime):
    engine = engine_factory("vllm-v1", "slow", "--delay", "3")
    rt = runtime(engine, METRIC_SCRAPE_TIMEOUT="0.3")
    body, secs = rt.metrics()
    assert secs < 1.3
    assert Exposition(body).value("aibrix_engine_up") == 0


def test_engine_recovers(engine_factory, runtime):
    engine = engine_factory("vllm-v1", "garbage")
    rt = runtime(engine)
    assert Exposition(rt.metrics()[0]).value("aibrix_engine_up") == 0
    engine.control(mode="normal")
    exp = Exposition(rt.metrics()[0])
    assert exp.value("aibrix_engine_up") == 1
    assert "aibrix:queue_size" in exp.types
    engine.control(mode="error", status=503)
    assert Exposition(rt.metrics()[0]).value("aibrix_engine_up") == 0
    log = rt.log()
    assert "engine metrics available" in log
    assert "HTTP 503" in log


def test_concurrent_scrapes_share_one_engine_request(engine_factory, runtime):
    """Renders that arrive while the engine is being asked wait for that answer."""
    engine = engine_factory("vllm-v1", "slow", "--delay", "0.8")
    rt = runtime(engine, METRIC_SCRAPE_TIMEOUT="3")
    n = 8
    results = [None] * n

    def scrape(i):
        results[i] = rt.metrics()

    threads = [threading.Thread(target=scrape, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for body, secs in results:
        exp = Exposition(body)
        assert exp.value("aibrix_engine_up") == 1
        assert "aibrix:queue_size" in exp.types
    # How many flights there are depends on how the server spreads connections over threads
    # and on when each request arrives, but renders running together must have shared one.
    asked = engine.metrics_requests()
    assert 1 <= asked < n, asked


# ---------------------------------------------------------------------------------------
# passthrough

def assert_passthrough(rt, fixture_bytes):
    body, _ = rt.metrics()
    assert body.startswith(fixture_bytes), "the engine's bytes are not passed through unchanged"
    rest = Exposition(body[len(fixture_bytes):])
    assert rest.value("aibrix_engine_up") == 1
    assert not [n for n in rest.types if n.startswith("aibrix:") and n not in
                ("aibrix:info_info", "aibrix:api_request_total", "aibrix:api_request_latency")]
    assert_valid(body)
    return body


@pytest.mark.parametrize("env", [{"METRICS_ENABLE_TRANSFORMATION": "0"},
                                 {"METRICS_RAW_PASSTHROUGH_MODE": "1"},
                                 {"METRICS_RAW_PASSTHROUGH_MODE": "TRUE", "METRICS_ENABLE_TRANSFORMATION": "on"},
                                 {"METRICS_ENABLE_TRANSFORMATION": "off"}],
                         ids=["transformation-0", "raw-1", "raw-TRUE", "transformation-off"])
@pytest.mark.parametrize("fixture", ["vllm-v0", "triton"])
def test_passthrough_is_byte_for_byte(engine_factory, runtime, env, fixture):
    engine = engine_factory(fixture)
    rt = runtime(engine, **env)
    assert_passthrough(rt, (FIXTURES / (fixture + ".txt")).read_bytes())


def test_passthrough_adds_a_missing_final_newline(engine_factory, runtime):
    engine = engine_factory("llamacpp")
    text = (FIXTURES / "llamacpp.txt").read_bytes().rstrip(b"\n")
    engine.control(text=text.decode())
    rt = runtime(engine, METRICS_RAW_PASSTHROUGH_MODE="1")
    body = assert_passthrough(rt, text)
    assert body[len(text):len(text) + 1] == b"\n"


def test_passthrough_of_garbage_is_refused(engine_factory, runtime):
    engine = engine_factory("vllm-v1", "garbage")
    rt = runtime(engine, METRICS_RAW_PASSTHROUGH_MODE="1")
    assert_engine_down(rt, 1.0)


def test_unknown_engine_passes_through_with_one_warning(engine_factory, runtime):
    engine = engine_factory("vllm-v1")
    rt = runtime(engine, INFERENCE_ENGINE="mystery-engine")
    fixture = (FIXTURES / "vllm-v1.txt").read_bytes()
    for _ in range(3):
        assert_passthrough(rt, fixture)
    log = rt.log()
    assert log.count("unknown inference engine") == 1, log
    assert "mystery-engine" in log


def test_engine_name_ignores_case(engine_factory, runtime):
    engine = engine_factory("sglang-old")
    rt = runtime(engine, INFERENCE_ENGINE="SGLang")
    assert "aibrix:queue_size" in Exposition(rt.metrics()[0]).types


def test_engine_family_named_like_our_own_is_kept_once(engine_factory, runtime):
    """An engine that is itself an aibrix runtime: its families win, ours of the same name are
    left out, and no family appears twice."""
    engine = engine_factory("vllm-v1")
    text = (FIXTURES / "vllm-v1.txt").read_text() + (
        "# HELP aibrix_engine_up upstream\n# TYPE aibrix_engine_up gauge\naibrix_engine_up 1\n"
        "# TYPE aibrix:api_request_latency_count gauge\naibrix:api_request_latency_count 3\n")
    engine.control(text=text)
    rt = runtime(engine)
    rt.get("/healthz")
    exp = assert_valid(rt.metrics()[0])
    assert exp.helps["aibrix_engine_up"] == "upstream"
    assert "aibrix:api_request_latency" not in exp.types
    assert "aibrix:api_request_total" in exp.types
    assert rt.log().count("is left out") == 1


# ---------------------------------------------------------------------------------------
# the runtime's own metrics

@pytest.mark.valgrind
def test_own_metrics(engine_factory, runtime):
    engine = engine_factory("vllm-v1")
    rt = runtime(engine, INFERENCE_ENGINE_VERSION="0.9.2")
    exp = assert_valid(rt.metrics()[0])
    for fam in OWN_ALWAYS:
        assert fam in exp.helps and exp.helps[fam], fam
    assert exp.types["aibrix:info_info"] == "gauge"
    (info,) = [l for n, l, v in exp.samples if n == "aibrix:info_info" and v == 1]
    assert info["engine"] == "vllm" and info["engine_version"] == "0.9.2" and info["version"]
    assert 0 <= exp.value("aibrix_engine_scrape_duration_seconds") < 1
    # no filesystem without --mount-point: no mount families
    assert not [n for n in exp.types if n.startswith(("aibrix_mount_", "aibrix_cache_", "aibrix_model_"))]

    key = {"method": "GET", "endpoint": "/healthz", "status": "200"}
    before = exp.value("aibrix:api_request_total", **key) or 0
    for _ in range(3):
        assert rt.get("/healthz")[0] == 200
    assert rt.get("/no/such/route?x=1")[0] == 404
    assert rt.get("/metrics/")[0] == 200
    exp = assert_valid(rt.metrics()[0])
    assert exp.types["aibrix:api_request_total"] == "counter"
    assert exp.value("aibrix:api_request_total", **key) == before + 3
    assert exp.value("aibrix:api_request_total", method="GET", endpoint="other", status="404") == 1
    assert exp.value("aibrix:api_request_total", method="GET", endpoint="/metrics/", status="200") == 1
    assert exp.types["aibrix:api_request_latency"] == "histogram"
    les = [l["le"] for n, l, v in exp.samples
           if n == "aibrix:api_request_latency_bucket" and l["endpoint"] == "/healthz"]
    assert les == ["0.1", "0.2", "0.5", "1", "2", "5", "+Inf"]
    assert exp.value("aibrix:api_request_latency_count", **key) == before + 3


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
@pytest.mark.valgrind
def test_mount_metrics(runtime_factory, model_tree, engine_factory):
    engine = engine_factory("llamacpp")
    rt = runtime_factory("tiny=file://%s,prefetch=none" % model_tree.path,
                         env={"INFERENCE_ENGINE": "llamacpp", "INFERENCE_ENGINE_ENDPOINT": engine.url})
    total = sum(m["size"] for m in model_tree.manifest.values())
    name = max(model_tree.manifest, key=lambda k: model_tree.manifest[k]["size"])
    data = (rt.mount / "tiny" / name).read_bytes()
    with urllib.request.urlopen(rt.url + "/metrics", timeout=10) as r:
        body = r.read()
    exp = assert_valid(body)
    assert exp.value("aibrix_engine_up") == 1
    assert exp.value("aibrix_model_bytes_total", model="tiny") == total
    assert 0 < exp.value("aibrix_model_bytes_cached", model="tiny") <= total
    assert exp.value("aibrix_mount_read_bytes_total") >= len(data)
    assert exp.value("aibrix_mount_reads_total") >= 1
    assert exp.types["aibrix_mount_read_duration_seconds"] == "histogram"
    assert exp.value("aibrix_mount_read_duration_seconds_count") >= exp.value("aibrix_mount_reads_total")
    assert exp.value("aibrix_cache_miss_bytes_total") > 0
    assert exp.value("aibrix_cache_size_bytes") > 0
    assert exp.value("aibrix_cache_max_bytes") > 0
    for fam in ("aibrix_cache_hit_bytes_total", "aibrix_cache_evictions_total", "aibrix_integrity_failures_total",
                "aibrix_remote_retries_total", "aibrix_remote_failures_total"):
        assert exp.value(fam) is not None, fam
        assert exp.types[fam] == "counter", fam
        assert exp.helps[fam], fam
    # by source (and status): a file:// model sends no request, so these have no sample (and
    # a family without samples is not written)
    for fam in ("aibrix_remote_requests_total", "aibrix_remote_bytes_total"):
        assert not [s for s in exp.samples if s[0] == fam], fam


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
def test_remote_requests_are_counted_by_source_and_status(runtime_factory, hf_hub):
    """SPEC §6: remote bytes and requests by source and status. Every attempt counts with
    the answer it got: the Hub's 302s to its CDN, the 206s of ranged reads, a 503 the Hub
    was told to send once; bytes match what the Hub says it served."""
    repo = "acme/counted"
    manifest = hf_hub.add_repo(repo, size="3M", seed=61)
    rt = runtime_factory("c=hf://%s,prefetch=none" % repo, env=hf_hub.env())
    hf_hub.faults({"match": "resolve", "status": 503, "count": 1})
    for rel in manifest:
        read_all(rt.mount / "c" / rel)
    status, text = rt.get("/metrics")
    assert status == 200, text
    exp = assert_valid(text.encode())
    got = {l["status"]: v for n, l, v in exp.samples
           if n == "aibrix_remote_requests_total" and l["source"] == "huggingface"}
    assert got.get("503") == 1, got
    assert got.get("302", 0) >= 1 and got.get("206", 0) >= 1, got
    assert set(l["source"] for n, l, v in exp.samples if n == "aibrix_remote_requests_total") == {"huggingface"}
    served = sum(v for k, v in hf_hub.stats()["bytes_by_path"].items() if k.startswith(repo + "/"))
    assert exp.value("aibrix_remote_bytes_total", source="huggingface") == served


# ---------------------------------------------------------------------------------------
# a real Prometheus server

def test_prometheus_scrapes_the_runtime(engine_factory, runtime, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not found: apt-get install prometheus (make deps does)"
    engine = engine_factory("vllm-v1")
    rt = runtime(engine)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: aibrix\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % rt.port)
    port = get_free_port()
    proc = ServerProcess([prometheus, "--config.file=%s" % cfg, "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                          "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                         tmp_path / "prometheus.log")
    try:
        api = "http://127.0.0.1:%d/api/v1/query?query=" % port

        def query(q):
            with urllib.request.urlopen(api + urllib.parse.quote(q), timeout=10) as r:
                return json.loads(r.read())["data"]["result"]

        # Prometheus answers 503 until its storage is open, then empty results until the
        # first scrape has landed
        deadline = time.monotonic() + 60
        result = []
        while not result and time.monotonic() < deadline:
            assert proc.proc.poll() is None, "prometheus exited; log:\n" + proc.log_tail()
            try:
                result = query("aibrix:queue_size")
            except (urllib.error.URLError, OSError):
                result = []
            if not result:
                time.sleep(0.5)
        assert result, "Prometheus never got aibrix:queue_size; log:\n" + proc.log_tail()
        (series,) = result
        assert series["metric"]["model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
        assert series["metric"]["job"] == "aibrix"
        assert float(series["value"][1]) == 5
        assert float(query('up{job="aibrix"}')[0]["value"][1]) == 1
        assert float(query("aibrix_engine_up")[0]["value"][1]) == 1
        assert query("aibrix:info_info")[0]["metric"]["engine"] == "vllm"
        # Prometheus' own view of the scrape: every sample accepted
        assert float(query('scrape_samples_scraped{job="aibrix"}')[0]["value"][1]) > 100
    finally:
        proc.stop()
