"""test_hf_source.py - the Hugging Face source (downloader/source_hf.c) against the fake Hub.

Each test runs tests/tools/source_probe, built from the real source, HTTP and listing code,
against tests/fakes/fake_hf.py over real sockets: list a repo the way aibrix_download does
(revision -> commit, paginated tree), read byte ranges pinned to that commit (LFS files via a
302 to the CDN port, which refuses any Authorization header), and check what users see when
a repo is missing, gated, or the Hub is briefly unwell.
Run: /usr/bin/python3 -m pytest tests/integration/test_hf_source.py  (AIBRIX_BUILD_DIR = build dir)
"""
import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
EXIT_NOT_FOUND_OR_ACCESS = 3


@pytest.fixture(scope="module")
def source_probe():
    build = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
    probe = build / "tests" / "tools" / "source_probe"
    assert probe.is_file(), "%s not built (set AIBRIX_BUILD_DIR to the meson build dir)" % probe
    return probe


@pytest.fixture
def probe(source_probe, hf_hub, tmp_path):
    """run(uri, *args, token=None, env=None) -> CompletedProcess (stdout as bytes).
    The probe sees no HF_* or proxy variables of ours and a HOME without a token file,
    and backs off briefly so retry tests stay fast."""
    home = tmp_path / "home"
    home.mkdir()

    def run(uri, *args, token=None, env=None, timeout=60):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGING_FACE_")) and k.lower() not in PROXY_VARS}
        e.update(hf_hub.env(token=token))
        e.update({"HOME": str(home), "DOWNLOADER_BACKOFF_BASE": "0.01"})
        e.update(env or {})
        return subprocess.run([str(source_probe), uri, *[str(a) for a in args]], env=e,
                              capture_output=True, timeout=timeout)
    return run


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def disk_files(root):
    """{relpath: bytes} of every file under root."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def parse_listing(stdout):
    """{path: (size, etag, digest_kind, digest)} from `source_probe URI list`."""
    out = {}
    for line in stdout.decode().splitlines():
        path, size, etag, kind, digest = line.split("\t")
        out[path] = (int(size), etag, kind, digest)
    return out


def lfs_paths(hub, repo, rev="main"):
    """Paths the Hub stores in LFS, from its own model info (?blobs=true)."""
    import json
    import urllib.parse
    import urllib.request
    url = "%s/api/models/%s/revision/%s?blobs=true" % (hub.url, repo, urllib.parse.quote(rev, safe=""))
    with urllib.request.urlopen(url, timeout=10) as r:
        info = json.loads(r.read())
    return {s["rfilename"] for s in info["siblings"] if s.get("lfs")}


def assert_listing_matches(listing, files, lfs):
    assert sorted(listing) == sorted(files)
    for path, data in files.items():
        size, etag, kind, digest = listing[path]
        assert size == len(data), path
        if path in lfs:
            assert (kind, digest) == ("sha256", hashlib.sha256(data).hexdigest()), path
        else:
            assert (kind, digest) == ("git-sha1", git_blob_sha1(data)), path
        assert etag == digest, path


def test_listing_follows_pages_and_matches_the_files(hf_hub, probe):
    hf_hub.add_repo("org/model", odd_names=True)
    hf_hub.control(page_size=3)
    files = disk_files(hf_hub.root / "org" / "model")
    assert len(files) > 6, "the repo should span several pages"

    r = probe("hf://org/model", "list")
    assert r.returncode == 0, r.stderr.decode()
    listing = parse_listing(r.stdout)
    # one revision lookup, then every page of the tree pinned to the commit it named
    stats = hf_hub.stats()
    lfs = lfs_paths(hf_hub, "org/model")
    assert "model.safetensors" in lfs and "config.json" not in lfs
    assert_listing_matches(listing, files, lfs)
    assert sorted(listing) == list(listing), "entries are sorted by path"

    assert stats["requests"].get("revision") == 1
    commit = hf_hub.commit("org/model")
    trees = [e for e in stats["log"] if e["kind"] == "tree"]
    assert len(trees) >= 3
    assert all("/tree/%s" % commit in e["path"] for e in trees)


def test_ranged_get_of_an_lfs_file_goes_through_the_cdn_without_the_token(hf_hub, probe):
    hf_hub.add_repo("org/model")
    data = (hf_hub.root / "org" / "model" / "model.safetensors").read_bytes()
    off, length = 12345, 1 << 20
    assert off + length < len(data)

    r = probe("hf://org/model", "get", "model.safetensors", off, length, token=hf_hub.token)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == data[off:off + length]

    log = hf_hub.stats()["log"]
    resolves = [e for e in log if e["kind"] == "resolve"]
    cdn = [e for e in log if e["kind"] == "cdn"]
    assert resolves and all(e["auth"] for e in resolves), "the Hub gets the token"
    assert cdn and all(not e["auth"] and e["status"] == 206 for e in cdn), \
        "the CDN never sees Authorization (it answers 400 when it does)"
    assert hf_hub.token.encode() not in r.stderr


def test_get_of_small_and_odd_named_files(hf_hub, probe):
    hf_hub.add_repo("org/model", odd_names=True)
    root = hf_hub.root / "org" / "model"
    for path in ["config.json", "extra/dir a/w+b c.txt", "extra/\u00fcnicode-\u00e9.json"]:
        data = (root / path).read_bytes()
        r = probe("hf://org/model", "get", path, 1, len(data) - 2)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == data[1:-1], path
    r = probe("hf://org/model", "get", "extra/empty.txt", 0, 0)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""


def test_unknown_repo_is_not_found_and_named(hf_hub, probe):
    hf_hub.add_repo("org/model")
    r = probe("hf://org/missing", "list")
    assert r.returncode == EXIT_NOT_FOUND_OR_ACCESS
    err = r.stderr.decode()
    assert "org/missing" in err and "not found" in err
    assert "no token" in err

    r = probe("hf://org/missing", "list", token=hf_hub.token)
    assert r.returncode == EXIT_NOT_FOUND_OR_ACCESS
    assert "org/missing" in r.stderr.decode()
    assert hf_hub.token.encode() not in r.stderr


def test_unknown_revision_is_not_found_and_named(hf_hub, probe):
    hf_hub.add_repo("org/model")
    r = probe("hf://org/model@no-such-branch", "list")
    assert r.returncode == EXIT_NOT_FOUND_OR_ACCESS
    assert "no-such-branch" in r.stderr.decode()


def test_gated_repo_needs_a_token(hf_hub, probe):
    hf_hub.add_repo("org/gated")
    hf_hub.control(gated=["org/gated"])
    data = (hf_hub.root / "org" / "gated" / "config.json").read_bytes()

    r = probe("hf://org/gated", "get", "config.json", 0, len(data))
    assert r.returncode == EXIT_NOT_FOUND_OR_ACCESS
    err = r.stderr.decode()
    assert "gated" in err and "access" in err and "org/gated" in err and "HF_TOKEN" in err

    wrong = "hf_wrong_token_abcdef"
    r = probe("hf://org/gated", "get", "config.json", 0, len(data), token=wrong)
    assert r.returncode == EXIT_NOT_FOUND_OR_ACCESS
    assert "gated" in r.stderr.decode()
    assert wrong.encode() not in r.stderr

    r = probe("hf://org/gated", "get", "config.json", 0, len(data), token=hf_hub.token)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == data


def test_token_from_hf_home_opens_a_private_repo(hf_hub, probe):
    hf_hub.add_repo("org/private")
    hf_hub.control(private=["org/private"])
    r = probe("hf://org/private", "list")
    assert r.returncode == EXIT_NOT_FOUND_OR_ACCESS

    home = Path(hf_hub.env()["HF_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "token").write_text(hf_hub.token + "\n")
    r = probe("hf://org/private", "list")
    assert r.returncode == 0, r.stderr.decode()
    assert "config.json" in parse_listing(r.stdout)


@pytest.mark.parametrize("rev", ["v1.0", "refs/pr/1"])
def test_revision_in_the_uri_pins_that_revision(hf_hub, probe, rev):
    hf_hub.add_repo("org/model", seed=1)
    manifest = hf_hub.add_revision("org/model", rev, seed=2)
    import urllib.parse
    rev_root = hf_hub.root / ".revisions" / "org" / "model" / urllib.parse.quote(rev, safe="")
    files = disk_files(rev_root)
    assert sorted(files) == sorted(manifest)

    r = probe("hf://org/model@" + rev, "list")
    assert r.returncode == 0, r.stderr.decode()
    assert_listing_matches(parse_listing(r.stdout), files, lfs_paths(hf_hub, "org/model", rev))

    data = files["config.json"]
    assert data != (hf_hub.root / "org" / "model" / "config.json").read_bytes()
    r = probe("hf://org/model@" + rev, "get", "config.json", 0, len(data))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == data


def test_hf_revision_variable_applies_when_the_uri_has_none(hf_hub, probe):
    hf_hub.add_repo("org/model", seed=1)
    hf_hub.add_revision("org/model", "v2", seed=3)
    want = (hf_hub.root / ".revisions" / "org" / "model" / "v2" / "config.json").read_bytes()
    r = probe("hf://org/model", "get", "config.json", 0, len(want), env={"HF_REVISION": "v2"})
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == want


def test_a_503_burst_is_survived(hf_hub, probe):
    hf_hub.add_repo("org/model")
    hf_hub.control(page_size=4)
    data = (hf_hub.root / "org" / "model" / "model.safetensors").read_bytes()
    hf_hub.faults(*[{"match": kind, "status": 503, "count": 2}
                    for kind in ("revision", "tree", "resolve", "cdn")])

    r = probe("hf://org/model", "get", "model.safetensors", 0, len(data))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == data
    assert hf_hub.stats()["faults_fired"] == 8


def test_a_429_with_retry_after_is_waited_out(hf_hub, probe):
    hf_hub.add_repo("org/model")
    data = (hf_hub.root / "org" / "model" / "config.json").read_bytes()
    hf_hub.faults({"match": "resolve", "status": 429, "retry_after": 1, "count": 1})

    t0 = time.monotonic()
    r = probe("hf://org/model", "get", "config.json", 0, len(data))
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == data
    assert hf_hub.stats()["faults_fired"] == 1
    # backoff is 0.01 s here, so only the server's Retry-After explains a wait this long
    assert elapsed >= 0.9


def test_a_hub_that_keeps_failing_gives_up_with_the_transient_exit(hf_hub, probe):
    hf_hub.add_repo("org/model")
    hf_hub.faults({"match": "revision", "status": 503, "count": -1})
    r = probe("hf://org/model", "list", env={"DOWNLOADER_MAX_ATTEMPTS": "3"})
    assert r.returncode == 4
    assert hf_hub.stats()["requests"].get("revision") == 3
