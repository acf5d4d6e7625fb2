"""Leader duties: member reconciliation decisions and session TTL expiry."""

from __future__ import annotations

from lictor.common.clock import ManualClock
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
    clock = ManualClock()
    s = Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300"), clock=clock)
    await s.apply(MessageType.REGISTER, {"node": "n", "address": "10.0.0.1",
                                         "checks": [{"check_id": "serfHealth", "status": "passing"}]})
    for sid in ("renewed", "expires"):
        await s.apply(MessageType.SESSION, {"op": "create", "session": {"id": sid, "node": "n", "ttl": "10s"}})
        s.session_timers.reset(sid, "10s")
    await clock.advance(12)
    await endpoints.call(s, "Session.Renew", {"id": "renewed"})
    await clock.advance(7.9)  # 19.9 s after create: both alive (2 x TTL is 20 s)
    assert {"expires", "renewed"} <= set(s.store.sessions)
    await clock.advance(0.2)  # 20.1 s: "expires" is past 2 x TTL; "renewed" has until 32 s
    assert "expires" not in s.store.sessions
    assert "renewed" in s.store.sessions
    await clock.advance(11.8)  # 31.9 s
    assert "renewed" in s.store.sessions
    await clock.advance(0.2)
    assert "renewed" not in s.store.sessions
    await s.close()
