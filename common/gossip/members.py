"""The member table and SWIM's merge rules, as pure judgements.

Rules (memberlist ``state.go``), in order of precedence:

* A message with an **older incarnation** than ours is ignored; incarnations only grow, and only
  the member itself raises its own.
* **ALIVE** replaces what we know only with a *strictly higher* incarnation (a refutation or a
  rejoin), except that a **left** member - or a **dead** one after ``dead_node_reclaim_time`` -
  may come back at another address with any incarnation. Another address for a live member is a
  name conflict and is refused.
* **SUSPECT** applies to an alive member at the same or a higher incarnation; if a suspicion
  timer is already running it is a *confirmation* instead. Dead and left members stay dead.
* **DEAD** applies to an alive or suspect member at the same or a higher incarnation. ``from ==
  node`` marks a graceful leave (LEFT), anything else a failure (DEAD).
* About **ourselves**: suspect or dead (unless we are leaving) is *refuted* by re-announcing
  ourselves alive with a higher incarnation; an alive that differs from what we are is refuted
  too (a stale process with our name).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from lictor.common.gossip.messages import Address, Alive, Dead, Suspect, WireState

__all__ = [
    "Member",
    "MemberState",
    "NodeState",
    "Verdict",
    "judge_alive",
    "judge_dead",
    "judge_suspect",
]


class MemberState(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "failed"
    LEFT = "left"

    @property
    def wire(self) -> WireState:
        return _TO_WIRE[self]

    @property
    def gone(self) -> bool:
        return self in (MemberState.DEAD, MemberState.LEFT)


_TO_WIRE = {MemberState.ALIVE: WireState.ALIVE, MemberState.SUSPECT: WireState.SUSPECT,
            MemberState.DEAD: WireState.DEAD, MemberState.LEFT: WireState.LEFT}


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A snapshot of one member, as handed to users of the core and the driver."""

    name: str
    addr: Address
    tags: Mapping[str, str]
    incarnation: int
    state: MemberState
    state_change: float  # core time of the last state change


@dataclass(slots=True, kw_only=True)
class NodeState:
    """The core's mutable record of a member (never handed out: see ``snapshot``)."""

    name: str
    addr: Address
    tags: dict[str, str] = field(default_factory=dict)
    incarnation: int = 0
    state: MemberState = MemberState.ALIVE
    state_change: float = 0.0

    def snapshot(self) -> Member:
        return Member(name=self.name, addr=self.addr, tags=dict(self.tags),
                      incarnation=self.incarnation, state=self.state,
                      state_change=self.state_change)


class Verdict(enum.Enum):
    IGNORE = "ignore"      # old or redundant news
    APPLY = "apply"        # take it, re-gossip it
    REFUTE = "refute"      # it is about us and wrong: re-announce ourselves, higher incarnation
    CONFIRM = "confirm"    # another suspicion of an already-suspected member
    CONFLICT = "conflict"  # the same name at another address, refused


def judge_alive(current: NodeState | None, msg: Alive, *, is_self: bool, now: float,
                reclaim_time: float) -> Verdict:
    if current is None:
        return Verdict.APPLY
    if is_self:
        if msg.incarnation < current.incarnation:
            return Verdict.IGNORE
        if (msg.incarnation == current.incarnation and msg.addr == current.addr
                and dict(msg.tags) == current.tags):
            return Verdict.IGNORE  # our own announcement coming back
        return Verdict.REFUTE
    updates_addr = False
    if msg.addr != current.addr:
        can_reclaim = reclaim_time > 0 and now - current.state_change > reclaim_time
        if current.state is MemberState.LEFT or (current.state is MemberState.DEAD and can_reclaim):
            updates_addr = True
        else:
            return Verdict.CONFLICT
    if msg.incarnation <= current.incarnation and not updates_addr:
        return Verdict.IGNORE
    return Verdict.APPLY


def judge_suspect(current: NodeState | None, msg: Suspect, *, is_self: bool,
                  timer_running: bool) -> Verdict:
    if current is None or msg.incarnation < current.incarnation:
        return Verdict.IGNORE
    if timer_running:
        return Verdict.CONFIRM
    if current.state is not MemberState.ALIVE:
        return Verdict.IGNORE
    return Verdict.REFUTE if is_self else Verdict.APPLY


def judge_dead(current: NodeState | None, msg: Dead, *, is_self: bool, leaving: bool) -> Verdict:
    if current is None or msg.incarnation < current.incarnation:
        return Verdict.IGNORE
    if current.state.gone:
        return Verdict.IGNORE
    if is_self and not leaving:
        return Verdict.REFUTE
    return Verdict.APPLY
