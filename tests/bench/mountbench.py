"""mountbench.py - the mount suite of tests/bench/run: aibrix_runtime's FUSE mount against
aria2c, rclone mount and local disk, on the bench's model (2 GiB in 4 safetensors shards by
default, --mount-size and --mount-shards to change it).

Why it is shaped so: an engine reading /models/NAME pays for what the mount does on a read
miss, so the mount is measured the way an engine reads (front to back, or tensor by tensor
through mmap) against the tools it replaces, on the same nginx origin (hforigin.py, the same
per-connection limit_rate), the same bytes and the same session. Every contender starts cold
(fresh cache directory, `drop_caches`, the origin's files read back into memory) unless it is
the warm one; runs are interleaved round-robin; what a reader got is checked by sha256
afterwards (untimed: the reader itself hashes nothing, so it costs the same CPU everywhere).

Contenders (CONTENDERS below, as data):
  aria2c              downloads the shard(s) (-x16 -s16 -k8M), the baseline of the ratios
  mount ... seq       the runtime mounted, then `reader.py seq` (1 MiB read()s) of the shard
  mount ... tensors   the runtime mounted, then `reader.py tensors` (mmap, header order) or
                      `by-name` (mmap, sorted names, as safe_open().keys() iterates)
  mount warm          the runtime restarted on a complete cache dir, page cache dropped
  local disk          a copy of the shard on this machine's disk, page cache dropped
  rclone mount        `rclone mount :http:` on nginx's autoindex of the same files
  download-then-load  time to ready: aibrix_download of the model, then `reader.py tensors`
  mount-and-load      time to ready: runtime started with prefetch=all and the reader
                      started at once on the mount path (it waits for the file to appear)

Timed: the reader process only (the mount is already listed, except in mount-and-load, where
everything from starting the runtime counts). Peak RSS: VmHWM of the fetching process (the
runtime, rclone) read from /proc before it stops, /usr/bin/time for aria2c, aibrix_download
and the reader (an mmap reader's RSS includes the mapped file pages).
"""

import json
import os
import shutil
import statistics
import threading
import time

import benchlib
import contenders
import hforigin
from mounts import NAME, Rclone, Runtime, Server, host_user_s, proc_user_s
from benchlib import (MiB, busy_pct, drop_caches, first_line, host_cpu, log, machine,
                      make_cold, parse_time_v, ratio, run_group, sha256_file, shown_path,
                      wait_quiet)

HERE = os.path.dirname(os.path.abspath(__file__))
READER = os.path.join(HERE, "reader.py")
PY = "/usr/bin/python3"
BEGIN, END = "<!-- bench:mount:begin -->", "<!-- bench:mount:end -->"
GEN_BEGIN, GEN_END = "<!-- bench:mount:generated:begin -->", "<!-- bench:mount:generated:end -->"
TOOLS = {"nginx": "nginx", "/usr/bin/time": "time", "aria2c": "aria2", "rclone": "rclone",
         "fusermount3": "fuse3"}


# ---- one measured run ------------------------------------------------------------------------

class Ctx:
    """What every contender needs: the model and its origin, the binaries, scratch paths."""

    def __init__(self, model, origin, opts, work, runtime, aibrix):
        self.model, self.origin, self.opts, self.work = model, origin, opts, work
        self.conns, self.chunk = opts.conns, hforigin.parse_rate(opts.chunk)
        self.runtime, self.aibrix = runtime, aibrix
        self.shards = sorted(r for r in model.files if r.endswith(".safetensors"))
        self.shard_bytes = sum(model.files[r]["size"] for r in self.shards)
        self.mnt = os.path.join(work, "mnt")
        self.rmnt = os.path.join(work, "rclone-mnt")
        self.local = os.path.join(work, "local")
        self.warm_cache = os.path.join(work, "cache-warm")
        self.logs = os.path.join(work, "logs")
        self.drop = not opts.no_drop_caches
        self.dropped = False
        self.prepared = {}
        os.makedirs(self.logs, exist_ok=True)

    def timeout(self, nbytes=None):
        nbytes = self.shard_bytes if nbytes is None else nbytes
        return 60 + 20 * nbytes / hforigin.parse_rate(self.opts.rate)


def verify_files(ctx, root, rels):
    """sha256 and size of rels under root against the model. Returns problems."""
    problems = []
    for rel in rels:
        want, p = ctx.model.files[rel], os.path.join(root, rel)
        try:
            size = os.path.getsize(p)
            if size != want["size"]:
                problems.append("%s: %d bytes, want %d" % (rel, size, want["size"]))
                continue
            got = sha256_file(p)
        except OSError as e:
            problems.append("%s: %s" % (rel, e))
            continue
        if got != want["sha256"]:
            problems.append("%s: sha256 %s, want %s" % (rel, got, want["sha256"]))
    return problems


