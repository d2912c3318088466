"""secrets_audit - no test credential may appear in anything our programs wrote (SPEC §9).

Suite-wide, from the outside: while the suite runs, this module keeps everything our own
programs (aibrix_runtime, aibrix_download and the test tools built from our C code) said:

  - the stdout/stderr a test captured from them (subprocess.run / Popen.communicate),
  - the log files they wrote (a Popen whose stdout or stderr is a file),
  - every HTTP answer a test read from a running aibrix_runtime: /metrics, API errors,
    /v1/model/mounts... (the port comes from the runtime's --port argument; only while that
    process is alive, since ports are reused by the fakes later).

Credentials are registered by the fixtures and tests that set them (`secret(value)`); a few
shapes the fakes issue on the fly are added by the tests that see them. At the end of the
session every kept text is searched for every registered secret; a hit fails the session
with where it was found (the secret itself is shown by its first characters only).

conftest.py installs it by importing this module and re-exporting the two hooks.
"""

import http.client
import os
import struct
import subprocess
import tempfile
import threading

OURS = {"aibrix_runtime", "aibrix_download", "creds_probe", "source_probe", "promtext_roundtrip"}
MIN_SECRET_LEN = 6  # shorter values would match by chance

_lock = threading.Lock()
_secrets = set()
_files = {}           # path -> what wrote it
_live_ports = {}      # port -> Popen of an aibrix_runtime
_transcript = tempfile.TemporaryFile()  # records: u32 len, what, u64 len, data (binary-safe)
_counts = {"outputs": 0, "responses": 0}


def secret(*values):
    """Register credentials the suite hands to our programs; returns the first one."""
    with _lock:
        for v in values:
            if v and len(v) >= MIN_SECRET_LEN:
                _secrets.add(v)
    return values[0] if values else None


def _record(what, data, kind):
    if not data:
        return
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    with _lock:
        what = what.encode("utf-8", "replace")
        _transcript.write(struct.pack("<I", len(what)) + what + struct.pack("<Q", len(data)) + data)
        _counts[kind] += 1


def _our_program(argv):
    """The name of our program in a command line (also behind a wrapper like valgrind)."""
    if isinstance(argv, (str, bytes, os.PathLike)):
        argv = [argv]
    for a in argv or ():
        name = os.path.basename(os.fsdecode(a)) if isinstance(a, (str, bytes, os.PathLike)) else ""
        if name in OURS:
            return name
    return None


def _port_of(argv):
    argv = [os.fsdecode(a) for a in argv]
    for i, a in enumerate(argv[:-1]):
        if a == "--port" and argv[i + 1].isdigit():
            return int(argv[i + 1])
    return None


_popen_init = subprocess.Popen.__init__
_popen_communicate = subprocess.Popen.communicate
_getresponse = http.client.HTTPConnection.getresponse


def _audited_init(self, args, *a, **kw):
    _popen_init(self, args, *a, **kw)
    self._audit_name = _our_program(args)
    if not self._audit_name:
        return
    for stream in (kw.get("stdout"), kw.get("stderr")):
        path = getattr(stream, "name", None)
        if isinstance(path, str) and os.path.isabs(path):
            with _lock:
                _files[path] = self._audit_name
    if self._audit_name == "aibrix_runtime" and not isinstance(args, (str, bytes)):
        port = _port_of(args)
        if port:
            with _lock:
                _live_ports[port] = self


def _audited_communicate(self, *a, **kw):
    out, err = _popen_communicate(self, *a, **kw)
    name = getattr(self, "_audit_name", None)
    if name:
        _record("%s output" % name, out, "outputs")
        _record("%s errors" % name, err, "outputs")
    return out, err


def _audited_getresponse(self, *a, **kw):
    resp = _getresponse(self, *a, **kw)
    with _lock:
        proc = _live_ports.get(self.port)
    if proc is None or proc.poll() is not None:
        return resp
    read = resp.read
    what = "aibrix_runtime answer %d on :%d" % (resp.status, self.port)

    def audited_read(*ra, **rkw):
        data = read(*ra, **rkw)
        _record(what, data, "responses")
        return data

    resp.read = audited_read
    return resp


subprocess.Popen.__init__ = _audited_init
subprocess.Popen.communicate = _audited_communicate
http.client.HTTPConnection.getresponse = _audited_getresponse


# ---- the verdict -----------------------------------------------------------------------------

def _texts():
    with _lock:
        _transcript.flush()
        _transcript.seek(0)
        raw = _transcript.read()
        _transcript.seek(0, os.SEEK_END)
    i = 0
    while i < len(raw):
        (n,) = struct.unpack_from("<I", raw, i)
        what = raw[i + 4:i + 4 + n].decode("utf-8", "replace")
        (m,) = struct.unpack_from("<Q", raw, i + 4 + n)
        start = i + 12 + n
        yield what, raw[start:start + m]
        i = start + m
    for path, name in sorted(_files.items()):
        try:
            with open(path, "rb") as f:
                yield "%s log %s" % (name, path), f.read()
        except OSError:
            pass  # the test removed its directory; nothing left to leak


def found_in(value):
    """Where value appears in what has been kept so far (also how the audit is tested)."""
    raw = value.encode()
    return [where for where, data in _texts() if raw in data]


def leaks():
    """[(where, secret prefix)] for every registered secret found in a kept text."""
    secrets = [(s.encode(), s[:4] + "...") for s in sorted(_secrets)]
    found = []
    for where, data in _texts():
        found += [(where, shown) for raw, shown in secrets if raw in data]
    return found


def pytest_sessionfinish(session, exitstatus):
    found = leaks()
    session.config._secrets_audit = found
    if found:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    found = getattr(config, "_secrets_audit", [])
    tr = terminalreporter
    tr.write_sep("-", "secrets audit")
    tr.write_line("%d secrets searched in %d logs, %d captured outputs and %d runtime answers: %s"
                  % (len(_secrets), len(_files), _counts["outputs"], _counts["responses"],
                     "%d LEAKS" % len(found) if found else "none found"))
    for where, shown in found[:50]:
        tr.write_line("LEAK: secret %s in %s" % (shown, where), red=True)
