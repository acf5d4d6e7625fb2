"""LogStore conformance: every implementation must pass every test here.

Run against MemoryLogStore, FileLogStore, and FileLogStore with tiny segments (so rotation and
cross-segment reads happen in every test). The last class is a model-based hypothesis test: a
FileLogStore with tiny segments, reopened at random points, must always agree with a
MemoryLogStore given the same operations.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lictor.server.raft.filestore import FileLogStore
from lictor.server.raft.logstore import (
    LogAppendError,
    LogCompactedError,
    LogRecord,
    LogStore,
    LogUnavailableError,
    MemoryLogStore,
)

from .conftest import SMALL_SEGMENT_BYTES, Harness


def rec(index: int, term: int = 1, data: bytes | None = None, kind: int = 0) -> LogRecord:
    return LogRecord(
        index=index, term=term, kind=kind, data=f"e{index}t{term}".encode() if data is None else data
    )


def recs(lo: int, hi: int, term: int = 1) -> list[LogRecord]:
    """Records lo..hi inclusive."""
    return [rec(i, term) for i in range(lo, hi + 1)]


def contents(store: LogStore) -> list[LogRecord]:
    return store.get_range(store.first_index(), store.last_index() + 1)


# -------------------------------------------------------------------------------- empty store


def test_empty_store_is_first_1_last_0(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (1, 0, 0)
    assert s.get_range(1, 1) == []
    with pytest.raises(LogUnavailableError):
        s.get(1)
    with pytest.raises(LogCompactedError):
        s.get(0)
    with pytest.raises(LogUnavailableError):
        s.get_range(1, 2)
    s = log_harness.reopen()
    assert (s.first_index(), s.last_index()) == (1, 0)


def test_empty_append_is_noop(log_harness: Harness[LogStore]) -> None:
    log_harness.store.append([])
    assert log_harness.store.last_index() == 0


# -------------------------------------------------------------------------------- append / read


def test_append_then_get_and_ranges(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 4))
    s.append(recs(5, 10, term=2))
    assert (s.first_index(), s.last_index()) == (1, 10)
    for i in range(1, 11):
        assert s.get(i) == rec(i, 1 if i <= 4 else 2)
    assert contents(s) == recs(1, 4) + recs(5, 10, term=2)
    assert s.get_range(3, 7) == [s.get(i) for i in range(3, 7)]
    assert s.get_range(10, 11) == [rec(10, 2)]
    assert s.get_range(4, 4) == []
    with pytest.raises(LogUnavailableError):
        s.get(11)
    with pytest.raises(LogUnavailableError):
        s.get_range(5, 12)
    with pytest.raises(ValueError):
        s.get_range(5, 4)


def test_field_extremes_round_trip(log_harness: Harness[LogStore]) -> None:
    records = [
        LogRecord(index=1, term=2**63 - 1, kind=0xFFFF, data=b""),
        LogRecord(index=2, term=2**63 - 1, kind=0, data=bytes(range(256)) * 3),
        LogRecord(index=3, term=2**63 - 1, kind=7, data=b"\x00" * 40),
    ]
    log_harness.store.append(records)
    assert contents(log_harness.store) == records
    assert contents(log_harness.reopen()) == records


def test_max_bytes_limits_range_but_returns_at_least_one(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append([rec(i, data=b"x" * 10) for i in range(1, 11)])
    assert [r.index for r in s.get_range(1, 11, max_bytes=25)] == [1, 2]
    assert [r.index for r in s.get_range(1, 11, max_bytes=30)] == [1, 2, 3]
    assert [r.index for r in s.get_range(4, 11, max_bytes=0)] == [4]
    assert len(s.get_range(1, 11, max_bytes=10_000)) == 10


@pytest.mark.parametrize(
    ("batch", "why"),
    [
        ([rec(3)], "gap after last index"),
        ([rec(1), rec(3)], "not consecutive"),
        ([rec(2), rec(1)], "not consecutive"),
    ],
)
def test_non_contiguous_append_is_rejected_without_change(
    log_harness: Harness[LogStore], batch: list[LogRecord], why: str
) -> None:
    s = log_harness.store
    s.append([rec(1)])
    with pytest.raises(LogAppendError):
        s.append(batch)
    assert contents(s) == [rec(1)], why


# -------------------------------------------------------------------------------- overwrite


def test_append_over_existing_suffix_truncates_it(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 10))
    s.append([rec(6, 2), rec(7, 2)])
    assert s.last_index() == 7
    assert contents(s) == recs(1, 5) + [rec(6, 2), rec(7, 2)]
    with pytest.raises(LogUnavailableError):
        s.get(8)
    s.append([rec(8, 2)])  # the log continues from the overwrite
    assert contents(log_harness.reopen()) == recs(1, 5) + recs(6, 8, term=2)


def test_overwrite_from_the_first_index(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 6))
    s.append(recs(1, 2, term=3))
    assert contents(log_harness.reopen()) == recs(1, 2, term=3)


def test_appending_same_records_twice_is_idempotent(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 8))
    s.append(recs(3, 8))
    assert contents(s) == recs(1, 8)
    assert contents(log_harness.reopen()) == recs(1, 8)


# -------------------------------------------------------------------------------- truncate


def test_truncate_suffix(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 10))
    s.truncate_suffix(11)  # beyond the end: no-op
    assert s.last_index() == 10
    s.truncate_suffix(6)
    assert (s.first_index(), s.last_index()) == (1, 5)
    s.truncate_suffix(6)  # idempotent
    assert contents(log_harness.reopen()) == recs(1, 5)


def test_truncate_everything_then_append(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 10))
    s.truncate_suffix(1)
    assert (s.first_index(), s.last_index()) == (1, 0)
    s = log_harness.reopen()
    assert (s.first_index(), s.last_index()) == (1, 0)
    s.append(recs(1, 3, term=4))
    assert contents(log_harness.reopen()) == recs(1, 3, term=4)


# -------------------------------------------------------------------------------- compaction


def test_compact_prefix(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 5) + recs(6, 10, term=2))
    s.compact_prefix(6)
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (7, 10, 2)
    with pytest.raises(LogCompactedError):
        s.get(6)
    with pytest.raises(LogCompactedError):
        s.get_range(6, 8)
    assert contents(s) == recs(7, 10, term=2)
    s.compact_prefix(3)  # below first: no-op
    s.compact_prefix(6)  # idempotent
    assert s.first_index() == 7
    s = log_harness.reopen()
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (7, 10, 2)
    assert contents(s) == recs(7, 10, term=2)


def test_compacted_prefix_cannot_be_appended_or_truncated(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 10))
    s.compact_prefix(5)
    with pytest.raises(LogAppendError):
        s.append([rec(5, 2)])
    with pytest.raises(LogCompactedError):
        s.truncate_suffix(5)
    s.truncate_suffix(6)  # truncating down to an empty log keeps the compaction point
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (6, 5, 1)
    s = log_harness.reopen()
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (6, 5, 1)
    s.append([rec(6, 3)])
    assert contents(log_harness.reopen()) == [rec(6, 3)]


def test_compact_term_must_match_the_log(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 5))
    with pytest.raises(LogAppendError):
        s.compact_prefix(3, term=9)
    assert s.first_index() == 1
    s.compact_prefix(3, term=1)
    assert s.first_index() == 4


def test_compact_beyond_last_index_empties_the_log(log_harness: Harness[LogStore]) -> None:
    """A follower installing a snapshot that is ahead of its whole log."""
    s = log_harness.store
    s.append(recs(1, 10))
    with pytest.raises(LogAppendError):
        s.compact_prefix(100)  # the term is unknown to the store
    s.compact_prefix(100, term=7)
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (101, 100, 7)
    s = log_harness.reopen()
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (101, 100, 7)
    with pytest.raises(LogAppendError):
        s.append([rec(102, 7)])
    s.append([rec(101, 7), rec(102, 7)])
    s = log_harness.reopen()
    assert contents(s) == [rec(101, 7), rec(102, 7)]
    assert s.compacted_term() == 7


def test_compact_exactly_at_last_index(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    s.append(recs(1, 10, term=3))
    s.compact_prefix(10)
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (11, 10, 3)
    s = log_harness.reopen()
    assert (s.first_index(), s.last_index(), s.compacted_term()) == (11, 10, 3)


# -------------------------------------------------------------------------------- async


async def test_append_async_group(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    futures = [s.append_async([rec(i)]) for i in range(1, 21)]
    assert s.last_index() == 20  # visible (not necessarily durable) as soon as called
    await asyncio.gather(*futures)
    assert all(f.done() and f.exception() is None for f in futures)
    await s.append_async([])
    with pytest.raises(LogAppendError):
        s.append_async([rec(30)])  # argument errors raise at the call, not in the future
    assert contents(log_harness.reopen()) == recs(1, 20)


async def test_append_async_overwrite(log_harness: Harness[LogStore]) -> None:
    s = log_harness.store
    await s.append_async(recs(1, 10))
    await s.append_async(recs(4, 5, term=2))
    assert contents(log_harness.reopen()) == recs(1, 3) + recs(4, 5, term=2)


# -------------------------------------------------------------------------------- model test


class FileMatchesMemory(RuleBasedStateMachine):
    """Random appends / overwrites / truncations / compactions / reopens: file == memory."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="lictor-logmodel-"))
        self.model = MemoryLogStore()
        self.file = self._open()

    def _open(self) -> FileLogStore:
        # fsync is a no-op here: this test is about structure, the unit tests count syncs.
        return FileLogStore(self.tmp, segment_bytes=SMALL_SEGMENT_BYTES, fsync=lambda fd: None)

    def _both(self, op: str, *args: object, **kw: object) -> None:
        results: list[type[Exception] | None] = []
        for store in (self.model, self.file):
            try:
                getattr(store, op)(*args, **kw)
                results.append(None)
            except Exception as exc:  # noqa: BLE001 - comparing error types
                results.append(type(exc))
        assert results[0] == results[1], (op, args, kw, results)

    @rule(
        back=st.integers(0, 6),
        n=st.integers(0, 8),
        term=st.integers(1, 4),
        size=st.integers(0, 90),
    )
    def append(self, back: int, n: int, term: int, size: int) -> None:
        start = max(self.model.first_index(), self.model.last_index() + 1 - back)
        batch = [LogRecord(index=start + k, term=term, kind=k % 3, data=b"d" * size) for k in
                 range(n)]
        self._both("append", batch)

    @rule(back=st.integers(-1, 8))
    def truncate(self, back: int) -> None:
        self._both("truncate_suffix", self.model.last_index() + 1 - back)

    @rule(ahead=st.integers(-2, 8), term=st.integers(1, 9))
    def compact(self, ahead: int, term: int) -> None:
        upto = self.model.first_index() + ahead
        if upto <= self.model.last_index():
            self._both("compact_prefix", upto)
        else:
            self._both("compact_prefix", upto, term=term)

    @rule()
    def reopen(self) -> None:
        self.file.close()
        self.file = self._open()

    @rule(lo=st.integers(0, 40), width=st.integers(0, 12), max_bytes=st.none() | st.integers(0, 200))
    def read_range(self, lo: int, width: int, max_bytes: int | None) -> None:
        got: list[object] = []
        for store in (self.model, self.file):
            try:
                got.append(store.get_range(lo, lo + width, max_bytes=max_bytes))
            except Exception as exc:  # noqa: BLE001
                got.append(type(exc))
        assert got[0] == got[1]

    @invariant()
    def same_state(self) -> None:
        m, f = self.model, self.file
        assert (m.first_index(), m.last_index(), m.compacted_term()) == (
            f.first_index(), f.last_index(), f.compacted_term())

    @precondition(lambda self: self.model.last_index() >= self.model.first_index())
    @invariant()
    def same_records(self) -> None:
        assert contents(self.model) == contents(self.file)

    def teardown(self) -> None:
        self.file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


FileMatchesMemory.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFileMatchesMemory = FileMatchesMemory.TestCase


def test_protocol_is_satisfied(log_harness: Harness[LogStore]) -> None:
    assert isinstance(log_harness.store, LogStore)
