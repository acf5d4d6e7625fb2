"""Script checks (Consul's "monitor" checks): run a command; its exit code is the status.

exit 0 -> passing, exit 1 -> warning, anything else (including death by signal) -> critical.
stdout and stderr are captured together; the *last* ``output_max_size`` bytes are kept.

The command runs in its own session (``start_new_session=True``), hence its own process group.
On timeout, or when the check is stopped mid-run, the whole group is SIGKILLed so that helpers
the script started (``sh -c 'sleep 100 | cat'``) do not outlive it. Whether script checks are
allowed at all (``enable_script_checks``) is the agent's decision, not this module's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from collections.abc import Sequence

from lictor.common.clock import Clock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus

from .base import (
    DEFAULT_OUTPUT_MAX_SIZE,
    IntervalCheck,
    StatusHandler,
    format_seconds,
    truncate_tail,
)

__all__ = ["DEFAULT_SCRIPT_TIMEOUT", "ScriptCheck"]

log = logging.getLogger("lictor.checks")

DEFAULT_SCRIPT_TIMEOUT = 30.0
_CHUNK = 65_536


class ScriptCheck(IntervalCheck):
    """``args = ["/usr/local/bin/check_mem.py", "-limit", "256MB"]`` (no shell involved)."""

    def __init__(
        self,
        *,
        handler: StatusHandler,
        args: Sequence[str],
        interval: float,
        timeout: float = DEFAULT_SCRIPT_TIMEOUT,
        output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(handler=handler, interval=interval, timeout=timeout, clock=clock, rng=rng)
        if not args:
            raise ConfigError("must name a command", path="args")
        if output_max_size < 1:
            raise ConfigError("must be at least 1", path="output_max_size")
        self._args = list(args)
        self._output_max_size = output_max_size

    def _deadline(self) -> float | None:
        return None  # run_once enforces the timeout itself, killing the process group

    async def run_once(self) -> tuple[HealthStatus, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return HealthStatus.CRITICAL, f"Failed to start check {self._args[0]!r}: {exc}"
        tail = bytearray()
        total = 0
        try:
            async with asyncio.timeout(self._timeout):
                assert proc.stdout is not None
                while chunk := await proc.stdout.read(_CHUNK):
                    total += len(chunk)
                    tail += chunk
                    if len(tail) > self._output_max_size:
                        del tail[: len(tail) - self._output_max_size]
                code = await proc.wait()
        except TimeoutError:
            await _kill_group(proc)
            return (
                HealthStatus.CRITICAL,
                f"Timed out ({format_seconds(self._timeout)}) running check",
            )
        except BaseException:  # cancelled (check stopped): take the process group with us
            await asyncio.shield(_kill_group(proc))
            raise
        output = truncate_tail(bytes(tail), total, self._output_max_size)
        if code == 0:
            return HealthStatus.PASSING, output
        if code == 1:
            return HealthStatus.WARNING, output
        return HealthStatus.CRITICAL, output


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group led by ``proc`` and reap ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already gone
    except PermissionError:  # pragma: no cover - the group is ours; defensive only
        log.warning("cannot kill process group %d", proc.pid)
    await proc.wait()