def timed(ctx, argv, timeout, env=None):
    """Run argv under /usr/bin/time -v; returns a dict: secs, rc, rss_kb, user, sys, stdout,
    problems."""
    timef = os.path.join(ctx.work, "time-v.txt")
    if os.path.exists(timef):
        os.unlink(timef)
    t0 = time.monotonic()
    rc, out, err = run_group(["/usr/bin/time", "-v", "-o", timef] + argv, timeout,
                             env=dict(os.environ, **(env or {})))
    r = dict(parse_time_v(timef), secs=time.monotonic() - t0, rc=rc,
             stdout=out.decode(errors="replace"))
    r["problems"] = [] if rc == 0 else ["%s exit status %s: %s" % (
        os.path.basename(argv[0]) if argv[0] != PY else "reader", rc,
        err.decode(errors="replace").strip()[-1500:])]
    return r


def reader(ctx, mode, root, wait=None, timeout=None):
    """reader.py over the shards under root, timed; checks it read every byte."""
    argv = [PY, READER] + (["--wait", str(wait)] if wait else []) + [mode] + [
        os.path.join(root, rel) for rel in ctx.shards]
    r = timed(ctx, argv, timeout or ctx.timeout())
    if not r["problems"]:
        try:
            out = json.loads(r["stdout"].strip().splitlines()[-1])
            r["reader"] = out
            if out["bytes"] != ctx.shard_bytes:
                r["problems"].append("reader got %d bytes, want %d" % (out["bytes"],
                                                                       ctx.shard_bytes))
            if mode != "seq" and out["tensors"] == 0:
                r["problems"].append("reader touched no tensor")
        except (ValueError, IndexError, KeyError):
            r["problems"].append("reader printed no result: %r" % r["stdout"][-200:])
    return r


def snap(ctx):
    """Where a measured part starts: (origin log mark, (host cpu, nginx cpu seconds, host
    user seconds, nginx user seconds))."""
    return ctx.origin.mark(), (host_cpu(), ctx.origin.cpu_seconds(), host_user_s(),
                               proc_user_s(ctx.origin._pids()))


def _result(ctx, rd, mark, h0, background, **extra):
    """Fold a reader's (or download's) numbers and the origin's into one run result."""
    h1 = host_cpu()
    r = {"secs": rd["secs"], "reader_rss_kb": rd.get("rss_kb", 0),
         "reader_cpu": rd.get("user", 0) + rd.get("sys", 0), "problems": list(rd["problems"]),
         "host_busy": busy_pct(h0[0], h1), "background": background, "cold": ctx.dropped,
         "fetcher_rss_kb": 0, "fetcher_cpu": 0.0,
         "origin_cpu": ctx.origin.cpu_seconds() - h0[1], "reader_user": rd.get("user", 0),
         "host_user": host_user_s() - h0[2],
         "origin_user": proc_user_s(ctx.origin._pids()) - h0[3], "fetcher_user": 0.0}
    r.update(ctx.origin.requests_since(mark))
    r.update(extra)
    return r


def _begin(ctx, cold=True):
    """Start a run: cold (page cache dropped, the origin's files read back in) and wait for a
    quiet host. Returns the host's busy % seen just before."""
    if cold:
        ctx.dropped = make_cold(ctx.origin, ctx.drop)
    background = wait_quiet(ctx.opts.quiet_wait)
    return background


def run_aria2c(ctx, c, i):
    outdir = os.path.join(ctx.work, "out", "aria2c")
    shutil.rmtree(outdir, ignore_errors=True)
    background = _begin(ctx)
    argv, _ = contenders._aria2_argv_with(lambda _ctx: 1)(ctx, outdir)
    mark, h0 = snap(ctx)
    rd = timed(ctx, argv, ctx.timeout())
    r = _result(ctx, rd, mark, h0, background)
    r["fetcher_rss_kb"], r["fetcher_cpu"] = r.pop("reader_rss_kb"), r.pop("reader_cpu")
    r["fetcher_user"] = r.pop("reader_user")
    r["reader_rss_kb"], r["reader_cpu"], r["reader_user"] = None, None, 0.0
    if not r["problems"]:
        r["problems"] = verify_files(ctx, outdir, ctx.shards)
    shutil.rmtree(outdir, ignore_errors=True)
    return r


def _mount_read(ctx, rt, mode, background, **extra):
    """Reader through a listed runtime mount; then its numbers, a check of what the mount
    served, and a stop. The runtime is stopped whatever happens."""
    try:
        (mark, h0), cpu0, user0 = snap(ctx), rt.cpu_s(), rt.user_s()
        rd = reader(ctx, mode, os.path.join(ctx.mnt, NAME))
        cpu1, user1 = rt.cpu_s(), rt.user_s()
        r = _result(ctx, rd, mark, h0, background, fetcher_rss_kb=rt.hwm_kb(),
                    fetcher_cpu=cpu1 - cpu0, fetcher_user=user1 - user0, **extra)
        if not r["problems"]:
            r["problems"] = verify_files(ctx, os.path.join(ctx.mnt, NAME), ctx.shards)
    finally:
        rc, stop_s = rt.stop()
    r["stop_secs"] = stop_s
    if rc != 0:
        r["problems"].append("aibrix_runtime exit status %s after SIGTERM" % rc)
    if r["problems"]:
        r["problems"].append("runtime log tail:\n" + rt.log_tail())
    return r


