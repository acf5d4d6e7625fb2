"""One host:port parser (lictor.common.hostport) behind every address Lictor reads: the RPC
client, retry_join, gossip joins, Hello's advertised addresses and the check targets accept
and refuse the same spellings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lictor.agent.checks.base import split_host_port
from lictor.common.errors import ConfigError
from lictor.common.gossip.driver import parse_address
from lictor.common.hostport import format_host_port, parse_host_port
from lictor.common.rpc.conn import parse_addr
from lictor.server.cluster import ServerInfo, parse_join_address
from lictor.common.errors import ValidationError


@pytest.mark.parametrize("text,want", [
    ("10.0.0.1:8300", ("10.0.0.1", 8300)),
    ("consul.internal:1", ("consul.internal", 1)),
    ("[::1]:65535", ("::1", 65535)),
    (" host:80 ", ("host", 80)),
])
def test_accepted(text: str, want: tuple[str, int]) -> None:
    assert parse_host_port(text) == want
    assert parse_host_port(format_host_port(*want)) == want


@pytest.mark.parametrize("text,why", [
    ("", "empty"), ("host", "expected host:port"), ("host:", "missing port"), (":80", "bad host"),
    ("host:0", "1-65535"), ("host:65536", "1-65535"), ("host:8o", "1-65535"), ("::1:80", "[host]:port"),
    ("[::1", "[host]:port"), ("[::1]x80", "[host]:port"), ("a b:1", "bad host"), ("a/b:1", "bad host"),
    ("user@host:1", "bad host"),
])
def test_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_host_port(text)


def test_default_port_allows_a_bare_host_or_ipv6() -> None:
    assert parse_host_port("fe80::1", default_port=8301) == ("fe80::1", 8301)
    assert parse_host_port("[fe80::1]", default_port=8301) == ("fe80::1", 8301)
    assert parse_host_port("node", default_port=8301) == ("node", 8301)


def _config_error(fn: Callable[[str], object]) -> Callable[[str], object]:
    def call(text: str) -> object:
        try:
            return fn(text)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return call


def _hello(text: str) -> object:
    try:
        return ServerInfo.from_wire({"node_name": "a", "node_id": "b", "datacenter": "dc1", "rpc_addr": text})
    except ValidationError as exc:
        raise ValueError(str(exc)) from None


@pytest.mark.parametrize("parse", [parse_addr, _config_error(split_host_port), _hello,
                                   parse_address, parse_join_address])
@pytest.mark.parametrize("text", ["host:0", "a b:1", "host:x", "[::1", "[::1]:70000", "a@b:1"])
def test_every_caller_refuses_alike(parse: Callable[[str], object], text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


@pytest.mark.parametrize("parse", [parse_addr, _config_error(split_host_port), parse_address,
                                   parse_join_address])
def test_every_caller_accepts_alike(parse: Callable[[str], object]) -> None:
    assert parse("[::1]:9000") == ("::1", 9000)
    assert parse("10.1.2.3:8300") == ("10.1.2.3", 8300)
