"""The FUSE model mount as users meet it (SPEC §1, §3, §4, §5; docs/semantics.md).

Every story starts a real `aibrix_runtime --mount-point ...` over a real origin on loopback
(file://, the fake HF Hub with its CDN, s3rver behind the SigV4 proxy, the fake TOS), reads
through the kernel's FUSE, and compares bytes with the source. The runtime's lifecycle and
the unmount-even-on-failure rule live in runtime.py (loaded below as a pytest plugin).
Everything is bounded: a read that hangs fails the test (bounded()), and a per-test
watchdog kills the runtime so a read blocked in the kernel returns instead of hanging CI.
Chunks are 256 KiB (DOWNLOADER_PART_CHUNKSIZE, set by runtime.clean_env) so every weight
file spans many chunks.
"""

import errno
import fnmatch
import mmap
import os
import random
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest_plugins = ["runtime"]  # the runtime_factory fixture and the watchdog

from runtime import (CHUNK, read_all, REPO, RUNTIME, bounded, disk_usage, errno_of, is_asan_binary,  # noqa: E402
                     is_mounted, mount_ids, runtime_timeout, sha256, tree_sha256, tree_sizes, wait_until)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fakes"))
import modelgen  # noqa: E402

REPO_ID = "acme/tiny-llm"
NAME = "tiny"
MiB = 1 << 20


# --------------------------------------------------------------------------
# helpers

def expected(manifest):
    return {k: v["sha256"] for k, v in manifest.items()}


def sizes_of(manifest):
    return {k: v["size"] for k, v in manifest.items()}


def read_errno(path, drop_cache=False):
    """None when the whole file reads, else the errno the read (or open) failed with."""
    return errno_of(read_all, path, drop_cache)


def ename(e):
    return errno.errorcode.get(e, str(e)) if e is not None else "success"


class Origin:
    """One model on one origin: the URI, the env a client needs, the source tree on disk,
    and the file bytes the origin has served (None where the origin cannot count)."""

    def __init__(self, kind, uri, env, src, server=None, key_prefix=None):
        self.kind, self.uri, self.env, self.src, self.server = kind, uri, env, Path(src), server
        self.key_prefix = key_prefix
        self.manifest = modelgen.tree_manifest(str(src))

    def served(self):
        """{relpath: bytes of content served} or None."""
        if self.server is None:
            return None
        out = {}
        for k, n in self.server.stats()["bytes_by_path"].items():
            if k.startswith(self.key_prefix):
                out[k[len(self.key_prefix):]] = n
        return out

    def served_total(self):
        s = self.served()
        return None if s is None else sum(s.values())

    def total(self):
        return sum(v["size"] for v in self.manifest.values())


def make_origin(kind, request, tree):
    if kind == "hf":
        hub = request.getfixturevalue("hf_hub")
        hub.add_repo(REPO_ID, tree.path)
        return Origin(kind, "hf://" + REPO_ID, hub.env(), hub.root / REPO_ID, hub, REPO_ID + "/")
    if kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        s3.upload_tree(tree.path, prefix="models/tiny-llm")
        s3.reset()  # count only what the runtime fetches
        return Origin(kind, "s3://%s/models/tiny-llm/" % s3.bucket, s3.env(), tree.path, s3,
                      "%s/models/tiny-llm/" % s3.bucket)
    if kind == "tos":
        tos = request.getfixturevalue("tos_server")
        tos.put_tree("models", "llm/tiny-llm", tree.path)
        return Origin(kind, "tos://models/llm/tiny-llm/", tos.env(), tos.root / "models" / "llm" / "tiny-llm", tos,
                      "models/llm/tiny-llm/")
    return Origin(kind, "file://%s" % tree.path, {}, tree.path)


def hf_origin(hub, tree=None, **gen):
    if tree is not None:
        hub.add_repo(REPO_ID, tree.path)
    else:
        hub.add_repo(REPO_ID, **gen)
    return Origin("hf", "hf://" + REPO_ID, hub.env(), hub.root / REPO_ID, hub, REPO_ID + "/")


def model_opt(uri, **opts):
    return "%s=%s%s" % (NAME, uri, "".join(",%s=%s" % kv for kv in opts.items()))


# --------------------------------------------------------------------------
# reading through the mount

@pytest.mark.parametrize("kind", [pytest.param("file", marks=pytest.mark.valgrind),
                                  pytest.param("hf", marks=pytest.mark.valgrind), "s3", "tos"])
