"""The rule language: HCL and JSON parse to the same Policy; every mistake is named."""

from __future__ import annotations

import pytest

from lictor.server.acl.rules import PolicyParseError, Rule, merge_policies, parse_rules, policy_from_dict, policy_to_dict

HCL = '''
key_prefix "app/" { policy = "read" }
key_prefix "" { policy = "deny" }
key "app/secret" { policy = "deny" }
service "web" {
  policy = "write"
  intentions = "read"
}
service_prefix "" { policy = "read" }
operator = "read"
acl = "write"
'''

JSON = '''{"key_prefix": {"app/": {"policy": "read"}, "": {"policy": "deny"}},
 "key": {"app/secret": {"policy": "deny"}},
 "service": {"web": {"policy": "write", "intentions": "read"}},
 "service_prefix": {"": {"policy": "read"}}, "operator": "read", "acl": "write"}'''


def test_hcl_and_json_give_the_same_policy() -> None:
    a, b = parse_rules(HCL), parse_rules(JSON)
    assert a == b
    assert a.prefix["key"] == {"app/": Rule("read"), "": Rule("deny")}
    assert a.exact["service"]["web"] == Rule("write", "read")
    assert a.single == {"operator": "read", "acl": "write"}


def test_round_trip_through_the_wire_form() -> None:
    p = parse_rules(HCL)
    assert policy_from_dict(policy_to_dict(p)) == p


def test_empty_rules_are_an_empty_policy() -> None:
    assert parse_rules("") == parse_rules("   \n") == parse_rules("{}")


@pytest.mark.parametrize(("text", "message"), [
    ('key_prefix "a/" { policy = "wirte" }', "key_prefix \"a/\": invalid policy 'wirte'"),
    ('service "web" { policy = "list" }', "list is only valid for key rules"),
    ('keys "a" { policy = "read" }', "unknown rule resource 'keys'"),
    ('operator = "sudo"', "operator: invalid policy 'sudo'"),
    ('node "n1" { polcy = "read" }', "node \"n1\": unknown field 'polcy'"),
    ('node "n1" { }', "node \"n1\": missing policy"),
    ('service "web" { policy = "read" intentions = "list" }', "intentions: invalid policy 'list'"),
    ('key_prefix "a" {', "Failed to parse ACL rules"),
    ('{"key": [1]}', "expected a block"),
    ('{"key": ', "invalid JSON"),
    ('node_prefix "" { policy = 3 }', "policy must be a string"),
])
def test_errors_name_the_rule(text: str, message: str) -> None:
    with pytest.raises(PolicyParseError) as ei:
        parse_rules(text)
    assert message in str(ei.value)
    assert ei.value.status == 400


def test_merge_keeps_the_strongest_level_at_the_same_rule() -> None:
    a = parse_rules('key "k" { policy = "read" }\nkey_prefix "p" { policy = "write" }\noperator = "write"')
    b = parse_rules('key "k" { policy = "write" }\nkey_prefix "p" { policy = "deny" }\noperator = "read"')
    m = merge_policies([a, b])
    assert m.exact["key"]["k"] == Rule("write")
    assert m.prefix["key"]["p"] == Rule("deny")  # deny wins at the same specificity
    assert m.single["operator"] == "write"


def test_key_list_level_is_accepted() -> None:
    assert parse_rules('key_prefix "" { policy = "list" }').prefix["key"][""] == Rule("list")
