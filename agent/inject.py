"""Kubernetes sidecar injection, as a pure transformation (no I/O): a Pod (or a workload's pod
template) in, the Envoy sidecar, its bootstrap volume and an init container out.

::

    AdmissionReview bytes --review()--> AdmissionReview response (allowed, JSONPatch | message)
                                 \\
    Pod / pod template --plan()--> Plan(inject?, reason, additions) --patch_ops()--> JSONPatch
                                                                   --apply()-----> injected pod
    YAML documents (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod) --inject_documents()

Who is injected (issue 10): a pod annotated ``lictor.io/connect-inject: "true"``, or any pod of a
namespace labelled ``lictor-injection=enabled`` (the webhook configuration sends those to
``/mutate/namespace-enabled``, the API server having matched the namespace label), unless the pod
says ``lictor.io/connect-inject: "false"``. A pod that already carries the sidecar (the status
annotation, or a container of that name) is left alone: injection is idempotent.

What the pod gets:

* volume ``lictor-connect`` (emptyDir in memory): the service definition and Envoy's bootstrap;
* init container ``lictor-connect-init``: registers the service, with its sidecar and upstreams,
  at the node's agent (``$(HOST_IP):8500``, the client DaemonSet's hostPort) as
  ``$(POD_NAME)-<service>``;
* container ``lictor-sidecar-proxy``: ``lictor connect envoy -sidecar-for $(POD_NAME)-<service>``
  (xDS from the node's agent on 8502), public listener on port 20000; deregisters on preStop.

From the pod: the service name (``lictor.io/connect-service``, else label ``app`` or
``app.kubernetes.io/name``, else the first container's name), its port
(``lictor.io/connect-service-port``: a number or a container port's name, else the first container
port) and upstreams (``lictor.io/connect-service-upstreams: "inventory:9191,shipping:9192"``,
each bound on 127.0.0.1 in the pod). A pod that asks for injection but cannot get it (no port,
a malformed annotation) is *allowed unchanged* with the reason in ``status.message`` and a
warning: the webhook never blocks a pod and never half-applies a patch.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ANNOTATION_INJECT", "ANNOTATION_STATUS", "ANNOTATION_UPSTREAMS", "InjectConfig", "InjectError",
           "Plan", "allow_unchanged", "apply", "inject_documents", "patch_ops", "plan", "review"]

ANNOTATION_INJECT = "lictor.io/connect-inject"
ANNOTATION_STATUS = "lictor.io/connect-inject-status"
ANNOTATION_SERVICE = "lictor.io/connect-service"
ANNOTATION_PORT = "lictor.io/connect-service-port"
ANNOTATION_UPSTREAMS = "lictor.io/connect-service-upstreams"
NAMESPACE_LABEL = "lictor-injection"
SIDECAR_NAME = "lictor-sidecar-proxy"
INIT_NAME = "lictor-connect-init"
VOLUME_NAME = "lictor-connect"
MOUNT_PATH = "/lictor/connect"
ADMISSION_API = "admission.k8s.io/v1"

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


class InjectError(ValueError):
    """The pod (or document) cannot be injected; the message says why, naming the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectConfig:
    image: str
    agent_http_port: int = 8500
    agent_grpc_port: int = 8502
    proxy_port: int = 20000
    #: a Secret in the pod's namespace whose key ``token`` is the ACL token for registering the
    #: service and for Envoy (optional: without it the containers send no token)
    token_secret: str = "lictor-connect-token"


@dataclass(frozen=True, slots=True)
class Additions:
    annotations: dict[str, str]
    volume: dict[str, Any]
    init_container: dict[str, Any]
    sidecar: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    inject: bool
    reason: str
    additions: Additions | None = None
    #: the pod asked for injection (so a refusal deserves a warning to the user)
    requested: bool = False
    service: str = ""
    upstreams: tuple[tuple[str, int], ...] = field(default=())


# ---------------------------------------------------------------------------------------------
# deciding


def _meta(pod: Mapping[str, Any], key: str) -> dict[str, str]:
    meta = pod.get("metadata")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InjectError("metadata: expected an object")
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InjectError(f"metadata.{key}: expected an object of strings")
    return value


