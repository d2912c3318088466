"""aibrix_runtime as a test subject: start it, wait for it, always unmount after it.

Why: every FUSE story starts a real `aibrix_runtime --mount-point ...` and must leave no
mount behind, even when the test fails, the runtime crashes or a read hangs. This module
owns that lifecycle; the tests only say which models to mount and what to check.

Load it as a pytest plugin from a test module (`pytest_plugins = ["runtime"]`): it provides
the fixture `runtime_factory` and a per-test watchdog. Plain helpers (sha256, clean_env,
is_mounted, bounded, ...) are importable too.

  rt = runtime_factory("tiny=hf://acme/tiny-llm,prefetch=none", env=hub.env(),
                       cache_dir=None, mount_point=None, cache_max_bytes=None,
                       extra_args=(), log_level=None, wait="ready", timeout=60, binary=None)
  rt.mount                  Path of the mount point; rt.mount / "tiny" / "config.json"
  rt.url, rt.port           http://127.0.0.1:PORT
  rt.get("/ready")          (status, parsed JSON or text)
  rt.wait_ready(timeout)    poll /ready until 200 (AssertionError with the log tail if not)
  rt.wait_listed(name)      wait until <mount>/<name> exists (start-up lists mounts on a thread)
  rt.stop(timeout=15)       SIGTERM, wait, then SIGKILL; returns (returncode, seconds)
  rt.kill9()                SIGKILL; leaves the (now stale) mount in place on purpose
  rt.close()                stop + unmount; never raises (the fixture calls it at teardown)
  rt.log_tail(n), rt.log()  what the runtime wrote to stderr/stdout
  rt.vm("VmHWM")            a /proc/PID/status value in KiB

Teardown, whatever happened: every runtime started by the test is stopped, then every
mount point it used is unmounted (`fusermount3 -u`, then `umount -l`). Teardown then fails
(an ERROR in pytest's report) when a runtime still running at teardown did not exit 0 on
SIGTERM, or when any runtime's log holds a sanitizer report: every story doubles as an
ASan/UBSan check of the code it runs (`make test-integration` uses the ASan build).
AIBRIX_RUNTIME_WRAPPER="valgrind ..." runs every runtime under that command (`make
test-valgrind`, on the normal build); a memcheck error summary or definite leak in a log
then fails teardown the same way, and the wrapper's --error-exitcode shows in the exit status.
A watchdog kills the test's runtimes after `@runtime_timeout(SECONDS)` (default 240 s): a
read blocked in the kernel then fails with ENOTCONN instead of hanging CI forever, and
start() probes the fresh mount with a bounded listdir, so a daemon that mounted but does not
serve fails in 15 s. Nothing here touches a path on the mount without a bound.
"""

import errno
import hashlib
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
RUNTIME = BUILD / "control" / "aibrix_runtime"
DEFAULT_TIMEOUT = 240  # seconds a test may run before the watchdog kills its runtimes
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
CHUNK = 256 * 1024  # DOWNLOADER_PART_CHUNKSIZE the tests run with (unless they say otherwise)
# A command line to run the runtime under (`make test-valgrind` puts valgrind memcheck here),
# prefixed to the runtime's argv. Valgrind runs the program inside its own process, so the
# pid we signal is still the runtime's. Memcheck runs code some 20-50x slower: waits on the
# runtime go through scaled().
WRAPPER = shlex.split(os.environ.get("AIBRIX_RUNTIME_WRAPPER", ""))
SLOWDOWN = 4 if WRAPPER else 1
MEMCHECK_REPORT = re.compile(r"==\d+==\s+(ERROR SUMMARY: [1-9]|definitely lost: [1-9])")


# --------------------------------------------------------------------------
# small helpers

def read_all(path, drop_cache=False):
    """sha256 of a file read front to back with read(2); drop_cache first evicts the file's
    pages from the kernel page cache so the read really goes to the runtime."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            h.update(b)
    finally:
        os.close(fd)
    return h.hexdigest()


def wait_until(pred, timeout, what, interval=0.05):
    """pred()'s first true value, polled every interval; AssertionError after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clean_env(extra=None):
    """The process environment without any origin or downloader configuration, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "HF_", "HUGGING_FACE", "TOS_", "DOWNLOADER_", "AIBRIX_",
                                "INFERENCE_ENGINE", "METRIC"))}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "DOWNLOADER_BACKOFF_BASE": "0.02",
                "DOWNLOADER_PART_CHUNKSIZE": "256K", "HOME": env.get("HOME", "/root")})
    env.update(extra or {})
    return env


def get_free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unescape_mountinfo(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mount_table():
    """[(mount id, mount point, fstype)] from /proc/self/mountinfo. Works for dead FUSE
    mounts too, where os.path.ismount() says False because lstat fails with ENOTCONN."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5:
                out.append((int(fields[0]), _unescape_mountinfo(fields[4]), right.split()[0] if right else ""))
    return out


