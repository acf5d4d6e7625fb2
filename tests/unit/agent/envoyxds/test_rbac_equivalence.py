"""The RBAC Envoy gets must decide exactly as ``intention_decision`` (what
/v1/agent/connect/authorize and /v1/connect/intentions/check answer), for random intention tables.

A small evaluator of Envoy's RBAC semantics (the matchers our generator uses) runs the
generated rules; hypothesis draws intention sets, default policies and requests."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lictor.agent.xds.rbac import rbac_rules
from lictor.server.configentry.intentions import L7Request, all_intentions, intention_decision

TD = "11111111-2222-3333-4444-555555555555.consul"


class View:
    def __init__(self, sources: list[dict[str, Any]], jwt: dict[str, Any] | None = None) -> None:
        self.body: dict[str, Any] = {"Kind": "service-intentions", "Name": "api", "Sources": sources}
        if jwt:
            self.body["JWT"] = jwt

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.body if kind == "service-intentions" and name == "api" else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        return [self.body] if kind == "service-intentions" and self.body["Sources"] else []


def _string(m: dict[str, Any], value: str) -> bool:
    ci = m.get("ignore_case", False)
    v = value.lower() if ci else value
    for k in ("exact", "prefix", "suffix", "contains"):
        if k in m:
            want = m[k].lower() if ci else m[k]
            return {"exact": v == want, "prefix": v.startswith(want), "suffix": v.endswith(want),
                    "contains": want in v}[k]
    if "safe_regex" in m:
        return re.fullmatch(m["safe_regex"]["regex"], value) is not None
    raise AssertionError(m)


def _metadata(m: dict[str, Any], req: L7Request | None) -> bool:
    """Envoy's MetadataMatcher on jwt_authn's dynamic metadata (payload per provider key)."""
    assert m["filter"] == "envoy.filters.http.jwt_authn" and req is not None
    keys = [k["key"] for k in m["path"]]
    prefix = "jwt_payload_"
    assert keys[0].startswith(prefix)
    cur: Any = req.jwt.get(keys[0][len(prefix):])
    for k in keys[1:]:
        cur = cur.get(k) if isinstance(cur, dict) else None
    v = m["value"]
    if v.get("present_match"):
        return isinstance(cur, (str, int, float, bool))
    if "string_match" in v:
        return isinstance(cur, str) and _string(v["string_match"], cur)
    if "list_match" in v:
        return isinstance(cur, list) and any(isinstance(x, str) and _string(v["list_match"]["one_of"]["string_match"], x)
                                             for x in cur)
    raise AssertionError(m)


def principal(p: dict[str, Any], uri: str, req: L7Request | None = None) -> bool:
    if "and_ids" in p:
        return all(principal(x, uri, req) for x in p["and_ids"]["ids"])
    if "or_ids" in p:
        return any(principal(x, uri, req) for x in p["or_ids"]["ids"])
    if "not_id" in p:
        return not principal(p["not_id"], uri, req)
    if p.get("any"):
        return True
    if "metadata" in p:
        return _metadata(p["metadata"], req)
    return _string(p["authenticated"]["principal_name"], uri)


def permission(p: dict[str, Any], req: L7Request | None) -> bool:
    if p.get("any"):
        return True
    if "and_rules" in p:
        return all(permission(x, req) for x in p["and_rules"]["rules"])
    if "or_rules" in p:
        return any(permission(x, req) for x in p["or_rules"]["rules"])
    if "not_rule" in p:
        return not permission(p["not_rule"], req)
    assert req is not None, "an L7 matcher in a network filter"
    if "metadata" in p:
        return _metadata(p["metadata"], req)
    if "url_path" in p:
        return _string(p["url_path"]["path"], req.path)
    if "header" in p:
        h = p["header"]
        name = h["name"]
        value = req.method if name == ":method" else {k.lower(): v for k, v in req.headers.items()}.get(name)
        if h.get("present_match"):
            got = value is not None
        else:
            got = value is not None and _string(h["string_match"], value)
        return not got if h.get("invert_match") else got
    raise AssertionError(p)


def envoy_allows(rules: dict[str, Any] | None, uri: str, req: L7Request | None) -> bool:
    if rules is None:
        return True
    hit = any(any(permission(pm, req) for pm in pol["permissions"]) and any(principal(pr, uri, req) for pr in pol["principals"])
              for pol in rules["policies"].values())
    return hit if rules["action"] == "ALLOW" else not hit


PATHS = ["/", "/admin", "/admin/x", "/ok", "/v1/a"]
perm = st.fixed_dictionaries({"Action": st.sampled_from(["allow", "deny"]), "HTTP": st.one_of(
    st.fixed_dictionaries({"PathPrefix": st.sampled_from(["/admin", "/v1", "/"])}),
    st.fixed_dictionaries({"PathExact": st.sampled_from(PATHS)}),
    st.fixed_dictionaries({"PathRegex": st.sampled_from(["/v[0-9]/.*", "/adm.*"])}),
    st.fixed_dictionaries({"Methods": st.lists(st.sampled_from(["GET", "POST"]), min_size=1, max_size=2, unique=True)}),
    st.fixed_dictionaries({"Header": st.just([{"Name": "X-Env", "Exact": "prod"}])}),
)})


@st.composite
def sources(draw: Any, l7: bool) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(["web", "db", "*"]), unique=True, max_size=3))
    out = []
    for n in names:
        if l7 and draw(st.booleans()):
            out.append({"Name": n, "Permissions": draw(st.lists(perm, min_size=1, max_size=3))})
        else:
            out.append({"Name": n, "Action": draw(st.sampled_from(["allow", "deny"]))})
    return out


@settings(max_examples=300, deadline=None)
@given(srcs=sources(l7=False), default=st.booleans(), who=st.sampled_from(["web", "db", "other"]))
def test_l4_rbac_equals_the_decision(srcs: list[dict[str, Any]], default: bool, who: str) -> None:
    view = View(srcs)
    rules = rbac_rules(all_intentions(view), default_allow=default, trust_domain=TD, l7=False)
    uri = f"spiffe://{TD}/ns/default/dc/dc1/svc/{who}"
    want = intention_decision(view, who, "api", default=default).allowed
    assert envoy_allows(rules, uri, None) == want


@settings(max_examples=400, deadline=None)
@given(srcs=sources(l7=True), default=st.booleans(), who=st.sampled_from(["web", "db", "other"]),
       path=st.sampled_from(PATHS), method=st.sampled_from(["GET", "POST"]), env=st.sampled_from(["prod", "dev", None]))
def test_l7_rbac_equals_the_decision(srcs: list[dict[str, Any]], default: bool, who: str, path: str, method: str,
                                     env: str | None) -> None:
    view = View(srcs)
    rules = rbac_rules(all_intentions(view), default_allow=default, trust_domain=TD, l7=True)
    uri = f"spiffe://{TD}/ns/default/dc/dc1/svc/{who}"
    req = L7Request(method=method, path=path, headers={"X-Env": env} if env else {})
    want = intention_decision(view, who, "api", default=default, request=req).allowed
    assert envoy_allows(rules, uri, req) == want


jwt_req = st.fixed_dictionaries({"Providers": st.lists(st.fixed_dictionaries(
    {"Name": st.sampled_from(["okta", "local"]),
     "VerifyClaims": st.sampled_from([[], [{"Path": ["role"], "Value": "admin"}],
                                      [{"Path": ["org", "team"], "Value": "ops"}]])}), min_size=1, max_size=2)})
claims = st.fixed_dictionaries({"iss": st.just("issuer")}, optional={
    "role": st.sampled_from(["admin", "user", ["dev", "admin"], ["dev"]]),
    "org": st.sampled_from([{"team": "ops"}, {"team": "dev"}, "ops"])})


@st.composite
def jwt_sources(draw: Any) -> list[dict[str, Any]]:
    out = draw(sources(l7=True))
    for src in out:
        for p in src.get("Permissions") or []:
            if draw(st.booleans()):
                p["JWT"] = draw(jwt_req)
    return out


@settings(max_examples=500, deadline=None)
@given(srcs=jwt_sources(), entry_jwt=st.one_of(st.none(), jwt_req), default=st.booleans(),
       who=st.sampled_from(["web", "db", "other"]), path=st.sampled_from(PATHS),
       verified=st.dictionaries(st.sampled_from(["okta", "local"]), claims, max_size=2))
def test_l7_rbac_with_jwt_equals_the_decision(srcs: list[dict[str, Any]], entry_jwt: dict[str, Any] | None,
                                              default: bool, who: str, path: str,
                                              verified: dict[str, dict[str, Any]]) -> None:
    """``verified``: the payloads jwt_authn put in the metadata (the providers that accepted the token)."""
    view = View(srcs, entry_jwt)
    rules = rbac_rules(all_intentions(view), default_allow=default, trust_domain=TD, l7=True)
    uri = f"spiffe://{TD}/ns/default/dc/dc1/svc/{who}"
    req = L7Request(method="GET", path=path, jwt=verified)
    want = intention_decision(view, who, "api", default=default, request=req).allowed
    assert envoy_allows(rules, uri, req) == want


def test_another_trust_domain_is_not_a_principal() -> None:
    view = View([{"Name": "*", "Action": "allow"}])
    rules = rbac_rules(all_intentions(view), default_allow=False, trust_domain=TD, l7=False)
    assert envoy_allows(rules, f"spiffe://{TD}/ns/default/dc/dc2/svc/web", None)
    assert not envoy_allows(rules, "spiffe://other.consul/ns/default/dc/dc1/svc/web", None)
