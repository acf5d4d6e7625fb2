"""The pieces every check shares: the notifier seam, the threshold filter and the task plumbing.

``CheckNotifier``  where results go (the agent's local state); narrow on purpose.
``StatusHandler``  Consul's ``success_before_passing`` / ``failures_before_warning`` /
                   ``failures_before_critical`` filter between a check and its notifier.
``Check``          the lifecycle: ``start()`` schedules one task, ``await stop()`` cancels it.
``IntervalCheck``  a ``Check`` that runs ``run_once()`` on the shared periodic schedule
                   (``scheduler.run_periodic``) under a deadline and reports via its handler.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import random
import socket
import ssl
from typing import Protocol

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import ConfigError
from lictor.common.hostport import parse_host_port
from lictor.common.tasks import spawn
from lictor.common.types import HealthStatus

from .scheduler import run_periodic

__all__ = [
    "DEFAULT_OUTPUT_MAX_SIZE",
    "DEFAULT_TIMEOUT",
    "MIN_INTERVAL",
    "Check",
    "CheckNotifier",
    "IntervalCheck",
    "StatusHandler",
    "describe_error",
    "format_seconds",
    "split_host_port",
    "truncate_head",
    "truncate_tail",
]

log = logging.getLogger("lictor.checks")

#: Consul's default for ``check_output_max_size`` (bytes of output kept per check).
DEFAULT_OUTPUT_MAX_SIZE = 4096
#: Default timeout of network checks (HTTP, TCP, UDP, gRPC, H2PING); script checks use 30 s.
DEFAULT_TIMEOUT = 10.0
#: Consul raises shorter intervals to this (with a warning). Enforcing it is the agent's job,
#: so tests here can use short intervals.
MIN_INTERVAL = 1.0

_SHARED_RNG = random.Random()

#: Interval checks start their runs on multiples of this on the loop clock, so that the checks
#: due within the same 100 ms share one wake-up of the process (scheduler.py says why).
WAKE_GRANULARITY = 0.1


class CheckNotifier(Protocol):
    """Where check results go (in the agent: the local state, then anti-entropy).

    ``update_check`` is called from the event loop, so it must not block and must not await:
    record the result and return. It must be idempotent: the same (status, output) reported
    twice is one state, and implementations are expected to ignore the repeat.
    """

    def update_check(self, check_id: str, status: HealthStatus, output: str) -> None: ...


class StatusHandler:
    """Consul's consecutive-result thresholds, between a check and its notifier.

    Results are counted as *successes* (passing **and** warning) or *failures* (critical).
    A success resets the failure count, and a failure resets the success count.

    * A success is reported (with its own status, so a warning stays a warning) once at least
      ``success_before_passing`` successes have been seen in a row.
    * A failure is reported as critical once at least ``failures_before_critical`` failures
      have been seen in a row; before that, once at least ``failures_before_warning`` have been
      seen, it is reported as *warning* (with the failure's output). ``failures_before_warning``
      defaults to ``failures_before_critical``, so by default there is no warning stage.
    * Below the thresholds nothing is reported: the check keeps its previous status.

    With all thresholds at 0 (the default) every result is reported as is.
    """

    __slots__ = (
        "_check_id",
        "_failures",
        "_failures_before_critical",
        "_failures_before_warning",
        "_notifier",
        "_success_before_passing",
        "_successes",
    )

    def __init__(
        self,
        check_id: str,
        notifier: CheckNotifier,
        *,
        success_before_passing: int = 0,
        failures_before_critical: int = 0,
        failures_before_warning: int | None = None,
    ) -> None:
        if failures_before_warning is None:
            failures_before_warning = failures_before_critical
        for name, value in (
            ("success_before_passing", success_before_passing),
            ("failures_before_critical", failures_before_critical),
            ("failures_before_warning", failures_before_warning),
        ):
            if value < 0:
                raise ConfigError(f"must not be negative, got {value}", path=name)
        if failures_before_warning > failures_before_critical:
            raise ConfigError(
                "must not be greater than failures_before_critical", path="failures_before_warning"
            )
        self._check_id = check_id
        self._notifier = notifier
        self._success_before_passing = success_before_passing
        self._failures_before_critical = failures_before_critical
        self._failures_before_warning = failures_before_warning
        self._successes = 0
        self._failures = 0

    @property
    def check_id(self) -> str:
        return self._check_id

    def update(self, status: HealthStatus, output: str) -> None:
        """Count one result and report it if a threshold allows. Never blocks."""
        if status in (HealthStatus.PASSING, HealthStatus.WARNING):
            self._successes += 1
            self._failures = 0
            if self._successes >= self._success_before_passing:
                self._notifier.update_check(self._check_id, status, output)
            else:
                log.debug(
                    "check %s succeeded %d/%d times before passing",
                    self._check_id,
                    self._successes,
                    self._success_before_passing,
                )
            return
        # Critical (and anything else, e.g. a misused MAINTENANCE) counts as a failure.
        self._failures += 1
        self._successes = 0
        if self._failures >= self._failures_before_critical:
            self._notifier.update_check(self._check_id, HealthStatus.CRITICAL, output)
        elif self._failures >= self._failures_before_warning:
            self._notifier.update_check(self._check_id, HealthStatus.WARNING, output)
        else:
            log.debug(
                "check %s failed %d/%d times before critical",
                self._check_id,
                self._failures,
                self._failures_before_critical,
            )


def truncate_head(data: bytes, limit: int, *, more: bool = False) -> str:
    """Decode the first ``limit`` bytes of ``data``; mark the text if anything was cut.

    ``more`` says the producer had more bytes than ``data`` holds (a body read only partly).
    """
    if len(data) > limit or more:
        return data[:limit].decode("utf-8", "replace") + f" ... (output truncated to {limit} bytes)"
    return data.decode("utf-8", "replace")


def truncate_tail(data: bytes, total: int, limit: int) -> str:
    """Decode the last ``limit`` bytes of ``data`` (of ``total`` produced); mark it if cut.

    The tail is kept because a failing script usually says why at the end.
    """
    if total > limit or len(data) > limit:
        tail = data[-limit:] if limit > 0 else b""
        return f"Captured {len(tail)} of {total} bytes\n...\n" + tail.decode("utf-8", "replace")
    return data.decode("utf-8", "replace")


def split_host_port(address: str, *, what: str = "address") -> tuple[str, int]:
    """A check's ``host:port`` or ``[v6]:port`` (lictor.common.hostport), as a ConfigError."""
    try:
        return parse_host_port(address, what=what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def describe_error(exc: BaseException) -> str:
    """A short, stable text for an I/O error (asyncio's "Connect call failed (...)" says less
    than the errno's own text)."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno:
        if isinstance(exc, socket.gaierror):
            return f"lookup failed: {exc.strerror}"
        return os.strerror(exc.errno).lower() if exc.errno > 0 else str(exc)
    text = str(exc)
    return text or type(exc).__name__


def format_seconds(seconds: float) -> str:
    """``10.0`` -> ``"10s"``, ``0.25`` -> ``"250ms"``: durations in the style Consul prints."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{int(ms)}ms" if float(ms).is_integer() else f"{ms:g}ms"
    return f"{seconds:g}s"


class Check(abc.ABC):
    """One registered check: a single asyncio task between ``start()`` and ``stop()``."""

    def __init__(self, *, check_id: str) -> None:
        self._check_id = check_id
        self._task: asyncio.Task[None] | None = None

    @property
    def check_id(self) -> str:
        return self._check_id

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Schedule the check's task on the running loop. Call it from inside the loop."""
        if self.running:
            raise RuntimeError(f"check {self._check_id} is already started")
        self._task = spawn(self._run(), name=f"check:{self._check_id}")
        self._task.add_done_callback(self._on_task_done)

    async def stop(self) -> None:
        """Cancel the task, wait for it to finish, then release resources. Idempotent."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our caller is being cancelled, not just the check
        await self._aclose()

    @abc.abstractmethod
    async def _run(self) -> None:
        """The task body; runs until cancelled."""

    async def _aclose(self) -> None:
        """Release resources held across runs (channels, sockets). Called by ``stop()``."""

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("check %s task died", self._check_id, exc_info=task.exception())


class IntervalCheck(Check):
    """A check that probes something every ``interval`` seconds.

    Subclasses implement ``run_once()``, which returns ``(status, output)`` and should turn the
    failures it expects (connection refused, bad status) into a critical result itself.
    ``check_once()`` wraps it with the deadline and catches anything unexpected; the periodic
    runner calls ``check_once()`` and passes the result to the ``StatusHandler``.
    """

    def __init__(
        self,
        *,
        handler: StatusHandler,
        interval: float,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(check_id=handler.check_id)
        if interval <= 0:
            raise ConfigError(f"must be positive, got {interval}", path="interval")
        if timeout <= 0:
            raise ConfigError(f"must be positive, got {timeout}", path="timeout")
        self._handler = handler
        self._interval = float(interval)
        self._timeout = float(timeout)
        self._clock: Clock = clock if clock is not None else SystemClock()
        # one generator for every check (the stagger is all it is used for): a Random holds
        # ~2.5 KB of state, 2.5 MB of RSS for a thousand checks of their own
        self._rng = rng if rng is not None else _SHARED_RNG
        #: runs start on multiples of this (0: exactly on the interval grid)
        self.wake_granularity = WAKE_GRANULARITY

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def timeout(self) -> float:
        return self._timeout

    @abc.abstractmethod
    async def run_once(self) -> tuple[HealthStatus, str]:
        """Probe once and say what was found."""

    def _deadline(self) -> float | None:
        """How long ``check_once`` lets ``run_once`` take; None if it enforces its own."""
        return self._timeout

    def _timeout_output(self) -> str:
        return f"Timed out ({format_seconds(self._timeout)}) running check"

    async def check_once(self) -> tuple[HealthStatus, str]:
        """``run_once()`` under the deadline; never raises (except on cancellation)."""
        deadline = self._deadline()
        try:
            if deadline is None:
                return await self.run_once()
            async with asyncio.timeout(deadline):
                return await self.run_once()
        except TimeoutError:
            return HealthStatus.CRITICAL, self._timeout_output()
        except Exception as exc:  # noqa: BLE001 - a check must never kill its own loop
            log.warning("check %s failed unexpectedly", self._check_id, exc_info=True)
            return HealthStatus.CRITICAL, f"{type(exc).__name__}: {exc}"

    async def _run_and_report(self) -> None:
        status, output = await self.check_once()
        self._handler.update(status, output)

    async def _run(self) -> None:
        await run_periodic(
            self._run_and_report,
            interval=self._interval,
            clock=self._clock,
            rng=self._rng,
            name=self._check_id,
            granularity=self.wake_granularity,
        )
