"""hforigin.py - a generated model served by nginx as a Hugging Face origin, for benchmarks.

Why it is shaped so: a downloader's speed only means something against an origin that is
faster than the client and behaves like an object store, where each connection gets a fixed
share of bandwidth. nginx (Debian) serves the files with sendfile and keep-alive; limit_rate
caps every response, and since a connection carries one response at a time that is a cap per
connection. sendfile_max_chunk is kept small because nginx only sleeps *between* sendfile
calls: the last chunk of every response goes out unpaced, and with the 2 MiB default an 8 MiB
range would run a third faster than the configured rate (measured: 0.25 s instead of 0.33 s).

The two Hub API answers a downloader needs (revision -> commit, and the recursive tree with
git blob sha1 oids and LFS sha256 oids, which aibrix_download verifies) are computed once,
stored next to the model and served as static JSON. The model itself comes from
tests/fakes/modelgen.py and is cached per (size, seed) because generating 1 GiB costs seconds
and the bytes are deterministic anyway.

Model:  prepare_model(cache_root, size_bytes, seed, shards=None) -> Model
Origin: with Origin(model, rate, workdir) as o: o.base_url, o.model_uri(), o.client_env(),
        o.mark(), o.requests_since(mark), o.cpu_seconds() (Nginx: what s3origin.py shares)
"""

import ctypes
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODELGEN = os.path.join(REPO, "tests", "fakes", "modelgen.py")
ORG = "aibrix-bench"
# the patterns modelgen's .gitattributes sends to LFS
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.model")
MiB = 1 << 20


class Model:
    """A generated model on disk plus the Hub's view of it.

    root: the model files; api: revision.json and tree.json; files: {relpath: {size, sha256}};
    repo: "org/name"; commit: the 40-hex commit the revision resolves to."""

    def __init__(self, base, meta):
        self.base = base
        self.root = os.path.join(base, "repo")
        self.api = os.path.join(base, "api")
        self.files = meta["files"]
        self.repo = meta["repo"]
        self.commit = meta["commit"]
        self.size_arg = meta["size"]
        self.seed = meta["seed"]

    @property
    def total_bytes(self):
        return sum(f["size"] for f in self.files.values())

    @property
    def largest_file(self):
        return max(f["size"] for f in self.files.values())


def _git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256, size):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (sha256, size)).encode()


def _tree_json(root, files):
    """The Hub's /tree/{sha}?recursive=true answer: directories, then files."""
    entries, dirs = [], set()
    for rel in files:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),
                        "size": 0, "path": d})
    for rel, f in sorted(files.items()):
        name = rel.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS):
            pointer = _lfs_pointer(f["sha256"], f["size"])
            entries.append({"type": "file", "oid": _git_blob_sha1(pointer), "size": f["size"],
                            "path": rel, "lfs": {"oid": f["sha256"], "size": f["size"],
                                                 "pointerSize": len(pointer)}})
        else:
            with open(os.path.join(root, rel), "rb") as fh:
                data = fh.read()
            entries.append({"type": "file", "oid": _git_blob_sha1(data), "size": f["size"],
                            "path": rel})
    return entries