def test_lazy_mount_shows_exact_sizes_before_any_fetch_then_every_byte(kind, request, model_tree_factory,
                                                                       runtime_factory):
    """ls -l shows exact sizes before a byte is fetched; every file read through the mount
    has the source's sha256; files and directories are read-only."""
    tree = model_tree_factory(size="6M", seed=3, odd_names=True)
    o = make_origin(kind, request, tree)
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env)

    assert rt.get("/healthz") == (200, {"status": "ok"})
    status, body = rt.get("/ready")
    assert status == 200 and body.get("status") == "ready", body
    assert sorted(os.listdir(rt.mount)) == [NAME]
    root = rt.mount / NAME

    sizes = bounded(tree_sizes, root, timeout=30, what="stat of every file")
    assert sizes == sizes_of(o.manifest)
    if o.served() is not None:
        assert o.served_total() == 0, "stat fetched file bytes: %r" % o.served()

    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            st = os.stat(os.path.join(dp, n))
            assert st.st_mode & 0o222 == 0, "%s is writable: %o" % (n, st.st_mode)
            assert stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)
    if kind == "file":  # mtime comes from the listing
        for rel in o.manifest:
            assert int(os.stat(root / rel).st_mtime) == int(os.stat(o.src / rel).st_mtime), rel

    got = bounded(tree_sha256, root, timeout=120, what="reading every file")
    assert got == expected(o.manifest)


def test_models_from_flag_and_aibrix_models_env_are_all_mounted(model_tree_factory, runtime_factory):
    a = model_tree_factory(size="1M", seed=21)
    b = model_tree_factory(size="1M", seed=22)
    rt = runtime_factory("c=file://%s,prefetch=none" % a.path,
                         env={"AIBRIX_MODELS": "a=file://%s;b=file://%s" % (a.path, b.path)})
    assert sorted(os.listdir(rt.mount)) == ["a", "b", "c"]
    assert bounded(tree_sha256, rt.mount / "a", timeout=60) == expected(a.manifest)
    assert bounded(tree_sha256, rt.mount / "b", timeout=60) == expected(b.manifest)
    assert bounded(tree_sha256, rt.mount / "c", timeout=60) == expected(a.manifest)


