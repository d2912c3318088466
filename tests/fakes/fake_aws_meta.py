#!/usr/bin/env python3
"""fake_aws_meta.py - one stdlib HTTP server playing the three AWS credential services the
downloader talks to, strictly enough that a client getting them wrong fails:

  STS        POST /  Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=..
             &RoleSessionName=..&WebIdentityToken=..  (form, unsigned). The RoleArn must equal
             --role-arn and the token must equal the content of --web-token-file (read on each
             request, surrounding whitespace stripped). Answers the STS XML with the 2011-06-15
             namespace, or an <ErrorResponse> with AccessDenied / InvalidIdentityToken.
  container  GET /container/creds  with Authorization equal to --container-token, else 401.
  IMDSv2     PUT /latest/api/token needs X-aws-ec2-metadata-token-ttl-seconds (1..21600);
             GET /latest/meta-data/... needs a token it issued in X-aws-ec2-metadata-token,
             else 401. The role is "fake-role" (404 when configured to have none).

  proxy      CONNECT host:port is recorded (stats "connects") and refused with 403, so a test
             can point https_proxy here to see which AWS endpoint a client would have called
             without any internet access.

Control (tests only):
  GET  /__fake/stats   {"counts": {endpoint: n}, "issued": [every secret/token handed out],
                        "connects": [CONNECT targets]}
  POST /__fake/config  JSON merged into the config: expires_in (seconds), sts_fail_after
                       (number of further STS successes before answering 503; null = never),
                       imds_role (null = no role attached); also resets the counts.

Prints "READY <port>" once listening. Usage: fake_aws_meta.py --port 0 --role-arn ARN
--web-token-file PATH --container-token TOKEN
"""
import argparse
import datetime
import json
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
IMDS_CREDS = "/latest/meta-data/iam/security-credentials/"


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.config = {"expires_in": 3600, "sts_fail_after": None, "imds_role": "fake-role"}
        self.counts = {}
        self.issued = []
        self.imds_tokens = set()
        self.connects = []
        self.serial = 0

    def count(self, name):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def new_creds(self, kind):
        """Fresh credentials; the access key carries a serial so refreshes are visible."""
        with self.lock:
            self.serial += 1
            ak = "ASIAFAKE%s%04d" % (kind.upper()[:4], self.serial)
            sk = "fakeSecret/%s/%s" % (kind, secrets.token_urlsafe(24))
            tok = "fakeSession%s%s" % (kind, secrets.token_urlsafe(48))
            self.issued += [sk, tok]
            exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                seconds=self.config["expires_in"])
            return ak, sk, tok, exp.strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set in main

    def log_message(self, fmt, *args):  # keep the test output quiet
        pass

    def reply(self, status, body, ctype="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # ---- STS ------------------------------------------------------------------------------
    def sts_error(self, status, code, message):
        self.reply(status, (
            '<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code>'
            '<Message>%s</Message></Error><RequestId>fake-req</RequestId></ErrorResponse>'
        ) % (STS_NS, code, message), "text/xml")

    def do_sts(self, form):
        st = self.state
        st.count("sts")
        one = {k: v[0] for k, v in form.items() if len(v) == 1}
        if self.headers.get("Authorization"):
            return self.sts_error(400, "InvalidParameterValue", "request must be unsigned")
        if one.get("Version") != "2011-06-15":
            return self.sts_error(400, "InvalidAction", "bad Version")
        if not one.get("RoleSessionName"):
            return self.sts_error(400, "ValidationError", "RoleSessionName missing")
        if one.get("RoleArn") != st.args.role_arn:
            return self.sts_error(403, "AccessDenied", "Not authorized to assume that role")
        with open(st.args.web_token_file) as f:
            expected = f.read().strip()
        if one.get("WebIdentityToken") != expected:
            return self.sts_error(400, "InvalidIdentityToken", "token rejected")
        with st.lock:
            left = st.config["sts_fail_after"]
            if left is not None:
                if left <= 0:
                    fail = True
                else:
                    st.config["sts_fail_after"] = left - 1
                    fail = False
            else:
                fail = False
        if fail:
            st.count("sts_failed")
            return self.sts_error(503, "ServiceUnavailable", "fake outage")
        ak, sk, tok, exp = st.new_creds("sts")
        self.reply(200, (
            '<AssumeRoleWithWebIdentityResponse xmlns="%s">'
            "<AssumeRoleWithWebIdentityResult>"
            "<SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>"
            "<AssumedRoleUser><Arn>%s/%s</Arn><AssumedRoleId>AROAFAKE:%s</AssumedRoleId>"
            "</AssumedRoleUser>"
            "<Credentials><SessionToken>%s</SessionToken><SecretAccessKey>%s</SecretAccessKey>"
            "<Expiration>%s</Expiration><AccessKeyId>%s</AccessKeyId></Credentials>"
            "<Audience>sts.amazonaws.com</Audience></AssumeRoleWithWebIdentityResult>"
            "<ResponseMetadata><RequestId>fake-req</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        ) % (STS_NS, st.args.role_arn, one["RoleSessionName"], one["RoleSessionName"], tok, sk,
             exp, ak), "text/xml")

    # ---- container ------------------------------------------------------------------------
    def do_container(self):
        st = self.state
        st.count("container")
        if self.headers.get("Authorization") != st.args.container_token:
            st.count("container_unauthorized")
            return self.reply(401, json.dumps({"code": "Unauthorized",
                                               "message": "bad authorization token"}),
                              "application/json")
        ak, sk, tok, exp = st.new_creds("container")
        self.reply(200, json.dumps({"AccessKeyId": ak, "SecretAccessKey": sk, "Token": tok,
                                    "AccountId": "123456789012", "Expiration": exp}),
                   "application/json")

    # ---- IMDSv2 ---------------------------------------------------------------------------
    def imds_authorized(self):
        st = self.state
        with st.lock:
            ok = self.headers.get("X-aws-ec2-metadata-token") in st.imds_tokens
        if not ok:
            st.count("imds_unauthorized")
            self.reply(401, "")
        return ok

    def do_imds_get(self):
        st = self.state
        if not self.imds_authorized():
            return
        role = st.config["imds_role"]
        if self.path == IMDS_CREDS:
            st.count("imds_role")
            return self.reply(200, role) if role else self.reply(404, "Not Found")
        if role and self.path == IMDS_CREDS + role:
            st.count("imds_creds")
            ak, sk, tok, exp = st.new_creds("imds")
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return self.reply(200, json.dumps({
                "Code": "Success", "LastUpdated": now, "Type": "AWS-HMAC", "AccessKeyId": ak,
                "SecretAccessKey": sk, "Token": tok, "Expiration": exp}, indent=2))
        self.reply(404, "Not Found")

    # ---- dispatch -------------------------------------------------------------------------
    def do_GET(self):
        st = self.state
        if self.path == "/__fake/stats":
            with st.lock:
                body = json.dumps({"counts": st.counts, "issued": st.issued,
                                   "connects": st.connects})
            return self.reply(200, body, "application/json")
        if self.path == "/container/creds":
            return self.do_container()
        if self.path.startswith("/latest/"):
            return self.do_imds_get()
        self.reply(404, "Not Found")

    def do_PUT(self):
        st = self.state
        self.read_body()
        if self.path != "/latest/api/token":
            return self.reply(404, "Not Found")
        st.count("imds_token")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.reply(400, "Bad Request")
        token = "fakeImdsToken" + secrets.token_urlsafe(32)
        with st.lock:
            st.imds_tokens.add(token)
            st.issued.append(token)
        self.reply(200, token)

    def do_CONNECT(self):
        st = self.state
        st.count("connect")
        with st.lock:
            st.connects.append(self.path)
        self.close_connection = True
        self.reply(403, "")

    def do_POST(self):
        st = self.state
        body = self.read_body()
        if self.path == "/__fake/config":
            with st.lock:
                st.config.update(json.loads(body or b"{}"))
                st.counts = {}
                st.connects = []
            return self.reply(200, json.dumps(st.config), "application/json")
        ctype = self.headers.get("Content-Type", "")
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        if (self.path == "/" and ctype.startswith("application/x-www-form-urlencoded")
                and form.get("Action") == ["AssumeRoleWithWebIdentity"]):
            return self.do_sts(form)
        self.reply(404, "Not Found")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--role-arn", required=True)
    ap.add_argument("--web-token-file", required=True)
    ap.add_argument("--container-token", required=True)
    args = ap.parse_args()
    Handler.state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("READY %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
