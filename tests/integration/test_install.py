"""Standalone install on a host (issue 9): `meson install`, the Debian package, the systemd
unit and the man pages.

Why: a bare GPU box gets the runtime from `meson install` or `make deb`, not from a pod. These
tests install for real (a temp --destdir, then `dpkg -i` into this machine as root, purged in
a finally) and run what was installed, so a missing install rule, a wrong dependency or a unit
that systemd would reject fails here rather than on a user's host.

Run: /usr/bin/python3 -m pytest tests/integration/test_install.py
     (AIBRIX_BUILD_DIR = meson build dir, default build/; the .deb builds in build-deb/)
"""

import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
UNIT = "aibrix-runtime.service"
DEB_NAME = "aibrix-runtime"
# The runtime libraries the binaries link (by Debian package name), and the mount helper.
DEB_DEPENDS = {"libfuse3-3", "libcurl4", "libmicrohttpd12", "libcjson1", "libexpat1", "libssl3",
               "libc6", "fuse3"}
BINARIES = ("aibrix_runtime", "aibrix_download")


def run(argv, check=True, timeout=300, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(map(str, argv)), r.returncode, r.stdout, r.stderr))
    return r


def project_version():
    info = json.loads(run(["meson", "introspect", "--projectinfo", BUILD]).stdout)
    return info["version"]


def git_describe():
    r = run(["git", "-C", REPO, "describe", "--always", "--dirty"], check=False)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def check_help_and_version(binary, name):
    h = run([binary, "--help"])
    assert h.stdout.startswith("usage: %s " % name), h.stdout
    v = run([binary, "--version"]).stdout.strip()
    m = re.fullmatch(r"%s (\S+) \((\S+)\)" % name, v)
    assert m, v
    assert m.group(1) == project_version()
    # the describe is taken at build time, so it names the commit checked out now (other
    # engineers' edits may flip -dirty between the build and this line)
    assert m.group(2).removesuffix("-dirty") == git_describe().removesuffix("-dirty"), v


# --------------------------------------------------------------------------
# meson install

@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    """`meson install --destdir` of the build dir. Returns (destdir, {kind: installed path})."""
    dest = tmp_path_factory.mktemp("destdir")
    run(["meson", "install", "-C", BUILD, "--destdir", dest, "--quiet"], timeout=600)
    installed = json.loads(run(["meson", "introspect", "--installed", BUILD]).stdout).values()
    opts = {o["name"]: o["value"]
            for o in json.loads(run(["meson", "introspect", "--buildoptions", BUILD]).stdout)}
    prefix = Path(opts["prefix"])
    sysconfdir = prefix / opts["sysconfdir"]  # an absolute sysconfdir wins in the join
    want = {
        "aibrix_runtime": prefix / opts["bindir"] / "aibrix_runtime",
        "aibrix_download": prefix / opts["bindir"] / "aibrix_download",
        "man8": prefix / opts["mandir"] / "man8" / "aibrix_runtime.8",
        "man1": prefix / opts["mandir"] / "man1" / "aibrix_download.1",
        "unit": prefix / "lib" / "systemd" / "system" / UNIT,
        "envfile": sysconfdir / "default" / "aibrix-runtime",
    }
    for kind, path in want.items():
        assert str(path) in installed, "%s (%s) has no install rule" % (kind, path)
        assert (dest / path.relative_to("/")).is_file(), "%s not installed at %s" % (kind, path)
    return dest, want


def under(dest, path):
    return dest / Path(path).relative_to("/")


def test_meson_install_puts_binaries_man_pages_unit_and_env_file_under_the_prefix(destdir):
    dest, paths = destdir
    for name in BINARIES:
        check_help_and_version(under(dest, paths[name]), name)
    # the example environment file may hold credentials: root-only
    assert stat.S_IMODE(under(dest, paths["envfile"]).stat().st_mode) == 0o600
    unit = parse_unit(under(dest, paths["unit"]).read_text())
    assert unit["Service"]["ExecStart"][0].split()[0] == str(paths["aibrix_runtime"])
    assert unit["Service"]["EnvironmentFile"] == ["-%s" % paths["envfile"]]


