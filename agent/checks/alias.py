"""Alias checks: mirror the aggregate health of another service (or node).

The check runs a blocking-query loop against an injected ``source``::

    index = 0
    loop: (new_index, statuses) = await source(index)   # parks until something changes
          statuses is None      -> critical "... could not be found ..."
          [] (no checks)        -> passing  "No checks found."
          any critical          -> critical  (maintenance counts as critical)
          else any warning      -> warning
          else                  -> passing  "All checks passing."
          index = new_index     (reset to 0 if it went backwards, as blocking-query clients must)

Source errors are logged and retried with exponential backoff (``backoff_min`` doubling up to
``backoff_max``) on the injected clock; the last reported status stands meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus

from .base import Check, CheckNotifier

__all__ = ["AliasCheck", "AliasSource", "aggregate_alias"]

log = logging.getLogger("lictor.checks")

#: ``source(min_index) -> (index, statuses | None)``: a blocking query that returns once the
#: aliased checks changed past ``min_index`` (or its wait ran out); None = target not found.
AliasSource = Callable[[int], Awaitable[tuple[int, Sequence[HealthStatus] | None]]]


def aggregate_alias(
    statuses: Sequence[HealthStatus] | None, *, not_found: str
) -> tuple[HealthStatus, str]:
    """The alias check's result for one answer of the source. Pure."""
    if statuses is None:
        return HealthStatus.CRITICAL, not_found
    if not statuses:
        return HealthStatus.PASSING, "No checks found."
    critical = sum(
        1 for s in statuses if s in (HealthStatus.CRITICAL, HealthStatus.MAINTENANCE)
    )
    warning = sum(1 for s in statuses if s == HealthStatus.WARNING)
    if critical:
        return HealthStatus.CRITICAL, _failing(critical, warning, len(statuses))
    if warning:
        return HealthStatus.WARNING, _failing(critical, warning, len(statuses))
    return HealthStatus.PASSING, "All checks passing."


def _failing(critical: int, warning: int, total: int) -> str:
    return f"Aliased checks failing: {critical} critical, {warning} warning of {total}"


class AliasCheck(Check):
    """``alias_service = "web"`` (optionally with ``alias_node``), or ``alias_node`` alone."""

    def __init__(
        self,
        *,
        check_id: str,
        notifier: CheckNotifier,
        source: AliasSource,
        alias_service: str | None = None,
        alias_node: str | None = None,
        clock: Clock | None = None,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        super().__init__(check_id=check_id)
        if not alias_service and not alias_node:
            raise ConfigError("needs alias_service or alias_node", path="alias_service")
        if not 0 < backoff_min <= backoff_max:
            raise ConfigError("need 0 < backoff_min <= backoff_max", path="backoff_min")
        self._notifier = notifier
        self._source = source
        self._service = alias_service or None
        self._node = alias_node or None
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._last: tuple[HealthStatus, str] | None = None

    def _not_found(self) -> str:
        if self._service and self._node:
            return f"Service {self._service} could not be found on node {self._node}"
        if self._service:
            return f"Service {self._service} could not be found"
        return f"Node {self._node} could not be found"

    def _report(self, result: tuple[HealthStatus, str]) -> None:
        if result != self._last:
            self._last = result
            self._notifier.update_check(self._check_id, *result)

    async def _run(self) -> None:
        index = 0
        delay = self._backoff_min
        while True:
            try:
                new_index, statuses = await self._source(index)
            except Exception as exc:  # noqa: BLE001 - retried below
                log.warning(
                    "alias check %s: query failed, retrying in %.1fs: %s",
                    self._check_id,
                    delay,
                    exc,
                )
                await self._clock.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
                continue
            delay = self._backoff_min
            self._report(aggregate_alias(statuses, not_found=self._not_found()))
            # Blocking-query client rules: never go backwards, never ask with index 0 twice.
            index = max(new_index, 1) if new_index >= index else 0
