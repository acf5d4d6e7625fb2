"""sd_notify over a real AF_UNIX datagram socket (path and abstract namespace), and the rules for
when an agent counts as serving (lictor.agent.readiness) on a stand-in agent."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lictor.agent.readiness import serving_status
from lictor.common.sdnotify import Notifier, format_message


def _receiver(addr: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(2)
    return s


def _fields(raw: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in raw.decode().split("\n"))


def test_ready_reaches_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as rx:
        n = Notifier({"NOTIFY_SOCKET": path})
        assert n.enabled
        assert n.ready("serving")
        assert _fields(rx.recv(4096)) == {"READY": "1", "STATUS": "serving"}
        assert n.reloading()
        got = _fields(rx.recv(4096))
        assert got["RELOADING"] == "1" and int(got["MONOTONIC_USEC"]) > 0
        assert n.stopping("bye")
        assert _fields(rx.recv(4096)) == {"STOPPING": "1", "STATUS": "bye"}


def test_abstract_namespace_socket() -> None:
    name = f"lictor-sdnotify-test-{os.getpid()}"
    with _receiver(b"\0" + name.encode()) as rx:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert rx.recv(4096) == b"STATUS=hello"


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready("x") is False


def test_a_gone_socket_is_reported_not_raised(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.enabled and n.ready("x") is False


def test_a_relative_notify_socket_is_refused() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_newline_cannot_forge_an_assignment() -> None:
    with pytest.raises(ValueError, match="STATUS"):
        format_message(status="ok\nREADY=1")


def _agent(*, server: bool, leader: str = "", alive: int = 1, servers: int = 0) -> Any:
    membership = SimpleNamespace(size=lambda: alive, servers=lambda: ["x"] * servers)
    srv = SimpleNamespace(log=SimpleNamespace(leader=lambda: leader)) if server else None
    return SimpleNamespace(membership=membership, server=srv,
                           config=SimpleNamespace(bootstrap_expect=3, retry_join=("a", "b", "c")))


def test_a_lone_server_without_leader_is_not_serving() -> None:
    ok, status = serving_status(_agent(server=True))
    assert not ok and "waiting for a leader or a peer" in status and "bootstrap_expect=3" in status


@pytest.mark.parametrize("agent", [_agent(server=True, leader="10.0.0.1:8300"), _agent(server=True, alive=2),
                                   _agent(server=False), _agent(server=False, alive=3, servers=3)])
def test_serving(agent: Any) -> None:
    assert serving_status(agent)[0]
