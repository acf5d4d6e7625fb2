"""The pure Istio translation: Istio's authorization order as intentions (checked against a small
reference evaluator of Istio's rules), determinism, conflicts, and bad input named by document
and field."""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import DictView
from lictor.server.configentry.intentions import L7Request, intention_decision
from lictor.server.istio.documents import from_body, parse_documents
from lictor.server.istio.plan import make_plan
from lictor.server.istio.translate import translate

SOURCES = ["frontend", "admin", "other"]
PATHS = ["/a", "/b/x"]


def policy(i: int, action: str, rules: list[dict[str, Any]] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}, "action": action}
    if rules is not None:
        spec["rules"] = rules
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}"}, "spec": spec}


rule_st = st.fixed_dictionaries({}, optional={
    "principals": st.lists(st.sampled_from(SOURCES), min_size=1, max_size=2, unique=True),
    "paths": st.lists(st.sampled_from(["/a", "/b/*"]), min_size=1, max_size=2, unique=True)})
policy_st = st.tuples(st.sampled_from(["ALLOW", "DENY"]), st.one_of(st.none(), st.lists(rule_st, max_size=2)))


def istio_rule(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "principals" in r:
        out["from"] = [{"source": {"principals": [f"cluster.local/ns/default/sa/{p}" for p in r["principals"]]}}]
    if "paths" in r:
        out["to"] = [{"operation": {"paths": r["paths"]}}]
    return out


def istio_allows(pols: list[tuple[str, list[dict[str, Any]] | None]], source: str, path: str) -> bool:
    """Istio's evaluation: a matching DENY denies; with ALLOW policies one must match; else allow."""
    def matches(r: dict[str, Any]) -> bool:
        ok_src = "principals" not in r or source in r["principals"]
        ok_path = "paths" not in r or any(path == p or (p.endswith("*") and path.startswith(p[:-1]))
                                          for p in r["paths"])
        return ok_src and ok_path
    if any(a == "DENY" and any(matches(r) for r in rules or []) for a, rules in pols):
        return False
    allows = [rules for a, rules in pols if a == "ALLOW"]
    return not allows or any(matches(r) for rules in allows for r in rules or [])


@settings(max_examples=150, deadline=None)
@given(st.lists(policy_st, min_size=1, max_size=3))
def test_authorization_policies_decide_as_istio_does(pols: list[tuple[str, Any]]) -> None:
    bodies = [policy(i, a, None if rules is None else [istio_rule(r) for r in rules])
              for i, (a, rules) in enumerate(pols)]
    resources = [from_body(b, f"document {i + 1}") for i, b in enumerate(bodies)]
    entries = translate(resources).entries
    view = DictView([e for e in entries if e["Kind"] == "service-intentions"])
    for src in SOURCES:
        for path in PATHS:
            want = istio_allows(pols, src, path)
            got = intention_decision(view, src, "web", request=L7Request(path=path), default=True)
            assert got.allowed == want, (src, path, pols, entries, got.reason)


SHOP = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shipping}
spec:
  host: shipping
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shipping}
spec:
  hosts: [shipping]
  http:
  - route:
    - {destination: {host: shipping, subset: v1}, weight: 90}
    - {destination: {host: shipping, subset: v2}, weight: 10}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shipping-v1}
spec: {}
"""


def test_deterministic_and_kubernetes_kinds_skipped() -> None:
    resources, notes = parse_documents(SHOP)
    assert [r.kind for r in resources] == ["DestinationRule", "VirtualService"]
    assert notes == ["document 3 (Deployment/shipping-v1): skipped, apps/v1 Deployment is not mesh configuration"]
    a = translate(resources).entries
    shuffled = list(resources)
    random.Random(7).shuffle(shuffled)
    assert translate(list(reversed(resources))).entries == a == translate(shuffled).entries
    split = next(e for e in a if e["Kind"] == "service-splitter")
    assert split["Splits"] == [{"Weight": 90.0, "Service": "shipping", "ServiceSubset": "v1"},
                               {"Weight": 10.0, "Service": "shipping", "ServiceSubset": "v2"}]
    resolver = next(e for e in a if e["Kind"] == "service-resolver")
    assert resolver["Subsets"]["v2"] == {"Filter": 'Service.Meta.version == "v2"'}


def test_conflict_with_a_consul_entry_names_both() -> None:
    resources, _ = parse_documents(SHOP)
    view = DictView([{"Kind": "service-splitter", "Name": "shipping",
                      "Splits": [{"Weight": 100, "Service": "shipping"}]}])
    with pytest.raises(ValidationError) as e:
        make_plan({}, view, apply=resources)
    assert "document 2 (VirtualService/shipping)" in str(e.value)
    assert "service-splitter 'shipping' written with the Consul API" in str(e.value)


def test_delete_removes_exactly_the_implied_entries() -> None:
    resources, _ = parse_documents(SHOP)
    plan = make_plan({}, DictView(), apply=resources)
    stored = {r.key: {"body": r.body} for r in resources}
    view = DictView([*plan.put_entries, {"Kind": "service-defaults", "Name": "mine", "Protocol": "http"}])
    vs = next(r for r in resources if r.kind == "VirtualService")
    after = make_plan(stored, view, delete=[vs.key])
    assert sorted(after.delete_entries) == [("service-defaults", "shipping"), ("service-splitter", "shipping")]
    assert after.put_entries == []  # the resolver of the DestinationRule stays as it was


def doc(kind: str, spec: dict[str, Any], name: str = "x", api: str = "networking.istio.io/v1") -> str:
    return yaml.safe_dump({"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec})


@pytest.mark.parametrize("text,needle", [
    ("kind: Foo\napiVersion: networking.istio.io/v1\nmetadata: {name: a}\n",
     "document 1 (Foo/a): kind: unknown kind 'Foo'"),
    (doc("VirtualService", {"hosts": ["web"]}, api="networking.istio.io/v9"),
     "document 1 (VirtualService/x): apiVersion: 'networking.istio.io/v9' is not an accepted version"),
    (doc("VirtualService", {"hosts": ["web"], "gateways": ["nope"], "http": [{"route": [
        {"destination": {"host": "web"}}]}]}),
     "document 1 (VirtualService/x): spec.gateways[0]: names gateway 'nope', which no Gateway defines"),
    (doc("VirtualService", {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web", "subset": "v9"}}]}]}),
     "document 1 (VirtualService/x): spec.http[0].route[0].destination.subset: subset 'v9' of 'web' is not defined"),
    (doc("VirtualService", {"hosts": ["web"], "http": [{"route": [
        {"destination": {"host": "a"}, "weight": 50}, {"destination": {"host": "b"}, "weight": 40}]}]}),
     "document 1 (VirtualService/x): spec.http[0].route: weights sum to 90, not 100"),
    (doc("VirtualService", {"hosts": ["web"], "htp": []}), "document 1 (VirtualService/x): spec.htp: unknown field"),
    ("a: [1,\n", "malformed YAML at line"),
    (doc("DestinationRule", {"host": "a"}) + "---\n" + doc("DestinationRule", {"host": "b"}),
     "document 2 (DestinationRule/x): DestinationRule default/x is also document 1"),
])
def test_bad_input_names_document_and_field(text: str, needle: str) -> None:
    with pytest.raises(ValidationError) as e:
        resources, _ = parse_documents(text)
        make_plan({}, DictView(), apply=resources)
    assert needle in str(e.value)
