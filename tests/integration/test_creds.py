"""test_creds.py - the S3 credential chain (downloader/creds.c), end to end over real sockets.

Each test runs tests/tools/creds_probe (built from the real creds.c) with a hand-made
environment and reads what it found; STS, the container endpoint and IMDSv2 are played by
tests/fakes/fake_aws_meta.py. The probe never sees the host's AWS_* or proxy variables, and
IMDS is disabled unless a test points it at the fake, so nothing leaves the machine.
Run: /usr/bin/python3 -m pytest tests/integration/test_creds.py  (AIBRIX_BUILD_DIR = build dir)
"""
import errno
import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import secrets_audit

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fakes" / "fake_aws_meta.py"
ROLE_ARN = "arn:aws:iam::123456789012:role/aibrix-models"
WEB_TOKEN = secrets_audit.secret("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.fakeSignature-web-identity")
CONTAINER_TOKEN = secrets_audit.secret("fakeContainerAuthToken-0123456789abcdef")
ENV_SECRET = secrets_audit.secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
ENV_TOKEN = secrets_audit.secret("FQoGZXIvYXdzEXAMPLETOKEN-env-session")
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class Fake:
    """A running fake_aws_meta.py and its control endpoints."""

    def __init__(self, proc, port, tmp):
        self.proc, self.port, self.tmp = proc, port, tmp
        self.url = "http://127.0.0.1:%d" % port
        self.web_token_file = tmp / "web-identity-token"
        self.container_token_file = tmp / "container-token"

    def _call(self, path, data=None):
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def config(self, **kw):
        """Set the fake's behaviour (and reset its counts); unspecified keys get defaults."""
        cfg = {"expires_in": 3600, "sts_fail_after": None, "imds_role": "fake-role"}
        cfg.update(kw)
        self._call("/__fake/config", json.dumps(cfg).encode())

    def stats(self):
        return self._call("/__fake/stats")

    def count(self, name):
        return self.stats()["counts"].get(name, 0)


@pytest.fixture(scope="module")
def aws_meta(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aws_meta")
    # A trailing newline, as `kubectl create token > file` leaves it; both sides strip it.
    (tmp / "web-identity-token").write_text(WEB_TOKEN + "\n")
    (tmp / "container-token").write_text(CONTAINER_TOKEN)
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), "--port", "0", "--role-arn", ROLE_ARN,
         "--web-token-file", str(tmp / "web-identity-token"),
         "--container-token", CONTAINER_TOKEN],
        stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("READY "), "fake_aws_meta did not start: %r" % line
        yield Fake(proc, int(line.split()[1]), tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def fresh_fake(request):
    """Tests that use the fake start from its default behaviour and zero counts."""
    if "aws_meta" in request.fixturenames:
        request.getfixturevalue("aws_meta").config()


@pytest.fixture(scope="module")
def creds_probe():
    build = Path(os.environ.get("AIBRIX_BUILD_DIR", REPO / "build"))
    probe = build / "tests" / "tools" / "creds_probe"
    assert probe.is_file(), "%s not built (set AIBRIX_BUILD_DIR to the meson build dir)" % probe
    return probe


def run_probe(probe, env, *args, timeout=30):
    """Run the probe with only PATH/HOME/sanitizer settings from our environment plus env.
    IMDS is disabled unless env sets AWS_EC2_METADATA_DISABLED itself (None removes it)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("AWS_") and k.lower() not in PROXY_VARS}
    base["AWS_EC2_METADATA_DISABLED"] = "true"
    for k, v in env.items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = v
    return subprocess.run([str(probe), "-d", *args], env=base, capture_output=True, text=True,
                          timeout=timeout)


def parse_lines(stdout):
    """[{provider, access_key, session_token_len, expires}] from the probe's output lines."""
    out = []
    for line in stdout.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split())
        fields["session_token_len"] = int(fields["session_token_len"])
        fields["expires"] = int(fields["expires"])
        out.append(fields)
    return out


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return parse_lines(proc.stdout)


def failed(proc, rc):
    """The probe failed with dl_creds_get returning -rc; returns its stderr."""
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "rc=-%d " % rc in proc.stderr, proc.stderr
    return proc.stderr


