"""Shared helpers (no tests here) for the RaftNode driver tests: in-memory clusters on a MemoryNetwork.

Every node of a :class:`Cluster` runs on one shared :class:`ManualClock` that an autojump task
moves forward one tick per turn of the event loop (trio's MockClock idea): Raft's timers count
loop turns, not wall time, so a slow or loaded machine slows every node alike and cannot make a
follower time out on a healthy leader. Only the file stores' executor I/O runs on real time;
the autojump yields briefly to it each step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lictor.common.clock import ManualClock
from lictor.common.commands import MessageType, encode_command
from lictor.server.fsm import FSM
from lictor.server.raft.driver import RaftNode, RaftNodeConfig
from lictor.server.raft.transport import MemoryNetwork

TICK = 0.01  # simulated seconds per tick: elections in 100-200 ms of simulated time
REAL_YIELD = 0.0005  # real seconds the autojump leaves to executor I/O each step


def kv_set(key: str, value: bytes | str) -> bytes:
    v = value.encode() if isinstance(value, str) else value
    return encode_command(MessageType.KVS, {"op": "set", "key": key, "value": v}, 1000.0)


def fsm_state(fsm: FSM) -> dict[str, Any]:
    return {k: (e.value, e.modify_index) for k, e in fsm.store.kvs.items()}


async def eventually(pred: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(TICK / 2)


class Cluster:
    def __init__(self, ids: Iterable[int] = (1, 2, 3), *, data_root: Path | None = None,
                 network: MemoryNetwork | None = None, **opts: Any) -> None:
        self.ids = list(ids)
        self.net = network or MemoryNetwork()
        self.data_root = data_root
        self.opts = dict(tick_interval=TICK, seed=None)
        self.opts.update(opts)
        self.nodes: dict[int, RaftNode] = {}
        self.clock = ManualClock()
        self._jumper: asyncio.Task[None] | None = None

    async def _autojump(self) -> None:
        while True:
            await asyncio.sleep(REAL_YIELD)
            await self.clock.advance(TICK)

    def addr(self, i: int) -> str:
        return f"10.0.0.{i}:8300"

    def make(self, i: int, *, bootstrap: bool = True, stores: dict[str, Any] | None = None,
             transport: Any = None, **kw: Any) -> RaftNode:
        opts = dict(self.opts)
        opts.update(kw)
        cfg = RaftNodeConfig(
            node_id=i, address=self.addr(i),
            bootstrap={j: self.addr(j) for j in self.ids} if bootstrap else {},
            data_dir=(self.data_root / f"n{i}") if self.data_root else None,
            **opts,
        )
        if transport is None:
            transport = self.net.transport(i, self.addr(i))
        node = RaftNode(cfg, FSM(), transport, clock=self.clock, **(stores or {}))
        self.nodes[i] = node
        if self._jumper is None:
            self._jumper = asyncio.get_running_loop().create_task(self._autojump())
        return node

    async def start(self, **kw: Any) -> Cluster:
        for i in self.ids:
            await self.make(i, **kw).start()
        return self

    async def leader(self, timeout: float = 5.0, among: Iterable[int] | None = None) -> RaftNode:
        ids = list(among) if among is not None else list(self.nodes)

        def find() -> RaftNode | None:
            leaders = [self.nodes[i] for i in ids if self.nodes[i].is_leader()]
            return leaders[0] if len(leaders) == 1 else None

        return await eventually(find, timeout, "a single leader")

    async def close(self) -> None:
        for n in self.nodes.values():
            await n.close()
        if self._jumper is not None:
            self._jumper.cancel()
            self._jumper = None

    async def converge(self, ids: Iterable[int] | None = None, timeout: float = 5.0) -> None:
        ids = list(ids) if ids is not None else list(self.nodes)

        def same() -> bool:
            states = [fsm_state(self.nodes[i].fsm) for i in ids]
            applied = {self.nodes[i].applied_index for i in ids}
            return all(s == states[0] for s in states) and len(applied) == 1

        await eventually(same, timeout, "FSM convergence")
