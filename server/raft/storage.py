"""The core's read-only view of durable Raft state, and `MemoryStorage`, its in-process twin.

The core only *reads* storage (`StorageProtocol`); the driver *writes* it while carrying out a
`Ready` (see `Ready` for the order). Index layout, as in etcd: storage keeps a "dummy" position at
`first_index() - 1` whose term is known (the last compacted entry, or the snapshot's index), so
`term(first_index() - 1)` always answers and anything below raises `LogCompactedError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .messages import (
    ConfState,
    Entry,
    HardState,
    LogCompactedError,
    LogUnavailableError,
    RaftIndex,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    Term,
    entry_size,
)

__all__ = ["StorageProtocol", "MemoryStorage", "limit_size"]


def limit_size(ents: list[Entry], max_bytes: int | None) -> list[Entry]:
    """Longest prefix of `ents` within `max_bytes` (always at least one entry)."""
    if max_bytes is None or len(ents) <= 1:
        return ents
    size = 0
    for i, e in enumerate(ents):
        size += entry_size(e)
        if size > max_bytes and i > 0:
            return ents[:i]
    return ents


class StorageProtocol(Protocol):
    """Read-only stable storage, as the core sees it. All methods are cheap and never block.

    Errors: `term`/`entries` raise `LogCompactedError` below the dummy index and
    `LogUnavailableError` beyond `last_index()`.
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """Persisted HardState and the ConfState of the latest snapshot (empty for a new node)."""
        ...

    def first_index(self) -> RaftIndex:
        """Index of the first entry still available (the snapshot index + 1)."""
        ...

    def last_index(self) -> RaftIndex:
        """Index of the last persisted entry (the snapshot index if the log is empty)."""
        ...

    def term(self, index: RaftIndex) -> Term:
        """Term of entry `index`, for first_index()-1 <= index <= last_index()."""
        ...

    def entries(self, lo: RaftIndex, hi: RaftIndex, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi), truncated to `max_bytes` (at least one entry if lo < hi)."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (EMPTY_SNAPSHOT if none was ever made)."""
        ...


class MemoryStorage:
    """In-memory `StorageProtocol` plus the write side the driver uses.

    `_ents[0]` is the dummy entry at the snapshot/compaction point; real entries follow it.
    """

    __slots__ = ("_hard", "_snapshot", "_ents")

    def __init__(self) -> None:
        self._hard = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # ---- read side (StorageProtocol)

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard, self._snapshot.metadata.conf_state

    @property
    def hard_state(self) -> HardState:
        return self._hard

    def first_index(self) -> RaftIndex:
        return self._ents[0].index + 1

    def last_index(self) -> RaftIndex:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, index: RaftIndex) -> Term:
        offset = self._ents[0].index
        if index < offset:
            raise LogCompactedError(index)
        if index - offset >= len(self._ents):
            raise LogUnavailableError(index)
        return self._ents[index - offset].term

    def entries(self, lo: RaftIndex, hi: RaftIndex, max_bytes: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise LogCompactedError(lo)
        if hi > self.last_index() + 1:
            raise LogUnavailableError(hi)
        return limit_size(self._ents[lo - offset : hi - offset], max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # ---- write side (driver only)

    def set_hard_state(self, hs: HardState) -> None:
        self._hard = hs

    def append(self, entries: Sequence[Entry]) -> None:
        """Append `entries`, truncating any existing suffix they overlap. Entries already
        compacted are skipped. Obligation: entries are contiguous and do not leave a gap."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise AssertionError(
                f"missing log entries: last {self.last_index()}, appended at {entries[0].index}"
            )
        del self._ents[offset:]
        self._ents.extend(entries)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with `snap` (the follower install path)."""
        if snap.metadata.index < self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(snap.metadata.index)
        self._snapshot = snap
        self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, index: RaftIndex, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record an application snapshot taken at `index` (which must be applied, <= last)."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(index)
        if index > self.last_index():
            raise LogUnavailableError(index)
        meta = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(metadata=meta, data=data)
        return self._snapshot

    def compact(self, index: RaftIndex) -> None:
        """Discard entries before `index` (they must be covered by a snapshot); `index` becomes
        the dummy entry."""
        offset = self._ents[0].index
        if index <= offset:
            raise LogCompactedError(index)
        if index > self.last_index():
            raise LogUnavailableError(index)
        i = index - offset
        dummy = Entry(term=self._ents[i].term, index=index)
        self._ents = [dummy, *self._ents[i + 1 :]]
