"""SafetyChecker: Raft's safety properties, checked incrementally after every simulation step.

Each check is O(1) or O(nodes) per step except leader completeness, which scans the known
committed entries once per new leader. Every violation raises `SafetyViolation` with the facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lictor.server.raft import Entry, RaftCore, Role, Snapshot
from lictor.server.raft.messages import EntryKind, LogCompactedError

__all__ = ["SafetyViolation", "SafetyChecker"]


class SafetyViolation(AssertionError):
    pass


@dataclass(slots=True)
class _Committed:
    term: int  # the entry's term
    crc: int  # FSM digest after applying it
    seen_at_term: int  # smallest observer term when it was seen applied (>= the committing term)


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> leader id (election safety)
        self.committed: dict[int, _Committed] = {}  # index -> applied entry facts
        self.max_committed = 0
        self.entries: dict[tuple[int, int], tuple[int, EntryKind, bytes]] = {}  # log matching
        self._last_commit: dict[tuple[int, int], int] = {}  # (node, incarnation) -> commit
        self.checks = 0

    # ---- hooks called by the network while carrying out a Ready

    def on_persisted(self, node: int, entries: Sequence[Entry], prev_terms: Sequence[int]) -> None:
        """Log matching, inductively: (index, term) must always denote the same entry with the
        same predecessor term. Together these imply the Log Matching property."""
        ents = self.entries
        for e, pt in zip(entries, prev_terms, strict=True):
            key = (e.index, e.term)
            val = (pt, e.kind, e.data)
            old = ents.get(key)
            if old is None:
                ents[key] = val
            elif old != val:
                raise SafetyViolation(
                    f"log matching: node {node} has entry {key} = {val!r}, another node had {old!r}"
                )

    def on_applied(self, node: int, index: int, term: int, crc: int, node_term: int) -> None:
        """State-machine safety: every node applies the same entry (and FSM digest) at an index."""
        c = self.committed.get(index)
        if c is None:
            self.committed[index] = _Committed(term, crc, node_term)
            if index > self.max_committed:
                self.max_committed = index
            return
        if c.term != term or c.crc != crc:
            raise SafetyViolation(
                f"state machine safety: node {node} applied index {index} term {term} crc {crc},"
                f" another node applied term {c.term} crc {c.crc}"
            )
        if node_term < c.seen_at_term:
            c.seen_at_term = node_term

    def on_snapshot(self, node: int, snap: Snapshot, crc: int) -> None:
        idx = snap.metadata.index
        c = self.committed.get(idx)
        if c is not None and (c.term != snap.metadata.term or c.crc != crc):
            raise SafetyViolation(
                f"snapshot at {idx} on node {node} (term {snap.metadata.term}, crc {crc}) disagrees"
                f" with applied entry (term {c.term}, crc {c.crc})"
            )

    # ---- after every step

    def after_step(self, node: int, incarnation: int, core: RaftCore) -> None:
        self.checks += 1
        rl = core.log
        if rl.applied > rl.committed:
            raise SafetyViolation(f"node {node}: applied {rl.applied} > committed {rl.committed}")
        key = (node, incarnation)
        prev = self._last_commit.get(key, 0)
        if rl.committed < prev:
            raise SafetyViolation(f"node {node}: commit went backwards {prev} -> {rl.committed}")
        self._last_commit[key] = rl.committed
        if core.role is Role.LEADER:
            holder = self.leaders.get(core.term)
            if holder is None:
                self.leaders[core.term] = node
                self._check_leader_completeness(node, core)
            elif holder != node:
                raise SafetyViolation(
                    f"election safety: nodes {holder} and {node} both leaders of term {core.term}"
                )

    def _check_leader_completeness(self, node: int, core: RaftCore) -> None:
        rl = core.log
        first = rl.first_index()
        for index, c in self.committed.items():
            if c.seen_at_term >= core.term or index < first:
                continue
            try:
                t = rl.term(index)
            except LogCompactedError:
                continue
            if t != c.term:
                raise SafetyViolation(
                    f"leader completeness: new leader {node} of term {core.term} has term {t} at"
                    f" committed index {index} (committed entry has term {c.term})"
                )

    # ---- at the end of a run

    @staticmethod
    def check_logs_match(cores: Sequence[RaftCore]) -> None:
        """Full pairwise Log Matching over every available entry (end-of-run cross-check)."""
        logs = []
        for c in cores:
            first, last = c.log.first_index(), c.log.last_index()
            logs.append((c.id, {e.index: e for e in c.log.entries(first, last + 1)}))
        for i, (ida, la) in enumerate(logs):
            for idb, lb in logs[i + 1 :]:
                common = sorted(set(la) & set(lb), reverse=True)
                agreed = False
                for idx in common:
                    if la[idx].term == lb[idx].term:
                        agreed = True
                    if agreed and la[idx] != lb[idx]:
                        raise SafetyViolation(
                            f"log matching: nodes {ida} and {idb} differ at {idx} below a match"
                        )