def run_mount_cold(ctx, c, i):
    cache = os.path.join(ctx.work, "cache-cold")
    shutil.rmtree(cache, ignore_errors=True)
    background = _begin(ctx)
    rt = Runtime(ctx, cache, c.prefetch, os.path.join(ctx.logs, "%s-%d.log" % (c.slug, i)))
    listed = rt.wait_ready(30)
    if listed is None:
        rt.stop()
        return {"problems": ["runtime not ready within 30s:\n" + rt.log_tail()]}
    background = wait_quiet(ctx.opts.quiet_wait)
    r = _mount_read(ctx, rt, c.mode, background, listed_secs=listed)
    shutil.rmtree(cache, ignore_errors=True)
    return r


def prepare_warm(ctx):
    """A complete, verified cache dir: the runtime with prefetch=all until /ready."""
    if "warm" in ctx.prepared:
        return ctx.prepared["warm"]
    shutil.rmtree(ctx.warm_cache, ignore_errors=True)
    rt = Runtime(ctx, ctx.warm_cache, "all", os.path.join(ctx.logs, "warm-prepare.log"))
    secs = rt.wait_ready(ctx.timeout(ctx.model.total_bytes), every=0.1)
    rc, _ = rt.stop()
    if secs is None or rc != 0:
        raise RuntimeError("could not fill the warm cache (ready=%s, exit %s):\n%s"
                           % (secs, rc, rt.log_tail()))
    log("bench: warm cache filled by prefetch=all in %.2fs" % secs)
    ctx.prepared["warm"] = secs
    return secs


def run_mount_warm(ctx, c, i):
    prepare_warm(ctx)
    rt = Runtime(ctx, ctx.warm_cache, "none", os.path.join(ctx.logs, "%s-%d.log" % (c.slug, i)))
    listed = rt.wait_ready(30)
    if listed is None:
        rt.stop()
        return {"problems": ["runtime not ready within 30s:\n" + rt.log_tail()]}
    ctx.dropped = drop_caches() if ctx.drop else False
    background = wait_quiet(ctx.opts.quiet_wait)
    r = _mount_read(ctx, rt, c.mode, background, listed_secs=listed)
    if not r["problems"] and r.get("bytes", 0) > 0:
        r["problems"].append("warm read fetched %d bytes from the origin" % r["bytes"])
    return r


def prepare_local(ctx):
    if "local" in ctx.prepared:
        return
    for rel in ctx.shards:
        dst = os.path.join(ctx.local, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(ctx.model.root, rel), dst)
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())
    ctx.prepared["local"] = True


def run_local(ctx, c, i):
    prepare_local(ctx)
    ctx.dropped = drop_caches() if ctx.drop else False
    background = wait_quiet(ctx.opts.quiet_wait)
    mark, h0 = snap(ctx)
    rd = reader(ctx, c.mode, ctx.local)
    r = _result(ctx, rd, mark, h0, background)
    r["fetcher_rss_kb"], r["fetcher_cpu"] = None, None
    if not r["problems"]:
        r["problems"] = verify_files(ctx, ctx.local, ctx.shards)
    return r


def run_rclone(ctx, c, i):
    cache = os.path.join(ctx.work, "rclone-cache")
    shutil.rmtree(cache, ignore_errors=True)
    background = _begin(ctx)
    rc_ = Rclone(ctx, cache, os.path.join(ctx.logs, "%s-%d.log" % (c.slug, i)))
    try:
        if not rc_.wait_path(ctx.shards[0], 30):
            return {"problems": ["rclone mount did not list %s within 30s:\n%s"
                                 % (ctx.shards[0], rc_.log_tail())]}
        background = wait_quiet(ctx.opts.quiet_wait)
        (mark, h0), cpu0, user0 = snap(ctx), rc_.cpu_s(), rc_.user_s()
        rd = reader(ctx, c.mode, ctx.rmnt)
        cpu1, user1 = rc_.cpu_s(), rc_.user_s()
        r = _result(ctx, rd, mark, h0, background, fetcher_rss_kb=rc_.hwm_kb(),
                    fetcher_cpu=cpu1 - cpu0, fetcher_user=user1 - user0)
        if not r["problems"]:
            r["problems"] = verify_files(ctx, ctx.rmnt, ctx.shards)
    finally:
        rc_.stop()
        shutil.rmtree(cache, ignore_errors=True)
    return r