def test_mmap_random_tensor_reads_equal_the_source(hf_hub, runtime_factory):
    """A safetensors loader: parse the header through the mount, then mmap and read tensor
    ranges in random order (plus arbitrary random ranges)."""
    o = hf_origin(hf_hub, size="8M", seed=5, shards=1)
    src = o.src / "model.safetensors"
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env)
    path = rt.mount / NAME / "model.safetensors"
    header, start = modelgen.read_safetensors_header(src)
    size = src.stat().st_size

    def check():
        assert modelgen.read_safetensors_header(path) == (header, start)
        rng = random.Random(5)
        tensors = [(n, t) for n, t in header.items() if n != "__metadata__"]
        rng.shuffle(tensors)
        with open(path, "rb") as f, open(src, "rb") as s:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            sm = mmap.mmap(s.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                assert len(mm) == size
                for name, t in tensors:
                    a, b = t["data_offsets"]
                    assert mm[start + a:start + b] == sm[start + a:start + b], "tensor %s differs" % name
                for _ in range(300):
                    off = rng.randrange(size)
                    n = rng.randint(1, 96 * 1024)
                    assert mm[off:off + n] == sm[off:off + n], "range %d+%d differs" % (off, n)
            finally:
                mm.close()
                sm.close()

    bounded(check, timeout=120, what="mmap reads")


def test_hf_lfs_reads_reuse_the_cdn_url_and_ask_the_hub_again_when_the_cdn_refuses_it(hf_hub, runtime_factory):
    """The Hub redirects each /resolve of an LFS file to a signed CDN URL: the mount asks the
    Hub once per file and reads every chunk from the CDN URL (without the token). When the
    CDN refuses a remembered URL (403: expired or revoked), the read asks the Hub again and
    still returns the right bytes. One fetch thread, so the counts are exact."""
    o = hf_origin(hf_hub, size="6M", seed=71, shards=1)
    src = o.src / "model.safetensors"
    chunks = -(-src.stat().st_size // CHUNK)
    assert chunks >= 16
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env={**o.env, "DOWNLOADER_NUM_THREADS": "1"})
    hf_hub.reset()
    hf_hub.faults({"match": "cdn", "status": 403, "skip": chunks // 2, "count": 1})
    assert read_all(rt.mount / NAME / "model.safetensors") == sha256(src)
    log = [e for e in hf_hub.stats()["log"] if (e["key"] or "").endswith("model.safetensors")
           or e["kind"] == "cdn"]
    resolves = [e for e in log if e["kind"] == "resolve"]
    cdn = [e for e in log if e["kind"] == "cdn"]
    assert [e["status"] for e in resolves] == [302, 302], resolves
    assert sorted(e["status"] for e in cdn) == [206] * chunks + [403], [e["status"] for e in cdn]
    assert not any(e["auth"] for e in cdn), "the token went to the CDN"


@pytest.mark.valgrind
def test_eight_threads_of_random_preads_get_correct_bytes(hf_hub, runtime_factory):
    o = hf_origin(hf_hub, size="8M", seed=6)
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env={**o.env, "DOWNLOADER_NUM_THREADS": "4"})
    root = rt.mount / NAME
    files = [rel for rel, v in o.manifest.items() if v["size"] > 0]
    weights = [o.manifest[rel]["size"] for rel in files]
    barrier = threading.Barrier(8)

    def worker(i):
        rng = random.Random(100 + i)
        fds = {}
        try:
            barrier.wait(timeout=30)
            for _ in range(150):
                rel = rng.choices(files, weights)[0]
                if rel not in fds:
                    fds[rel] = (os.open(root / rel, os.O_RDONLY), os.open(o.src / rel, os.O_RDONLY))
                size = o.manifest[rel]["size"]
                off = rng.randrange(size)
                n = rng.randint(1, 3 * CHUNK // 2)
                got = os.pread(fds[rel][0], n, off)
                want = os.pread(fds[rel][1], n, off)
                assert got == want, "thread %d: %s [%d, +%d) differs (%d bytes back)" % (i, rel, off, n, len(got))
        finally:
            for a, b in fds.values():
                os.close(a)
                os.close(b)
        return True

    def run_all():
        with ThreadPoolExecutor(8) as ex:
            return [f.result() for f in [ex.submit(worker, i) for i in range(8)]]

    assert bounded(run_all, timeout=180, what="8 threads of preads") == [True] * 8


# --------------------------------------------------------------------------
# filtering

def test_suffix_filter_hides_files_and_never_fetches_them(hf_hub, runtime_factory):
    o = hf_origin(hf_hub, size="6M", seed=7)
    # "json" and ".json" mean the same; ';' separates list items inside one --model
    rt = runtime_factory(model_opt(o.uri, allow_file_suffix="json;.safetensors", prefetch="all"), env=o.env,
                         timeout=90)
    root = rt.mount / NAME
    visible = {k for k in o.manifest if k.endswith((".json", ".safetensors"))}
    hidden = set(o.manifest) - visible
    assert visible and hidden
    assert set(bounded(tree_sizes, root, timeout=30)) == visible
    for rel in sorted(hidden):
        assert errno_of(os.stat, root / rel) == errno.ENOENT, rel
    assert bounded(tree_sha256, root, timeout=60) == {k: v for k, v in expected(o.manifest).items() if k in visible}

    stats = hf_hub.stats()
    asked = {e["key"][len(o.key_prefix):] for e in stats["log"]
             if e["kind"] in ("resolve", "cdn") and (e["key"] or "").startswith(o.key_prefix)}
    assert not asked & hidden, "hidden files were requested: %s" % sorted(asked & hidden)
    assert set(o.served()) <= visible


def test_allow_and_ignore_patterns(hf_hub, runtime_factory):
    o = hf_origin(hf_hub, size="6M", seed=8)
    allow, ignore = ["*.json", "original/*"], ["*tokenizer*", "*/deeper/*"]
    rt = runtime_factory(model_opt(o.uri, allow_patterns=";".join(allow), ignore_patterns=";".join(ignore),
                                   prefetch="all"), env=o.env, timeout=90)
    root = rt.mount / NAME
    # fnmatch: '*' crosses '/', as huggingface_hub matches
    visible = {k for k in o.manifest if any(fnmatch.fnmatchcase(k, p) for p in allow)
               and not any(fnmatch.fnmatchcase(k, p) for p in ignore)}
    hidden = set(o.manifest) - visible
    assert "original/params.json" in visible and "original/tokenizer.model" in hidden
    assert "original/deeper/notes.txt" in hidden and "tokenizer.json" in hidden
    assert set(bounded(tree_sizes, root, timeout=30)) == visible
    assert bounded(tree_sha256, root, timeout=60) == {k: v for k, v in expected(o.manifest).items() if k in visible}
    for rel in sorted(hidden):
        assert errno_of(os.stat, root / rel) == errno.ENOENT, rel
    assert set(o.served()) <= visible, "hidden files were fetched: %s" % sorted(set(o.served()) - visible)


# --------------------------------------------------------------------------
# the errno table (docs/semantics.md), row by row

@pytest.mark.valgrind
def test_every_write_operation_is_erofs(model_tree, runtime_factory):
    rt = runtime_factory("%s=file://%s,prefetch=none" % (NAME, model_tree.path))
    root = rt.mount / NAME
    f, d = root / "config.json", root / "original"
    before = tree_sha256(model_tree.path)
    erofs = {errno.EROFS}
    rows = [
        ("open existing O_WRONLY", lambda: os.open(f, os.O_WRONLY), erofs),
        ("open existing O_RDWR", lambda: os.open(f, os.O_RDWR), erofs),
        ("open existing O_WRONLY|O_TRUNC", lambda: os.open(f, os.O_WRONLY | os.O_TRUNC), erofs),
        ("open existing O_WRONLY|O_APPEND", lambda: os.open(f, os.O_WRONLY | os.O_APPEND), erofs),
        ("create a new file", lambda: os.open(root / "new.json", os.O_CREAT | os.O_WRONLY, 0o644), erofs),
        ("create O_EXCL over an existing file", lambda: os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644),
         {errno.EROFS, errno.EEXIST}),
        ("create in the mount root", lambda: os.open(rt.mount / "new", os.O_CREAT | os.O_WRONLY, 0o644), erofs),
        ("mkdir", lambda: os.mkdir(root / "newdir"), erofs),
        ("mkdir in the mount root", lambda: os.mkdir(rt.mount / "newmodel"), erofs),
        ("rename a file", lambda: os.rename(f, root / "renamed.json"), erofs),
        ("rename a directory", lambda: os.rename(d, root / "renamed"), erofs),
        ("rename a named mount", lambda: os.rename(root, rt.mount / "other"), erofs),
        ("unlink", lambda: os.unlink(f), erofs),
        ("rmdir", lambda: os.rmdir(root / "original" / "deeper"), erofs),
        ("rmdir a named mount", lambda: os.rmdir(root), erofs),
        ("chmod", lambda: os.chmod(f, 0o666), erofs),
        ("chown", lambda: os.chown(f, 1, 1), erofs),
        ("truncate", lambda: os.truncate(f, 0), erofs),
        ("utime", lambda: os.utime(f, (0, 0)), erofs),
        ("symlink", lambda: os.symlink("config.json", root / "link"), erofs),
        ("hard link", lambda: os.link(f, root / "hardlink"), erofs),
        ("mkfifo", lambda: os.mkfifo(root / "fifo"), erofs),
        ("setxattr", lambda: os.setxattr(f, "user.test", b"1"), {errno.EROFS, errno.ENOTSUP}),
        ("removexattr", lambda: os.removexattr(f, "user.test"), {errno.EROFS, errno.ENOTSUP, errno.ENODATA}),
    ]
    wrong = []
    for what, fn, want in rows:
        got = bounded(errno_of, fn, timeout=15, what=what)
        if got not in want:
            wrong.append("%s: %s (want %s)" % (what, ename(got), "/".join(ename(w) for w in sorted(want))))
    assert not wrong, "errno table rows that differ:\n" + "\n".join(wrong)
    # nothing changed, neither in the mount nor in the source directory behind it
    assert bounded(tree_sha256, root, timeout=30) == expected(model_tree.manifest)
    assert tree_sha256(model_tree.path) == before


def test_unknown_names_are_enoent(model_tree, runtime_factory):
    rt = runtime_factory("%s=file://%s,prefetch=none" % (NAME, model_tree.path))
    root = rt.mount / NAME
    rows = [
        ("stat an unknown file", lambda: os.stat(root / "nope.json")),
        ("open an unknown file", lambda: open(root / "nope.json", "rb")),
        ("stat an unknown named mount", lambda: os.stat(rt.mount / "no-such-model")),
        ("stat an unknown file in a subdirectory", lambda: os.stat(root / "original" / "nope")),
        ("list an unknown directory", lambda: os.listdir(root / "nope-dir")),
        ("a path that only prefixes a file name", lambda: os.stat(root / "config")),
    ]
    wrong = []
    for what, fn in rows:
        got = bounded(errno_of, fn, timeout=15, what=what)
        if got != errno.ENOENT:
            wrong.append("%s: %s (want ENOENT)" % (what, ename(got)))
    assert not wrong, "errno table rows that differ:\n" + "\n".join(wrong)
    assert errno_of(os.stat, root / "config.json" / "x") == errno.ENOTDIR


def test_origin_that_never_recovers_gives_eio_in_bounded_time_while_others_read(hf_hub, model_tree,
                                                                                 runtime_factory):
    o = hf_origin(hf_hub, model_tree)
    bad = "model.safetensors"
    hf_hub.faults({"match": ["resolve", "cdn"], "path": o.key_prefix + bad, "status": 503, "count": -1})
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env={**o.env, "DOWNLOADER_MAX_ATTEMPTS": "2"})
    path = rt.mount / NAME / bad
    assert os.stat(path).st_size == o.manifest[bad]["size"]  # metadata needs no file bytes

    t0 = time.monotonic()
    got = bounded(read_errno, path, timeout=60, what="read of a file whose origin answers 503 forever")
    took = time.monotonic() - t0
    assert got == errno.EIO, "read gave %s, want EIO" % ename(got)
    assert took < 20, "EIO took %.1fs" % took
    assert hf_hub.stats()["faults_fired"] >= 2, "the runtime did not retry"
    # a second reader is not stuck either, and gets no bytes that were never fetched
    assert bounded(read_errno, path, True, timeout=60) == errno.EIO
    # every other file still reads fine
    others = {k: v for k, v in expected(o.manifest).items() if k != bad}
    assert bounded(lambda: {k: sha256(rt.mount / NAME / k) for k in others}, timeout=60) == others
    assert bad in rt.log(), "no log line names the failing file"


@pytest.mark.valgrind
def test_persistent_corruption_gives_eio(hf_hub, model_tree, runtime_factory):
    """Every CDN answer has a flipped byte: the file never verifies, so reading it fails
    with EIO (it is never served as good) and small files still read fine."""
    o = hf_origin(hf_hub, model_tree)
    bad = "model.safetensors"
    hf_hub.faults({"match": "cdn", "corrupt": True, "count": -1})
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env)
    path = rt.mount / NAME / bad
    got = bounded(read_errno, path, timeout=90, what="cat of a file that never verifies")
    wait_until(lambda: "integrity" in rt.log() or "mismatch" in rt.log(), 30, "the integrity verdict")
    again = bounded(read_errno, path, True, timeout=90)
    print("first cat: %s; second cat (page cache dropped): %s" % (ename(got), ename(again)))
    assert (got, again) == (errno.EIO, errno.EIO), \
        "cat of a corrupted file gave %s, then %s; want EIO both times" % (ename(got), ename(again))
    others = {k: v for k, v in expected(o.manifest).items() if k != bad}
    assert bounded(lambda: {k: sha256(rt.mount / NAME / k) for k in others}, timeout=60) == others
    log = rt.log()
    assert bad in log and ("integrity" in log or "mismatch" in log), "no log line names the integrity failure"


