"""Intentions -> Envoy RBAC rules (proto JSON), as pure functions.

The decision Envoy enforces must equal :func:`lictor.server.configentry.intentions.intention_decision`:
the matching intention of highest precedence decides, none -> the default policy.

One RBAC filter has one action. With default deny it is an ALLOW filter holding the allowing
intentions; with default allow a DENY filter holding the denying ones. "Highest precedence
decides" is kept by subtracting, from each intention's source, the sources of every intention of
higher precedence (those are decided by their own policy, or by the default)::

    principal(i) = source(i) AND NOT (source(j) for every j with higher precedence than i)

L7 (``Permissions``, only in the HTTP filter) works the same inside one intention: the first
matching permission decides, none -> the default policy::

    permission(k) = perm(k) AND NOT (perm(j) for every j < k)

At L4 an intention with permissions denies (an L4 connection carries no request), as
``/v1/connect/intentions/check`` answers.

JWT requirements (L7 only; at L4 they are not looked at, as the decision function does) read the
payloads ``jwt_authn`` verified (agent/xds/jwt.py) from the dynamic metadata: a requirement is met
when one of its providers verified the token (its payload has an ``iss``) and every
``VerifyClaims`` path holds the value (or a list containing it). A permission's ``JWT`` is part of
its match; the entry-level ``JWT`` must also hold for the intention to allow.
"""

from __future__ import annotations

import re
from typing import Any

from lictor.agent.xds.jwt import JWT_FILTER, metadata_key
from lictor.server.configentry.intentions import Intention

__all__ = ["rbac_rules", "source_principal"]

WILDCARD = "*"


def _spiffe_regex(trust_domain: str, ns: str, name: str) -> str:
    ns_part = "[^/]+" if ns == WILDCARD else re.escape(ns)
    name_part = "[^/]+" if name == WILDCARD else re.escape(name)
    return f"^spiffe://{re.escape(trust_domain)}/ns/{ns_part}/dc/[^/]+/svc/{name_part}$"


def source_principal(ix: Intention, trust_domain: str) -> dict[str, Any]:
    """The client identities an intention's source names (any datacenter of the trust domain)."""
    rx = _spiffe_regex(trust_domain, ix.source_ns, ix.source_name)
    return {"authenticated": {"principal_name": {"safe_regex": {"regex": rx}}}}


def _not_any(ps: list[dict[str, Any]]) -> dict[str, Any]:
    inner = ps[0] if len(ps) == 1 else {"or_ids": {"ids": list(ps)}}  # a copy: the caller's list grows
    return {"not_id": inner}


def _and(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """One item, or a set of them: ``and_ids``/``or_ids`` (principals) hold ``ids``,
    ``and_rules``/``or_rules`` (permissions) hold ``rules``."""
    if len(items) == 1:
        return items[0]
    return {key: {"rules" if key.endswith("_rules") else "ids": list(items)}}


def _string_match(rule: dict[str, Any]) -> dict[str, Any] | None:
    ci = bool(rule.get("IgnoreCase"))
    for field, key in (("Exact", "exact"), ("Prefix", "prefix"), ("Suffix", "suffix"), ("Contains", "contains")):
        if rule.get(field):
            m: dict[str, Any] = {key: str(rule[field])}
            if ci:
                m["ignore_case"] = True
            return m
    if rule.get("Regex"):
        return {"safe_regex": {"regex": str(rule["Regex"])}}
    return None


def _header(rule: dict[str, Any]) -> dict[str, Any]:
    h: dict[str, Any] = {"name": str(rule.get("Name", "")).lower()}
    if rule.get("Present"):
        h["present_match"] = True
    else:
        sm = _string_match(rule)
        if sm is None:  # nothing to compare: never matches (as the decision function answers)
            return {"not_rule": {"any": True}}
        h["string_match"] = sm
    if rule.get("Invert"):
        h["invert_match"] = True
    return {"header": h}


def _metadata(provider: str, path: list[str], value: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"filter": JWT_FILTER, "path": [{"key": k} for k in [metadata_key(provider), *path]],
                         "value": value}}


