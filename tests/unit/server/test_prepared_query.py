"""Prepared queries: validation, templates, name rules in the FSM, snapshots, session cleanup."""

from __future__ import annotations

import io

import pytest

from lictor.common.commands import MessageType, encode_command
from lictor.common.errors import ValidationError
from lictor.server.fsm import FSM, Rejected
from lictor.server.prepared_query import TABLE, filter_nodes, parse_query, render, resolve


def apply(fsm: FSM, idx: int, payload: dict) -> object:
    return fsm.apply(idx, encode_command(MessageType.PREPARED_QUERY, payload, 1000.0))


def q(qid: str, name: str, service: str = "web", **extra: object) -> dict:
    body = {"Name": name, "Service": {"Service": service}, **extra}
    return {**parse_query(body), "ID": qid}


@pytest.mark.parametrize("body,msg", [
    ({"Service": {}}, "Must provide a Service name"),
    ({"Service": {"Service": "w", "Failover": {"NearestN": -1}}}, "Bad NearestN"),
    ({"Service": {"Service": "w"}, "DNS": {"TTL": "soon"}}, "Bad DNS TTL"),
    ({"Service": {"Service": "w"}, "Template": {"Type": "exact"}}, "Bad Template.Type"),
    ({"Service": {"Service": "w"}, "Template": {"Type": "name_prefix_match", "Regexp": "(a"}}, "Bad Regexp"),
    ({"Service": {"Service": "w"}, "Template": {"Type": "name_prefix_match", "Regexp": "(a)\\1"}}, "Bad Regexp"),
    ({"Service": {"Service": "${nope}"}, "Template": {"Type": "name_prefix_match"}}, "unknown variable"),
    ({"Name": "0b8b2fa1-6b0e-4b4e-9a0c-1d2e3f405060", "Service": {"Service": "w"}}, "cannot be a UUID"),
    ({"Service": {"Service": "w", "Tags": "v1"}}, "Service.Tags"),
    ("nope", "expected a JSON object"),
])
def test_validation_names_the_problem(body, msg):
    with pytest.raises(ValidationError, match=msg):
        parse_query(body)


def test_keys_are_case_insensitive_and_canonicalised():
    out = parse_query({"name": "x", "service": {"service": "web", "onlypassing": True}})
    assert out["Name"] == "x" and out["Service"]["Service"] == "web" and out["Service"]["OnlyPassing"] is True


def test_template_render_with_prefix_suffix_and_regexp_groups():
    t = parse_query({"Name": "geo-db-", "Template": {"Type": "name_prefix_match", "Regexp": "^geo-db-(.*?)-([^-]+)$",
                                                      "RemoveEmptyTags": True},
                     "Service": {"Service": "mysql-${match(1)}", "Tags": ["${match(2)}", "${name.suffix}", "${match(9)}"]}})
    out = render(t, "geo-db-customer-master")
    assert out["Service"]["Service"] == "mysql-customer"
    assert out["Service"]["Tags"] == ["master", "customer-master"]  # the empty match(9) removed
    assert render(t, "geo-db-")["Service"]["Service"] == "mysql-"


def test_fsm_name_rules_and_resolution():
    fsm = FSM()
    assert apply(fsm, 1, {"op": "create", "query": q("id-1", "web")}) == "id-1"
    dup = apply(fsm, 2, {"op": "create", "query": q("id-2", "web")})
    assert isinstance(dup, Rejected) and "aliases an existing query name" in str(dup.error)
    alias = apply(fsm, 3, {"op": "create", "query": q("id-3", "id-1")})
    assert isinstance(alias, Rejected) and "aliases an existing query ID" in str(alias.error)
    tmpl = {**parse_query({"Name": "geo-", "Template": {"Type": "name_prefix_match"},
                           "Service": {"Service": "${name.suffix}"}}), "ID": "t-1"}
    catch_all = {**parse_query({"Name": "", "Template": {"Type": "name_prefix_match"},
                                "Service": {"Service": "${name.full}"}}), "ID": "t-2"}
    assert apply(fsm, 4, {"op": "create", "query": tmpl}) == "t-1"
    assert apply(fsm, 5, {"op": "create", "query": catch_all}) == "t-2"
    store = fsm.store
    assert resolve(store, "id-1")["ID"] == "id-1"
    assert resolve(store, "web")["ID"] == "id-1"  # exact name beats the catch-all template
    assert resolve(store, "geo-eu")["ID"] == "t-1"  # the longest prefix wins
    assert resolve(store, "other")["ID"] == "t-2"
    assert store.ext[TABLE]["id-1"]["CreateIndex"] == 1
    assert apply(fsm, 6, {"op": "update", "query": q("id-1", "web", "api")}) == "id-1"
    row = store.ext[TABLE]["id-1"]
    assert (row["CreateIndex"], row["ModifyIndex"], row["Service"]["Service"]) == (1, 6, "api")
    assert apply(fsm, 7, {"op": "delete", "id": "id-1"}) is True
    assert apply(fsm, 8, {"op": "delete", "id": "id-1"}) is False
    missing = apply(fsm, 9, {"op": "update", "query": q("id-1", "web")})
    assert isinstance(missing, Rejected)