def test_object_changed_after_listing_is_estale_or_eio(tos_server, model_tree, runtime_factory):
    tos_server.put_tree("models", "llm/tiny-llm", model_tree.path)
    src = tos_server.root / "models" / "llm" / "tiny-llm"
    o = Origin("tos", "tos://models/llm/tiny-llm/", tos_server.env(), src, tos_server, "models/llm/tiny-llm/")
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env)
    root = rt.mount / NAME
    assert bounded(tree_sizes, root, timeout=30) == sizes_of(o.manifest)

    # the object changes behind the mount's back: same size, other bytes, new ETag
    target = src / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2:] = bytes(b ^ 0x5A for b in data[len(data) // 2:])
    target.write_bytes(bytes(data))
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))

    got = bounded(read_errno, root / "model.safetensors", timeout=60, what="read of a changed object")
    print("read of an object changed after listing: %s" % ename(got))
    assert got in (errno.ESTALE, errno.EIO), "read of a changed object gave %s, want ESTALE (or EIO)" % ename(got)
    # never a mix of old and new bytes, and the unchanged files are fine
    others = {k: v for k, v in expected(o.manifest).items() if k != "model.safetensors"}
    assert bounded(lambda: {k: sha256(root / k) for k in others}, timeout=60) == others


# --------------------------------------------------------------------------
# prefetch policies

