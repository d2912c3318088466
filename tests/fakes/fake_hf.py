#!/usr/bin/env python3
"""A fake Hugging Face Hub for tests: real HTTP on loopback, standard library only.

Why: the downloader must be tested against the Hub's wire behaviour (revision ->
commit, paginated tree listing with `Link` headers, LFS files answered by a 302 to
a CDN on another origin, `X-Error-Code` errors, 429 + Retry-After) without the
internet. Its fidelity is proven by running the official `@huggingface/hub`
client against it (tests/integration/test_fakes_fidelity.py).

Data: repos are directories `<root>/<org>/<name>/<files...>` (the `main`
revision). Extra revisions live in `<root>/.revisions/<org>/<name>/<rev>/`, where
<rev> is the revision name URL-quoted with safe="" (refs/pr/1 -> refs%2Fpr%2F1).
A revision's commit sha is a stable sha1 of its content, and also resolves.

Routes (main port):
  GET  /api/models/{org}/{name}[/revision/{rev}]     model info {id, sha, siblings}
       (?blobs=true adds size/blobId/lfs to siblings)
  GET  /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive=true|1[&cursor=..]
  POST /api/models/{org}/{name}/paths-info/{rev}     JSON or form {paths, expand}
  GET|HEAD /{org}/{name}/resolve/{rev}/{path}        small file: bytes (+Range);
       LFS: 302 with an absolute Location on the CDN port, X-Linked-Etag/-Size
  /__fake/control (POST JSON), /__fake/stats (GET), /__fake/reset (POST)
CDN port: GET|HEAD /repos/{org}/{name}/{sha256}?Expires=..&Signature=..  — bytes
with Range; rejects any request carrying Authorization (400, like S3 does).

Control keys besides faults (see fakecommon.py): page_size, lfs_threshold,
lfs_suffixes, tokens (list), gated (list of org/name: resolve needs a valid
Bearer token: 401 without, 403 with a wrong one), private (list: 401/404
RepoNotFound without a valid token), aliases ({"old/name": "new/name"}: renamed
repos answered with a relative 307), cdn_ttl (seconds a CDN URL stays valid).

Run: python3 fake_hf.py --root DIR [--port P] [--cdn-port Q] [--page-size N]
     [--token T] [--gated org/name] [--tls-cert PEM --tls-key PEM] ...
     prints "READY <port> <cdnport>". With --tls-cert both ports speak HTTPS and every URL
     the fake hands out (CDN Location, next-page Link) says https.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import ssl
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon  # noqa: E402
from fakecommon import FakeHandler, FakeServer, FakeState, http_date, iso_date  # noqa: E402

DEFAULT_LFS_SUFFIXES = [".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack"]
ZERO_SHA = "0" * 40

_hash_lock = threading.Lock()
_hash_cache = {}  # (abspath, size, mtime_ns) -> (git_blob_sha1, sha256)


def file_hashes(abspath, size, mtime_ns):
    key = (abspath, size, mtime_ns)
    with _hash_lock:
        hit = _hash_cache.get(key)
    if hit:
        return hit
    g = hashlib.sha1(b"blob %d\0" % size)
    s = hashlib.sha256()
    with open(abspath, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            g.update(b)
            s.update(b)
    val = (g.hexdigest(), s.hexdigest())
    with _hash_lock:
        _hash_cache[key] = val
    return val


def git_blob_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256, size):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha256, size)).encode()


class FileEntry:
    __slots__ = ("path", "abspath", "size", "mtime", "mtime_ns", "lfs", "_h")

    def __init__(self, path, abspath, st, lfs):
        self.path = path
        self.abspath = abspath
        self.size = st.st_size
        self.mtime = st.st_mtime
        self.mtime_ns = st.st_mtime_ns
        self.lfs = lfs
        self._h = None

    def hashes(self):
        if self._h is None:
            self._h = file_hashes(self.abspath, self.size, self.mtime_ns)
        return self._h

    @property
    def sha256(self):
        return self.hashes()[1]

    @property
    def blob_oid(self):
        """Git oid of the blob stored in git: the content, or the LFS pointer."""
        if self.lfs:
            return git_blob_oid(self.pointer())
        return self.hashes()[0]

    def pointer(self):
        return lfs_pointer(self.sha256, self.size)


class Snapshot:
    """One revision's files, with its stable commit sha."""

    def __init__(self, files, dirs):
        self.files = files  # path -> FileEntry
        self.dirs = dirs  # sorted list of directory paths
        lines = ["%s\0%s\n" % (p, self.files[p].blob_oid) for p in sorted(self.files)]
        self.sha = hashlib.sha1(("fake-commit\n" + "".join(lines)).encode()).hexdigest()
        self.mtime = max([f.mtime for f in files.values()] or [0])

    def dir_oid(self, d):
        return hashlib.sha1(("tree %s %s" % (self.sha, d)).encode()).hexdigest()


