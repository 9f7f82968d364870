"""test_k8s — the Kubernetes manifests of deploy/k8s are valid and agree with the programs.

deploy/k8s/tools/validate.sh renders the kustomizations (deploy/k8s and every overlay;
with `kubectl kustomize` when kubectl is installed, else with the validator's own
renderer, and both renderings must be the same) and validates every object against the
Kubernetes 1.33 OpenAPI schemas (npm kubernetes-models 4.5.1, installed with `npm ci` into
build/k8s-tools from the lock file in deploy/k8s/tools), strictly: an unknown field is an
error, as with kubectl. A deliberately broken manifest must be refused, so we know the
validation is real. Then the rendered objects are checked against the code and the docs:
the settings they pass are ones the programs read, the probes hit the real endpoints and
ports, the termination grace exceeds the drain timeouts, the pods run as the image's
unprivileged user with a read-only root filesystem, the spool is on a volume, and the
TLS overlay's sidecar runs the stunnel template deploy/stunnel ships.
No program is started; needs node and npm (deploy/install-deps.sh).
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VALIDATE = K8S / "tools" / "validate.sh"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
STUNNEL_DOCKERFILE = ROOT / "deploy" / "stunnel" / "Dockerfile"
TARGETS = {"base": K8S, "redis-tls": K8S / "overlays" / "redis-tls"}


def run_validate(*args, timeout=300):
    return subprocess.run(["bash", str(VALIDATE), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def tools():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are needed (deploy/install-deps.sh installs them)")


@pytest.fixture(scope="module")
def rendered(tools, tmp_path_factory):
    """{target name: [objects]} as validate.sh rendered and validated them."""
    dump = tmp_path_factory.mktemp("k8s") / "rendered.json"
    res = run_validate("--dump", dump, *TARGETS.values())
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^k8s-validate: \d+ objects, 0 failed", res.stdout, re.M), res.stdout
    by_path = json.loads(dump.read_text())
    return {name: by_path[str(path)] for name, path in TARGETS.items()}


def find(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(objects, name):
    return find(objects, "Deployment", name)["spec"]["template"]["spec"]


def container(objects, name):
    (c,) = [c for c in pod_spec(objects, name)["containers"]]
    return c


def env_of(objects, name):
    """{NAME: value or the valueFrom dict} of the deployment's container, ConfigMap
    settings included (envFrom)."""
    c = container(objects, name)
    env = {}
    for src in c.get("envFrom", []):
        cm = find(objects, "ConfigMap", src["configMapRef"]["name"])
        env.update(cm["data"])
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    return env


def settings_read_by(dirs):
    """Setting names the programs in `dirs` (and common/) read through config_*()."""
    names = set()
    for d in ("common",) + tuple(dirs):
        for p in sorted((ROOT / d).glob("*.c")):
            text = p.read_text(encoding="utf-8", errors="replace")
            names |= set(re.findall(r'\bconfig_[a-z_]+\(\s*"([A-Z][A-Z0-9_]*)"', text))
    return names


def c_default(pattern):
    """The default value in the C sources of config_long("NAME", default, …)."""
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace")
                     for d in ("ingest", "worker") for p in (ROOT / d).glob("*.c"))
    m = re.search(r'config_long\(\s*"' + pattern + r'"\s*,\s*(\d+)', text)
    assert m, pattern
    return int(m.group(1))


# ---- validation is real -------------------------------------------------------------

BROKEN = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: two
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: c
          image: calllog:latest
          imagePullPolice: Always
---
apiVersion: v1
kind: Service
metadata:
  name: broken
spec:
  ports:
    - port: "eighty"
  selectorz: {app: broken}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: unknown-kind
"""


