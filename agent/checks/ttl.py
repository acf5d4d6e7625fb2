"""TTL checks: the application reports its own status and must do so again within ``ttl``.

``set_status()`` (called for ``/v1/agent/check/pass|warn|fail|update``) reports the status at
once and restarts the timer. If the timer runs out, the check turns critical with output
``TTL expired`` (followed by the last output received, if any). It stays critical until the next
``set_status()``. No ``StatusHandler`` here: thresholds only apply to checks the agent runs.
"""

from __future__ import annotations

import logging

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import ConfigError, ValidationError
from lictor.common.types import HealthStatus

from .base import DEFAULT_OUTPUT_MAX_SIZE, Check, CheckNotifier

__all__ = ["TTL_EXPIRED", "TTLCheck"]

log = logging.getLogger("lictor.checks")

TTL_EXPIRED = "TTL expired"
_SETTABLE = (HealthStatus.PASSING, HealthStatus.WARNING, HealthStatus.CRITICAL)


class TTLCheck(Check):
    """``ttl = "30s"``.

    ``initial_status`` (with ``initial_output``) is what to report when started, e.g. a status
    restored from disk after an agent restart; the TTL runs from ``start()``. Without it
    nothing is reported until the first ``set_status()`` or the expiry.
    """

    def __init__(
        self,
        *,
        check_id: str,
        notifier: CheckNotifier,
        ttl: float,
        output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE,
        initial_status: HealthStatus | None = None,
        initial_output: str = "",
        clock: Clock | None = None,
    ) -> None:
        super().__init__(check_id=check_id)
        if ttl <= 0:
            raise ConfigError(f"must be positive, got {ttl}", path="ttl")
        if output_max_size < 1:
            raise ConfigError("must be at least 1", path="output_max_size")
        self._notifier = notifier
        self._ttl = float(ttl)
        self._output_max_size = output_max_size
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._initial = initial_status
        self._last_output = self._truncate(initial_output)
        self._deadline: float | None = None  # set by start(); None while stopped

    @property
    def ttl(self) -> float:
        return self._ttl

    def start(self) -> None:
        super().start()
        self._deadline = self._clock.monotonic() + self._ttl
        if self._initial is not None:
            self._notifier.update_check(self._check_id, self._initial, self._last_output)

    def set_status(self, status: HealthStatus, output: str = "") -> str:
        """Report ``status`` now and restart the TTL. Returns the (truncated) output stored.

        Never blocks; safe to call before ``start()`` (the timer then starts at ``start()``).
        """
        status = HealthStatus(status)
        if status not in _SETTABLE:
            raise ValidationError(f"invalid status for a TTL check: {status.value}")
        self._last_output = self._truncate(output)
        if self._deadline is not None:
            self._deadline = self._clock.monotonic() + self._ttl
        self._notifier.update_check(self._check_id, status, self._last_output)
        return self._last_output

    def _truncate(self, output: str) -> str:
        data = output.encode("utf-8")
        if len(data) <= self._output_max_size:
            return output
        kept = data[: self._output_max_size].decode("utf-8", "ignore")
        return f"{kept} ... (captured {self._output_max_size} of {len(data)} bytes)"

    def expired_output(self) -> str:
        if not self._last_output:
            return TTL_EXPIRED
        return f"{TTL_EXPIRED} (last output before timeout follows): {self._last_output}"

    async def _run(self) -> None:
        expired_at: float | None = None  # the deadline we already reported as expired
        while True:
            deadline = self._deadline
            assert deadline is not None
            now = self._clock.monotonic()
            if now < deadline:
                await self._clock.sleep(deadline - now)
                continue  # the deadline may have moved while we slept: look again
            if expired_at != deadline:
                expired_at = deadline
                log.warning("check %s missed its TTL, now critical", self._check_id)
                self._notifier.update_check(
                    self._check_id, HealthStatus.CRITICAL, self.expired_output()
                )
            # Wait for set_status() to move the deadline; poll at TTL granularity so no
            # extra wake-up primitive is needed (a set_status() pushes the deadline to now+ttl).
            await self._clock.sleep(self._ttl)

    async def stop(self) -> None:
        await super().stop()
        self._deadline = None