# --------------------------------------------------------------------------
# the unit

# Keys this unit may use, per section: a typo or a key from another section fails the
# fallback check the way `systemd-analyze verify` would warn about it.
UNIT_KEYS = {
    "Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before",
             "ConditionPathExists", "StartLimitIntervalSec", "StartLimitBurst"},
    "Service": {"Type", "EnvironmentFile", "Environment", "ExecStartPre", "ExecStart",
                "ExecStopPost", "Restart", "RestartSec", "RestartPreventExitStatus",
                "TimeoutStopSec", "LimitNOFILE", "CacheDirectory", "StateDirectory", "UMask",
                "CapabilityBoundingSet", "DevicePolicy", "DeviceAllow", "NoNewPrivileges",
                "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
                "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
                "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
                "LoadCredential", "SetCredential"},
    "Install": {"WantedBy", "Alias"},
}
# Each of these gives the service its own mount namespace, and systemd then turns off mount
# propagation towards the host: the FUSE mount would be invisible to the engine.
NAMESPACE_KEYS = {"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                  "PrivateMounts", "PrivateNetwork", "PrivateIPC", "ReadWritePaths",
                  "ReadOnlyPaths", "InaccessiblePaths", "BindPaths", "BindReadOnlyPaths",
                  "TemporaryFileSystem", "ProtectKernelTunables", "ProtectKernelModules",
                  "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProcSubset",
                  "MountFlags", "RootDirectory", "RootImage", "DynamicUser", "ProtectHostname"}


def parse_unit(text):
    """A systemd unit file as {section: {key: [values]}} (comments, continuations)."""
    sections, cur, pending = {}, None, ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            assert line.endswith("]"), "line %d: bad section header %r" % (lineno, line)
            cur = sections.setdefault(line[1:-1], {})
            continue
        assert cur is not None and "=" in line, "line %d: not key=value: %r" % (lineno, line)
        key, value = (s.strip() for s in line.split("=", 1))
        cur.setdefault(key, []).append(value)
    return sections


def check_unit_keys(text):
    unit = parse_unit(text)
    assert set(unit) == set(UNIT_KEYS), set(unit)
    for section, keys in unit.items():
        unknown = set(keys) - UNIT_KEYS[section]
        assert not unknown, "[%s] unknown keys %s" % (section, unknown)
    svc = unit["Service"]
    assert not NAMESPACE_KEYS & set(svc), "mount namespace: %s" % (NAMESPACE_KEYS & set(svc))
    start = svc["ExecStart"][0].split()
    assert start[0].endswith("/aibrix_runtime")
    assert " ".join(start).count("--mount-point /models") == 1
    assert " ".join(start).count("--cache-dir /var/cache/aibrix") == 1
    assert svc["Restart"] == ["on-failure"]
    assert svc["ExecStopPost"] == ["-/bin/sh -c 'grep -qs \" /models fuse\" /proc/self/mounts || exit 0; "
                                   "exec /bin/fusermount3 -u -z /models'"]
    assert svc["DeviceAllow"] == ["/dev/fuse rw"]
    assert "CAP_SYS_ADMIN" in svc["CapabilityBoundingSet"][0].split()
    assert "@mount" in svc["SystemCallFilter"][0].split()
    assert svc["EnvironmentFile"][0].startswith("-/")
    assert svc["EnvironmentFile"][0].endswith("/default/aibrix-runtime")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    return unit


