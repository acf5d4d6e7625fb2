"""The agent's token cache: TTL, expiry, and the down_policy when servers are unreachable."""

from __future__ import annotations

from typing import Any

import pytest

from lictor.agent.acl_cache import ACLCache, AgentACL, token_from_request
from lictor.common.errors import ACLNotFoundError, NoLeaderError, TransportError
from lictor.server.acl.config import ACLConfig

IDENT = {"accessor_id": "acc-1", "management": False, "expires": None,
         "policy": {"key_prefix": {"app/": {"policy": "write"}}}}


class FakeServers:
    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.known = {"s1": IDENT}

    async def fetch(self, secret: str) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise TransportError("connection refused")
        if secret not in self.known:
            raise ACLNotFoundError()
        return {"result": self.known[secret]}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def cache(servers: FakeServers, clock: Clock, down: str, default: str = "deny") -> ACLCache:
    return ACLCache(fetch=servers.fetch, default_policy=default, down_policy=down, ttl=30.0, clock=clock,
                    wall=clock)


async def test_fresh_entries_are_served_from_cache() -> None:
    s, c = FakeServers(), Clock()
    ac = cache(s, c, "extend-cache")
    a = await ac.resolve("s1")
    assert a.allowed("key", "write", "app/x") and not a.allowed("key", "read", "other")
    await ac.resolve("s1")
    assert s.calls == 1
    c.t += 31
    await ac.resolve("s1")
    assert s.calls == 2


@pytest.mark.parametrize("down", ["extend-cache", "async-cache"])
async def test_extend_cache_uses_the_stale_entry_when_servers_are_down(down: str) -> None:
    s, c = FakeServers(), Clock()
    ac = cache(s, c, down)
    await ac.resolve("s1")
    s.down, c.t = True, c.t + 3600
    a = await ac.resolve("s1")
    assert a.accessor_id == "acc-1" and a.allowed("key", "write", "app/x")
    # never seen before: nothing to extend -> deny
    unknown = await ac.resolve("s2")
    assert not unknown.allowed("key", "read", "app/x") and not unknown.allowed("node", "read", "n")


async def test_down_policy_deny_and_allow() -> None:
    s, c = FakeServers(), Clock()
    s.down = True
    deny = await cache(s, c, "deny").resolve("s1")
    assert not deny.allowed("key", "read", "app/x")
    allow = await cache(s, c, "allow").resolve("s1")
    assert allow.allowed("key", "write", "anything") and not allow.allowed("acl", "read")


async def test_unknown_and_expired_tokens_are_refused_and_not_found_is_cached() -> None:
    s, c = FakeServers(), Clock()
    ac = cache(s, c, "extend-cache")
    with pytest.raises(ACLNotFoundError):
        await ac.resolve("nope")
    s.known["s3"] = {**IDENT, "expires": c.t + 10}
    await ac.resolve("s3")
    c.t += 11
    with pytest.raises(ACLNotFoundError):
        await ac.resolve("s3")  # still cached, but expired: refused without asking
    s.down = True
    with pytest.raises(ACLNotFoundError):
        await ac.resolve("nope")  # a cached "not found" is not turned into access by the outage


async def test_agent_acl_over_rpc_and_token_setting(tmp_path: Any) -> None:
    calls: list[dict[str, Any]] = []

    async def rpc(name: str, args: dict[str, Any]) -> dict[str, Any]:
        calls.append({"name": name, **args})
        raise NoLeaderError()

    cfg = ACLConfig(enabled=True, default_policy="deny", down_policy="deny", enable_token_persistence=True,
                    tokens={"agent": "agent-secret"})
    a = AgentACL(cfg, rpc=rpc, data_dir=str(tmp_path))
    z = await a.resolve("")
    assert z is not None and not z.allowed("node", "read", "n")
    assert calls[0]["name"] == "ACL.ResolveToken" and calls[0]["stale"] is True
    a.set_token("default", "dflt")
    assert AgentACL(cfg, rpc=rpc, data_dir=str(tmp_path)).default_token() == "dflt"  # persisted
    assert a.agent_token() == "agent-secret"
    assert "agent-secret" not in repr(a) and "dflt" not in repr(a)
    with pytest.raises(Exception, match="unknown"):
        a.set_token("boss", "x")


def test_token_sources_in_consuls_order() -> None:
    # Consul's parseTokenInternal: ?token, then X-Consul-Token, then Authorization: Bearer
    assert token_from_request({"X-Consul-Token": "a", "Authorization": "Bearer b"}, {"token": "c"}) == "c"
    assert token_from_request({"X-Consul-Token": "a", "Authorization": "Bearer b"}, {}) == "a"
    assert token_from_request({"Authorization": "Bearer b"}, {}) == "b"
    assert token_from_request({"Authorization": "bearer  b extra"}, {}) == "b"
    assert token_from_request({}, {"token": "c"}) == "c"
    assert token_from_request({"Authorization": "Basic xx"}, {}) == ""
