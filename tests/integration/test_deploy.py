"""The deployment as users apply it (issue 6; deploy/README.md, SPEC §1, §4, §5).

Four kinds of check, each failing with a message that names the broken invariant and where:
  1. every manifest under deploy/k8s parses (multi-document YAML) and keeps the invariants the
     lazy mount needs in a pod: the mount-propagation pair, privileges, the metrics port,
     probe paths, env names that exist in SPEC, no inline credentials, volumes that match;
  2. yamllint is clean on deploy/k8s (config deploy/.yamllint);
  3. deploy/Dockerfile agrees with the project's install step (the Makefile's DEB_PACKAGES
     minus the test-only tools), copies the binaries `make build` produces, and its final
     stage provides every shared library those binaries link (Docker cannot build here);
  4. the sidecar starts exactly as each manifest says (command, args, env; paths remapped to
     a temp dir, the model URI to a generated file:// model) and /ready turns 200 with the
     model's files visible under the mount with the right sha256.
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from runtime import (BUILD, REPO, SANITIZER_MARKERS, Runtime, bounded, clean_env,  # noqa: E402
                     get_free_port, is_mounted, tree_sha256)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fakes"))
import modelgen  # noqa: E402

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
MANIFESTS = sorted(K8S.glob("*.yaml"))
MAKE_BUILD = REPO / "build"  # the Makefile's BUILD default: what the Dockerfile's COPY mirrors
DOWNLOAD = BUILD / "downloader" / "aibrix_download"

# Env names the runtime and the downloader read, from SPEC §1 and §3 (and docs/api.md for the
# control plane's own). A name outside this list is a typo or a setting nothing reads.
SPEC_ENV = {
    # §1 engine + metrics
    "INFERENCE_ENGINE", "INFERENCE_ENGINE_ENDPOINT", "INFERENCE_ENGINE_VERSION",
    "METRIC_SCRAPE_PATH", "METRICS_ENABLE_TRANSFORMATION", "METRICS_RAW_PASSTHROUGH_MODE",
    "METRIC_SCRAPE_TIMEOUT", "AIBRIX_MODELS",
    # docs/api.md (control plane)
    "AIBRIX_LORA_FETCH_TIMEOUT", "AIBRIX_ADAPTER_DIR", "AIBRIX_SECRETS_DIR", "AIBRIX_LOG_LEVEL",
    # §1/§3 downloader
    "DOWNLOADER_LOCAL_DIR", "DOWNLOADER_NUM_THREADS", "DOWNLOADER_PART_CHUNKSIZE",
    "DOWNLOADER_ALLOW_FILE_SUFFIX", "DOWNLOADER_FORCE_DOWNLOAD",
    # §3 Hugging Face
    "HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME", "HF_REVISION",
    # §3 S3
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    # §3 TOS
    "TOS_ENDPOINT", "TOS_REGION", "TOS_ACCESS_KEY", "TOS_SECRET_KEY", "TOS_SECURITY_TOKEN",
}
# Names whose value is a credential: only ever from a Secret (secretKeyRef or envFrom).
SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "TOS_ACCESS_KEY",
              "TOS_SECRET_KEY", "TOS_SECURITY_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
              "AWS_CONTAINER_AUTHORIZATION_TOKEN"}
SECRET_NAME_RE = re.compile(r"(SECRET|TOKEN|PASSWORD|API_KEY|ACCESS_KEY)(?!_FILE$)")

# DEB_PACKAGES entries only the tests, sanitizer/fuzz builds and benchmarks need; the image's
# build stage installs the rest. git is the one package the image needs beyond DEB_PACKAGES
# (meson.build runs `git describe`; the Dockerfile says why).
TEST_ONLY_PACKAGES = {"clang", "libclang-rt-14-dev", "python3-pytest", "python3-boto3", "curl",
                      "prometheus", "python3-yaml", "yamllint",
                      "man-db", "groff-base",  # the man page checks (issue 9)
                      "wrk", "valgrind", "gdb"}  # the load scenario and the memcheck pass
IMAGE_ONLY_BUILD_PACKAGES = {"git"}
BASE_IMAGE_PACKAGES = {"libc6"}  # in debian:bookworm-slim already

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod", "StormService"}
MiB = 1 << 20


# --------------------------------------------------------------------------
# manifest model

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def pod_specs(doc):
    """[(where, pod spec, pod labels)] of one document."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return [("Pod", spec, (doc.get("metadata") or {}).get("labels") or {})]
    if kind == "StormService":
        out = []
        for role in ((spec.get("template") or {}).get("spec") or {}).get("roles") or []:
            tpl = role.get("template") or {}
            out.append(("role %s" % role.get("name"), tpl.get("spec") or {},
                        (tpl.get("metadata") or {}).get("labels") or {}))
        return out
    if kind in WORKLOAD_KINDS:
        tpl = spec.get("template") or {}
        return [("pod template", tpl.get("spec") or {}, (tpl.get("metadata") or {}).get("labels") or {})]
    return []


