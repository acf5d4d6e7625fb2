"""Intentions: Consul's precedence table, matching, L4 and L7 decisions, the default policy."""

from __future__ import annotations

import pytest

from lictor.server.configentry.entries import DictView, decode_entry
from lictor.server.configentry.intentions import (L7Request, all_intentions, default_allow, intention_decision,
                                                  match_intentions, precedence)
from lictor.server.configentry.validate import check_fields

# Consul's table: (source ns, source name, destination ns, destination name) -> precedence
PRECEDENCE_TABLE = [
    (("a", "web", "b", "db"), 9),
    (("a", "*", "b", "db"), 8),
    (("*", "*", "b", "db"), 7),
    (("a", "web", "b", "*"), 6),
    (("a", "*", "b", "*"), 5),
    (("*", "*", "b", "*"), 4),
    (("a", "web", "*", "*"), 3),
    (("a", "*", "*", "*"), 2),
    (("*", "*", "*", "*"), 1),
]


@pytest.mark.parametrize(("parts", "expected"), PRECEDENCE_TABLE)
def test_precedence_table(parts: tuple[str, str, str, str], expected: int) -> None:
    assert precedence(*parts) == expected


def entry(dest: str, *sources: dict, ns: str = "", jwt: dict | None = None) -> dict:
    body: dict = {"Kind": "service-intentions", "Name": dest, "Sources": list(sources)}
    if ns:
        body["Namespace"] = ns
    if jwt:
        body["JWT"] = jwt
    body = decode_entry(body)
    check_fields(body)
    return body


def src(name: str, action: str = "", ns: str = "", perms: list | None = None) -> dict:
    s: dict = {"Name": name}
    if ns:
        s["Namespace"] = ns
    if action:
        s["Action"] = action
    if perms:
        s["Permissions"] = perms
    return s


def test_exact_beats_wildcard_both_ways() -> None:
    view = DictView([entry("db", src("web", "deny"), src("*", "allow")), entry("*", src("web", "allow"))])
    assert not intention_decision(view, "web", "db").allowed        # web->db exact: deny (9)
    assert intention_decision(view, "api", "db").allowed            # *->db: allow (8)
    assert intention_decision(view, "web", "cache").allowed         # web->*: allow (6)
    d = intention_decision(view, "api", "cache", default=False)     # nothing matches -> default
    assert not d.allowed and d.default


def test_destination_specificity_dominates_source() -> None:
    # *->db (8) beats web->* (6) even though the latter names the source exactly
    view = DictView([entry("db", src("*", "deny")), entry("*", src("web", "allow"))])
    assert not intention_decision(view, "web", "db").allowed


def test_namespace_wildcards() -> None:
    view = DictView([
        entry("db", src("*", "deny", ns="*"),                        # 7: any ns, any name -> prod/db
              src("*", "allow", ns="team"), ns="prod"),              # 8: team/* -> prod/db
        entry("*", src("web", "allow", ns="team"), ns="*"),          # 3: team/web -> */*
    ])
    assert intention_decision(view, "web", "db", source_ns="team", destination_ns="prod").allowed
    assert not intention_decision(view, "web", "db", source_ns="other", destination_ns="prod").allowed
    assert intention_decision(view, "web", "x", source_ns="team", destination_ns="anything", default=False).allowed
    assert not intention_decision(view, "api", "x", source_ns="team", destination_ns="qa", default=False).allowed


def test_wildcard_namespace_requires_wildcard_name() -> None:
    with pytest.raises(Exception, match=r"Sources\[0\].Namespace: a wildcard namespace requires a wildcard name"):
        entry("db", src("web", "allow", ns="*"))


