"""The suite-wide secrets audit (secrets_audit.py) sees every channel it claims to watch.

The audit itself runs at the end of the session: it searches every log, captured output and
runtime answer of the whole suite for the registered test credentials, and fails the session
on a hit. An audit that watched nothing would pass forever, so this test puts a fresh marker
into each channel and asks the audit where it found it: the runtime's log file, an HTTP
answer of a running runtime (an API error naming the model), and the stderr of
aibrix_download captured by subprocess.run.
"""

import json
import subprocess
import urllib.error
import urllib.request
import uuid

import secrets_audit
from runtime import BUILD, clean_env

pytest_plugins = ["runtime"]  # runtime_factory

DOWNLOAD = BUILD / "downloader" / "aibrix_download"


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_the_audit_sees_logs_answers_and_captured_output(runtime_factory, tmp_path):
    marker = "audit-marker-" + uuid.uuid4().hex
    rt = runtime_factory()  # ready: the unmount below needs the filesystem

    # an API error that names what it was asked for reaches the test through a runtime answer
    status, body = post(rt.url + "/v1/model/unmount", {"model_name": marker})
    assert status >= 400 and marker in body, (status, body)
    # ... and the runtime logs the refused request in its log file
    assert marker in rt.log(), rt.log_tail()
    where = secrets_audit.found_in(marker)
    assert any(w.startswith("aibrix_runtime answer") for w in where), where
    assert any(w.startswith("aibrix_runtime log") for w in where), where

    r = subprocess.run([str(DOWNLOAD), "--model-uri", "s3://%s/x/" % marker, "--local-dir",
                        str(tmp_path / "dl")], env=clean_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and marker in r.stderr, r.stderr
    assert "aibrix_download errors" in secrets_audit.found_in(marker)

    # a registered secret found anywhere is what fails the session
    assert secrets_audit.leaks() == []
