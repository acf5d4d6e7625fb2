"""StableStore conformance: MemoryStableStore and FileStableStore behave the same."""

from __future__ import annotations

import pytest

from lictor.server.raft.logstore import HardStateRecord, StableStore, VoteID

from .conftest import Harness


def test_fresh_store_loads_zero_state(stable_harness: Harness[StableStore]) -> None:
    assert stable_harness.store.load() == HardStateRecord(term=0, vote=None, commit=0)
    assert stable_harness.reopen().load() == HardStateRecord()


@pytest.mark.parametrize("vote", [None, 3, "node-b", 2**40])
def test_save_then_load_and_reopen(stable_harness: Harness[StableStore], vote: VoteID) -> None:
    stable_harness.store.save(5, vote, 17)
    expected = HardStateRecord(term=5, vote=vote, commit=17)
    assert stable_harness.store.load() == expected
    assert stable_harness.reopen().load() == expected


def test_last_save_wins(stable_harness: Harness[StableStore]) -> None:
    s = stable_harness.store
    s.save(1, 1, 0)
    s.save(2, None, 0)
    s.save(2, 3, 9)
    s.save(2, 3, 9)  # idempotent
    assert stable_harness.reopen().load() == HardStateRecord(term=2, vote=3, commit=9)


def test_protocol_is_satisfied(stable_harness: Harness[StableStore]) -> None:
    assert isinstance(stable_harness.store, StableStore)