def test_match_orders_by_precedence() -> None:
    view = DictView([entry("db", src("web", "allow"), src("*", "deny")), entry("*", src("web", "deny")),
                     entry("cache", src("api", "allow"))])
    ixs = all_intentions(view)
    by_dst = match_intentions(ixs, "destination", "default", "db")
    assert [(i.source_name, i.destination_name, i.precedence) for i in by_dst] == [
        ("web", "db", 9), ("*", "db", 8), ("web", "*", 6)]
    by_src = match_intentions(ixs, "source", "default", "web")
    assert [(i.source_name, i.destination_name) for i in by_src] == [("web", "db"), ("*", "db"), ("web", "*")]


L7 = [
    {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
    {"Action": "allow", "HTTP": {"PathExact": "/health", "Methods": ["get", "HEAD"]}},
    {"Action": "allow", "HTTP": {"PathRegex": "/api/v[0-9]+/.*",
                                 "Header": [{"Name": "x-env", "Exact": "PROD", "IgnoreCase": True},
                                            {"Name": "x-debug", "Present": True, "Invert": True}]}},
    {"Action": "allow", "HTTP": {"Header": [{"Name": "x-user", "Suffix": "@corp"}]}},
]


@pytest.mark.parametrize(("method", "path", "headers", "allowed", "reason"), [
    ("GET", "/admin/users", {}, False, "Permissions[0]"),
    ("GET", "/health", {}, True, "Permissions[1]"),
    ("POST", "/health", {}, False, "no permission matches"),
    ("GET", "/api/v2/items", {"X-Env": "prod"}, True, "Permissions[2]"),
    ("GET", "/api/v2/items", {"X-Env": "prod", "X-Debug": "1"}, False, "no permission matches"),
    ("GET", "/api/vX/items", {"X-Env": "prod"}, False, "no permission matches"),
    ("GET", "/other", {"x-user": "ann@corp"}, True, "Permissions[3]"),
])
def test_l7_permissions_first_match_wins(method: str, path: str, headers: dict, allowed: bool, reason: str) -> None:
    view = DictView([entry("api", src("web", perms=L7))])
    d = intention_decision(view, "web", "api", request=L7Request(method=method, path=path, headers=headers),
                           default=False)
    assert d.allowed is allowed
    assert reason in d.reason


def test_l7_intention_denies_an_l4_check_and_unmatched_requests_get_the_default() -> None:
    view = DictView([entry("api", src("web", perms=L7[:1]))])
    assert not intention_decision(view, "web", "api").allowed  # L4 check
    assert intention_decision(view, "web", "api", request=L7Request(path="/x"), default=True).allowed
    assert not intention_decision(view, "web", "api", request=L7Request(path="/x"), default=False).allowed


def test_jwt_requirements() -> None:
    perms = [{"Action": "allow", "JWT": {"Providers": [{"Name": "okta",
                                                        "VerifyClaims": [{"Path": ["perms", "role"], "Value": "admin"}]}]}}]
    view = DictView([entry("api", src("web", perms=perms)), entry("db", src("web", "allow"),
                                                                  jwt={"Providers": [{"Name": "okta"}]})])
    ok = L7Request(jwt={"okta": {"perms": {"role": ["admin", "dev"]}}})
    assert intention_decision(view, "web", "api", request=ok, default=False).allowed
    bad = L7Request(jwt={"okta": {"perms": {"role": "dev"}}})
    assert not intention_decision(view, "web", "api", request=bad, default=False).allowed
    assert not intention_decision(view, "web", "db", request=L7Request()).allowed  # no token
    assert intention_decision(view, "web", "db", request=L7Request(jwt={"okta": {}})).allowed


def test_default_policy() -> None:
    empty = DictView()
    assert default_allow(empty)                                               # ACLs off: allow
    assert not default_allow(empty, acl_enabled=True, acl_default_policy="deny")
    assert default_allow(empty, acl_enabled=True, acl_default_policy="allow")
    assert not default_allow(empty, config_default="deny")                     # agent setting
    mesh = DictView([decode_entry({"Kind": "mesh", "Name": "mesh", "DefaultIntentionPolicy": "deny"})])
    assert not default_allow(mesh)
    assert not intention_decision(mesh, "a", "b").allowed