def assert_no_secrets(proc, *extra, fake=None):
    """No secret we set or the fake issued appears anywhere in the probe's output."""
    secrets = [ENV_SECRET, ENV_TOKEN, WEB_TOKEN, CONTAINER_TOKEN, *extra]
    if fake:
        secrets += fake.stats()["issued"]
    secrets_audit.secret(*secrets)
    for s in secrets:
        assert s not in proc.stdout and s not in proc.stderr, "secret leaked: %s" % s[:6]


def web_identity_env(fake, **kw):
    env = {"AWS_ROLE_ARN": ROLE_ARN, "AWS_WEB_IDENTITY_TOKEN_FILE": str(fake.web_token_file),
           "AWS_ENDPOINT_URL_STS": fake.url + "/"}
    env.update(kw)
    return env


def container_env(fake, **kw):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": fake.url + "/container/creds",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(fake.container_token_file)}
    env.update(kw)
    return env


def imds_env(fake):
    return {"AWS_EC2_METADATA_DISABLED": None, "AWS_EC2_METADATA_SERVICE_ENDPOINT": fake.url}


# ---- env keys and explicit keys -------------------------------------------------------------

def test_env_keys_with_session_token(creds_probe):
    p = run_probe(creds_probe, {"AWS_ACCESS_KEY_ID": "AKIAENVEXAMPLE",
                                "AWS_SECRET_ACCESS_KEY": ENV_SECRET,
                                "AWS_SESSION_TOKEN": ENV_TOKEN})
    assert ok(p) == [{"provider": "env", "access_key": "AKIAENVEXAMPLE",
                      "session_token_len": len(ENV_TOKEN), "expires": 0}]
    assert_no_secrets(p)


@pytest.mark.parametrize("present,missing", [
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
])
def test_only_one_env_key_is_a_clear_error(creds_probe, aws_meta, present, missing):
    # Even with web identity available, a half-set pair must not fall through to it.
    env = web_identity_env(aws_meta)
    env[present] = ENV_SECRET if present == "AWS_SECRET_ACCESS_KEY" else "AKIAENVEXAMPLE"
    p = run_probe(creds_probe, env)
    assert p.returncode == 3 and p.stdout == ""
    assert "%s is set but %s is not" % (present, missing) in p.stderr
    assert aws_meta.count("sts") == 0
    assert_no_secrets(p)


def test_explicit_keys_win_over_env(creds_probe):
    p = run_probe(creds_probe, {"AWS_ACCESS_KEY_ID": "AKIAENVEXAMPLE",
                                "AWS_SECRET_ACCESS_KEY": ENV_SECRET},
                  "-a", "AKIAEXPLICIT", "-s", "explicitSecretValue")
    assert ok(p) == [{"provider": "explicit", "access_key": "AKIAEXPLICIT",
                      "session_token_len": 0, "expires": 0}]


def test_explicit_access_key_without_secret_is_einval(creds_probe):
    p = run_probe(creds_probe, {}, "-a", "AKIAEXPLICIT")
    assert p.returncode == 3
    assert "both the access key and the secret key" in p.stderr


# ---- web identity ---------------------------------------------------------------------------

def test_web_identity_via_sts(creds_probe, aws_meta):
    before = time.time()
    p = run_probe(creds_probe, web_identity_env(aws_meta))
    [c] = ok(p)
    assert c["provider"] == "web-identity"
    assert c["access_key"].startswith("ASIAFAKESTS")
    assert c["session_token_len"] > 0
    assert before + 3600 - 5 <= c["expires"] <= time.time() + 3600 + 5
    assert aws_meta.count("sts") == 1
    assert_no_secrets(p, fake=aws_meta)


def test_web_identity_wrong_role_is_eacces(creds_probe, aws_meta):
    p = run_probe(creds_probe, web_identity_env(
        aws_meta, AWS_ROLE_ARN="arn:aws:iam::123456789012:role/other"))
    err = failed(p, errno.EACCES)
    assert "AccessDenied" in err and "HTTP 403" in err
    assert_no_secrets(p, fake=aws_meta)