def run_download_then_load(ctx, c, i):
    outdir = os.path.join(ctx.work, "out", "dtl")
    shutil.rmtree(outdir, ignore_errors=True)
    background = _begin(ctx)
    argv, env = contenders._aibrix_argv(ctx, outdir)
    mark, h0 = snap(ctx)
    t0 = time.monotonic()
    dl = timed(ctx, argv, ctx.timeout(ctx.model.total_bytes), env=env)
    root = outdir
    if not dl["problems"]:
        lines = dl["stdout"].strip().splitlines()
        root = lines[-1] if lines else outdir
        ld = reader(ctx, c.mode, root)
    else:
        ld = {"secs": 0, "problems": []}
    total = time.monotonic() - t0
    r = _result(ctx, dict(ld, secs=total, problems=dl["problems"] + ld["problems"]), mark, h0,
                background, fetcher_rss_kb=dl.get("rss_kb", 0),
                fetcher_cpu=dl.get("user", 0) + dl.get("sys", 0), fetcher_user=dl.get("user", 0),
                parts={"download": dl["secs"], "load": ld["secs"]})
    if not r["problems"]:
        r["problems"] = verify_files(ctx, root, sorted(ctx.model.files))
    shutil.rmtree(outdir, ignore_errors=True)
    return r


def run_mount_and_load(ctx, c, i):
    cache = os.path.join(ctx.work, "cache-cold")
    shutil.rmtree(cache, ignore_errors=True)
    background = _begin(ctx)
    mark, h0 = snap(ctx)
    t0 = time.monotonic()
    rt = Runtime(ctx, cache, c.prefetch, os.path.join(ctx.logs, "%s-%d.log" % (c.slug, i)))
    ready = {}

    def watch():  # when /ready said 200 (all fetched and verified), for the record
        ready["secs"] = rt.wait_ready(ctx.timeout(ctx.model.total_bytes), every=0.05)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        rd = reader(ctx, c.mode, os.path.join(ctx.mnt, NAME), wait=60)
        total = time.monotonic() - t0
        w.join(ctx.timeout(ctx.model.total_bytes))
        r = _result(ctx, dict(rd, secs=total), mark, h0, background,
                    fetcher_rss_kb=rt.hwm_kb(), fetcher_cpu=rt.cpu_s(), fetcher_user=rt.user_s(),
                    parts={"mount+load": total, "/ready": ready.get("secs") or float("nan"),
                           "load": rd["secs"]})
        if not r["problems"]:
            r["problems"] = verify_files(ctx, os.path.join(ctx.mnt, NAME), ctx.shards)
    finally:
        rc, _ = rt.stop()
    if rc != 0:
        r["problems"].append("aibrix_runtime exit status %s after SIGTERM" % rc)
    if r["problems"]:
        r["problems"].append("runtime log tail:\n" + rt.log_tail())
    shutil.rmtree(cache, ignore_errors=True)
    return r


# ---- the contenders, as data -----------------------------------------------------------------

class Contender:
    """name: the row; group: "read" (MiB/s of the shard) or "ready" (time to ready); run:
    (ctx, contender, run index) -> result; vs: the row a second ratio divides by; goal:
    (description, the ratio that must be reached, "vs"|"aria2c"|"rclone"|"time")."""

    def __init__(self, name, group, run, describe, prefetch=None, mode="seq", vs=None,
                 baseline=False, one_stream=False):
        self.name, self.group, self.run, self.describe = name, group, run, describe
        self.prefetch, self.mode, self.vs, self.baseline = prefetch, mode, vs, baseline
        self.one_stream = one_stream
        self.slug = name.replace(" ", "-").replace(",", "").replace("=", "")


READER_SEQ = "`reader.py seq SHARD` (1 MiB read()s into one buffer, like `dd bs=1M`)"
READER_TENSORS = ("`reader.py tensors SHARD` (header read(), then mmap and copy every tensor "
                  "in header order, 1 MiB at a time)")
READER_BYNAME = ("`reader.py by-name SHARD` (the same in sorted tensor-name order, as "
                 "safe_open().keys() iterates)")
RUNTIME_CMD = ("`aibrix_runtime --host 127.0.0.1 --port P --mount-point MNT --cache-dir "
               "EMPTY_DIR --model bench=hf://ORG/NAME,prefetch={prefetch}` with "
               "HF_ENDPOINT at the origin, DOWNLOADER_NUM_THREADS={conns}, "
               "DOWNLOADER_PART_CHUNKSIZE={chunk_mib} MiB; timed from the first read, once "
               "/ready answered (listed)")

