"""The agent's intentions view for /v1/agent/connect/authorize (issue 16, defect 1): decisions
from the watched entries, one watch per (destination, token), the caller's token passed
explicitly and never the request's ContextVars."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from lictor.agent.intention_cache import (REASON_ACLS_DISABLED, REASON_DEFAULT, REASON_DEFAULT_DENY,
                                          DestinationView, IntentionCache, authorize)
from lictor.common.errors import PermissionDeniedError, TransportError

REQUEST_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("request_token", default="")


def entry(dst: str, *sources: tuple[str, str], perms: bool = False) -> dict[str, Any]:
    return {"Kind": "service-intentions", "Name": dst,
            "Sources": [{"Name": s, "Action": a} if not perms else
                        {"Name": s, "Permissions": [{"Action": a, "HTTP": {"PathPrefix": "/"}}]}
                        for s, a in sources]}


def view(*entries: dict[str, Any], default: bool = True, acls: bool = False) -> DestinationView:
    return DestinationView(index=5, entries=tuple(entries), default_allow=default, acls_enabled=acls)


def test_authorize_follows_precedence_and_the_default() -> None:
    v = view(entry("db", ("web", "deny"), ("*", "allow")))
    web = authorize(v, "web", "db")
    assert not web.authorized and web.reason.startswith("Matched L4 intention: default/web => default/db")
    assert authorize(v, "api", "db").authorized  # the wildcard source
    assert authorize(view(entry("*", ("web", "deny"))), "web", "db").authorized is False  # wildcard destination
    assert authorize(view(), "web", "db") == authorize(view(), "x", "db")
    assert authorize(view(), "web", "db").reason == REASON_ACLS_DISABLED
    assert (authorize(view(default=False, acls=True), "web", "db").authorized,
            authorize(view(default=False, acls=True), "web", "db").reason) == (False, REASON_DEFAULT)
    assert authorize(view(default=False), "web", "db").reason == REASON_DEFAULT_DENY  # a mesh-wide deny
    l7 = authorize(view(entry("db", ("web", "allow"), perms=True)), "web", "db")
    assert not l7.authorized and l7.reason.startswith("Matched L7 intention")


class FakeServers:
    """Intention.DestinationView as a server answers it: blocking until the index moves."""

    def __init__(self) -> None:
        self.index = 10
        self.entries: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.seen_request_tokens: list[str] = []
        self.changed = asyncio.Event()
        self.fail: BaseException | None = None

    async def rpc(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        assert name == "Intention.DestinationView"
        self.calls.append(args)
        self.seen_request_tokens.append(REQUEST_TOKEN.get())
        if self.fail is not None:
            raise self.fail
        while args["min_index"] >= self.index:
            self.changed.clear()
            await self.changed.wait()
        return {"index": self.index, "result": {"Entries": list(self.entries), "DefaultAllow": True,
                                                "ACLsEnabled": False}}

    def write(self, *entries: dict[str, Any]) -> None:
        self.entries = list(entries)
        self.index += 1
        self.changed.set()


async def test_one_watch_per_destination_and_token_kept_current() -> None:
    servers = FakeServers()
    cache = IntentionCache(servers.rpc)
    try:
        REQUEST_TOKEN.set("secret-of-the-request")
        first = await cache.get("db", "tok-a")
        assert first.entries == () and first.index == 10
        await cache.get("db", "tok-a")
        assert cache.fetches == 1  # served from the view, no second RPC
        servers.write(entry("db", ("web", "deny")))
        for _ in range(50):
            await asyncio.sleep(0)
        now = await cache.get("db", "tok-a")
        assert now.index == 11 and not authorize(now, "web", "db").authorized
        await cache.get("db", "tok-b")  # another token: its own watch, its own token on the wire
        assert {c["token"] for c in servers.calls} == {"tok-a", "tok-b"}
        assert all(c["destination"] == "db" for c in servers.calls)
        assert set(servers.seen_request_tokens) == {""}  # the watch runs in a clean context
    finally:
        await cache.close()


async def test_a_denied_token_gets_the_error_and_no_lasting_watch() -> None:
    servers = FakeServers()
    servers.fail = PermissionDeniedError("Permission denied: lacks intention:read")
    cache = IntentionCache(servers.rpc)
    with pytest.raises(PermissionDeniedError):
        await cache.get("db", "weak")
    assert cache._watches == {}  # noqa: SLF001 - nothing keeps watching for a refused token
    await cache.close()


async def test_no_server_fails_after_the_first_fetch_timeout() -> None:
    servers = FakeServers()
    servers.fail = TransportError("connection refused")
    cache = IntentionCache(servers.rpc, first_fetch_timeout=0.05)
    with pytest.raises(TransportError):
        await cache.get("db", "")
    await cache.close()
