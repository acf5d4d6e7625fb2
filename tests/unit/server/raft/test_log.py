from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lictor.server.raft.log import RaftLog
from lictor.server.raft.messages import (
    ConfState,
    Entry,
    LogCompactedError,
    LogUnavailableError,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
)
from lictor.server.raft.storage import MemoryStorage


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(t, start + i) for i, t in enumerate(terms)]


def test_maybe_append_truncates_conflicting_tail() -> None:
    rl = RaftLog(MemoryStorage())
    rl.append(ents(1, 1, 2, 2))
    assert rl.maybe_append(2, 1, 0, ents(3, 3, start=3)) == 4
    assert [e.term for e in rl.all_entries()] == [1, 1, 3, 3]
    assert rl.maybe_append(4, 2, 0, ents(3, start=5)) is None  # prev term mismatch


def test_maybe_append_refuses_to_truncate_committed() -> None:
    rl = RaftLog(MemoryStorage())
    rl.append(ents(1, 1, 2))
    rl.commit_to(3)
    with pytest.raises(AssertionError):
        rl.maybe_append(1, 1, 3, ents(5, 5, start=2))


def test_find_conflict_by_term_skips_whole_terms() -> None:
    rl = RaftLog(MemoryStorage())
    rl.append(ents(1, 1, 1, 4, 4, 5, 5, 6, 6, 6))
    assert rl.find_conflict_by_term(10, 3) == (3, 1)
    assert rl.find_conflict_by_term(10, 5) == (7, 5)
    assert rl.find_conflict_by_term(99, 6) == (10, 6)
    assert rl.find_conflict_by_term(10, 0) == (0, 0)


def test_commit_and_applied_bounds() -> None:
    rl = RaftLog(MemoryStorage())
    rl.append(ents(1, 1))
    with pytest.raises(AssertionError):
        rl.commit_to(3)
    rl.commit_to(2)
    rl.commit_to(1)  # never backwards
    assert rl.committed == 2
    with pytest.raises(AssertionError):
        rl.applied_to(3)
    assert not rl.maybe_commit(2, 1)
    rl.append(ents(2, start=3))
    assert not rl.maybe_commit(3, 1)  # entry of another term: not by counting
    assert rl.maybe_commit(3, 2)


def test_stable_to_moves_entries_to_storage() -> None:
    st_ = MemoryStorage()
    rl = RaftLog(st_)
    rl.append(ents(1, 1, 2))
    st_.append(rl.unstable_entries())
    rl.stable_to(3, 2)
    assert rl.unstable.entries == [] and rl.unstable.offset == 4
    assert [e.term for e in rl.entries(1, 4)] == [1, 1, 2]
    rl.stable_to(3, 9)  # wrong term: ignored


def test_snapshot_restore_and_compaction() -> None:
    st_ = MemoryStorage()
    st_.append(ents(1, 1, 1, 2, 2))
    cs = ConfState(voters=frozenset({1}))
    st_.create_snapshot(3, cs, b"snap")
    st_.compact(3)
    assert st_.first_index() == 4 and st_.term(3) == 1
    with pytest.raises(LogCompactedError):
        st_.term(2)
    with pytest.raises(LogUnavailableError):
        st_.term(6)
    with pytest.raises(SnapshotOutOfDateError):
        st_.create_snapshot(2, cs, b"")
    rl = RaftLog(st_)
    assert rl.committed == 3 and rl.first_index() == 4
    with pytest.raises(LogCompactedError):
        rl.entries(2, 5)
    snap = Snapshot(metadata=SnapshotMetadata(index=10, term=3, conf_state=cs), data=b"x")
    rl.restore(snap)
    assert rl.last_index() == 10 and rl.term(10) == 3 and rl.committed == 10
    assert not rl.has_next_committed_entries()


@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=12), st.lists(st.integers(1, 4), max_size=5)),
        max_size=25,
    )
)
def test_log_agrees_with_a_list_model(ops: list[tuple[int, list[int]]]) -> None:
    """Random appends (at possibly conflicting positions) against a plain-list reference,
    with random persistence to storage in between."""
    storage = MemoryStorage()
    rl = RaftLog(storage)
    model: list[int] = []  # model[i] = term of index i+1
    for at, terms in ops:
        if not terms:
            storage.append(rl.unstable_entries())
            if rl.unstable.entries:
                last = rl.unstable.entries[-1]
                rl.stable_to(last.index, last.term)
            continue
        at = min(at, len(model) + 1)
        # terms must not decrease along the log
        base = model[at - 2] if at >= 2 else 1
        norm = [max(base, t + base - 1) for t in sorted(terms)]
        rl.append([Entry(t, at + i) for i, t in enumerate(norm)])
        model = model[: at - 1] + norm
        assert rl.last_index() == len(model)
        assert [rl.term(i + 1) for i in range(len(model))] == model
        assert [e.term for e in rl.entries(1, len(model) + 1)] == model
