"""test_promtext_promtool.py - what the exporter writes is valid exposition text to Prometheus.

tests/tools/promtext_roundtrip (built from exporter/promtext.c and rules.c) parses each engine
fixture in tests/unit/data/metrics/, applies that engine's rules, and writes the result; the
text must pass `promtool check metrics` (Debian package `prometheus`) without an error.
promtool exits 0 when clean, 3 when it only has lint remarks (no HELP, ':' in names, counters
without _total: the engines' own names and the SPEC's standard names draw those), and 1 with an
"error while linting: ..." line when the text does not parse. Only the last fails a test.
Run: /usr/bin/python3 -m pytest tests/integration/test_promtext_promtool.py
(AIBRIX_BUILD_DIR = meson build dir, default build/)
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "tests" / "unit" / "data" / "metrics").glob("*.txt"))
LINT_ONLY = 3


@pytest.fixture(scope="module")
def tool():
    build = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
    path = build / "tests" / "tools" / "promtext_roundtrip"
    assert path.is_file(), "%s not built (set AIBRIX_BUILD_DIR to the meson build dir)" % path
    return path


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install prometheus (make deps does)"
    return path


def roundtrip(tool, text, *args):
    return subprocess.run([str(tool), *args], input=text, capture_output=True, timeout=60)


def promtool_errors(promtool, text):
    """promtool's error lines for text; [] when it only has lint remarks or none."""
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       timeout=60)
    lines = (r.stdout + r.stderr).decode(errors="replace").splitlines()
    errors = [l for l in lines if l.lower().startswith("error")]
    if r.returncode not in (0, LINT_ONLY) and not errors:
        errors = ["promtool exited %d: %s" % (r.returncode, lines)]
    return errors


def engine_of(fixture):
    return fixture.stem.split("-")[0]


def test_fixtures_present():
    engines = {engine_of(f) for f in FIXTURES}
    assert engines == {"vllm", "sglang", "trtllm", "tgi", "triton", "llamacpp"}


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_transformed_output_passes_promtool(tool, promtool, fixture):
    r = roundtrip(tool, fixture.read_bytes(), engine_of(fixture))
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "# TYPE aibrix:" in out
    assert promtool_errors(promtool, r.stdout) == []
    types = [l.split()[2] for l in out.splitlines() if l.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a family is written twice"


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_plain_round_trip_passes_promtool_and_is_stable(tool, promtool, fixture):
    first = roundtrip(tool, fixture.read_bytes())
    assert first.returncode == 0, first.stderr.decode()
    assert promtool_errors(promtool, first.stdout) == []
    second = roundtrip(tool, first.stdout)
    assert second.returncode == 0
    assert second.stdout == first.stdout


TRICKY = (
    b"# HELP esc Backslash \\\\ newline \\n and a lone \\q backslash.\n"
    b"# TYPE esc gauge\n"
    b'esc{path="C:\\\\models\\\\x",quote="say \\"hi\\"",nl="a\\nb",utf8="\xe6\xa8\xa1\xe5\x9e\x8b"} 1\n'
    b"esc{path=\"nan\"} NaN\n"
    b"esc{path=\"inf\"} +Inf 1700000000000\n"
    b"esc{path=\"-inf\"} -Inf -5\n"
    b"# TYPE s summary\n"
    b's{quantile="0.5"} 1e-07\n'
    b"s_sum 123456789.125\n"
    b"s_count 9007199254740993\n"
    b"untyped_one 1.5\r\n"
    b"x_count 1\n"
    b"# TYPE x histogram\n"
    b'x_bucket{le="+Inf"} 2\n'
    b"x_sum 0.5\n"
)


def test_tricky_text_passes_promtool(tool, promtool):
    r = roundtrip(tool, TRICKY)
    assert r.returncode == 0, r.stderr.decode()
    assert promtool_errors(promtool, r.stdout) == []
    out = r.stdout.decode()
    assert "# HELP esc Backslash \\\\ newline \\n and a lone \\\\q backslash." in out
    assert 'quote="say \\"hi\\""' in out
    assert 'esc{path="inf"} +Inf 1700000000000' in out
    assert "s_sum 1.23456789125e+08" in out
    assert "s_count 9.007199254740992e+15" in out


@pytest.mark.parametrize("text", [
    b'x{a="unterminated} 1\n',
    b'x{a="b\\q"} 1\n',
    b"x 1e999\n",
    b"\xff\xfe garbage\n",
    b"x\x00 1\n",
    b"# TYPE x gauge\n# TYPE x gauge\n",
])
def test_parse_error_exits_2(tool, text):
    r = roundtrip(tool, text)
    assert r.returncode == 2
    assert r.stdout == b""
    assert b"parse error: line " in r.stderr


def test_unknown_engine_passes_through(tool):
    text = (REPO / "tests" / "unit" / "data" / "metrics" / "vllm-v0.txt").read_bytes()
    r = roundtrip(tool, text, "not-an-engine")
    assert r.returncode == 0
    assert b"unknown inference engine" in r.stderr
    assert b"aibrix:" not in r.stdout
    assert r.stdout == roundtrip(tool, text).stdout


def test_oversized_input_is_refused(tool):
    r = roundtrip(tool, b"# padding\n" * (2 * 1024 * 1024))
    assert r.returncode == 2
    assert b"over the limit" in r.stderr
