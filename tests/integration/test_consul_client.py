"""Consul's own Python client (py-consul) against a real ``lictor agent -dev`` process."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import consul
import pytest

pytestmark = pytest.mark.integration


def test_status(consul_client: Any, dev_agent: Any) -> None:
    leader = consul_client.status.leader()
    assert leader.startswith("127.0.0.1:")
    assert consul_client.status.peers() == [leader]


def test_kv_put_get_delete(consul_client: Any) -> None:
    c = consul_client
    assert c.kv.put("it/kv/a", "hello") is True
    index, data = c.kv.get("it/kv/a")
    assert data["Value"] == b"hello" and data["Key"] == "it/kv/a"
    assert int(index) >= data["ModifyIndex"]
    assert c.kv.put("it/kv/b", b"\x00\xff", flags=42) is True
    _, data = c.kv.get("it/kv/b")
    assert data["Value"] == b"\x00\xff" and data["Flags"] == 42
    _, rows = c.kv.get("it/kv/", recurse=True)
    assert [r["Key"] for r in rows] == ["it/kv/a", "it/kv/b"]
    _, keys = c.kv.get("it/", keys=True, separator="/")
    assert keys == ["it/kv/"]
    assert c.kv.delete("it/kv/a") is True
    assert c.kv.get("it/kv/a")[1] is None
    assert c.kv.delete("it/kv/", recurse=True) is True
    assert c.kv.get("it/kv/", recurse=True)[1] is None


def test_kv_cas(consul_client: Any) -> None:
    c = consul_client
    assert c.kv.put("it/cas", "1", cas=0) is True
    assert c.kv.put("it/cas", "2", cas=0) is False
    _, d = c.kv.get("it/cas")
    assert c.kv.put("it/cas", "2", cas=d["ModifyIndex"] + 1000) is False
    assert c.kv.put("it/cas", "2", cas=d["ModifyIndex"]) is True
    assert c.kv.delete("it/cas", cas=d["ModifyIndex"]) is False
    _, d2 = c.kv.get("it/cas")
    assert d2["Value"] == b"2"
    assert c.kv.delete("it/cas", cas=d2["ModifyIndex"]) is True


def test_kv_blocking_query_returns_on_change(consul_client: Any, dev_agent: Any) -> None:
    c = consul_client
    c.kv.put("it/block", "v1")
    index, _ = c.kv.get("it/block")
    result: dict[str, Any] = {}

    def waiter() -> None:
        t0 = time.monotonic()
        result["index"], result["data"] = consul.Consul(port=dev_agent.http_port).kv.get(
            "it/block", index=index, wait="20s")
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "the blocking query returned before anything changed"
    c.kv.put("it/block", "v2")
    t.join(5)
    assert not t.is_alive()
    assert result["data"]["Value"] == b"v2"
    assert int(result["index"]) > int(index)
    assert result["elapsed"] < 5


def test_kv_blocking_query_times_out_with_same_index(consul_client: Any) -> None:
    c = consul_client
    c.kv.put("it/quiet", "v")
    index, _ = c.kv.get("it/quiet")
    t0 = time.monotonic()
    index2, data = c.kv.get("it/quiet", index=index, wait="1s")
    assert index2 == index and data["Value"] == b"v"
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.0, "returned before the wait elapsed although nothing changed"
    assert elapsed < 15.0, "a 1 s blocking query never returned"


def test_txn_atomic(consul_client: Any) -> None:
    c = consul_client
    ok = c.txn.put([
        {"KV": {"Verb": "set", "Key": "it/txn/a", "Value": base64.b64encode(b"1").decode()}},
        {"KV": {"Verb": "set", "Key": "it/txn/b", "Value": base64.b64encode(b"2").decode()}},
        {"KV": {"Verb": "get", "Key": "it/txn/a"}},
    ])
    assert ok["Errors"] is None and len(ok["Results"]) == 3
    assert base64.b64decode(ok["Results"][2]["KV"]["Value"]) == b"1"
    with pytest.raises(consul.ConsulException) as exc:
        c.txn.put([
            {"KV": {"Verb": "set", "Key": "it/txn/c", "Value": base64.b64encode(b"3").decode()}},
            {"KV": {"Verb": "cas", "Key": "it/txn/a", "Index": 1, "Value": base64.b64encode(b"x").decode()}},
        ])
    assert "index is stale" in str(exc.value)
    assert c.kv.get("it/txn/c")[1] is None
    assert c.kv.get("it/txn/a")[1]["Value"] == b"1"


def test_sessions_and_locks(consul_client: Any, dev_agent: Any) -> None:
    c = consul_client
    s1 = c.session.create(name="it-lock", ttl=30, lock_delay=0)
    s2 = c.session.create(name="it-other", lock_delay=0)
    assert c.kv.put("it/lock", "owner1", acquire=s1) is True
    assert c.kv.put("it/lock", "owner2", acquire=s2) is False
    _, d = c.kv.get("it/lock")
    assert d["Session"] == s1 and d["LockIndex"] == 1
    assert c.kv.put("it/lock", "x", release=s2) is False
    assert c.kv.put("it/lock", "released", release=s1) is True
    assert c.kv.put("it/lock", "owner2", acquire=s2) is True
    _, d = c.kv.get("it/lock")
    assert d["Session"] == s2 and d["LockIndex"] == 2
    _, info = c.session.info(s1)
    assert info["Name"] == "it-lock" and info["TTL"] == "30s"
    renewed = c.session.renew(s1)
    assert renewed["ID"] == s1
    _, listed = c.session.list()
    assert {s1, s2} <= {s["ID"] for s in listed}
    _, on_node = c.session.node(info["Node"])
    assert {s1, s2} <= {s["ID"] for s in on_node}
    # destroying the holder releases the lock (behavior=release)
    assert c.session.destroy(s2) is True
    _, d = c.kv.get("it/lock")
    assert "Session" not in d and d["Value"] == b"owner2"
    assert c.session.destroy(s1) is True
    assert c.session.info(s1)[1] is None


def test_lock_delay_blocks_reacquire(consul_client: Any) -> None:
    c = consul_client
    s1 = c.session.create(name="delayed", lock_delay=3)
    assert c.kv.put("it/delay", "a", acquire=s1) is True
    c.session.destroy(s1)
    s2 = c.session.create(name="next", lock_delay=0)
    assert c.kv.put("it/delay", "b", acquire=s2) is False  # within the lock-delay window
    c.session.destroy(s2)


def test_session_delete_behavior(consul_client: Any) -> None:
    c = consul_client
    s = c.session.create(behavior="delete", lock_delay=0)
    assert c.kv.put("it/ephemeral", "x", acquire=s) is True
    c.session.destroy(s)
    assert c.kv.get("it/ephemeral")[1] is None


def test_catalog_register_and_query(consul_client: Any, dev_agent: Any) -> None:
    c = consul_client
    # py-consul sends node_meta as query parameters, which Consul ignores on register: use the body
    assert dev_agent.json("PUT", "/v1/catalog/register", {
        "Node": "ext-1", "Address": "10.1.0.1", "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "ext", "Port": 443, "Tags": ["v1"]},
        "Check": {"CheckID": "ext-alive", "Name": "alive", "Status": "passing", "ServiceID": "ext"}}) is True
    c.catalog.register("ext-2", "10.1.0.2", service={"Service": "ext", "Port": 443, "Tags": ["v2"]})
    assert "ext" in c.catalog.datacenters() or c.catalog.datacenters() == ["dc1"]
    _, services = c.catalog.services()
    assert sorted(services["ext"]) == ["v1", "v2"]
    _, nodes = c.catalog.service("ext")
    assert [n["Node"] for n in nodes] == ["ext-1", "ext-2"]
    _, tagged = c.catalog.service("ext", tag="v2")
    assert [n["Node"] for n in tagged] == ["ext-2"]
    _, node = c.catalog.node("ext-1")
    assert node["Node"]["Meta"] == {"rack": "r1"} and "ext" in node["Services"]
    _, all_nodes = c.catalog.nodes()
    assert {"ext-1", "ext-2"} <= {n["Node"] for n in all_nodes}
    _, filtered = c.catalog.nodes(node_meta={"rack": "r1"})
    assert [n["Node"] for n in filtered] == ["ext-1"]
    # health: ext-2 registered a service with no checks -> passing; ext-1 passing too
    _, passing = c.health.service("ext", passing=True)
    assert len(passing) == 2
    c.catalog.register("ext-2", "10.1.0.2", check={"CheckID": "bad", "Name": "bad", "Status": "critical"})
    _, passing = c.health.service("ext", passing=True)
    assert [e["Node"]["Node"] for e in passing] == ["ext-1"]
    _, checks = c.health.checks("ext")
    assert [ch["CheckID"] for ch in checks] == ["ext-alive"]
    _, critical = c.health.state("critical")
    assert "bad" in {ch["CheckID"] for ch in critical}
    _, node_checks = c.health.node("ext-2")
    assert [ch["CheckID"] for ch in node_checks] == ["bad"]
    assert c.catalog.deregister("ext-2")
    _, nodes = c.catalog.service("ext")
    assert [n["Node"] for n in nodes] == ["ext-1"]


def test_health_blocking_query(consul_client: Any, dev_agent: Any) -> None:
    c = consul_client
    c.catalog.register("blk-1", "10.2.0.1", service={"Service": "blk", "Port": 1})
    index, _ = c.health.service("blk")
    out: dict[str, Any] = {}

    def waiter() -> None:
        out["index"], out["rows"] = consul.Consul(port=dev_agent.http_port).health.service(
            "blk", index=index, wait="20s")

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    c.kv.put("it/unrelated", "x")  # must not wake it
    time.sleep(0.2)
    assert t.is_alive()
    c.catalog.register("blk-2", "10.2.0.2", service={"Service": "blk", "Port": 1})
    t.join(5)
    assert not t.is_alive() and len(out["rows"]) == 2 and int(out["index"]) > int(index)


def test_agent_services_and_checks(consul_client: Any, dev_agent: Any) -> None:
    c = consul_client
    assert c.agent.service.register("api", service_id="api-1", port=9000, tags=["t1"], meta={"env": "test"},
                                    check=consul.Check.ttl("30s"))
    services = c.agent.services()
    assert services["api-1"]["Service"] == "api" and services["api-1"]["Meta"] == {"env": "test"}
    checks = c.agent.checks()
    (cid,) = [k for k, v in checks.items() if v["ServiceID"] == "api-1"]
    assert checks[cid]["Status"] == "critical"
    assert c.agent.check.ttl_pass(cid, notes="all good")
    assert c.agent.checks()[cid]["Status"] == "passing"
    assert c.agent.checks()[cid]["Output"] == "all good"
    # anti-entropy pushes the agent's view into the catalog
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, rows = c.health.service("api", passing=True)
        if rows:
            break
        time.sleep(0.05)
    assert rows and rows[0]["Service"]["ID"] == "api-1"
    assert c.agent.service.maintenance("api-1", True, reason="deploying")
    maint = [v for v in c.agent.checks().values() if v["CheckID"] == "_service_maintenance:api-1"]
    assert maint and maint[0]["Notes"] == "deploying" and maint[0]["Status"] == "critical"
    assert c.agent.service.maintenance("api-1", False)
    assert "_service_maintenance:api-1" not in c.agent.checks()
    assert c.agent.service.deregister("api-1")
    assert "api-1" not in c.agent.services()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and c.catalog.service("api")[1]:
        time.sleep(0.05)
    assert c.catalog.service("api")[1] == []


def test_agent_self_and_members(consul_client: Any) -> None:
    me = consul_client.agent.self()
    assert me["Config"]["Datacenter"] == "dc1" and me["Config"]["Server"] is True
    members = consul_client.agent.members()
    assert members[0]["Name"] == me["Config"]["NodeName"] and members[0]["Status"] == 1


def test_filter_expression(consul_client: Any) -> None:
    c = consul_client
    c.catalog.register("flt-1", "10.3.0.1", service={"Service": "flt", "Port": 1, "Meta": {"env": "prod"}})
    c.catalog.register("flt-2", "10.3.0.2", service={"Service": "flt", "Port": 1, "Meta": {"env": "dev"}})
    _, rows = c.health.service("flt", filter_expr='Service.Meta.env == "prod"')
    assert [r["Node"]["Node"] for r in rows] == ["flt-1"]
    with pytest.raises(consul.ConsulException):
        c.health.service("flt", filter_expr="Service.Meta.env ==")