class HFApp:
    def __init__(self, args):
        self.root = os.path.abspath(args.root)
        self.verbose = args.verbose
        self.state = FakeState()
        self.secret = secrets.token_bytes(16)
        self.initial = {
            "page_size": args.page_size,
            "lfs_threshold": args.lfs_threshold,
            "lfs_suffixes": list(args.lfs_suffix or DEFAULT_LFS_SUFFIXES),
            "tokens": list(args.token or []),
            "gated": list(args.gated or []),
            "private": list(args.private or []),
            "aliases": {},
            "cdn_ttl": 3600,
        }
        self.cfg_lock = threading.Lock()
        self.reset_config()
        self.port = None
        self.cdn_port = None
        self.scheme = "https" if args.tls_cert else "http"
        self._snap_lock = threading.Lock()
        self._snaps = {}  # dir -> (signature, Snapshot)

    # ---- configuration ----------------------------------------------------
    def reset_config(self):
        with self.cfg_lock:
            self.cfg = json.loads(json.dumps(self.initial))

    def configure(self, req):
        with self.cfg_lock:
            for k, v in req.items():
                if k not in self.cfg:
                    raise KeyError("unknown control key %r" % k)
                if k in ("page_size", "lfs_threshold", "cdn_ttl"):
                    v = int(v)
                    if k == "page_size" and v < 1:
                        raise ValueError("page_size must be >= 1")
                self.cfg[k] = v
            with self._snap_lock:
                self._snaps.clear()  # LFS classification may have changed

    def describe(self):
        with self.cfg_lock:
            d = json.loads(json.dumps(self.cfg))
        d["port"], d["cdn_port"], d["root"] = self.port, self.cdn_port, self.root
        return d

    def conf(self, k):
        with self.cfg_lock:
            return self.cfg[k]

    # ---- repository data --------------------------------------------------
    def repo_main_dir(self, org, name):
        if not org or not name or org.startswith(".") or name.startswith(".") or "/" in org + name:
            return None
        d = os.path.join(self.root, org, name)
        return d if os.path.isdir(d) else None

    def revisions(self, org, name):
        """rev name -> directory, for an existing repo."""
        revs = {"main": self.repo_main_dir(org, name)}
        extra = os.path.join(self.root, ".revisions", org, name)
        if os.path.isdir(extra):
            for q in sorted(os.listdir(extra)):
                p = os.path.join(extra, q)
                if os.path.isdir(p):
                    revs[urllib.parse.unquote(q)] = p
        return revs

    def is_lfs(self, path, size):
        if size >= self.conf("lfs_threshold"):
            return True
        return any(path.endswith(s) for s in self.conf("lfs_suffixes"))

    def snapshot(self, d):
        entries = []
        dirs = []
        for dp, dns, fns in os.walk(d):
            dns.sort()
            rel_dir = os.path.relpath(dp, d)
            if rel_dir != ".":
                dirs.append(rel_dir.replace(os.sep, "/"))
            for fn in sorted(fns):
                ap = os.path.join(dp, fn)
                try:
                    st = os.stat(ap)
                except OSError:
                    continue
                rel = os.path.relpath(ap, d).replace(os.sep, "/")
                entries.append((rel, ap, st))
        sig = tuple((r, st.st_size, st.st_mtime_ns) for r, _, st in entries) + tuple(dirs)
        with self._snap_lock:
            hit = self._snaps.get(d)
            if hit and hit[0] == sig:
                return hit[1]
        files = {r: FileEntry(r, ap, st, self.is_lfs(r, st.st_size)) for r, ap, st in entries}
        snap = Snapshot(files, sorted(dirs))
        with self._snap_lock:
            self._snaps[d] = (sig, snap)
        return snap

    def resolve_rev(self, org, name, rev):
        """-> (snapshot, rev_dir) or None when the revision is unknown."""
        revs = self.revisions(org, name)
        if rev in revs:
            return self.snapshot(revs[rev]), revs[rev]
        if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
            for d in revs.values():
                s = self.snapshot(d)
                if s.sha == rev:
                    return s, d
        return None

    def split_rev(self, org, name, raw_segments):
        """Split raw (still quoted) path segments into (rev, rest_path).
        The rev is one quoted segment (refs%2Fpr%2F1), or a known revision
        name containing raw slashes (refs/pr/1)."""
        if not raw_segments:
            return None, ""
        joined = "/".join(raw_segments)
        for rev in sorted(self.revisions(org, name), key=len, reverse=True):
            if "/" in rev and (joined == rev or joined.startswith(rev + "/")):
                return rev, urllib.parse.unquote(joined[len(rev) + 1:])
        rev = urllib.parse.unquote(raw_segments[0])
        rest = urllib.parse.unquote("/".join(raw_segments[1:]))
        return rev, rest

    # ---- CDN URL signing --------------------------------------------------
    def cdn_sign(self, path, expires):
        return hmac.new(self.secret, ("%s|%d" % (path, expires)).encode(), hashlib.sha256).hexdigest()[:40]

    def cdn_url(self, org, name, entry):
        path = "/repos/%s/%s/%s" % (urllib.parse.quote(org), urllib.parse.quote(name), entry.sha256)
        expires = int(time.time()) + self.conf("cdn_ttl")
        fn = entry.path.rsplit("/", 1)[-1]
        disp = "attachment; filename*=UTF-8''%s; filename=\"%s\";" % (urllib.parse.quote(fn), fn)
        q = urllib.parse.urlencode({
            "response-content-disposition": disp,
            "Expires": str(expires),
            "Signature": self.cdn_sign(path, expires),
            "Key-Pair-Id": "KFAKEHFCDNKEYPAIR",
        }, quote_via=urllib.parse.quote)
        return "%s://127.0.0.1:%d%s?%s" % (self.scheme, self.cdn_port, path, q)


