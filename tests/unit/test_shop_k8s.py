"""examples/shop/k8s: the shop's apps as Deployments and Services with the injection label,
validated offline against the Kubernetes schemas kubernetes-validate bundles; and the same files
go through `lictor apply` as "not mesh configuration" (skipped, one note each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import validate

from lictor.server.istio.documents import parse_documents

K8S = Path(__file__).resolve().parents[2] / "examples" / "shop" / "k8s"
K8S_VERSIONS = ("1.30", "1.37")


def documents() -> list[dict[str, Any]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_is_valid(version: str) -> None:
    docs = documents()
    assert {d["kind"] for d in docs} == {"Namespace", "Deployment", "Service", "ServiceAccount"}
    for d in docs:
        validate(d, version, strict=True)


def test_the_apps_are_injected_and_labelled_as_istio_subsets_expect() -> None:
    docs = documents()
    [ns] = [d for d in docs if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["lictor-injection"] == "enabled"
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"booking", "inventory", "shipping-v1", "shipping-v2"}
    for d in deployments.values():
        tpl = d["spec"]["template"]["metadata"]
        assert tpl["annotations"]["lictor.io/connect-inject"] == "true"
        assert tpl["labels"]["app"] in ("booking", "inventory", "shipping") and tpl["labels"]["version"]
    assert deployments["shipping-v2"]["spec"]["template"]["metadata"]["labels"]["version"] == "v2"
    ups = deployments["booking"]["spec"]["template"]["metadata"]["annotations"]
    assert ups["lictor.io/connect-service-upstreams"] == "inventory:9191,shipping:9192"
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(f.name for f in K8S.glob("*.yaml") if f.name != "kustomization.yaml")


def test_lictor_apply_skips_them() -> None:
    text = "\n---\n".join(f.read_text() for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml")
    resources, notes = parse_documents(text)
    assert resources == [] and len(notes) == len(documents())
    assert all("is not mesh configuration" in n for n in notes)
