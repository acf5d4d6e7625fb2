"""The transmit-limited broadcast queue."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lictor.common.gossip.broadcast import BroadcastQueue, retransmit_limit


def test_retransmit_limit_is_mult_times_ceil_log10() -> None:
    assert retransmit_limit(4, 1) == 4
    assert retransmit_limit(4, 9) == 4
    assert retransmit_limit(4, 10) == 8
    assert retransmit_limit(4, 1000) == 16


def test_each_broadcast_is_sent_exactly_limit_times() -> None:
    q = BroadcastQueue(retransmit_mult=2)
    q.queue("a", b"A" * 10)
    sent = 0
    for _ in range(10):
        sent += len(q.get_broadcasts(overhead=0, limit=100, num_nodes=5))
    assert sent == 2 and len(q) == 0


def test_newer_news_about_a_member_invalidates_older() -> None:
    q = BroadcastQueue(retransmit_mult=3)
    q.queue("a", b"old-a", notify="t1")
    q.queue("b", b"b")
    q.queue("a", b"new-a")
    assert "t1" in q.finished
    got = q.get_broadcasts(overhead=0, limit=100, num_nodes=3)
    assert got == [b"new-a", b"b"]  # same transmits: newest first


def test_least_transmitted_go_first() -> None:
    q = BroadcastQueue(retransmit_mult=5)
    q.queue("a", b"aaaa")
    assert q.get_broadcasts(overhead=0, limit=100, num_nodes=3) == [b"aaaa"]
    q.queue("b", b"bbbb")
    assert q.get_broadcasts(overhead=0, limit=5, num_nodes=3) == [b"bbbb"]
    assert q.get_broadcasts(overhead=0, limit=5, num_nodes=3) == [b"bbbb"]
    assert q.get_broadcasts(overhead=0, limit=5, num_nodes=3) == [b"aaaa"]


def test_packing_skips_what_does_not_fit_and_keeps_going() -> None:
    q = BroadcastQueue(retransmit_mult=5)
    q.queue("small", b"s" * 10)
    q.queue("big", b"B" * 90)
    got = q.get_broadcasts(overhead=20, limit=100, num_nodes=3)
    assert got == [b"s" * 10]
    got = q.get_broadcasts(overhead=0, limit=100, num_nodes=3)
    assert got == [b"B" * 90, b"s" * 10]


@given(sizes=st.lists(st.integers(1, 400), min_size=1, max_size=60),
       limit=st.integers(50, 1400), overhead=st.integers(0, 40))
def test_packing_never_exceeds_the_budget(sizes: list[int], limit: int, overhead: int) -> None:
    q = BroadcastQueue(retransmit_mult=3)
    for i, n in enumerate(sizes):
        q.queue(f"m{i}", bytes(n))
    for _ in range(5):
        got = q.get_broadcasts(overhead=overhead, limit=limit, num_nodes=len(sizes))
        assert sum(map(len, got)) <= limit - overhead


def test_queue_depth_is_bounded_dropping_most_transmitted() -> None:
    q = BroadcastQueue(retransmit_mult=10, max_depth=3)
    q.queue("a", b"a")
    q.get_broadcasts(overhead=0, limit=10, num_nodes=3)
    for k in "bcd":
        q.queue(k, k.encode())
    assert len(q) == 3
    assert sorted(q.get_broadcasts(overhead=0, limit=10, num_nodes=3)) == [b"b", b"c", b"d"]


def test_keyless_broadcasts_are_never_invalidated() -> None:
    q = BroadcastQueue(retransmit_mult=1)
    q.queue(None, b"x")
    q.queue(None, b"y")
    assert len(q) == 2
