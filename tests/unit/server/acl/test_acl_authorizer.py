"""Decisions: exact over prefix, longest prefix wins, deny at the same specificity, default
policy chaining, the acl resource, identities and templated policies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lictor.server.acl.authorizer import (Authorizer, build_authorizer, node_identity_policy,
                                          service_identity_policy, templated_policy)
from lictor.server.acl.rules import parse_rules


def authz(text: str, default: str = "deny") -> Authorizer:
    return build_authorizer([parse_rules(text)], default=default, accessor_id="acc-1")


def test_exact_beats_prefix_and_longest_prefix_wins() -> None:
    a = authz('''
key_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }
key_prefix "app/secret/" { policy = "deny" }
key "app/secret/public" { policy = "read" }
''')
    assert a.allowed("key", "read", "other")
    assert not a.allowed("key", "write", "other")
    assert a.allowed("key", "write", "app/x")
    assert not a.allowed("key", "read", "app/secret/x")
    assert a.allowed("key", "read", "app/secret/public")
    assert not a.allowed("key", "write", "app/secret/public")


def test_deny_wins_at_the_same_specificity_across_policies() -> None:
    a = build_authorizer([parse_rules('service "web" { policy = "write" }'),
                          parse_rules('service "web" { policy = "deny" }')], default="allow")
    assert not a.allowed("service", "read", "web")
    assert a.allowed("service", "read", "db")  # default allow


def test_levels() -> None:
    a = authz('key_prefix "l/" { policy = "list" }\nkey_prefix "r/" { policy = "read" }')
    assert a.allowed("key", "list", "l/x") and a.allowed("key", "read", "l/x") and not a.allowed("key", "write", "l/x")
    assert a.allowed("key", "read", "r/x") and not a.allowed("key", "list", "r/x")


def test_default_policy_applies_only_where_no_rule_speaks() -> None:
    allow = authz('key "k" { policy = "deny" }', default="allow")
    assert allow.allowed("node", "write", "n1")
    assert not allow.allowed("key", "read", "k")
    assert not authz("", default="deny").allowed("node", "read", "n1")


def test_acl_resource_is_never_granted_by_default_allow() -> None:
    assert not authz("", default="allow").allowed("acl", "read")
    a = authz('acl = "read"')
    assert a.allowed("acl", "read") and not a.allowed("acl", "write")


def test_management_allows_everything() -> None:
    m = build_authorizer([], default="deny", management=True)
    assert m.allowed("acl", "write") and m.allowed("key", "write", "x") and m.key_write_prefix("")


def test_mesh_falls_back_to_operator_and_intentions_follow_service() -> None:
    a = authz('operator = "write"\nservice "web" { policy = "read" }\nservice "db" { policy = "read" intentions = "write" }')
    assert a.allowed("mesh", "write")
    assert a.allowed("intention", "read", "web") and not a.allowed("intention", "write", "web")
    assert a.allowed("intention", "write", "db")
    assert not a.allowed("intention", "read", "other")


def test_key_write_prefix_needs_every_rule_below_to_allow_write() -> None:
    a = authz('key_prefix "app/" { policy = "write" }\nkey "app/locked" { policy = "read" }')
    assert not a.key_write_prefix("app/")
    assert a.key_write_prefix("app/x/")
    assert not a.key_write_prefix("")


def test_an_exact_key_rule_does_not_cover_the_keys_that_start_with_it() -> None:
    # issue 18 item 7: `key "allowed"` must not let `DELETE /v1/kv/allowed?recurse` remove
    # allowed-other-team/...; only a prefix rule (or an allow default) governs a prefix
    a = authz('key "allowed" { policy = "write" }')
    assert a.allowed("key", "write", "allowed") and not a.key_write_prefix("allowed")
    assert authz('key_prefix "allowed" { policy = "write" }').key_write_prefix("allowed")
    assert not authz('key_prefix "allowed" { policy = "read" }').key_write_prefix("allowed")
    # a deny below the prefix still refuses, an allow default with no rule still allows
    assert not authz('key_prefix "" { policy = "write" }\nkey "a/b" { policy = "deny" }').key_write_prefix("a/")
    allow = build_authorizer([], default="allow")
    assert allow.key_write_prefix("anything/")


def test_service_identity() -> None:
    a = build_authorizer([service_identity_policy("web")], default="deny")
    assert a.allowed("service", "write", "web") and a.allowed("service", "write", "web-sidecar-proxy")
    assert not a.allowed("service", "write", "db") and a.allowed("service", "read", "db")
    assert a.allowed("node", "read", "n1") and not a.allowed("node", "write", "n1")


def test_node_identity_and_templated_policies() -> None:
    a = build_authorizer([node_identity_policy("n1")], default="deny")
    assert a.allowed("node", "write", "n1") and not a.allowed("node", "write", "n2")
    t = build_authorizer([templated_policy("builtin/service", {"name": "api"})], default="deny")
    assert t.allowed("service", "write", "api") and not t.allowed("service", "write", "web")
    d = build_authorizer([templated_policy("builtin/dns", {})], default="deny")
    assert d.allowed("query", "read", "q") and not d.allowed("key", "read", "k")


def test_repr_never_shows_policy_or_secret() -> None:
    assert "acc-1" in repr(authz('key "x" { policy = "read" }')) and "key" not in repr(authz('key "x" { policy = "read" }'))


names = st.text(alphabet="ab/", max_size=6)


@given(st.lists(st.tuples(names, st.sampled_from(["read", "write", "deny"])), max_size=6), names)
def test_longest_matching_prefix_decides(rules: list[tuple[str, str]], key: str) -> None:
    text = "\n".join(f'key_prefix "{p}" {{ policy = "{lvl}" }}' for p, lvl in rules)
    a = authz(text)
    merged: dict[str, str] = {}
    order = {"deny": 3, "write": 2, "read": 1}
    for p, lvl in rules:
        if p not in merged or order[lvl] > order[merged[p]]:
            merged[p] = lvl
    matching = [p for p in merged if key.startswith(p)]
    expected_read = bool(matching) and merged[max(matching, key=len)] in ("read", "write")
    assert a.allowed("key", "read", key) == expected_read


def test_unknown_resource_is_a_bug() -> None:
    with pytest.raises(ValueError):
        authz("").allowed("keys", "read", "x")
