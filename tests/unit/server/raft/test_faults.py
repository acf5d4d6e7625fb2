"""The test-only fault hook (lictor.server.raft.faults): off unless enabled, refuses the lying
mode outside the broken build, fails fsyncs so the log store refuses to acknowledge, and moves
the Raft clock (jump forward/back, rate) while staying monotonic."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import time
from pathlib import Path

import pytest

from lictor.server.raft import faults
from lictor.server.raft.filestore import FileLogStore
from lictor.server.raft.logstore import LogRecord, StoreFailedError


def _ask(path: Path, req: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            buf += s.recv(4096)
    return dict(json.loads(buf))


def _sock(tmp_path: Path) -> Path:
    # sun_path is 108 bytes: pytest's tmp_path can be longer
    return Path(f"/tmp/lch-test-{os.getpid()}-{tmp_path.name[-20:]}.sock")


def test_not_installed_without_the_flag(tmp_path: Path) -> None:
    path = _sock(tmp_path)
    assert faults.installed({}) is None
    # a socket path alone is refused: no listener appears
    assert faults.installed({faults.ENV_SOCKET: str(path)}) is None
    assert not path.exists()
    assert faults.installed({faults.ENV_ENABLE: "1"}) is None  # no socket, no hook


def test_control_socket_arms_and_refuses_lying_outside_broken_build(tmp_path: Path) -> None:
    path = _sock(tmp_path)
    try:
        hook = faults.installed({faults.ENV_ENABLE: "1", faults.ENV_SOCKET: str(path)})
        assert hook is not None and path.exists()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert _ask(path, {"op": "status"})["fsync_mode"] == "ok"
        refused = _ask(path, {"op": "fsync", "mode": "lie"})
        assert refused["ok"] is False and "broken" in str(refused["error"])
        assert hook.fsync_mode == "ok"
        assert _ask(path, {"op": "fsync", "mode": "eio"})["fsync_mode"] == "eio"
        assert hook.fsync_mode == "eio"
        bad = _ask(path, {"op": "nonsense"})
        assert bad["ok"] is False and "unknown op" in str(bad["error"])
        assert _ask(path, {"op": "fsync", "mode": "ok"})["ok"] is True
    finally:
        path.unlink(missing_ok=True)


def test_broken_build_allows_lying_fsync(tmp_path: Path) -> None:
    path = _sock(tmp_path)
    try:
        hook = faults.installed({faults.ENV_ENABLE: "broken", faults.ENV_SOCKET: str(path)})
        assert hook is not None
        assert _ask(path, {"op": "fsync", "mode": "lie"})["fsync_mode"] == "lie"
        fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY)
        try:
            hook.fsync(fd)
        finally:
            os.close(fd)
        assert hook.fsync_lied == 1
    finally:
        path.unlink(missing_ok=True)


def _rec(i: int) -> LogRecord:
    return LogRecord(index=i, term=1, kind=0, data=b"x" * 10)


def test_failing_fsync_makes_the_log_store_refuse_to_acknowledge(tmp_path: Path) -> None:
    hook = faults.FaultHook()
    store = FileLogStore(tmp_path / "log", fsync=hook.fsync)
    store.append([_rec(1)])
    hook.fsync_mode = "eio"
    with pytest.raises(StoreFailedError, match="injected by the chaos fault hook"):
        store.append([_rec(2)])
    assert hook.fsync_failed >= 1
    hook.fsync_mode = "ok"  # the disk recovers: the store stays poisoned (no false durability)
    with pytest.raises(StoreFailedError, match="failed earlier"):
        store.append([_rec(3)])
    store.close()


def test_failing_fsync_fails_group_commit_waiters(tmp_path: Path) -> None:
    async def go() -> None:
        hook = faults.FaultHook()
        store = FileLogStore(tmp_path / "log", fsync=hook.fsync)
        hook.fsync_mode = "eio"
        fut = store.append_async([_rec(1)])
        with pytest.raises(StoreFailedError):
            await fut
        store.close()

    asyncio.run(go())


def test_eio_is_a_real_oserror() -> None:
    hook = faults.FaultHook()
    hook.fsync_mode = "eio"
    with pytest.raises(OSError) as ei:
        hook.fsync(0)
    assert ei.value.errno == errno.EIO


def test_clock_jumps_forward_freezes_back_and_skews() -> None:
    hook = faults.FaultHook()
    r0 = time.monotonic()
    v0 = hook.now(r0)
    hook.jump(60.0)
    assert hook.now(r0) == pytest.approx(v0 + 60.0)
    hook.jump(-100.0)  # back: the clock stands still (monotonic) until real time catches up
    assert hook.now(r0 + 1.0) == pytest.approx(v0 + 60.0)
    assert hook.now(r0 + 50.0) == pytest.approx(v0 + 60.0)
    assert hook.now(r0 + 45.0) == pytest.approx(v0 + 60.0)  # never backwards
    assert hook.now(r0 + 41.0 + 60.0) == pytest.approx(v0 + 61.0)
    with pytest.raises(ValueError):
        hook.set_rate(0)


def test_clock_rate_speeds_up_fault_clock_sleeps() -> None:
    async def go() -> float:
        hook = faults.FaultHook()
        hook.set_rate(4.0)
        clock = faults.FaultClock(hook)
        t = time.monotonic()
        v = clock.monotonic()
        await clock.sleep(0.8)
        assert clock.monotonic() - v >= 0.8
        return time.monotonic() - t

    took = asyncio.run(go())
    assert took < 0.6  # 0.8 s of a 4x clock is 0.2 s of real time (generous bound: loaded box)
