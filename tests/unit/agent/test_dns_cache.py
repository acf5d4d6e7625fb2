"""The DNS catalog cache and the server's answering path, over a fake RPC (one layer at a time)."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.message
import dns.opcode
import dns.rcode
import pytest

from lictor.agent.dns.cache import CatalogCache
from lictor.agent.dns.config import parse_dns_config
from lictor.agent.dns.resolver import Fetch
from lictor.agent.dns.server import DNSServer
from lictor.common.errors import NotFound, RemoteError

WEB = Fetch("service", name="web", dc="dc1")


def row(addr: str) -> dict[str, Any]:
    return {"Node": {"Node": "n1", "Address": addr, "Datacenter": "dc1"},
            "Service": {"Service": "web", "Address": "", "Port": 80}, "Checks": []}


class FakeRPC:
    """Answers Health.ServiceNodes from ``rows``; a blocking call (min_index) parks until
    ``change()`` bumps the index."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = [row("10.0.0.1")]
        self.index = 5
        self.calls: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.last_contact = 0.0
        self.fail: Exception | None = None

    def change(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self.index = rows, self.index + 1
        self.changed.set()
        self.changed = asyncio.Event()

    async def __call__(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(dict(args, _name=name))
        if self.fail is not None:
            raise self.fail
        if args.get("min_index", 0) >= self.index:
            try:
                await asyncio.wait_for(self.changed.wait(), args.get("wait", 1))
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(0)
        return {"index": self.index, "result": list(self.rows), "last_contact": self.last_contact}

    def plain(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if "min_index" not in c]


async def test_concurrent_askers_share_one_rpc_and_then_the_cache_answers() -> None:
    rpc = FakeRPC()
    cache = CatalogCache(rpc, parse_dns_config({}), lambda: None)
    got = await asyncio.gather(*[cache.get(WEB) for _ in range(10)])
    assert all(g == [row("10.0.0.1")] for g in got)
    assert len(rpc.plain()) == 1 and rpc.plain()[0]["stale"] is True
    for _ in range(100):
        await cache.get(WEB)
    assert len(rpc.plain()) == 1 and cache.rpcs == 1
    await cache.close()


async def test_blocking_refresh_brings_changes_without_an_rpc_per_question() -> None:
    rpc = FakeRPC()
    cache = CatalogCache(rpc, parse_dns_config({}), lambda: None)
    await cache.get(WEB)
    for _ in range(50):
        await asyncio.sleep(0)
    assert any(c.get("min_index") == 5 for c in rpc.calls)  # the refresher is parked
    rpc.change([row("10.0.0.2")])
    for _ in range(50):
        await asyncio.sleep(0)
    assert await cache.get(WEB) == [row("10.0.0.2")]
    assert len(rpc.plain()) == 1
    await cache.close()


async def test_too_stale_results_are_asked_again_consistently() -> None:
    rpc = FakeRPC()
    rpc.last_contact = 30.0
    cache = CatalogCache(rpc, parse_dns_config({"max_stale": "10s", "use_cache": False}), lambda: "tok")
    await cache.get(WEB)
    assert [(c["stale"], c["token"]) for c in rpc.plain()] == [(True, "tok"), (False, "tok")]


async def test_errors_are_remembered_briefly_and_other_datacenters_are_not_asked() -> None:
    rpc = FakeRPC()
    rpc.fail = RemoteError("down")
    now = [100.0]
    cache = CatalogCache(rpc, parse_dns_config({}), lambda: None, clock=lambda: now[0], error_ttl=1.0)
    for _ in range(3):
        with pytest.raises(RemoteError):
            await cache.get(WEB)
    assert len(rpc.calls) == 1
    now[0] += 2
    rpc.fail = None
    assert await cache.get(WEB) == [row("10.0.0.1")]
    with pytest.raises(NotFound):
        await cache.get(Fetch("service", name="web", dc="dc2"))
    assert len(rpc.plain()) == 2
    await cache.close()


async def test_entries_are_bounded_and_evicted_refreshers_stop() -> None:
    rpc = FakeRPC()
    cache = CatalogCache(rpc, parse_dns_config({}), lambda: None, max_entries=2)
    for name in ("a", "b", "c"):
        await cache.get(Fetch("service", name=name, dc="dc1"))
    await asyncio.sleep(0)
    assert len(cache) == 2
    assert cache.peek(Fetch("service", name="a", dc="dc1")) == (False, None)
    await cache.close()


def query(name: str, qtype: str = "A", qid: int = 7) -> bytes:
    m = dns.message.make_query(name, qtype)
    m.id = qid
    return m.to_wire()


async def test_server_answers_repeats_from_current_rows_only() -> None:
    rpc = FakeRPC()
    srv = DNSServer(parse_dns_config({}), rpc, lambda: None)
    first = dns.message.from_wire(await srv.handle(query("web.service.consul"), tcp=False))
    assert first.answer[0][0].to_text() == "10.0.0.1"
    again = dns.message.from_wire(await srv.handle(query("web.service.consul", qid=99), tcp=False))
    assert again.id == 99 and again.answer[0][0].to_text() == "10.0.0.1"
    rpc.change([row("10.0.0.9")])
    for _ in range(50):
        await asyncio.sleep(0)
    later = dns.message.from_wire(await srv.handle(query("web.service.consul", qid=100), tcp=False))
    assert later.id == 100 and later.answer[0][0].to_text() == "10.0.0.9"
    assert len(rpc.plain()) == 1
    await srv.stop()


async def test_server_drops_and_counts_malformed_and_answers_formerr_and_notimp() -> None:
    srv = DNSServer(parse_dns_config({}), FakeRPC(), lambda: None)
    good = query("web.service.consul")
    for bad in (b"", b"\x00" * 11, good[:-2], good[:12] + b"\xc0\x0c\x00\x01\x00\x01", b"x" * 5000):
        assert await srv.handle(bad, tcp=False) == b""
    assert srv.stats["malformed"] == 5
    no_question = dns.message.Message(id=3).to_wire()
    assert dns.message.from_wire(await srv.handle(no_question, tcp=False)).rcode() == dns.rcode.FORMERR
    update = dns.message.make_query("web.service.consul", "A")
    update.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(await srv.handle(update.to_wire(), tcp=False)).rcode() == dns.rcode.NOTIMP
    response = dns.message.make_response(dns.message.make_query("x.consul", "A")).to_wire()
    assert await srv.handle(response, tcp=False) == b""
    assert srv.stats["malformed"] == 6
    await srv.stop()


def coord(x: float) -> dict[str, Any]:
    return {"Vec": [x] + [0.0] * 7, "Error": 0.1, "Adjustment": 0.0, "Height": 1e-5}


async def test_prepared_query_near_agent_orders_the_dns_answer() -> None:
    def node_row(node: str, addr: str) -> dict[str, Any]:
        return {"Node": {"Node": node, "Address": addr, "Datacenter": "dc1"},
                "Service": {"Service": "db", "Address": "", "Port": 5432}, "Checks": []}

    async def rpc(name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "PreparedQuery.Execute":
            assert args["agent_node"] == "me"
            return {"index": 1, "result": {"Service": "db", "Datacenter": "dc1", "DNS": {"TTL": ""}, "Near": "_agent",
                                           "Nodes": [node_row("far", "10.0.0.1"), node_row("near", "10.0.0.2")]}}
        assert name == "Coordinate.ListNodes"
        if args.get("min_index"):
            await asyncio.sleep(3600)
        return {"index": 1, "result": [{"Node": "me", "Segment": "", "Coord": coord(0.0)},
                                       {"Node": "near", "Segment": "", "Coord": coord(0.001)},
                                       {"Node": "far", "Segment": "", "Coord": coord(0.5)}]}

    srv = DNSServer(parse_dns_config({"udp_answer_limit": 8}, node_name="me"), rpc, lambda: None)
    for _ in range(5):  # the query's order, not a shuffle, decides
        r = dns.message.from_wire(await srv.handle(query("db.query.consul"), tcp=False))
        assert [rd.to_text() for rd in r.answer[0]] == ["10.0.0.2", "10.0.0.1"]
    await srv.stop()


async def test_prepared_query_results_are_reused_only_within_cache_max_age() -> None:
    calls: list[str] = []
    now = [0.0]

    async def rpc(name: str, args: dict[str, Any]) -> dict[str, Any]:
        calls.append(name)
        return {"index": 1, "result": {"Nodes": []}}

    q = Fetch("query", name="q1", dc="dc1")
    plain = CatalogCache(rpc, parse_dns_config({}), lambda: None, clock=lambda: now[0])
    await plain.get(q)
    await plain.get(q)
    assert calls == ["PreparedQuery.Execute"] * 2  # not a blocking read: executed per question
    calls.clear()
    aged = CatalogCache(rpc, parse_dns_config({"cache_max_age": "5s"}), lambda: None, clock=lambda: now[0])
    await aged.get(q)
    now[0] += 4
    await aged.get(q)
    assert len(calls) == 1
    now[0] += 2
    await aged.get(q)
    assert len(calls) == 2