class Workload:
    def __init__(self, path, doc, where, pod, labels, docs):
        self.path, self.doc, self.where, self.pod, self.labels, self.docs = path, doc, where, pod, labels, docs
        self.id = "%s:%s/%s(%s)" % (path.name, doc["kind"], doc["metadata"]["name"], where)

    def containers(self):
        """[(section, container)], init containers first."""
        return ([("initContainers", c) for c in self.pod.get("initContainers") or []]
                + [("containers", c) for c in self.pod.get("containers") or []])

    def runtimes(self):
        return [(s, c) for s, c in self.containers() if argv_of(c)[:1] == ["aibrix_runtime"]]

    def volumes(self):
        return {v["name"]: v for v in self.pod.get("volumes") or []}


def workloads():
    out = []
    for path in MANIFESTS:
        try:
            docs = [d for d in load_docs(path) if isinstance(d, dict) and d.get("kind")]
        except yaml.YAMLError:
            continue  # test_every_manifest_parses_and_deploys_something names the file
        for doc in docs:
            for where, pod, labels in pod_specs(doc):
                out.append(Workload(path, doc, where, pod, labels, docs))
    return out


def argv_of(c):
    return [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]


def flag(argv, name, default=None):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def env_values(c):
    return {e["name"]: e["value"] for e in c.get("env") or [] if "value" in e}


def model_specs(c):
    """[(name, uri, {opt: val})] from the runtime's --model flags and AIBRIX_MODELS (same
    grammar as control/main.c: a ';' starts a new model only when a '=' comes before any ',')."""
    specs = []
    argv = argv_of(c)
    for i, a in enumerate(argv):
        if a == "--model" and i + 1 < len(argv):
            specs.append(argv[i + 1])
        elif a.startswith("--model="):
            specs.append(a.split("=", 1)[1])
    env = env_values(c).get("AIBRIX_MODELS")
    if env:
        cur = ""
        for seg in env.split(";"):
            eq, comma = seg.find("="), seg.find(",")
            if eq >= 0 and (comma < 0 or eq < comma) and cur:
                specs.append(cur)
                cur = ""
            cur = cur + ";" + seg if cur else seg
        if cur:
            specs.append(cur)
    out = []
    for s in specs:
        head, _, opts = s.partition(",")
        name, _, uri = head.partition("=")
        out.append((name, uri, dict(o.split("=", 1) for o in opts.split(",") if "=" in o)))
    return out


def probe_path(c, kind):
    return ((c.get(kind) or {}).get("httpGet") or {}).get("path")


def probe_port(c, kind):
    return ((c.get(kind) or {}).get("httpGet") or {}).get("port")


def parse_quantity(q):
    q = str(q)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1000, "M": 10 ** 6, "G": 10 ** 9}
    for u, m in units.items():
        if q.endswith(u):
            return float(q[:-len(u)]) * m
    if q.endswith("m"):
        return float(q[:-1]) / 1000
    return float(q)


ALL = workloads()
MOUNTING = [w for w in ALL if any(flag(argv_of(c), "--mount-point") for _, c in w.runtimes())]


def test_every_manifest_parses_and_deploys_something():
    assert MANIFESTS, "no manifests under %s" % K8S
    problems = []
    for path in MANIFESTS:
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            problems.append("%s: not valid YAML: %s" % (path.name, e))
            continue
        for i, d in enumerate(docs):
            if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") \
                    or not (d.get("metadata") or {}).get("name"):
                problems.append("%s: document %d lacks apiVersion/kind/metadata.name" % (path.name, i + 1))
        if not any(pod_specs(d) for d in docs if isinstance(d, dict)):
            problems.append("%s: no workload (Deployment, StormService, ...)" % path.name)
    assert not problems, "\n".join(problems)
    # the variants the issue asks for
    kinds = {d["kind"] for p in MANIFESTS for d in load_docs(p)}
    assert {"Deployment", "Service", "StormService", "ServiceAccount"} <= kinds, kinds
    uris = {uri.split(":", 1)[0] for w in MOUNTING for _, c in w.runtimes() for _, uri, _ in model_specs(c)}
    assert {"hf", "s3", "tos"} <= uris, "a variant per source (hf, s3, tos); have %s" % sorted(uris)
    assert (K8S / "vllm-with-runtime.yaml").exists()
    assert MOUNTING, "no workload runs aibrix_runtime with --mount-point"