CONTENDERS = [
    Contender("aria2c", "read", run_aria2c, baseline=True,
              describe="`aria2c -x16 -s16 -k{chunk_mib}M -j1 --file-allocation=none -i LIST` "
                       "with the shard's resolve URL(s): the download bench's aria2c, on the "
                       "shard only"),
    Contender("mount seq, prefetch=none", "read", run_mount_cold, prefetch="none",
              describe=RUNTIME_CMD.replace("{prefetch}", "none") + "; " + READER_SEQ),
    Contender("mount seq, prefetch=open", "read", run_mount_cold, prefetch="open",
              describe="the same with prefetch=open; " + READER_SEQ),
    Contender("mount tensors, prefetch=none", "read", run_mount_cold, prefetch="none",
              mode="tensors", vs="mount seq, prefetch=none",
              describe="prefetch=none; " + READER_TENSORS),
    Contender("mount tensors, prefetch=open", "read", run_mount_cold, prefetch="open",
              mode="tensors", vs="mount seq, prefetch=open",
              describe="prefetch=open; " + READER_TENSORS),
    Contender("mount by-name, prefetch=none", "read", run_mount_cold, prefetch="none",
              mode="by-name", vs="mount seq, prefetch=none",
              describe="prefetch=none; " + READER_BYNAME),
    Contender("mount by-name, prefetch=open", "read", run_mount_cold, prefetch="open",
              mode="by-name", vs="mount seq, prefetch=open",
              describe="prefetch=open; " + READER_BYNAME),
    Contender("mount warm", "read", run_mount_warm, vs="local disk",
              describe="the runtime restarted (prefetch=none) on a cache dir that an earlier "
                       "prefetch=all run filled and verified, then `sync; echo 3 > "
                       "/proc/sys/vm/drop_caches`; " + READER_SEQ),
    Contender("local disk", "read", run_local,
              describe="a copy of the shard in the bench's work dir on this machine's disk, "
                       "after `sync; echo 3 > /proc/sys/vm/drop_caches`; " + READER_SEQ),
    Contender("rclone mount", "read", run_rclone, one_stream=True,
              describe="`rclone mount :http: MNT --http-url http://ORIGIN/raw/ "
                       "--vfs-cache-mode full --cache-dir EMPTY_DIR --read-only` (nginx "
                       "`autoindex on` for /raw/, the same files and limit_rate; rclone's "
                       "defaults otherwise); " + READER_SEQ),
    Contender("download-then-load", "ready", run_download_then_load, mode="tensors",
              baseline=True,
              describe="`aibrix_download --model-uri hf://ORG/NAME --local-dir DIR` (every "
                       "file, {conns} connections, {chunk_mib} MiB chunks), then "
                       "`reader.py tensors` on the downloaded shard(s); wall time of both"),
    Contender("mount-and-load", "ready", run_mount_and_load, prefetch="all", mode="tensors",
              vs="download-then-load",
              describe="start `aibrix_runtime ... prefetch=all` on an empty cache dir and at "
                       "once `reader.py --wait 60 tensors MNT/bench/SHARD` (it polls until "
                       "the file appears); wall time from starting the runtime to the end "
                       "of the reader"),
]

GOALS = [
    # (text, row, divided by, how, at least/at most)
    ("mount cold sequential >= 0.9x aria2c", "mount seq, prefetch=none", "aria2c", ">=", 0.9),
    ("mount cold sequential >= 0.9x aria2c", "mount seq, prefetch=open", "aria2c", ">=", 0.9),
    ("mount >= 3x rclone mount", "mount seq, prefetch=none", "rclone mount", ">=", 3.0),
    ("mount >= 3x rclone mount", "mount seq, prefetch=open", "rclone mount", ">=", 3.0),
    ("tensor-order mmap >= 0.8x sequential", "mount tensors, prefetch=none",
     "mount seq, prefetch=none", ">=", 0.8),
    ("tensor-order mmap >= 0.8x sequential", "mount tensors, prefetch=open",
     "mount seq, prefetch=open", ">=", 0.8),
    ("(extra) name-order mmap >= 0.8x sequential", "mount by-name, prefetch=none",
     "mount seq, prefetch=none", ">=", 0.8),
    ("(extra) name-order mmap >= 0.8x sequential", "mount by-name, prefetch=open",
     "mount seq, prefetch=open", ">=", 0.8),
    ("warm >= 0.7x local disk", "mount warm", "local disk", ">=", 0.7),
    ("mount-and-load time to ready <= 0.6x download-then-load", "mount-and-load",
     "download-then-load", "<=", 0.6),
]


def select(names):
    if not names:
        return list(CONTENDERS)
    wanted = [n.strip() for n in names.split(";") if n.strip()]
    unknown = [n for n in wanted if n not in {c.name for c in CONTENDERS}]
    if unknown:
        raise SystemExit("bench: unknown mount contender(s): %s (known: %s)" % (
            ", ".join(unknown), "; ".join(c.name for c in CONTENDERS)))
    return [c for c in CONTENDERS if c.name in wanted]


# ---- measuring and reporting -----------------------------------------------------------------

def fmt_mb(kb):
    return "%.1f" % (kb / 1024) if kb else "-"


def others_cpu(r):
    """User-space CPU seconds the rest of the machine (other tenants) used during the
    measured part: the host's user time minus the fetcher's, the reader's and nginx's."""
    return r.get("host_user", 0) - r.get("origin_user", 0) - (r.get("fetcher_user") or 0) - (
        r.get("reader_user") or 0)


