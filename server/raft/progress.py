"""The leader's view of one follower: how far it matched, what to send next, how to send it.

States (etcd's tracker.Progress):

    PROBE      --ack-->        REPLICATE   (found the match point; now pipeline optimistically)
    REPLICATE  --reject/unreachable--> PROBE
    any        --needs compacted entries--> SNAPSHOT --installed (match >= pending)--> PROBE

In PROBE the leader sends one AppendEntries and waits (`probe_sent`) for the answer or the next
heartbeat response. In REPLICATE it keeps up to `max_inflight` appends in flight (`Inflights`).
In SNAPSHOT it sends nothing but snapshot chunks.
"""

from __future__ import annotations

import enum
from collections import deque

from .messages import RaftIndex

__all__ = ["ProgressState", "Inflights", "Progress"]


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Sliding window of the last index of each in-flight append, oldest first."""

    __slots__ = ("_q", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("inflight capacity must be positive")
        self.capacity = capacity
        self._q: deque[RaftIndex] = deque()

    def add(self, last_index: RaftIndex) -> None:
        """Record an append ending at `last_index`. Obligation: the window is not full."""
        if len(self._q) >= self.capacity:
            raise AssertionError("Inflights.add on a full window")
        self._q.append(last_index)

    def free_le(self, index: RaftIndex) -> None:
        """Release every in-flight append ending at or below `index` (acknowledged)."""
        q = self._q
        while q and q[0] <= index:
            q.popleft()

    def free_first_one(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.capacity

    def reset(self) -> None:
        self._q.clear()

    def __len__(self) -> int:
        return len(self._q)


class Progress:
    """Mutable per-follower replication state, owned by the leader's RaftCore only.

    Invariant: `match < next`.
    """

    __slots__ = (
        "match",
        "next",
        "state",
        "pending_snapshot",
        "recent_active",
        "probe_sent",
        "inflights",
        "is_learner",
    )

    def __init__(self, *, next_index: RaftIndex, max_inflight: int, is_learner: bool = False) -> None:
        self.match: RaftIndex = 0
        self.next: RaftIndex = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot: RaftIndex = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.value} match={self.match} next={self.next}"
            f" inflight={len(self.inflights)} learner={self.is_learner})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Go back to probing from just after the match (or after a snapshot being installed)."""
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: RaftIndex) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: RaftIndex) -> bool:
        """An ack up to `n` arrived. Returns True if `match` moved forward."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def optimistic_update(self, n: RaftIndex) -> None:
        """REPLICATE: entries up to `n` were sent; assume they will land."""
        self.next = n + 1

    def maybe_decr_to(self, rejected: RaftIndex, match_hint: RaftIndex) -> bool:
        """A rejection of an append at prev-index `rejected` arrived; `match_hint` is where the
        follower suggests we retry. Returns False if the rejection is stale (ignore it)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """True if the leader must not send this follower more appends right now."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
