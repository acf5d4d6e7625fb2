"""Pure majority maths: the commit index a set of match indexes supports, and vote tallies.

Both functions take the voter set explicitly; ids outside it are ignored (learners' progress
may be passed in and must not count). Neither function keeps state.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from .messages import NodeID, RaftIndex

__all__ = ["VoteResult", "committed_index", "vote_result", "quorum_size"]


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_size(n_voters: int) -> int:
    """Smallest majority of `n_voters`."""
    return n_voters // 2 + 1


def committed_index(match: Mapping[NodeID, RaftIndex], voters: Collection[NodeID]) -> RaftIndex:
    """Largest index that a majority of `voters` have matched (missing voters count as 0).

    With no voters there is no quorum to commit anything: 0.
    """
    n = len(voters)
    if n == 0:
        return 0
    if n == 1:
        (only,) = voters
        return match.get(only, 0)
    srt = sorted(match.get(v, 0) for v in voters)
    # The quorum-th largest value: at least quorum_size voters have a match >= it.
    return srt[n - quorum_size(n)]


def vote_result(votes: Mapping[NodeID, bool], voters: Collection[NodeID]) -> VoteResult:
    """Tally `votes` (id -> granted) over `voters`.

    WON once a majority granted, LOST once a majority can no longer be reached, else PENDING.
    An empty voter set wins trivially (matches etcd's convention for an empty config half).
    """
    n = len(voters)
    if n == 0:
        return VoteResult.WON
    granted = rejected = 0
    for v in voters:
        r = votes.get(v)
        if r is True:
            granted += 1
        elif r is False:
            rejected += 1
    q = quorum_size(n)
    if granted >= q:
        return VoteResult.WON
    if n - rejected >= q:
        return VoteResult.PENDING
    return VoteResult.LOST
