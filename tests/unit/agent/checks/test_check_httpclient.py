"""The checks' HTTP/1.1 client on the wire: canned responses from a raw TCP server on 127.0.0.1,
so framing cases no well-behaved server framework would produce can be sent exactly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.http import HTTPCheck
from lictor.agent.checks.httpclient import (
    MAX_REDIRECTS,
    CheckHTTPClient,
    HTTPCheckError,
    RequestSpec,
    Target,
)
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus


@dataclass
class Canned:
    """A server answering each connection with ``answer(request_head, n)`` (bytes, or None to
    close without a word); it records every request it read (head and body)."""

    answer: Callable[[bytes, int], bytes | None]
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            self.requests.append(head + body)
            out = self.answer(head, len(self.requests))
            if out:
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def canned() -> AsyncIterator[Callable[[Callable[[bytes, int], bytes | None]], Canned]]:
    servers: list[asyncio.Server] = []

    async def make(answer: Callable[[bytes, int], bytes | None]) -> Canned:
        c = Canned(answer)
        srv = await asyncio.start_server(c.handle, "127.0.0.1", 0)
        c.port = srv.sockets[0].getsockname()[1]
        servers.append(srv)
        return c

    yield make  # type: ignore[misc]
    for srv in servers:
        srv.close()
        await srv.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[CheckHTTPClient]:
    c = CheckHTTPClient()
    yield c
    await c.close()


def fixed(data: bytes) -> Callable[[bytes, int], bytes]:
    return lambda _head, _n: data


async def run(handler: StatusHandler, client: CheckHTTPClient, url: str, **kw: object) -> tuple[HealthStatus, str]:
    check = HTTPCheck(handler=handler, client=client, url=url, interval=10, **kw)  # type: ignore[arg-type]
    return await check.check_once()


async def test_chunked_body_is_decoded(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n"))
    assert await run(handler, client, srv.base + "/") == (
        HealthStatus.PASSING, f"HTTP GET {srv.base}/: 200 OK Output: wikipedia")


async def test_chunked_body_longer_than_the_limit_is_cut_and_marked(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"a\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"))
    status, output = await run(handler, client, srv.base + "/", output_max_size=15)
    assert status is HealthStatus.CRITICAL
    assert output.endswith(": 500 Oops Output: 0123456789abcde ... (output truncated to 15 bytes)")


async def test_body_without_length_is_read_until_close(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.0 200 OK\r\n\r\nuntil the end"))
    assert (await run(handler, client, srv.base + "/"))[1].endswith("200 OK Output: until the end")


async def test_a_short_body_keeps_what_arrived_and_the_status_decides(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"))
    assert await run(handler, client, srv.base + "/") == (
        HealthStatus.PASSING, f"HTTP GET {srv.base}/: 200 OK Output: partial")


async def test_interim_100_continue_is_skipped(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 100 Continue\r\n\r\n"
                             b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"))
    assert await run(handler, client, srv.base + "/") == (
        HealthStatus.CRITICAL, f"HTTP GET {srv.base}/: 503 Service Unavailable Output: down")


async def test_missing_reason_phrase_gets_the_standard_one(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"))
    assert (await run(handler, client, srv.base + "/"))[1].endswith(": 404 Not Found Output: ")


@pytest.mark.parametrize(("reply", "error"), [
    (b"garbage\r\n\r\n", "malformed HTTP response: 'garbage'"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed response header line: 'no colon here'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "invalid Content-Length '5, 6'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size b'zz'"),
    (None, "connection closed before a response (EOF)"),
])
async def test_broken_responses_are_critical_with_what_was_wrong(canned, client, handler, reply, error) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(reply) if reply else (lambda _h, _n: None))
    status, output = await run(handler, client, srv.base + "/")
    assert status is HealthStatus.CRITICAL
    assert error in output, output


async def test_head_request_reads_no_body(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    # Content-Length describes the body a GET would get; a HEAD response has none
    srv = await canned(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"))
    assert await run(handler, client, srv.base + "/", method="head") == (
        HealthStatus.PASSING, f"HTTP HEAD {srv.base}/: 200 OK Output: ")
    assert srv.requests[0].startswith(b"HEAD / HTTP/1.1\r\n")


def redirect_then_ok(status: int, location: str) -> Callable[[bytes, int], bytes]:
    def answer(_head: bytes, n: int) -> bytes:
        if n == 1:
            return f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    return answer


@pytest.mark.parametrize(("status", "method", "body_kept"), [
    (301, "POST", False), (302, "PUT", False), (303, "PUT", False), (307, "PUT", True), (308, "POST", True),
])
async def test_redirects_change_method_and_body_as_go_does(canned, client, handler, status, method, body_kept) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(redirect_then_ok(status, "/next?x=1"))
    result = await run(handler, client, srv.base + "/start", method=method, body="payload")
    assert result[0] is HealthStatus.PASSING
    second = srv.requests[1]
    expected_method = method if body_kept else "GET"
    assert second.startswith(f"{expected_method} /next?x=1 HTTP/1.1\r\n".encode())
    assert second.endswith(b"payload") is body_kept


async def test_redirect_loops_stop_after_ten(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"))
    status, output = await run(handler, client, srv.base + "/")
    assert status is HealthStatus.CRITICAL and output.endswith(f"stopped after {MAX_REDIRECTS} redirects")
    assert len(srv.requests) == MAX_REDIRECTS + 1


async def test_disabled_redirects_return_the_3xx(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(redirect_then_ok(302, "/next"))
    status, output = await run(handler, client, srv.base + "/", disable_redirects=True)
    assert status is HealthStatus.CRITICAL and ": 302 Moved Output: " in output
    assert len(srv.requests) == 1


async def test_redirect_to_another_host_drops_credentials(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    second = await canned(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    # 127.0.0.1 -> localhost is another host name for Go's rule (and for ours)
    first = await canned(redirect_then_ok(302, f"http://localhost:{second.port}/x"))
    status, _ = await run(handler, client, first.base + "/", header={
        "Authorization": ["Bearer secret"], "Cookie": ["a=b"], "X-Keep": ["yes"]})
    assert status is HealthStatus.PASSING
    assert b"Authorization: Bearer secret" in first.requests[0]
    req = second.requests[0].decode()
    assert "Authorization" not in req and "Cookie" not in req and "X-Keep: yes" in req
    assert f"Host: localhost:{second.port}\r\n" in req


async def test_host_header_overrides_and_framing_headers_are_ours(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    await run(handler, client, srv.base + "/p", method="POST", body="abc", header={
        "Host": ["example.internal"], "Content-Length": ["999"], "Connection": ["keep-alive"]})
    head = srv.requests[0].decode()
    assert head.startswith("POST /p HTTP/1.1\r\nHost: example.internal\r\n")
    assert "Content-Length: 3\r\n" in head and "999" not in head
    assert "Connection: close\r\n" in head and "keep-alive" not in head
    assert head.endswith("\r\n\r\nabc")


async def test_post_without_body_sends_content_length_zero(canned, client, handler) -> None:  # type: ignore[no-untyped-def]
    srv = await canned(fixed(b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert (await run(handler, client, srv.base + "/", method="POST"))[0] is HealthStatus.PASSING
    assert b"Content-Length: 0\r\n" in srv.requests[0]


@pytest.mark.parametrize(("kw", "path", "fragment"), [
    ({"header": {"X-Bad": ["a\r\nInjected: 1"]}}, "header.X-Bad", "CR, LF or NUL"),
    ({"header": {"Bad Name": ["v"]}}, "header", "invalid header name"),
    ({"method": "GE T"}, "method", "invalid HTTP method"),
])
def test_bad_request_parts_are_config_errors(client, handler, kw, path, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        HTTPCheck(handler=handler, client=client, url="http://127.0.0.1:1/", interval=10, **kw)
    assert err.value.path == path and fragment in str(err.value)


@pytest.mark.parametrize(("url", "host", "port", "host_header", "path", "tls"), [
    ("http://example.com", "example.com", 80, "example.com", "/", False),
    ("https://example.com:443/a?b=c", "example.com", 443, "example.com", "/a?b=c", True),
    ("http://[::1]:8080/h", "::1", 8080, "[::1]:8080", "/h", False),
    ("https://10.0.0.1:8443", "10.0.0.1", 8443, "10.0.0.1:8443", "/", True),
])
def test_targets(url, host, port, host_header, path, tls) -> None:  # type: ignore[no-untyped-def]
    t = Target.parse(url)
    assert (t.host, t.port, t.host_header, t.path, t.tls) == (host, port, host_header, path, tls)


@pytest.mark.parametrize("url", ["ftp://x/", "http://", "http://h:99999/", "http://h/a b"])
def test_bad_targets(url: str) -> None:
    with pytest.raises(ValueError):
        Target.parse(url)


def test_redirect_to_a_non_http_scheme_is_an_error() -> None:
    spec = RequestSpec(method="GET", url="http://127.0.0.1/", headers=[], body=None)
    with pytest.raises(HTTPCheckError, match="scheme must be http or https"):
        spec.redirected(302, "ftp://elsewhere/")


async def test_the_connection_bound_queues_runs(canned) -> None:  # type: ignore[no-untyped-def]
    open_now = 0
    peak = 0

    async def slow_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        open_now -= 1

    srv = await asyncio.start_server(slow_answer, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    bounded = CheckHTTPClient(limit=3)
    spec = RequestSpec(method="GET", url=f"http://127.0.0.1:{port}/", headers=[], body=None)
    try:
        results = await asyncio.gather(*(bounded.fetch(spec, max_body=10) for _ in range(12)))
    finally:
        srv.close()
        await srv.wait_closed()
    assert [r.status for r in results] == [200] * 12
    assert peak == 3
