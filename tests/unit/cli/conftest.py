"""A small real HTTP server (aiohttp on 127.0.0.1:0, in a thread) that plays the agent for CLI tests.

It records every request (method, path, query string, body, headers) and answers from a table the
test fills: ``stub.route("GET", "/v1/kv/foo", json=[...])``. Unrouted requests get a 404.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class AgentStub:
    addr: str = ""
    requests: list[Recorded] = field(default_factory=list)
    routes: dict[tuple[str, str], tuple[int, bytes, str]] = field(default_factory=dict)

    def route(self, method: str, path: str, *, json_body: Any = None, text: str | None = None,
              status: int = 200) -> None:
        if text is not None:
            self.routes[(method, path)] = (status, text.encode(), "text/plain")
        else:
            self.routes[(method, path)] = (status, json.dumps(json_body).encode(), "application/json")

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path, _, query = request.raw_path.partition("?")  # exactly as sent, not decoded
        self.requests.append(Recorded(request.method, path, query, body, dict(request.headers)))
        status, payload, ctype = self.routes.get((request.method, request.path), (404, b"", "text/plain"))
        return web.Response(status=status, body=payload, content_type=ctype)


@pytest.fixture
def agent_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentStub]:
    stub = AgentStub()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner_box: dict[str, web.AppRunner] = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", stub.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        stub.addr = f"127.0.0.1:{port}"
        runner_box["runner"] = runner
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    for name in ("LICTOR_HTTP_ADDR", "LICTOR_HTTP_TOKEN", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL", "LICTOR_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONSUL_HTTP_ADDR", stub.addr)
    try:
        yield stub
    finally:
        asyncio.run_coroutine_threadsafe(runner_box["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