def test_snapshot_carries_queries_and_a_session_takes_its_queries_along():
    fsm = FSM()
    fsm.apply(1, encode_command(MessageType.REGISTER, {"node": "n1", "address": "10.0.0.1"}, 1.0))
    fsm.apply(2, encode_command(MessageType.SESSION, {"op": "create", "session": {
        "id": "s1", "node": "n1", "node_checks": [], "service_checks": [], "behavior": "release"}}, 1.0))
    bad = apply(fsm, 3, {"op": "create", "query": q("a", "a", Session="nope")})
    assert isinstance(bad, Rejected)
    assert apply(fsm, 4, {"op": "create", "query": q("a", "a", Session="s1")}) == "a"
    assert apply(fsm, 5, {"op": "create", "query": q("b", "b")}) == "b"
    buf = io.BytesIO()
    fsm.snapshot().persist(buf)
    other = FSM()
    other.restore(io.BytesIO(buf.getvalue()))
    assert set(other.store.ext[TABLE]) == {"a", "b"}
    fsm.apply(6, encode_command(MessageType.SESSION, {"op": "destroy", "id": "s1"}, 1.0))
    assert set(fsm.store.ext[TABLE]) == {"b"}


def row(node: str, tags=(), status="passing", check="c", nmeta=None, smeta=None):
    return {"Node": {"Node": node, "Meta": nmeta or {}}, "Service": {"Service": "web", "Tags": list(tags),
                                                                     "Meta": smeta or {}},
            "Checks": [{"CheckID": check, "Status": status}]}


def test_execute_filters():
    rows = [row("a", ["v1", "Primary"]), row("b", ["v1"], status="warning"), row("c", ["v2"], status="critical"),
            row("d", ["v1"], status="critical", check="ignored"), row("e", ["v1"], nmeta={"rack": "r2"})]
    base = parse_query({"Service": {"Service": "web", "Tags": ["v1", "!primary"], "IgnoreCheckIDs": ["ignored"]}})
    assert [r["Node"]["Node"] for r in filter_nodes(base, rows)] == ["b", "d", "e"]
    strict = parse_query({"Service": {"Service": "web", "OnlyPassing": True, "NodeMeta": {"rack": "r2"}}})
    assert [r["Node"]["Node"] for r in filter_nodes(strict, rows)] == ["e"]


def test_the_acl_rule_authorizes_the_name_the_decoder_stores() -> None:
    from lictor.server.acl.rpc_rules import RPC_RULES

    body = {"name": "allowed", "Name": "secret", "Service": {"Service": "web"}}
    needs = RPC_RULES["PreparedQuery.Apply"][0](None, {"op": "create", "query": body}, None)  # type: ignore[arg-type]
    assert needs == [("query", "write", parse_query(body)["Name"])] == [("query", "write", "secret")]
    body = {"name": "only-lower", "Service": {"Service": "web"}}
    needs = RPC_RULES["PreparedQuery.Apply"][0](None, {"op": "create", "query": body}, None)  # type: ignore[arg-type]
    assert needs == [("query", "write", "only-lower")] and parse_query(body)["Name"] == "only-lower"