def disturbed(r):
    """Other processes ran for more than a quarter of a core (plus 0.1 s) during the run:
    this host is shared, and such a run is not a measurement of the contender alone."""
    return not r["problems"] and others_cpu(r) > 0.1 + 0.25 * r["secs"]


def measure(ctx, chosen):
    """ctx.opts.runs rounds, each contender once per round, the order rotating. A run that
    other tenants disturbed (see disturbed()) is run again, up to --mount-retries times;
    its numbers are kept aside and not used for the medians."""
    results, broken = {c.name: [] for c in chosen}, False
    ctx.discarded = {c.name: [] for c in chosen}
    for i, c in benchlib.rounds(chosen, ctx.opts.runs, ctx.opts.single_runs):
        for attempt in range(ctx.opts.mount_retries + 1):
            try:
                r = c.run(ctx, c, i + 1)
            except Exception as e:  # a broken contender must not stop the others
                Server.stop_all()
                r = {"problems": ["%s: %s" % (type(e).__name__, e)]}
            r.setdefault("secs", float("nan"))
            if attempt < ctx.opts.mount_retries and disturbed(r):
                ctx.discarded[c.name].append(r)
                log("run %d %-30s %7.2fs  disturbed: other processes used %.2f CPU-s "
                    "(host %.0f%%); running it again" % (i + 1, c.name, r["secs"],
                                                        others_cpu(r), r["host_busy"]))
                continue
            break
        results[c.name].append(r)
        nbytes = ctx.shard_bytes
        extra = ""
        if "parts" in r:
            extra = " (" + ", ".join("%s %.2fs" % kv for kv in r["parts"].items()) + ")"
        log("run %d %-30s %7.2fs %7.1f MiB/s fetcher rss %s MiB cpu %s reader rss %s MiB "
            "host %3.0f%% (bg %3.0f%%, others %.2fs) req %s conns %s inflight %s%s%s" % (
                i + 1, c.name, r["secs"], nbytes / MiB / r["secs"] if r["secs"] else 0,
                fmt_mb(r.get("fetcher_rss_kb")),
                "%.2fs" % r["fetcher_cpu"] if r.get("fetcher_cpu") is not None else "-",
                fmt_mb(r.get("reader_rss_kb")), r.get("host_busy", 0),
                r.get("background", 0), others_cpu(r), r.get("requests", "-"), r.get("connections", "-"),
                r.get("peak_inflight", "-"), extra, "  INVALID" if r["problems"] else ""))
        for p in r["problems"][:10]:
            log("    " + p.replace("\n", "\n    "))
        broken |= bool(r["problems"])
    return results, broken


def summarize(ctx, chosen, results):
    rows = {}
    for c in chosen:
        ok = [r for r in results[c.name] if not r["problems"]]
        row = {"c": c, "runs": len(ok), "failed": not ok,
               "all_secs": [r["secs"] for r in results[c.name]]}
        if ok:
            med = lambda key: statistics.median(r[key] for r in ok)  # noqa: E731
            row.update(secs=med("secs"), mibs=ctx.shard_bytes / MiB / med("secs"),
                       fetcher_rss=max((r.get("fetcher_rss_kb") or 0) for r in ok) / 1024,
                       reader_rss=max((r.get("reader_rss_kb") or 0) for r in ok) / 1024,
                       fetcher_cpu=statistics.median((r.get("fetcher_cpu") or 0) for r in ok),
                       reader_cpu=statistics.median((r.get("reader_cpu") or 0) for r in ok),
                       host=med("host_busy"), requests=max(r["requests"] for r in ok),
                       conns=max(r["connections"] for r in ok),
                       inflight=max(r["peak_inflight"] for r in ok),
                       served=statistics.median(r["bytes"] for r in ok))
            if any("parts" in r for r in ok):
                keys = list(ok[0]["parts"])
                row["parts"] = {k: statistics.median(r["parts"][k] for r in ok) for k in keys}
            row["has_fetcher"] = any(r.get("fetcher_rss_kb") is not None for r in ok)
            row["has_reader"] = any(r.get("reader_rss_kb") is not None for r in ok)
        rows[c.name] = row
    return rows


