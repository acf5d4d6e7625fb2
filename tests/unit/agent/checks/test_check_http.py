"""HTTPCheck against a real aiohttp server on 127.0.0.1 (the wire-level cases of the client
itself are in test_check_httpclient.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.http import USER_AGENT, CheckHTTPClient, HTTPCheck
from lictor.agent.checks.testing import RecordingNotifier
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Server:
    base: str
    port: int
    seen: list[Seen] = field(default_factory=list)


def _app(seen: list[Seen]) -> web.Application:
    async def record(request: web.Request) -> None:
        seen.append(
            Seen(request.method, request.path, list(request.headers.items()), await request.read())
        )

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="all good")

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 10_000)

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/busy", busy)
    app.router.add_get("/fail", fail)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    return app


async def _serve(ssl_context: object = None) -> AsyncIterator[Server]:
    seen: list[Seen] = []
    runner = web.AppRunner(_app(seen), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)  # type: ignore[arg-type]
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    try:
        yield Server(f"{scheme}://127.0.0.1:{port}", port, seen)
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async for s in _serve():
        yield s


@pytest.fixture
async def tls_server(self_signed: Any) -> AsyncIterator[Server]:
    async for s in _serve(self_signed.server_context()):
        yield s


@pytest.fixture
async def session() -> AsyncIterator[CheckHTTPClient]:
    s = CheckHTTPClient()
    yield s
    await s.close()


def check(
    handler: StatusHandler, session: CheckHTTPClient, url: str, **kw: Any
) -> HTTPCheck:
    return HTTPCheck(handler=handler, client=session, url=url, interval=10, **kw)


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/ok", HealthStatus.PASSING, "200 OK Output: all good"),
        ("/busy", HealthStatus.WARNING, "429 Too Many Requests Output: slow down"),
        ("/fail", HealthStatus.CRITICAL, "500 Internal Server Error Output: broken"),
        ("/missing", HealthStatus.CRITICAL, "404 Not Found Output: 404: Not Found"),
        ("/redirect", HealthStatus.PASSING, "200 OK Output: all good"),  # followed
    ],
)
async def test_status_mapping(
    server: Server,
    session: CheckHTTPClient,
    handler: StatusHandler,
    path: str,
    status: HealthStatus,
    text: str,
) -> None:
    url = server.base + path
    assert await check(handler, session, url).check_once() == (status, f"HTTP GET {url}: {text}")


async def test_disable_redirects_makes_a_redirect_critical(
    server: Server, session: CheckHTTPClient, handler: StatusHandler
) -> None:
    status, output = await check(
        handler, session, server.base + "/redirect", disable_redirects=True
    ).check_once()
    assert status == HealthStatus.CRITICAL and ": 302 Found Output:" in output


async def test_method_headers_and_body_reach_the_server(
    server: Server, session: CheckHTTPClient, handler: StatusHandler
) -> None:
    c = check(
        handler,
        session,
        server.base + "/ok",
        method="put",
        header={"X-Multi": ["a", "b"], "Accept": ["application/json"]},
        body='{"probe": true}',
    )
    status, output = await c.check_once()
    assert status == HealthStatus.PASSING and output.startswith("HTTP PUT ")
    (seen,) = server.seen
    assert seen.method == "PUT" and seen.body == b'{"probe": true}'
    assert [v for k, v in seen.headers if k == "X-Multi"] == ["a", "b"]
    assert dict(seen.headers)["Accept"] == "application/json"  # the user's value wins
    assert dict(seen.headers)["User-Agent"] == USER_AGENT


async def test_default_headers(
    server: Server, session: CheckHTTPClient, handler: StatusHandler
) -> None:
    await check(handler, session, server.base + "/ok").check_once()
    headers = dict(server.seen[0].headers)
    assert headers["User-Agent"] == "Lictor Health Check"
    assert headers["Accept"] == "text/plain, text/*, */*"


async def test_output_is_truncated_with_a_marker(
    server: Server, session: CheckHTTPClient, handler: StatusHandler
) -> None:
    status, output = await check(
        handler, session, server.base + "/big", output_max_size=100
    ).check_once()
    assert status == HealthStatus.PASSING
    assert output.endswith("Output: " + "x" * 100 + " ... (output truncated to 100 bytes)")


async def test_slow_server_times_out_critical(
    server: Server, session: CheckHTTPClient, handler: StatusHandler
) -> None:
    url = server.base + "/slow"
    c = check(handler, session, url, timeout=0.1)
    assert await c.check_once() == (
        HealthStatus.CRITICAL,
        f"HTTP GET {url}: timed out after 100ms",
    )


async def test_connection_refused_is_critical_with_the_error(
    session: CheckHTTPClient, handler: StatusHandler, closed_tcp_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_tcp_port}/health"
    status, output = await check(handler, session, url).check_once()
    assert status == HealthStatus.CRITICAL
    assert output == f"HTTP GET {url}: connection refused"


async def test_tls_skip_verify_accepts_a_self_signed_cert(
    tls_server: Server, session: CheckHTTPClient, handler: StatusHandler
) -> None:
    url = tls_server.base + "/ok"
    status, output = await check(handler, session, url).check_once()
    assert status == HealthStatus.CRITICAL and "certificate" in output.lower()
    status, _ = await check(handler, session, url, tls_skip_verify=True).check_once()
    assert status == HealthStatus.PASSING


async def test_tls_server_name_is_used_for_verification(
    tls_server: Server,
    session: CheckHTTPClient,
    handler: StatusHandler,
    self_signed: Any,
) -> None:
    url = tls_server.base + "/ok"  # an IP address; the certificate only names "localhost"
    ctx = self_signed.client_context()
    status, _ = await check(handler, session, url, ssl_context=ctx).check_once()
    assert status == HealthStatus.CRITICAL
    c = check(handler, session, url, ssl_context=ctx, tls_server_name="localhost")
    assert (await c.check_once())[0] == HealthStatus.PASSING


async def test_many_checks_share_one_session(
    server: Server, session: CheckHTTPClient, notifier: RecordingNotifier
) -> None:
    checks = [
        check(StatusHandler(f"c{i}", notifier), session, server.base + "/ok")
        for i in range(50)
    ]
    results = await asyncio.gather(*(c.check_once() for c in checks))
    assert {r[0] for r in results} == {HealthStatus.PASSING}
    assert len(server.seen) == 50


def test_invalid_url(session: CheckHTTPClient, handler: StatusHandler) -> None:
    with pytest.raises(ConfigError):
        check(handler, session, "ftp://example.com/")
