"""Internal.ServiceDump / NodeDump / ServiceTopology (the web UI's views) on an in-process server
with ACLs on: the rows, blocking on a health change, intention decisions on topology edges, and
what a limited token is not shown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lictor.agent.ui.api import summarize
from lictor.common.errors import PermissionDeniedError
from lictor.server import endpoints
from lictor.server.acl.config import ACLConfig, configure
from lictor.server.acl.leader import acl_leader_duties
from lictor.server.server import Server, ServerConfig

MGMT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
async def server() -> Server:
    s = Server(ServerConfig(datacenter="dc1", node_name="s1", rpc_address="127.0.0.1:8300"))
    configure(s, ACLConfig(enabled=True, default_policy="deny", tokens={"initial_management": MGMT}))
    await acl_leader_duties(s)
    return s


async def call(s: Server, name: str, /, token: str = MGMT, **args: Any) -> dict[str, Any]:
    return await endpoints.call(s, name, {"token": token, **args})


async def register(s: Server, node: str, sid: str, name: str, *, status: str = "passing",
                   proxy: dict[str, Any] | None = None) -> None:
    svc: dict[str, Any] = {"id": sid, "service": name, "port": 80}
    if proxy is not None:
        svc |= {"kind": "connect-proxy", "proxy": proxy}
    await call(s, "Catalog.Register", node=node, address="10.0.0.1", service=svc,
               checks=[{"check_id": f"{sid}-chk", "name": "c", "status": status, "service_id": sid,
                        "output": f"{sid} says {status}"}])


async def limited(s: Server, rules: str) -> str:
    name = f"p{len(rules)}-{hash(rules) & 0xffff}"
    p = (await call(s, "ACL.PolicySet", body={"Name": name, "Rules": rules}, create=True))["result"]
    return (await call(s, "ACL.TokenSet", body={"Policies": [{"ID": p["ID"]}]}, create=True))["result"]["SecretID"]


async def mesh(s: Server) -> None:
    await register(s, "n1", "web-1", "web")
    await register(s, "n1", "web-1-proxy", "web-sidecar-proxy", proxy={
        "DestinationServiceName": "web", "Upstreams": [{"DestinationName": "api"}, {"DestinationName": "q",
                                                                                     "DestinationType": "prepared_query"}]})
    await register(s, "n2", "api-1", "api", status="critical")
    await register(s, "n2", "admin-1", "admin")
    await register(s, "n2", "admin-1-proxy", "admin-sidecar-proxy", proxy={
        "DestinationServiceName": "admin", "Upstreams": [{"DestinationName": "web"}]})


async def test_service_dump_rows_and_blocking_on_a_health_change(server: Server) -> None:
    await mesh(server)
    out = await call(server, "Internal.ServiceDump")
    rows = out["result"]
    assert sorted(r["Service"]["ID"] for r in rows) == ["admin-1", "admin-1-proxy", "api-1", "web-1", "web-1-proxy"]
    api = next(r for r in rows if r["Service"]["ID"] == "api-1")
    assert api["Node"]["Node"] == "n2" and [c["Output"] for c in api["Checks"]] == ["api-1 says critical"]

    # the compact rows the UI asks for summarise exactly as the full rows do
    compact = (await call(server, "Internal.ServiceDump", summary=True))["result"]
    assert summarize(compact) == summarize(rows) and len(compact) == len(rows)

    waiter = asyncio.ensure_future(call(server, "Internal.ServiceDump", min_index=out["index"], wait=5.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await register(server, "n2", "api-1", "api", status="passing")
    again = await asyncio.wait_for(waiter, 2.0)
    assert again["index"] > out["index"]
    assert next(r for r in again["result"] if r["Service"]["ID"] == "api-1")["Checks"][0]["Status"] == "passing"


async def test_topology_upstreams_downstreams_and_intention_decisions(server: Server) -> None:
    await mesh(server)
    topo = (await call(server, "Internal.ServiceTopology", service="web"))["result"]
    assert topo["UpstreamNames"] == ["api"] and topo["DownstreamNames"] == ["admin"]  # the prepared query is no service
    assert [r["Service"]["ID"] for r in topo["Upstreams"]] == ["api-1"]
    # no intention yet: the edge carries the default decision, the same one Intention.Check gives
    check = (await call(server, "Intention.Check", source="web", destination="api"))["result"]
    assert topo["UpstreamDecisions"]["api"]["Allowed"] is check["Allowed"]
    assert topo["UpstreamDecisions"]["api"]["HasExact"] is False
    await call(server, "Intention.Apply", op="upsert", source="web", destination="api", intention={"Action": "allow"})
    await call(server, "Intention.Apply", op="upsert", source="admin", destination="web", intention={"Action": "deny"})
    topo = (await call(server, "Internal.ServiceTopology", service="web"))["result"]
    up, down = topo["UpstreamDecisions"]["api"], topo["DownstreamDecisions"]["admin"]
    assert (up["Allowed"], up["HasExact"]) == (True, True)
    assert (down["Allowed"], down["HasExact"]) == (False, True)


async def test_a_limited_token_sees_only_what_it_may_read(server: Server) -> None:
    await mesh(server)
    tok = await limited(server, 'service "web" { policy = "read" }\nservice "api" { policy = "read" }\n'
                                'node "n1" { policy = "read" }\nnode "n2" { policy = "read" }')
    for summary in (False, True):
        dump = await call(server, "Internal.ServiceDump", token=tok, summary=summary)
        assert sorted(r["Service"]["ID"] for r in dump["result"]) == ["api-1", "web-1"]
        assert dump["results_filtered_by_acls"] is True
    topo = (await call(server, "Internal.ServiceTopology", token=tok, service="web"))["result"]
    assert topo["DownstreamNames"] == [] and topo["Downstreams"] == [] and topo["DownstreamDecisions"] == {}
    assert topo["FilteredByACLs"] is True and topo["UpstreamNames"] == ["api"]
    with pytest.raises(PermissionDeniedError):
        await call(server, "Internal.ServiceTopology", token=tok, service="admin")
    nodes = (await call(server, "Internal.NodeDump", token=tok))["result"]
    assert {n["Node"]: sorted(s["ID"] for s in n["Services"]) for n in nodes} == {"n1": ["web-1"], "n2": ["api-1"]}
    assert all(c["ServiceID"] in ("web-1", "api-1") for n in nodes for c in n["Checks"])
    only_n1 = await limited(server, 'service_prefix "" { policy = "read" }\nnode "n1" { policy = "read" }')
    assert [n["Node"] for n in (await call(server, "Internal.NodeDump", token=only_n1))["result"]] == ["n1"]
