"""test_load.py - the "Load" scenario of the reliability issue: the whole process at once.

    wrk on /metrics and on the API, and 8 concurrent mount readers, for 60 s. Zero errors,
    bounded RSS, and a SIGTERM under load exits cleanly in under 10 s with the mount released.

Why: the HTTP server, the exporter and the FUSE filesystem share one process (here on two
CPUs), so a defect that only shows when they all run together - memory kept per request, a
lock held across a fetch, a descriptor never closed, a shutdown that waits on keep-alive
connections or on a blocked read - escapes every single-feature story. This one runs them
together for AIBRIX_LOAD_SECONDS (default 60), then stops the process in the middle of it.

Set-up (all on loopback):
- the fake vLLM engine (tests/fakes/fake_engine.py, fixture vllm-v1) at
  INFERENCE_ENGINE_ENDPOINT, so /metrics scrapes, parses and standardises real vLLM text;
- the fake HF Hub serving a 64 MiB model in 16 safetensors shards, mounted with prefetch=none
  and --cache-max-bytes below the model size, so the block cache keeps evicting what the
  readers closed and the readers keep going through the network path (ranged fetches, the
  running digest, eviction), not only through the cache.
Load, the measured window:
- `wrk -t1 -c32` on GET /metrics, and `wrk -t1 -c32` on the cheap API GETs of SPEC section 5
  (/healthz, /ready, /readyz, /v1/model/mounts, /v1/model/list, rotated by a Lua script);
- 8 reader threads, each looping over every file of the model from its own first file; each
  file's pages are dropped from the kernel page cache first (POSIX_FADV_DONTNEED via
  runtime.read_all) so every pass reaches the runtime, and its sha256 is checked.
Asserted for the window: wrk counts no non-2xx/3xx response and no socket error, and enough
requests to rule out a stall; every read gave the manifest's bytes and none failed; the runtime
counted no remote or integrity failure and fetched more than the whole model (the network path
ran); every sampled /metrics answered 200 and saw the engine; memory and descriptors stay
bounded (RSS_* and ALLOC_* below).
Then, with a second pair of wrk processes and the readers still running, SIGTERM: exit status
0 in under 10 s without the runtime's own shutdown watchdog firing (it exits 0 too, so its log
line is what tells) and without the HTTP drain running out its 5 s budget (keep-alive clients
kept it busy until control/server.c closed each connection after its in-flight request), the
mount point no longer a mount, every reader ended (an error from the vanished mount) within
READER_END_S, and no reader ever got wrong bytes. The runtime_factory
teardown checks the log for sanitizer reports (make test-integration runs the ASan build).

The numbers (requests/s, latency, RSS series, reader throughput, exit time) are printed; run
with -s to see them.
Run: AIBRIX_BUILD_DIR=build-asan /usr/bin/python3 -m pytest -q tests/integration/test_load.py -s
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

pytest_plugins = ["runtime"]  # the runtime_factory fixture and the watchdog

from conftest import FAKES_DIR, PYTHON, ServerProcess, wait_http  # noqa: E402
from runtime import RUNTIME, is_asan_binary, is_mounted, read_all, runtime_timeout  # noqa: E402
from wrkparse import parse as parse_wrk  # noqa: E402  (tests/fakes)

MiB = 1 << 20
LOAD_SECONDS = max(10, int(os.environ.get("AIBRIX_LOAD_SECONDS", "60")))
READERS = 8
REPO_ID = "acme/load-llm"
NAME = "load"
MODEL_SIZE, SHARDS = "64M", 16  # 4 MiB shards: the 8 files open at once fit the cache bound
CACHE_MAX = 40 * MiB  # below the model: closed files are evicted and fetched again
WRK_CONNECTIONS = 32  # per wrk process
API_PATHS = ("/healthz", "/ready", "/readyz", "/v1/model/mounts", "/v1/model/list")
# Stall detectors, not performance goals: measured on 2 cores under ASan, /metrics ~480 req/s
# (each render waits for the engine scrape it shares) and the API ~21000 req/s.
MIN_RPS = {"/metrics": 20, "API": 200}
EXIT_BUDGET_S = 10.0  # SPEC section 1: SIGTERM ... finish in-flight (bounded, 10 s), exit 0
READER_END_S = 15.0  # readers must have ended this long after the runtime exited

# Memory, sampled every second over the window. The first third absorbs warm-up: a thread and
# its stack per wrk connection, curl handles, the fetch pool, allocator caches.
# - RSS, no growth trend: max of the last third <= max of the first third + RSS_GROWTH_MIB.
#   Plain build, measured: 25 -> 35-39 MiB, growth 2-5 MiB over 60 s and 5 MiB over 180 s,
#   flattening: glibc arena fragmentation with ~90 threads (malloc_stats showed the bytes in
#   use falling meanwhile).
#   ASan build: RSS keeps creeping (~+30 MiB over 60 s) while the allocator's bytes in use stay
#   flat: it touches more of a heap mapping that stops growing after ~30 s. Hence a looser bound
#   there, plus the exact check below.
# - RSS, absolute cap: the block cache lives on disk, so the process itself needs little
#   (plain ~35 MiB measured); ASan's shadow memory, redzones and quarantine multiply that
#   (~200 MiB measured with ASAN_QUARANTINE).
# - ASan build, when gdb is installed: the allocator's own count of bytes handed out and not
#   freed (__sanitizer_get_current_allocated_bytes), read under load at one third and at the
#   end of the window, may grow by at most ALLOC_GROWTH_MIB. Measured 18-23 MiB, the spread being
#   what is in flight at the instant (FUSE worker buffers of 1 MiB, /metrics bodies). At the
#   measured rates the bound trips on ~30 bytes kept per API request or ~40 KiB per file read.
#   LeakSanitizer (at exit) catches memory nobody points to; this catches memory still
#   referenced but growing (a list, a table, a cache without a bound).
RSS_GROWTH_MIB = {"plain": 16, "asan": 64}
RSS_CAP_MIB = {"plain": 128, "asan": 512}
ALLOC_GROWTH_MIB = 16
# ASan keeps up to 256 MiB of freed blocks in quarantine by default, which fills over the run and
# reads like a leak on an RSS graph; 16 MiB still catches use-after-free of recent frees.
ASAN_QUARANTINE = "quarantine_size_mb=16"
FD_GROWTH = 16  # open descriptors: max of the last third over max of the first third


# --------------------------------------------------------------------------
# wrk

API_LUA = """\
-- generated by tests/integration/test_load.py: rotate over the cheap API GETs
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
""" % ", ".join('"%s"' % p for p in API_PATHS)


class Wrk:
    """One wrk process writing its summary to a file; finish() parses it."""

    def __init__(self, url, out_path, seconds, lua=None):
        argv = ["wrk", "-t1", "-c%d" % WRK_CONNECTIONS, "-d%ds" % seconds, "--timeout", "5s", "--latency"]
        self.argv = argv + (["-s", str(lua)] if lua else []) + [url]
        self.out_path = out_path
        self._out = open(out_path, "w")
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def finish(self, timeout, interrupt=False):
        """Wait for wrk to end (after SIGINT when interrupt: it prints its summary then)."""
        if interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("wrk did not end within %ss: %s" % (timeout, " ".join(self.argv)))
        self._out.close()
        with open(self.out_path) as f:
            return parse_wrk(f.read())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()


def wrk_line(name, w):
    return ("%s: %s requests, %.0f req/s, p50 %s ms, p99 %s ms, non-2xx %d, socket errors %s"
            % (name, w["requests"], w["rps"], w["p50"], w["p99"], w["non2xx"], w["socket_errors"] or "none"))


# --------------------------------------------------------------------------
# the mount readers

class Reader(threading.Thread):
    """Loops over every file of the model (from its own first file), each read cold and checked
    against the manifest, until `stop` is set or, once `shutdown` is set, a read fails (the
    mount going away under it is what SIGTERM does)."""

    def __init__(self, idx, root, manifest, stop, shutdown):
        super().__init__(daemon=True, name="reader%d" % idx)
        files = sorted(manifest)
        k = idx * len(files) // READERS
        self.order = files[k:] + files[:k]
        self.root, self.manifest, self.stop, self.shutdown = root, manifest, stop, shutdown
        self.bytes = self.reads = self.passes = 0
        self.slowest = 0.0
        self.errors = []  # failed reads while the runtime was meant to serve
        self.wrong = []  # wrong bytes, at any time
        self.ended_by = None

    def run(self):
        try:
            while not self.stop.is_set():
                for rel in self.order:
                    if self.stop.is_set():
                        break
                    t0 = time.monotonic()
                    try:
                        digest = read_all(self.root / rel, drop_cache=True)
                    except OSError as e:
                        if self.shutdown.is_set():
                            self.ended_by = "%s after SIGTERM" % type(e).__name__
                            return
                        if len(self.errors) < 50:
                            self.errors.append("%s: %r" % (rel, e))
                        time.sleep(0.05)
                        continue
                    if digest != self.manifest[rel]["sha256"]:
                        self.wrong.append(rel)
                        continue
                    self.slowest = max(self.slowest, time.monotonic() - t0)
                    self.bytes += self.manifest[rel]["size"]
                    self.reads += 1
                else:
                    self.passes += 1
            self.ended_by = "stopped"
        except BaseException as e:  # noqa: B902 - reported by the test
            self.errors.append("reader crashed: %r" % e)
            self.ended_by = "crashed"


# --------------------------------------------------------------------------
# the runtime's vital signs

def proc_sample(pid):
    """(VmRSS KiB, threads, open descriptors) of a live process."""
    rss = threads = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads, len(os.listdir("/proc/%d/fd" % pid))


OWN = ("aibrix_engine_up", "aibrix_remote_bytes_total", "aibrix_remote_failures_total",
       "aibrix_remote_retries_total", "aibrix_integrity_failures_total", "aibrix_cache_evictions_total")


def scrape(url, timeout=10):
    """-> (status, {name: value summed over its label sets} for OWN, has vLLM's standardised
    families)."""
    with urllib.request.urlopen(url + "/metrics", timeout=timeout) as r:
        status, text = r.status, r.read().decode(errors="replace")
    values = {}
    for line in text.splitlines():
        name = re.split(r"[{ ]", line, 1)[0]
        if name in OWN:
            values[name] = values.get(name, 0.0) + float(line.rsplit(None, 1)[1])
    return status, values, "\naibrix:queue_size{" in text and "\nvllm:num_requests_waiting{" in text


class Sampler(threading.Thread):
    """Every second: the runtime's RSS, threads and descriptors, and one GET /metrics."""

    def __init__(self, rt):
        super().__init__(daemon=True, name="sampler")
        self.rt = rt
        self.samples = []  # (rss MiB, threads, fds)
        self.scrapes = []  # (status, engine up, standardised vLLM families present) or an error
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            tick = time.monotonic()
            try:
                rss, threads, fds = proc_sample(self.rt.pid)
                self.samples.append((rss / 1024, threads, fds))
            except (OSError, TypeError):
                pass
            try:
                status, values, standard = scrape(self.rt.url, timeout=5)
                self.scrapes.append((status, values.get("aibrix_engine_up"), standard))
            except OSError as e:
                self.scrapes.append((None, None, repr(e)))
            self.halt.wait(max(0.0, 1.0 - (time.monotonic() - tick)))