def _req_id():
    return "Root=1-%08x-%s" % (int(time.time()), secrets.token_hex(12))


class HFHandler(FakeHandler):
    server_version = "fake-hf-hub"
    KIND_ALIASES = {"api": ("revision", "tree", "paths-info", "model")}

    def error_body(self, status, code, message):
        extra = {"X-Request-Id": _req_id()}
        if code:
            extra["X-Error-Code"] = code
        return "application/json; charset=utf-8", json.dumps({"error": message}).encode(), extra

    def hf_error(self, status, code, message):
        ctype, body, extra = self.error_body(status, code, message)
        self.send_simple(status, body, ctype, extra)

    def bearer(self):
        a = self.headers.get("Authorization")
        if a is None:
            return None
        parts = a.split(None, 1)
        return parts[1].strip() if len(parts) == 2 and parts[0].lower() == "bearer" else ""

    def token_ok(self):
        t = self.bearer()
        return t is not None and t in self.app.conf("tokens")

    def check_repo(self, org, name, kind, for_download=False):
        """Alias redirect / existence / private / gated checks.
        Returns True when the request was answered here."""
        repo = "%s/%s" % (org, name)
        aliases = self.app.conf("aliases")
        if repo in aliases:
            new = aliases[repo]
            raw_path, sep, q = self.path.partition("?")
            old_q = "/%s/%s" % (urllib.parse.quote(org), urllib.parse.quote(name))
            loc = raw_path.replace(old_q, "/" + new, 1) + sep + q
            self.send_simple(307, "Temporary Redirect. Redirecting to %s" % loc, "text/plain; charset=utf-8",
                             {"Location": loc, "X-Request-Id": _req_id()})
            return True
        exists = self.app.repo_main_dir(org, name) is not None
        private = repo in self.app.conf("private")
        if not exists or (private and not self.token_ok()):
            status = 401 if self.headers.get("Authorization") is None else 404
            self.hf_error(status, "RepoNotFound",
                          "Repository not found" if status == 404 else
                          "Invalid username or password.")
            return True
        if for_download and repo in self.app.conf("gated") and not self.token_ok():
            if self.bearer() is None:
                self.hf_error(401, "GatedRepo",
                              "Access to model %s is restricted. You must have access to it and be "
                              "authenticated to access it. Please log in." % repo)
            else:
                self.hf_error(403, "GatedRepo",
                              "Access to model %s is restricted and you are not in the authorized list. "
                              "Visit https://huggingface.co/%s to ask for access." % (repo, repo))
            return True
        return False

    # ---- routing ----------------------------------------------------------
    def route(self):
        raw_path, _, query = self.path.partition("?")
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        segs = raw_path.split("/")[1:]
        if segs and segs[0] == "__fake" and len(segs) == 2:
            return self.handle_control(segs[1])
        if len(segs) >= 4 and segs[0] == "api" and segs[1] == "models":
            org, name = urllib.parse.unquote(segs[2]), urllib.parse.unquote(segs[3])
            if len(segs) == 4 or (len(segs) == 5 and segs[4] == ""):
                return self.api_model(org, name, "main", q, "model")
            op, rest = segs[4], segs[5:]
            if op == "revision" and rest:
                return self.api_model(org, name, urllib.parse.unquote("/".join(rest)), q, "revision")
            if op == "tree" and rest:
                return self.api_tree(org, name, rest, q)
            if op == "paths-info" and rest:
                return self.api_paths_info(org, name, urllib.parse.unquote("/".join(rest)))
        if len(segs) >= 5 and segs[2] == "resolve":
            org, name = urllib.parse.unquote(segs[0]), urllib.parse.unquote(segs[1])
            return self.resolve(org, name, segs[3:])
        self.classify("other", None)
        self.hf_error(404, None, "Sorry, we can't find the page you are looking for.")

    def _snap_or_error(self, org, name, rev):
        got = self.app.resolve_rev(org, name, rev)
        if got is None:
            self.hf_error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
            return None
        return got[0]

    def api_model(self, org, name, rev, q, kind):
        if self.classify(kind, "%s/%s" % (org, name)):
            return
        if self.check_repo(org, name, kind):
            return
        snap = self._snap_or_error(org, name, rev)
        if snap is None:
            return
        blobs = (q.get("blobs", ["false"])[0].lower() in ("1", "true"))
        siblings = []
        for p in sorted(snap.files):
            e = snap.files[p]
            s = {"rfilename": p}
            if blobs:
                s["blobId"] = e.blob_oid
                s["size"] = e.size
                if e.lfs:
                    s["lfs"] = {"sha256": e.sha256, "size": e.size, "pointerSize": len(e.pointer())}
            siblings.append(s)
        repo = "%s/%s" % (org, name)
        ts = iso_date(snap.mtime)
        gated = repo in self.app.conf("gated")
        body = {
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
            "id": repo,
            "modelId": repo,
            "author": org,
            "sha": snap.sha,
            "lastModified": ts,
            "createdAt": ts,
            "private": repo in self.app.conf("private"),
            "gated": "manual" if gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "transformers",
            "pipeline_tag": "text-generation",
            "siblings": siblings,
        }
        self.send_json(200, body, {"X-Request-Id": _req_id()})

    def _entries(self, snap, subpath, recursive, expand):
        base = subpath.strip("/")
        out = []
        items = [(d, None) for d in snap.dirs] + [(p, snap.files[p]) for p in snap.files]
        items.sort(key=lambda x: x[0])
        for p, e in items:
            if base:
                if not p.startswith(base + "/"):
                    continue
                rel = p[len(base) + 1:]
            else:
                rel = p
            if not recursive and "/" in rel:
                continue
            if e is None:
                item = {"type": "directory", "oid": snap.dir_oid(p), "size": 0, "path": p}
            else:
                item = {"type": "file", "oid": e.blob_oid, "size": e.size, "path": p}
                if e.lfs:
                    item["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": len(e.pointer())}
            if expand:
                item["lastCommit"] = {"id": snap.sha, "title": "Upload folder", "date": iso_date(snap.mtime)}
                if e is not None:
                    item["securityFileStatus"] = {"status": "safe"}
            out.append(item)
        return out

    def api_tree(self, org, name, raw_rest, q):
        if self.classify("tree", "%s/%s" % (org, name)):
            return
        if self.check_repo(org, name, "tree"):
            return
        rev, subpath = self.app.split_rev(org, name, raw_rest)
        snap = self._snap_or_error(org, name, rev)
        if snap is None:
            return
        subpath = subpath.strip("/")
        if subpath and subpath not in snap.dirs:
            self.hf_error(404, "EntryNotFound", "%s does not exist on \"%s\"" % (subpath, rev))
            return
        recursive = q.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = q.get("expand", ["false"])[0].lower() in ("1", "true")
        entries = self._entries(snap, subpath, recursive, expand)
        offset = 0
        cur = q.get("cursor", [""])[0]
        if cur:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(cur + "==").decode())["o"])
            except (ValueError, KeyError, TypeError):
                self.hf_error(400, None, "Invalid cursor")
                return
        ps = self.app.conf("page_size")
        page = entries[offset:offset + ps]
        headers = {"X-Request-Id": _req_id()}
        if offset + ps < len(entries):
            nq = {k: v[0] for k, v in q.items() if k != "cursor"}
            nq["cursor"] = base64.urlsafe_b64encode(json.dumps({"o": offset + ps}).encode()).decode().rstrip("=")
            host = self.headers.get("Host") or "127.0.0.1:%d" % self.app.port
            raw_path = self.path.partition("?")[0]
            url = "%s://%s%s?%s" % (self.app.scheme, host, raw_path, urllib.parse.urlencode(nq))
            headers["Link"] = '<%s>; rel="next"' % url
        self.send_json(200, page, headers)

    def api_paths_info(self, org, name, rev):
        if self.classify("paths-info", "%s/%s" % (org, name)):
            return
        raw = self.read_body()
        if self.check_repo(org, name, "paths-info"):
            return
        snap = self._snap_or_error(org, name, rev)
        if snap is None:
            return
        ctype = self.headers.get("Content-Type", "")
        try:
            if "json" in ctype:
                req = json.loads(raw or b"{}")
                paths = req.get("paths") or []
                expand = bool(req.get("expand"))
            else:
                form = urllib.parse.parse_qs(raw.decode(), keep_blank_values=True)
                paths = form.get("paths", [])
                expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
        except ValueError:
            self.hf_error(400, None, "bad request body")
            return
        if isinstance(paths, str):
            paths = [paths]
        all_entries = {e["path"]: e for e in self._entries(snap, "", True, expand)}
        out = [all_entries[p.strip("/")] for p in paths if p.strip("/") in all_entries]
        self.send_json(200, out, {"X-Request-Id": _req_id()})

    def resolve(self, org, name, raw_rest):
        key = "%s/%s/%s" % (org, name, urllib.parse.unquote("/".join(raw_rest[1:])))
        if self.classify("resolve", key):
            return
        if self.command not in ("GET", "HEAD"):
            self.hf_error(405, None, "Method not allowed")
            return
        if self.check_repo(org, name, "resolve", for_download=True):
            return
        rev, path = self.app.split_rev(org, name, raw_rest)
        self._rec["key"] = key = "%s/%s/%s" % (org, name, path)
        snap = self._snap_or_error(org, name, rev)
        if snap is None:
            return
        e = snap.files.get(path)
        if e is None:
            self.hf_error(404, "EntryNotFound", "Entry not found")
            return
        common = {"X-Repo-Commit": snap.sha, "X-Request-Id": _req_id(), "Vary": "Origin, Accept, Range"}
        if e.lfs:
            loc = self.app.cdn_url(org, name, e)
            h = dict(common)
            h.update({
                "Location": loc,
                "X-Linked-Etag": '"%s"' % e.sha256,
                "X-Linked-Size": str(e.size),
                "ETag": '"%s"' % e.sha256,
            })
            self.send_simple(302, "Found. Redirecting to %s" % loc, "text/plain; charset=utf-8", h)
            return
        fn = path.rsplit("/", 1)[-1]
        h = dict(common)
        h.update({
            "ETag": '"%s"' % e.blob_oid,
            "Content-Type": "application/json; charset=utf-8" if fn.endswith(".json")
            else "text/plain; charset=utf-8",
            "Content-Disposition": "inline; filename*=UTF-8''%s; filename=\"%s\";" % (urllib.parse.quote(fn), fn),
            "Last-Modified": http_date(e.mtime),
        })
        self.serve_file(e.abspath, e.size, key, h, self.headers.get("Range"))


