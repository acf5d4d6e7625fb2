"""Issue 18 item 19: the Raft files hold every ACL secret in plaintext, so they are private:
segments, stable state and snapshot files 0600, their directories 0700 (tightened, with a
warning, when they already exist wider)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lictor.common.fsutil import ensure_private_dir
from lictor.server.raft.filestore import FileLogStore, FileSnapshotStore, FileStableStore
from lictor.server.raft.logstore import LogRecord


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: without explicit modes files come out 0644
    yield
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_log_stable_and_snapshot_files_are_private(tmp_path: Path) -> None:
    log_dir, snap_dir = tmp_path / "raft" / "log", tmp_path / "raft" / "snapshots"
    store = FileLogStore(log_dir)
    store.append([LogRecord(index=i, term=1, kind=0, data=b"secret-%d" % i) for i in range(1, 4)])
    store.compact_prefix(2)
    store.close()
    FileStableStore(tmp_path / "raft" / "stable").save(4, 1, 7)
    FileSnapshotStore(snap_dir).create(10, 2, {"voters": [1]}, b"acl secrets")

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    dirs = [p for p in tmp_path.rglob("*") if p.is_dir() and p != tmp_path / "raft"]
    assert any(p.suffix == ".seg" for p in files) and len(files) >= 4, files
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files if mode(p) != 0o600} == {}
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in dirs if mode(p) != 0o700} == {}


def test_an_existing_wide_directory_is_tightened_with_a_warning(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "data"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    with caplog.at_level(logging.WARNING, logger="lictor.fs"):
        FileSnapshotStore(d)
    assert mode(d) == 0o700
    assert any("0o755" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lictor.fs"):
        ensure_private_dir(d)  # already private: nothing to say
    assert not caplog.records


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    with caplog.at_level(logging.WARNING, logger="lictor.fs"):
        ensure_private_dir(d)
    assert mode(d) == 0o1777 and any("shared" in r.getMessage() for r in caplog.records)