@pytest.mark.valgrind
def test_prefetch_all_is_ready_only_when_everything_is_fetched_once(hf_hub, runtime_factory):
    o = hf_origin(hf_hub, size="6M", seed=9)
    total = o.total()
    hf_hub.faults({"match": "cdn", "rate": 1 << 20, "count": -1})  # a slow CDN: ~1 MiB/s per connection
    rt = runtime_factory(model_opt(o.uri, prefetch="all"), env={**o.env, "DOWNLOADER_NUM_THREADS": "2"},
                         wait="mount")
    not_ready = []
    deadline = time.monotonic() + 90
    while True:
        status, body = rt.get("/ready")
        if status == 200:
            break
        served = o.served_total()
        assert status == 503, (status, body)
        assert isinstance(body, dict) and body.get("status") == "not ready", body
        not_ready.append(served)
        assert rt.alive() and time.monotonic() < deadline, "never ready; log:\n" + rt.log_tail()
        time.sleep(0.1)
    assert not_ready and min(not_ready) < total, "/ready was never 503 while bytes were missing"
    # ready means every byte is here: the origin has served each file exactly once
    wait_until(lambda: o.served_total() >= total, 5, "the origin's byte count to settle")
    assert o.served() == sizes_of({k: v for k, v in o.manifest.items() if v["size"] > 0})
    # and reading everything now fetches nothing more
    assert bounded(tree_sha256, rt.mount / NAME, timeout=60) == expected(o.manifest)
    assert o.served_total() == total