class CDNHandler(FakeHandler):
    """The 'CDN' origin that LFS resolves redirect to (another port = another origin)."""

    server_version = "AmazonS3"
    KIND_ALIASES = {}

    def error_body(self, status, code, message):
        code = code or {400: "InvalidArgument", 403: "AccessDenied", 404: "NoSuchKey",
                        416: "InvalidRange"}.get(status, "InternalError")
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
                '<RequestId>%s</RequestId></Error>' % (code, message, secrets.token_hex(8).upper()))
        return "application/xml", body.encode(), {}

    def cdn_error(self, status, code, message):
        ctype, body, extra = self.error_body(status, code, message)
        self.send_simple(status, body, ctype, extra)

    def route(self):
        raw_path, _, query = self.path.partition("?")
        segs = raw_path.split("/")[1:]
        if segs and segs[0] == "__fake" and len(segs) == 2:
            return self.handle_control(segs[1])
        if len(segs) != 4 or segs[0] != "repos":
            self.classify("cdn", None)
            self.cdn_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        org, name, sha = (urllib.parse.unquote(s) for s in segs[1:])
        entry = self.find(org, name, sha)
        key = "%s/%s/%s" % (org, name, entry.path) if entry else "%s/%s/%s" % (org, name, sha)
        if self.classify("cdn", key):
            return
        if self.headers.get("Authorization") is not None:
            self.cdn_error(400, "InvalidArgument",
                           "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                           "Signature query string parameter or the Authorization header should be specified")
            return
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        try:
            expires = int(q.get("Expires", [""])[0])
        except ValueError:
            expires = None
        sig = q.get("Signature", [""])[0]
        if expires is None or not hmac.compare_digest(sig, self.app.cdn_sign(raw_path, expires)):
            self.cdn_error(403, "AccessDenied", "Invalid signature or missing query parameters")
            return
        if expires < time.time():
            self.cdn_error(403, "AccessDenied", "Request has expired")
            return
        if entry is None:
            self.cdn_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        h = {
            "ETag": '"%s"' % entry.sha256,
            "Content-Type": "application/octet-stream",
            "Last-Modified": http_date(entry.mtime),
            "x-amz-storage-class": "INTELLIGENT_TIERING",
        }
        disp = q.get("response-content-disposition", [None])[0]
        if disp:
            h["Content-Disposition"] = disp
        self.serve_file(entry.abspath, entry.size, key, h, self.headers.get("Range"))

    def find(self, org, name, sha):
        if self.app.repo_main_dir(org, name) is None:
            return None
        for d in self.app.revisions(org, name).values():
            for e in self.app.snapshot(d).files.values():
                if e.lfs and e.sha256 == sha:
                    return e
        return None


def start(args):
    """Start both listeners; returns (app, main_server, cdn_server)."""
    app = HFApp(args)
    main = FakeServer((args.host, args.port), HFHandler, app)
    cdn = FakeServer((args.host, args.cdn_port), CDNHandler, app)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        for server in (main, cdn):
            # the handshake runs in the handler thread, so a client that refuses the
            # certificate never stalls the accept loop
            server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    app.port = main.server_address[1]
    app.cdn_port = cdn.server_address[1]
    fakecommon.serve_forever_in_thread(main)
    fakecommon.serve_forever_in_thread(cdn)
    return app, main, cdn


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="directory holding <org>/<name>/ repos")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cdn-port", type=int, default=0)
    p.add_argument("--page-size", type=int, default=1000, help="tree entries per page")
    p.add_argument("--lfs-threshold", type=int, default=1 << 20, help="files this big or larger are LFS")
    p.add_argument("--lfs-suffix", action="append", help="suffix that makes a file LFS (repeatable)")
    p.add_argument("--token", action="append", help="a valid access token (repeatable)")
    p.add_argument("--gated", action="append", help="org/name of a gated repo (repeatable)")
    p.add_argument("--private", action="append", help="org/name of a private repo (repeatable)")
    p.add_argument("--tls-cert", help="PEM certificate: serve HTTPS on both ports")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    app, _, _ = start(args)
    sys.stdout.write("READY %d %d\n" % (app.port, app.cdn_port))
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