def asan_bytes_in_use(pid):
    """ASan's count of heap bytes allocated and not freed in a live process, read with gdb
    (attaches for ~1 s); None when gdb is missing or the call fails."""
    gdb = shutil.which("gdb")
    if not gdb:
        return None
    env = {k: v for k, v in os.environ.items() if k != "DEBUGINFOD_URLS"}  # no symbol downloads
    try:
        r = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex",
                            "print ((unsigned long(*)(void))__sanitizer_get_current_allocated_bytes)()"],
                           capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^\$1 = (\d+)$", r.stdout, re.M)
    if not m:
        print("gdb failed:", r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    return int(m.group(1)) if m else None


def thirds(values):
    k = max(1, len(values) // 3)
    return values[:k], values[-k:]


def sleep_until(t):
    time.sleep(max(0.0, t - time.monotonic()))


# --------------------------------------------------------------------------
# the story

@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
@pytest.mark.skipif(bool(os.environ.get("AIBRIX_RUNTIME_WRAPPER")),
                    reason="measures the runtime itself, not the runtime under a wrapper (valgrind)")
@runtime_timeout(LOAD_SECONDS + 240)
def test_load_wrk_and_eight_readers_then_sigterm_under_load(hf_hub, runtime_factory, tmp_path):
    assert shutil.which("wrk"), "wrk not found: apt-get install wrk"
    manifest = hf_hub.add_repo(REPO_ID, size=MODEL_SIZE, seed=41, shards=SHARDS)
    model_bytes = sum(v["size"] for v in manifest.values())
    assert model_bytes > CACHE_MAX * 3 // 2, "the model must not fit the cache bound"
    build = "asan" if is_asan_binary(RUNTIME) else "plain"
    lua = tmp_path / "api.lua"
    lua.write_text(API_LUA)

    engine = ServerProcess([PYTHON, FAKES_DIR / "fake_engine.py", "--fixture", "vllm-v1", "--port", 0],
                           tmp_path / "engine.log")
    wrks, readers, sampler = [], [], None
    stop, shutdown = threading.Event(), threading.Event()
    try:
        engine_url = "http://127.0.0.1:%d" % int(engine.wait_line("READY ").split()[1])
        wait_http(engine_url + "/__fake/stats", proc=engine)
        env = {**hf_hub.env(), "INFERENCE_ENGINE": "vllm", "INFERENCE_ENGINE_ENDPOINT": engine_url,
               "DOWNLOADER_NUM_THREADS": "8"}
        if build == "asan":
            env["ASAN_OPTIONS"] = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"), ASAN_QUARANTINE) if o)
        rt = runtime_factory("%s=hf://%s,prefetch=none" % (NAME, REPO_ID), cache_max_bytes=CACHE_MAX, env=env,
                             log_level="info")
        rt.wait_listed(NAME)
        before = scrape(rt.url)[1]

        # ---- the measured window ------------------------------------------------------------
        sampler = Sampler(rt)
        sampler.start()
        t_start = time.monotonic()
        wrks = [Wrk(rt.url + "/metrics", tmp_path / "wrk_metrics.txt", LOAD_SECONDS),
                Wrk(rt.url, tmp_path / "wrk_api.txt", LOAD_SECONDS, lua=lua)]
        readers = [Reader(i, rt.mount / NAME, manifest, stop, shutdown) for i in range(READERS)]
        for r in readers:
            r.start()
        alloc = []  # (seconds into the window, ASan bytes in use)
        if build == "asan":
            for at in (LOAD_SECONDS / 3, LOAD_SECONDS - 4):
                sleep_until(t_start + at)
                alloc.append((time.monotonic() - t_start, asan_bytes_in_use(rt.pid)))
        w_metrics, w_api = [w.finish(LOAD_SECONDS + 30) for w in wrks]
        window = time.monotonic() - t_start
        read_bytes = sum(r.bytes for r in readers)
        window_errors = [e for r in readers for e in r.errors]
        after = scrape(rt.url)[1]
        sampler.halt.set()
        sampler.join(10)
        hwm = rt.vm("VmHWM") / 1024

        # ---- SIGTERM under load -----------------------------------------------------------
        wrks = [Wrk(rt.url + "/metrics", tmp_path / "wrk_metrics_term.txt", 60),
                Wrk(rt.url, tmp_path / "wrk_api_term.txt", 60, lua=lua)]
        time.sleep(2.0)
        alive_at_term = sum(r.is_alive() for r in readers)
        shutdown.set()
        t_term = time.monotonic()
        rt.signal(signal.SIGTERM)
        rc = rt.wait_exit(EXIT_BUDGET_S + 10)  # None: still running (teardown kills it)
        exit_s = time.monotonic() - t_term
        mounted = is_mounted(rt.mount)
        for r in readers:
            r.join(max(0.1, t_term + exit_s + READER_END_S - time.monotonic()))
        hung = [r.name for r in readers if r.is_alive()]
        stop.set()
        t_metrics, t_api = [w.finish(15, interrupt=True) for w in wrks]
        wrks = []
    finally:
        stop.set()
        shutdown.set()
        if sampler is not None:
            sampler.halt.set()
        for w in wrks:
            w.kill()
        engine.stop()

    # ---- what happened ------------------------------------------------------------------------
    rss = [s[0] for s in sampler.samples]
    rss_first, rss_last = thirds(rss)
    fds_first, fds_last = thirds([s[2] for s in sampler.samples])
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in OWN}
    ups = [s for s in sampler.scrapes if s[0] == 200 and s[1] == 1 and s[2] is True]
    print("\n== load: %d s (measured %.1f s), %s build, %d readers, model %.0f MiB in %d files, cache bound "
          "%d MiB" % (LOAD_SECONDS, window, build, READERS, model_bytes / MiB, len(manifest), CACHE_MAX // MiB))
    print(wrk_line("wrk /metrics", w_metrics))
    print(wrk_line("wrk API %s" % " ".join(API_PATHS), w_api))
    print("readers: %.0f MiB verified (%.1f MiB/s), %d files, passes %s, slowest file %.2f s, errors %d, "
          "wrong bytes %d" % (read_bytes / MiB, read_bytes / MiB / window, sum(r.reads for r in readers),
                              [r.passes for r in readers], max(r.slowest for r in readers), len(window_errors),
                              sum(len(r.wrong) for r in readers)))
    print("runtime: %.0f MiB fetched from the origin, %d evictions, %d retries, %d remote failures, "
          "%d integrity failures" % (delta["aibrix_remote_bytes_total"] / MiB, delta["aibrix_cache_evictions_total"],
                                     delta["aibrix_remote_retries_total"], after.get("aibrix_remote_failures_total", -1),
                                     after.get("aibrix_integrity_failures_total", -1)))
    print("sampled /metrics: %d, %d of them 200 with the engine up and the standardised vLLM families"
          % (len(sampler.scrapes), len(ups)))
    print("RSS MiB: first %.1f, last %.1f, max %.1f, VmHWM %.1f; max of first third %.1f, of last third %.1f "
          "(growth %.1f)" % (rss[0], rss[-1], max(rss), hwm, max(rss_first), max(rss_last),
                             max(rss_last) - max(rss_first)))
    print("RSS series (MiB, 1/s): %s" % " ".join("%.0f" % v for v in rss))
    if alloc:
        print("ASan heap bytes in use: %s" % ", ".join("%s at %.0f s" % ("%.1f MiB" % (b / MiB) if b is not None
                                                                         else "n/a (gdb)", t) for t, b in alloc))
    print("threads first/last/max %d/%d/%d; descriptors max of first third %d, of last third %d"
          % (sampler.samples[0][1], sampler.samples[-1][1], max(s[1] for s in sampler.samples),
             max(fds_first), max(fds_last)))
    print("SIGTERM under load: exit status %s after %.2f s; mount %s; readers running at SIGTERM %d; ended: %s"
          % (rc, exit_s, "STILL MOUNTED" if mounted else "released", alive_at_term,
             ", ".join("%s %s" % (r.name, r.ended_by) for r in readers)))
    print(wrk_line("wrk /metrics across SIGTERM", t_metrics))
    print(wrk_line("wrk API across SIGTERM", t_api))

    # ---- the verdict ----------------------------------------------------------------------------
    for name, w in (("/metrics", w_metrics), ("API", w_api)):
        assert w["requests"] is not None, "no wrk summary for %s:\n%s" % (name, w["text"])
        assert w["errors"] == 0, "wrk on %s saw errors:\n%s" % (name, w["text"])
        assert w["requests"] >= MIN_RPS[name] * LOAD_SECONDS, "wrk on %s: too few requests:\n%s" % (name, w["text"])
    assert not window_errors, "reads failed under load: %s" % window_errors[:10]
    assert not any(r.wrong for r in readers), "wrong bytes: %s" % [(r.name, r.wrong) for r in readers if r.wrong]
    assert all(r.passes >= 1 for r in readers), "a reader did not get through the model: %s" % [
        r.passes for r in readers]
    assert after.get("aibrix_remote_failures_total") == 0 and after.get("aibrix_integrity_failures_total") == 0
    assert delta["aibrix_remote_bytes_total"] > model_bytes, "the readers were served from the cache only"
    assert all(s[0] == 200 for s in sampler.scrapes), "sampled /metrics failed: %s" % sampler.scrapes
    # the Python engine may miss the 1 s scrape timeout now and then on two busy cores
    assert len(ups) >= 0.8 * len(sampler.scrapes), "the engine was rarely seen: %s" % sampler.scrapes

    assert len(rss) >= LOAD_SECONDS // 2, "too few samples: %d" % len(rss)
    assert max(rss_last) - max(rss_first) <= RSS_GROWTH_MIB[build], "RSS grows under steady load: %s" % rss
    assert max(rss) <= RSS_CAP_MIB[build], "RSS %.0f MiB over the %d MiB cap" % (max(rss), RSS_CAP_MIB[build])
    if len(alloc) == 2 and None not in (alloc[0][1], alloc[1][1]):
        assert alloc[1][1] - alloc[0][1] <= ALLOC_GROWTH_MIB * MiB, "heap in use grows under steady load: %s" % alloc
    assert max(fds_last) <= max(fds_first) + FD_GROWTH, "descriptors leak: %s" % [s[2] for s in sampler.samples]

    assert alive_at_term == READERS, "readers had ended before SIGTERM"
    assert t_metrics["requests"] and t_api["requests"], "wrk was not running at SIGTERM"
    assert rc == 0, "exit status %s %.1f s after SIGTERM; log:\n%s" % (rc, exit_s, rt.log_tail())
    assert exit_s < EXIT_BUDGET_S, "SIGTERM took %.1f s; log:\n%s" % (exit_s, rt.log_tail())
    assert "shutdown took longer than" not in rt.log(), "the shutdown watchdog fired:\n%s" % rt.log_tail()
    # keep-alive clients must not keep the HTTP drain busy until its budget runs out
    assert "still in flight after the" not in rt.log(), "the HTTP drain ran out its budget:\n%s" % rt.log_tail()
    assert not mounted, "the mount is still there after the runtime exited"
    assert not hung, "readers still blocked %ss after the runtime exited: %s" % (READER_END_S, hung)
