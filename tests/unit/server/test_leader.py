"""Leader duties: member reconciliation decisions and session TTL expiry."""

from __future__ import annotations

import asyncio

from lictor.common.commands import MessageType
from lictor.server import endpoints
from lictor.server.leader import Member, reconcile_members
from lictor.server.server import Server, ServerConfig


def server() -> Server:
    return Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300"))


async def test_reconcile_registers_alive_members_once() -> None:
    s = server()
    d = reconcile_members(s.store, [Member(name="a", address="10.0.0.1")], datacenter="dc1")
    assert d.summary == "reconciled 1 members; deregistered 0"
    for t, p in d.commands:
        await s.apply(t, p)
    assert s.store.checks[("a", "serfHealth")].status == "passing"
    again = reconcile_members(s.store, [Member(name="a", address="10.0.0.1")], datacenter="dc1")
    assert again.commands == []
    failed = reconcile_members(s.store, [Member(name="a", address="10.0.0.1", status="failed")], datacenter="dc1")
    for t, p in failed.commands:
        await s.apply(t, p)
    assert s.store.checks[("a", "serfHealth")].status == "critical"
    left = reconcile_members(s.store, [Member(name="a", address="10.0.0.1", status="left")], datacenter="dc1")
    assert left.summary == "reconciled 0 members; deregistered 1"
    for t, p in left.commands:
        await s.apply(t, p)
    assert "a" not in s.store.nodes


async def test_ttl_session_expires_after_twice_its_ttl_unless_renewed() -> None:
    s = server()
    await s.apply(MessageType.REGISTER, {"node": "n", "address": "10.0.0.1",
                                         "checks": [{"check_id": "serfHealth", "status": "passing"}]})
    for sid in ("renewed", "expires"):
        await s.apply(MessageType.SESSION, {"op": "create", "session": {"id": sid, "node": "n", "ttl": "0.1s"}})
        s.session_timers.reset(sid, "0.1s")
    await asyncio.sleep(0.12)
    await endpoints.call(s, "Session.Renew", {"id": "renewed"})
    await asyncio.sleep(0.12)  # 0.24s after create: "expires" is past 2*TTL, "renewed" is not
    for _ in range(10):
        await asyncio.sleep(0)
    assert "expires" not in s.store.sessions
    assert "renewed" in s.store.sessions
    await s.close()