@pytest.mark.parametrize("threads,window", [(40, 40 * MiB), (2, 32 * MiB)])
def test_a_cold_first_read_fetches_what_the_pool_carries_ahead(hf_hub, runtime_factory, threads, window):
    """prefetch=none: the first read of a file queues a read-ahead window of a chunk for every
    connection (40 x 1 MiB here), so a cold sequential read streams on all of them at once;
    the window never starts under 32 MiB (2 x 1 MiB here), and never covers the whole file."""
    o = hf_origin(hf_hub, size="64M", seed=12, shards=1)
    (shard,) = [k for k in o.manifest if k.endswith(".safetensors")]
    size = o.manifest[shard]["size"]
    env = {**o.env, "DOWNLOADER_NUM_THREADS": str(threads), "DOWNLOADER_PART_CHUNKSIZE": "1M"}
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env=env)
    fd = os.open(rt.mount / NAME / shard, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no kernel read-ahead: one read of a page
        assert len(bounded(os.pread, fd, 1, 0, timeout=30)) == 1
    finally:
        os.close(fd)
    wait_until(lambda: o.served().get(shard, 0) >= window, 30, "the first window to be fetched")
    time.sleep(0.5)
    served = o.served().get(shard, 0)
    # the window starts after the page read; the chunk holding its end is fetched whole
    assert window <= served <= window + MiB < size, (served, window, size)


@pytest.mark.valgrind
def test_prefetch_open_fetches_the_whole_file_on_first_open(hf_hub, runtime_factory):
    o = hf_origin(hf_hub, size="6M", seed=10)
    shards = sorted(k for k in o.manifest if k.endswith(".safetensors"))
    assert len(shards) == 2
    rt = runtime_factory(model_opt(o.uri, prefetch="open"), env=o.env)
    with open(rt.mount / NAME / shards[0], "rb") as f:
        assert len(bounded(f.read, 1, timeout=30)) == 1
    size = o.manifest[shards[0]]["size"]
    wait_until(lambda: o.served().get(shards[0], 0) >= size, 60, "the opened file to be fetched whole")
    time.sleep(0.5)
    served = o.served()
    assert served.get(shards[0]) == size
    assert shards[1] not in served and "config.json" not in served, served


# --------------------------------------------------------------------------
# the block cache

def test_restart_on_the_same_cache_fetches_nothing(hf_hub, runtime_factory, tmp_path):
    o = hf_origin(hf_hub, size="6M", seed=11)
    cache = tmp_path / "cache"
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env, cache_dir=cache)
    assert bounded(tree_sha256, rt.mount / NAME, timeout=120) == expected(o.manifest)
    assert o.served_total() >= o.total()
    rc, secs = rt.stop()
    assert rc == 0, "SIGTERM exit status %s; log:\n%s" % (rc, rt.log_tail())
    hf_hub.reset()

    rt2 = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env, cache_dir=cache)
    assert bounded(tree_sha256, rt2.mount / NAME, timeout=120) == expected(o.manifest)
    assert o.served_total() == 0, "the restarted runtime fetched again: %r" % o.served()