def test_web_identity_token_must_match_file(creds_probe, aws_meta, tmp_path):
    other = tmp_path / "token"
    other.write_text("eyJ.some-other-token.sig")
    p = run_probe(creds_probe, web_identity_env(
        aws_meta, AWS_WEB_IDENTITY_TOKEN_FILE=str(other)))
    assert "InvalidIdentityToken" in failed(p, errno.EACCES)
    assert_no_secrets(p, "eyJ.some-other-token.sig", fake=aws_meta)


def test_web_identity_missing_token_file_names_it(creds_probe, aws_meta, tmp_path):
    p = run_probe(creds_probe, web_identity_env(
        aws_meta, AWS_WEB_IDENTITY_TOKEN_FILE=str(tmp_path / "absent")))
    err = failed(p, errno.EIO)
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in err and "absent" in err
    assert aws_meta.count("sts") == 0


def test_web_identity_half_configured_falls_through_with_warning(creds_probe):
    p = run_probe(creds_probe, {"AWS_ROLE_ARN": ROLE_ARN})
    failed(p, errno.ENOENT)
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in p.stderr


def test_sts_endpoint_is_regional(creds_probe, aws_meta):
    # The fake acts as an https proxy that records CONNECT targets and refuses them.
    cases = [({"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-3"),
             ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
             ({}, "us-east-1")]
    for region_env, region in cases:
        aws_meta.config()
        env = web_identity_env(aws_meta, AWS_ENDPOINT_URL_STS=None, https_proxy=aws_meta.url,
                               **region_env)
        failed(run_probe(creds_probe, env), errno.EIO)
        assert aws_meta.stats()["connects"] == ["sts.%s.amazonaws.com:443" % region]


def test_credentials_are_cached_until_near_expiry(creds_probe, aws_meta):
    p = run_probe(creds_probe, web_identity_env(aws_meta), "-n", "3")
    lines = ok(p)
    assert len(lines) == 3 and lines[0] == lines[1] == lines[2]
    assert aws_meta.count("sts") == 1


def test_threads_share_one_fetch(creds_probe, aws_meta):
    lines = ok(run_probe(creds_probe, web_identity_env(aws_meta), "-j", "8", "-n", "5"))
    assert len(lines) == 40 and all(line == lines[0] for line in lines)
    assert aws_meta.count("sts") == 1


def test_refresh_within_five_minutes_of_expiry(creds_probe, aws_meta):
    aws_meta.config(expires_in=120)
    lines = ok(run_probe(creds_probe, web_identity_env(aws_meta), "-n", "2"))
    assert aws_meta.count("sts") == 2
    assert lines[0]["access_key"] != lines[1]["access_key"]


def test_failed_refresh_keeps_still_valid_credentials(creds_probe, aws_meta):
    aws_meta.config(expires_in=120, sts_fail_after=1)
    p = run_probe(creds_probe, web_identity_env(aws_meta), "-n", "3")
    lines = ok(p)
    assert len(lines) == 3 and lines[0] == lines[1] == lines[2]
    # one success, one failed refresh, then no new attempt within the back-off
    assert aws_meta.count("sts") == 2 and aws_meta.count("sts_failed") == 1
    assert "refresh failed" in p.stderr and "ServiceUnavailable" in p.stderr
    assert_no_secrets(p, fake=aws_meta)


# ---- container ------------------------------------------------------------------------------

def test_container_full_uri_with_token_file(creds_probe, aws_meta):
    p = run_probe(creds_probe, container_env(aws_meta))
    [c] = ok(p)
    assert c["provider"] == "container" and c["access_key"].startswith("ASIAFAKECONT")
    assert c["session_token_len"] > 0 and c["expires"] > time.time() + 3000
    assert aws_meta.count("container") == 1 and aws_meta.count("container_unauthorized") == 0
    assert_no_secrets(p, fake=aws_meta)


def test_container_token_from_env(creds_probe, aws_meta):
    env = container_env(aws_meta, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=None,
                        AWS_CONTAINER_AUTHORIZATION_TOKEN=CONTAINER_TOKEN)
    p = run_probe(creds_probe, env)
    assert ok(p)[0]["provider"] == "container"
    assert_no_secrets(p, fake=aws_meta)


def test_container_wrong_token_is_eacces(creds_probe, aws_meta):
    env = container_env(aws_meta, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=None,
                        AWS_CONTAINER_AUTHORIZATION_TOKEN="wrong-token-value")
    p = run_probe(creds_probe, env)
    assert "HTTP 401" in failed(p, errno.EACCES)
    assert aws_meta.count("container_unauthorized") == 1
    assert_no_secrets(p, "wrong-token-value", fake=aws_meta)


def test_container_plain_http_to_remote_host_is_refused(creds_probe):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://198.51.100.7/creds",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN}
    p = run_probe(creds_probe, env)
    assert "only https" in failed(p, errno.EINVAL)
    assert_no_secrets(p)


def test_container_relative_uri_wins_over_full_uri(creds_probe, aws_meta):
    env = container_env(aws_meta, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="/v2/credentials/x")
    p = run_probe(creds_probe, env)
    assert p.returncode == 3
    assert "http://169.254.170.2/v2/credentials/x" in p.stderr
    assert aws_meta.count("container") == 0


def test_link_local_services_bypass_proxies(creds_probe, aws_meta):
    env = container_env(aws_meta, http_proxy="http://127.0.0.1:9", HTTP_PROXY=None)
    assert ok(run_probe(creds_probe, env))[0]["provider"] == "container"


# ---- IMDSv2 ---------------------------------------------------------------------------------

def test_imds_v2(creds_probe, aws_meta):
    p = run_probe(creds_probe, imds_env(aws_meta))
    [c] = ok(p)
    assert c["provider"] == "imds" and c["access_key"].startswith("ASIAFAKEIMDS")
    assert c["session_token_len"] > 0
    counts = aws_meta.stats()["counts"]
    assert counts.get("imds_token") == 1 and counts.get("imds_role") == 1
    assert counts.get("imds_creds") == 1 and "imds_unauthorized" not in counts
    assert_no_secrets(p, fake=aws_meta)


def test_fake_imds_refuses_requests_without_a_token(aws_meta):
    url = aws_meta.url + "/latest/meta-data/iam/security-credentials/"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=5)
    assert e.value.code == 401


