"""File-store specifics: durability proven by counting fsyncs, crash recovery, corruption.

fsync costs ~0.15 ms on this disk, so timing cannot show whether a store syncs. Every file
store takes an ``fsync`` seam; ``SyncRecorder`` wraps the real ``os.fsync`` and records, for each
call, which path the descriptor points at and how large the file was, so a test can assert
"append returned only after an fsync covering its bytes".
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from lictor.server.raft.filestore import (
    FRAME_HEADER_SIZE,
    FileLogStore,
    FileSnapshotStore,
    FileStableStore,
    encode_record,
)
from lictor.server.raft.logstore import (
    HardStateRecord,
    LogCorruptionError,
    LogRecord,
    SnapshotCorruptionError,
    StableStoreCorruptionError,
    StoreFailedError,
)

# ------------------------------------------------------------------------------------ helpers


@dataclass(frozen=True, slots=True)
class SyncCall:
    path: str
    size: int
    is_dir: bool


class SyncRecorder:
    """An ``fsync`` seam that really syncs and records what it synced.

    Each call is recorded when the fsync *completes*, with the file size seen when it *began*
    (bytes present at the start are certainly covered): a conservative "durable up to" mark.
    With ``gate``, every call first sets ``in_flight`` and blocks until the gate opens, so a test
    can hold an fsync in flight. ``fail_with`` makes calls raise instead.
    """

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[SyncCall] = []
        self.fail_with: OSError | None = None
        self.gate = gate
        self.in_flight = threading.Event()

    def __call__(self, fd: int) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        st = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        if self.gate is not None:
            self.in_flight.set()
            assert self.gate.wait(timeout=10)
        os.fsync(fd)
        self.calls.append(SyncCall(path, st.st_size, stat.S_ISDIR(st.st_mode)))

    def files(self, since: int = 0) -> list[SyncCall]:
        return [c for c in self.calls[since:] if not c.is_dir]

    def dirs(self, since: int = 0) -> list[SyncCall]:
        return [c for c in self.calls[since:] if c.is_dir]


def rec(index: int, term: int = 1, size: int = 30) -> LogRecord:
    return LogRecord(index=index, term=term, kind=0, data=bytes([index % 251]) * size)


def recs(lo: int, hi: int, term: int = 1, size: int = 30) -> list[LogRecord]:
    return [rec(i, term, size) for i in range(lo, hi + 1)]


FRAME = FRAME_HEADER_SIZE + 30  # on-disk size of rec(i)


def all_records(store: FileLogStore) -> list[LogRecord]:
    return store.get_range(store.first_index(), store.last_index() + 1)


def write_log(path: Path, records: list[LogRecord], *, segment_bytes: int = 1 << 26) -> list[Path]:
    store = FileLogStore(path, segment_bytes=segment_bytes)
    store.append(records)
    segs = store.segment_paths()
    store.close()
    return segs


# ======================================================================== log: durability


def test_append_returns_only_after_fsync_covering_its_bytes(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, fsync=sync)
    store.append(recs(1, 3))
    (seg,) = store.segment_paths()
    # The first append created the segment: its data and its directory entry are synced.
    assert [c.size for c in sync.files() if c.path == str(seg)] == [3 * FRAME]
    assert [c.path for c in sync.dirs()] == [str(tmp_path)]
    for n in range(4, 8):
        before = len(sync.calls)
        store.append([rec(n)])
        assert sync.calls[before:] == [SyncCall(str(seg), n * FRAME, False)]
    store.close()


def test_truncate_and_overwrite_sync_before_returning(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, fsync=sync)
    store.append(recs(1, 10))
    (seg,) = store.segment_paths()
    before = len(sync.calls)
    store.truncate_suffix(8)
    assert sync.calls[before:] == [SyncCall(str(seg), 7 * FRAME, False)]
    before = len(sync.calls)
    store.append(recs(5, 6, term=2))
    # The truncation is synced before the new records are written, then the records.
    assert [c.size for c in sync.calls[before:]] == [4 * FRAME, 6 * FRAME]
    store.close()


def test_rotation_seals_old_segment_before_writing_the_next(tmp_path: Path) -> None:
    sync = SyncRecorder()
    listing_at_sync: dict[str, list[str]] = {}

    def fsync(fd: int) -> None:
        sync(fd)
        listing_at_sync.setdefault(sync.calls[-1].path, sorted(os.listdir(tmp_path)))

    store = FileLogStore(tmp_path, segment_bytes=3 * FRAME, fsync=fsync)
    store.append(recs(1, 7))
    segs = [str(p) for p in store.segment_paths()]
    names = [Path(p).name for p in segs]
    assert names == [f"{i:020d}.seg" for i in (1, 4, 7)]
    assert [os.path.getsize(p) for p in segs] == [3 * FRAME, 3 * FRAME, FRAME]
    files = sync.files()
    # Each full segment is fsynced at its final size before the next one even exists, so only
    # the last segment can ever hold a torn tail; the last one is synced before append returns.
    assert files[0] == SyncCall(segs[0], 3 * FRAME, False)
    assert listing_at_sync[segs[0]] == names[:1]
    assert files[1] == SyncCall(segs[1], 3 * FRAME, False)
    assert listing_at_sync[segs[1]] == names[:2]
    assert files[2:] == [SyncCall(segs[2], FRAME, False)]
    # Each new segment's directory entry is synced before the one after it is created.
    assert [c.path for c in sync.dirs()] == [str(tmp_path)] * 3
    assert listing_at_sync[str(tmp_path)] == names[:1]
    store.close()


def test_compaction_writes_meta_atomically(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, segment_bytes=3 * FRAME, fsync=sync)
    store.append(recs(1, 7))
    before = len(sync.calls)
    store.compact_prefix(5)
    calls = sync.calls[before:]
    assert calls[0].path == str(tmp_path / "log.meta.tmp") and not calls[0].is_dir
    assert calls[1] == SyncCall(str(tmp_path), calls[1].size, True)  # rename made durable
    assert calls[-1].is_dir  # deletion of 00..01.seg
    assert [p.name for p in store.segment_paths()] == [f"{4:020d}.seg", f"{7:020d}.seg"]
    store.close()


async def test_group_commit_shares_one_fsync_between_concurrent_appends(tmp_path: Path) -> None:
    """While one fsync is in flight, 63 more appends arrive; they share the next single fsync,
    and none of them completes before an fsync covering its bytes."""
    gate = threading.Event()
    sync = SyncRecorder(gate)

    completed_at: dict[int, int] = {}  # record index -> synced segment bytes when it completed

    def covered_bytes() -> int:
        return max((c.size for c in sync.files()), default=0)

    with ThreadPoolExecutor(max_workers=1) as pool:
        store = FileLogStore(tmp_path, fsync=sync, executor=pool)
        futures = []
        for i in range(1, 65):
            fut = store.append_async([rec(i)])
            fut.add_done_callback(lambda _f, i=i: completed_at.setdefault(i, covered_bytes()))
            futures.append(fut)
            if i == 1:
                # Let the flusher start its fsync (blocked on the gate) before the others arrive.
                await asyncio.get_running_loop().run_in_executor(None, sync.in_flight.wait)
        assert not any(f.done() for f in futures)
        assert store.last_index() == 64  # the loop kept running while fsync blocked
        gate.set()
        await asyncio.gather(*futures)
        store.close()

    seg = str(tmp_path / f"{1:020d}.seg")
    assert [c.size for c in sync.files()] == [FRAME, 64 * FRAME]  # 2 fsyncs for 64 appends
    assert [c.path for c in sync.files()] == [seg, seg]
    for i, covered in completed_at.items():
        assert covered >= i * FRAME, f"append {i} completed before its bytes were synced"
    assert len(completed_at) == 64


async def test_awaited_appends_each_get_their_own_fsync(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, fsync=sync)
    for i in range(1, 6):
        await store.append_async([rec(i)])
        assert sync.files()[-1].size == i * FRAME
    assert len(sync.files()) == 5
    store.close()


async def test_many_concurrent_appenders_issue_far_fewer_fsyncs(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, fsync=sync)
    next_index = iter(range(1, 10_000))

    async def appender() -> None:
        for _ in range(4):
            await store.append_async([rec(next(next_index))])

    await asyncio.gather(*(appender() for _ in range(256)))
    assert store.last_index() == 1024
    assert len(sync.files()) <= 16, len(sync.files())  # ~1 per wave, not 1024
    assert sync.files()[-1].size == 1024 * FRAME
    store.close()
    assert all_records(FileLogStore(tmp_path)) == recs(1, 1024)


async def test_fsync_failure_fails_waiters_and_poisons_the_store(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, fsync=sync)
    store.append(recs(1, 2))
    sync.fail_with = OSError(errno.EIO, "injected EIO")
    futures = [store.append_async([rec(i)]) for i in (3, 4)]
    for fut in futures:
        with pytest.raises(StoreFailedError, match="EIO"):
            await fut
    with pytest.raises(StoreFailedError, match="failed earlier"):
        store.get(1)
    with pytest.raises(StoreFailedError, match="failed earlier"):
        store.append([rec(5)])
    store.close()
    reopened = FileLogStore(tmp_path)  # recovery from disk works
    assert reopened.get_range(1, 3) == recs(1, 2)
    reopened.close()


def test_sync_append_fsync_failure_raises_and_poisons(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, fsync=sync)
    sync.fail_with = OSError(errno.EIO, "injected EIO")
    with pytest.raises(StoreFailedError):
        store.append(recs(1, 2))
    sync.fail_with = None
    with pytest.raises(StoreFailedError, match="failed earlier"):
        store.append([rec(3)])
    store.close()


async def test_close_acknowledges_pending_appends(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileLogStore(tmp_path, fsync=sync)
    fut = store.append_async(recs(1, 3))
    store.close()  # before the flusher ever ran
    assert fut.done() and fut.exception() is None
    assert sync.files()[-1].size == 3 * FRAME


# ======================================================================== log: recovery


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_torn_tail_at_every_byte_of_last_record_is_truncated(tmp_path: Path, damage: str) -> None:
    (seg,) = write_log(tmp_path / "orig", recs(1, 5))
    original = seg.read_bytes()
    start = 4 * FRAME
    assert len(original) == 5 * FRAME
    for offset in range(start, len(original)):
        d = tmp_path / f"case{offset}"
        shutil.copytree(seg.parent, d)
        if damage == "cut":
            torn = original[:offset]
        else:
            torn = original[:offset] + bytes([original[offset] ^ 0x40]) + original[offset + 1 :]
        (d / seg.name).write_bytes(torn)
        with capture_logs() as logs:
            store = FileLogStore(d)
        assert all_records(store) == recs(1, 4), offset
        assert (d / seg.name).stat().st_size == start
        if len(torn) > start:
            assert [e["event"] for e in logs] == ["truncated torn tail of raft log"]
            assert logs[0]["index"] == 5 and logs[0]["offset"] == start
        store.append([rec(5, term=2)])  # the log continues where the valid prefix ends
        store.close()
        assert all_records(FileLogStore(d)) == [*recs(1, 4), rec(5, term=2)]
        shutil.rmtree(d)


def test_torn_batch_spanning_records_and_zero_fill(tmp_path: Path) -> None:
    (seg,) = write_log(tmp_path, recs(1, 8))
    data = seg.read_bytes()
    seg.write_bytes(data[: 5 * FRAME + 7] + b"\x00" * 4096)  # record 6 half-written, zeros after
    store = FileLogStore(tmp_path)
    assert all_records(store) == recs(1, 5)
    store.close()


@pytest.mark.parametrize("offset_in_record", range(FRAME))
def test_flipped_byte_in_a_middle_record_refuses_to_open(
    tmp_path: Path, offset_in_record: int
) -> None:
    (seg,) = write_log(tmp_path, recs(1, 5))
    data = bytearray(seg.read_bytes())
    data[2 * FRAME + offset_in_record] ^= 0x01
    seg.write_bytes(data)
    with pytest.raises(LogCorruptionError) as err:
        FileLogStore(tmp_path)
    assert str(seg) in str(err.value)
    assert "index 3" in str(err.value)
    assert err.value.offset == 2 * FRAME and err.value.index == 3


def test_bad_tail_of_a_sealed_segment_refuses(tmp_path: Path) -> None:
    segs = write_log(tmp_path, recs(1, 7), segment_bytes=3 * FRAME)
    segs[0].write_bytes(segs[0].read_bytes()[:-5])
    with pytest.raises(LogCorruptionError, match="sealed segment") as err:
        FileLogStore(tmp_path)
    assert str(segs[0]) in str(err.value) and err.value.index == 3


def test_missing_middle_segment_refuses(tmp_path: Path) -> None:
    segs = write_log(tmp_path, recs(1, 9), segment_bytes=3 * FRAME)
    segs[1].unlink()
    with pytest.raises(LogCorruptionError, match="missing segment") as err:
        FileLogStore(tmp_path)
    assert err.value.index == 4 and str(segs[2]) in str(err.value)


def test_missing_first_segment_refuses(tmp_path: Path) -> None:
    segs = write_log(tmp_path, recs(1, 9), segment_bytes=3 * FRAME)
    segs[0].unlink()
    with pytest.raises(LogCorruptionError, match="missing segment") as err:
        FileLogStore(tmp_path)
    assert err.value.index == 1


def test_index_discontinuity_refuses(tmp_path: Path) -> None:
    (seg,) = write_log(tmp_path, recs(1, 3))
    seg.write_bytes(seg.read_bytes() + encode_record(rec(5)))
    with pytest.raises(LogCorruptionError, match="discontinuity") as err:
        FileLogStore(tmp_path)
    assert err.value.index == 4 and err.value.offset == 3 * FRAME


def test_segment_name_must_match_its_first_record(tmp_path: Path) -> None:
    (seg,) = write_log(tmp_path, recs(1, 3))
    seg.rename(tmp_path / f"{2:020d}.seg")
    (tmp_path / "log.meta").write_bytes(b"")  # and the meta is garbage too
    with pytest.raises(LogCorruptionError):
        FileLogStore(tmp_path)


def test_corruption_found_on_read_after_open(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(recs(1, 3))
    (seg,) = store.segment_paths()
    with open(seg, "r+b") as f:
        f.seek(FRAME + FRAME_HEADER_SIZE + 3)
        f.write(b"?")
    assert store.get(1) == rec(1)
    with pytest.raises(LogCorruptionError, match="index 2"):
        store.get(2)
    with pytest.raises(LogCorruptionError):
        store.get_range(1, 4)
    store.close()


def test_reopen_after_compaction(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, segment_bytes=3 * FRAME)
    store.append(recs(1, 10))
    store.compact_prefix(5)  # inside the second segment [4..6]
    assert sorted(p.name for p in tmp_path.glob("*.seg")) == [
        f"{i:020d}.seg" for i in (4, 7, 10)
    ]
    store.close()
    store = FileLogStore(tmp_path, segment_bytes=3 * FRAME)
    assert (store.first_index(), store.last_index(), store.compacted_term()) == (6, 10, 1)
    assert all_records(store) == recs(6, 10)
    store.close()


def test_interrupted_compaction_is_finished_on_open(tmp_path: Path) -> None:
    segs = write_log(tmp_path, recs(1, 9), segment_bytes=3 * FRAME)
    saved = {p.name: p.read_bytes() for p in segs}
    store = FileLogStore(tmp_path, segment_bytes=3 * FRAME)
    store.compact_prefix(7)
    store.close()
    for name, data in saved.items():  # crash after log.meta, before the unlinks
        (tmp_path / name).write_bytes(data)
    store = FileLogStore(tmp_path, segment_bytes=3 * FRAME)
    assert (store.first_index(), store.last_index()) == (8, 9)
    assert [p.name for p in store.segment_paths()] == [f"{7:020d}.seg"]
    assert not (tmp_path / segs[0].name).exists()
    store.close()


def test_corrupt_meta_refuses(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    store.append(recs(1, 5))
    store.compact_prefix(2)
    store.close()
    meta = tmp_path / "log.meta"
    data = bytearray(meta.read_bytes())
    data[9] ^= 0xFF
    meta.write_bytes(data)
    with pytest.raises(LogCorruptionError, match="log meta") as err:
        FileLogStore(tmp_path)
    assert str(meta) in str(err.value)


def test_large_records_get_their_own_segment(tmp_path: Path) -> None:
    big = LogRecord(index=2, term=1, kind=1, data=os.urandom(3 * 1024 * 1024))
    records = [rec(1), big, rec(3), rec(4)]
    store = FileLogStore(tmp_path, segment_bytes=1024 * 1024)
    store.append(records)
    assert [p.name for p in store.segment_paths()] == [f"{i:020d}.seg" for i in (1, 2, 3)]
    store.close()
    store = FileLogStore(tmp_path, segment_bytes=1024 * 1024)
    assert store.get(2) == big
    assert all_records(store) == records
    assert [r.index for r in store.get_range(1, 5, max_bytes=100)] == [1]
    assert [r.index for r in store.get_range(2, 5, max_bytes=100)] == [2]
    store.close()


def test_many_segments_round_trip(tmp_path: Path) -> None:
    records = [rec(i, size=i % 97) for i in range(1, 501)]
    store = FileLogStore(tmp_path, segment_bytes=1000)
    for lo in range(0, 500, 37):
        store.append(records[lo : lo + 37])
    n_segments = len(store.segment_paths())
    store.close()
    store = FileLogStore(tmp_path, segment_bytes=1000)
    assert len(store.segment_paths()) == n_segments > 20
    assert all(p.stat().st_size <= 1000 for p in store.segment_paths())
    assert all_records(store) == records
    assert store.get_range(100, 300) == records[99:299]
    store.close()


# ======================================================================== stable store


def test_stable_save_fsyncs_temp_file_then_directory(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileStableStore(tmp_path / "stable", fsync=sync)
    store.save(3, 2, 10)
    assert [(c.path, c.is_dir) for c in sync.calls] == [
        (str(tmp_path / "stable.tmp"), False),  # data durable before the rename...
        (str(tmp_path), True),  # ...and the rename durable before save returns
    ]
    assert sync.calls[0].size == (tmp_path / "stable").stat().st_size
    store.save(3, 2, 10)
    assert len(sync.calls) == 2  # unchanged state: no I/O


def test_stable_crash_before_rename_keeps_old_state(tmp_path: Path) -> None:
    FileStableStore(tmp_path / "stable").save(4, 1, 7)
    (tmp_path / "stable.tmp").write_bytes(b"half-written new stat")
    store = FileStableStore(tmp_path / "stable")
    assert store.load() == HardStateRecord(term=4, vote=1, commit=7)
    assert not (tmp_path / "stable.tmp").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_stable_corrupt_file_refuses(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "stable"
    FileStableStore(path).save(4, 1, 7)
    data = path.read_bytes()
    path.write_bytes(
        {
            "flip": data[:-3] + bytes([data[-3] ^ 1]) + data[-2:],
            "truncate": data[:-4],
            "empty": b"",
            "garbage": b"x" * 40,
        }[damage]
    )
    with pytest.raises(StableStoreCorruptionError, match="refusing to start") as err:
        FileStableStore(path)
    assert str(path) in str(err.value)


# ======================================================================== snapshot store


def test_snapshot_create_fsyncs_data_meta_and_directories(tmp_path: Path) -> None:
    sync = SyncRecorder()
    store = FileSnapshotStore(tmp_path, fsync=sync, clock_ms=lambda: 1000)
    meta = store.create(10, 2, {"voters": [1]}, b"x" * 123)
    tmp = str(tmp_path / f"{meta.id}.tmp")
    assert [(c.path, c.is_dir) for c in sync.calls] == [
        (f"{tmp}/state.bin", False),
        (f"{tmp}/meta.json", False),
        (tmp, True),
        (str(tmp_path), True),
    ]
    assert sync.calls[0].size == 123


def test_snapshot_retain_prunes_with_a_directory_fsync(tmp_path: Path) -> None:
    sync = SyncRecorder()
    ms = iter(range(1000, 2000))
    store = FileSnapshotStore(tmp_path, fsync=sync, clock_ms=lambda: next(ms))
    for i in range(1, 4):
        store.create(i, 1, {}, b"s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1-2-1001", "1-3-1002"]
    assert sync.calls[-1] == SyncCall(str(tmp_path), sync.calls[-1].size, True)


def corrupt_state(store: FileSnapshotStore, sid: str) -> None:
    state = store.directory / sid / "state.bin"
    data = bytearray(state.read_bytes())
    data[0] ^= 0xFF
    state.write_bytes(data)


def test_corrupt_latest_snapshot_falls_back_to_previous(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    old = store.create(10, 1, {}, b"old state")
    new = store.create(20, 1, {}, b"new state")
    corrupt_state(store, new.id)
    with capture_logs() as logs:
        got = store.latest()
    assert got is not None
    meta, reader = got
    with reader:
        assert (meta, reader.read()) == (old, b"old state")
    assert [(e["event"], e["id"]) for e in logs] == [("skipping corrupt snapshot", new.id)]
    with pytest.raises(SnapshotCorruptionError, match="sha256"):
        store.open(new.id)
    corrupt_state(store, old.id)
    assert store.latest() is None


def test_snapshot_with_bad_meta_or_size_is_skipped(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    a = store.create(10, 1, {}, b"aaaa")
    b = store.create(20, 1, {}, b"bbbb")
    (tmp_path / b.id / "meta.json").write_text("{not json")
    assert store.list() == [a]
    meta_a = json.loads((tmp_path / a.id / "meta.json").read_text())
    (tmp_path / a.id / "state.bin").write_bytes(b"aaaaa")  # size no longer matches
    assert meta_a["size"] == 4
    with capture_logs() as logs:
        assert store.list() == []
    assert len(logs) == 2


def test_unfinished_snapshot_is_removed_on_open(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    done = store.create(10, 1, {}, b"done")
    sink = store.sink(20, 1, {})
    sink.write(b"half")  # crash: never committed
    assert store.list() == [done]
    assert len(list(tmp_path.glob("*.tmp"))) == 1
    reopened = FileSnapshotStore(tmp_path)
    assert list(tmp_path.glob("*.tmp")) == []
    assert reopened.list() == [done]
    sink.abort()  # the "crashed" writer's file handle


def test_storage_errors_are_lictor_errors() -> None:
    from lictor.common.errors import LictorError

    for exc in (LogCorruptionError, StableStoreCorruptionError, SnapshotCorruptionError,
                StoreFailedError):
        assert issubclass(exc, LictorError)