def _canonical(path):
    """realpath of the parent + the last name: never lstat()s path itself, which blocks
    forever on a FUSE mount whose daemon is alive but no longer answers."""
    path = os.path.abspath(str(path))
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def mount_ids(path):
    """Ids of the mounts stacked on path (oldest first)."""
    path = _canonical(path)
    return [mid for mid, mp, _ in mount_table() if mp == path]


def is_mounted(path):
    return bool(mount_ids(path))


def unmount(path):
    """Unmount everything stacked on path: `fusermount3 -u`, then `umount -l`, a few rounds.
    Returns a note of what it did (for logs); never raises."""
    path = str(path)
    notes = []
    for _ in range(4):
        for argv in (["fusermount3", "-u", path], ["umount", "-l", path]):
            if not is_mounted(path):
                break
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=15)
                notes.append("%s -> %d %s" % (" ".join(argv[:-1]), r.returncode, r.stderr.strip()))
            except (OSError, subprocess.TimeoutExpired) as e:
                notes.append("%s -> %s" % (" ".join(argv[:-1]), e))
    if is_mounted(path):
        notes.append("STILL MOUNTED")
    return "; ".join(notes)


def bounded(fn, *args, timeout=60, what=None, **kw):
    """Run fn(*args, **kw) in a daemon thread; its result, or its exception re-raised, or
    AssertionError after `timeout` seconds (the thread may stay blocked in the kernel until
    the runtime is killed at teardown, which unblocks it with ENOTCONN)."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # noqa: B902 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name="bounded:%s" % (what or getattr(fn, "__name__", "?")))
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError("%s did not finish within %ss (hung on the mount?)"
                             % (what or getattr(fn, "__name__", "call"), timeout))
    if "error" in box:
        raise box["error"]
    return box.get("value")


def tree_sizes(root):
    """{relpath: size} of every regular file under root (stat only, no reads)."""
    root = str(root)
    out = {}
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for fn in fns:
            p = os.path.join(dp, fn)
            out[os.path.relpath(p, root)] = os.stat(p).st_size
    return dict(sorted(out.items()))


def tree_sha256(root):
    root = str(root)
    return {rel: sha256(os.path.join(root, rel)) for rel in tree_sizes(root)}


def disk_usage(path):
    """Bytes allocated under path (like `du -s --block-size=1`: st_blocks, sparse-aware)."""
    total = 0
    for dp, dns, fns in os.walk(str(path)):
        for n in dns + fns:
            try:
                total += os.lstat(os.path.join(dp, n)).st_blocks * 512
            except FileNotFoundError:
                pass  # evicted while we walked
    return total


def wrapped(argv):
    """argv behind AIBRIX_RUNTIME_WRAPPER (unchanged when it is not set)."""
    return WRAPPER + [str(a) for a in argv]


def scaled(seconds):
    """A wait on the runtime, stretched when it runs under the (slow) wrapper."""
    return seconds * SLOWDOWN


def log_report(text):
    """The first sanitizer or memcheck report marker in a runtime log, or None."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    m = MEMCHECK_REPORT.search(text)
    return m.group(1) if m else None


