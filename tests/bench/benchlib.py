"""benchlib.py - what every suite of tests/bench/run shares: running a measured process,
starting cold, the machine's description, and rewriting one marked section of the doc.

Why a module: the download suite (run) and the mount suite (mountbench.py) must start cold
the same way, time and measure processes the same way and describe the same machine, or
their numbers could not sit on one page.
"""

import hashlib
import os
import platform
import shutil
import signal
import subprocess
import time

MiB = 1 << 20
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(msg, flush=True)


def ensure_tools(tools):
    """Install the Debian package of every missing command (as `make deps` does)."""
    missing = sorted({pkg for cmd, pkg in tools.items() if not shutil.which(cmd)})
    if not missing:
        return
    log("bench: installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing,
                   check=True, env=env)


def host_cpu():
    """(busy, total) jiffies of the whole machine; iowait counts as idle."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def busy_pct(a, b):
    return 100.0 * (b[0] - a[0]) / max(1, b[1] - a[1])


def run_group(argv, timeout, **kw):
    """Run argv in its own process group, so that a timeout stops the whole tree (the tool,
    not only /usr/bin/time or a wrapper script). Returns (exit status or "timeout after Ns",
    stdout bytes, stderr bytes)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return "timeout after %.0fs" % timeout, out, err


def make_cold(origin, drop):
    """The client side starts cold: dirty pages from the previous run are written back and
    the page cache dropped. The files the origin serves are then read back in, so it serves
    from memory like a remote store would, not from this machine's disk."""
    drop = drop_caches() if drop else False
    for path in origin.served_files():
        with open(path, "rb") as f:
            while f.read(4 * MiB):
                pass
    return drop


BACKGROUND = []  # every busy % wait_quiet returned in this process, for the summary


def wait_quiet(limit_s):
    """This machine is shared: wait (at most limit_s) until the other tenants leave it
    mostly idle, and return the busy % seen just before the run."""
    deadline = time.monotonic() + limit_s
    while True:
        a = host_cpu()
        time.sleep(0.5)
        pct = busy_pct(a, host_cpu())
        if pct < 15 or time.monotonic() >= deadline:
            BACKGROUND.append(pct)
            return pct


def parse_time_v(path):
    want = {"User time (seconds)": "user", "System time (seconds)": "sys",
            "Maximum resident set size (kbytes)": "rss_kb"}
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.strip().rpartition(": ")
                if k in want:
                    out[want[k]] = float(v)
    except OSError:
        pass
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(4 * MiB), b""):
            h.update(b)
    return h.hexdigest()


def first_line(argv):
    """The first line a tool prints for --version (nginx -v writes to stderr)."""
    try:
        _, out, err = run_group(argv, 10)
        return (out + err).decode(errors="replace").strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def shown_path(path):
    rel = os.path.relpath(os.path.abspath(path), REPO)
    return path if rel.startswith("..") else rel


def machine(work):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    fs = "?"
    best = ""
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if work.startswith(mnt) and len(mnt) > len(best):
                best, fs = mnt, "%s on %s" % (typ, dev)
    try:
        with open("/etc/debian_version") as f:
            deb = "Debian " + f.read().strip()
    except OSError:
        deb = platform.platform()
    return ("%d CPUs (%s), %.1f GiB RAM, kernel %s, %s; output written to %s"
            % (len(os.sched_getaffinity(0)), cpu, mem, platform.release(), deb, fs))


def drop_caches():
    """sync, then drop the page cache (root only). Returns whether it was dropped."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def write_doc(path, section, begin, end):
    """Replace the text from begin to end (markers included) with section, which starts with
    begin and ends with end; append it when the markers are not there yet."""
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        if not text:
            text = "# Benchmarks\n\nMeasured numbers, each section produced by the script it names.\n"
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def ratio(rows, a, b, time_ratio=False):
    """Row a's throughput / row b's (both moved the same bytes), or a's seconds / b's with
    time_ratio; None when either is missing or failed. rows: {key: {"secs", "failed"}}."""
    ra, rb = rows.get(a), rows.get(b)
    if not ra or not rb or ra["failed"] or rb["failed"]:
        return None
    return ra["secs"] / rb["secs"] if time_ratio else rb["secs"] / ra["secs"]


def goal_lines(goals, rows):
    """Markdown rows "| goal | row | measured | verdict |" for goals given as (text, row,
    divided by, ">=" (throughput) or "<=" (time), the ratio wanted)."""
    out = []
    for text, a, b, how, want in goals:
        time_ratio = how == "<="
        v = ratio(rows, a, b, time_ratio=time_ratio)
        if v is None:
            out.append("| %s | %s | not measured | - |" % (text, a))
            continue
        ok = v >= want if how == ">=" else v <= want
        out.append("| %s | %s | %.2fx %s (%s) | %s |" % (
            text, a, v, b, "time" if time_ratio else "throughput",
            "met" if ok else "**missed** (%.0f%% of the goal)" % (
                100 * (v / want if how == ">=" else want / v))))
    return out


def rounds(chosen, runs, single_runs):
    """(round, contender) in run order: `runs` rounds, each running every contender once and
    starting one further along the list, so no contender always follows the same neighbour.
    A contender with one_stream (one connection whatever it is told: curl, rclone mount,
    minutes per run) only runs in the first `single_runs` rounds."""
    for i in range(runs):
        k = i % len(chosen)
        for c in chosen[k:] + chosen[:k]:
            if not (c.one_stream and i >= single_runs):
                yield i, c
