"""Merge rules: incarnation precedence, alive/suspect/dead ordering, refutation."""

from __future__ import annotations

import pytest

from lictor.common.gossip.members import (
    MemberState,
    NodeState,
    Verdict,
    judge_alive,
    judge_dead,
    judge_suspect,
)
from lictor.common.gossip.messages import Alive, Dead, Suspect

A = ("10.0.0.1", 7946)
B = ("10.0.0.2", 7946)


def node(state: MemberState = MemberState.ALIVE, inc: int = 5, addr: tuple[str, int] = A,
         changed: float = 0.0) -> NodeState:
    return NodeState(name="n", addr=addr, tags={"r": "x"}, incarnation=inc, state=state,
                     state_change=changed)


def alive(inc: int, addr: tuple[str, int] = A, tags: dict[str, str] | None = None) -> Alive:
    return Alive(incarnation=inc, node="n", addr=addr, tags={"r": "x"} if tags is None else tags)


def test_unknown_member_alive_is_a_join() -> None:
    assert judge_alive(None, alive(0), is_self=False, now=0, reclaim_time=0) is Verdict.APPLY


@pytest.mark.parametrize("state", list(MemberState))
@pytest.mark.parametrize("inc,expected", [(4, Verdict.IGNORE), (5, Verdict.IGNORE),
                                          (6, Verdict.APPLY)])
def test_alive_needs_a_strictly_higher_incarnation(state: MemberState, inc: int,
                                                   expected: Verdict) -> None:
    assert judge_alive(node(state), alive(inc), is_self=False, now=0,
                       reclaim_time=0) is expected


def test_alive_at_another_address_is_a_conflict_unless_left_or_reclaimable() -> None:
    assert judge_alive(node(), alive(9, B), is_self=False, now=0,
                       reclaim_time=0) is Verdict.CONFLICT
    assert judge_alive(node(MemberState.DEAD), alive(9, B), is_self=False, now=100,
                       reclaim_time=0) is Verdict.CONFLICT
    assert judge_alive(node(MemberState.DEAD), alive(0, B), is_self=False, now=100,
                       reclaim_time=30) is Verdict.APPLY
    assert judge_alive(node(MemberState.DEAD, changed=90), alive(0, B), is_self=False, now=100,
                       reclaim_time=30) is Verdict.CONFLICT
    assert judge_alive(node(MemberState.LEFT), alive(0, B), is_self=False, now=0,
                       reclaim_time=0) is Verdict.APPLY


def test_alive_about_self() -> None:
    me = node()
    assert judge_alive(me, alive(5), is_self=True, now=0, reclaim_time=0) is Verdict.IGNORE
    assert judge_alive(me, alive(4, tags={}), is_self=True, now=0,
                       reclaim_time=0) is Verdict.IGNORE
    assert judge_alive(me, alive(5, tags={}), is_self=True, now=0,
                       reclaim_time=0) is Verdict.REFUTE
    assert judge_alive(me, alive(7), is_self=True, now=0, reclaim_time=0) is Verdict.REFUTE


@pytest.mark.parametrize("inc,expected", [(4, Verdict.IGNORE), (5, Verdict.APPLY),
                                          (6, Verdict.APPLY)])
def test_suspect_applies_at_same_or_higher_incarnation(inc: int, expected: Verdict) -> None:
    msg = Suspect(incarnation=inc, node="n", sender="x")
    assert judge_suspect(node(), msg, is_self=False, timer_running=False) is expected


def test_suspect_ordering() -> None:
    msg = Suspect(incarnation=5, node="n", sender="x")
    assert judge_suspect(node(MemberState.SUSPECT), msg, is_self=False,
                         timer_running=True) is Verdict.CONFIRM
    assert judge_suspect(node(MemberState.DEAD), msg, is_self=False,
                         timer_running=False) is Verdict.IGNORE
    assert judge_suspect(node(MemberState.LEFT), msg, is_self=False,
                         timer_running=False) is Verdict.IGNORE
    assert judge_suspect(None, msg, is_self=False, timer_running=False) is Verdict.IGNORE
    assert judge_suspect(node(), msg, is_self=True, timer_running=False) is Verdict.REFUTE


def test_dead_ordering_and_refutation() -> None:
    msg = Dead(incarnation=5, node="n", sender="x")
    assert judge_dead(node(), msg, is_self=False, leaving=False) is Verdict.APPLY
    assert judge_dead(node(MemberState.SUSPECT), msg, is_self=False,
                      leaving=False) is Verdict.APPLY
    assert judge_dead(node(inc=6), msg, is_self=False, leaving=False) is Verdict.IGNORE
    assert judge_dead(node(MemberState.DEAD), msg, is_self=False, leaving=False) is Verdict.IGNORE
    assert judge_dead(node(MemberState.LEFT), msg, is_self=False, leaving=False) is Verdict.IGNORE
    assert judge_dead(node(), msg, is_self=True, leaving=False) is Verdict.REFUTE
    assert judge_dead(node(), msg, is_self=True, leaving=True) is Verdict.APPLY


def test_refutation_beats_suspicion_and_death_at_the_old_incarnation() -> None:
    """A member refuted at inc 6: suspect/dead at inc 5 no longer apply; alive 6 does."""
    suspected = node(MemberState.SUSPECT, inc=5)
    assert judge_alive(suspected, alive(6), is_self=False, now=0, reclaim_time=0) is Verdict.APPLY
    refuted = node(MemberState.ALIVE, inc=6)
    assert judge_suspect(refuted, Suspect(incarnation=5, node="n", sender="x"), is_self=False,
                         timer_running=False) is Verdict.IGNORE
    assert judge_dead(refuted, Dead(incarnation=5, node="n", sender="x"), is_self=False,
                      leaving=False) is Verdict.IGNORE