@pytest.mark.parametrize("w", ALL, ids=lambda w: w.id)
def test_volume_mounts_name_existing_volumes(w):
    vols = w.volumes()
    problems = []
    used = set()
    for section, c in w.containers():
        for m in c.get("volumeMounts") or []:
            used.add(m["name"])
            if m["name"] not in vols:
                problems.append("volumes: %s container %s mounts volume %r, which the pod does not declare"
                                % (section, c["name"], m["name"]))
    for name in vols:
        if name not in used:
            problems.append("volumes: volume %r is declared but no container mounts it" % name)
    assert not problems, "%s\n%s" % (w.id, "\n".join(problems))


@pytest.mark.parametrize("w", MOUNTING, ids=lambda w: w.id)
def test_mounting_sidecar_invariants(w):
    """Everything the lazy mount needs from the pod, for every runtime with --mount-point."""
    problems = []
    vols = w.volumes()
    engines = [(s, c) for s, c in w.containers() if (s, c) not in w.runtimes()]
    for section, rt in w.runtimes():
        argv = argv_of(rt)
        mp = flag(argv, "--mount-point")
        name = "%s %s" % (section, rt["name"])
        if not mp:
            continue
        # -- propagation pair
        mounts = [m for m in rt.get("volumeMounts") or [] if m["mountPath"] == mp]
        if len(mounts) != 1:
            problems.append("propagation: %s has --mount-point %s but no volumeMount at that path" % (name, mp))
            continue
        vol = mounts[0]["name"]
        if mounts[0].get("mountPropagation") != "Bidirectional":
            problems.append("propagation: %s mounts volume %r at %s with mountPropagation %r, want Bidirectional"
                            % (name, vol, mp, mounts[0].get("mountPropagation")))
        if "emptyDir" not in vols.get(vol, {}) and "hostPath" not in vols.get(vol, {}):
            problems.append("propagation: volume %r must be an emptyDir or hostPath (a directory the "
                            "FUSE mount can cover)" % vol)
        readers = []
        for s, c in engines:
            for m in c.get("volumeMounts") or []:
                if m["name"] == vol:
                    readers.append(c["name"])
                    if m.get("mountPropagation") != "HostToContainer":
                        problems.append("propagation: %s container %s mounts volume %r with mountPropagation "
                                        "%r, want HostToContainer (else it sees the empty directory under "
                                        "the FUSE mount)" % (s, c["name"], vol, m.get("mountPropagation")))
        if not readers:
            problems.append("propagation: no engine container mounts volume %r (HostToContainer)" % vol)
        # -- privileges: Bidirectional is accepted by the API server only for privileged containers
        sc = rt.get("securityContext") or {}
        caps = set((sc.get("capabilities") or {}).get("add") or [])
        limits = ((rt.get("resources") or {}).get("limits") or {})
        fuse_dev = any("fuse" in k for k in limits) or any(
            (vols.get(m["name"], {}).get("hostPath") or {}).get("path") == "/dev/fuse"
            for m in rt.get("volumeMounts") or [])
        if not sc.get("privileged") and not ({"SYS_ADMIN", "CAP_SYS_ADMIN"} & caps and fuse_dev):
            problems.append("privileges: %s mounts FUSE but is neither privileged nor SYS_ADMIN with "
                            "/dev/fuse" % name)
        for s, c in w.containers():
            for m in c.get("volumeMounts") or []:
                if m.get("mountPropagation") == "Bidirectional" and not (c.get("securityContext") or {}).get(
                        "privileged"):
                    problems.append("privileges: %s container %s uses Bidirectional propagation without "
                                    "privileged: true (the API server rejects it)" % (s, c["name"]))
        # -- native sidecar gated on /ready
        if section != "initContainers" or rt.get("restartPolicy") != "Always":
            problems.append("sidecar: %s must be a native sidecar (initContainers + restartPolicy: Always) "
                            "so the engine starts after the mount" % name)
        if probe_path(rt, "startupProbe") not in ("/ready", "/readyz"):
            problems.append("probes: %s startupProbe path %r, want /ready" % (name, probe_path(rt, "startupProbe")))
        # -- ports and probes
        port = flag(argv, "--port", "8080")
        ports = {p.get("name"): p.get("containerPort") for p in rt.get("ports") or []}
        if port != "8080" or ports.get("metrics") != 8080:
            problems.append("ports: %s must serve --port 8080 as containerPort 8080 named metrics (has --port "
                            "%s, ports %s)" % (name, port, ports))
        for kind, want in (("livenessProbe", ("/healthz",)), ("readinessProbe", ("/ready", "/readyz")),
                           ("startupProbe", ("/ready", "/readyz"))):
            if probe_path(rt, kind) not in want:
                problems.append("probes: %s %s path %r, want %s" % (name, kind, probe_path(rt, kind), want[0]))
            elif probe_port(rt, kind) not in ("metrics", 8080):
                problems.append("probes: %s %s port %r, want metrics" % (name, kind, probe_port(rt, kind)))
        # -- shutdown
        if not ((rt.get("lifecycle") or {}).get("preStop")):
            problems.append("shutdown: %s has no preStop hook" % name)
        grace = w.pod.get("terminationGracePeriodSeconds", 30)
        if grace < 30:
            problems.append("shutdown: terminationGracePeriodSeconds %s < 30 (engine drain + the runtime's "
                            "10 s unmount budget)" % grace)
        # -- resources, sized from the measured RSS (deploy/README.md)
        res = rt.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    problems.append("resources: %s has no %s.%s" % (name, part, r))
        mem_limit = parse_quantity((res.get("limits") or {}).get("memory", "0"))
        if mem_limit and mem_limit < 256 * MiB:
            problems.append("resources: %s memory limit %s is under 256Mi (peak RSS ~100 MiB measured)"
                            % (name, res["limits"]["memory"]))
        # -- cache dir on a volume
        cache = flag(argv, "--cache-dir", "/var/cache/aibrix")
        cm = [m for m in rt.get("volumeMounts") or [] if m["mountPath"] == cache]
        if not cm or not ({"hostPath", "emptyDir"} & set(vols.get(cm[0]["name"], {}))):
            problems.append("cache: %s --cache-dir %s is not a hostPath/emptyDir volume" % (name, cache))
        # -- runtime env and the engine it talks to
        env = env_values(rt)
        for k in ("INFERENCE_ENGINE", "INFERENCE_ENGINE_ENDPOINT"):
            if k not in env:
                problems.append("env: %s lacks %s" % (name, k))
        names = [n for n, _, _ in model_specs(rt)]
        if not names:
            problems.append("env: %s mounts nothing at start (AIBRIX_MODELS or --model)" % name)
        for s, c in engines:
            if not any(m["name"] == vol for m in c.get("volumeMounts") or []):
                continue
            eargv = argv_of(c)
            model = flag(eargv, "--model")
            if model is None or not model.startswith(mp.rstrip("/") + "/") or model[len(mp) + 1:] not in names:
                problems.append("engine: %s container %s --model %r is not %s/<one of %s>"
                                % (s, c["name"], model, mp, names))
            if "vllm" in (c.get("image") or "") or c["name"] == "vllm":
                if env.get("INFERENCE_ENGINE") != "vllm":
                    problems.append("engine: vLLM beside INFERENCE_ENGINE=%r" % env.get("INFERENCE_ENGINE"))
                if "--enable-lora" not in eargv:
                    problems.append("engine: %s lacks --enable-lora" % c["name"])
                if str(env_values(c).get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "")).lower() != "true":
                    problems.append("engine: %s lacks VLLM_ALLOW_RUNTIME_LORA_UPDATING=true" % c["name"])
                if str(env.get("INFERENCE_ENGINE_ENDPOINT", "")).rstrip("/") != \
                        "http://localhost:%s" % flag(eargv, "--port", "8000"):
                    problems.append("engine: INFERENCE_ENGINE_ENDPOINT %r is not the engine's port"
                                    % env.get("INFERENCE_ENGINE_ENDPOINT"))
    assert not problems, "%s\n%s" % (w.id, "\n".join(problems))