def systemd_verify(unit_path, man=True):
    """`systemd-analyze verify`: None when systemd is not installed, else its stderr."""
    if not shutil.which("systemd-analyze"):
        return None
    argv = ["systemd-analyze", "verify"] + ([] if man else ["--man=no"]) + [unit_path]
    r = run(argv, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_unit_keys_and_systemd_verify(destdir, tmp_path):
    dest, paths = destdir
    text = under(dest, paths["unit"]).read_text()
    check_unit_keys(text)
    # verify checks ExecStart exists: point it at the destdir copy of the binary
    unit = tmp_path / UNIT
    unit.write_text(text.replace(str(paths["aibrix_runtime"]),
                                 str(under(dest, paths["aibrix_runtime"]))))
    warnings = systemd_verify(unit, man=False)
    assert not warnings, warnings


def test_unit_parser_rejects_what_systemd_would_warn_about():
    good = (REPO / "deploy/host/aibrix-runtime.service.in").read_text() \
        .replace("@bindir@", "/usr/bin").replace("@sysconfdir@", "/etc")
    check_unit_keys(good)
    for bad in (good.replace("DeviceAllow=", "DevicesAllow="),
                good.replace("[Service]", "[Service]\nProtectSystem=strict"),
                good.replace("Restart=on-failure", "Restart=always")):
        with pytest.raises(AssertionError):
            check_unit_keys(bad)


# --------------------------------------------------------------------------
# man pages

MAN_PAGES = {"aibrix_runtime": REPO / "docs/man/aibrix_runtime.8",
             "aibrix_download": REPO / "docs/man/aibrix_download.1"}
SOURCES = ("common", "downloader", "fs", "control", "exporter")


def test_man_pages_render_without_warnings():
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for page in MAN_PAGES.values():
        g = run(["groff", "-ww", "-man", "-z", page], check=False)
        assert g.returncode == 0 and g.stderr == "", "%s: %s" % (page.name, g.stderr)
        m = run(["man", "--warnings=w", "-l", page], check=False, env=env)
        assert m.returncode == 0 and m.stderr == "", "%s: %s" % (page.name, m.stderr)
        assert "EXIT STATUS" in m.stdout and "EXAMPLES" in m.stdout


def test_man_pages_cover_every_flag_env_var_and_exit_status():
    text = {n: p.read_text().replace("\\-", "-") for n, p in MAN_PAGES.items()}
    # every long option of each program's getopt table
    for name, src in (("aibrix_runtime", "control/main.c"),
                      ("aibrix_download", "downloader/main.c")):
        table = (REPO / src).read_text().split("longopts[] = {", 1)[1].split("};", 1)[0]
        for flag in re.findall(r'\{"([a-z-]+)"', table):
            heading = r"^\.(?:B|BI|BR|OP) .*--%s(?![a-z-])" % re.escape(flag)
            assert re.search(heading, text[name], re.M), "%s does not document --%s" % (name, flag)
    # every variable the code reads, in one page or the other
    both = text["aibrix_runtime"] + text["aibrix_download"]
    read = set()
    for d in SOURCES:
        for c in (REPO / d).glob("*.c"):
            read |= set(re.findall(r'cm_env_[a-z0-9]+\("([A-Z][A-Z0-9_]+)"', c.read_text()))
    read |= {"TOS_ACCESS_KEY", "TOS_SECRET_KEY", "TOS_SECURITY_TOKEN"}  # named via a table
    missing = sorted(v for v in read if v not in both)
    assert not missing, "undocumented environment variables: %s" % missing
    for status in "02345":
        assert re.search(r"\.TP\n\.B %s\n" % status, text["aibrix_download"])
    for status in "012":
        assert re.search(r"\.TP\n\.B %s\n" % status, text["aibrix_runtime"])


# --------------------------------------------------------------------------
# the Debian package

def deb_field(info, field):
    m = re.search(r"^ %s: (.*)$" % field, info, re.M)
    return m.group(1) if m else None


def dpkg(argv, timeout=300):
    """dpkg, waiting out another process's lock (apt or a parallel test run)."""
    deadline = time.monotonic() + 120
    while True:
        r = run(["dpkg"] + argv, check=False, timeout=timeout)
        if r.returncode == 0 or "lock" not in r.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert r.returncode == 0, "dpkg %s: %s" % (" ".join(argv), r.stderr)
    return r


@pytest.fixture(scope="module")
def deb():
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb not installed")
    r = run(["make", "-C", REPO, "--no-print-directory", "deb"], timeout=900)
    path = Path(r.stdout.strip().splitlines()[-1])
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert path == REPO / "build-deb" / ("%s_%s_%s.deb" % (DEB_NAME, project_version(), arch))
    return path


def test_deb_control_files_and_contents(deb):
    info = run(["dpkg-deb", "-I", deb]).stdout
    assert deb_field(info, "Package") == DEB_NAME
    assert deb_field(info, "Version") == project_version()
    depends = {d.strip().split()[0] for d in deb_field(info, "Depends").split(",")}
    assert depends == DEB_DEPENDS, depends
    assert run(["dpkg-deb", "-I", deb, "conffiles"]).stdout.split() == ["/etc/default/aibrix-runtime"]

    listing = {}
    for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        listing[path.removeprefix(".")] = (mode, owner)
    for path in ("/usr/bin/aibrix_runtime", "/usr/bin/aibrix_download",
                 "/usr/share/man/man8/aibrix_runtime.8.gz", "/usr/share/man/man1/aibrix_download.1.gz",
                 "/usr/lib/systemd/system/" + UNIT, "/usr/share/doc/aibrix-runtime/copyright"):
        assert path in listing, path
    assert listing["/usr/bin/aibrix_runtime"] == ("-rwxr-xr-x", "root/root")
    assert listing["/etc/default/aibrix-runtime"] == ("-rw-------", "root/root")
    assert not [p for p in listing if "build" in p or p.startswith("/usr/local")]


def test_deb_depends_on_every_library_the_binaries_link(deb, tmp_path):
    """Each NEEDED soname comes from a package the .deb depends on (no missing Depends)."""
    run(["dpkg-deb", "-x", deb, tmp_path])
    depends = {d.strip().split()[0]
               for d in deb_field(run(["dpkg-deb", "-I", deb]).stdout, "Depends").split(",")}
    for name in BINARIES:
        dyn = run(["objdump", "-p", tmp_path / "usr/bin" / name]).stdout
        for soname in re.findall(r"^\s+NEEDED\s+(\S+)$", dyn, re.M):
            owners = run(["dpkg", "-S", "*/" + soname]).stdout
            pkgs = {o.split(":")[0] for o in owners.splitlines()}
            assert pkgs & depends, "%s needs %s from %s, not in Depends" % (name, soname, pkgs)


def test_deb_installs_runs_and_purges(deb, model_tree, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    if run(["dpkg-query", "-W", DEB_NAME], check=False).returncode == 0:
        pytest.skip("%s is already installed on this machine; not replacing it" % DEB_NAME)
    foreign = [p for p in ("/usr/bin/aibrix_runtime", "/etc/default/aibrix-runtime") if Path(p).exists()]
    if foreign:
        pytest.skip("%s exist outside the package; not overwriting them" % foreign)
    try:
        dpkg(["-i", deb])
        assert "Status: install ok installed" in run(["dpkg", "-s", DEB_NAME]).stdout
        check_help_and_version("/usr/bin/aibrix_download", "aibrix_download")
        check_help_and_version("/usr/bin/aibrix_runtime", "aibrix_runtime")

        local = tmp_path / "models"
        r = run(["/usr/bin/aibrix_download", "--model-uri", "file://%s" % model_tree.path,
                 "--local-dir", local, "--model-name", "m"], timeout=120)
        assert r.stdout.strip().splitlines()[-1] == str(local / "m")
        for rel in model_tree.files():
            assert (local / "m" / rel).read_bytes() == (model_tree.path / rel).read_bytes(), rel

        assert run(["man", "-w", "aibrix_runtime"]).stdout.strip() == \
            "/usr/share/man/man8/aibrix_runtime.8.gz"
        unit = Path("/usr/lib/systemd/system") / UNIT
        check_unit_keys(unit.read_text())
        warnings = systemd_verify(unit)  # Documentation=man:aibrix_runtime(8) resolves now
        assert not warnings, warnings
    finally:
        dpkg(["--purge", DEB_NAME])
    assert not Path("/usr/bin/aibrix_runtime").exists()
    assert not Path("/etc/default/aibrix-runtime").exists()
    assert run(["dpkg-query", "-W", DEB_NAME], check=False).returncode != 0
