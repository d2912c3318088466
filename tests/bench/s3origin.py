"""s3origin.py - the bench's model served as an S3 bucket: s3rver behind an nginx that caps
every connection like the Hugging Face origin (hforigin.py) does.

Why it is shaped so: "aibrix_download >= 2x aws s3 cp" and "the mount >= 3x s3fs" only mean
something on one origin that all of them talk to. s3rver (npm, tests/node_modules, the S3
the integration tests use) speaks enough S3 for every client here: ListObjectsV2, HEAD,
ranged GET, multipart upload. It has no bandwidth limit and does not check signatures, so
nginx sits in front of it as a reverse proxy with the same `limit_rate` per connection as
the HF origin: the S3 rows then see the same per-connection cap as the HF rows, and the
access log gives requests, connections and requests in flight the same way.

How the cap is kept honest: nginx paces a response only between writes and computes each
pause in whole milliseconds, so small writes run fast (with 32 KiB proxy buffers a
connection got 29 MiB/s instead of 24). The proxy therefore buffers 128 KiB at a time and
writes at most 128 KiB per call (sendfile_max_chunk applies to any write), as the HF
origin's sendfile does: an 8 MiB range then takes 0.34 s on either origin.

The bucket is filled once per model with `aws s3 cp --recursive` (8 MB parts, as models
uploaded by the AWS tools are) into a data directory cached next to the model; s3rver
acknowledges a PUT before its file is complete, so the upload counts only once s3rver lists
every object at its full size. Unlike S3, s3rver gives a multipart object the MD5 of its
whole content as ETag (not `...-N`), so aibrix_download verifies every file here.

    with S3Origin(model, rate, workdir, cache_root) as o: o.base_url, o.bucket, o.prefix,
        o.model_uri(), o.client_env(), o.mark(), o.requests_since(m), o.cpu_seconds()
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

import hforigin
from hforigin import die_with_parent, free_port, proc_cpu_s

REPO = hforigin.REPO
S3RVER_JS = os.path.join(REPO, "tests", "node_modules", "s3rver", "bin", "s3rver.js")
AWS = "/usr/bin/aws"  # Debian's AWS CLI v2, not a pyenv shim that may shadow it on PATH

PROXY_SERVER = """\
    upstream s3rver {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        limit_rate {rate};
        client_max_body_size 0;
        location / {{
            proxy_pass http://s3rver;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            # limit_rate paces only what nginx buffers; no temp files, 128 KiB per write
            proxy_buffering on;
            proxy_max_temp_file_size 0;
            proxy_buffer_size 128k;
            proxy_buffers 8 128k;
            proxy_busy_buffers_size 256k;
            proxy_request_buffering off;
        }}
    }}"""


def s3rver_version():
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(S3RVER_JS)),
                               "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def aws_config(path, conns, chunk):
    """An AWS CLI config file: the s3 transfer settings (max_concurrent_requests = conns,
    chunk bytes per part and as the multipart threshold) and nothing else."""
    with open(path, "w") as f:
        f.write("[default]\nregion = %s\ns3 =\n  max_concurrent_requests = %d\n"
                "  multipart_chunksize = %dMB\n  multipart_threshold = %dMB\n"
                % (S3Origin.REGION, conns, chunk >> 20, chunk >> 20))
    return path


class S3Origin(hforigin.Nginx):
    ACCESS_KEY = SECRET_KEY = "S3RVER"  # s3rver's built-in account
    REGION = "us-east-1"
    bucket = "models"
    generator = "s3origin.py"
    name = "s3"

    def __init__(self, model, rate, workdir, cache_root):
        super().__init__(rate, workdir)
        self.model = model
        self.prefix = model.repo
        self.data = os.path.join(cache_root, "s3rver-" + os.path.basename(model.base))
        self.s3rver = None
        self.upstream = None

    # ---- what clients need ----

    def model_uri(self):
        return "s3://%s/%s" % (self.bucket, self.prefix)

    def object_url(self, rel):
        """Unsigned: s3rver lets anonymous GETs through."""
        return "%s/%s/%s/%s" % (self.base_url, self.bucket, self.prefix,
                                urllib.request.quote(rel))

    def served_files(self):
        """s3rver's files for the objects (its filesystem store: KEY._S3rver_object)."""
        return [os.path.join(self.data, self.bucket, self.prefix, rel + "._S3rver_object")
                for rel in sorted(self.model.files)]

    def client_env(self):
        """Credentials and endpoint for aibrix_download, the runtime and the AWS CLI; no
        profile, config or instance metadata of this machine is consulted."""
        return dict(self._credentials_env(), AWS_ENDPOINT_URL_S3=self.base_url,
                    AWS_ENDPOINT_URL=self.base_url)

    def _credentials_env(self):
        return {"AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
                "AWS_REGION": self.REGION, "AWS_DEFAULT_REGION": self.REGION,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_CONFIG_FILE": "/dev/null"}

    # ---- the proxy (hforigin.Nginx) ----

    def server_block(self):
        return PROXY_SERVER.format(port=self.port, rate=self.rate, upstream=self.upstream)

    def ready(self):
        return self._listing(self.base_url) is not None

    def cpu_seconds(self):
        """nginx's CPU and s3rver's: both serve every byte."""
        return super().cpu_seconds() + proc_cpu_s(self.s3rver.pid)

    # ---- s3rver ----

    def __enter__(self):
        self._start_s3rver()
        try:
            if not os.path.exists(self.data + ".uploaded"):
                self._upload()
            return super().__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self.s3rver and self.s3rver.poll() is None:
            self.s3rver.terminate()
            try:
                self.s3rver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.s3rver.kill()
                self.s3rver.wait()
        if self.s3rver_log:
            self.s3rver_log.close()
            self.s3rver_log = None
        return False

    s3rver_log = None

    def _start_s3rver(self):
        if not os.path.exists(S3RVER_JS):
            raise RuntimeError("s3rver is not installed: run `npm ci` in tests/ (make deps)")
        if not os.path.exists(self.data + ".uploaded"):
            shutil.rmtree(self.data, ignore_errors=True)  # a half-done upload
        os.makedirs(self.data, exist_ok=True)
        os.makedirs(self.work, exist_ok=True)
        for attempt in range(5):
            self.upstream = free_port()
            self.s3rver_log = open(os.path.join(self.work, "s3rver.log"), "wb")
            # s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3
            # only has in its legacy provider
            self.s3rver = subprocess.Popen(
                ["node", "--openssl-legacy-provider", S3RVER_JS, "-d", self.data, "-p",
                 str(self.upstream), "-a", "127.0.0.1", "--configure-bucket", self.bucket],
                stdout=self.s3rver_log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.s3rver.poll() is None:
                if self._listing("http://127.0.0.1:%d" % self.upstream) is not None:
                    return
                time.sleep(0.1)
            self.__exit__(None, None, None)
        raise RuntimeError("s3rver did not start; see %s/s3rver.log" % self.work)

    def _listing(self, endpoint):
        """{key: size} under the prefix, or None when the server does not answer."""
        url = "%s/%s?list-type=2&prefix=%s/" % (endpoint, self.bucket,
                                                  urllib.request.quote(self.prefix))
        sizes, token = {}, None
        try:
            while True:
                u = url + ("&continuation-token=" + urllib.request.quote(token) if token else "")
                with urllib.request.urlopen(u, timeout=5) as r:
                    root = ET.fromstring(r.read())
                ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
                for c in root.iter(ns + "Contents"):
                    sizes[c.find(ns + "Key").text] = int(c.find(ns + "Size").text)
                token = root.findtext(ns + "NextContinuationToken")
                if not token:
                    return sizes
        except (OSError, ET.ParseError):
            return None

    def _upload(self):
        endpoint = "http://127.0.0.1:%d" % self.upstream
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, **self._credentials_env())
            env["AWS_CONFIG_FILE"] = aws_config(os.path.join(tmp, "config"), 8, 8 << 20)
            subprocess.run([AWS, "--endpoint-url", endpoint, "s3", "cp", "--recursive",
                            "--only-show-errors", self.model.root,
                            "s3://%s/%s/" % (self.bucket, self.prefix)], check=True, env=env)
        want = {"%s/%s" % (self.prefix, rel): f["size"] for rel, f in self.model.files.items()}
        deadline = time.monotonic() + 120
        while self._listing(endpoint) != want:
            if time.monotonic() > deadline:
                raise RuntimeError("s3rver never listed the complete upload of %s" % self.prefix)
            time.sleep(0.2)
        open(self.data + ".uploaded", "w").close()