def _containers(pod: Mapping[str, Any], key: str = "containers") -> list[dict[str, Any]]:
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise InjectError("spec: expected an object (is this a Pod?)")
    items = spec.get(key, [])
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(c, dict) for c in items):
        raise InjectError(f"spec.{key}: expected a list of objects")
    return items


def parse_upstreams(text: str) -> tuple[tuple[str, int], ...]:
    """``"inventory:9191,shipping:9192"`` -> (("inventory", 9191), ("shipping", 9192))."""
    out: list[tuple[str, int]] = []
    for i, item in enumerate(x.strip() for x in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 2:
            raise InjectError(f"{ANNOTATION_UPSTREAMS}: item {i + 1} {item!r}: expected <service>:<local port>")
        name, port = parts
        if not _DNS_LABEL.match(name):
            raise InjectError(f"{ANNOTATION_UPSTREAMS}: item {i + 1}: {name!r} is not a service name "
                              "(lower-case letters, digits and '-')")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise InjectError(f"{ANNOTATION_UPSTREAMS}: item {i + 1}: port {port!r} is not 1-65535")
        if any(int(port) == p for _, p in out):
            raise InjectError(f"{ANNOTATION_UPSTREAMS}: local port {port} is used twice")
        out.append((name, int(port)))
    return tuple(out)


def _service_name(pod: Mapping[str, Any], containers: list[dict[str, Any]]) -> str:
    ann, labels = _meta(pod, "annotations"), _meta(pod, "labels")
    if ANNOTATION_SERVICE in ann:
        name, where = ann[ANNOTATION_SERVICE], f"annotation {ANNOTATION_SERVICE}"
    elif "app" in labels:
        name, where = labels["app"], "label app"
    elif "app.kubernetes.io/name" in labels:
        name, where = labels["app.kubernetes.io/name"], "label app.kubernetes.io/name"
    elif containers and isinstance(containers[0].get("name"), str):
        name, where = containers[0]["name"], "the first container's name"
    else:
        raise InjectError(f"no service name: set annotation {ANNOTATION_SERVICE}")
    if not _DNS_LABEL.match(name):
        raise InjectError(f"service name {name!r} (from {where}) is not a DNS label "
                          "(lower-case letters, digits and '-', at most 63)")
    return name


def _declared_ports(containers: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(name, containerPort) of every container port, in order; a malformed entry is an error
    naming it (bool is not a port, although Python counts it as an int)."""
    out: list[tuple[str, int]] = []
    for i, c in enumerate(containers):
        ports = c.get("ports")
        if ports is None:
            continue
        if not isinstance(ports, list):
            raise InjectError(f"spec.containers[{i}].ports: expected a list")
        for j, p in enumerate(ports):
            where = f"spec.containers[{i}].ports[{j}]"
            if not isinstance(p, dict):
                raise InjectError(f"{where}: expected an object")
            port = p.get("containerPort")
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise InjectError(f"{where}.containerPort: expected a port number 1-65535, got {str(port)[:40]}")
            name = p.get("name")
            out.append((name if isinstance(name, str) else "", port))
    return out


def _service_port(pod: Mapping[str, Any], declared: list[tuple[str, int]]) -> int:
    wanted = _meta(pod, "annotations").get(ANNOTATION_PORT)
    if wanted is not None:
        if wanted.isdigit() and 1 <= int(wanted) <= 65535:
            return int(wanted)
        for name, port in declared:
            if name and name == wanted:
                return port
        raise InjectError(f"annotation {ANNOTATION_PORT}={wanted!r}: neither a port number 1-65535 nor the "
                          "name of a container port")
    if declared:
        return declared[0][1]
    raise InjectError(f"the pod has no container port: declare one in spec.containers[].ports or set "
                      f"annotation {ANNOTATION_PORT}")


def plan(pod: Mapping[str, Any], config: InjectConfig, *, namespace_enabled: bool) -> Plan:
    """Decide for one pod (or pod template). Raises only :class:`InjectError`, and only when the
    pod asked for injection (or its namespace did) and cannot have it."""
    if not isinstance(pod, Mapping):
        raise InjectError("expected a Pod object")
    ann = _meta(pod, "annotations")
    flag = ann.get(ANNOTATION_INJECT)
    if flag is not None and flag not in ("true", "false"):
        raise InjectError(f"annotation {ANNOTATION_INJECT}={flag!r}: expected \"true\" or \"false\"")
    if flag == "false":
        return Plan(False, f"opted out ({ANNOTATION_INJECT}: \"false\")")
    if flag != "true" and not namespace_enabled:
        return Plan(False, f"not selected (no {ANNOTATION_INJECT}: \"true\" and the namespace is not "
                           f"labelled {NAMESPACE_LABEL}=enabled)")
    containers = _containers(pod)
    init = _containers(pod, "initContainers")
    _containers(pod, "volumes")  # the patch appends to it: a list of objects or absent
    if ANNOTATION_STATUS in ann or any(c.get("name") in (SIDECAR_NAME, INIT_NAME) for c in [*containers, *init]):
        return Plan(False, "already injected", requested=True)
    if not containers:
        raise InjectError("spec.containers: the pod has no containers")
    service = _service_name(pod, containers)
    declared = _declared_ports(containers)
    port = _service_port(pod, declared)
    upstreams = parse_upstreams(ann.get(ANNOTATION_UPSTREAMS, ""))
    taken = {p for _, p in declared}
    for clash in sorted(taken & ({config.proxy_port} | {p for _, p in upstreams})):
        raise InjectError(f"port {clash} is needed by the sidecar (proxy or an upstream) but a container "
                          "already declares it")
    adds = _additions(service, port, upstreams, config)
    return Plan(True, f"injected sidecar for service {service!r} (port {port}, {len(upstreams)} upstreams)",
                adds, requested=True, service=service, upstreams=upstreams)


# ---------------------------------------------------------------------------------------------
# what gets added


def _env(config: InjectConfig) -> list[dict[str, Any]]:
    def field_ref(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    return [field_ref("HOST_IP", "status.hostIP"), field_ref("POD_IP", "status.podIP"),
            field_ref("POD_NAME", "metadata.name"), field_ref("POD_NAMESPACE", "metadata.namespace"),
            {"name": "LICTOR_HTTP_ADDR", "value": f"$(HOST_IP):{config.agent_http_port}"},
            {"name": "LICTOR_HTTP_TOKEN", "valueFrom": {"secretKeyRef": {
                "name": config.token_secret, "key": "token", "optional": True}}}]


def _security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": 5995, "runAsGroup": 5995, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def service_definition(service: str, port: int, upstreams: tuple[tuple[str, int], ...],
                       config: InjectConfig) -> dict[str, Any]:
    """The definition the init container registers (``$(POD_NAME)``/``$(POD_IP)`` are expanded
    by the kubelet in the env value that carries it)."""
    return {"service": {
        "id": f"$(POD_NAME)-{service}", "name": service, "address": "$(POD_IP)", "port": port,
        "meta": {"pod-name": "$(POD_NAME)", "k8s-namespace": "$(POD_NAMESPACE)"},
        "connect": {"sidecar_service": {
            "port": config.proxy_port,
            "proxy": {"upstreams": [{"destination_name": n, "local_bind_port": p} for n, p in upstreams]}}}}}


def _additions(service: str, port: int, upstreams: tuple[tuple[str, int], ...], config: InjectConfig) -> Additions:
    sid = f"$(POD_NAME)-{service}"
    mount = [{"name": VOLUME_NAME, "mountPath": MOUNT_PATH}]
    definition = json.dumps(service_definition(service, port, upstreams, config), separators=(",", ":"))
    init = {
        "name": INIT_NAME, "image": config.image,
        "command": ["/bin/sh", "-ec", f'printf "%s" "$LICTOR_SERVICE" > {MOUNT_PATH}/service.json\n'
                                      f"exec lictor services register {MOUNT_PATH}/service.json"],
        "env": [*_env(config), {"name": "LICTOR_SERVICE", "value": definition}],
        "volumeMounts": mount, "securityContext": _security_context(),
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "96Mi"}},
    }
    sidecar = {
        "name": SIDECAR_NAME, "image": config.image,
        "args": ["connect", "envoy", f"-sidecar-for={sid}", f"-http-addr=$(HOST_IP):{config.agent_http_port}",
                 f"-grpc-addr=$(HOST_IP):{config.agent_grpc_port}"],
        # Envoy's bootstrap is written under TMPDIR: the in-memory volume (the root fs is read-only)
        "env": [*_env(config), {"name": "TMPDIR", "value": MOUNT_PATH}],
        "ports": [{"containerPort": config.proxy_port, "name": "lictor-proxy", "protocol": "TCP"}],
        "volumeMounts": mount, "securityContext": _security_context(),
        "lifecycle": {"preStop": {"exec": {"command": [
            "/bin/sh", "-c", f'lictor services deregister -id="$POD_NAME-{service}"']}}},
        "readinessProbe": {"tcpSocket": {"port": config.proxy_port}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    return Additions(
        annotations={ANNOTATION_STATUS: "injected"},
        volume={"name": VOLUME_NAME, "emptyDir": {"medium": "Memory"}},
        init_container=init, sidecar=sidecar)


# ---------------------------------------------------------------------------------------------
# rendering: a JSONPatch (RFC 6902) for the webhook, or the injected object for offline mode


def _ptr(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def patch_ops(pod: Mapping[str, Any], adds: Additions) -> list[dict[str, Any]]:
    """``add`` operations only, each against a path that exists in ``pod`` (a missing list or
    map is added whole), so the API server applies them to exactly the pod it sent."""
    ops: list[dict[str, Any]] = []
    meta = pod.get("metadata") or {}
    if "metadata" not in pod:
        ops.append({"op": "add", "path": "/metadata", "value": {"annotations": dict(adds.annotations)}})
    elif not meta.get("annotations"):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": dict(adds.annotations)})
    else:
        ops += [{"op": "add", "path": f"/metadata/annotations/{_ptr(k)}", "value": v}
                for k, v in adds.annotations.items()]
    spec = pod["spec"]
    for key, item in (("volumes", adds.volume), ("initContainers", adds.init_container),
                      ("containers", adds.sidecar)):
        if spec.get(key):
            ops.append({"op": "add", "path": f"/spec/{key}/-", "value": item})
        else:
            ops.append({"op": "add", "path": f"/spec/{key}", "value": [item]})
    return ops


def apply(pod: Mapping[str, Any], adds: Additions) -> dict[str, Any]:
    """A copy of ``pod`` with the additions (what ``patch_ops`` does, applied)."""
    out = copy.deepcopy(dict(pod))
    meta = out.setdefault("metadata", {}) or {}
    out["metadata"] = meta
    meta["annotations"] = {**(meta.get("annotations") or {}), **adds.annotations}
    spec = out["spec"]
    spec["volumes"] = [*(spec.get("volumes") or []), copy.deepcopy(adds.volume)]
    spec["initContainers"] = [*(spec.get("initContainers") or []), copy.deepcopy(adds.init_container)]
    spec["containers"] = [*spec["containers"], copy.deepcopy(adds.sidecar)]
    return out


# ---------------------------------------------------------------------------------------------
# the webhook: AdmissionReview in, AdmissionReview out


def _response(uid: str, message: str, *, patch: list[dict[str, Any]] | None = None,
              warning: bool = False) -> dict[str, Any]:
    resp: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch is not None:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    resp["status"] = {"code": 200, "message": message}
    if warning:
        resp["warnings"] = [f"lictor: {message}"]
    return {"apiVersion": ADMISSION_API, "kind": "AdmissionReview", "response": resp}


def allow_unchanged(uid: str, message: str) -> dict[str, Any]:
    """An AdmissionReview that lets the object through untouched, saying why."""
    return _response(uid, message, warning=True)


def review(body: bytes, config: InjectConfig, *, namespace_enabled: bool) -> dict[str, Any]:
    """Answer one AdmissionReview request. Never raises: anything it cannot use is answered by
    allowing the object unchanged, saying why in ``status.message``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _response("", f"not injected: the request is not JSON ({exc})", warning=True)
    if not isinstance(doc, dict):
        return _response("", "not injected: the request is not a JSON object", warning=True)
    req = doc.get("request")
    uid = req.get("uid") if isinstance(req, dict) and isinstance(req.get("uid"), str) else ""
    if doc.get("apiVersion") != ADMISSION_API or doc.get("kind") != "AdmissionReview":
        return _response(uid, f"not injected: expected apiVersion {ADMISSION_API} kind AdmissionReview, got "
                              f"{str(doc.get('apiVersion'))[:80]!r} {str(doc.get('kind'))[:80]!r}", warning=True)
    if not isinstance(req, dict):
        return _response(uid, "not injected: the AdmissionReview has no request", warning=True)
    kind = req.get("kind") if isinstance(req.get("kind"), dict) else {}
    if (kind.get("group"), kind.get("version"), kind.get("kind")) != ("", "v1", "Pod"):
        what = "/".join(str(kind.get(k, "?")) for k in ("group", "version", "kind"))
        return _response(uid, f"not injected: {what[:120]} is not a core/v1 Pod")
    if req.get("operation") != "CREATE":
        return _response(uid, f"not injected: operation {str(req.get('operation'))[:20]} (only CREATE is injected)")
    if req.get("subResource"):
        return _response(uid, f"not injected: subresource {str(req.get('subResource'))[:40]}")
    pod = req.get("object")
    if not isinstance(pod, dict):
        return _response(uid, "not injected: request.object is not a Pod object", warning=True)
    try:
        p = plan(pod, config, namespace_enabled=namespace_enabled)
        if not p.inject or p.additions is None:
            return _response(uid, f"not injected: {p.reason}")
        return _response(uid, p.reason, patch=patch_ops(pod, p.additions))
    except InjectError as exc:
        return _response(uid, f"not injected: {exc}", warning=True)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        # a shape no check above foresaw: still an answer, never a failed admission call
        return _response(uid, f"not injected: the pod could not be read ({type(exc).__name__}: {str(exc)[:200]})",
                         warning=True)


# ---------------------------------------------------------------------------------------------
# offline: `lictor connect inject -f manifests.yaml`

#: kind -> path of the pod template inside it (apiVersion checked too)
POD_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps/v1", "Deployment"): ("spec", "template"),
    ("apps/v1", "StatefulSet"): ("spec", "template"),
    ("apps/v1", "DaemonSet"): ("spec", "template"),
    ("apps/v1", "ReplicaSet"): ("spec", "template"),
    ("batch/v1", "Job"): ("spec", "template"),
    ("batch/v1", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
    ("v1", "Pod"): (),
}


def inject_documents(docs: list[Any], config: InjectConfig) -> tuple[list[Any], list[str]]:
    """Inject every workload in ``docs`` (as ``istioctl kube-inject`` does: the user asked, so no
    namespace label is needed; ``lictor.io/connect-inject: "false"`` still opts out). Returns the
    new documents and one line per document saying what happened. Raises :class:`InjectError`
    naming the document on the first one that cannot be injected: nothing is half-done."""
    out: list[Any] = []
    notes: list[str] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise InjectError(f"document {i + 1}: expected a Kubernetes object, got {type(doc).__name__}")
        kind, api = doc.get("kind"), doc.get("apiVersion")
        name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
        where = f"document {i + 1} ({kind} {name})"
        path = POD_TEMPLATES.get((str(api), str(kind)))
        if path is None:
            out.append(doc)
            notes.append(f"{where}: not a workload, unchanged")
            continue
        template: Any = doc
        try:
            for key in path:
                template = template[key]
        except (KeyError, TypeError):
            raise InjectError(f"{where}: no pod template at {'.'.join(path)}") from None
        if not isinstance(template, dict):
            raise InjectError(f"{where}: {'.'.join(path)} is not an object")
        try:
            p = plan(template, config, namespace_enabled=True)
        except InjectError as exc:
            raise InjectError(f"{where}: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise InjectError(f"{where}: the pod template could not be read ({type(exc).__name__}: {exc})") from None
        notes.append(f"{where}: {p.reason}")
        if not p.inject or p.additions is None:
            out.append(doc)
            continue
        new = copy.deepcopy(doc)
        if not path:
            out.append(apply(new, p.additions))
            continue
        parent: Any = new
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = apply(template, p.additions)
        out.append(new)
    return out, notes