def tables(ctx, chosen, rows):
    base = next((c.name for c in chosen if c.group == "read" and c.baseline), None)
    out = ["| contender | runs | median s | MiB/s | x aria2c | second ratio | fetcher peak RSS "
           "MiB | reader peak RSS MiB | fetcher CPU s | reader CPU s | host busy % | requests "
           "/ connections / peak in flight |", "|" + "---|" * 12]
    for c in chosen:
        r = rows[c.name]
        if c.group != "read":
            continue
        if r["failed"]:
            out.append("| %s | 0 | failed | | | | | | | | | |" % c.name)
            continue
        x = ratio(rows, c.name, base) if base else None
        second = ""
        if c.vs:
            v = ratio(rows, c.name, c.vs)
            second = "%.2fx %s" % (v, c.vs) if v is not None else ""
        out.append("| %s | %d | %.2f | %.1f | %s | %s | %s | %s | %s | %s | %.0f | %d / %d / %d |"
                   % (c.name, r["runs"], r["secs"], r["mibs"],
                      "%.2fx" % x if x is not None else "n/a", second,
                      "%.1f" % r["fetcher_rss"] if r["has_fetcher"] else "-",
                      "%.1f" % r["reader_rss"] if r["has_reader"] else "-",
                      "%.2f" % r["fetcher_cpu"] if r["has_fetcher"] else "-",
                      "%.2f" % r["reader_cpu"] if r["has_reader"] else "-",
                      r["host"], r["requests"], r["conns"], r["inflight"]))
    ready = [c for c in chosen if c.group == "ready"]
    if ready:
        out += ["", "| time to ready | runs | median s | parts (median s) | x download-then-load "
                "(time) | fetcher peak RSS MiB | reader peak RSS MiB | fetcher CPU s | "
                "requests / connections / peak in flight |", "|" + "---|" * 9]
        for c in ready:
            r = rows[c.name]
            if r["failed"]:
                out.append("| %s | 0 | failed | | | | | | |" % c.name)
                continue
            x = ratio(rows, c.name, "download-then-load", time_ratio=True)
            out.append("| %s | %d | %.2f | %s | %s | %.1f | %.1f | %.2f | %d / %d / %d |" % (
                c.name, r["runs"], r["secs"],
                ", ".join("%s %.2f" % kv for kv in r.get("parts", {}).items()),
                "%.2fx" % x if x is not None else "n/a", r["fetcher_rss"], r["reader_rss"],
                r["fetcher_cpu"], r["requests"], r["conns"], r["inflight"]))
    return "\n".join(out)


def runtime_peak_mib(rows):
    """The runtime's largest VmHWM over the mount rows (None: no such row succeeded)."""
    return max((r["fetcher_rss"] for r in rows.values()
                if not r["failed"] and r["c"].run in (run_mount_cold, run_mount_and_load,
                                                      run_mount_warm)), default=None)


def goals(rows):
    out = ["| goal | row | measured | verdict |", "|---|---|---|---|"]
    out += benchlib.goal_lines(GOALS, rows)
    peak = runtime_peak_mib(rows)
    if peak is not None:
        out.append("| runtime peak RSS < 64 MiB | every mount row | %.1f MiB (max VmHWM) | %s |"
                   % (peak, "met" if peak < 64 else "**missed**"))
    return "\n".join(out)