@runtime_timeout(300)
def test_kill9_during_prefetch_then_restart_resumes_with_correct_bytes(hf_hub, runtime_factory, tmp_path):
    o = hf_origin(hf_hub, size="8M", seed=12, shards=1)
    total = o.total()
    cache = tmp_path / "cache"
    hf_hub.faults({"match": "cdn", "rate": 1 << 20, "count": -1})
    env = {**o.env, "DOWNLOADER_NUM_THREADS": "4"}
    rt = runtime_factory(model_opt(o.uri, prefetch="all"), env=env, cache_dir=cache, wait="mount")
    wait_until(lambda: o.served_total() >= total // 3 or not rt.alive(), 60, "a third of the model to arrive")
    assert rt.alive(), "runtime died during prefetch; log:\n" + rt.log_tail()
    status, _ = rt.get("/ready")
    assert status == 503
    rt.kill9()
    first = o.served_total()
    assert first < total, "prefetch finished before the kill; make the CDN slower"

    hf_hub.reset()
    rt2 = runtime_factory(model_opt(o.uri, prefetch="all"), env=env, cache_dir=cache, timeout=90)
    second = o.served_total()
    assert bounded(tree_sha256, rt2.mount / NAME, timeout=120) == expected(o.manifest)
    assert o.served_total() == second, "reading after /ready fetched more bytes"
    assert second < total, "the restarted run fetched %d of %d bytes (completed chunks fetched again)" % (
        second, total)
    assert first + second < 2 * total
    print("model %d bytes; first run fetched %d before kill -9, the restarted run %d" % (total, first, second))


def test_cache_max_bytes_bounds_the_cache(hf_hub, runtime_factory, tmp_path):
    """Read 12 MiB through closed files with a 4 MiB bound: after each close the cache
    directory's allocated size (du) is at most the bound plus SLACK. SLACK = 1 MiB: the chunk
    each of the 2 fetch workers may be writing (2 x 256 KiB) plus chunk maps, lock files and
    directories (docs/semantics.md)."""
    bound, slack = 4 * MiB, 1 * MiB
    o = hf_origin(hf_hub, size="12M", seed=13, shards=4)
    cache = tmp_path / "cache"
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env={**o.env, "DOWNLOADER_NUM_THREADS": "2"},
                         cache_dir=cache, cache_max_bytes=bound)
    root = rt.mount / NAME
    assert o.total() > 2 * bound
    peaks = []
    for rnd in range(2):  # the second round re-fetches what was evicted
        for rel in sorted(o.manifest, key=lambda k: -o.manifest[k]["size"]):
            assert bounded(read_all, root / rel, True, timeout=60) == o.manifest[rel]["sha256"], rel
            try:
                wait_until(lambda: disk_usage(cache) <= bound + slack, 10, "eviction")
            except AssertionError:
                raise AssertionError("cache holds %d bytes after closing %s (bound %d + slack %d)"
                                     % (disk_usage(cache), rel, bound, slack))
            peaks.append(disk_usage(cache))
    print("cache du after each close:", peaks)
    assert o.served_total() > o.total(), "nothing was evicted and fetched again"


def test_two_runtimes_share_one_cache_dir(hf_hub, runtime_factory, tmp_path):
    o = hf_origin(hf_hub, size="8M", seed=14)
    cache = tmp_path / "shared-cache"
    hf_hub.faults({"match": "cdn", "rate": 4 << 20, "count": -1})  # slow enough that both overlap
    a = runtime_factory(model_opt(o.uri, prefetch="all"), env=o.env, cache_dir=cache, wait="mount")
    b = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env, cache_dir=cache, wait="mount")
    a.wait_listed(NAME)
    b.wait_listed(NAME)
    files = sorted(o.manifest)
    want = expected(o.manifest)

    def reader(mount, order):
        return {rel: read_all(mount / NAME / rel) for rel in order}

    def run_all():
        with ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(reader, a.mount, files), ex.submit(reader, b.mount, files),
                    ex.submit(reader, a.mount, files[::-1]), ex.submit(reader, b.mount, files[::-1])]
            return [f.result() for f in futs]

    for got in bounded(run_all, timeout=180, what="concurrent readers on two runtimes"):
        assert got == want
    a.wait_ready(90)
    for rt in (a, b):
        rc, _ = rt.stop()
        assert rc == 0, "exit status %s; log:\n%s" % (rc, rt.log_tail())
    # what they left in the shared cache is sound
    hf_hub.reset()
    c = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env, cache_dir=cache)
    assert bounded(tree_sha256, c.mount / NAME, timeout=120) == want
    print("bytes fetched again by a third runtime on the shared cache:", o.served_total())


# --------------------------------------------------------------------------
# lifecycle

