"""mounts.py - the processes that serve a FUSE mount in the bench (aibrix_runtime, rclone,
s3fs), started in their own session, measured from /proc and stopped and unmounted whatever
happens.

Why a module: the mount suite (mountbench.py) and the S3 suite (contenders.py) run the same
daemons the same way, and their peak RSS must be read the same way (VmHWM before the stop).

Each Server needs a ctx with .mnt (or .rmnt, .s3mnt), .conns, .chunk, .runtime and .origin
(an hforigin.Origin or s3origin.S3Origin: .model_uri(), .client_env(), .base_url).
"""

import os
import signal
import subprocess
import time
import urllib.request

from hforigin import die_with_parent, free_port, proc_cpu_s

NAME = "bench"  # the runtime's mount name: files appear at MNT/bench/...


def mounted(path):
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == real for line in f)


def unmount(path):
    """Whatever is (still) mounted on path goes, also a dead FUSE mount."""
    for _ in range(4):
        if not mounted(path):
            return
        if subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL).returncode:
            subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)


def proc_status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def host_user_s():
    """User-space CPU seconds of the whole machine so far (user + nice in /proc/stat): other
    tenants' load shows here, while interrupts, softirqs (loopback TCP) and kernel threads
    (write-back), which a transfer itself causes, do not."""
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return (int(v[0]) + int(v[1])) / os.sysconf("SC_CLK_TCK")


def proc_user_s(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                total += int(f.read().rsplit(")", 1)[1].split()[11])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    """A process serving a FUSE mount (the runtime, rclone, s3fs), started in its own session,
    stopped with SIGTERM (then SIGKILL) and unmounted whatever happens."""

    live = set()

    def __init__(self, argv, env, mnt, log_path):
        self.mnt, self.log_path = mnt, log_path
        os.makedirs(mnt, exist_ok=True)
        unmount(mnt)
        self.logf = open(log_path, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)
        Server.live.add(self)

    def hwm_kb(self):
        return proc_status_kb(self.proc.pid, "VmHWM")

    def cpu_s(self):
        return proc_cpu_s(self.proc.pid)

    def user_s(self):
        return proc_user_s([self.proc.pid])

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def wait_path(self, rel, timeout):
        """Whether rel appeared under the mount within timeout (the daemon stays alive)."""
        deadline = time.monotonic() + timeout
        path = os.path.join(self.mnt, rel)
        while time.monotonic() < deadline and self.alive():
            if mounted(self.mnt) and os.path.exists(path):
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        """SIGTERM, wait, SIGKILL; returns (exit status, seconds to exit)."""
        t = time.monotonic()
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                rc = self.proc.wait()
        unmount(self.mnt)
        self.logf.close()
        Server.live.discard(self)
        return rc, time.monotonic() - t

    @classmethod
    def stop_all(cls):
        for s in list(cls.live):
            s.stop()


class Runtime(Server):
    def __init__(self, ctx, cache_dir, prefetch, log_path):
        self.port = free_port()
        self.cache_dir = cache_dir
        env = dict(os.environ, DOWNLOADER_NUM_THREADS=str(ctx.conns),
                   DOWNLOADER_PART_CHUNKSIZE=str(ctx.chunk), **ctx.origin.client_env())
        argv = [ctx.runtime, "--host", "127.0.0.1", "--port", str(self.port),
                "--mount-point", ctx.mnt, "--cache-dir", cache_dir,
                "--model", "%s=%s,prefetch=%s" % (NAME, ctx.origin.model_uri(), prefetch)]
        super().__init__(argv, env, ctx.mnt, log_path)

    @property
    def root(self):
        return os.path.join(self.mnt, NAME)

    def wait_listed(self, timeout):
        return self.wait_ready(timeout) is not None

    def ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/ready" % self.port,
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout, every=0.02):
        """Seconds from the start of the process until /ready answered 200 (None: never)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self.ready():
                return time.monotonic() - self.t0
            time.sleep(every)
        return None


class Rclone(Server):
    def __init__(self, ctx, cache_dir, log_path):
        argv = ["rclone", "mount", ":http:", ctx.rmnt, "--http-url",
                ctx.origin.base_url + "/raw/", "--vfs-cache-mode", "full", "--cache-dir",
                cache_dir, "--read-only", "--config", "/dev/null", "--log-level", "INFO"]
        super().__init__(argv, dict(os.environ), ctx.rmnt, log_path)


class S3fs(Server):
    """s3fs-fuse in the foreground on the S3 origin's bucket/prefix, path-style, read-only,
    with a fresh local cache dir (use_cache) so that a run is cold and the bench can check
    what it served without fetching it again. Otherwise s3fs's defaults (parallel_count 5,
    multipart_size 10 MB), unless parallel_count is given (the connections sweep)."""

    def __init__(self, ctx, cache_dir, log_path, parallel_count=None):
        o = ctx.origin
        passwd = os.path.join(ctx.work, "s3fs.passwd")
        with open(os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write("%s:%s\n" % (o.ACCESS_KEY, o.SECRET_KEY))
        argv = ["s3fs", "%s:/%s" % (o.bucket, o.prefix), ctx.s3mnt, "-f", "-o", "ro",
                "-o", "url=" + o.base_url, "-o", "use_path_request_style", "-o",
                "endpoint=" + o.REGION, "-o", "passwd_file=" + passwd, "-o",
                "use_cache=" + cache_dir, "-o", "dbglevel=warn"]
        if parallel_count:
            argv += ["-o", "parallel_count=%d" % parallel_count]
        super().__init__(argv, dict(os.environ), ctx.s3mnt, log_path)
        self.root = ctx.s3mnt

    def wait_listed(self, timeout):
        return self.wait_path("config.json", timeout)

    def stop(self):
        """Unmounting is how s3fs is told to stop: on SIGTERM it may abort (status -6)."""
        unmount(self.mnt)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        return super().stop()
