"""SnapshotStore conformance: MemorySnapshotStore and FileSnapshotStore behave the same."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

from lictor.server.raft.logstore import (
    SnapshotMeta,
    SnapshotNotFoundError,
    SnapshotStore,
    StorageError,
)

from .conftest import Harness

CONF = {"voters": [1, 2, 3], "learners": []}


def read_latest(store: SnapshotStore) -> tuple[SnapshotMeta, bytes]:
    got = store.latest()
    assert got is not None
    meta, reader = got
    with reader:
        return meta, reader.read()


def test_empty_store(snapshot_harness: Harness[SnapshotStore]) -> None:
    s = snapshot_harness.store
    assert s.latest() is None
    assert s.list() == []
    with pytest.raises(SnapshotNotFoundError):
        s.open("1-1-1")


def test_create_then_latest_and_open(snapshot_harness: Harness[SnapshotStore]) -> None:
    s = snapshot_harness.store
    meta = s.create(10, 2, CONF, b"state at 10")
    assert (meta.index, meta.term, meta.size) == (10, 2, len(b"state at 10"))
    assert meta.id == f"2-10-{meta.created_ms}"
    assert meta.conf_state == CONF
    assert read_latest(s) == (meta, b"state at 10")
    opened, reader = s.open(meta.id)
    with reader:
        assert (opened, reader.read()) == (meta, b"state at 10")
    assert read_latest(snapshot_harness.reopen()) == (meta, b"state at 10")


@pytest.mark.parametrize(
    ("make_payload", "expected"),
    [
        (lambda: b"", b""),
        (lambda: b"abc" * 1000, b"abc" * 1000),
        (lambda: io.BytesIO(b"from a file object"), b"from a file object"),
        (lambda: iter([b"chunk1", b"", b"chunk2"]), b"chunk1chunk2"),
    ],
    ids=["empty", "bytes", "fileobj", "chunks"],
)
def test_create_accepts_bytes_files_and_chunks(
    snapshot_harness: Harness[SnapshotStore], make_payload: Callable[[], Any], expected: bytes
) -> None:
    snapshot_harness.store.create(1, 1, {}, make_payload())
    assert read_latest(snapshot_harness.store)[1] == expected


def test_keeps_last_two_newest_first(snapshot_harness: Harness[SnapshotStore]) -> None:
    s = snapshot_harness.store
    metas = [s.create(i * 10, 1 + i // 2, CONF, f"s{i}".encode()) for i in range(1, 5)]
    assert s.list() == [metas[3], metas[2]]
    with pytest.raises(SnapshotNotFoundError):
        s.open(metas[0].id)
    assert read_latest(s) == (metas[3], b"s4")
    assert snapshot_harness.reopen().list() == [metas[3], metas[2]]


def test_same_index_and_term_get_distinct_ids(snapshot_harness: Harness[SnapshotStore]) -> None:
    s = snapshot_harness.store
    a = s.create(5, 1, CONF, b"a")
    b = s.create(5, 1, CONF, b"b")
    assert a.id != b.id
    assert read_latest(s) == (b, b"b")


def test_streamed_sink(snapshot_harness: Harness[SnapshotStore]) -> None:
    s = snapshot_harness.store
    with s.sink(7, 3, CONF) as sink:
        assert s.list() == []
        sink.write(b"part1-")
        sink.write(b"part2")
        assert s.list() == []  # nothing is visible before commit
        meta = sink.commit()
    assert read_latest(s) == (meta, b"part1-part2")
    with pytest.raises(StorageError):
        sink.write(b"late")


def test_aborted_sink_leaves_nothing(snapshot_harness: Harness[SnapshotStore]) -> None:
    s = snapshot_harness.store
    with pytest.raises(RuntimeError), s.sink(7, 3, CONF) as sink:
        sink.write(b"half")
        raise RuntimeError("FSM persist failed")
    assert s.list() == []
    sink.abort()  # idempotent
    assert snapshot_harness.reopen().list() == []


def test_conf_state_is_copied(snapshot_harness: Harness[SnapshotStore]) -> None:
    conf = {"voters": [1, 2]}
    meta = snapshot_harness.store.create(1, 1, conf, b"")
    conf["voters"].append(3)
    assert snapshot_harness.reopen().list()[0].conf_state == {"voters": [1, 2]} == meta.conf_state


def test_protocol_is_satisfied(snapshot_harness: Harness[SnapshotStore]) -> None:
    assert isinstance(snapshot_harness.store, SnapshotStore)
