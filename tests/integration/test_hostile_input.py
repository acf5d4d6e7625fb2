"""Issue 18, items 11-18: hostile input against a real dev agent.

Every refusal is a 4xx naming what is wrong, never a 500, and a refused write changes nothing
(the state dump before and after is compared).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def state_dump(agent: Any) -> dict[str, Any]:
    """Everything a refused write could have touched, minus indexes that move on their own."""
    out: dict[str, Any] = {}
    for path in ("/v1/agent/services", "/v1/agent/checks", "/v1/catalog/services", "/v1/session/list",
                 "/v1/kv/?recurse", "/v1/catalog/nodes", "/v1/acl/tokens", "/v1/connect/intentions",
                 "/v1/config/service-defaults", "/v1/event/list"):
        status, body = agent.request("GET", path)
        assert status in (200, 404, 401, 403), (path, status, body)
        if status == 200:
            data = json.loads(body)
            if path == "/v1/catalog/nodes":  # the agent's own node: only which nodes exist
                data = sorted(n["Node"] for n in data)
            out[path] = data
    return out


def raw_request(agent: Any, head: bytes, body_chunks: Any = (), timeout: float = 10.0) -> bytes:
    """One request on a raw socket; tolerates the server closing while we still send."""
    with socket.create_connection(("127.0.0.1", agent.http_port), timeout=timeout) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except (ConnectionResetError, TimeoutError):
            pass
        return data


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------------------------- item 11

def test_catastrophic_regex_filter_does_not_stall_the_agent(dev_agent: Any) -> None:
    crafted = "a" * 40 + "!"
    st, _ = dev_agent.request("PUT", "/v1/agent/service/register",
                              {"Name": "redos-victim", "ID": "redos-victim", "Meta": {"m": crafted}})
    assert st == 200
    results: dict[str, Any] = {}

    def attack() -> None:
        results["attack"] = dev_agent.request(
            "GET", "/v1/agent/services?filter=" + "Meta.m%20matches%20%22(a%2B)%2B%24%22", timeout=20)

    t = threading.Thread(target=attack)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    st, _ = dev_agent.request("GET", "/v1/agent/self", timeout=20)
    assert st == 200 and time.monotonic() - t0 < 1.0, "a regex filter stalled the event loop"
    t.join(30)
    st, body = results["attack"]
    assert st == 200 and json.loads(body) == {}
    st, body = dev_agent.request("GET", "/v1/agent/services?filter=Service%20matches%20%22a%7B1001%7D%22")
    assert st == 400 and b"1000" in body
    dev_agent.request("PUT", "/v1/agent/service/deregister/redos-victim")


# ------------------------------------------------------------------------------------- item 12

def test_oversized_bodies_are_refused_unread_and_rss_stays_bounded(dev_agent: Any) -> None:
    assert dev_agent.proc is not None
    pid = dev_agent.proc.pid
    big = 20 << 20
    chunk = b"x" * (1 << 20)

    def declared() -> bytes:
        head = (f"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n"
                "Content-Type: application/json\r\n\r\n").encode()
        return raw_request(dev_agent, head, (chunk for _ in range(20)))

    def chunked() -> bytes:
        head = (b"PUT /v1/txn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/json\r\n\r\n")
        frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        return raw_request(dev_agent, head, [*(frame for _ in range(20)), b"0\r\n\r\n"])

    for _ in range(3):  # warm up allocator pools before the baseline
        assert b" 413 " in declared()
        assert b" 413 " in chunked()
    before = rss_kib(pid)
    for _ in range(15):
        assert b" 413 " in declared().split(b"\r\n", 1)[0] + b" "
        assert b" 413 " in chunked().split(b"\r\n", 1)[0] + b" "
    growth_mib = (rss_kib(pid) - before) / 1024
    # 30 refused 20 MB bodies; the report saw ~12 MB kept per request (360 MB here)
    assert growth_mib < 48, f"RSS grew {growth_mib:.0f} MiB over 30 refused bodies"
    st, _ = dev_agent.request("GET", "/v1/agent/self")
    assert st == 200


# ------------------------------------------------------------------------------------- item 14

def test_deeply_nested_json_is_a_400(dev_agent: Any) -> None:
    before = state_dump(dev_agent)
    for path in ("/v1/agent/service/register", "/v1/txn", "/v1/session/create", "/v1/catalog/register",
                 "/v1/agent/check/register", "/v1/config"):
        for body in (b"[" * 10000 + b"]" * 10000, b'{"a":' * 10000 + b"1" + b"}" * 10000,
                     b'{"Name":"x","Meta":' + b'{"a":' * 300 + b'"v"' + b"}" * 301):
            st, raw = dev_agent.request("PUT", path, body)
            assert st == 400, (path, st, raw[:200])
    assert state_dump(dev_agent) == before


# ------------------------------------------------------------------------------------- item 15

@pytest.mark.parametrize("body", [
    b'{"Name": "x\\ud800"}',
    b'{"Name": "ok", "Tags": ["\\udfff"]}',
    b'{"Name": "ok", "Meta": {"k\\ud83d": "v"}}',
    b'{"Name": "x\xed\xa0\x80"}',
])
def test_lone_surrogates_are_refused_and_nothing_is_registered(dev_agent: Any, body: bytes) -> None:
    before = state_dump(dev_agent)
    st, raw = dev_agent.request("PUT", "/v1/agent/service/register", body)
    assert st == 400 and b"Unicode" in raw, (st, raw)
    assert state_dump(dev_agent) == before
    st, _ = dev_agent.request("GET", "/v1/agent/services")
    assert st == 200


# ------------------------------------------------------------------------------------- item 16

@pytest.mark.parametrize("body", [
    b'{"LockDelay": NaN}', b'{"LockDelay": Infinity}', b'{"LockDelay": -Infinity}',
    b'{"LockDelay": 1e999}', b'{"LockDelay": -5}', b'{"TTL": "NaNs"}',
])
def test_session_numbers_must_be_finite_and_in_range(dev_agent: Any, body: bytes) -> None:
    before = state_dump(dev_agent)
    st, raw = dev_agent.request("PUT", "/v1/session/create", body)
    assert st == 400, (st, raw)
    assert state_dump(dev_agent) == before
    for path in ("/v1/session/list", "/v1/session/node/lictor-test"):
        assert dev_agent.request("GET", path)[0] == 200


# ------------------------------------------------------------------------------------- item 17

@pytest.mark.parametrize("op", [
    {"KV": {"Verb": "set", "Key": "txn-flags", "Value": "eA==", "Flags": -1}},
    {"KV": {"Verb": "set", "Key": "txn-flags", "Value": "eA==", "Flags": 2 ** 70}},
    {"KV": {"Verb": "set", "Key": "txn-flags", "Value": "eA==", "Flags": 1.5}},
    {"KV": {"Verb": "cas", "Key": "txn-flags", "Value": "eA==", "Index": -3}},
    {"KV": {"Verb": "set", "Key": "", "Value": "eA=="}},
    {"KV": {"Verb": "delete-tree", "Key": ""}},
    {"KV": {"Verb": "set", "Key": "nul\u0000key", "Value": "eA=="}},
])
def test_txn_kv_fields_are_checked_against_consuls_types(dev_agent: Any, op: dict[str, Any]) -> None:
    dev_agent.request("PUT", "/v1/kv/keep-me", b"1")
    before = state_dump(dev_agent)
    st, raw = dev_agent.request("PUT", "/v1/txn", [{"KV": {"Verb": "set", "Key": "txn-ok", "Value": "eA=="}}, op])
    assert st == 400, (st, raw)
    assert state_dump(dev_agent) == before
    assert dev_agent.request("GET", "/v1/kv/keep-me")[0] == 200


# ------------------------------------------------------------------------------------- item 18

@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "ftp://127.0.0.1/", "//nohost",
                                 "http://", "javascript:alert(1)"])
def test_http_check_urls_are_http_or_https_and_refusal_registers_nothing(dev_agent: Any, url: str) -> None:
    before = state_dump(dev_agent)
    st, raw = dev_agent.request("PUT", "/v1/agent/check/register",
                                {"Name": "bad-url", "HTTP": url, "Interval": "10s"})
    assert st == 400, (st, raw)
    st, raw = dev_agent.request("PUT", "/v1/agent/service/register",
                                {"Name": "bad-url-svc", "Check": {"HTTP": url, "Interval": "10s"}})
    assert st == 400, (st, raw)
    st, raw = dev_agent.request("PUT", "/v1/agent/service/register",
                                {"Name": "bad-url-svc2", "Checks": [{"TTL": "10s"}, {"HTTP": url, "Interval": "10s"}]})
    assert st == 400, (st, raw)
    assert state_dump(dev_agent) == before


def test_index_beyond_uint64_is_a_400_not_a_parked_query(dev_agent: Any) -> None:
    t0 = time.monotonic()
    st, raw = dev_agent.request("GET", "/v1/kv/x?index=18446744073709551616&wait=3s")
    assert st == 400 and b"index" in raw and time.monotonic() - t0 < 1.0, (st, raw)
