"""Fixtures that run each conformance test against every store implementation.

Each fixture yields a *harness* rather than a bare store, so tests can ``reopen()`` it: a file
store is closed and opened again on the same path (state must survive); a memory store "reopens"
as the same object, which is how the simulator models a crash-restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from lictor.server.raft.filestore import FileLogStore, FileSnapshotStore, FileStableStore
from lictor.server.raft.logstore import (
    LogStore,
    MemoryLogStore,
    MemorySnapshotStore,
    MemoryStableStore,
    SnapshotStore,
    StableStore,
)

S = TypeVar("S", LogStore, StableStore, SnapshotStore)

#: Small enough that a handful of records spans several segments (rotation under every test).
SMALL_SEGMENT_BYTES = 160


class Harness(Generic[S]):
    """A store plus the means to reopen it."""

    def __init__(self, kind: str, open_store: Callable[[], S], *, durable: bool) -> None:
        self.kind = kind
        self.durable = durable  # True for file stores: reopen builds a new object from disk
        self._open = open_store
        self.store: S = open_store()

    def reopen(self) -> S:
        if self.durable:
            self.store.close()
            self.store = self._open()
        return self.store

    def close(self) -> None:
        self.store.close()


# A clock that never repeats keeps snapshot ids deterministic across implementations.
def _clock() -> Callable[[], int]:
    t = [1_700_000_000_000]

    def now() -> int:
        t[0] += 1
        return t[0]

    return now


LOG_KINDS = ["memory", "file", "file-small-segments"]


@pytest.fixture(params=LOG_KINDS)
def log_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness[LogStore]]:
    kind: str = request.param
    if kind == "memory":
        mem = MemoryLogStore()
        h: Harness[LogStore] = Harness(kind, lambda: mem, durable=False)
    else:
        seg = SMALL_SEGMENT_BYTES if kind == "file-small-segments" else 64 * 1024 * 1024
        h = Harness(kind, lambda: FileLogStore(tmp_path / "log", segment_bytes=seg), durable=True)
    yield h
    h.close()


@pytest.fixture(params=["memory", "file"])
def stable_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Harness[StableStore]]:
    if request.param == "memory":
        mem = MemoryStableStore()
        h: Harness[StableStore] = Harness("memory", lambda: mem, durable=False)
    else:
        h = Harness("file", lambda: FileStableStore(tmp_path / "raft" / "stable"), durable=True)
    yield h
    h.close()


@pytest.fixture(params=["memory", "file"])
def snapshot_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Harness[SnapshotStore]]:
    clock = _clock()
    if request.param == "memory":
        mem = MemorySnapshotStore(clock_ms=clock)
        h: Harness[SnapshotStore] = Harness("memory", lambda: mem, durable=False)
    else:
        h = Harness(
            "file",
            lambda: FileSnapshotStore(tmp_path / "snapshots", clock_ms=clock),
            durable=True,
        )
    yield h
    h.close()