def prepare_model(cache_root, size_bytes, seed, shards=None, log=print):
    """Generate (or reuse) the model for (size, seed, shards) under cache_root; shards=None
    is modelgen's default (32 MiB shards). Built in a temp sibling and renamed into place,
    so a half-generated model is never reused."""
    key = "model-%d-s%d" % (size_bytes, seed) + ("-%dsh" % shards if shards else "")
    base = os.path.join(cache_root, key)
    meta_path = os.path.join(base, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            return Model(base, json.load(f))
    os.makedirs(cache_root, exist_ok=True)
    tmp = "%s.tmp-%d" % (base, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    log("bench: generating a %.0f MiB model (seed %d) in %s" % (size_bytes / MiB, seed, base))
    argv = [sys.executable, MODELGEN, os.path.join(tmp, "repo"), "--size", str(size_bytes),
            "--seed", str(seed)] + (["--shards", str(shards)] if shards else [])
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout
    files = json.loads(out)
    tree = _tree_json(os.path.join(tmp, "repo"), files)
    tree_bytes = json.dumps(tree, separators=(",", ":")).encode()
    commit = hashlib.sha1(tree_bytes).hexdigest()
    meta = {"files": files, "repo": "%s/fake-llama-%dm-s%d%s" % (
                ORG, size_bytes // MiB, seed, "-%dsh" % shards if shards else ""),
            "commit": commit, "size": size_bytes, "seed": seed}
    os.makedirs(os.path.join(tmp, "api"))
    with open(os.path.join(tmp, "api", "tree.json"), "wb") as f:
        f.write(tree_bytes)
    with open(os.path.join(tmp, "api", "revision.json"), "w") as f:
        json.dump({"id": meta["repo"], "sha": commit, "private": False, "gated": False}, f)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f)
    os.chmod(tmp, 0o755)
    os.rename(tmp, base)
    return Model(base, meta)


# ---- the origin ------------------------------------------------------------------------------

# What every nginx of the bench shares; {server} is the one server block that makes it an HF
# origin (Origin below) or an S3 front (s3origin.py).
NGINX_CONF = """\
# generated by tests/bench/{generator}; runs in the foreground under the bench script
worker_processes auto;
daemon off;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$msec $request_time $connection $connection_requests $status '
                     '$body_bytes_sent';
    access_log {work}/access.log bench;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    sendfile on;
    sendfile_max_chunk 128k;
    tcp_nopush on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
{server}
}}
"""

HF_SERVER = """\
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        limit_rate {rate};
        location = /api/models/{repo}/revision/main {{
            default_type application/json;
            alias {api}/revision.json;
        }}
        location = /api/models/{repo}/tree/{commit} {{
            default_type application/json;
            alias {api}/tree.json;
        }}
        location ~ ^/{repo}/resolve/[^/]+/(?<file>.+)$ {{
            alias {root}/$file;
        }}
        # the same files with directory listings, for peers that need them (rclone's http
        # backend); same per-connection limit_rate
        location /raw/ {{
            alias {root}/;
            autoindex on;
            autoindex_exact_size on;
        }}
        location / {{ return 404; }}
    }}"""


def parse_rate(rate):
    """nginx size syntax ('24m', '512k', '1000') -> bytes per second."""
    r = rate.strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(r[-1:], 1)
    return int(float(r[:-1] if mult != 1 else r) * mult)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """A child gets SIGTERM (nginx: a fast shutdown) if the bench dies without cleaning up."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def proc_cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def proc_cpu_s(pid):
    """utime + stime of every thread of pid so far, in seconds (0 when it is gone)."""
    try:
        return proc_cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Nginx:
    """nginx in the foreground on a free loopback port, with one server block
    (server_block(), for self.port and self.rate) and the access log the bench reads.
    Subclasses say what it serves and how to tell it is up (ready())."""

    generator = "hforigin.py"

    def __init__(self, rate, workdir):
        self.rate, self.work = rate, workdir
        self.proc = None
        self.port = None
        self.log_path = os.path.join(workdir, "access.log")

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def server_block(self):
        raise NotImplementedError

    def ready(self):
        raise NotImplementedError

    def __enter__(self):
        os.makedirs(os.path.join(self.work, "tmp"), exist_ok=True)
        for attempt in range(5):
            self.port = free_port()
            conf = os.path.join(self.work, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(work=self.work, generator=self.generator,
                                          server=self.server_block()))
            self.proc = subprocess.Popen(["nginx", "-p", self.work, "-c", conf, "-e",
                                          os.path.join(self.work, "error.log")],
                                         preexec_fn=die_with_parent)
            if self._wait_ready():
                return self
            self.__exit__(None, None, None)
        raise RuntimeError("nginx did not start; see %s/error.log" % self.work)

    def _wait_ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # e.g. the port was taken meanwhile
            try:
                if self.ready():
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return False

    def _pids(self):
        pids = [self.proc.pid]
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return pids

    def cpu_seconds(self):
        """CPU time nginx (master and workers) has used so far."""
        return sum(proc_cpu_s(pid) for pid in self._pids())

    def mark(self):
        """A position in the access log; requests_since(mark) reads what came after it."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def requests_since(self, mark):
        """What the origin saw: requests, bytes, distinct connections, peak concurrent
        requests (in flight at once, from each request's start and end), and non-2xx
        statuses."""
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            lines = f.read().decode(errors="replace").splitlines()
        events, conns, bad, sent = [], set(), {}, 0
        for line in lines:
            p = line.split()
            if len(p) != 6:
                continue
            end, dur, conn, status, nbytes = float(p[0]), float(p[1]), p[2], p[4], int(p[5])
            conns.add(conn)
            sent += nbytes
            if not status.startswith("2"):
                bad[status] = bad.get(status, 0) + 1
            # whole milliseconds, as logged: back-to-back requests must not overlap
            events.append((round((end - dur) * 1000), 1))
            events.append((round(end * 1000), -1))
        peak = cur = 0
        for _, d in sorted(events):  # on a tie the end (-1) sorts before the start
            cur += d
            peak = max(peak, cur)
        return {"requests": len(lines), "connections": len(conns), "peak_inflight": peak,
                "bytes": sent, "bad_status": bad}


class Origin(Nginx):
    """The Hub: revision and tree JSON, /{repo}/resolve/{rev}/{path}, and /raw/ listings."""

    name = "hf"

    def __init__(self, model, rate, workdir):
        super().__init__(rate, workdir)
        self.model = model

    def file_url(self, rel, rev="main"):
        return "%s/%s/resolve/%s/%s" % (self.base_url, self.model.repo, rev,
                                        urllib.request.quote(rel))

    def server_block(self):
        m = self.model
        return HF_SERVER.format(port=self.port, rate=self.rate, repo=m.repo, commit=m.commit,
                                api=m.api, root=m.root)

    def ready(self):
        url = "%s/api/models/%s/revision/main" % (self.base_url, self.model.repo)
        with urllib.request.urlopen(url, timeout=1) as r:
            return json.load(r)["sha"] == self.model.commit

    def model_uri(self):
        return "hf://%s" % self.model.repo

    def object_url(self, rel):
        return self.file_url(rel)

    def served_files(self):
        return [os.path.join(self.model.root, rel) for rel in sorted(self.model.files)]

    def client_env(self):
        """What aibrix_download and the runtime need to fetch from here: the endpoint, and no
        token from the environment or ~/.cache/huggingface."""
        return {"HF_ENDPOINT": self.base_url, "HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "",
                "HF_HOME": os.path.join(self.work, "hf-home")}