def test_imds_without_role_is_enoent(creds_probe, aws_meta):
    aws_meta.config(imds_role=None)
    assert "no IAM role" in failed(run_probe(creds_probe, imds_env(aws_meta)), errno.ENOENT)


def test_imds_unreachable_is_enoent(creds_probe):
    env = {"AWS_EC2_METADATA_DISABLED": None,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"}
    assert "IMDS not reachable" in failed(run_probe(creds_probe, env), errno.ENOENT)


# ---- order of the chain ---------------------------------------------------------------------

def test_env_wins_over_web_identity(creds_probe, aws_meta):
    env = web_identity_env(aws_meta, AWS_ACCESS_KEY_ID="AKIAENVEXAMPLE",
                           AWS_SECRET_ACCESS_KEY=ENV_SECRET)
    assert ok(run_probe(creds_probe, env))[0]["provider"] == "env"
    assert aws_meta.count("sts") == 0


def test_web_identity_wins_over_container(creds_probe, aws_meta):
    env = {**container_env(aws_meta), **web_identity_env(aws_meta)}
    assert ok(run_probe(creds_probe, env))[0]["provider"] == "web-identity"
    assert aws_meta.count("container") == 0


def test_container_wins_over_imds(creds_probe, aws_meta):
    env = {**imds_env(aws_meta), **container_env(aws_meta)}
    assert ok(run_probe(creds_probe, env))[0]["provider"] == "container"
    assert aws_meta.count("imds_token") == 0


def test_failing_web_identity_does_not_fall_through(creds_probe, aws_meta):
    env = {**container_env(aws_meta),
           **web_identity_env(aws_meta, AWS_ROLE_ARN="arn:aws:iam::123456789012:role/other")}
    failed(run_probe(creds_probe, env), errno.EACCES)
    assert aws_meta.count("container") == 0


def test_nothing_configured_and_imds_disabled_is_enoent(creds_probe):
    p = run_probe(creds_probe, {})
    assert "no credentials" in failed(p, errno.ENOENT)
    assert p.stdout == ""
