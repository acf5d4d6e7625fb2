"""Sidecar injection (lictor.agent.inject): AdmissionReview documents in the shape the API server
sends, the JSONPatch applied by an independent RFC 6902 implementation (jsonpatch) and the
patched pod validated against the pinned Kubernetes schemas; opt-in, namespace opt-in, opt-out,
idempotence; bad input answered with "allowed, unchanged, here is why", never an exception."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes_validate import validate

from lictor.agent.inject import (ANNOTATION_STATUS, InjectConfig, InjectError, inject_documents, parse_upstreams,
                                 review)

TESTDATA = Path(__file__).parent / "testdata"
CONFIG = InjectConfig(image="lictor:0.1.0")
K8S_VERSIONS = ("1.30", "1.37")


def request(**changes: Any) -> dict[str, Any]:
    doc = json.loads((TESTDATA / "admissionreview-pod.json").read_text())
    for path, value in changes.items():
        node = doc
        *parents, last = path.split(".")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is _DELETE:
            node.pop(last, None)
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return doc


_DELETE = object()


def answer(doc: Any, *, namespace_enabled: bool = False) -> dict[str, Any]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    out = review(body, CONFIG, namespace_enabled=namespace_enabled)
    json.dumps(out)  # always serialisable
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    assert out["response"]["allowed"] is True  # the webhook never blocks a pod
    return out["response"]


def patched(doc: dict[str, Any], resp: dict[str, Any]) -> dict[str, Any]:
    assert resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    return jsonpatch.apply_patch(doc["request"]["object"], ops)


def valid_pod(pod: dict[str, Any]) -> None:
    pod = copy.deepcopy(pod)
    # what the API server's own decoding drops before validation (null timestamp, empty status)
    if pod["metadata"].get("creationTimestamp") is None:
        pod["metadata"].pop("creationTimestamp", None)
    for v in K8S_VERSIONS:
        validate(pod, v, strict=True)


def sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    [c] = [c for c in pod["spec"]["containers"] if c["name"] == "lictor-sidecar-proxy"]
    return c


def registered_definition(pod: dict[str, Any]) -> dict[str, Any]:
    [init] = [c for c in pod["spec"]["initContainers"] if c["name"] == "lictor-connect-init"]
    [env] = [e for e in init["env"] if e["name"] == "LICTOR_SERVICE"]
    return dict(json.loads(env["value"])["service"])


# ---------------------------------------------------------------------------------------------


def test_annotated_pod_is_injected_and_the_patched_pod_is_valid() -> None:
    doc = request()
    resp = answer(doc)
    assert resp["uid"] == doc["request"]["uid"]
    pod = patched(doc, resp)
    valid_pod(doc["request"]["object"])  # the input itself is a valid Pod (the test data is honest)
    valid_pod(pod)
    # the original container and volume are untouched, the sidecar, init container and volume added
    assert pod["spec"]["containers"][0] == doc["request"]["object"]["spec"]["containers"][0]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["kube-api-access-x7k2p", "lictor-connect"]
    assert pod["metadata"]["annotations"][ANNOTATION_STATUS] == "injected"
    sc = sidecar(pod)
    assert sc["args"][:3] == ["connect", "envoy", "-sidecar-for=$(POD_NAME)-web"]
    assert {"name": "lictor-connect", "mountPath": "/lictor/connect"} in sc["volumeMounts"]
    d = registered_definition(pod)
    assert (d["name"], d["port"], d["address"]) == ("web", 8080, "$(POD_IP)")
    ups = d["connect"]["sidecar_service"]["proxy"]["upstreams"]
    assert ups == [{"destination_name": "inventory", "local_bind_port": 9191},
                   {"destination_name": "shipping", "local_bind_port": 9192}]
    # every $(VAR) the containers use is defined before use in their env (kubelet's rule)
    for c in (sc, *pod["spec"]["initContainers"]):
        names: list[str] = []
        for e in c["env"]:
            for ref in _refs(e.get("value", "")):
                assert ref in names, (c["name"], e["name"], ref)
            names.append(e["name"])
        for a in c.get("args", []):
            assert all(r in names for r in _refs(a)), a


def _refs(text: str) -> list[str]:
    import re

    return re.findall(r"\$\(([A-Z_]+)\)", text)


def test_namespace_label_selects_unannotated_pods() -> None:
    doc = request(**{"request.object.metadata.annotations": {}})
    assert "patch" not in answer(doc)  # the /mutate path: not selected
    msg = answer(doc)["status"]["message"]
    assert "not selected" in msg
    resp = answer(doc, namespace_enabled=True)
    pod = patched(doc, resp)
    valid_pod(pod)
    assert pod["metadata"]["annotations"] == {ANNOTATION_STATUS: "injected"}


def test_pod_without_annotations_map_gets_one() -> None:
    doc = request()
    del doc["request"]["object"]["metadata"]["annotations"]
    pod = patched(doc, answer(doc, namespace_enabled=True))
    valid_pod(pod)
    assert pod["metadata"]["annotations"] == {ANNOTATION_STATUS: "injected"}


def test_opt_out_wins_over_the_namespace_label() -> None:
    doc = request()
    doc["request"]["object"]["metadata"]["annotations"]["lictor.io/connect-inject"] = "false"
    resp = answer(doc, namespace_enabled=True)
    assert "patch" not in resp and "opted out" in resp["status"]["message"]


def test_injection_is_idempotent() -> None:
    doc = request()
    once = patched(doc, answer(doc))
    again = copy.deepcopy(doc)
    again["request"]["object"] = once
    resp = answer(again, namespace_enabled=True)
    assert "patch" not in resp and "already injected" in resp["status"]["message"]
    # a pod that has the sidecar container but lost the annotation is not injected twice either
    del once["metadata"]["annotations"][ANNOTATION_STATUS]
    resp = answer(again)
    assert "patch" not in resp


def test_service_name_and_port_from_annotations() -> None:
    doc = request()
    ann = doc["request"]["object"]["metadata"]["annotations"]
    ann["lictor.io/connect-service"] = "storefront"
    ann["lictor.io/connect-service-port"] = "http"  # a container port's name
    d = registered_definition(patched(doc, answer(doc)))
    assert (d["name"], d["port"], d["id"]) == ("storefront", 8080, "$(POD_NAME)-storefront")


# ---------------------------------------------------------------------------------------------
# bad input: allowed unchanged, with the reason


@pytest.mark.parametrize("body, says", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps(request(apiVersion="admission.k8s.io/v1beta1")).encode(), "expected apiVersion admission.k8s.io/v1"),
    (json.dumps(request(kind="TokenReview")).encode(), "kind AdmissionReview"),
    (json.dumps(request(request=None)).encode(), "has no request"),
    (json.dumps(request(**{"request.object": "a string"})).encode(), "not a Pod object"),
])
def test_malformed_requests(body: bytes, says: str) -> None:
    resp = answer(body)
    assert "patch" not in resp and says in resp["status"]["message"], resp
    assert resp["warnings"]


def test_another_kind_is_let_through() -> None:
    doc = request(**{"request.kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                     "request.resource": {"group": "apps", "version": "v1", "resource": "deployments"}})
    resp = answer(doc)
    assert "patch" not in resp and "apps/v1/Deployment is not a core/v1 Pod" in resp["status"]["message"]
    assert resp["uid"] == doc["request"]["uid"]


def test_update_is_not_injected() -> None:
    resp = answer(request(**{"request.operation": "UPDATE"}))
    assert "patch" not in resp and "operation UPDATE" in resp["status"]["message"]


@pytest.mark.parametrize("mutate, says", [
    (lambda pod: pod["spec"]["containers"][0].pop("ports"), "the pod has no container port"),
    (lambda pod: pod["metadata"]["annotations"].update({"lictor.io/connect-service-upstreams": "inventory"}),
     "expected <service>:<local port>"),
    (lambda pod: pod["metadata"]["annotations"].update({"lictor.io/connect-service-upstreams": "a:1,b:1"}),
     "local port 1 is used twice"),
    (lambda pod: pod["metadata"]["annotations"].update({"lictor.io/connect-service-upstreams": "inv:99999"}),
     "port '99999' is not 1-65535"),
    (lambda pod: pod["metadata"]["annotations"].update({"lictor.io/connect-service-upstreams": "web:8080"}),
     "port 8080 is needed by the sidecar"),
    (lambda pod: pod["metadata"]["annotations"].update({"lictor.io/connect-inject": "yes"}),
     "expected \"true\" or \"false\""),
    (lambda pod: pod["metadata"]["labels"].update({"app": "Web_Shop"}), "is not a DNS label"),
    (lambda pod: pod["metadata"]["annotations"].update({"lictor.io/connect-service-port": "grpc"}),
     "neither a port number"),
    (lambda pod: pod["spec"].update({"containers": []}), "no containers"),
    (lambda pod: pod["spec"]["containers"][0].update({"ports": 5}), "spec.containers[0].ports: expected a list"),
    (lambda pod: pod["spec"]["containers"][0].update({"ports": [{"containerPort": True}]}),
     "spec.containers[0].ports[0].containerPort: expected a port number 1-65535, got True"),
    (lambda pod: pod["spec"]["containers"][0].update({"ports": ["8080"]}),
     "spec.containers[0].ports[0]: expected an object"),
    (lambda pod: pod.update({"spec": None}), "spec: expected an object"),
    (lambda pod: pod["metadata"].update({"annotations": ["x"]}), "metadata.annotations"),
])
def test_a_pod_that_cannot_be_injected_says_why(mutate: Any, says: str) -> None:
    doc = request()
    mutate(doc["request"]["object"])
    resp = answer(doc)
    assert "patch" not in resp, resp
    assert resp["status"]["message"].startswith("not injected: ") and says in resp["status"]["message"], resp
    assert resp["warnings"] == [f"lictor: {resp['status']['message']}"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(["request", "request.object", "request.object.metadata", "request.object.spec",
                             "request.object.metadata.annotations", "request.object.spec.containers",
                             "request.kind", "request.uid", "request.object.metadata.labels",
                             "request.object.spec.containers.0", "request.object.spec.containers.0.ports",
                             "request.object.spec.containers.0.ports.0",
                             "request.object.spec.containers.0.ports.0.containerPort",
                             "request.object.spec.containers.0.name", "request.object.spec.initContainers",
                             "request.object.spec.volumes"]),
       value=json_values)
def test_any_shape_is_answered_never_raised(path: str, value: Any) -> None:
    try:
        doc = request(**{path: value})
    except (KeyError, IndexError, TypeError):
        return  # the path does not exist once an earlier part is replaced
    resp = answer(doc)
    if "patch" in resp:
        pod = patched(doc, resp)
        try:  # a valid pod stays valid (an invalid one the API server rejects after us anyway)
            valid_pod(doc["request"]["object"])
        except Exception:  # noqa: BLE001 - kubernetes_validate's several error types
            return
        valid_pod(pod)


def test_parse_upstreams() -> None:
    assert parse_upstreams("") == ()
    assert parse_upstreams(" a:1 , b-2:65535,") == (("a", 1), ("b-2", 65535))


# ---------------------------------------------------------------------------------------------
# offline: workloads in multi-document YAML

WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {lictor.io/connect-service-upstreams: "inventory:9191"}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres, ports: [{containerPort: 5432}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logs}
spec:
  selector: {matchLabels: {app: logs}}
  template:
    metadata: {labels: {app: logs}}
    spec:
      containers: [{name: logs, image: fluent-bit, ports: [{containerPort: 2020}]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    metadata:
      annotations: {lictor.io/connect-service: migrate, lictor.io/connect-service-port: "9000"}
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: app}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug, labels: {app: debug}}
spec:
  containers: [{name: debug, image: busybox, ports: [{containerPort: 7000}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: skipped, annotations: {lictor.io/connect-inject: "false"}}
spec:
  containers: [{name: skipped, image: busybox}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_offline_injection_of_every_workload_kind() -> None:
    docs = list(yaml.safe_load_all(WORKLOADS))
    out, notes = inject_documents(docs, CONFIG)
    assert len(out) == len(docs) and len(notes) == len(docs)
    kinds = {}
    for d in out:
        for v in K8S_VERSIONS:
            validate(d, v, strict=True)
        if d["kind"] == "Service":
            continue
        spec = d["spec"]["template"]["spec"] if d["kind"] != "Pod" else d["spec"]
        kinds[(d["kind"], d["metadata"]["name"])] = [c["name"] for c in spec["containers"]]
    assert kinds == {("Deployment", "web"): ["web", "lictor-sidecar-proxy"],
                     ("StatefulSet", "db"): ["db", "lictor-sidecar-proxy"],
                     ("DaemonSet", "logs"): ["logs", "lictor-sidecar-proxy"],
                     ("Job", "migrate"): ["migrate", "lictor-sidecar-proxy"],
                     ("Pod", "debug"): ["debug", "lictor-sidecar-proxy"],
                     ("Pod", "skipped"): ["skipped"]}
    assert out[-1] == docs[-1]
    # again: nothing changes (idempotent), and the input was not modified in place
    again, _ = inject_documents(out, CONFIG)
    assert again == out
    assert "lictor-sidecar-proxy" not in json.dumps(docs)


def test_offline_refuses_the_whole_file_naming_the_document() -> None:
    docs = list(yaml.safe_load_all(WORKLOADS))
    docs[3]["spec"]["template"]["metadata"]["annotations"].pop("lictor.io/connect-service-port")
    with pytest.raises(InjectError, match=r"document 4 \(Job migrate\): the pod has no container port"):
        inject_documents(docs, CONFIG)
    with pytest.raises(InjectError, match=r"document 1: expected a Kubernetes object"):
        inject_documents(["just text"], CONFIG)
    with pytest.raises(InjectError, match=r"document 1 \(Deployment x\): no pod template at spec.template"):
        inject_documents([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}],
                         CONFIG)