def report_md(ctx, chosen, rows, results, command, started):
    m = ctx.model
    rate = hforigin.parse_rate(ctx.opts.rate)
    dv = {"conns": ctx.conns, "chunk_mib": ctx.chunk // MiB}
    shard_sizes = ", ".join("%s %.1f MiB" % (r, m.files[r]["size"] / MiB) for r in ctx.shards)
    lines = [
        GEN_BEGIN,
        "<!-- generated by tests/bench/run (mount suite); edits between the generated "
        "markers are overwritten -->",
        "",
        "## Mount: aibrix_runtime against aria2c, rclone mount and local disk",
        "",
        "Run it with `tests/bench/run --suites mount` (about 15 minutes for 2 GiB: rclone "
        "needs ~90 s a run) or `tests/bench/run --quick` (every suite, 64 MiB, one run each, "
        "under two minutes; no doc write). `--mount-contenders 'A;B'` picks rows, "
        "`--runtime` and `--aibrix` pick binaries. The harness: `tests/bench/mountbench.py` "
        "(contenders as data), `tests/bench/reader.py` (the loads), `tests/bench/mounts.py` "
        "(the daemons), `tests/bench/hforigin.py` (the origin).",
        "",
        "- **Date:** %s" % started,
        "- **Command:** `%s`" % command,
        "- **Machine:** %s" % machine(ctx.work),
        "- **Tools:** %s (`%s`); %s (`%s`); %s; %s; %s; %s" % (
            first_line([ctx.runtime, "--version"]), shown_path(ctx.runtime),
            first_line([ctx.aibrix, "--version"]), shown_path(ctx.aibrix),
            first_line(["aria2c", "--version"]), first_line(["rclone", "version"]),
            first_line(["nginx", "-v"]).replace("nginx version: ", ""),
            first_line(["fusermount3", "--version"])),
        "- **Model:** `modelgen.py --size %s --seed %d --shards %d`: %d files, %d bytes; "
        "read: %s" % (ctx.opts.mount_size, m.seed, ctx.opts.mount_shards, len(m.files),
                      m.total_bytes, shard_sizes),
        "- **Origin:** the download bench's nginx (hforigin.py) on loopback, `limit_rate %s` "
        "per connection: %d connections x %.0f MiB/s = %.0f MiB/s ceiling; the same files "
        "also under `/raw/` with `autoindex on` for rclone" % (
            ctx.opts.rate, ctx.conns, rate / MiB, ctx.conns * rate / MiB),
        "- **Method:** %d run(s) per contender (rclone mount: %d, it reads over one "
        "connection whatever it is told, minutes a run), interleaved round-robin (the order "
        "rotates each round). Cold rows: empty cache dir, `sync` and %s, the origin's "
        "files read back into memory. Timed: the reader process (interpreter start included), once the mount "
        "is listed; time-to-ready rows time everything from the start. After each run the "
        "sha256 of what the reader was served is checked through the same path (a wrong "
        "byte fails the run). Fetcher = the process that fetches (aria2c, aibrix_runtime, "
        "rclone, aibrix_download); its peak RSS is VmHWM from /proc (the runtime, rclone) "
        "or `/usr/bin/time -v`; the mmap readers' RSS includes the mapped file. Requests and "
        "connections from nginx's log. Runs wait up to %ds for the shared host to be under "
        "15%% busy, and a run during which other processes took more than a quarter of a core "
        "is run again, up to %d time(s) (listed below)" % (
            ctx.opts.runs, min(ctx.opts.runs, ctx.opts.single_runs), "`drop_caches=3`" if any(
                r.get("cold") for v in results.values() for r in v)
            else "no drop_caches (not permitted)", ctx.opts.quiet_wait,
            ctx.opts.mount_retries),
        "- **Warm cache:** filled once per session by `prefetch=all` (untimed; /ready after "
        "%s)" % ("%.2f s" % ctx.prepared["warm"] if "warm" in ctx.prepared else "n/a"),
        "",
        tables(ctx, chosen, rows),
        "",
        "MiB/s = shard bytes / median seconds. x aria2c divides by aria2c's MiB/s; the "
        "second ratio divides by the named row's (warm: by local disk; tensor orders: by "
        "the sequential read with the same prefetch). CPU: user+sys during the timed part "
        "(the runtime's from /proc/PID/stat; 2.00 = both cores for a second).",
        "",
        "Goals (issues 3 and 7):",
        "",
        goals(rows),
        "",
        "Per-run seconds (in run order): " + "; ".join(
            "%s %s" % (n, " ".join("%.2f" % x for x in r["all_secs"]))
            for n, r in rows.items()),
        "",
        "Runs discarded because other processes on this shared host used more than a quarter "
        "of a core during them (run again, up to %d times; seconds, other processes' CPU-s): "
        % ctx.opts.mount_retries + ("; ".join(
            "%s %s" % (n, " ".join("%.2f (%.1f)" % (r["secs"], others_cpu(r)) for r in v))
            for n, v in getattr(ctx, "discarded", {}).items() if v) or "none"),
        "",
        "Contenders:",
        "",
    ]
    lines += ["- **%s**: %s" % (c.name, c.describe.format(**dv)) for c in chosen]
    lines += ["", GEN_END]
    return "\n".join(lines)


def write_doc(path, generated):
    """Only between our markers: the generated part is replaced, notes written by hand
    after it (inside the mount markers) are kept."""
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and GEN_BEGIN in text.split(BEGIN, 1)[1].split(END, 1)[0]:
        benchlib.write_doc(path, generated, GEN_BEGIN, GEN_END)
    else:
        benchlib.write_doc(path, "%s\n%s\n%s" % (BEGIN, generated, END), BEGIN, END)


def prepare_lists(ctx):
    """aria2c's input list: the shard(s) only (contenders.py reads WORK/aria2c.list)."""
    with open(os.path.join(ctx.work, "aria2c.list"), "w") as f:
        for rel in ctx.shards:
            f.write("%s\n  out=%s\n" % (ctx.origin.file_url(rel), rel))


def main(opts, work, runtime, aibrix, command, started):
    """Run the mount suite; returns (markdown section or None, table text, broken, rows)."""
    chosen = select(opts.mount_contenders)
    size = hforigin.parse_rate(opts.mount_size)
    model = hforigin.prepare_model(opts.cache_dir, size, opts.seed, opts.mount_shards, log)
    work = os.path.join(work, "mount")
    os.makedirs(work, exist_ok=True)
    try:
        with hforigin.Origin(model, opts.rate, os.path.join(work, "nginx")) as origin:
            ctx = Ctx(model, origin, opts, work, runtime, aibrix)
            if model.total_bytes < (2 << 30):
                log("bench: note: the model is %.0f MiB (the goals are stated for a "
                    ">= 2 GiB model)" % (model.total_bytes / MiB))
            prepare_lists(ctx)
            log("bench: mount suite: %s, %d files, shard(s) %s (%.1f MiB); origin %s, "
                "limit_rate %s; %d run(s)" % (model.repo, len(model.files),
                                             ", ".join(ctx.shards), ctx.shard_bytes / MiB,
                                             origin.base_url, opts.rate, opts.runs))
            results, broken = measure(ctx, chosen)
            rows = summarize(ctx, chosen, results)
            section = report_md(ctx, chosen, rows, results, command, started)
            text = tables(ctx, chosen, rows) + "\n\n" + goals(rows)
    finally:
        Server.stop_all()
    return section, text, broken, rows
