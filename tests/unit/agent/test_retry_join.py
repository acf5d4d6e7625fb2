"""retry_join is a LAN gossip join list (agent/membership.py): real GossipNodes and RPC servers on
127.0.0.1. A correct config joins quietly; an entry naming a server's RPC port gets one clear
warning and is replaced by that server's gossip address; nothing is ever sent to an address
that does not accept connections."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from lictor.agent.membership import Membership
from lictor.common.errors import NoLeaderError, ValidationError
from lictor.common.gossip.driver import GossipNode
from lictor.common.gossip.swim import SwimConfig
from lictor.common.rpc import PeerInfo, RPCServer
from lictor.server.cluster import ServerInfo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Config:
    """The part of RuntimeConfig a Membership reads before and while joining."""

    retry_join: tuple[str, ...]
    node_name: str = "a"
    retry_interval: float = 0.05
    retry_max: int = 0
    rejoin_after_leave: bool = False
    reconnect_timeout: float = 3600.0
    data_dir: str = ""
    encrypt: str = ""


class Agent:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.address = "127.0.0.1"
        self.server = None
        self.tls = None

    async def rpc(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        raise NoLeaderError()


class InfoServer:
    """An RPC port answering Cluster.Info like a Lictor server (serf_addr "" like an old one)."""

    def __init__(self, serf_addr: str) -> None:
        self.serf_addr = serf_addr
        self.calls: list[str] = []

    async def handle(self, method: str, args: dict[str, Any], peer: PeerInfo) -> Any:
        self.calls.append(method)
        if method != "Cluster.Info" or not self.serf_addr:
            raise ValidationError(f"unknown RPC method {method!r}")
        return ServerInfo(node_name="s2", node_id="id-s2", rpc_addr="127.0.0.1:1", datacenter="dc1",
                          serf_addr=self.serf_addr).to_wire()

    def notify(self, method: str, args: dict[str, Any], peer: PeerInfo) -> None:
        pass


async def gossip(name: str) -> GossipNode:
    node = GossipNode(config=SwimConfig.fast(name), tags={"role": "node"})
    await node.start()
    return node


@pytest.fixture
async def peer() -> AsyncIterator[GossipNode]:
    node = await gossip("b")
    try:
        yield node
    finally:
        await node.stop()


async def joining(*entries: str, retry_max: int = 0) -> Membership:
    m = Membership(Agent(Config(retry_join=entries, retry_max=retry_max)))  # type: ignore[arg-type]
    m.node = await gossip("a")
    await asyncio.wait_for(m._join_loop(), 10)
    return m


def names(node: GossipNode) -> set[str]:
    return {x.name for x in node.members()}


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level and r.name.startswith("lictor")]


async def test_a_gossip_address_joins_without_a_single_warning(peer: GossipNode,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    m = await joining(f"127.0.0.1:{peer.address[1]}")
    try:
        assert names(m.node) == {"a", "b"}  # type: ignore[union-attr]
        assert records(caplog, logging.WARNING) == []
        assert any("joined through 1 of 1" in x for x in records(caplog, logging.INFO))
    finally:
        await m.node.stop()  # type: ignore[union-attr]


async def test_an_rpc_port_entry_gets_one_warning_and_joins_the_servers_gossip_port(
        peer: GossipNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    info = InfoServer(serf_addr=f"127.0.0.1:{peer.address[1]}")
    async with RPCServer(info, port=0) as srv:
        addr = srv.addr
        m = await joining(addr)
    try:
        assert names(m.node) == {"a", "b"}  # type: ignore[union-attr]
        assert info.calls == ["Cluster.Info"]  # asked once, never tried as gossip again
        ours = [x for x in records(caplog, logging.WARNING) if "retry_join" in x]
        assert len(ours) == 1, ours
        assert (f"{addr} is the server RPC port of s2, not a gossip address: joining its gossip "
                f"address 127.0.0.1:{peer.address[1]} instead") in ours[0]
        assert "change the entry to" in ours[0]
        # the one gossip attempt that reached the RPC port was dropped there (one line at most)
        assert sum("dropping rpc connection" in x for x in records(caplog, logging.WARNING)) <= 1
    finally:
        await m.node.stop()  # type: ignore[union-attr]


async def test_an_rpc_port_that_cannot_say_where_its_gossip_is_is_dropped_with_one_error(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    info = InfoServer(serf_addr="")  # an older server: no Cluster.Info
    async with RPCServer(info, port=0) as srv:
        addr = srv.addr
        m = await joining(addr)
    try:
        errors = [x for x in records(caplog, logging.ERROR) if "retry_join" in x]
        assert errors[0].startswith(f"retry_join: {addr} answers the server RPC protocol, not gossip")
        assert errors[1] == "retry_join: no usable address left" and len(errors) == 2
    finally:
        await m.node.stop()  # type: ignore[union-attr]


async def test_a_peer_that_is_down_is_retried_quietly_and_sent_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    down = f"127.0.0.1:{free_port()}"
    m = await joining(down, "10.0.0.1:not-a-port", retry_max=3)
    try:
        assert records(caplog, logging.ERROR)[0].startswith("retry_join: invalid retry_join address")
        infos = [x for x in records(caplog, logging.INFO) if x.startswith("retry_join: no member answered")]
        assert len(infos) == 1  # the same failure is said once (INFO while peers may be starting)
        assert records(caplog, logging.WARNING) == [x for x in records(caplog, logging.ERROR)]
        assert records(caplog, logging.ERROR)[-1].startswith("retry_join: gave up after 3 attempts")
    finally:
        await m.node.stop()  # type: ignore[union-attr]


def test_entries_are_gossip_addresses_with_port_8301_by_default() -> None:
    m = Membership(Agent(Config(retry_join=("10.0.0.1", "10.0.0.2:9301", "[::1]", "10.0.0.1:8301"))))  # type: ignore[arg-type]
    assert m._retry_join_addresses() == ["10.0.0.1:8301", "10.0.0.2:9301", "[::1]:8301"]