def is_asan_binary(path):
    """True when the binary was built with AddressSanitizer (RSS bounds do not apply)."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# --------------------------------------------------------------------------
# the runtime process

class Runtime:
    _seq = 0

    def __init__(self, workdir, models=(), env=None, cache_dir=None, mount_point=None,
                 cache_max_bytes=None, extra_args=(), log_level=None, binary=None):
        Runtime._seq += 1
        self.n = Runtime._seq
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary or RUNTIME)
        self.mount = Path(mount_point) if mount_point else self.workdir / ("mnt%d" % self.n)
        self.cache_dir = Path(cache_dir) if cache_dir else self.workdir / ("cache%d" % self.n)
        try:
            self.mount.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            # a mount left stale by a killed runtime: cleaning it up is the runtime's job
            if e.errno != errno.ENOTCONN:
                raise
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.port = get_free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = self.workdir / ("runtime%d.log" % self.n)
        self.models = list(models)
        self.env = clean_env(env)
        level = log_level or os.environ.get("AIBRIX_TEST_LOG_LEVEL", "debug")
        self.argv = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port),
                     "--mount-point", str(self.mount), "--cache-dir", str(self.cache_dir),
                     "--log-level", level]
        if cache_max_bytes is not None:
            self.argv += ["--cache-max-bytes", str(cache_max_bytes)]
        for m in self.models:
            self.argv += ["--model", m]
        self.argv += [str(a) for a in extra_args]
        self.proc = None
        self._log = None
        self.killed_by_watchdog = False

    # ---- lifecycle --------------------------------------------------------
    def start(self, wait="ready", timeout=60):
        """Start the process. wait: "ready" (GET /ready = 200), "mount" (/healthz answers and
        the mount point is a mount), "healthz", or None."""
        if not self.binary.exists():
            pytest.fail("%s is not built (ninja -C %s)" % (self.binary, BUILD))
        self._log = open(self.log_path, "ab")
        self._log.write(("# %s\n" % " ".join(wrapped(self.argv))).encode())
        self._log.flush()
        self.proc = subprocess.Popen(wrapped(self.argv), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, env=self.env, start_new_session=True)
        if wait:
            self.wait_healthz(timeout)
        if wait in ("mount", "ready"):
            self.wait_mounted(timeout)
            self.probe(15)
        if wait == "ready":
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _died(self, what):
        return AssertionError("aibrix_runtime exited with %s while %s; log:\n%s"
                              % (self.proc.poll(), what, self.log_tail()))

    def get(self, path, timeout=5):
        """-> (status, JSON body or text); (None, error) when nothing answers in time."""
        try:
            return bounded(self._get, path, timeout, timeout=timeout + 2, what="GET " + path)
        except AssertionError as e:
            return None, str(e)

    def _get(self, path, timeout):
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            return None, str(e)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def wait_healthz(self, timeout=30):
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            status, body = self.get("/healthz", timeout=2)
            if status == 200:
                return body
            if not self.alive():
                raise self._died("waiting for /healthz")
            if time.monotonic() > deadline:
                raise AssertionError("/healthz did not answer 200 within %ss (last: %s %r); log:\n%s"
                                     % (timeout, status, body, self.log_tail()))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _live_mount(self):
        """A mount sits on the mount point and answers statfs (a stale mount left by a killed
        runtime answers ENOTCONN). Mount ids alone cannot tell: the kernel reuses the id and
        device number of a detached mount for the next one."""
        if not mount_ids(self.mount):
            return False
        try:
            bounded(os.statvfs, str(self.mount), timeout=2, what="statfs of the mount")
            return True
        except (OSError, AssertionError):
            return False

    def wait_mounted(self, timeout=30):
        """Wait until a live mount sits on the mount point."""
        deadline = time.monotonic() + timeout
        while not self._live_mount():
            if not self.alive():
                raise self._died("waiting for the mount at %s" % self.mount)
            if time.monotonic() > deadline:
                raise AssertionError("%s is not a mount %ss after start; log:\n%s"
                                     % (self.mount, timeout, self.log_tail()))
            time.sleep(0.02)

    def probe(self, timeout=15):
        """The mount answers (a bounded listdir of its root): a daemon that mounted and then
        stopped serving fails here instead of hanging the test."""
        try:
            return bounded(os.listdir, self.mount, timeout=timeout, what="listdir of the fresh mount")
        except AssertionError as e:
            raise AssertionError("%s; log:\n%s" % (e, self.log_tail()))

    def wait_listed(self, name, timeout=60):
        """Wait until the named mount shows at the root. Start-up lists the --model mounts on
        a thread of their own, so right after the mount appears the root may still be empty
        (use this when /ready cannot be waited for, e.g. with prefetch=all)."""
        deadline = time.monotonic() + timeout
        while name not in self.probe(15):
            if not self.alive():
                raise self._died("waiting for %s to be listed" % name)
            if time.monotonic() > deadline:
                raise AssertionError("%s/%s did not appear within %ss; log:\n%s"
                                     % (self.mount, name, timeout, self.log_tail()))
            time.sleep(0.05)

    def wait_ready(self, timeout=60):
        """Poll /ready until 200; returns the bodies of the 503 answers seen before."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            status, body = self.get("/ready", timeout=2)
            if status == 200:
                return seen
            if status is not None:
                seen.append((status, body))
            if not self.alive():
                raise self._died("waiting for /ready")
            if time.monotonic() > deadline:
                raise AssertionError("/ready not 200 within %ss (last: %s %r); log:\n%s"
                                     % (timeout, status, body, self.log_tail()))
            time.sleep(0.05)

    def signal(self, sig):
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15):
        """SIGTERM; wait up to `timeout` s (scaled() under the wrapper); then SIGKILL.
        -> (returncode, seconds to exit after SIGTERM). The returncode of a SIGKILLed process is -9."""
        if self.proc is None:
            return None, 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait_exit(scaled(timeout)) is None:
                self.signal(signal.SIGKILL)
                self.wait_exit(10)
        return self.proc.poll(), time.monotonic() - t0

    def kill9(self):
        """SIGKILL now; the mount is left behind (stale) on purpose."""
        self.signal(signal.SIGKILL)
        self.wait_exit(10)

    def close(self, unmount_too=True):
        """Stop (if running) and unmount; never raises. Returns a note for the test log."""
        notes = []
        try:
            if self.alive():
                rc, secs = self.stop()
                notes.append("stopped rc=%s in %.1fs" % (rc, secs))
            elif self.proc is not None:
                notes.append("had exited rc=%s" % self.proc.poll())
        except Exception as e:  # noqa: BLE001 - teardown must go on
            notes.append("stop failed: %r" % e)
        if unmount_too:
            notes.append(unmount(self.mount) or "not mounted")
        if self._log:
            try:
                self._log.close()
            except OSError:
                pass
        return "; ".join(n for n in notes if n)

    # ---- introspection ----------------------------------------------------
    def log(self):
        try:
            if self._log and not self._log.closed:
                self._log.flush()
            return self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=6000):
        return self.log()[-n:]

    def vm(self, field):
        """A /proc/PID/status field in KiB (VmRSS, VmHWM, ...)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def model_dir(self, name):
        return self.mount / name


# --------------------------------------------------------------------------
# pytest plugin: the fixture and the watchdog

def runtime_timeout(seconds):
    """Decorator: kill this test's aibrix_runtime processes after `seconds` (default
    DEFAULT_TIMEOUT). A function attribute, not a pytest mark: marks used in a module are
    evaluated before a plugin loaded by that module could register them."""
    def mark(fn):
        fn.runtime_timeout = seconds
        return fn
    return mark


@pytest.fixture
def runtime_factory(request, tmp_path):
    """callable(*models, env=None, cache_dir=None, mount_point=None, cache_max_bytes=None,
    extra_args=(), log_level=None, wait="ready", timeout=60, binary=None) -> Runtime.
    Every runtime it starts is stopped and unmounted at teardown, whatever happened."""
    started = []
    lock = threading.Lock()
    limit = getattr(getattr(request, "function", None), "runtime_timeout", DEFAULT_TIMEOUT)

    def watchdog():
        with lock:
            victims = list(started)
        for rt in victims:
            if rt.alive():
                rt.killed_by_watchdog = True
                rt.signal(signal.SIGKILL)

    timer = threading.Timer(limit, watchdog)
    timer.daemon = True
    timer.start()

    def make(*models, env=None, cache_dir=None, mount_point=None, cache_max_bytes=None, extra_args=(),
             log_level=None, wait="ready", timeout=60, binary=None):
        rt = Runtime(tmp_path / "rt", models, env=env, cache_dir=cache_dir, mount_point=mount_point,
                     cache_max_bytes=cache_max_bytes, extra_args=extra_args, log_level=log_level, binary=binary)
        with lock:
            started.append(rt)
        rt.start(wait=wait, timeout=timeout)
        return rt

    try:
        yield make
    finally:
        timer.cancel()
        problems = []
        for rt in started:  # first every process stops (SIGTERM, then SIGKILL) ...
            was_running = rt.alive()
            note = rt.close(unmount_too=False)
            rc = rt.proc.poll() if rt.proc else None
            if was_running and rc != 0:
                problems.append("runtime %d exited %s after SIGTERM at teardown (want 0)" % (rt.n, rc))
            marker = log_report(rt.log())
            if marker:
                problems.append("runtime %d log has a sanitizer or memcheck report (%r)" % (rt.n, marker))
            print("runtime %d (pid %s, %s): %s%s" % (rt.n, rt.proc.pid if rt.proc else "-", rt.mount, note,
                                                   " [killed by the %ss watchdog]" % limit
                                                   if rt.killed_by_watchdog else ""))
            print("---- log tail of runtime %d ----\n%s" % (rt.n, rt.log_tail(3000)))
        for mp in dict.fromkeys(rt.mount for rt in started):  # ... then every mount point is cleaned
            note = unmount(mp)
            if note:
                print("unmount %s: %s" % (mp, note))
        left = [str(rt.mount) for rt in started if is_mounted(rt.mount)]
        assert not left, "mounts left behind: %s" % left
        assert not problems, "\n".join(problems) + "\n(log tails in the captured teardown output)"


def errno_of(fn, *args, **kw):
    """Call fn; return the errno of the OSError it raises, or None when it succeeds."""
    try:
        r = fn(*args, **kw)
        if isinstance(r, int) and fn is os.open:
            os.close(r)
    except OSError as e:
        return e.errno
    return None



