"""Self-tests of the fault expectations: a system under test that misbehaves after a disk or
membership fault (starts on a corrupt log, keeps no torn-tail log line, never rejoins, stays in
Raft after leaving) must be reported by the nemesis, so the run is invalid.

The system here is a fake of the process layer only (no processes, no sockets); the data
directories hold a real Lictor log written by the real store, and the corrupt-middle case checks
the real store's refusal text against what the nemesis looks for."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from chaos.nemesis import Nemesis
from lictor.server.raft.filestore import FileLogStore
from lictor.server.raft.logstore import LogCorruptionError, LogRecord


class FakeServer:
    def __init__(self, index: int, workdir: Path) -> None:
        self.index = index
        self.name = f"s{index + 1}"
        self.workdir = workdir
        self.paused = False
        self.up = True

    def alive(self) -> bool:
        return self.up


class FakeNet:
    supports_partitions = True

    def addr(self, i: int) -> str:
        return f"10.0.0.{i + 1}"

    def cut(self, pairs: Any) -> None:
        pass

    def heal(self) -> None:
        pass


class FakeSystem:
    """Behaves like a Lictor cluster, except for the misbehaviour a test switches on."""

    supports_fault_hook = True
    server_port = 8300

    def __init__(self, root: Path, *, misbehave: str = "") -> None:
        self.servers = [FakeServer(i, root / f"s{i + 1}") for i in range(4)]
        self.servers[3].up = False  # a spare for grow
        self.initial = [0, 1, 2]
        self.members = [0, 1, 2]
        self.misbehave = misbehave
        self.logs = {i: "" for i in range(4)}
        self.in_raft = {0: True, 1: True, 2: True, 3: False}
        self.data_dir(3).mkdir(parents=True)
        for s in self.servers[:3]:
            store = FileLogStore(self.data_dir(s.index) / "raft" / "log")
            store.append([LogRecord(index=k, term=1, kind=0, data=b"payload" * 3) for k in range(1, 41)])
            store.close()

    def data_dir(self, i: int) -> Path:
        return self.servers[i].workdir / "data"

    def fault_socket(self, i: int) -> Path:
        return Path("/nonexistent")

    def leader(self) -> int | None:
        return 0

    def wait_leader(self, timeout: float = 0) -> int | None:
        return 0

    def kill(self, i: int) -> None:
        self.servers[i].up = False

    def start(self, i: int) -> None:
        """Open the real log store as the server would: refuse a corrupt log, log a torn tail."""
        self.servers[i].up = True
        log_dir = self.data_dir(i) / "raft" / "log"
        if not log_dir.exists():
            self.in_raft[i] = self.misbehave != "never-rejoins"
            return
        torn = b"" if not log_dir.exists() else max(log_dir.glob("*.seg")).read_bytes()
        try:
            FileLogStore(log_dir).close()
        except LogCorruptionError as exc:
            if self.misbehave != "starts-on-corrupt-log":
                self.logs[i] += f"{exc}\n"
                self.servers[i].up = False
                return
        if self.misbehave != "silent-torn-tail" and len(max(log_dir.glob("*.seg")).read_bytes()) < len(torn):
            self.logs[i] += "truncated torn tail of raft log\n"
        self.in_raft[i] = self.misbehave != "never-rejoins"

    def wait_exit(self, i: int, timeout: float) -> int | None:
        return None if self.servers[i].up else 1

    def wait_responsive(self, i: int, timeout: float = 0) -> bool:
        return self.servers[i].up

    def log_size(self, i: int) -> int:
        return len(self.logs[i])

    def log_since(self, i: int, offset: int) -> str:
        return self.logs[i][offset:]

    def knows_leader(self, i: int) -> bool:
        return self.servers[i].up

    def raft_servers(self, via: int) -> list[dict[str, Any]]:
        return [{"Address": f"10.0.0.{i + 1}:8300", "Voter": True} for i, v in self.in_raft.items() if v]

    def remove_peer(self, via: int, i: int) -> bool:
        self.in_raft[i] = False
        return True

    def leave(self, i: int) -> bool:
        self.servers[i].up = False
        if self.misbehave != "stays-in-raft":
            self.in_raft[i] = False
        return True


def _nemesis(system: FakeSystem, kind: str) -> Nemesis:
    t = [0.0]

    def now() -> float:
        t[0] += 0.01
        return t[0]

    nem = Nemesis(system, FakeNet(), [kind], seed=3, now=now, log=lambda _m: None)  # type: ignore[arg-type]
    nem._sleep = lambda s: None  # type: ignore[method-assign]
    nem.rng = random.Random(3)
    nem.patience = 0.02
    return nem


def _run(tmp_path: Path, kind: str, misbehave: str = "") -> Nemesis:
    system = FakeSystem(tmp_path, misbehave=misbehave if kind != "shrink" else "")
    nem = _nemesis(system, kind)
    if kind == "shrink":  # shrink removes what grow added
        nem._grow()
        system.misbehave = misbehave
    getattr(nem, "_" + kind.replace("-", "_"))()
    return nem


@pytest.mark.parametrize(("kind", "misbehave", "what"), [
    ("corrupt-middle", "starts-on-corrupt-log", "refuses to start, naming file, offset and index"),
    ("torn-tail", "silent-torn-tail", "torn tail truncated with a log line"),
    ("replace-server", "never-rejoins", "new server added as a voter"),
    ("leave-rejoin", "stays-in-raft", "a gracefully leaving server leaves Raft"),
    ("grow", "never-rejoins", "new server added as a voter"),
    ("shrink", "stays-in-raft", "a gracefully leaving server leaves Raft"),
])
def test_misbehaving_server_fails_the_fault_expectations(tmp_path: Path, kind: str, misbehave: str,
                                                         what: str) -> None:
    good = _run(tmp_path / "good", kind)
    assert good.expect_failures == [], good.expect_failures
    assert good.faults and good.faults[-1].kind == kind
    bad = _run(tmp_path / "bad", kind, misbehave)
    assert any(what in f for f in bad.expect_failures), bad.expect_failures


def test_corrupt_middle_names_file_offset_and_index_from_the_real_store(tmp_path: Path) -> None:
    nem = _run(tmp_path, "corrupt-middle")
    d = nem.faults[0].detail
    assert d["corrupted"] and d["exit_code"] == 1 and d["wiped"] and d["rejoined"]
    assert d["expected"] == {"refuses to start, naming file, offset and index": True,
                             "rejoins (empty) and catches up": True}


def test_grow_then_shrink_changes_the_membership(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path)
    nem = _nemesis(system, "grow")
    nem._grow()
    assert system.members == [0, 1, 2, 3] and nem.faults[-1].detail["size"] == 4
    nem._grow()  # no spare left: skipped, not a fault
    assert nem.skipped == {"grow": 1} and len(nem.faults) == 1
    nem._shrink()
    assert system.members == [0, 1, 2] and nem.faults[-1].detail["left_raft"] is True
    assert not any(system.data_dir(3).iterdir())  # wiped: a later grow adds a new server
    nem._shrink()  # never below the initial size
    assert nem.skipped == {"grow": 1, "shrink": 1} and nem.expect_failures == []
