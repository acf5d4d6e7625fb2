from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lictor.server.raft.progress import Inflights, Progress, ProgressState


def test_probe_pauses_after_one_send_until_ack() -> None:
    pr = Progress(next_index=5, max_inflight=4)
    assert pr.state is ProgressState.PROBE and not pr.is_paused()
    pr.probe_sent = True
    assert pr.is_paused()
    assert pr.maybe_update(4)
    assert not pr.is_paused()


def test_replicate_window_fills_and_frees() -> None:
    pr = Progress(next_index=1, max_inflight=2)
    pr.become_replicate()
    for last in (3, 6):
        pr.optimistic_update(last)
        pr.inflights.add(last)
    assert pr.is_paused() and pr.next == 7
    pr.maybe_update(3)
    pr.inflights.free_le(3)
    assert not pr.is_paused()


def test_stale_rejection_is_ignored() -> None:
    pr = Progress(next_index=10, max_inflight=4)
    pr.become_replicate()
    pr.maybe_update(8)
    assert not pr.maybe_decr_to(7, 0)  # rejected index below match: stale
    assert pr.maybe_decr_to(12, 0)
    assert pr.next == 9
    probe = Progress(next_index=10, max_inflight=4)
    assert not probe.maybe_decr_to(5, 0)  # not the index we probed
    assert probe.maybe_decr_to(9, 3)
    assert probe.next == 4


def test_snapshot_state_is_paused_and_resumes_after_pending() -> None:
    pr = Progress(next_index=3, max_inflight=4)
    pr.become_snapshot(20)
    assert pr.is_paused()
    pr.maybe_update(20)
    pr.become_probe()
    assert pr.next == 21 and pr.state is ProgressState.PROBE


def test_inflights_add_on_full_is_an_error() -> None:
    inf = Inflights(1)
    inf.add(1)
    with pytest.raises(AssertionError):
        inf.add(2)


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=30), st.integers(0, 200))
def test_inflights_free_le_releases_exactly_the_acked(gaps: list[int], ack: int) -> None:
    inf = Inflights(64)
    lasts = []
    cur = 0
    for g in gaps:
        cur += g
        lasts.append(cur)
        inf.add(cur)
    inf.free_le(ack)
    assert len(inf) == sum(1 for x in lasts if x > ack)


@given(st.lists(st.tuples(st.sampled_from(["ack", "rej", "probe", "repl"]), st.integers(0, 40)), max_size=40))
def test_match_below_next_invariant(ops: list[tuple[str, int]]) -> None:
    pr = Progress(next_index=1, max_inflight=8)
    for op, n in ops:
        if op == "ack":
            pr.maybe_update(n)
        elif op == "rej":
            pr.maybe_decr_to(n, n // 2)
        elif op == "probe":
            pr.become_probe()
        else:
            pr.become_replicate()
        assert pr.match < pr.next