def test_validator_rejects_broken_manifests(tools, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    res = run_validate(bad)
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout
    assert "/spec/replicas: type" in out, out                                  # wrong type
    assert "/spec/template/spec/containers/0/imagePullPolice: unknown field" in out, out
    assert "/spec/ports/0/port: type" in out, out
    assert "/spec/selectorz: unknown field" in out, out
    assert "no schema for apiVersion monitoring.coreos.com/v1 kind ServiceMonitor" in out, out
    assert "3 objects, 3 failed" in out, out


def test_validator_rejects_unknown_kustomization_fields(tools, tmp_path):
    d = tmp_path / "kust"
    d.mkdir()
    (d / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n")
    (d / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [ns.yaml]\nnamespaces: typo\n")
    for extra in ((), ("--no-kubectl",)):
        res = run_validate(*extra, d)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "namespaces" in res.stdout, res.stdout


def test_renderings_agree(tools, rendered, tmp_path):
    """The built-in renderer gives what kubectl kustomize gives (when kubectl is here)."""
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: only the built-in renderer ran")
    dump = tmp_path / "builtin.json"
    res = run_validate("--no-kubectl", "--dump", dump, *TARGETS.values())
    assert res.returncode == 0, res.stdout + res.stderr
    builtin = json.loads(dump.read_text())
    for name, path in TARGETS.items():
        key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
        assert sorted(builtin[str(path)], key=key) == sorted(rendered[name], key=key), name


# ---- the objects ----------------------------------------------------------------------


def test_base_has_every_object(rendered):
    objs = rendered["base"]
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    for want in [("Deployment", "calllog-ingest"), ("Deployment", "calllog-worker"),
                 ("Service", "calllog-ingest"), ("HorizontalPodAutoscaler", "calllog-ingest"),
                 ("PodDisruptionBudget", "calllog-ingest"), ("PodDisruptionBudget", "calllog-worker"),
                 ("ConfigMap", "calllog-settings")]:
        assert want in kinds, kinds
    assert not [o for o in objs if o["kind"] == "Secret"], "credentials must not be in the manifests"
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {"calllog"}
    hpa = find(objs, "HorizontalPodAutoscaler", "calllog-ingest")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "calllog-ingest"}
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert hpa["minReplicas"] >= 2
    for name in ("calllog-ingest", "calllog-worker"):
        dep = find(objs, "Deployment", name)
        sel = dep["spec"]["selector"]["matchLabels"]
        assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert find(objs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == sel
    svc = find(objs, "Service", "calllog-ingest")["spec"]
    assert svc["selector"] == find(objs, "Deployment", "calllog-ingest")["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in svc["ports"]] == ["http"], "only the webhook port is on the Service"


def test_settings_are_ones_the_programs_read(rendered):
    objs = rendered["base"]
    for name, dirs in (("calllog-ingest", ["ingest"]), ("calllog-worker", ["worker"])):
        env = env_of(objs, name)
        read = settings_read_by(dirs)
        read_any = settings_read_by(["ingest", "worker"])
        for key in env:
            base = key[:-5] if key.endswith("_FILE") else key
            assert base in read_any, f"{name}: {key} is read by no program"
        assert {"REDIS_URL_FILE", "METRICS_LISTEN"} <= set(env), name
        assert "WORKER_CONSUMER_NAME" not in env, "one consumer name shared by replicas breaks the group"
        for key, value in env.items():
            if key.endswith("_FILE"):
                assert key[:-5] in read, f"{name} does not read {key[:-5]}"
                assert value.startswith("/run/secrets/calllog/"), (key, value)
            if isinstance(value, dict):
                ref = value["secretKeyRef"]
                assert ref["name"] == "calllog-secrets" and ref.get("optional") is True, (key, ref)
    assert env_of(objs, "calllog-ingest")["TWILIO_AUTH_TOKEN_FILE"]
    assert env_of(objs, "calllog-worker")["DATABASE_URL_FILE"]


def test_probes_ports_and_metrics(rendered):
    objs = rendered["base"]
    ing = container(objs, "calllog-ingest")
    ports = {p["name"]: p["containerPort"] for p in ing["ports"]}
    env = env_of(objs, "calllog-ingest")
    assert env["INGEST_LISTEN"].endswith(f":{ports['http']}")
    assert env["METRICS_LISTEN"] == f"0.0.0.0:{ports['metrics']}"
    assert ing["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ing["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    wrk = container(objs, "calllog-worker")
    wports = {p["name"]: p["containerPort"] for p in wrk["ports"]}
    assert env_of(objs, "calllog-worker")["METRICS_LISTEN"] == f"0.0.0.0:{wports['metrics']}"
    assert wrk["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    for name, port in (("calllog-ingest", ports["metrics"]), ("calllog-worker", wports["metrics"])):
        ann = find(objs, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(port)
        assert ann["prometheus.io/path"] == "/metrics"


def test_termination_grace_exceeds_the_drains(rendered):
    objs = rendered["base"]
    for name, setting in (("calllog-ingest", "INGEST_DRAIN_TIMEOUT_MS"),
                          ("calllog-worker", "WORKER_DRAIN_TIMEOUT_MS")):
        env = env_of(objs, name)
        drain_ms = int(env.get(setting) or c_default(setting))
        assert drain_ms == c_default(setting), f"{setting}: the manifests and the code disagree"
        spec = pod_spec(objs, name)
        pre = container(objs, name).get("lifecycle", {}).get("preStop", {})
        pre_s = int(pre["exec"]["command"][1]) if pre else 0
        grace = spec["terminationGracePeriodSeconds"]
        assert grace * 1000 > pre_s * 1000 + drain_ms + 5000, (name, grace, pre_s, drain_ms)


def test_pods_are_unprivileged_with_read_only_roots(rendered):
    uid = re.search(r"useradd[^\n]*--uid (\d+)", DOCKERFILE.read_text()).group(1)
    assert re.search(rf"^USER (calllog|{uid})$", DOCKERFILE.read_text(), re.M)
    assert re.search(rf"--uid {uid}\b", STUNNEL_DOCKERFILE.read_text())
    for target in ("base", "redis-tls"):
        objs = rendered[target]
        for name in ("calllog-ingest", "calllog-worker"):
            spec = pod_spec(objs, name)
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] == int(uid), psc
            assert spec["automountServiceAccountToken"] is False
            for c in spec["containers"] + spec.get("initContainers", []):
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
                res = c["resources"]
                assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
    spec = pod_spec(rendered["base"], "calllog-ingest")
    spool = env_of(rendered["base"], "calllog-ingest")["INGEST_SPOOL_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in container(rendered["base"], "calllog-ingest")["volumeMounts"]}
    assert spool in mounts, "the spool must be on a volume (the root filesystem is read-only)"
    vol = next(v for v in spec["volumes"] if v["name"] == mounts[spool])
    assert "emptyDir" in vol or "persistentVolumeClaim" in vol


def test_tls_overlay_runs_the_shipped_stunnel_sidecar(rendered):
    objs = rendered["redis-tls"]
    template = (ROOT / "deploy" / "stunnel" / "redis-client.conf.template").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)\}", template))
    entry = (ROOT / "deploy" / "stunnel" / "stunnel-redis.sh").read_text()
    for name in ("calllog-ingest", "calllog-worker"):
        spec = pod_spec(objs, name)
        (side,) = [c for c in spec["initContainers"] if c["name"] == "redis-tls"]
        assert side["restartPolicy"] == "Always", "a native sidecar outlives the drain"
        assert side["image"].startswith("calllog-stunnel:")
        env = {e["name"]: e.get("value") for e in side.get("env", [])}
        cm = find(objs, "ConfigMap", side["envFrom"][0]["configMapRef"]["name"])["data"]
        env.update(cm)
        assert env["STUNNEL_ACCEPT"] == "127.0.0.1:6379"
        assert re.fullmatch(r"[a-z0-9.-]+:\d+", env["REDIS_TLS_CONNECT"])
        for key in env:
            assert key in needed or key in entry, f"{key} is not a setting of stunnel-redis.sh"
        assert "startupProbe" in side
        mounts = {m["mountPath"] for m in side["volumeMounts"]}
        assert "/tmp" in mounts, "the rendered configuration is written to /tmp"
    base_names = {(o["kind"], o["metadata"]["name"]) for o in rendered["base"]}
    assert base_names < {(o["kind"], o["metadata"]["name"]) for o in objs}
