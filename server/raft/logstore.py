"""Durable Raft storage: the three store protocols, their errors, and the in-memory twins.

The Raft core (``core.py``) is sans-I/O; the asyncio driver persists what a ``Ready`` asks for
through the three narrow protocols defined here, shaped after hashicorp/raft's
``LogStore`` / ``StableStore`` / ``SnapshotStore``::

    driver._handle_ready(ready)
      ├─ StableStore.save(term, vote, commit)        hard state, atomic + durable
      ├─ LogStore.append(records) / append_async()    entries, durable before acking
      ├─ SnapshotStore.create(...)                    after the FSM persisted a snapshot
      └─ LogStore.compact_prefix(snapshot_index)      drop what the snapshot covers

``filestore.py`` holds the on-disk implementations; the ``Memory*`` twins below are shipped (not
test-only) so the simulator and ``lictor agent -dev`` can run without a disk. Every implementation
passes the same suite in ``tests/conformance/``.

Rules every implementation keeps:

* **The log is contiguous.** Indexes ``first_index() .. last_index()`` are all present and nothing
  else is. An empty log has ``last_index() == first_index() - 1``; a fresh store has
  ``first_index() == 1`` and ``last_index() == 0`` (hashicorp's convention), and a log emptied by
  compaction up to ``n`` has ``first_index() == n + 1`` and ``last_index() == n``, so the next
  append must start at ``n + 1``. Hence ``last_index() - first_index() + 1`` is always the number
  of stored entries.
* **Durable on return.** A synchronous mutating method returns only once its effect survives a
  crash (the file stores have fsynced the data and, where files were created, renamed or deleted,
  the directory). ``append_async`` returns a future that completes under the same condition.
* **Single-threaded.** Stores are not thread-safe; call them from one thread (the event loop).
* **A failed sync is fatal.** After fsync/write fails, the kernel may have dropped the dirty pages,
  so retrying could report durability that never happened. File stores then raise
  ``StoreFailedError`` from every call; the process must restart and recover from disk.

Errors: ``StorageError`` (a ``LictorError``) is the root of everything the stores raise::

    StorageError
     +-- StoreFailedError            an earlier write/fsync failed; reopen from disk
     +-- StorageCorruptionError      persistent state fails validation: refuse to start
     |    +-- LogCorruptionError     names file, offset and index
     |    +-- StableStoreCorruptionError
     |    +-- SnapshotCorruptionError
     +-- LogNotFoundError (LookupError)
     |    +-- LogCompactedError      index < first_index()
     |    +-- LogUnavailableError    index > last_index()
     +-- LogAppendError (ValueError) non-contiguous append / compaction term mismatch
     +-- SnapshotNotFoundError (LookupError)
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, runtime_checkable

from lictor.common.errors import LictorError

__all__ = [
    "DEFAULT_SNAPSHOT_RETAIN",
    "HardStateRecord",
    "LogAppendError",
    "LogCompactedError",
    "LogCorruptionError",
    "LogNotFoundError",
    "LogRecord",
    "LogStore",
    "LogUnavailableError",
    "MemoryLogStore",
    "MemorySnapshotStore",
    "MemoryStableStore",
    "SnapshotCorruptionError",
    "SnapshotData",
    "SnapshotMeta",
    "SnapshotNotFoundError",
    "SnapshotSink",
    "SnapshotStore",
    "StableStore",
    "StableStoreCorruptionError",
    "StorageCorruptionError",
    "StorageError",
    "StoreFailedError",
    "VoteID",
    "check_append",
    "compaction_term",
    "snapshot_id",
]

#: How many snapshots a snapshot store keeps unless told otherwise (hashicorp's default is 2).
DEFAULT_SNAPSHOT_RETAIN = 2

#: A vote is a node ID (int or str; the core decides) or None for "voted for nobody this term".
VoteID = int | str | None


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRecord:
    """One stored log entry. The driver converts to and from the core's ``Entry``.

    ``kind`` is the entry type (normal, configuration change, ...) as a small int (0..65535);
    ``data`` is opaque to storage.
    """

    index: int
    term: int
    kind: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HardStateRecord:
    """The Raft state that must survive a restart: current term, vote in that term, commit index.

    A store that has never been saved loads as ``HardStateRecord(term=0, vote=None, commit=0)``.
    """

    term: int = 0
    vote: VoteID = None
    commit: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    """Describes one stored snapshot. ``id`` is ``"<term>-<index>-<created_ms>"``.

    ``conf_state`` is the cluster configuration as of ``index`` (a JSON-compatible mapping, owned
    by the core); ``size`` and ``sha256`` describe the state bytes.
    """

    id: str
    index: int
    term: int
    conf_state: Mapping[str, Any]
    size: int
    sha256: str
    created_ms: int


#: What ``SnapshotStore.create`` accepts as the state: bytes, a binary file object, or chunks.
SnapshotData = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


def snapshot_id(term: int, index: int, created_ms: int) -> str:
    """The directory / id name of a snapshot: ``<term>-<index>-<created_ms>``."""
    return f"{term}-{index}-{created_ms}"


# --------------------------------------------------------------------------------------------
# Errors


class StorageError(LictorError):
    """Root of every error raised by a Raft store (a branch of ``LictorError``)."""


class StoreFailedError(StorageError):
    """A write or fsync failed earlier; the store refuses all further use (restart to recover)."""


class StorageCorruptionError(StorageError):
    """Persistent state failed validation; the store refuses to open rather than guess."""


class LogCorruptionError(StorageCorruptionError):
    """A log segment is corrupt somewhere other than a recoverable torn tail.

    The message names the file, the byte offset and the Raft index involved; the same values are
    available as attributes.
    """

    def __init__(self, reason: str, *, path: str, offset: int, index: int | None) -> None:
        self.reason = reason
        self.path = path
        self.offset = offset
        self.index = index
        where = f"{path} at offset {offset}"
        if index is not None:
            where += f" (index {index})"
        super().__init__(f"raft log corrupt: {reason}: {where}; refusing to start")


class StableStoreCorruptionError(StorageCorruptionError):
    """The stable-state (hard state) file is unreadable or fails its checksum."""


class SnapshotCorruptionError(StorageCorruptionError):
    """A snapshot asked for by id fails its checksum or has unreadable metadata."""


class SnapshotNotFoundError(StorageError, LookupError):
    """No snapshot with the requested id."""


class LogNotFoundError(StorageError, LookupError):
    """The requested index is not in the log (see the two subclasses)."""


class LogCompactedError(LogNotFoundError):
    """The index is below ``first_index()``: compacted away, send a snapshot instead."""


class LogUnavailableError(LogNotFoundError):
    """The index is above ``last_index()``: it has not been appended (yet)."""


class LogAppendError(StorageError, ValueError):
    """An append or truncation that would break contiguity (a caller bug, never retried)."""


# --------------------------------------------------------------------------------------------
# Protocols


@runtime_checkable
class LogStore(Protocol):
    """The Raft log: contiguous records ``first_index() .. last_index()``.

    Reads never mutate. Mutations validate their arguments before touching anything, so an
    argument error leaves the store unchanged. Errors: ``LogCompactedError`` /
    ``LogUnavailableError`` for reads outside the log, ``LogAppendError`` for non-contiguous
    writes, ``StoreFailedError`` once an I/O failure has poisoned the store,
    ``LogCorruptionError`` when stored bytes fail their checksum.
    """

    def first_index(self) -> int:
        """Index of the oldest stored record; ``1`` for a fresh store, ``n + 1`` after
        ``compact_prefix(n)``. Defined even when the log is empty."""
        ...

    def last_index(self) -> int:
        """Index of the newest stored record; ``first_index() - 1`` when the log is empty."""
        ...

    def get(self, index: int) -> LogRecord:
        """The record at ``index``. Raises ``LogCompactedError`` below ``first_index()`` and
        ``LogUnavailableError`` above ``last_index()``."""
        ...

    def get_range(self, lo: int, hi: int, *, max_bytes: int | None = None) -> list[LogRecord]:
        """Records ``lo <= index < hi`` (half-open, like ``range``) in index order.

        ``lo == hi`` returns ``[]``. Raises ``LogCompactedError`` if ``lo < first_index()``,
        ``LogUnavailableError`` if ``hi > last_index() + 1``, ``ValueError`` if ``lo > hi``.
        With ``max_bytes``, stops once the total ``len(data)`` would exceed it, but always
        returns at least one record when the range is non-empty (etcd's ``maxSize`` rule).
        """
        ...

    def append(self, records: Sequence[LogRecord]) -> None:
        """Append ``records`` and return only once they are durable.

        ``records`` must have consecutive indexes starting at some ``i`` with
        ``first_index() <= i <= last_index() + 1``; otherwise ``LogAppendError`` and nothing
        changes. If ``i <= last_index()`` the conflicting suffix ``i ..`` is dropped first (the
        Raft overwrite case), so appending the same records twice is harmless. An empty sequence
        is a no-op.
        """
        ...

    def append_async(self, records: Sequence[LogRecord]) -> asyncio.Future[None]:
        """Group-commit append: write now, return a future that completes once durable.

        Must be called from a running event loop. Validation and the write happen before this
        returns (so records are readable and ``last_index()`` moves immediately, and calls are
        ordered by call order); argument errors raise here, not in the future. Many calls made
        while one fsync is in flight share the next single fsync. The future fails with
        ``StoreFailedError`` if that fsync fails.
        """
        ...

    def truncate_suffix(self, from_index: int) -> None:
        """Drop every record with ``index >= from_index``; durable on return.

        A no-op when ``from_index > last_index()``. Raises ``LogCompactedError`` when
        ``from_index < first_index()`` (committed entries are never truncated).
        """
        ...

    def compacted_term(self) -> int:
        """Term of the entry at ``first_index() - 1`` (the last compacted one, etcd's "dummy"
        entry), so the core can answer ``term(first_index() - 1)``; ``0`` for a fresh store."""
        ...

    def compact_prefix(self, upto_index: int, *, term: int | None = None) -> None:
        """Drop every record with ``index <= upto_index`` (they are covered by a snapshot).

        Afterwards ``first_index() == upto_index + 1`` and ``compacted_term()`` is the term of
        entry ``upto_index``. ``term`` is that term: optional while the entry is still in the
        log (it is read from the record, and a different ``term`` raises ``LogAppendError``),
        required when ``upto_index > last_index()`` (a follower installing a snapshot beyond its
        log; the log becomes empty with ``last_index() == upto_index``). A no-op when
        ``upto_index < first_index()``, so it is idempotent. The new first index and term are
        durable on return; reclaiming space may be coarser (file stores delete whole segments).
        """
        ...

    def close(self) -> None:
        """Release resources. Idempotent. Does not need to sync: every acknowledged write
        already is durable."""
        ...


@runtime_checkable
class StableStore(Protocol):
    """Holds the Raft hard state (term, vote, commit)."""

    def load(self) -> HardStateRecord:
        """The last saved state, or ``HardStateRecord()`` (0, None, 0) if never saved."""
        ...

    def save(self, term: int, vote: VoteID, commit: int) -> None:
        """Replace the state atomically and durably: after a crash, ``load()`` returns either
        the old or the new state, never a mix, and the new one once ``save`` has returned.
        Saving the state already stored may skip I/O (it is idempotent)."""
        ...

    def close(self) -> None:
        """Release resources. Idempotent."""
        ...


@runtime_checkable
class SnapshotSink(Protocol):
    """An in-progress snapshot (from ``SnapshotStore.sink``); also a context manager that
    aborts unless ``commit()`` was called."""

    def write(self, data: bytes) -> int:
        """Append state bytes; returns ``len(data)``."""
        ...

    def commit(self) -> SnapshotMeta:
        """Make the snapshot durable and visible, prune old ones, and return its metadata."""
        ...

    def abort(self) -> None:
        """Discard the snapshot. Idempotent; a no-op after ``commit()``."""
        ...

    def __enter__(self) -> SnapshotSink: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Snapshots of the FSM, newest first, keeping the last ``retain`` (default 2).

    A snapshot becomes visible atomically and durably (all or nothing) when committed. Snapshots
    whose checksum fails are skipped (with a warning) by ``latest()`` and ``list()``.
    """

    def create(
        self, index: int, term: int, conf_state: Mapping[str, Any], data: SnapshotData
    ) -> SnapshotMeta:
        """Store a whole snapshot in one call (``sink`` + write everything + ``commit``)."""
        ...

    def sink(self, index: int, term: int, conf_state: Mapping[str, Any]) -> SnapshotSink:
        """Start a streamed snapshot; nothing is visible until ``commit()``."""
        ...

    def latest(self) -> tuple[SnapshotMeta, BinaryIO] | None:
        """The newest valid snapshot and a reader positioned at its first state byte (the caller
        closes it), or ``None`` if there is none."""
        ...

    def list(self) -> list[SnapshotMeta]:
        """Metadata of the valid snapshots, newest first (by index, then term, then time)."""
        ...

    def open(self, snapshot_id: str) -> tuple[SnapshotMeta, BinaryIO]:
        """The snapshot ``snapshot_id``. Raises ``SnapshotNotFoundError`` if absent and
        ``SnapshotCorruptionError`` if it fails its checksum."""
        ...

    def close(self) -> None:
        """Release resources. Idempotent."""
        ...


# --------------------------------------------------------------------------------------------
# Shared validation


def check_append(records: Sequence[LogRecord], first: int, last: int) -> None:
    """Raise ``LogAppendError`` unless ``records`` may be appended to a log ``first..last``."""
    if not records:
        return
    start = records[0].index
    if start < first:
        raise LogAppendError(
            f"append at index {start} is below first index {first} (compacted)"
        )
    if start > last + 1:
        raise LogAppendError(f"append at index {start} leaves a gap after last index {last}")
    for expected, rec in enumerate(records, start):
        if rec.index != expected:
            raise LogAppendError(
                f"records not contiguous: expected index {expected}, got {rec.index}"
            )
        if rec.term < 0 or not 0 <= rec.kind <= 0xFFFF:
            raise LogAppendError(f"record {rec.index}: term or kind out of range")


def compaction_term(store: LogStore, upto_index: int, term: int | None) -> int:
    """The term to remember for ``compact_prefix(upto_index, term=term)`` (see the protocol)."""
    if upto_index <= store.last_index():
        stored = store.get(upto_index).term
        if term is not None and term != stored:
            raise LogAppendError(
                f"compaction at index {upto_index}: term {term} given, log has {stored}"
            )
        return stored
    if term is None:
        raise LogAppendError(
            f"compaction at index {upto_index} beyond last index {store.last_index()} needs term="
        )
    return term


def _check_read(index: int, first: int, last: int) -> None:
    if index < first:
        raise LogCompactedError(f"index {index} is compacted (first index is {first})")
    if index > last:
        raise LogUnavailableError(f"index {index} is beyond last index {last}")


def _check_range(lo: int, hi: int, first: int, last: int) -> None:
    if lo > hi:
        raise ValueError(f"invalid range [{lo}, {hi})")
    if lo == hi:
        return
    if lo < first:
        raise LogCompactedError(f"index {lo} is compacted (first index is {first})")
    if hi > last + 1:
        raise LogUnavailableError(f"range end {hi} is beyond last index {last}")


def _limit_bytes(records: list[LogRecord], max_bytes: int | None) -> list[LogRecord]:
    if max_bytes is None:
        return records
    total = 0
    for n, rec in enumerate(records):
        total += len(rec.data)
        if total > max_bytes and n > 0:
            return records[:n]
    return records


# --------------------------------------------------------------------------------------------
# In-memory twins


class MemoryLogStore:
    """In-process ``LogStore``: a list plus an offset. Every call is trivially "durable".

    The simulator models a crash-restart by handing the same object to the restarted node.
    """

    def __init__(self) -> None:
        self._first = 1
        self._compacted_term = 0
        self._records: list[LogRecord] = []

    def first_index(self) -> int:
        return self._first

    def last_index(self) -> int:
        return self._first + len(self._records) - 1

    def get(self, index: int) -> LogRecord:
        _check_read(index, self._first, self.last_index())
        return self._records[index - self._first]

    def get_range(self, lo: int, hi: int, *, max_bytes: int | None = None) -> list[LogRecord]:
        _check_range(lo, hi, self._first, self.last_index())
        return _limit_bytes(self._records[lo - self._first : hi - self._first], max_bytes)

    def append(self, records: Sequence[LogRecord]) -> None:
        check_append(records, self._first, self.last_index())
        if not records:
            return
        del self._records[records[0].index - self._first :]
        self._records.extend(records)

    def append_async(self, records: Sequence[LogRecord]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self.append(records)
        fut: asyncio.Future[None] = loop.create_future()
        fut.set_result(None)
        return fut

    def truncate_suffix(self, from_index: int) -> None:
        if from_index < self._first:
            raise LogCompactedError(
                f"cannot truncate from {from_index}: below first index {self._first}"
            )
        del self._records[from_index - self._first :]

    def compacted_term(self) -> int:
        return self._compacted_term

    def compact_prefix(self, upto_index: int, *, term: int | None = None) -> None:
        if upto_index < self._first:
            return
        new_term = compaction_term(self, upto_index, term)
        if upto_index >= self.last_index():
            self._records.clear()
        else:
            del self._records[: upto_index + 1 - self._first]
        self._first = upto_index + 1
        self._compacted_term = new_term

    def close(self) -> None:
        pass


class MemoryStableStore:
    """In-process ``StableStore``."""

    def __init__(self) -> None:
        self._state = HardStateRecord()

    def load(self) -> HardStateRecord:
        return self._state

    def save(self, term: int, vote: VoteID, commit: int) -> None:
        self._state = HardStateRecord(term=term, vote=vote, commit=commit)

    def close(self) -> None:
        pass


def _iter_chunks(data: SnapshotData, chunk: int = 1 << 20) -> Iterable[bytes]:
    """Normalise the accepted snapshot payload shapes into byte chunks."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
        return
    read = getattr(data, "read", None)
    if read is not None:
        while block := read(chunk):
            yield block
        return
    yield from data


class _MemorySink:
    def __init__(
        self, store: MemorySnapshotStore, index: int, term: int, conf_state: Mapping[str, Any]
    ) -> None:
        self._store = store
        self._index = index
        self._term = term
        self._conf_state = copy.deepcopy(dict(conf_state))
        self._buf = io.BytesIO()
        self._done = False

    def write(self, data: bytes) -> int:
        if self._done:
            raise StorageError("snapshot sink already committed or aborted")
        return self._buf.write(data)

    def commit(self) -> SnapshotMeta:
        if self._done:
            raise StorageError("snapshot sink already committed or aborted")
        self._done = True
        return self._store._add(self._index, self._term, self._conf_state, self._buf.getvalue())

    def abort(self) -> None:
        self._done = True

    def __enter__(self) -> _MemorySink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


@dataclass(slots=True)
class _MemorySnapshot:
    meta: SnapshotMeta
    data: bytes = field(repr=False)


class MemorySnapshotStore:
    """In-process ``SnapshotStore`` keeping the newest ``retain`` snapshots.

    ``clock_ms`` supplies the creation time in milliseconds (injectable for deterministic ids).
    """

    def __init__(
        self,
        *,
        retain: int = DEFAULT_SNAPSHOT_RETAIN,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if retain < 1:
            raise ValueError("retain must be >= 1")
        self._retain = retain
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._snaps: dict[str, _MemorySnapshot] = {}

    def create(
        self, index: int, term: int, conf_state: Mapping[str, Any], data: SnapshotData
    ) -> SnapshotMeta:
        with self.sink(index, term, conf_state) as sink:
            for chunk in _iter_chunks(data):
                sink.write(chunk)
            return sink.commit()

    def sink(self, index: int, term: int, conf_state: Mapping[str, Any]) -> _MemorySink:
        return _MemorySink(self, index, term, conf_state)

    def _add(
        self, index: int, term: int, conf_state: Mapping[str, Any], data: bytes
    ) -> SnapshotMeta:
        ms = self._clock_ms()
        while snapshot_id(term, index, ms) in self._snaps:
            ms += 1
        meta = SnapshotMeta(
            id=snapshot_id(term, index, ms),
            index=index,
            term=term,
            conf_state=conf_state,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            created_ms=ms,
        )
        self._snaps[meta.id] = _MemorySnapshot(meta, data)
        for old in self.list()[self._retain :]:
            del self._snaps[old.id]
        return meta

    def latest(self) -> tuple[SnapshotMeta, BinaryIO] | None:
        metas = self.list()
        return self.open(metas[0].id) if metas else None

    def list(self) -> list[SnapshotMeta]:
        return sorted(
            (s.meta for s in self._snaps.values()),
            key=lambda m: (m.index, m.term, m.created_ms),
            reverse=True,
        )

    def open(self, snapshot_id: str) -> tuple[SnapshotMeta, BinaryIO]:
        try:
            snap = self._snaps[snapshot_id]
        except KeyError:
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}") from None
        return snap.meta, io.BytesIO(snap.data)

    def close(self) -> None:
        pass
