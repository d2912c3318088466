"""The fakes are faithful: official clients work against them, bad clients don't.

Why: the downloader's HF and TOS tests run against fakes we wrote
(tests/fakes/fake_hf.py, fake_tos.py); those tests only mean something if the
fakes behave like the real services. Here the official clients
(@huggingface/hub, @volcengine/tos-sdk; boto3 against s3rver) list and download
through them and the bytes are compared by sha256; published signing vectors
pin the TOS signer; and the fault-injection controls the C tests rely on are
checked to do what they say.
"""

import hashlib
import http.client
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parent.parent / "fakes"
sys.path.insert(0, str(FAKES))
import fake_tos  # noqa: E402
import modelgen  # noqa: E402

HF_CLIENT = FAKES / "fidelity" / "hf_client.mjs"
TOS_CLIENT = FAKES / "fidelity" / "tos_client.mjs"
REPO = "fake-org/fake-llama"


def sha256_file(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def git_blob_oid(p):
    data = Path(p).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def get(url, headers=None, method="GET"):
    """-> (status, headers, body) without raising on HTTP errors or following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# ---------------------------------------------------------------------------
# signing vectors and CRC

def test_tos4_signature_matches_published_vectors():
    sk = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    dt = "20210721T104454Z"
    # header form (Go SDK TestAlgV4): GET https://test.tos.com:8080/test.txt
    sig, _, sts = fake_tos.compute_signature(
        sk, "cn-north-1", dt, "GET", fake_tos.canonical_uri("/test.txt"), "",
        {"host": "test.tos.com:8080", "x-tos-date": dt}, ["host", "x-tos-date"], fake_tos.EMPTY_SHA256)
    assert sts.startswith("TOS4-HMAC-SHA256\n20210721T104454Z\n20210721/cn-north-1/tos/request\n")
    assert sig == "3453b54ecfc50e6ed3fc15cbdb82f8a18d644063302080fb18ee10daa4f1a23f"
    # query (pre-signed) form, Expires 3600
    q = urllib.parse.urlencode({
        "X-Tos-Algorithm": "TOS4-HMAC-SHA256",
        "X-Tos-Credential": "AKIAIOSFODNN7EXAMPLE/20210721/cn-north-1/tos/request",
        "X-Tos-Date": dt, "X-Tos-Expires": "3600", "X-Tos-SignedHeaders": "host"})
    sig, _, _ = fake_tos.compute_signature(sk, "cn-north-1", dt, "GET", "/test.txt", fake_tos.canonical_query(q),
                                           {"host": "test.tos.com:8080"}, ["host"], "UNSIGNED-PAYLOAD")
    assert sig == "decc75e2b2d453117f81e53954eb2cd3a2f56db2951e9b2257863db4c4921111"


def test_crc64_ecma_matches_the_definition():
    assert fake_tos.crc64_reference(b"123456789") == 0x995DC9BBDF1939FA  # CRC-64/XZ check value
    assert fake_tos.crc64_chunks([b"1234", b"", b"56789"]) == 0x995DC9BBDF1939FA
    assert fake_tos.crc64_chunks([]) == 0 == fake_tos.crc64_reference(b"")
    for n in (1, 7, 4096, 70001):
        data = bytes((i * 131 + n) & 0xFF for i in range(n))
        assert fake_tos.crc64_chunks([data]) == fake_tos.crc64_reference(data)


def test_modelgen_is_deterministic_and_writes_valid_safetensors(tmp_path):
    a = modelgen.generate(str(tmp_path / "a"), size="3M", seed=7)
    b = modelgen.generate(str(tmp_path / "b"), size="3M", seed=7)
    c = modelgen.generate(str(tmp_path / "c"), size="3M", seed=8)
    assert a == b and a != c
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "original/params.json"} <= set(a)
    total = sum(v["size"] for v in a.values())
    assert 3 << 20 <= total <= (3 << 20) * 1.05
    lora = modelgen.generate(str(tmp_path / "lora"), size=None, seed=1, lora=True)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(lora)
    for f in list((tmp_path / "a").rglob("*.safetensors")) + [tmp_path / "lora" / "adapter_model.safetensors"]:
        header, start = modelgen.read_safetensors_header(f)
        spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
        assert spans[0][0] == 0
        assert all(x[1] == y[0] for x, y in zip(spans, spans[1:]))  # contiguous
        assert start % 8 == 0 and start + spans[-1][1] == f.stat().st_size
        for k, v in header.items():
            if k != "__metadata__":
                n = modelgen.DTYPE_SIZE[v["dtype"]]
                for d in v["shape"]:
                    n *= d
                assert v["data_offsets"][1] - v["data_offsets"][0] == n


# ---------------------------------------------------------------------------
# fake HF Hub vs @huggingface/hub

def test_hf_official_client_lists_and_downloads(hf_hub, model_tree_factory, run_node, tmp_path):
    tree = model_tree_factory(size="3M", seed=3, odd_names=True)
    plain = model_tree_factory(size="2M", seed=4)
    hf_hub.add_repo(REPO, tree.path)
    hf_hub.add_repo(REPO + "-plain", plain.path)
    hf_hub.control(page_size=2)  # force many Link-paginated pages
    lfs_file = "model.safetensors"
    small = ["config.json", "original/deeper/notes.txt", "extra/dir a/w+b c.txt", "extra/\u00fcnicode-\u00e9.json"]
    out = run_node(HF_CLIENT, {
        "hubUrl": hf_hub.url, "repo": REPO, "revision": "main",
        "download": small + [lfs_file, "extra/empty.txt"], "missingPath": "no/such/file.bin",
        "missingRepo": "fake-org/does-not-exist", "snapshotDir": str(tmp_path / "hf_cache"),
        "snapshotRepo": REPO + "-plain",
    })
    commit = hf_hub.commit(REPO)
    assert out["modelInfo"]["sha"] == commit and len(commit) == 40
    assert sorted(out["modelInfo"]["siblings"]) == tree.files()

    entries = out["files"]
    assert "error" not in entries, entries
    files = {e["path"]: e for e in entries if e["type"] == "file"}
    dirs = {e["path"] for e in entries if e["type"] == "directory"}
    assert sorted(files) == tree.files()
    assert {"original", "original/deeper", "extra", "extra/dir a"} <= dirs
    for path, e in files.items():
        assert e["size"] == tree.manifest[path]["size"]
        if path.endswith(".safetensors") or e["size"] >= 1 << 20:
            assert e["lfs"]["oid"] == tree.manifest[path]["sha256"] and e["lfs"]["size"] == e["size"]
            assert 100 < e["lfs"]["pointerSize"] < 200
        else:
            assert "lfs" not in e and e["oid"] == git_blob_oid(tree.path / path)

    for path in small + [lfs_file]:
        d = out["downloads"][path]
        assert "error" not in d, (path, d)
        assert d["sha256"] == tree.manifest[path]["sha256"] and d["size"] == tree.manifest[path]["size"]
        assert d["info"]["size"] == tree.manifest[path]["size"]
        want = tree.manifest[path]["sha256"] if path == lfs_file else git_blob_oid(tree.path / path)
        assert d["info"]["etag"].strip('"') == want
    assert out["missing"] == {"info": None}  # EntryNotFound is recognised as "no such file"
    # @huggingface/hub probes every file with `Range: bytes=0-0`; for an empty file that
    # range is unsatisfiable (RFC 9110), so the fake answers 416 and the client gives up.
    assert out["downloads"]["extra/empty.txt"]["error"]["statusCode"] == 416
    assert out["missingRepo"]["error"]["statusCode"] == 401  # anonymous: 401 RepoNotFound, as the Hub

    snap = out["snapshot"]
    assert "error" not in snap, snap
    assert snap["dir"].endswith("/snapshots/" + hf_hub.commit(REPO + "-plain"))
    assert snap["files"] == {p: v["sha256"] for p, v in plain.manifest.items()}

    st = hf_hub.stats()
    n_entries = len(files) + len(dirs)
    assert st["requests"]["tree"] >= -(-n_entries // 2)  # every page fetched
    assert st["requests"]["cdn"] >= 2 and st["bytes_by_path"][REPO + "/" + lfs_file] >= tree.manifest[lfs_file]["size"]
    assert all(not r["auth"] for r in st["log"] if r["kind"] == "cdn")


def test_hf_gated_repo_token_is_not_forwarded_to_cdn(hf_hub, model_tree, run_node):
    hf_hub.add_repo(REPO, model_tree.path)
    hf_hub.control(gated=[REPO])
    cfg = {"hubUrl": hf_hub.url, "repo": REPO, "download": ["config.json", "model.safetensors"]}
    anon = run_node(HF_CLIENT, cfg)
    assert anon["downloads"]["config.json"]["error"]["statusCode"] == 401
    assert anon["downloads"]["model.safetensors"]["error"]["statusCode"] == 401
    wrong = run_node(HF_CLIENT, dict(cfg, accessToken="hf_wrong_token"))
    assert wrong["downloads"]["config.json"]["error"]["statusCode"] == 403
    hf_hub.reset()
    hf_hub.control(gated=[REPO])
    ok = run_node(HF_CLIENT, dict(cfg, accessToken=hf_hub.token))
    for p in cfg["download"]:
        assert ok["downloads"][p]["sha256"] == model_tree.manifest[p]["sha256"]
    log = hf_hub.stats()["log"]
    assert any(r["kind"] == "resolve" and r["auth"] for r in log)
    cdn = [r for r in log if r["kind"] == "cdn"]
    assert cdn and all(not r["auth"] and r["status"] in (200, 206) for r in cdn)
    # and the CDN really refuses a request that carries Authorization
    loc = get(hf_hub.url + "/%s/resolve/main/model.safetensors" % REPO,
              {"Authorization": "Bearer " + hf_hub.token})[1]["Location"]
    assert loc.startswith(hf_hub.cdn_url + "/")
    assert get(loc, {"Authorization": "Bearer " + hf_hub.token})[0] == 400
    assert get(loc)[0] == 200
    assert get(loc.replace("Signature=", "Signature=0"))[0] == 403


def test_hf_pr_revision_resolves_to_its_own_commit(hf_hub, model_tree_factory, run_node):
    main = model_tree_factory(size="2M", seed=1)
    pr = model_tree_factory(size="2M", seed=2)
    hf_hub.add_repo(REPO, main.path)
    hf_hub.add_revision(REPO, "refs/pr/1", pr.path)
    out = run_node(HF_CLIENT, {"hubUrl": hf_hub.url, "repo": REPO, "revision": "refs/pr/1",
                               "download": ["config.json", "model.safetensors"]})
    assert out["modelInfo"]["sha"] == hf_hub.commit(REPO, "refs/pr/1") != hf_hub.commit(REPO)
    assert sorted(e["path"] for e in out["files"] if e["type"] == "file") == pr.files()
    for p in ("config.json", "model.safetensors"):
        assert out["downloads"][p]["sha256"] == pr.manifest[p]["sha256"] != main.manifest[p]["sha256"]
    # the commit sha works as a revision too
    sha = hf_hub.commit(REPO, "refs/pr/1")
    st, h, body = get(hf_hub.url + "/%s/resolve/%s/config.json" % (REPO, sha))
    assert st == 200 and h["X-Repo-Commit"] == sha and hashlib.sha256(body).hexdigest() == pr.manifest["config.json"]["sha256"]


def test_hf_errors_and_fault_injection(hf_hub, model_tree):
    hf_hub.add_repo(REPO, model_tree.path)
    u = hf_hub.url
    st, h, _ = get(u + "/api/models/%s/revision/nope" % REPO)
    assert (st, h["X-Error-Code"]) == (404, "RevisionNotFound")
    st, h, _ = get(u + "/%s/resolve/main/missing.txt" % REPO)
    assert (st, h["X-Error-Code"]) == (404, "EntryNotFound")
    st, h, _ = get(u + "/api/models/no/repo/revision/main", {"Authorization": "Bearer " + hf_hub.token})
    assert (st, h["X-Error-Code"]) == (404, "RepoNotFound")
    cfg = u + "/%s/resolve/main/config.json" % REPO
    size = model_tree.manifest["config.json"]["size"]
    st, h, body = get(cfg, {"Range": "bytes=%d-" % (size + 5)})
    assert st == 416 and h["Content-Range"] == "bytes */%d" % size
    st, h, body = get(cfg, {"Range": "bytes=-10"})
    assert st == 206 and h["Content-Range"] == "bytes %d-%d/%d" % (size - 10, size - 1, size) and len(body) == 10

    hf_hub.faults({"match": "resolve", "status": 503, "count": 2},
                  {"match": "api", "status": 429, "retry_after": 2, "count": 1})
    assert get(cfg)[0] == 503 and get(cfg)[0] == 503 and get(cfg)[0] == 200
    st, h, _ = get(u + "/api/models/%s/revision/main" % REPO)
    assert st == 429 and h["Retry-After"] == "2" and h["RateLimit"] == '"api";r=0;t=2'
    assert get(u + "/api/models/%s/revision/main" % REPO)[0] == 200

    # truncate: full Content-Length, fewer bytes, then the connection closes
    hf_hub.faults({"match": "cdn", "truncate": 1000})
    loc = get(u + "/%s/resolve/main/model.safetensors" % REPO)[1]["Location"]
    pu = urllib.parse.urlsplit(loc)
    c = http.client.HTTPConnection(pu.hostname, pu.port, timeout=10)
    c.request("GET", pu.path + "?" + pu.query)
    r = c.getresponse()
    assert int(r.headers["Content-Length"]) == model_tree.manifest["model.safetensors"]["size"]
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c.close()

    # corrupt: one flipped byte, count-limited
    hf_hub.faults({"match": "resolve", "path": "*/config.json", "corrupt": True, "count": 1})
    bad, good = get(cfg)[2], get(cfg)[2]
    assert len(bad) == len(good) == size and bad != good
    assert hashlib.sha256(good).hexdigest() == model_tree.manifest["config.json"]["sha256"]

    # reset: the connection dies before any response
    hf_hub.faults({"match": "revision", "reset": True})
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, urllib.error.URLError)):
        get(u + "/api/models/%s/revision/main" % REPO)

    # skip + delay: the 2nd matching request waits; rate: the body trickles
    hf_hub.reset()
    hf_hub.faults({"match": "resolve", "skip": 1, "delay": 0.3})
    get(cfg)
    t1 = time.monotonic()
    get(cfg)
    t2 = time.monotonic()
    hf_hub.faults({"match": "resolve", "rate": 2000})
    assert get(cfg)[2] == good
    t3 = time.monotonic()
    assert t2 - t1 >= 0.3 and t3 - t2 >= size / 2000 * 0.8
    log = hf_hub.stats()["log"]
    assert [r["fault"] is not None for r in log] == [False, True, True]
    assert hf_hub.stats()["faults_fired"] == 2

    # keep-alive: several requests on one connection; stats count them
    hf_hub.reset()
    c = http.client.HTTPConnection("127.0.0.1", hf_hub.port, timeout=10)
    for _ in range(3):
        c.request("GET", "/%s/resolve/main/config.json" % REPO)
        assert c.getresponse().read() == good
    c.close()
    st = hf_hub.stats()
    assert st["connections"] == 1 and st["requests"] == {"resolve": 3}
    assert st["bytes_total"] == 3 * size and st["bytes_by_path"] == {REPO + "/config.json": 3 * size}


# ---------------------------------------------------------------------------
# fake TOS vs @volcengine/tos-sdk

def test_tos_official_sdk_lists_and_gets(tos_server, model_tree_factory, run_node, tmp_path):
    tree = model_tree_factory(size="3M", seed=5, odd_names=True)
    keys = tos_server.put_tree("model-bucket", "llm/fake", tree.path)
    tos_server.control(page_size=3)  # the server caps pages, the SDK must follow tokens
    big = "llm/fake/model.safetensors"
    data = (tos_server.root / "model-bucket" / big).read_bytes()
    start, end = 1000, 1000 + 300 * 1024 - 1
    out = run_node(TOS_CLIENT, {
        "endpoint": tos_server.endpoint, "region": tos_server.region, "ak": tos_server.ak, "sk": tos_server.sk,
        "bucket": "model-bucket", "prefix": "llm/", "pageKeys": 4,
        "range": {"key": big, "start": start, "end": end},
        "download": {"key": big, "path": str(tmp_path / "dl.bin"), "partSize": 1 << 20},
        "missingKey": "llm/fake/absent.bin", "ifMatchKey": "llm/fake/config.json",
        "virtualHost": {"endpoint": "tos-cn-beijing.volces.com"},
    })
    lst = out["list"]
    assert "error" not in lst, lst
    assert [c["Key"] for c in lst["Contents"]] == keys and lst["IsTruncated"] is False
    for c in lst["Contents"]:
        p = tos_server.root / "model-bucket" / c["Key"]
        assert c["Size"] == p.stat().st_size
        assert c["ETag"] == '"%s"' % hashlib.md5(p.read_bytes()).hexdigest()
        assert c["StorageClass"] == "STANDARD" and c["LastModified"].endswith("Z")
    pages = out["pages"]
    assert [k["Key"] for pg in pages for k in pg["Contents"]] == keys
    assert all(pg["KeyCount"] <= 3 for pg in pages) and pages[-1]["IsTruncated"] is False

    rng = out["range"]
    assert rng["statusCode"] == 206 and rng["contentRange"] == "bytes %d-%d/%d" % (start, end, len(data))
    assert rng["sha256"] == hashlib.sha256(data[start:end + 1]).hexdigest()
    assert out["head"]["contentLength"] == str(len(data))
    crc_listed = next(c["HashCrc64ecma"] for c in lst["Contents"] if c["Key"] == big)
    assert out["head"]["crc64"] == crc_listed
    # the SDK's own CRC-64 (tos-crc64-js) of the whole object equals what the fake lists;
    # downloadFile(enableCRC) also checked it against x-tos-hash-crc64ecma itself
    dl = out["download"]
    assert "error" not in dl, dl
    assert dl["sha256"] == hashlib.sha256(data).hexdigest() and dl["crc64"] == crc_listed

    assert out["missing"]["error"]["statusCode"] == 404
    assert out["ifMatch"]["error"]["statusCode"] == 412
    vh = out["virtualHost"]
    assert "error" not in vh, vh
    assert [c["Key"] for c in vh["list"]["Contents"]] == keys
    assert vh["range"]["sha256"] == rng["sha256"]

    log = tos_server.stats()["log"]
    assert any(r["host"] == "model-bucket.tos-cn-beijing.volces.com" for r in log)  # virtual-hosted
    assert any(r["host"] == tos_server.endpoint and r["path"].startswith("/model-bucket") for r in log)
    assert {r["status"] for r in log} <= {200, 206, 404, 412}  # no signature was rejected


def test_tos_rejects_bad_signatures(tos_server, model_tree, run_node):
    tos_server.put_tree("bkt1", "m", model_tree.path)
    base = {"endpoint": tos_server.endpoint, "region": tos_server.region, "ak": tos_server.ak, "bucket": "bkt1"}
    out = run_node(TOS_CLIENT, dict(base, sk=tos_server.sk + "x", range={"key": "m/config.json", "start": 0,
                                                                          "end": 9}))
    assert out["list"]["error"]["statusCode"] == 403 and out["list"]["error"]["code"] == "SignatureDoesNotMatch"
    assert out["range"]["error"]["statusCode"] == 403
    out = run_node(TOS_CLIENT, dict(base, sk=tos_server.sk, region="cn-shanghai"))
    assert out["list"]["error"]["statusCode"] == 403
    out = run_node(TOS_CLIENT, dict(base, sk=tos_server.sk, ak="AKLTnobody"))
    assert out["list"]["error"]["code"] == "InvalidAccessKeyId"

    # unsigned -> AccessDenied; a correctly signed request whose query was altered -> mismatch
    st, h, body = get(tos_server.url + "/bkt1/m/config.json")
    err = json.loads(body)
    assert st == 403 and err["Code"] == "AccessDenied" and {"Message", "RequestId", "EC"} <= set(err)

    def signed(path, query):
        dt = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        hdrs = {"host": tos_server.endpoint, "x-tos-date": dt, "x-tos-content-sha256": "UNSIGNED-PAYLOAD"}
        signed_h = sorted(hdrs)
        sig, _, _ = fake_tos.compute_signature(tos_server.sk, tos_server.region, dt, "GET", path, query, hdrs,
                                               signed_h, "UNSIGNED-PAYLOAD")
        hdrs["Authorization"] = "TOS4-HMAC-SHA256 Credential=%s/%s/%s/tos/request, SignedHeaders=%s, Signature=%s" % (
            tos_server.ak, dt[:8], tos_server.region, ";".join(signed_h), sig)
        return hdrs
    q = "list-type=2&max-keys=2&prefix=m%2F"
    h = signed("/bkt1/", fake_tos.canonical_query(q))
    st, _, body = get(tos_server.url + "/bkt1/?" + q, h)
    assert st == 200 and json.loads(body)["KeyCount"] == 2 and json.loads(body)["IsTruncated"] is True
    st, _, body = get(tos_server.url + "/bkt1/?" + q.replace("max-keys=2", "max-keys=3"), h)
    assert st == 403 and json.loads(body)["Code"] == "SignatureDoesNotMatch"
    assert "CanonicalRequest" in json.loads(body)
    st, _, body = get(tos_server.url + "/nobucket/?" + q, signed("/nobucket/", fake_tos.canonical_query(q)))
    assert st == 404 and json.loads(body)["Code"] == "NoSuchBucket"


def test_tos_fault_injection(tos_server, model_tree):
    tos_server.put_tree("bkt1", "m", model_tree.path)
    tos_server.faults({"match": "object", "status": 503, "count": 1})
    st, h, body = get(tos_server.url + "/bkt1/m/config.json")  # the fault fires before auth
    assert st == 503 and json.loads(body)["Code"] == "ServiceUnavailable" and "x-tos-request-id" in h
    st = tos_server.stats()
    assert st["faults_fired"] == 1 and st["requests"] == {"get": 1}


# ---------------------------------------------------------------------------
# s3rver (+ the SigV4-checking front) vs boto3

def test_sigv4_verifier_matches_published_vectors():
    import fakecommon
    import s3_sigv4_proxy as proxy
    empty = hashlib.sha256(b"").hexdigest()
    sig, _, _ = fakecommon.v4_signature(
        "AWS4-HMAC-SHA256", b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "aws4_request", "service",
        "us-east-1", "20150830T123600Z", "GET", "/", "",
        {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}, ["host", "x-amz-date"], empty)
    assert sig == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"  # get-vanilla
    sk, dt = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524T000000Z"
    h = {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9", "x-amz-content-sha256": empty,
         "x-amz-date": dt}
    assert proxy.s3_signature(sk, "us-east-1", dt, "GET", "/test.txt", "", h, sorted(h), empty)[0] == \
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    del h["range"]
    assert proxy.s3_signature(sk, "us-east-1", dt, "GET", "/", fakecommon.canonical_query("max-keys=2&prefix=J"),
                              h, sorted(h), empty)[0] == \
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    h["host"] = "127.0.0.1:9000"
    assert proxy.s3_signature(sk, "us-east-1", dt, "GET", fakecommon.canonical_uri("/models/dir%20a/w%2Bb.bin"),
                              "", h, sorted(h), empty)[0] == \
        "196f6ae0ef4a836ae1acf274a27d4ec0abc754f2590573b9893758ae2af189a6"


def test_s3rver_with_boto3_lists_and_ranged_gets(s3_server, model_tree_factory):
    tree = model_tree_factory(size="3M", seed=9, odd_names=True)
    keys = s3_server.upload_tree(tree.path, prefix="llm/fake")  # PUTs pass the signature check
    s3 = s3_server.client()
    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix="llm/",
                                                            PaginationConfig={"PageSize": 2}):
        seen += [(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])]
    assert [k for k, _, _ in seen] == sorted(keys)
    for k, size, etag in seen:
        p = tree.path / k[len("llm/fake/"):]
        assert size == p.stat().st_size and etag == '"%s"' % hashlib.md5(p.read_bytes()).hexdigest()
    data = (tree.path / "model.safetensors").read_bytes()
    r = s3.get_object(Bucket=s3_server.bucket, Key="llm/fake/model.safetensors", Range="bytes=100-65635")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == data[100:65636]
    assert r["ContentRange"] == "bytes 100-65635/%d" % len(data)
    odd = "llm/fake/extra/dir a/w+b c.txt"
    assert s3.get_object(Bucket=s3_server.bucket, Key=odd)["Body"].read() == (tree.path / odd[9:]).read_bytes()
    st = s3_server.stats()
    assert st["requests"]["put"] == len(keys) and st["requests"]["list"] >= len(keys) // 2
    assert st["bytes_by_path"]["models/llm/fake/model.safetensors"] == 65536

    # the signature is really checked (s3rver alone would accept all of these)
    import botocore.exceptions
    for kw, code in (({"aws_secret_access_key": "WRONG"}, "SignatureDoesNotMatch"),
                     ({"aws_access_key_id": "NOBODY"}, "InvalidAccessKeyId"),
                     ({"region_name": "eu-west-1"}, "AuthorizationHeaderMalformed")):
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            s3_server.client(**kw).list_objects_v2(Bucket=s3_server.bucket)
        assert ei.value.response["Error"]["Code"] == code
    assert get(s3_server.endpoint + "/models/llm/fake/config.json")[0] == 403  # unsigned
    assert get(s3_server.upstream + "/models/llm/fake/config.json")[0] == 200  # ...which s3rver allows
    from botocore.config import Config
    import boto3
    presigner = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.ak,
                             aws_secret_access_key=s3_server.sk, region_name=s3_server.region,
                             config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": s3_server.bucket,
                                                                "Key": "llm/fake/config.json"})
    assert "X-Amz-Signature=" in url
    st, _, body = get(url)
    assert st == 200 and body == (tree.path / "config.json").read_bytes()
    st, _, body = get(url.replace("X-Amz-Expires=", "X-Amz-Expires=1"))
    assert st == 403 and b"SignatureDoesNotMatch" in body

    s3_server.control(anonymous=True)  # a public-read bucket: unsigned passes, bad signatures still fail
    assert get(s3_server.endpoint + "/models/llm/fake/config.json")[0] == 200
    with pytest.raises(botocore.exceptions.ClientError):
        s3_server.client(aws_secret_access_key="WRONG").list_objects_v2(Bucket=s3_server.bucket)
    s3_server.reset()

    # faults work for S3 as for the fakes (e.g. S3's throttling answer)
    s3_server.faults({"match": "get", "status": 503, "count": 1})
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        s3.get_object(Bucket=s3_server.bucket, Key="llm/fake/config.json")
    assert ei.value.response["Error"]["Code"] == "SlowDown"
    assert s3.get_object(Bucket=s3_server.bucket, Key="llm/fake/config.json")["Body"].read()
