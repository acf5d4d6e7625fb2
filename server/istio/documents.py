"""PURE: the documents of an ``apply -f`` file (multi-document YAML, a JSON object, or a JSON/YAML
``kind: List``) -> Istio resources, each with its position in the file for error messages.

Kubernetes workload kinds (Deployment, Service, ...) are skipped with one note each; an unknown
kind or API version is an error naming the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from lictor.common.errors import ValidationError

__all__ = ["ISTIO_KINDS", "Resource", "parse_documents", "resource_key"]

# kind -> accepted apiVersions
ISTIO_KINDS: dict[str, tuple[str, ...]] = {
    "Gateway": ("networking.istio.io/v1alpha3", "networking.istio.io/v1beta1", "networking.istio.io/v1"),
    "VirtualService": ("networking.istio.io/v1alpha3", "networking.istio.io/v1beta1", "networking.istio.io/v1"),
    "DestinationRule": ("networking.istio.io/v1alpha3", "networking.istio.io/v1beta1", "networking.istio.io/v1"),
    "ServiceEntry": ("networking.istio.io/v1alpha3", "networking.istio.io/v1beta1", "networking.istio.io/v1"),
    "PeerAuthentication": ("security.istio.io/v1beta1", "security.istio.io/v1"),
    "AuthorizationPolicy": ("security.istio.io/v1beta1", "security.istio.io/v1"),
    "RequestAuthentication": ("security.istio.io/v1beta1", "security.istio.io/v1"),
    "Telemetry": ("telemetry.istio.io/v1alpha1", "telemetry.istio.io/v1"),
}

MAX_DOCUMENTS = 1000


@dataclass(frozen=True, slots=True)
class Resource:
    """One Istio resource. ``where`` names it in messages: ``document 2 (VirtualService/reviews)``."""

    kind: str
    name: str
    namespace: str
    api_version: str
    body: dict[str, Any]           # the resource as applied (apiVersion, kind, metadata, spec)
    where: str = field(default="", compare=False)

    @property
    def spec(self) -> dict[str, Any]:
        s = self.body.get("spec")
        return s if isinstance(s, dict) else {}

    @property
    def key(self) -> tuple[str, str]:
        return resource_key(self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def resource_key(kind: str, namespace: str, name: str) -> tuple[str, str]:
    return (kind, f"{namespace}/{name}")


def _label(doc: Any) -> str:
    if isinstance(doc, dict):
        md = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        return f"{doc.get('kind', '?')}/{md.get('name', '?')}"
    return "?"


def from_body(body: dict[str, Any], where: str) -> Resource:
    """A resource from one decoded document (validated: kind, apiVersion, metadata.name, spec)."""
    kind = body.get("kind")
    api = body.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise ValidationError(f"{where}: kind: missing")
    if kind not in ISTIO_KINDS:
        raise ValidationError(f"{where}: kind: unknown kind {kind!r} (accepted: {', '.join(sorted(ISTIO_KINDS))})")
    if api not in ISTIO_KINDS[kind]:
        raise ValidationError(f"{where}: apiVersion: {api!r} is not an accepted version of {kind} "
                              f"({', '.join(ISTIO_KINDS[kind])})")
    md = body.get("metadata")
    if not isinstance(md, dict):
        raise ValidationError(f"{where}: metadata: missing")
    name = md.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{where}: metadata.name: missing")
    ns = md.get("namespace") or "default"
    if not isinstance(ns, str):
        raise ValidationError(f"{where}: metadata.namespace: expected a string")
    spec = body.get("spec", {})
    if not isinstance(spec, dict):
        raise ValidationError(f"{where}: spec: expected an object")
    unknown = sorted(set(body) - {"apiVersion", "kind", "metadata", "spec", "status"})
    if unknown:
        raise ValidationError(f"{where}: {unknown[0]}: unknown field")
    clean = {"apiVersion": api, "kind": kind,
             "metadata": {k: v for k, v in md.items() if k in ("name", "namespace", "labels", "annotations")},
             "spec": spec}
    return Resource(kind=kind, name=name, namespace=ns, api_version=api, body=clean, where=where)


def parse_documents(text: str) -> tuple[list[Resource], list[str]]:
    """(resources in file order, notes about skipped documents). Raises ValidationError naming
    the document (position and kind/name) and the field."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValidationError(f"malformed YAML{at}: {getattr(e, 'problem', None) or e}") from None
    flat: list[Any] = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
            flat.extend(d["items"])
        elif d is not None:
            flat.append(d)
    if len(flat) > MAX_DOCUMENTS:
        raise ValidationError(f"too many documents ({len(flat)} > {MAX_DOCUMENTS})")
    out: list[Resource] = []
    notes: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for i, doc in enumerate(flat, 1):
        where = f"document {i} ({_label(doc)})"
        if not isinstance(doc, dict):
            raise ValidationError(f"document {i}: expected a mapping, got {type(doc).__name__}")
        api = doc.get("apiVersion")
        if isinstance(api, str) and ".istio.io/" not in api and doc.get("kind") not in ISTIO_KINDS:
            notes.append(f"{where}: skipped, {api} {doc.get('kind')} is not mesh configuration")
            continue
        r = from_body(doc, where)
        if r.key in seen:
            raise ValidationError(f"{where}: {r.kind} {r.namespace}/{r.name} is also {seen[r.key]}")
        seen[r.key] = where
        out.append(r)
    return out, notes