def aibrix_containers():
    for w in ALL:
        for s, c in w.containers():
            if argv_of(c)[:1] in (["aibrix_runtime"], ["aibrix_download"]):
                yield w, s, c


def test_runtime_env_names_exist_in_spec():
    problems = []
    for w, s, c in aibrix_containers():
        for e in c.get("env") or []:
            if e["name"] not in SPEC_ENV:
                problems.append("env: %s %s container %s sets %s, which SPEC does not define"
                                % (w.id, s, c["name"], e["name"]))
    assert not problems, "\n".join(problems)


def test_no_inline_secrets():
    problems = []
    for path in MANIFESTS:
        for d in load_docs(path):
            if d.get("kind") == "Secret" and (d.get("data") or d.get("stringData")):
                problems.append("secrets: %s carries Secret %s with values; create it with kubectl instead"
                                % (path.name, d["metadata"]["name"]))
    for w in ALL:
        for s, c in w.containers():
            for e in c.get("env") or []:
                n = e["name"]
                if n in SECRET_ENV or SECRET_NAME_RE.search(n):
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if "value" in e or not ref:
                        problems.append("secrets: %s %s container %s sets %s inline; use valueFrom.secretKeyRef "
                                        "or envFrom a Secret" % (w.id, s, c["name"], n))
            for ef in c.get("envFrom") or []:
                if "configMapRef" in ef:
                    problems.append("secrets: %s container %s takes env from a ConfigMap; credentials belong "
                                    "in a Secret" % (w.id, c["name"]))
            for a in argv_of(c):
                if re.search(r"(AKIA[0-9A-Z]{12,}|hf_[A-Za-z0-9]{20,})", a):
                    problems.append("secrets: %s container %s has a credential in its arguments" % (w.id, c["name"]))
    assert not problems, "\n".join(problems)


