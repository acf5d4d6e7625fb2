"""deploy/k8s rendered as kustomize would (only `resources`: tests/integration/deployfiles.py,
checked against `kubectl kustomize` when that is installed), every document validated offline
against the Kubernetes schemas kubernetes-validate pins, and the structure issue 10 asks for:
3 server replicas with PVCs, anti-affinity, headless Service, PDB, readiness on the leader,
preStop leave; client DaemonSet with hostPorts and the node name from the downward API; the
injector's webhook paths and ports lining up with `lictor connect inject`. Every container's
args are parsed by the real CLI flag parser and every agent's config loads with the real loader.
(tests/integration/test_deploy_run.py runs those args in network namespaces.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import validate

from lictor.agent.inject_webhook import build_app
from lictor.agent.inject import InjectConfig
from lictor.cli.inject import _flags as inject_flags
from lictor.cli.main import _agent_flags, agent_source_from_flags
from lictor.common.config import load_config
from lictor.common.errors import ConfigError
from tests.integration.deployfiles import DEPLOY, container_args, kustomize_documents

K8S_VERSIONS = ("1.30", "1.37")


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return kustomize_documents()


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [d] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return d


def test_every_document_is_valid_against_the_pinned_schemas(docs: list[dict[str, Any]]) -> None:
    assert len(docs) >= 20
    for d in docs:
        for v in K8S_VERSIONS:
            validate(d, v, strict=True)


def test_the_renderer_agrees_with_kubectl_kustomize(docs: list[dict[str, Any]]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the renderer above is the check")
    res = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    theirs = [d for d in yaml.safe_load_all(res.stdout) if d]

    def key(d: dict[str, Any]) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    assert sorted(map(key, theirs)) == sorted(map(key, docs))
    mine = {key(d): d for d in docs}
    for d in theirs:
        assert d == mine[key(d)], key(d)


def test_every_reference_resolves(docs: list[dict[str, Any]]) -> None:
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    secrets_by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    # made at run time by the certgen Job (kube-webhook-certgen create)
    made_by_job = {"lictor-injector-tls"}
    text = yaml.safe_dump_all(docs)
    for m in re.finditer(r"secretKeyRef:\n\s+key: (\S+)\n\s+name: (\S+)", text):
        key, name = m.groups()
        assert name in secrets_by_name and key in secrets_by_name[name]["stringData"], (name, key)
    for d in docs:
        spec = _pod_spec(d)
        if spec is None:
            continue
        assert ("ServiceAccount", spec["serviceAccountName"]) in have
        for v in spec.get("volumes", []):
            sources = v.get("projected", {}).get("sources", []) + [v]
            for s in sources:
                if "configMap" in s:
                    assert ("ConfigMap", s["configMap"]["name"]) in have
                if "secret" in s:
                    name = s["secret"].get("name") or s["secret"].get("secretName")
                    assert ("Secret", name) in have or name in made_by_job, name
    for d in docs:
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert (d["roleRef"]["kind"], d["roleRef"]["name"]) in have
            for s in d["subjects"]:
                assert ("ServiceAccount", s["name"]) in have


def _pod_spec(d: dict[str, Any]) -> dict[str, Any] | None:
    if d["kind"] in ("StatefulSet", "DaemonSet", "Deployment", "Job"):
        return dict(d["spec"]["template"]["spec"])
    return None


def test_servers(docs: list[dict[str, Any]]) -> None:
    sts = one(docs, "StatefulSet", "lictor-server")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = spec["template"]["spec"]
    [c] = pod["containers"]
    assert {"name": "data", "mountPath": "/var/lib/lictor"} in c["volumeMounts"]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    labels = spec["template"]["metadata"]["labels"]
    assert anti["labelSelector"]["matchLabels"].items() <= labels.items()
    svc = one(docs, "Service", spec["serviceName"])
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {(p["port"], p.get("protocol", "TCP")) for p in svc["spec"]["ports"]} >= {(8301, "TCP"), (8301, "UDP"),
                                                                                   (8300, "TCP")}
    pdb = one(docs, "PodDisruptionBudget", "lictor-server")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() and pdb["spec"]["maxUnavailable"] == 1
    # readiness asks the agent for the leader; preStop leaves gracefully
    probe = c["readinessProbe"]["exec"]["command"]
    assert "/v1/status/leader" in probe[-1] and probe[0] == "python3"
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["lictor", "leave"]
    assert any(e["name"] == "LICTOR_HTTP_TOKEN" for e in c["env"])  # leave needs agent:write
    # retry_join names the headless Service's pod DNS names on the gossip port
    cm = one(docs, "ConfigMap", "lictor-server-config")["data"]["server.hcl"]
    for i in range(3):
        assert f'"lictor-server-{i}.{svc["metadata"]["name"]}.lictor.svc:8301"' in cm


def test_clients(docs: list[dict[str, Any]]) -> None:
    ds = one(docs, "DaemonSet", "lictor-client")
    [c] = ds["spec"]["template"]["spec"]["containers"]
    host_ports = {p["hostPort"] for p in c["ports"] if "hostPort" in p}
    assert host_ports == {8500, 8502}
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "-node=$(NODE_NAME)" in c["args"]


def _filled(container: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    values = {"status.podIP": "10.1.2.3", "metadata.name": "lictor-server-0", "spec.nodeName": "node-a",
              "metadata.namespace": "lictor", **secrets}
    return container_args(container, values)


SECRETS = {"secret:lictor-secrets/gossip-key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
           "secret:lictor-secrets/initial-management-token": "3f5c1a2e-8b7d-4c6e-9a0f-1b2c3d4e5f60",
           "secret:lictor-secrets/server-agent-token": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
           "secret:lictor-secrets/client-agent-token": "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"}


@pytest.mark.parametrize("kind, name, configmap", [("StatefulSet", "lictor-server", "lictor-server-config"),
                                                   ("DaemonSet", "lictor-client", "lictor-client-config")])
def test_agent_args_parse_and_load(docs: list[dict[str, Any]], tmp_path: Path, kind: str, name: str,
                                   configmap: str) -> None:
    [c] = one(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    args = _filled(c, SECRETS)
    assert args[0] == "agent"
    parsed = _agent_flags().parse(args[1:])
    assert not parsed.args
    # the config dir as the projected volume lays it out
    conf = tmp_path / "lictor.d"
    (conf / "tls").mkdir(parents=True)
    for fname, text in one(docs, "ConfigMap", configmap)["data"].items():
        (conf / fname).write_text(text.replace("/etc/lictor.d", str(conf)))
    for f in ("ca.pem", "tls.crt", "tls.key"):
        (conf / "tls" / f).touch()  # the loader checks they are readable; the run test uses real ones
    args = [a.replace("/etc/lictor.d", str(conf)) for a in args]
    cfg = load_config(agent_source_from_flags(_agent_flags().parse(args[1:]), env={})).config
    assert cfg.bind_addr == "10.1.2.3" and cfg.encrypt
    assert cfg.node_name == ("lictor-server-0" if kind == "StatefulSet" else "node-a")
    assert cfg.acl["default_policy"] == "deny" and cfg.acl["tokens"]["agent"]
    assert cfg.server is (kind == "StatefulSet")
    # the shipped Secret's placeholders, left in, stop the agent with the key named
    shipped = {k: v for k, v in SECRETS.items()}
    for d in docs:
        if d["kind"] == "Secret" and d["metadata"]["name"] == "lictor-secrets":
            shipped = {f"secret:lictor-secrets/{k}": v for k, v in d["stringData"].items()}
    raw = [a.replace("/etc/lictor.d", str(conf)) for a in _filled(c, shipped)]
    with pytest.raises(ConfigError, match=r"(encrypt|acl\.tokens\.\w+): placeholder <[A-Z_]+> left in"):
        load_config(agent_source_from_flags(_agent_flags().parse(raw[1:]), env={}))


def test_injector_lines_up_with_the_command(docs: list[dict[str, Any]]) -> None:
    dep = one(docs, "Deployment", "lictor-injector")
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"][:2] == ["connect", "inject"]
    p = inject_flags().parse(c["args"][2:])
    assert not p.args
    listen_port = int(p["listen"].rsplit(":", 1)[1])
    assert c["ports"][0]["containerPort"] == listen_port == c["readinessProbe"]["httpGet"]["port"]
    svc = one(docs, "Service", "lictor-injector")
    assert svc["spec"]["ports"][0]["targetPort"] == listen_port
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["tls"]
    assert p["tls-cert-file"].startswith(mount + "/") and p["tls-key-file"].startswith(mount + "/")
    routes = {(r.method, r.resource.canonical) for r in build_app(InjectConfig(image="x")).router.routes()
              if r.resource is not None}
    assert ("GET", c["readinessProbe"]["httpGet"]["path"]) in routes
    hook = one(docs, "MutatingWebhookConfiguration", "lictor-injector")
    paths = {}
    for w in hook["webhooks"]:
        ref = w["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["port"]) == ("lictor-injector", "lictor", svc["spec"]["ports"][0]["port"])
        assert ("POST", ref["path"]) in routes
        assert w["admissionReviewVersions"] == ["v1"] and w["failurePolicy"] == "Ignore"
        assert w["rules"][0]["resources"] == ["pods"] and w["rules"][0]["operations"] == ["CREATE"]
        paths[ref["path"]] = w["namespaceSelector"]
    # the labelled namespaces go to the namespace-enabled path, every other one to /mutate
    assert paths["/mutate/namespace-enabled"] == {"matchLabels": {"lictor-injection": "enabled"}}
    assert {"key": "lictor-injection", "operator": "NotIn", "values": ["enabled"]} in \
        paths["/mutate"]["matchExpressions"]
    # the certgen Job writes the Secret the injector mounts and patches this webhook configuration
    job = one(docs, "Job", "lictor-injector-certgen")["spec"]["template"]["spec"]
    secret = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}["tls"]["secret"]["secretName"]
    for ctr in [*job["initContainers"], *job["containers"]]:
        assert f"--secret-name={secret}" in ctr["args"]
    assert f"--webhook-name={hook['metadata']['name']}" in job["containers"][0]["args"]
