"""Issue 18 item 13 on the HTTP port, against a real agent: limits.http_max_conns_per_client is
enforced, half-sent request headers time out, and under both loads a normal request from another
client is still answered within a second. Source addresses in 127.0.0.0/8 stand for clients."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def connect(agent: Any, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", agent.http_port), timeout=5, source_address=(source, 0))
    return s


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def normal_request(agent: Any, source: str) -> tuple[bytes, float]:
    t0 = time.monotonic()
    with connect(agent, source) as s:
        s.settimeout(5)
        s.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass  # refused: closed with our request unread
    return data.split(b"\r\n", 1)[0], time.monotonic() - t0


def test_many_connections_and_slow_headers_do_not_starve_other_clients(agent_factory: Any) -> None:
    agent = agent_factory("-hcl=limits { http_max_conns_per_client = 30 }",
                          env={"LICTOR_HTTP_HEADER_TIMEOUT": "1"})
    held: list[socket.socket] = []
    try:
        # one client takes its whole allowance; the next connection is closed at once
        held = [connect(agent, "127.0.0.3") for _ in range(30)]
        extra = connect(agent, "127.0.0.3")
        assert closed_by_server(extra, 2.0), "connection over http_max_conns_per_client was kept"
        extra.close()
        # slowloris from three more addresses: half a request each, one more byte now and then
        slow = [connect(agent, f"127.0.0.{4 + i % 3}") for i in range(60)]
        held += slow
        for s in slow:
            s.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n")
        for s in slow:
            s.sendall(b"X")
        status, elapsed = normal_request(agent, "127.0.0.2")
        assert status == b"HTTP/1.1 200 OK" and elapsed < 1.0, (status, elapsed)
        # the header deadline (1 s here) closes every half-sent request, trickle or not
        deadline = time.monotonic() + 4.0
        open_ = list(slow)
        while open_ and time.monotonic() < deadline:
            for s in list(open_):
                try:
                    s.sendall(b"Y")
                except (BrokenPipeError, ConnectionResetError):
                    open_.remove(s)
                    continue
                if closed_by_server(s, 0.01):
                    open_.remove(s)
            time.sleep(0.1)
        assert not open_, f"{len(open_)} of 60 half-sent requests still open after 4 s"
        # idle connections that never sent a byte are not header-timed-out (keep-alive rules apply)
        assert not closed_by_server(held[0], 0.1)
        status, elapsed = normal_request(agent, "127.0.0.3")  # 127.0.0.3 is still at its cap
        assert status == b""
        held[0].close()
        time.sleep(0.2)
        status, elapsed = normal_request(agent, "127.0.0.3")
        assert status == b"HTTP/1.1 200 OK" and elapsed < 1.0, (status, elapsed)
    finally:
        for s in held:
            s.close()


def test_default_cap_is_200_per_client(agent_factory: Any) -> None:
    agent = agent_factory()
    held: list[socket.socket] = []
    try:
        held = [connect(agent, "127.0.0.7") for _ in range(200)]
        extra = connect(agent, "127.0.0.7")
        assert closed_by_server(extra, 2.0)
        extra.close()
        status, elapsed = normal_request(agent, "127.0.0.8")
        assert status == b"HTTP/1.1 200 OK" and elapsed < 1.0, (status, elapsed)
    finally:
        for s in held:
            s.close()
