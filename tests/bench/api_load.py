#!/usr/bin/python3
"""api_load.py - the control API under load while 8 readers stream through the mount (issue 5).

    tests/bench/api_load.py [--rounds 5] [--size 1G] [--shards 8] [--rate 24m] [--conns 16]
                            [--chunk 8M] [--threads 2] [--connections 32] [--idle 10]
                            [--no-control] [--quick] [--no-write] [--keep] [--cache-dir DIR]

What it measures, and why so: the API and FUSE share one process (and, here, the machine), so
a busy API must neither fail nor slow the mount down. The model (tests/fakes/modelgen.py,
default 1 GiB in 8 safetensors shards, cached under --cache-dir) is served by the mount
bench's nginx origin (tests/bench/hforigin.py: loopback, `limit_rate` per connection, the
Hub API answers as static JSON), and aibrix_runtime mounts it:

    aibrix_runtime --host 127.0.0.1 --port P --mount-point M --cache-dir EMPTY \\
                   --model bench=hf://ORG/NAME,prefetch=none     (HF_ENDPOINT = the origin)

Every run is cold: the runtime is stopped (and the mount unmounted), its cache dir emptied,
`sync; echo 3 > /proc/sys/vm/drop_caches`, the runtime started again and waited for (/ready
and the shards listed). Then 8 readers (`dd if=M/bench/SHARD of=/dev/null bs=1M`, one per
shard) start together; throughput = shard bytes / wall time from their start to the last
one's end. Each round does three such runs, the order rotating so drift hits all alike:
  baseline - the readers alone;
  loaded   - two wrk (Debian) processes, `-t2 -c32 --latency --timeout 10s` each, one on
             GET /healthz and one on GET /v1/model/mounts, started 1 s before the readers and
             stopped (SIGINT, wrk then prints its summary) when the last reader ends;
  control  - the same wrk loads on a separate nginx answering both paths with static bodies
             (the runtime's own): what any HTTP server run flat out by wrk costs the readers on
             this machine, as opposed to what the runtime's API costs them (--no-control: skip).
Plus once, before the rounds: "idle" - the same two wrk loads for --idle seconds on a listed,
idle mount, as the reference latency. Reported: per run and median of the rounds, reader
MiB/s, the drop loaded vs baseline in %, wrk requests/s, p50/p99, errors (non-2xx/3xx
responses + socket errors + connect/read/write/timeout), CPU used by the runtime and by wrk.
The bytes served by the mount are checked against the model's sha256 after the last run.

Goals (issue 5): no errors, p99 < 10 ms, throughput drop < 10%. Benchmarks are not tests:
nothing here fails on a timing. The results replace the section between
<!-- bench:api:begin --> and <!-- bench:api:end --> in docs/benchmarks.md (appended when
missing); nothing else in the file is touched. --quick: 256 MiB, 1 round, 3 s idle, nothing
written (well under a minute).
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
import hforigin  # noqa: E402  (only used, never changed here)
from benchlib import drop_caches  # noqa: E402
from hforigin import proc_cpu_s  # noqa: E402
from wrkparse import parse as parse_wrk  # noqa: E402  (tests/fakes)

BUILD = os.environ.get("AIBRIX_BUILD_DIR", os.path.join(REPO, "build"))
RUNTIME = os.path.join(BUILD, "control", "aibrix_runtime")
DOC = os.path.join(REPO, "docs", "benchmarks.md")
BEGIN, END = "<!-- bench:api:begin -->", "<!-- bench:api:end -->"
MiB = 1 << 20
ENDPOINTS = ("/healthz", "/v1/model/mounts")


def log(msg):
    print("api_load: %s" % msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_mounted(path):
    path = os.path.realpath(os.path.dirname(path)) + "/" + os.path.basename(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def unmount(path):
    for argv in (["fusermount3", "-u", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return
        subprocess.run(argv, capture_output=True, timeout=15, check=False)


def bounded(fn, timeout):
    """fn() in a daemon thread; its value, or None after timeout (a hung mount)."""
    box = {}
    t = threading.Thread(target=lambda: box.update(v=fn()), daemon=True)
    t.start()
    t.join(timeout)
    return box.get("v")


def host_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class Runtime:
    def __init__(self, ctx):
        self.ctx = ctx
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        shutil.rmtree(ctx.cache, ignore_errors=True)
        os.makedirs(ctx.cache)
        os.makedirs(ctx.mnt, exist_ok=True)
        argv = [RUNTIME, "--host", "127.0.0.1", "--port", str(self.port), "--mount-point",
                ctx.mnt, "--cache-dir", ctx.cache, "--log-level", "warn",
                "--model", "bench=hf://%s,prefetch=none" % ctx.model.repo]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "HF_", "HUGGING_FACE", "TOS_", "DOWNLOADER_",
                                    "AIBRIX_", "INFERENCE_ENGINE", "METRIC"))}
        env.update(HF_ENDPOINT=ctx.origin.base_url, HF_TOKEN="",
                   DOWNLOADER_NUM_THREADS=str(ctx.opts.conns),
                   DOWNLOADER_PART_CHUNKSIZE=str(hforigin.parse_rate(ctx.opts.chunk)),
                   AWS_EC2_METADATA_DISABLED="true")
        self.logf = open(os.path.join(ctx.work, "runtime.log"), "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.argv = argv

    def wait_ready(self, shards, timeout=60):
        deadline = time.monotonic() + timeout
        ok = False
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                ok = False
            if ok:
                break
            time.sleep(0.05)
        while ok and time.monotonic() < deadline:
            names = bounded(lambda: os.listdir(os.path.join(self.ctx.mnt, "bench")), 10)
            if names is not None and all(os.path.basename(s) in names for s in shards):
                return
            time.sleep(0.05)
        raise RuntimeError("the runtime is not ready/listed in %ds; log: %s/runtime.log"
                           % (timeout, self.ctx.work))

    def stop(self):
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = "killed"
        else:
            rc = self.proc.returncode
        self.logf.close()
        unmount(self.ctx.mnt)
        return rc


# ---- the control server: the same wrk load on someone else -------------------------------------

CONTROL_CONF = """\
# generated by tests/bench/api_load.py: the same two routes as static answers, as a control
worker_processes auto;
daemon off;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    keepalive_requests 1000000;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location = /healthz {{ return 200 '{{"status":"ok"}}'; }}
        location = /v1/model/mounts {{ return 200 '{mounts}'; }}
        location / {{ return 404; }}
    }}
}}
"""


class Control:
    """nginx answering /healthz and /v1/model/mounts with static bodies (the runtime's own
    answers, fetched once): wrk on it while the readers run separates "the API load costs the
    mount" from "any HTTP server at full load on this machine costs the mount"."""

    def __init__(self, work, mounts_body):
        self.work = work
        os.makedirs(work, exist_ok=True)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONTROL_CONF.format(work=work, port=self.port,
                                        mounts=mounts_body.replace("'", "\\'")))
        self.proc = subprocess.Popen(["nginx", "-p", work, "-c", conf, "-e",
                                      os.path.join(work, "error.log")])
        for _ in range(200):
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("the control nginx did not start; see %s/error.log" % work)

    def pids(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                return [self.proc.pid] + [int(p) for p in f.read().split()]
        except OSError:
            return [self.proc.pid]

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- wrk -------------------------------------------------------------------------------------

def start_wrk(ctx, url, name):
    out = open(os.path.join(ctx.work, name + ".wrk"), "w")
    p = subprocess.Popen(["wrk", "-t%d" % ctx.opts.threads, "-c%d" % ctx.opts.connections,
                          "-d3600s", "--timeout", "10s", "--latency", url],
                         stdout=out, stderr=subprocess.STDOUT)
    p.outf, p.path = out, out.name
    return p


def stop_wrk(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    p.outf.close()
    with open(p.path) as f:
        return parse_wrk(f.read())


# ---- one measured run ------------------------------------------------------------------------

def read_all(ctx):
    """8 dd's at once, one per shard; (MiB/s, seconds, per-reader seconds)."""
    procs, ends = [], {}
    t0 = time.monotonic()
    for s in ctx.shards:
        procs.append(subprocess.Popen(["dd", "if=" + os.path.join(ctx.mnt, "bench", s),
                                       "of=/dev/null", "bs=1M"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    pending = set(range(len(procs)))
    deadline = t0 + ctx.read_timeout
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                ends[i] = time.monotonic() - t0
                pending.discard(i)
        if time.monotonic() > deadline:
            for i in pending:
                procs[i].kill()
            raise RuntimeError("readers did not finish within %ds" % ctx.read_timeout)
        time.sleep(0.002)
    for i, p in enumerate(procs):
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        if p.returncode != 0:
            raise RuntimeError("dd %s failed (%d): %s" % (ctx.shards[i], p.returncode, err))
        copied = -1
        for line in err.splitlines():
            if "bytes" in line and "copied" in line:
                copied = int(line.split()[0])
        if copied != ctx.shard_bytes[i]:
            raise RuntimeError("dd %s read %d bytes, expected %d"
                               % (ctx.shards[i], copied, ctx.shard_bytes[i]))
    wall = max(ends.values())
    return sum(ctx.shard_bytes) / MiB / wall, wall, [ends[i] for i in range(len(procs))]


def cold_runtime(ctx):
    drop_caches()
    rt = Runtime(ctx)
    rt.wait_ready(ctx.shards)
    drop_caches()  # the listing must not leave shard pages behind; nothing else is cached
    return rt


def run_one(ctx, kind, label):
    """kind: "baseline" (readers alone), "loaded" (wrk on the runtime), "control" (wrk on the
    control nginx)."""
    rt = cold_runtime(ctx)
    loaded = kind == "loaded"
    res = {"label": label, "loaded": loaded, "kind": kind}
    try:
        wrks = []
        cpu_rt0 = proc_cpu_s(rt.pid)
        if kind != "baseline":
            base = rt.url if loaded else ctx.control.url
            wrks = [start_wrk(ctx, base + ep, "%s-%s" % (label, ep.strip("/").replace("/", "_")))
                    for ep in ENDPOINTS]
            time.sleep(1.0)
        cpu_rt1, busy0 = proc_cpu_s(rt.pid), host_busy()
        wcpu0 = [proc_cpu_s(w.pid) for w in wrks]
        ng0 = sum(proc_cpu_s(p) for p in ctx.control.pids())
        res["mibs"], res["seconds"], res["per_reader"] = read_all(ctx)
        cpu_rt2, busy1 = proc_cpu_s(rt.pid), host_busy()
        res["ctl_cpu"] = (sum(proc_cpu_s(p) for p in ctx.control.pids()) - ng0) / res["seconds"]
        wcpu = sum(proc_cpu_s(w.pid) - c for w, c in zip(wrks, wcpu0))
        res["wrk"] = [stop_wrk(w) for w in wrks]
        res["rt_cpu"] = (cpu_rt2 - cpu_rt1) / res["seconds"]  # CPUs busy in the runtime
        res["wrk_cpu"] = wcpu / res["seconds"]
        res["host_busy"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        res["rt_cpu_warmup"] = cpu_rt1 - cpu_rt0
        if ctx.verify_next:
            res["verified"] = verify(ctx)
    finally:
        res["rc"] = rt.stop()
    log("%s: %.1f MiB/s (%.2f s)%s" % (
        label, res["mibs"], res["seconds"],
        "".join("; %s p50 %.2f ms p99 %.2f ms %.0f req/s errors %d" % (
            ep, w["p50"], w["p99"], w["rps"], w["errors"])
            for ep, w in zip(ENDPOINTS, res["wrk"]))))
    return res


def run_idle(ctx):
    rt = cold_runtime(ctx)
    try:
        with urllib.request.urlopen(rt.url + "/v1/model/mounts", timeout=5) as r:
            mounts_body = r.read().decode()
        wrks = [start_wrk(ctx, rt.url + ep, "idle-%s" % ep.strip("/").replace("/", "_"))
                for ep in ENDPOINTS]
        c0, w0 = proc_cpu_s(rt.pid), [proc_cpu_s(w.pid) for w in wrks]
        time.sleep(ctx.opts.idle)
        c1 = proc_cpu_s(rt.pid)
        wcpu = sum(proc_cpu_s(w.pid) - c for w, c in zip(wrks, w0))
        res = {"wrk": [stop_wrk(w) for w in wrks], "rt_cpu": (c1 - c0) / ctx.opts.idle,
               "wrk_cpu": wcpu / ctx.opts.idle}
    finally:
        res_rc = rt.stop()
    res["rc"] = res_rc
    res["mounts_body"] = mounts_body
    log("idle: " + "; ".join("%s p50 %.2f ms p99 %.2f ms %.0f req/s errors %d" % (
        ep, w["p50"], w["p99"], w["rps"], w["errors"]) for ep, w in zip(ENDPOINTS, res["wrk"])))
    return res


def verify(ctx):
    """sha256 of every shard as the mount serves it (now cached) against the model's."""
    bad = []
    for s, want in zip(ctx.shards, ctx.shard_sha):
        h = hashlib.sha256()
        with open(os.path.join(ctx.mnt, "bench", s), "rb") as f:
            for block in iter(lambda: f.read(MiB), b""):
                h.update(block)
        if h.hexdigest() != want:
            bad.append(s)
    return "all %d shards match" % len(ctx.shards) if not bad else "MISMATCH: " + ", ".join(bad)


# ---- report ----------------------------------------------------------------------------------

def f2(v):
    return "-" if v is None else "%.2f" % v


def section(ctx, idle, runs):
    opts = ctx.opts
    base = [r for r in runs if r["kind"] == "baseline"]
    load = [r for r in runs if r["kind"] == "loaded"]
    ctrl = [r for r in runs if r["kind"] == "control"]
    mb, ml = statistics.median(r["mibs"] for r in base), statistics.median(r["mibs"] for r in load)
    drop = (mb - ml) / mb * 100
    p99 = {ep: statistics.median(r["wrk"][i]["p99"] for r in load) for i, ep in enumerate(ENDPOINTS)}
    p50 = {ep: statistics.median(r["wrk"][i]["p50"] for r in load) for i, ep in enumerate(ENDPOINTS)}
    rps = {ep: statistics.median(r["wrk"][i]["rps"] for r in load) for i, ep in enumerate(ENDPOINTS)}
    errs = sum(w["errors"] for r in load for w in r["wrk"]) + sum(w["errors"] for w in idle["wrk"])
    worst99 = max(p99.values())
    rate = hforigin.parse_rate(opts.rate)
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
    mem = int(open("/proc/meminfo").read().split("MemTotal:")[1].split()[0]) / 1048576
    ver = subprocess.run([RUNTIME, "--version"], capture_output=True, text=True).stdout.strip()
    wrkv = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    rcs = sorted({str(r["rc"]) for r in runs + [idle]})
    L = [BEGIN,
         "<!-- generated by tests/bench/api_load.py; edits between these markers are overwritten -->",
         "",
         "## Control API under load while 8 readers stream through the mount",
         "",
         "- **Date:** %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "- **Command:** `tests/bench/api_load.py --rounds %d --size %s --shards %d --rate %s`"
         % (opts.rounds, opts.size, opts.shards, opts.rate),
         "- **Machine:** %d CPUs (%s), %.1f GiB RAM, kernel %s; nginx, the runtime, the readers "
         "and wrk all share it (loopback)" % (os.cpu_count(), cpu, mem, os.uname().release),
         "- **Tools:** %s; %s; nginx (tests/bench/hforigin.py); GNU dd" % (wrkv, ver),
         "- **Model:** `%s`, %d safetensors shards, %.0f MiB in the shards (tests/fakes/modelgen.py)"
         % (ctx.model.repo, len(ctx.shards), sum(ctx.shard_bytes) / MiB),
         "- **Origin:** nginx on loopback, `limit_rate %s` per connection (%.0f MiB/s); runtime "
         "with DOWNLOADER_NUM_THREADS=%d, DOWNLOADER_PART_CHUNKSIZE=%s; "
         "`aibrix_runtime --host 127.0.0.1 --port P --mount-point M --cache-dir EMPTY --model "
         "bench=hf://ORG/NAME,prefetch=none` (HF_ENDPOINT at nginx)"
         % (opts.rate, rate / MiB, opts.conns, opts.chunk),
         "- **Readers:** %d at once, `dd if=M/bench/SHARD of=/dev/null bs=1M`, one per shard; every "
         "run cold (runtime restarted on an empty cache dir, `sync; echo 3 > "
         "/proc/sys/vm/drop_caches`); MiB/s = shard bytes / wall time of the slowest reader"
         % len(ctx.shards),
         "- **API load:** two wrk processes at once, `wrk -t%d -c%d --timeout 10s --latency`, one "
         "on GET /healthz, one on GET /v1/model/mounts (%d connections in all, keep-alive, "
         "closed loop: each connection sends its next request as soon as the answer arrives); "
         "started 1 s before the readers, stopped when the last reader ends. Errors = non-2xx/3xx "
         "responses + socket errors (connect, read, write, timeout)"
         % (opts.threads, opts.connections, 2 * opts.connections),
         "- **Rounds:** %d, each a baseline run (readers alone), a loaded run (readers + wrk on "
         "the runtime)%s, the order rotating; medians below. Reference: wrk alone on a listed "
         "idle mount for %d s" % (opts.rounds, " and a control run (readers + wrk on a static "
                                  "nginx, see below)" if ctrl else "", opts.idle),
         "",
         "| run | readers MiB/s | read s | /healthz req/s | p50 ms | p99 ms | /v1/model/mounts "
         "req/s | p50 ms | p99 ms | errors | runtime CPUs | wrk CPUs | control nginx CPUs |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    h, m = idle["wrk"]
    L.append("| idle mount, wrk on the runtime only (%d s) | - | - | %.0f | %s | %s | %.0f | %s | %s "
             "| %d | %.2f | %.2f | - |"
             % (opts.idle, h["rps"], f2(h["p50"]), f2(h["p99"]), m["rps"], f2(m["p50"]),
                f2(m["p99"]), h["errors"] + m["errors"], idle["rt_cpu"], idle["wrk_cpu"]))
    for r in runs:
        name = {"baseline": "%s: readers alone", "loaded": "%s: readers + wrk on the runtime",
                "control": "%s: readers + wrk on the control nginx"}[r["kind"]] % r["label"]
        if r["wrk"]:
            h, m = r["wrk"]
            L.append("| %s | %.1f | %.2f | %.0f | %s | %s | %.0f | %s | %s | %d | %.2f | %.2f | %s |"
                     % (name, r["mibs"], r["seconds"], h["rps"], f2(h["p50"]), f2(h["p99"]),
                        m["rps"], f2(m["p50"]), f2(m["p99"]), h["errors"] + m["errors"],
                        r["rt_cpu"], r["wrk_cpu"],
                        "%.2f" % r["ctl_cpu"] if r["kind"] == "control" else "-"))
        else:
            L.append("| %s | %.1f | %.2f | - | - | - | - | - | - | - | %.2f | - | - |"
                     % (name, r["mibs"], r["seconds"], r["rt_cpu"]))
    L.append("| **baseline, median** | **%.1f** | | | | | | | | | | | |" % mb)
    if ctrl:
        mc = statistics.median(r["mibs"] for r in ctrl)
        cw = [[r["wrk"][i] for r in ctrl] for i in range(2)]
        L.append("| **control, median** (drop %.1f%%) | **%.1f** | | %.0f | %s | %s | %.0f | %s | %s "
                 "| %d | | | |" % ((mb - mc) / mb * 100, mc,
                                   statistics.median(w["rps"] for w in cw[0]),
                                   f2(statistics.median(w["p50"] for w in cw[0])),
                                   f2(statistics.median(w["p99"] for w in cw[0])),
                                   statistics.median(w["rps"] for w in cw[1]),
                                   f2(statistics.median(w["p50"] for w in cw[1])),
                                   f2(statistics.median(w["p99"] for w in cw[1])),
                                   sum(w["errors"] for c in cw for w in c)))
    L.append("| **loaded, median** (drop %.1f%%) | **%.1f** | | **%.0f** | **%s** | **%s** | **%.0f** | **%s** | "
             "**%s** | **%d** | | | |" % (drop, ml, rps[ENDPOINTS[0]], f2(p50[ENDPOINTS[0]]),
                                        f2(p99[ENDPOINTS[0]]), rps[ENDPOINTS[1]],
                                        f2(p50[ENDPOINTS[1]]), f2(p99[ENDPOINTS[1]]), errs))
    L += ["",
          "\"runtime CPUs\", \"wrk CPUs\", \"control nginx CPUs\": CPU seconds used per wall second "
          "while the readers ran (idle row: while wrk ran); this machine has %d. The control runs "
          "put the same two wrk loads on a separate nginx (`worker_processes auto`, static answers "
          "with the runtime's own bodies) instead of the runtime: the share of the drop that any "
          "HTTP server driven flat out by wrk on this machine would cause." % os.cpu_count(),
          "",
          "| goal (issue 5) | measured | verdict |",
          "|---|---|---|",
          "| no errors | %d errors over %d requests | %s |"
          % (errs, sum(w["requests"] for r in load for w in r["wrk"]) +
             sum(w["requests"] for w in idle["wrk"]), "met" if errs == 0 else "**missed**"),
          "| p99 < 10 ms on loopback (while the readers run) | %s ms /healthz, %s ms "
          "/v1/model/mounts (medians); idle mount: %s / %s ms"
          " | %s |" % (f2(p99[ENDPOINTS[0]]), f2(p99[ENDPOINTS[1]]), f2(idle["wrk"][0]["p99"]),
                       f2(idle["wrk"][1]["p99"]), "met" if worst99 < 10 else "**missed**"),
          "| mount throughput drop < 10%% under API load | %.1f%% (%.1f -> %.1f MiB/s, medians) "
          "| %s |" % (drop, mb, ml, "met" if drop < 10 else "**missed**"),
          "",
          "Bytes served by the mount after the last run: %s. Runtime exit status on SIGTERM: %s."
          % (runs[-1].get("verified", "not checked"), ", ".join(rcs)),
          "",
          END]
    return "\n".join(L), {"drop": drop, "p99": p99, "errors": errs, "mb": mb, "ml": ml}


def write_doc(path, text):
    cur = open(path).read() if os.path.exists(path) else ""
    if BEGIN in cur and END in cur:
        head, rest = cur.split(BEGIN, 1)
        cur = head + text + rest.split(END, 1)[1]
    else:
        cur = cur.rstrip("\n") + "\n\n" + text + "\n"
    tmp = path + ".api-tmp"
    with open(tmp, "w") as f:
        f.write(cur)
    os.replace(tmp, path)


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", default="1G", help="model size (1G; 256M with --quick)")
    ap.add_argument("--shards", type=int, default=8, help="safetensors shards = readers (8)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", default="24m", help="nginx limit_rate per connection (24m)")
    ap.add_argument("--conns", type=int, default=16, help="DOWNLOADER_NUM_THREADS (16)")
    ap.add_argument("--chunk", default="8M", help="DOWNLOADER_PART_CHUNKSIZE (8M)")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t per endpoint (2)")
    ap.add_argument("--connections", type=int, default=32, help="wrk -c per endpoint (32)")
    ap.add_argument("--idle", type=int, default=10, help="seconds of wrk on the idle mount (10)")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="skip the control runs (wrk on a static nginx while the readers run)")
    ap.add_argument("--cache-dir", default="/var/tmp/aibrix-bench", help="model cache")
    ap.add_argument("--quick", action="store_true", help="256 MiB, 1 round, 3 s idle, no write")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (wrk outputs, logs)")
    opts = ap.parse_args()
    if opts.quick:
        opts.size, opts.rounds, opts.idle, opts.no_write = "256M", 1, 3, True
    for tool in ("wrk", "nginx", "dd", "fusermount3"):
        if not shutil.which(tool):
            sys.exit("api_load: %s is missing (apt-get install wrk nginx fuse3)" % tool)
    if not os.access(RUNTIME, os.X_OK):
        sys.exit("api_load: %s not built (ninja -C %s)" % (RUNTIME, BUILD))

    ctx = Ctx()
    ctx.opts = opts
    ctx.model = hforigin.prepare_model(opts.cache_dir, hforigin.parse_rate(opts.size), opts.seed,
                                       shards=opts.shards, log=log)
    ctx.shards = sorted(r for r in ctx.model.files if r.endswith(".safetensors"))
    ctx.shard_bytes = [ctx.model.files[s]["size"] for s in ctx.shards]
    ctx.shard_sha = [ctx.model.files[s]["sha256"] for s in ctx.shards]
    ctx.verify_next = False
    rate = hforigin.parse_rate(opts.rate)
    ctx.read_timeout = 120 + 20 * sum(ctx.shard_bytes) / rate / max(1, opts.conns)
    ctx.work = tempfile.mkdtemp(prefix="aibrix-api-bench.")
    ctx.mnt, ctx.cache = os.path.join(ctx.work, "mnt"), os.path.join(ctx.work, "cache")
    if not drop_caches():
        log("warning: cannot drop the page cache (not root?); runs are not cold")
    log("model %s: %d shards, %.0f MiB; work dir %s" % (ctx.model.repo, len(ctx.shards),
                                                     sum(ctx.shard_bytes) / MiB, ctx.work))
    try:
        with hforigin.Origin(ctx.model, opts.rate, os.path.join(ctx.work, "nginx")) as origin:
            ctx.origin = origin
            idle = run_idle(ctx)
            ctx.control = Control(os.path.join(ctx.work, "control"), idle["mounts_body"])
            runs = []
            try:
                kinds = ["baseline", "loaded", "control"]
                for rnd in range(1, opts.rounds + 1):
                    order = kinds[rnd - 1:] + kinds[:rnd - 1]
                    order = [k for k in order if k != "control" or opts.control]
                    for i, kind in enumerate(order):
                        ctx.verify_next = rnd == opts.rounds and i == len(order) - 1
                        runs.append(run_one(ctx, kind, "%s %d" % (kind, rnd)))
            finally:
                ctx.control.close()
            bad = origin.requests_since(0)["bad_status"]
            if bad:
                log("origin answered non-2xx: %s" % bad)
        text, summary = section(ctx, idle, runs)
        print(text)
        log("throughput drop %.1f%% (%.1f -> %.1f MiB/s); p99 %s; errors %d" % (
            summary["drop"], summary["mb"], summary["ml"],
            ", ".join("%s %.2f ms" % kv for kv in summary["p99"].items()), summary["errors"]))
        if not opts.no_write:
            write_doc(DOC, text)
            log("wrote the section in %s" % DOC)
    finally:
        unmount(ctx.mnt)
        if opts.keep:
            log("kept %s" % ctx.work)
        else:
            shutil.rmtree(ctx.work, ignore_errors=True)


if __name__ == "__main__":
    main()