@pytest.mark.valgrind
def test_sigterm_with_a_reader_blocked_on_a_stalled_origin(hf_hub, model_tree, runtime_factory):
    o = hf_origin(hf_hub, model_tree)
    rt = runtime_factory(model_opt(o.uri, prefetch="none"), env=o.env)
    hf_hub.faults({"match": "cdn", "stall": 120, "count": -1})
    path = rt.mount / NAME / "model.safetensors"
    outcome = {}

    def reader():
        try:
            outcome["sha"] = read_all(path)
        except OSError as e:
            outcome["errno"] = e.errno

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    wait_until(lambda: hf_hub.stats()["faults_fired"] >= 1, 30, "the read to reach the stalled CDN")
    time.sleep(0.5)
    assert t.is_alive(), "the reader was not blocked: %r" % outcome

    t0 = time.monotonic()
    rt.signal(signal.SIGTERM)
    rc = rt.wait_exit(10)
    took = time.monotonic() - t0
    assert rc is not None, "still running 10 s after SIGTERM; log:\n" + rt.log_tail()
    assert rc == 0, "exit status %s after SIGTERM; log:\n%s" % (rc, rt.log_tail())
    t.join(5)
    assert not t.is_alive(), "the reader is still blocked after the runtime exited"
    assert "errno" in outcome, "the blocked reader got data from a stalled origin: %r" % outcome
    assert not is_mounted(rt.mount) and not os.path.ismount(rt.mount), "the mount point was not released"
    print("SIGTERM -> exit in %.2fs; the blocked reader got %s" % (took, ename(outcome["errno"])))


def test_stale_mount_from_a_killed_runtime_is_cleaned_at_start(model_tree, runtime_factory):
    m = "%s=file://%s,prefetch=none" % (NAME, model_tree.path)
    rt = runtime_factory(m)
    assert sha256(rt.mount / NAME / "config.json") == model_tree.manifest["config.json"]["sha256"]
    rt.kill9()
    assert is_mounted(rt.mount), "kill -9 left no mount behind (nothing to test)"
    # the dead mount answers ENOTCONN to whatever the kernel has not cached
    print("listdir of the stale mount:", ename(errno_of(os.listdir, rt.mount)))

    rt2 = runtime_factory(m, mount_point=rt.mount)
    assert bounded(tree_sha256, rt2.mount / NAME, timeout=60) == expected(model_tree.manifest)
    assert len(mount_ids(rt.mount)) == 1, "the stale mount is still there under the new one"


def _plain_runtime_binary():
    """The RSS bound is for the real (non-sanitizer) binary: use it when the configured build
    is an ASan one and <repo>/build has a plain one. -> (path, is_asan)."""
    if not is_asan_binary(RUNTIME):
        return RUNTIME, False
    plain = REPO / "build" / "control" / "aibrix_runtime"
    if plain.exists() and not is_asan_binary(plain):
        return plain, False
    return RUNTIME, True


def test_ten_thousand_files_list_fast_and_rss_stays_small(runtime_factory, tmp_path):
    src = tmp_path / "many"
    want = {}
    for d in range(100):
        (src / ("d%03d" % d)).mkdir(parents=True)
        for i in range(100):
            rel = "d%03d/f%03d.json" % (d, i)
            data = ('{"d": %d, "i": %d}\n' % (d, i)).encode()
            (src / rel).write_bytes(data)
            want[rel] = len(data)
    binary, asan = _plain_runtime_binary()
    rt = runtime_factory("many=file://%s,prefetch=none" % src, binary=binary, log_level="info", timeout=120)
    root = rt.mount / "many"

    def walk():
        t0 = time.monotonic()
        seen = {}
        for d in os.listdir(root):
            for n in os.listdir(root / d):
                seen["%s/%s" % (d, n)] = os.stat(root / d / n).st_size
        return seen, time.monotonic() - t0

    seen, cold = bounded(walk, timeout=60, what="listing 10k files")
    assert seen == want
    _, warm = bounded(walk, timeout=60)
    for rel in list(want)[::1000]:
        assert (rt.mount / "many" / rel).read_bytes() == (src / rel).read_bytes()
    hwm = rt.vm("VmHWM")
    print("10k files: cold listdir+stat %.3fs, warm %.3fs; runtime VmHWM %d KiB (%s build)"
          % (cold, warm, hwm, "ASan" if asan else "plain"))
    limit = 3.0 if asan else 1.0
    assert cold < limit, "listing + stat of 10k files took %.2fs" % cold
    if asan:
        pytest.skip("RSS bound not checked: only an ASan build of aibrix_runtime is available")
    assert hwm < 64 * 1024, "runtime RSS high-water mark %d KiB >= 64 MiB" % hwm
