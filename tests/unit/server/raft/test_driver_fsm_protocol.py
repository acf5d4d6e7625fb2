"""The Raft driver replicates any state machine that satisfies ``FSMProtocol``
(server/raft/fsm.py), not only Lictor's catalog FSM: here a counter, on a manual clock."""

from __future__ import annotations

import io
import struct
from typing import IO

import pytest

from lictor.common.clock import ManualClock
from lictor.server.raft.driver import RaftNode, RaftNodeConfig
from lictor.server.raft.fsm import FSMProtocol
from lictor.server.raft.transport import MemoryNetwork


class _CounterSnapshot:
    def __init__(self, total: int) -> None:
        self.total = total

    def persist(self, sink: IO[bytes]) -> None:
        sink.write(struct.pack(">q", self.total))


class Counter:
    """Adds the 8-byte integers it is fed; a restore replaces the total."""

    def __init__(self) -> None:
        self.total = 0
        self.last_applied = 0

    def apply(self, index: int, data: bytes) -> int:
        if data.startswith(b"R"):
            self.restore(io.BytesIO(data[1:]))
            return self.total
        self.total += struct.unpack(">q", data)[0]
        return self.total

    def snapshot(self) -> _CounterSnapshot:
        return _CounterSnapshot(self.total)

    def restore(self, stream: IO[bytes]) -> None:
        self.total = struct.unpack(">q", stream.read())[0]

    def check_snapshot(self, data: bytes) -> None:
        if len(data) != 8:
            raise ValueError("a counter snapshot is 8 bytes")

    def restore_command(self, data: bytes, now: float) -> bytes:
        return b"R" + data


def test_counter_satisfies_the_protocol() -> None:
    fsm: FSMProtocol = Counter()  # checked by mypy; at run time, the driver below uses it
    assert fsm.last_applied == 0


async def test_driver_replicates_a_foreign_fsm_on_a_manual_clock() -> None:
    clock = ManualClock()
    net = MemoryNetwork()
    fsm = Counter()
    node = RaftNode(RaftNodeConfig(node_id=1, address="n1", bootstrap={1: "n1"}, tick_interval=0.1, seed=1),
                    fsm, net.transport(1, "n1"), clock=clock)
    await node.start()
    try:
        for _ in range(100):
            if node.is_leader():
                break
            await clock.advance(0.1)
        assert node.is_leader(), "no leader after 10 simulated seconds"
        assert (await node.apply(struct.pack(">q", 5)))[1] == 5
        assert (await node.apply(struct.pack(">q", 37)))[1] == 42
        with pytest.raises(ValueError, match="8 bytes"):
            await node.restore_user_snapshot(io.BytesIO(b"short"))
        await node.restore_user_snapshot(io.BytesIO(struct.pack(">q", 7)))
        assert fsm.total == 7
    finally:
        await node.close()