def _jwt(req: Any, principals: bool) -> dict[str, Any] | None:
    """A JWT requirement as a principal (``principals``) or a permission; None without one."""
    and_key, or_key = ("and_ids", "or_ids") if principals else ("and_rules", "or_rules")
    alts = []
    for prov in (req or {}).get("Providers") or []:
        name = str(prov.get("Name", ""))
        parts = [_metadata(name, ["iss"], {"present_match": True})]  # this provider verified a token
        for c in prov.get("VerifyClaims") or []:
            path, want = [str(x) for x in c.get("Path") or []], str(c.get("Value", ""))
            parts.append(_and([_metadata(name, path, {"string_match": {"exact": want}}),
                               _metadata(name, path, {"list_match": {"one_of": {"string_match": {"exact": want}}}})],
                              or_key))
        alts.append(_and(parts, and_key))
    if not alts:
        return None
    return _and(alts, or_key)


def _permission(perm: dict[str, Any]) -> dict[str, Any]:
    """One intention permission (HTTP path, headers, methods) as an Envoy Permission."""
    http = perm.get("HTTP") or {}
    parts: list[dict[str, Any]] = []
    if http.get("PathExact"):
        parts.append({"url_path": {"path": {"exact": http["PathExact"]}}})
    elif http.get("PathPrefix"):
        parts.append({"url_path": {"path": {"prefix": http["PathPrefix"]}}})
    elif http.get("PathRegex"):
        parts.append({"url_path": {"path": {"safe_regex": {"regex": http["PathRegex"]}}}})
    for rule in http.get("Header") or []:
        parts.append(_header(rule))
    methods = http.get("Methods") or []
    if methods:
        ms = [{"header": {"name": ":method", "string_match": {"exact": m}}} for m in methods]
        parts.append(_and(ms, "or_rules"))
    jwt = _jwt(perm.get("JWT"), principals=False)
    if jwt is not None:
        parts.append(jwt)
    if not parts:
        return {"any": True}
    return _and(parts, "and_rules")


def _l7_permissions(ix: Intention, action: str) -> list[dict[str, Any]]:
    """The permissions of ``ix`` whose action is ``action``, each minus the earlier ones."""
    out: list[dict[str, Any]] = []
    earlier: list[dict[str, Any]] = []
    for perm in ix.permissions:
        p = _permission(perm)
        if perm.get("Action") == action:
            out.append(_and([p, {"not_rule": _and(earlier, "or_rules")}], "and_rules") if earlier else p)
        earlier.append(p)
    return out


def rbac_rules(intentions: tuple[Intention, ...] | list[Intention], *, default_allow: bool, trust_domain: str,
               l7: bool) -> dict[str, Any] | None:
    """The ``rules`` of an RBAC filter (network when ``l7`` is false, HTTP otherwise), or None
    when no filter is needed (default allow and nothing denies)."""
    action = "deny" if default_allow else "allow"
    policies: dict[str, Any] = {}
    higher: list[dict[str, Any]] = []
    for ix in sorted(intentions, key=Intention.sort_key):
        src = source_principal(ix, trust_domain)
        principal = _and([src, _not_any(higher)], "and_ids") if higher else src
        higher.append(src)
        name = f"consul-intentions-layer{'7' if l7 and ix.permissions else '4'}-{len(policies)}"
        jwt = _jwt(ix.jwt, principals=True) if l7 else None
        if ix.permissions:
            if not l7:
                if action == "deny":  # L4 cannot satisfy L7 permissions: deny
                    policies[name] = {"permissions": [{"any": True}], "principals": [principal]}
                continue
            perms = _l7_permissions(ix, action)
            if perms:
                who = _and([principal, jwt], "and_ids") if jwt is not None and action == "allow" else principal
                policies[name] = {"permissions": perms, "principals": [who]}
            if jwt is not None and action == "deny":  # an allowing permission without the entry's JWT
                allowing = _l7_permissions(ix, "allow")
                if allowing:
                    policies[f"consul-intentions-layer7-{len(policies)}"] = {
                        "permissions": allowing, "principals": [_and([principal, {"not_id": jwt}], "and_ids")]}
            continue
        if ix.action == action:
            who = _and([principal, jwt], "and_ids") if jwt is not None and action == "allow" else principal
            policies[name] = {"permissions": [{"any": True}], "principals": [who]}
        elif jwt is not None and ix.action == "allow":  # default allow: deny the ones without the JWT
            policies[name] = {"permissions": [{"any": True}],
                              "principals": [_and([principal, {"not_id": jwt}], "and_ids")]}
    if action == "deny" and not policies:
        return None
    return {"action": action.upper(), "policies": policies}