def test_irsa_variant_uses_the_service_account_and_no_keys():
    found = False
    for w in ALL:
        sa_name = w.pod.get("serviceAccountName")
        if not sa_name:
            continue
        sas = [d for d in w.docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa_name]
        assert sas, "irsa: %s uses serviceAccountName %s, not declared in %s" % (w.id, sa_name, w.path.name)
        role = (sas[0]["metadata"].get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")
        if not role:
            continue
        found = True
        assert re.match(r"^arn:aws:iam::\d{12}:role/.+", role), "irsa: role-arn %r" % role
        for s, c in w.containers():
            names = {e["name"] for e in c.get("env") or []}
            assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, \
                "irsa: %s container %s sets static keys beside IRSA" % (w.id, c["name"])
            assert not c.get("envFrom"), "irsa: %s container %s pulls env from a Secret beside IRSA" % (w.id, c["name"])
        assert any(uri.startswith("s3://") for _, c in w.runtimes() for _, uri, _ in model_specs(c))
    assert found, "irsa: no workload with an eks.amazonaws.com/role-arn service account"


def test_services_expose_metrics_on_8080():
    problems = []
    services = [(p, d) for p in MANIFESTS for d in load_docs(p) if d["kind"] == "Service"]
    assert services, "no Service"
    for path, svc in services:
        ports = {p.get("name"): p for p in svc["spec"].get("ports") or []}
        m = ports.get("metrics")
        if not m or m.get("port") != 8080 or m.get("targetPort") not in ("metrics", 8080):
            problems.append("ports: %s Service %s needs port 8080 named metrics (targetPort metrics)"
                            % (path.name, svc["metadata"]["name"]))
        sel = svc["spec"].get("selector") or {}
        if not any(w.path == path and sel and all(w.labels.get(k) == v for k, v in sel.items()) for w in ALL):
            problems.append("ports: %s Service %s selects %s, which no pod template in the file carries"
                            % (path.name, svc["metadata"]["name"], sel))
    for w in ALL:  # every workload is reachable for scraping
        if not any(p == w.path for p, _ in services):
            problems.append("ports: %s has no Service" % w.path.name)
    assert not problems, "\n".join(problems)


def test_injected_form_leaves_the_sidecar_to_the_webhook():
    injected = [w for w in ALL
                if (w.doc["metadata"].get("annotations") or {}).get("model.aibrix.ai/sidecar-injection") is not None]
    assert injected, "no manifest uses model.aibrix.ai/sidecar-injection"
    for w in injected:
        ann = w.doc["metadata"]["annotations"]
        assert ann["model.aibrix.ai/sidecar-injection"] == "true", \
            "injection: the annotation must be the string \"true\" (got %r)" % ann["model.aibrix.ai/sidecar-injection"]
        names = [c["name"] for _, c in w.containers()]
        assert "aibrix-runtime" not in names, \
            "injection: %s declares aibrix-runtime itself; the webhook injects a container of that name" % w.id
        # the engine's model comes from a download init container on the same volume
        engine = [c for s, c in w.containers() if s == "containers"][0]
        model = flag(argv_of(engine), "--model")
        dl = [c for s, c in w.containers() if argv_of(c)[:1] == ["aibrix_download"]]
        assert dl, "injection: %s has no aibrix_download init container to fill %s" % (w.id, model)
        a = argv_of(dl[0])
        assert "%s/%s" % (flag(a, "--local-dir"), flag(a, "--model-name")) == model, \
            "injection: aibrix_download writes %s/%s but the engine loads %s" % (
                flag(a, "--local-dir"), flag(a, "--model-name"), model)


def test_runtime_image_is_the_same_everywhere():
    images = {c.get("image") for w, s, c in aibrix_containers()}
    for w in ALL:
        img = (w.doc["metadata"].get("annotations") or {}).get("model.aibrix.ai/sidecar-runtime-image")
        if img:
            images.add(img)
    assert len(images) == 1, "image: the manifests name different runtime images: %s" % sorted(images)
    tag = next(iter(images)).rsplit(":", 1)[-1]
    assert tag == meson_version(), "image: runtime tag %s, meson project version %s" % (tag, meson_version())


# --------------------------------------------------------------------------
# 2. yamllint

def test_yamllint_is_clean():
    exe = shutil.which("yamllint")
    assert exe, "yamllint is not installed (it is in the Makefile's DEB_PACKAGES: run make deps)"
    r = subprocess.run([exe, "-s", "-f", "parsable", "-c", str(DEPLOY / ".yamllint"), str(K8S),
                        str(DEPLOY / ".yamllint")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "yamllint:\n%s%s" % (r.stdout, r.stderr)


# --------------------------------------------------------------------------
# 3. the Dockerfile against the project's install step and build

def meson_version():
    m = re.search(r"project\([^)]*?version:\s*'([^']+)'", (REPO / "meson.build").read_text(), re.S)
    return m.group(1)


def makefile_packages():
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(r"^DEB_PACKAGES\s*:?=(.*)$", text, re.M)
    assert m, "Makefile: no DEB_PACKAGES"
    return set(m.group(1).split())


def dockerfile_stages():
    """[{"from", "name", "packages", "workdir", "lines"}] with continuation lines joined."""
    text = DOCKERFILE.read_text()
    lines = []
    for raw in text.replace("\\\n", " ").splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            lines.append(s)
    args = {}
    stages = []
    for s in lines:
        word, _, rest = s.partition(" ")
        word = word.upper()
        if word == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
            continue
        if word == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"from": base, "name": name, "packages": set(), "workdir": "/", "lines": []})
            continue
        st = stages[-1]
        st["lines"].append(s)
        if word == "WORKDIR":
            st["workdir"] = rest.strip()
        if word == "RUN":
            for cmd in re.split(r"&&|;", rest):
                toks = shlex.split(cmd)
                while toks and "=" in toks[0]:
                    toks = toks[1:]  # VAR=value prefixes
                if toks[:2] == ["apt-get", "install"]:
                    st["packages"] |= {t for t in toks[2:] if not t.startswith("-")}
    return stages


def test_dockerfile_build_stage_installs_the_projects_build_packages():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "Dockerfile: want a multi-stage build"
    build = stages[0]
    assert build["from"].startswith("debian:bookworm"), "Dockerfile: build stage from %s" % build["from"]
    want = makefile_packages() - TEST_ONLY_PACKAGES
    have = build["packages"] - IMAGE_ONLY_BUILD_PACKAGES
    assert have == want, (
        "Dockerfile build stage and Makefile DEB_PACKAGES disagree:\n  in the Makefile only: %s\n"
        "  in the Dockerfile only: %s\n(a new build dependency goes in both; a test-only tool goes in "
        "TEST_ONLY_PACKAGES in %s)" % (sorted(want - have), sorted(have - want), Path(__file__).name))


def copied_binaries(stages):
    build = stages[0]
    out = {}
    for s in stages[-1]["lines"]:
        m = re.match(r"COPY\s+--from=(\S+)\s+(\S+)\s+(\S+)$", s)
        if m:
            assert m.group(1) == build["name"], "Dockerfile: COPY --from=%s, the build stage is %s" % (
                m.group(1), build["name"])
            src = m.group(2)
            assert src.startswith(build["workdir"].rstrip("/") + "/"), \
                "Dockerfile: COPY source %s is outside the build stage's WORKDIR %s" % (src, build["workdir"])
            out[os.path.relpath(src, build["workdir"])] = m.group(3)
    return out


def test_dockerfile_copies_the_binaries_make_build_produces():
    stages = dockerfile_stages()
    copies = copied_binaries(stages)
    assert set(copies) == {"build/control/aibrix_runtime", "build/downloader/aibrix_download"}, copies
    run = " ".join(s for s in stages[0]["lines"] if s.startswith("RUN"))
    assert "meson setup build" in run, "Dockerfile: the build stage must `meson setup build` as make build does"
    for rel, dest in copies.items():
        subdir, exe = rel.split("/")[1], rel.split("/")[2]
        assert "%s/%s" % (subdir, exe) in run, "Dockerfile: ninja does not build %s/%s" % (subdir, exe)
        assert re.search(r"executable\(\s*'%s'" % re.escape(exe), (REPO / subdir / "meson.build").read_text()), \
            "%s/meson.build no longer builds %s" % (subdir, exe)
        assert dest.startswith("/usr/local/bin"), "Dockerfile: %s goes to %s, not /usr/local/bin" % (exe, dest)
    if not (MAKE_BUILD / "build.ninja").exists():
        pytest.skip("%s is not configured (make build); the paths were checked against meson.build" % MAKE_BUILD)
    for rel in copies:
        assert (REPO / rel).is_file(), "Dockerfile copies %s, which make build did not produce" % rel


def test_dockerfile_final_stage_is_a_drop_in_for_aibrix_runtime():
    stages = dockerfile_stages()
    final = stages[-1]
    text = "\n".join(final["lines"])
    assert final["from"].startswith("debian:bookworm"), final["from"]
    assert re.search(r"^EXPOSE 8080$", text, re.M), "Dockerfile: no EXPOSE 8080"
    assert re.search(r'^ENTRYPOINT \["aibrix_runtime"\]$', text, re.M), "Dockerfile: ENTRYPOINT is not aibrix_runtime"
    assert re.search(r'^CMD \["--port", "8080"\]$', text, re.M), "Dockerfile: CMD is not --port 8080"
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', text))
    assert "org.opencontainers.image.title" in labels, "Dockerfile: no OCI title label"
    ver = re.search(r"^ARG VERSION=(\S+)$", text, re.M)
    assert ver and ver.group(1) == meson_version(), "Dockerfile: VERSION %s, meson says %s" % (
        ver and ver.group(1), meson_version())
    dev = sorted(p for p in final["packages"] if p.endswith("-dev") or p in ("gcc", "clang", "meson", "ninja-build"))
    assert not dev, "Dockerfile: the final stage installs build tools %s" % dev


def linked_packages(binary):
    """{soname: Debian package} of the libraries the binary links directly."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True).stdout)
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    out = {}
    for so in needed:
        m = re.search(r"^\s*%s => (\S+)" % re.escape(so), ldd, re.M)
        assert m, "ldd %s does not resolve %s" % (binary, so)
        tail = "/".join(Path(m.group(1)).parts[-2:])
        r = subprocess.run(["dpkg", "-S", "*/" + tail], capture_output=True, text=True)
        pkgs = {line.split(":")[0] for line in r.stdout.splitlines() if line.strip()}
        out[so] = pkgs
    return out


def test_dockerfile_final_stage_provides_every_linked_library():
    if not shutil.which("dpkg") or not shutil.which("readelf"):
        pytest.skip("needs dpkg and readelf")
    final = dockerfile_stages()[-1]["packages"] | BASE_IMAGE_PACKAGES
    problems = []
    for rel in ("build/control/aibrix_runtime", "build/downloader/aibrix_download"):
        binary = REPO / rel
        if not binary.exists():
            pytest.skip("%s is not built (make build)" % binary)
        for so, pkgs in linked_packages(binary).items():
            if not pkgs & final:
                problems.append("Dockerfile: %s links %s (Debian package %s), which the final stage does not "
                                "install" % (rel, so, "/".join(sorted(pkgs)) or "?"))
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# 4. the sidecar as the manifest starts it

def allowed_by_suffix(rel, opts):
    suffixes = [s.strip().lstrip(".") for s in opts.get("allow_file_suffix", "").split(";") if s.strip()]
    if not suffixes:
        return True
    base = rel.rsplit("/", 1)[-1]
    return any(base.endswith("." + s) for s in suffixes)


def remap(argv, paths):
    out = []
    for a in argv:
        for src, dst in paths.items():
            if a == src or a.startswith(src + "/"):
                a = str(dst) + a[len(src):]
                break
        out.append(a)
    return out


RUNTIME_CASES = [(w, s, c) for w in MOUNTING for s, c in w.runtimes()]


@pytest.mark.parametrize("w,section,c", RUNTIME_CASES, ids=["%s:%s" % (w.id, c["name"]) for w, _, c in RUNTIME_CASES])
def test_sidecar_starts_as_the_manifest_says_and_mounts_the_model(w, section, c, tmp_path):
    argv = argv_of(c)
    mp = flag(argv, "--mount-point")
    cache = flag(argv, "--cache-dir", "/var/cache/aibrix")
    mnt, cdir = tmp_path / "models", tmp_path / "cache"
    paths = {mp.rstrip("/"): mnt, cache.rstrip("/"): cdir}
    # the model every named mount points at: a generated file:// tree, same name and options
    env = {e["name"]: e["value"] for e in c.get("env") or [] if "value" in e}
    models = model_specs(c)
    src = tmp_path / "src"
    manifest = modelgen.generate(str(src), size=2 * MiB, seed=3)
    specs = []
    for name, _uri, opts in models:
        specs.append("%s=file://%s%s" % (name, src, "".join(",%s=%s" % kv for kv in opts.items())))
    rt_argv = remap(argv, paths)
    assert rt_argv[0] == "aibrix_runtime"
    rt_argv[0] = str(BUILD / "control" / "aibrix_runtime")
    port = get_free_port()
    i = rt_argv.index("--port") if "--port" in rt_argv else None
    if i is not None:
        rt_argv[i + 1] = str(port)
    else:
        rt_argv += ["--port", str(port)]
    # --model flags in the manifest are replaced one for one; AIBRIX_MODELS carries the rest
    flags_models = [j for j, a in enumerate(rt_argv) if a == "--model"]
    for k, j in enumerate(flags_models):
        rt_argv[j + 1] = specs[k]
    if "AIBRIX_MODELS" in env:
        env["AIBRIX_MODELS"] = ";".join(specs[len(flags_models):])
    run_env = clean_env(env)
    for k in ("DOWNLOADER_PART_CHUNKSIZE", "DOWNLOADER_BACKOFF_BASE"):  # the manifest's values, or defaults
        if k not in env:
            run_env.pop(k, None)

    rt = Runtime(tmp_path / "rt", env=None, cache_dir=cdir, mount_point=mnt)
    rt.argv, rt.env, rt.port, rt.url = rt_argv, run_env, port, "http://127.0.0.1:%d" % port
    try:
        rt.start(wait="ready", timeout=90)
        st, body = rt.get("/healthz")
        assert st == 200, "/healthz %s %r" % (st, body)
        for name, _uri, opts in models:
            want = {rel: v["sha256"] for rel, v in manifest.items() if allowed_by_suffix(rel, opts)}
            got = bounded(tree_sha256, mnt / name, timeout=60, what="reading %s through the mount" % name)
            assert got == want, "mount: %s/%s differs from the source (files %s vs %s)" % (
                mp, name, sorted(got), sorted(want))
        # the engine's --model, remapped, is a model directory of the mount
        for s, e in w.containers():
            model = flag(argv_of(e), "--model")
            if model and model.startswith(mp.rstrip("/") + "/"):
                p = Path(remap([model], paths)[0])
                assert bounded(lambda: (p / "config.json").is_file(), timeout=15), \
                    "engine: %s container %s loads %s, which has no config.json in the mount" % (s, e["name"], model)
        rc, secs = rt.stop()
        assert rc == 0, "runtime exited %s on SIGTERM; log:\n%s" % (rc, rt.log_tail())
        assert secs < 10, "SIGTERM took %.1fs, over the 10 s budget the grace period assumes" % secs
        assert not is_mounted(mnt), "the mount is still there after SIGTERM"
        log = rt.log()
        for marker in SANITIZER_MARKERS:
            assert marker not in log, "sanitizer report in the runtime's log:\n%s" % rt.log_tail()
    finally:
        rt.close()


def test_sidecar_prestop_waits_for_the_engine_to_stop_listening(tmp_path):
    """The preStop hook returns only once nothing listens on the engine's port (remapped)."""
    w = next(w for w in MOUNTING if w.path.name == "vllm-with-runtime.yaml")
    rt = w.runtimes()[0][1]
    cmd = [str(a) for a in rt["lifecycle"]["preStop"]["exec"]["command"]]
    assert "/8000" in cmd[-1], "preStop does not watch the engine's port 8000: %s" % cmd
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    cmd[-1] = cmd[-1].replace("/8000", "/%d" % port)
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                srv.accept()[0].close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    p = subprocess.Popen(cmd, start_new_session=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=2.5)  # the engine still listens: keep waiting
        stop.set()
        t.join()
        srv.close()
        assert p.wait(timeout=5) == 0, "preStop did not finish once the engine stopped listening"
    finally:
        stop.set()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        srv.close()


def test_download_init_container_fills_the_engines_model_dir(tmp_path):
    """The injected form's aibrix_download init container, run as the manifest says."""
    cases = [(w, c) for w, s, c in aibrix_containers() if argv_of(c)[:1] == ["aibrix_download"]]
    assert cases
    if not DOWNLOAD.exists():
        pytest.fail("%s is not built" % DOWNLOAD)
    for w, c in cases:
        argv = argv_of(c)
        local = flag(argv, "--local-dir")
        src = tmp_path / "src"
        manifest = modelgen.generate(str(src), size=1 * MiB, seed=5)
        out = tmp_path / "models"
        argv = remap(argv, {local.rstrip("/"): out})
        argv[0] = str(DOWNLOAD)
        argv[argv.index("--model-uri") + 1] = "file://%s" % src
        env = clean_env({e["name"]: e["value"] for e in c.get("env") or [] if "value" in e})
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "aibrix_download as in %s exited %s:\n%s" % (w.id, r.returncode, r.stderr[-3000:])
        engine = [e for s, e in w.containers() if s == "containers"][0]
        model_dir = Path(remap([flag(argv_of(engine), "--model")], {local.rstrip("/"): out})[0])
        assert r.stdout.strip().splitlines()[-1] == str(model_dir), r.stdout
        want = {rel: v["sha256"] for rel, v in manifest.items()}
        got = {k: v for k, v in tree_sha256(model_dir).items() if not k.startswith(".cache/")}
        assert got == want, "download: %s differs from the source" % model_dir
