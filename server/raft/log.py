"""RaftLog: the log as the core sees it, a stable prefix in storage plus an unstable tail.

    storage (persisted, read-only here)        unstable (in memory, not yet persisted)
    [first .. stable last]                      [offset .. last]      (+ maybe a snapshot)

Rules:
- entries reach storage only through a Ready; `stable_to` drops them from `unstable` afterwards.
- applied <= committed <= last_index() always; committed never decreases.
- an unstable snapshot replaces everything; until persisted, no committed entries are handed out.
"""

from __future__ import annotations

from collections.abc import Sequence

from .messages import (
    Entry,
    LogCompactedError,
    LogUnavailableError,
    RaftIndex,
    Snapshot,
    Term,
)
from .storage import StorageProtocol, limit_size

__all__ = ["Unstable", "RaftLog"]


class Unstable:
    """Entries (and maybe a snapshot) not yet written to storage. `entries[i].index == offset+i`."""

    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: RaftIndex) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> RaftIndex | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> RaftIndex | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: RaftIndex) -> Term | None:
        if i < self.offset:
            s = self.snapshot
            if s is not None and s.metadata.index == i:
                return s.metadata.term
            return None
        k = i - self.offset
        if k < len(self.entries):
            return self.entries[k].term
        return None

    def stable_to(self, i: RaftIndex, t: Term) -> None:
        """Entries up to `i` (with term `t`) were persisted. Ignored if the tail since changed."""
        gt = self.maybe_term(i)
        if gt is None or gt != t or i < self.offset:
            return
        del self.entries[: i + 1 - self.offset]
        self.offset = i + 1

    def stable_snap_to(self, i: RaftIndex) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        self.offset = s.metadata.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: Sequence[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replaces the whole unstable tail (and possibly part of storage).
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(ents)


class RaftLog:
    """Stable storage + unstable tail + the commit/applied cursors."""

    __slots__ = ("storage", "unstable", "committed", "applied")

    def __init__(self, storage: StorageProtocol) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed: RaftIndex = first - 1
        self.applied: RaftIndex = first - 1

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed} applied={self.applied}"
            f" unstable.offset={self.unstable.offset} len={len(self.unstable.entries)})"
        )

    # ---- indexes and terms

    def first_index(self) -> RaftIndex:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> RaftIndex:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def last_term(self) -> Term:
        return self.term(self.last_index())

    def term(self, i: RaftIndex) -> Term:
        """Term at `i`; 0 beyond the last index; raises LogCompactedError below the dummy."""
        u = self.unstable
        if i >= u.offset:
            # Invariant: with no unstable entries, last_index() == offset - 1.
            k = i - u.offset
            return u.entries[k].term if k < len(u.entries) else 0
        s = u.snapshot
        if s is not None:
            if i == s.metadata.index:
                return s.metadata.term
            if i < s.metadata.index:
                raise LogCompactedError(i)
        try:
            return self.storage.term(i)
        except LogUnavailableError:
            return 0

    def match_term(self, i: RaftIndex, t: Term) -> bool:
        try:
            return self.term(i) == t
        except LogCompactedError:
            return False

    def is_up_to_date(self, last_index: RaftIndex, last_term: Term) -> bool:
        """Raft §5.4.1: is a log ending at (last_index, last_term) at least as up-to-date?"""
        my_term = self.last_term()
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index())

    # ---- reading entries

    def entries(self, lo: RaftIndex, hi: RaftIndex, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi) limited by `max_bytes` (at least one). Raises LogCompactedError."""
        if lo >= hi:
            return []
        first = self.first_index()
        if lo < first:
            raise LogCompactedError(lo)
        last = self.last_index()
        if hi > last + 1:
            raise AssertionError(f"entries[{lo}, {hi}) out of bound last {last}")
        off = self.unstable.offset
        if hi <= off:
            return self.storage.entries(lo, hi, max_bytes)
        if lo >= off:
            return limit_size(self.unstable.entries[lo - off : hi - off], max_bytes)
        ents = self.storage.entries(lo, off, max_bytes)
        if len(ents) < off - lo:
            return ents  # storage already hit the size limit
        ents = ents + self.unstable.entries[: hi - off]
        return limit_size(ents, max_bytes)

    def all_entries(self) -> list[Entry]:
        """Every available entry (tests and debugging only)."""
        return self.entries(self.first_index(), self.last_index() + 1)

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    def has_next_committed_entries(self) -> bool:
        if self.unstable.snapshot is not None:
            return False
        return self.committed > self.applied

    def next_committed_entries(self, max_bytes: int | None = None) -> list[Entry]:
        if not self.has_next_committed_entries():
            return []
        lo = max(self.applied + 1, self.first_index())
        return self.entries(lo, self.committed + 1, max_bytes)

    # ---- appending

    def append(self, ents: Sequence[Entry]) -> RaftIndex:
        """Append at the entries' own indexes (truncating a conflicting tail). Never below commit."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"append after {after} is below committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: Sequence[Entry]) -> RaftIndex:
        """Index of the first entry whose term differs from ours (or that we lack); 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: RaftIndex, term: Term) -> tuple[RaftIndex, Term]:
        """Largest i <= index with term(i) <= term, and that term (fast-backtracking hint).

        Stops at the first unknown (compacted) index, returning it with term 0.
        """
        last = self.last_index()
        if index > last:
            index = last
        while True:
            try:
                t = self.term(index)
            except LogCompactedError:
                return index, 0
            if t <= term:
                return index, t
            index -= 1

    def maybe_append(
        self, index: RaftIndex, log_term: Term, committed: RaftIndex, ents: Sequence[Entry]
    ) -> RaftIndex | None:
        """The follower side of AppendEntries. Returns the last new index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        if ents:
            ci = self.find_conflict(ents)
            if ci:
                if ci <= self.committed:
                    raise AssertionError(
                        f"entry {ci} conflicts with committed entry (committed {self.committed})"
                    )
                self.append(ents[ci - ents[0].index :])
        self.commit_to(min(committed, last_new))
        return last_new

    # ---- cursors

    def commit_to(self, to: RaftIndex) -> None:
        if to > self.committed:
            if to > self.last_index():
                raise AssertionError(f"commit {to} is out of range [last {self.last_index()}]")
            self.committed = to

    def maybe_commit(self, max_index: RaftIndex, term: Term) -> bool:
        """Commit up to `max_index` only if that entry is of `term` (the leader's term)."""
        if max_index > self.committed and self.match_term(max_index, term):
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: RaftIndex) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise AssertionError(
                f"applied({i}) out of range [prev applied {self.applied}, committed {self.committed}]"
            )
        self.applied = i

    def stable_to(self, i: RaftIndex, t: Term) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: RaftIndex) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, s: Snapshot) -> None:
        """Replace the log with snapshot `s` (follower install). Commit jumps to its index."""
        self.committed = s.metadata.index
        self.unstable.restore(s)
