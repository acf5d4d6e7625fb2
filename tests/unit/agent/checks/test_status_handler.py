"""StatusHandler: Consul's consecutive success/failure thresholds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.testing import RecordingNotifier
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus

P, W, C = HealthStatus.PASSING, HealthStatus.WARNING, HealthStatus.CRITICAL


def feed(handler: StatusHandler, statuses: list[HealthStatus]) -> None:
    for i, s in enumerate(statuses):
        handler.update(s, f"run {i}")


def test_without_thresholds_every_result_is_reported(notifier: RecordingNotifier) -> None:
    h = StatusHandler("c", notifier)
    feed(h, [P, C, W, P])
    assert [u.status for u in notifier.history["c"]] == [P, C, W, P]
    assert notifier.output("c") == "run 3"


def test_success_before_passing_needs_consecutive_successes(notifier: RecordingNotifier) -> None:
    h = StatusHandler("c", notifier, success_before_passing=2)
    h.update(P, "one")
    assert notifier.updates("c") == 0
    h.update(C, "down")  # reported at once (no failure threshold) and resets the successes
    h.update(P, "again one")
    assert notifier.status("c") == C
    h.update(P, "two")
    assert notifier.status("c") == P and notifier.output("c") == "two"


def test_failures_before_critical_needs_consecutive_failures(notifier: RecordingNotifier) -> None:
    h = StatusHandler("c", notifier, failures_before_critical=3)
    feed(h, [C, C])
    assert notifier.updates("c") == 0  # the check keeps its previous status
    h.update(P, "ok")  # resets the failure count
    feed(h, [C, C])
    assert notifier.status("c") == P
    h.update(C, "third")
    assert notifier.status("c") == C and notifier.output("c") == "third"
    h.update(C, "fourth")  # still over the threshold: keeps reporting
    assert notifier.updates("c") == 3


def test_warning_counts_as_success_and_is_reported_as_warning(notifier: RecordingNotifier) -> None:
    h = StatusHandler("c", notifier, failures_before_critical=2)
    feed(h, [C, W, C])
    assert [u.status for u in notifier.history["c"]] == [W]  # the warning broke the streak


def test_failures_before_warning_reports_warning_first(notifier: RecordingNotifier) -> None:
    h = StatusHandler("c", notifier, failures_before_warning=1, failures_before_critical=3)
    feed(h, [C, C, C])
    assert [u.status for u in notifier.history["c"]] == [W, W, C]
    assert notifier.history["c"][0].output == "run 0"  # the failure's own output


@pytest.mark.parametrize(
    "kwargs",
    [
        {"success_before_passing": -1},
        {"failures_before_critical": -1},
        {"failures_before_critical": 1, "failures_before_warning": 2},
    ],
)
def test_invalid_thresholds_are_config_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        StatusHandler("c", RecordingNotifier(), **kwargs)


@given(
    results=st.lists(st.sampled_from([P, W, C]), max_size=40),
    sbp=st.integers(0, 4),
    fbc=st.integers(0, 4),
)
def test_a_result_is_reported_exactly_when_its_streak_is_long_enough(
    results: list[HealthStatus], sbp: int, fbc: int
) -> None:
    notifier = RecordingNotifier()
    h = StatusHandler("c", notifier, success_before_passing=sbp, failures_before_critical=fbc)
    streak = 0  # length of the current run of failures (>0) or successes (<0)
    for i, s in enumerate(results):
        failed = s == C
        streak = (streak + 1 if streak > 0 else 1) if failed else (streak - 1 if streak < 0 else -1)
        before = notifier.updates("c")
        h.update(s, str(i))
        reported = notifier.updates("c") > before
        assert reported == (streak >= fbc if failed else -streak >= sbp)
        if reported:
            assert notifier.status("c") == s and notifier.output("c") == str(i)
