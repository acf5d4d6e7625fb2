"""Test-only fault injection for chaos runs: failing or lying fsyncs and a shifted Raft clock.

Nothing here is active in a normal server. It is enabled only when the process starts with

* ``LICTOR_TEST_FAULTS=1`` (or ``=broken``, which additionally allows the *lying* fsync mode
  that acknowledges without syncing: the deliberately broken build the chaos self-tests use), and
* ``LICTOR_TEST_FAULT_SOCKET=<path>``: a Unix socket the fault hook listens on.

Without the first variable no socket is opened and :func:`installed` returns ``None``, so the
Raft stores keep ``os.fsync`` and the driver keeps :class:`SystemClock`; a socket path given
without it is refused with a log line. The chaos nemesis (``chaos/faults.py``) arms faults by
sending one JSON object per line and reading one JSON reply:

    {"op": "status"}
    {"op": "fsync", "mode": "ok" | "eio" | "lie"}  # lie: only with LICTOR_TEST_FAULTS=broken
    {"op": "clock", "jump": seconds}               # jump the Raft clock (negative: back)
    {"op": "clock", "rate": r}                      # the clock runs at r x real speed (r > 0)
    {"op": "clock", "reset": true}                  # rate 1, no further jumps

``eio`` makes every fsync of the Raft log, stable and snapshot stores fail with EIO, as a
failing disk does; the store then refuses to acknowledge anything (it is poisoned) and the Raft
node stops. ``lie`` returns success without syncing: the deliberately broken build.

The clock is the Raft driver's :class:`~lictor.common.clock.Clock` (ticks, contact times): it is
monotonic, so a jump back freezes it until real time catches up (the node stops ticking: no
heartbeats, no elections, no check-quorum step-down for that long), a jump forward fires the
next ticks at once, and a rate != 1 skews it slowly. Wall-clock stamps (``time.time()``) are not
shifted.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import threading
import time
from typing import Any

import structlog

__all__ = ["FaultClock", "FaultHook", "installed"]

_log = structlog.get_logger("lictor.raft.faults")

ENV_ENABLE = "LICTOR_TEST_FAULTS"
ENV_SOCKET = "LICTOR_TEST_FAULT_SOCKET"
FSYNC_MODES = ("ok", "eio", "lie")


class FaultHook:
    """The armed faults of this process; changed by the control socket, read by the stores."""

    def __init__(self, *, allow_broken: bool = False) -> None:
        self.allow_broken = allow_broken
        self.fsync_mode = "ok"
        self.fsync_calls = 0
        self.fsync_failed = 0
        self.fsync_lied = 0
        self._lock = threading.Lock()
        # clock: virtual = base_virtual + (real - base_real) * rate, clamped to be monotonic
        self._rate = 1.0
        self._base_real = time.monotonic()
        self._base_virtual = self._base_real
        self._last = self._base_virtual

    # ------------------------------------------------------------------ fsync

    def fsync(self, fd: int) -> None:
        """The stores' fsync seam (runs on the loop thread or an executor thread)."""
        self.fsync_calls += 1
        mode = self.fsync_mode
        if mode == "eio":
            self.fsync_failed += 1
            raise OSError(errno.EIO, "fsync failed (injected by the chaos fault hook)")
        if mode == "lie":
            self.fsync_lied += 1
            return
        os.fsync(fd)

    # ------------------------------------------------------------------ clock

    def now(self, real: float | None = None) -> float:
        """The virtual monotonic time for the real monotonic time ``real``."""
        with self._lock:
            r = time.monotonic() if real is None else real
            v = self._base_virtual + (r - self._base_real) * self._rate
            self._last = max(self._last, v)
            return self._last

    @property
    def rate(self) -> float:
        return self._rate

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._base_virtual += seconds

    def set_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        with self._lock:
            r = time.monotonic()
            self._base_virtual = self._base_virtual + (r - self._base_real) * self._rate
            self._base_real = r
            self._rate = rate

    def reset_clock(self) -> None:
        """Rate 1 from here on; the virtual clock continues from where it is (it cannot jump
        back), so a clock that was ahead stays ahead by the same amount."""
        self.set_rate(1.0)

    # ------------------------------------------------------------------ control

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "fsync":
            mode = req.get("mode")
            if mode not in FSYNC_MODES:
                raise ValueError(f"fsync mode must be one of {FSYNC_MODES}, not {mode!r}")
            if mode == "lie" and not self.allow_broken:
                raise PermissionError(f"fsync mode 'lie' needs {ENV_ENABLE}=broken")
            self.fsync_mode = mode
            _log.warning("chaos fault hook: fsync mode set", mode=mode)
        elif op == "clock":
            if req.get("reset"):
                self.reset_clock()
            if "jump" in req:
                self.jump(float(req["jump"]))
            if "rate" in req:
                self.set_rate(float(req["rate"]))
            _log.warning("chaos fault hook: raft clock changed", request=req,
                         offset=round(self.now() - time.monotonic(), 3), rate=self._rate)
        elif op != "status":
            raise ValueError(f"unknown op {op!r} (status, fsync, clock)")
        return {"ok": True, "fsync_mode": self.fsync_mode, "fsync_calls": self.fsync_calls,
                "fsync_failed": self.fsync_failed, "fsync_lied": self.fsync_lied,
                "clock_offset": round(self.now() - time.monotonic(), 6), "clock_rate": self._rate,
                "pid": os.getpid()}

    def serve(self, path: str) -> threading.Thread:
        """Listen on the Unix socket ``path`` in a daemon thread (one request per line)."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        os.chmod(path, 0o600)
        srv.listen(8)

        def loop() -> None:
            while True:
                conn, _ = srv.accept()
                with conn, conn.makefile("rwb") as fh:
                    for line in fh:
                        try:
                            req = json.loads(line)
                            if not isinstance(req, dict):
                                raise ValueError("expected a JSON object")
                            reply = self.handle(req)
                        except Exception as exc:  # noqa: BLE001 - reported to the caller
                            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                        fh.write(json.dumps(reply).encode() + b"\n")
                        fh.flush()

        t = threading.Thread(target=loop, name="chaos-fault-hook", daemon=True)
        t.start()
        _log.warning("chaos fault hook enabled (test builds only)", socket=path,
                     broken=self.allow_broken)
        return t


class FaultClock:
    """A :class:`~lictor.common.clock.Clock` whose time is the fault hook's virtual clock."""

    __slots__ = ("_hook",)

    def __init__(self, hook: FaultHook) -> None:
        self._hook = hook

    def monotonic(self) -> float:
        return self._hook.now()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        target = self._hook.now() + seconds
        while True:
            left = target - self._hook.now()
            if left <= 0:
                return
            # re-check at least every 50 ms so a jump or a rate change takes effect promptly
            await asyncio.sleep(min(left / self._hook.rate, 0.05))


_installed: FaultHook | None = None
_checked = False
_install_lock = threading.Lock()


def installed(env: dict[str, str] | None = None) -> FaultHook | None:
    """The process's fault hook, started on first use when the environment enables it."""
    global _installed, _checked
    with _install_lock:
        if _checked and env is None:
            return _installed
        e = os.environ if env is None else env
        flag = e.get(ENV_ENABLE, "")
        path = e.get(ENV_SOCKET, "")
        hook: FaultHook | None = None
        if flag in ("1", "broken") and path:
            hook = FaultHook(allow_broken=flag == "broken")
            hook.serve(path)
        elif path:
            _log.error("chaos fault socket refused: the fault hook is for test builds only",
                       socket=path, needs=f"{ENV_ENABLE}=1")
        elif flag:
            _log.error("chaos fault hook not started: no socket path", needs=ENV_SOCKET)
        if env is None:
            _installed, _checked = hook, True
        return hook
