"""TTLCheck with a ManualClock: expiry, reset on update, initial status."""

from __future__ import annotations

from typing import Any

import pytest

from lictor.agent.checks.testing import RecordingNotifier
from lictor.agent.checks.ttl import TTL_EXPIRED, TTLCheck
from lictor.common.clock import ManualClock
from lictor.common.errors import ConfigError, ValidationError
from lictor.common.types import HealthStatus


def ttl_check(notifier: RecordingNotifier, clock: ManualClock, **kw: Any) -> TTLCheck:
    return TTLCheck(check_id="t", notifier=notifier, ttl=30, clock=clock, **kw)


async def test_expires_to_critical_without_updates(notifier: RecordingNotifier) -> None:
    clock = ManualClock()
    c = ttl_check(notifier, clock)
    c.start()
    await clock.advance(29.9)
    assert notifier.updates("t") == 0  # nothing reported before the first update or expiry
    await clock.advance(0.1)
    assert notifier.status("t") == HealthStatus.CRITICAL
    assert notifier.output("t") == TTL_EXPIRED == "TTL expired"
    await clock.advance(300)
    assert notifier.updates("t") == 1  # expiry is reported once, not every TTL
    await c.stop()


async def test_every_update_restarts_the_timer(notifier: RecordingNotifier) -> None:
    clock = ManualClock()
    c = ttl_check(notifier, clock)
    c.start()
    for _ in range(5):
        await clock.advance(20)
        c.set_status(HealthStatus.PASSING, "alive")
        assert notifier.last("t").status == HealthStatus.PASSING  # type: ignore[union-attr]
    await clock.advance(29)
    assert notifier.status("t") == HealthStatus.PASSING
    await clock.advance(1)
    assert notifier.status("t") == HealthStatus.CRITICAL
    assert notifier.output("t") == "TTL expired (last output before timeout follows): alive"
    # An update after expiry revives it, and the next expiry is reported again.
    await clock.advance(100)
    c.set_status(HealthStatus.WARNING, "degraded")
    assert notifier.status("t") == HealthStatus.WARNING
    await clock.advance(29)
    assert notifier.status("t") == HealthStatus.WARNING
    await clock.advance(1)
    assert notifier.status("t") == HealthStatus.CRITICAL
    assert notifier.updates("t") == 8
    await c.stop()


async def test_initial_status_is_reported_on_start(notifier: RecordingNotifier) -> None:
    clock = ManualClock()
    c = ttl_check(notifier, clock, initial_status=HealthStatus.PASSING, initial_output="restored")
    c.start()
    assert notifier.status("t") == HealthStatus.PASSING and notifier.output("t") == "restored"
    await clock.advance(30)
    assert notifier.output("t") == "TTL expired (last output before timeout follows): restored"
    await c.stop()


async def test_output_is_truncated(notifier: RecordingNotifier) -> None:
    c = ttl_check(notifier, ManualClock(), output_max_size=4)
    stored = c.set_status(HealthStatus.CRITICAL, "abcdefgh")
    assert stored == "abcd ... (captured 4 of 8 bytes)" == notifier.output("t")


def test_only_pass_warn_fail_can_be_set(notifier: RecordingNotifier) -> None:
    c = ttl_check(notifier, ManualClock())
    with pytest.raises(ValidationError):
        c.set_status(HealthStatus.MAINTENANCE, "")
    with pytest.raises(ValueError):
        c.set_status("bogus", "")  # type: ignore[arg-type]


def test_ttl_must_be_positive(notifier: RecordingNotifier) -> None:
    with pytest.raises(ConfigError):
        TTLCheck(check_id="t", notifier=notifier, ttl=0)
