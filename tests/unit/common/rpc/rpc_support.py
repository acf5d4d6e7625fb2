"""Helpers shared by the RPC tests: a scriptable handler, a zero-jitter RNG, polling helpers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from lictor.common.errors import (
    CASFailed,
    Conflict,
    NoLeaderError,
    NotFound,
    NotLeaderError,
    RemoteProtocolError,
    ValidationError,
)
from lictor.common.rpc.conn import PeerInfo

#: Errors the "raise" method can be asked to raise, by name.
RAISABLE: dict[str, Callable[[], BaseException]] = {
    "NotLeaderError": lambda: NotLeaderError("10.0.0.2:8300"),
    "NotLeaderNone": lambda: NotLeaderError(None),
    "NoLeaderError": lambda: NoLeaderError(),
    "NotFound": lambda: NotFound("no such key"),
    "CASFailed": lambda: CASFailed("index 7 is stale"),
    "Conflict": lambda: Conflict("session invalid"),
    "ValidationError": lambda: ValidationError("bad node name"),
    "RemoteProtocolError": lambda: RemoteProtocolError("odd args"),
    "KeyError": lambda: KeyError("secret-internal-detail"),
}


class ScriptedHandler:
    """A handler whose methods are test fixtures.

    echo    -> returns args
    sleep   -> sleeps args["s"] seconds, records completion order, returns args
    gate    -> waits until the test sets ``self.gate``
    raise   -> raises RAISABLE[args["name"]]
    peer    -> returns what it knows about the peer
    """

    def __init__(self) -> None:
        self.notes: list[tuple[str, dict[str, Any]]] = []
        self.completed: list[int] = []
        self.started = 0
        self.running = 0
        self.max_running = 0
        self.gate = asyncio.Event()
        self.peers: list[PeerInfo] = []

    async def handle(self, method: str, args: dict[str, Any], peer: PeerInfo) -> Any:
        self.started += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.peers.append(peer)
        try:
            if method == "echo":
                return args
            if method == "sleep":
                await asyncio.sleep(args["s"])
                self.completed.append(args["i"])
                return args
            if method == "gate":
                await self.gate.wait()
                return "opened"
            if method == "raise":
                raise RAISABLE[args["name"]]()
            if method == "peer":
                return {"tls": peer.tls, "has_cert": peer.cert is not None}
            raise NotFound(f"unknown method {method}")
        finally:
            self.running -= 1

    def notify(self, method: str, args: dict[str, Any], peer: PeerInfo) -> None:
        if method == "bad":
            raise RemoteProtocolError("bad notification")
        self.notes.append((method, args))


class ZeroRandom(random.Random):
    """The only thing tests patch: jitter always picks the low end."""

    def random(self) -> float:
        return 0.0


async def wait_for(pred: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``pred`` on the loop (every 5 ms) until true; fail the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    """Everything the server sends until it closes the connection (reset counts as closed)."""
    got = b""
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got
