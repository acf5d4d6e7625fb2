"""The file-level fault helpers of chaos/faults.py against Lictor's real log store, and the
per-fault availability metric on synthetic histories."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chaos import faults
from chaos.checkers import availability, fault_key
from chaos.history import KV, Op
from lictor.server.raft.filestore import FileLogStore
from lictor.server.raft.logstore import LogCorruptionError, LogRecord


def _log(data_dir: Path, n: int, *, segment_bytes: int = 1 << 20) -> None:
    store = FileLogStore(faults.raft_log_dir(data_dir), segment_bytes=segment_bytes)
    store.append([LogRecord(index=i, term=1, kind=0, data=f"entry-{i}".encode() * 4)
                  for i in range(1, n + 1)])
    store.close()


def test_records_parses_the_store_format(tmp_path: Path) -> None:
    _log(tmp_path, 20)
    (seg,) = sorted(faults.raft_log_dir(tmp_path).glob("*.seg"))
    recs = faults.records(seg)
    assert [r[1] for r in recs] == list(range(1, 21))
    assert recs[0][0] == 0 and recs[1][0] == recs[0][2]


def test_torn_tail_is_truncated_by_the_store(tmp_path: Path) -> None:
    _log(tmp_path, 20)
    torn = faults.tear_last_segment(tmp_path)
    assert torn["torn"] and torn["index"] == 21
    store = FileLogStore(faults.raft_log_dir(tmp_path))
    try:
        assert store.last_index() == 20  # the half frame is gone, every whole record kept
    finally:
        store.close()


def test_corrupt_middle_record_makes_the_store_refuse_naming_file_offset_index(tmp_path: Path) -> None:
    _log(tmp_path, 40)
    bad = faults.corrupt_middle_record(tmp_path, random.Random(1))
    assert bad["corrupted"] and 1 < bad["index"] < 40
    with pytest.raises(LogCorruptionError) as ei:
        FileLogStore(faults.raft_log_dir(tmp_path))
    msg = str(ei.value)
    # exactly what the nemesis looks for in the server log
    assert bad["file"] in msg and f"offset {bad['offset']}" in msg and f"(index {bad['index']})" in msg


def test_corrupt_middle_in_a_sealed_segment(tmp_path: Path) -> None:
    _log(tmp_path, 60, segment_bytes=600)
    assert len(list(faults.raft_log_dir(tmp_path).glob("*.seg"))) > 3
    bad = faults.corrupt_middle_record(tmp_path, random.Random(2))
    with pytest.raises(LogCorruptionError, match=f"index {bad['index']}"):
        FileLogStore(faults.raft_log_dir(tmp_path))


def test_power_loss_undoes_everything_written_since_capture(tmp_path: Path) -> None:
    _log(tmp_path, 10, segment_bytes=400)
    raft = tmp_path / "raft"
    (raft / "stable").write_bytes(b"term=1")
    state = faults.DiskState.capture(tmp_path)
    before = {p: p.read_bytes() for p in raft.rglob("*") if p.is_file()}
    store = FileLogStore(faults.raft_log_dir(tmp_path), segment_bytes=400)
    store.append([LogRecord(index=i, term=2, kind=0, data=b"late" * 8) for i in range(11, 30)])
    store.close()
    (raft / "stable").write_bytes(b"term=2")
    (raft / "snapshots" / "2-29-1").mkdir(parents=True)
    (raft / "snapshots" / "2-29-1" / "meta.json").write_text("{}")
    undone = faults.DiskState.power_loss(state)
    assert undone["files_removed"] >= 2 and undone["files_restored"] == 1
    after = {p: p.read_bytes() for p in raft.rglob("*") if p.is_file()}
    assert after == before
    store = FileLogStore(faults.raft_log_dir(tmp_path), segment_bytes=400)
    try:
        assert store.last_index() == 10
    finally:
        store.close()


def test_fill_and_clear_disk(tmp_path: Path) -> None:
    # not a tmpfs here: only the clear path and the file name are exercised
    (tmp_path / faults.FILL_NAME).write_bytes(b"x")
    faults.clear_disk(tmp_path)
    assert not (tmp_path / faults.FILL_NAME).exists()


def _op(i: int, f: str, call: float, ret: float, status: str = "ok") -> Op:
    return Op(id=i, process=0, node=0, kind=KV, key="k", f=f, value="v" if f != "read" else None,
              call=call, ret=ret, status=status, output=None)


def test_availability_per_fault_kind() -> None:
    h = [_op(0, "write", 0.0, 0.1), _op(1, "write", 1.0, 1.1),
         # a fault from 2 to 4: two timeouts, one read ok, no write acknowledged until 5.5
         _op(2, "write", 2.0, 6.0, "info"), _op(3, "read", 2.5, 2.6), _op(4, "cas", 3.0, 7.0, "info"),
         _op(5, "write", 5.4, 5.5), _op(6, "write", 6.0, 6.1), _op(7, "write", 7.0, 7.1)]
    a = availability(h, [("disk-full", 2.0, 4.0)], end=8.0)
    assert a["disk-full"]["ops"] == 3 and a["disk-full"]["acked"] == 1
    assert a["disk-full"]["acked_share"] == pytest.approx(1 / 3, abs=1e-3)
    # the gap 1.1 -> 5.5 touches the window: recovery after it counts
    assert a["disk-full"]["longest_write_unavailability_s"] == pytest.approx(4.4)
    assert a["none"]["ops"] == 5 and a["none"]["acked"] == 5
    # outside the window: 0.1 -> 1.1 and 6.1 -> 7.1 are the longest gaps
    assert a["none"]["longest_write_unavailability_s"] == pytest.approx(1.0)


def test_fault_key_counts_leader_kills_separately() -> None:
    assert fault_key("kill", {"leader": True}) == "kill-leader"
    assert fault_key("kill", {"leader": False}) == "kill"
    assert fault_key("disk-full", {"leader": True}) == "disk-full"
