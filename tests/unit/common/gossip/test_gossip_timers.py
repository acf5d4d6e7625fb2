"""Lifeguard timer maths: suspicion timeouts and local health awareness."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lictor.common.gossip.awareness import Awareness
from lictor.common.gossip.suspicion import Suspicion, remaining_timeout, suspicion_timeout


def test_suspicion_timeout_scales_with_log10_of_cluster_size() -> None:
    assert suspicion_timeout(4, 1, 1.0) == 4.0
    assert suspicion_timeout(4, 10, 1.0) == 4.0
    assert suspicion_timeout(4, 100, 1.0) == pytest.approx(8.0)
    assert suspicion_timeout(4, 1000, 0.5) == pytest.approx(6.0)


def test_timeout_starts_at_max_and_reaches_min_after_k_confirmations() -> None:
    s = Suspicion(sender="a", k=3, min_timeout=2.0, max_timeout=12.0, start=100.0)
    assert s.deadline() == 112.0
    timeouts = [s.timeout()]
    for who in ("b", "c", "d"):
        assert s.confirm(who)
        timeouts.append(s.timeout())
    assert timeouts == sorted(timeouts, reverse=True)
    assert timeouts[-1] == 2.0 and s.deadline() == 102.0
    # memberlist's curve: max - (max-min) * log(c+1)/log(k+1)
    assert timeouts[1] == pytest.approx(12.0 - 10.0 * math.log(2) / math.log(4))


def test_confirmations_must_be_independent_and_are_capped() -> None:
    s = Suspicion(sender="a", k=2, min_timeout=1.0, max_timeout=6.0, start=0.0)
    assert not s.confirm("a"), "the original suspector does not confirm itself"
    assert s.confirm("b")
    assert not s.confirm("b"), "nobody counts twice"
    assert s.confirm("c")
    assert not s.confirm("d"), "no more than k"
    assert s.confirmations == 2 and s.timeout() == 1.0


def test_a_heard_verdict_ends_the_timer_at_min_timeout_after_its_start() -> None:
    s = Suspicion(sender="a", k=3, min_timeout=2.0, max_timeout=12.0, start=100.0)
    s.verdict_heard()
    assert s.timeout() == 2.0 and s.deadline() == 102.0
    assert not s.confirm("a") and s.deadline() == 102.0


def test_k_zero_means_min_timeout_at_once() -> None:
    s = Suspicion(sender="a", k=0, min_timeout=3.0, max_timeout=18.0, start=5.0)
    assert s.deadline() == 8.0
    assert not s.confirm("b")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Suspicion(sender="a", k=1, min_timeout=5.0, max_timeout=1.0, start=0.0)


@given(k=st.integers(0, 20), c=st.integers(0, 40),
       lo=st.floats(0.01, 100), span=st.floats(0, 1000))
def test_remaining_timeout_is_bounded_and_monotonic(k: int, c: int, lo: float, span: float) -> None:
    hi = lo + span
    t = remaining_timeout(k, c, lo, hi)
    assert lo <= t <= hi
    assert remaining_timeout(k, c + 1, lo, hi) <= t


def test_awareness_is_clamped_and_scales_timeouts() -> None:
    a = Awareness(8)
    assert a.scale(0.5) == 0.5
    assert a.apply_delta(-1) == 0
    assert a.apply_delta(3) == 3
    assert a.scale(0.5) == 2.0
    assert a.apply_delta(100) == 7
    assert a.scale(1.0) == 8.0
    assert a.apply_delta(-2) == 5


def test_awareness_needs_a_positive_multiplier() -> None:
    with pytest.raises(ValueError):
        Awareness(0)
