"""The checkers on synthetic histories: they must accept what is linearizable and reject what
is not (stale read, lost update, lost write, double lock), and minimise failures."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checkers import (check_linearizability, lock_safety, lost_writes,
                            worst_unavailability)
from chaos.history import KV, LOCK, Op
from chaos.linearizability import (INF, MutexModel, Operation, RegisterModel, check_operations,
                                   minimal_window)

R = RegisterModel()


def op(i: int, f: str, arg: object, call: float, ret: float, out: object = None,
       client: int = 0, unknown: bool = False) -> Operation:
    return Operation(id=i, client=client, input=(f, arg), call=call, ret=INF if unknown else ret,
                     output=out, unknown=unknown)


# ----------------------------------------------------------------------------- register


def test_sequential_register_history_is_linearizable() -> None:
    h = [op(0, "write", "a", 0, 1), op(1, "read", None, 2, 3, "a"),
         op(2, "cas", ("a", "b"), 4, 5, True), op(3, "cas", ("a", "c"), 6, 7, False),
         op(4, "read", None, 8, 9, "b")]
    assert check_operations(R, h).ok is True


def test_read_of_initial_absent_value() -> None:
    assert check_operations(R, [op(0, "read", None, 0, 1, None)]).ok is True
    assert check_operations(R, [op(0, "read", None, 0, 1, "x")]).ok is False


def test_classic_stale_read_is_rejected() -> None:
    # w(a) completes, then w(b) completes, then a read returns a: stale
    h = [op(0, "write", "a", 0, 1), op(1, "write", "b", 2, 3, client=1),
         op(2, "read", None, 4, 5, "a", client=2)]
    res = check_operations(R, h)
    assert res.ok is False
    assert [o.id for o in res.window] == [1, 2]  # minimal: w(b) then the stale read


def test_concurrent_read_may_see_either_value() -> None:
    h = [op(0, "write", "a", 0, 1), op(1, "write", "b", 2, 6, client=1),
         op(2, "read", None, 3, 4, "a", client=2), op(3, "read", None, 4.5, 5, "b", client=3)]
    assert check_operations(R, h).ok is True
    # ...but not b then a: once a read saw b, a later read cannot see a
    h2 = h[:2] + [op(2, "read", None, 3, 4, "b", client=2), op(3, "read", None, 4.5, 5, "a", client=3)]
    assert check_operations(R, h2).ok is False


def test_lost_update_two_successful_cas_from_same_value() -> None:
    h = [op(0, "write", "0", 0, 1),
         op(1, "cas", ("0", "1"), 2, 4, True, client=1),
         op(2, "cas", ("0", "2"), 2.5, 4.5, True, client=2)]
    assert check_operations(R, h).ok is False


def test_maybe_applied_write_may_or_may_not_take_effect() -> None:
    base = [op(0, "write", "a", 0, 1), op(1, "write", "b", 2, 3, client=1, unknown=True)]
    # a read long after may see b (applied late) ...
    assert check_operations(R, base + [op(2, "read", None, 10, 11, "b", client=2)]).ok is True
    # ... or a (never applied) ...
    seen_a = base + [op(2, "read", None, 10, 11, "a", client=2)]
    assert check_operations(R, seen_a).ok is True
    # ... but not a after b was observed
    flip = base + [op(2, "read", None, 10, 11, "b", client=2), op(3, "read", None, 12, 13, "a", client=3)]
    assert check_operations(R, flip).ok is False
    # and it cannot take effect before it was invoked
    early = [op(0, "write", "a", 0, 1), op(1, "read", None, 1.5, 1.8, "b", client=2),
             op(2, "write", "b", 2, 3, client=1, unknown=True)]
    assert check_operations(R, early).ok is False


def test_maybe_applied_cas_branches_on_state() -> None:
    h = [op(0, "write", "a", 0, 1), op(1, "cas", ("a", "c"), 2, 3, client=1, unknown=True),
         op(2, "read", None, 5, 6, "c", client=2)]
    assert check_operations(R, h).ok is True
    h_bad = [op(0, "write", "a", 0, 1), op(1, "cas", ("x", "c"), 2, 3, client=1, unknown=True),
             op(2, "read", None, 5, 6, "c", client=2)]
    assert check_operations(R, h_bad).ok is False


def test_minimal_window_finds_the_short_violation_inside_a_long_history() -> None:
    h = []
    t = 0.0
    for i in range(60):
        h.append(op(len(h), "write", f"v{i}", t, t + 0.5))
        h.append(op(len(h), "read", None, t + 0.6, t + 0.9, f"v{i}", client=1))
        t += 1
    # stale read in the middle: after v40 was written and read, someone reads v38
    bad_at = next(o for o in h if o.input == ("write", "v40")).ret
    h.append(op(len(h), "read", None, bad_at + 0.45, bad_at + 0.48, "v38", client=2))
    res = check_operations(R, h)
    assert res.ok is False
    assert len(res.window) == 2
    # the stale read plus the op that proves it stale (the write of v40, or the read that saw it)
    assert res.window[-1].output == "v38"
    assert res.window[0].input == ("write", "v40") or res.window[0].output == "v40"
    assert minimal_window(R, h) == res.window


def test_budget_exhaustion_is_undecided_not_a_pass() -> None:
    h = [op(i, "write", f"v{i}", 0, 10, client=i) for i in range(12)]
    h += [op(100 + i, "read", None, 11 + i, 11.5 + i, f"v{i}", client=50) for i in range(12)]
    assert check_operations(R, h, budget=50).ok is None


# ----------------------------------------------------------------------------- properties


@st.composite
def sequential_histories(draw: st.DrawFn) -> list[Operation]:
    """Ops run one at a time against a real register; outputs are the true ones."""
    n = draw(st.integers(0, 40))
    state: object = None
    t = 0.0
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["read", "write", "cas", "cas-hit"]))
        client = draw(st.integers(0, 4))
        gap = draw(st.floats(0.001, 1.0))
        dur = draw(st.floats(0.001, 1.0))
        if kind == "read":
            o = op(i, "read", None, t, t + dur, state, client)
        elif kind == "write":
            state = f"w{i}"
            o = op(i, "write", state, t, t + dur, None, client)
        else:
            expected = state if kind == "cas-hit" else draw(st.sampled_from([None, "w0", "zz"]))
            hit = expected == state
            if hit:
                state = f"c{i}"
            o = op(i, "cas", (expected, f"c{i}"), t, t + dur, hit, client)
        out.append(o)
        t += dur + gap
    return out


@settings(max_examples=80, deadline=None)
@given(sequential_histories(), st.randoms(use_true_random=False))
def test_property_any_sequential_history_is_linearizable(h: list[Operation], rnd: random.Random) -> None:
    rnd.shuffle(h)  # input order must not matter
    assert check_operations(R, h).ok is True


@settings(max_examples=60, deadline=None)
@given(sequential_histories())
def test_property_stretching_ops_keeps_linearizability(h: list[Operation]) -> None:
    """Widening operations (more concurrency) can only add linearizations."""
    wide = [Operation(id=o.id, client=o.client, input=o.input, call=o.call - 0.7, ret=o.ret + 0.7,
                      output=o.output) for o in h]
    assert check_operations(R, wide).ok is True


@settings(max_examples=60, deadline=None)
@given(sequential_histories(), st.data())
def test_property_corrupting_a_read_after_a_write_is_caught(h: list[Operation], data: st.DataObject) -> None:
    reads = [k for k, o in enumerate(h) if o.input[0] == "read" and k > 0]
    if not reads:
        return
    k = data.draw(st.sampled_from(reads))
    o = h[k]
    h[k] = Operation(id=o.id, client=o.client, input=o.input, call=o.call, ret=o.ret,
                     output="never-written")
    res = check_operations(R, h)
    assert res.ok is False
    assert any(w.id == o.id for w in res.window)


# ----------------------------------------------------------------------------- mutex


def test_mutex_double_acquire_is_not_linearizable() -> None:
    M = MutexModel()
    ok = [op(0, "acquire", "s1", 0, 1, True), op(1, "acquire", "s2", 2, 3, False, client=1),
          op(2, "release", "s1", 4, 5, True), op(3, "acquire", "s2", 6, 7, True, client=1),
          op(4, "read", None, 8, 9, "s2", client=2)]
    assert check_operations(M, ok).ok is True
    bad = [op(0, "acquire", "s1", 0, 1, True), op(1, "acquire", "s2", 2, 3, True, client=1)]
    assert check_operations(M, bad).ok is False


# ----------------------------------------------------------------------------- history-level


def hop(i: int, kind: str, key: str, f: str, value: object, call: float, ret: float,
        status: str = "ok", output: object = None, process: int = 0) -> Op:
    return Op(id=i, process=process, node="s1", kind=kind, key=key, f=f, value=value,
              call=call, ret=ret, status=status, output=output)


def test_lost_write_detected_from_final_read() -> None:
    h = [hop(0, KV, "k", "write", "a", 0, 1), hop(1, KV, "k", "write", "b", 2, 3, process=1),
         hop(2, KV, "k", "cas", ["b", "c"], 4, 5, output=True, process=2)]
    assert lost_writes(h, {"k": "c"}) == []
    lost = lost_writes(h, {"k": "a"})  # b and c were acknowledged after a completed
    assert [x["op"] for x in lost] == [1, 2]
    assert len(lost_writes(h, {"k": None})) == 3
    # a maybe-applied write of the final value is a legal explanation
    h.append(hop(3, KV, "k", "write", "d", 6, 7, status="info", process=3))
    assert lost_writes(h, {"k": "d"}) == []


def test_history_level_linearizability_fails_with_window_text() -> None:
    h = [hop(0, KV, "k", "write", "a", 0, 1), hop(1, KV, "k", "write", "b", 2, 3, process=1),
         hop(2, KV, "k", "read", None, 4, 5, output="a", process=2),
         hop(3, KV, "j", "write", "x", 0, 1), hop(4, KV, "j", "read", None, 2, 3, output="x"),
         hop(5, KV, "j", "write", "y", 4, 5, status="fail"),  # definite failure: never happened
         hop(6, KV, "j", "read", None, 6, 7, output="x")]
    rep = check_linearizability(h)
    assert rep.ok is False and rep.per_key == {"j": True, "k": False}
    assert "key 'k' is not linearizable" in rep.explain()
    assert "read(None) -> 'a'" in rep.explain()


def test_lock_safety_overlap_and_observed_holder() -> None:
    good = [hop(0, LOCK, "l", "acquire", "s1", 0, 1, output=True),
            hop(1, LOCK, "l", "release", "s1", 2, 3, output=True),
            hop(2, LOCK, "l", "acquire", "s2", 2.5, 3.5, output=True, process=1),
            hop(3, LOCK, "l", "release", "s2", 5, 6, output=True, process=1),
            hop(4, LOCK, "l", "read", None, 4, 4.5, output="s2", process=2)]
    assert lock_safety(good) == []
    bad = [hop(0, LOCK, "l", "acquire", "s1", 0, 1, output=True),
           hop(1, LOCK, "l", "acquire", "s2", 1.5, 2, output=True, process=1),
           hop(2, LOCK, "l", "release", "s1", 3, 4, output=True),
           hop(3, LOCK, "l", "read", None, 2.2, 2.5, output=None, process=2)]
    problems = lock_safety(bad)
    assert any("held the lock at the same time" in p for p in problems)
    assert any("saw holder None" in p for p in problems)


def test_worst_unavailability() -> None:
    h = [hop(0, KV, "k", "read", None, 0, 1), hop(1, KV, "k", "read", None, 1, 2),
         hop(2, KV, "k", "write", "a", 2, 9, status="info"), hop(3, KV, "k", "read", None, 7, 8)]
    assert worst_unavailability(h, 0.0, 10.0) == 6.0


def _with_maybe_writes(every: int) -> list[Operation]:
    h = []
    t = 0.0
    for i in range(200):
        h.append(op(len(h), "write", f"v{i}", t, t + 0.5, client=i % 3))
        if i % every == 7:  # a client timed out on its write: maybe applied, at any time later
            h.append(op(len(h), "write", f"lost{i}", t + 0.1, t + 0.2, client=9 + i, unknown=True))
        h.append(op(len(h), "read", None, t + 0.6, t + 0.9, f"v{i}", client=3))
        t += 1
    return h


def test_maybe_applied_writes_do_not_hide_a_stale_read() -> None:
    """Each maybe-applied write can double the naive search; with the dominance pruning a
    stale read behind several of them is still decided within a small budget."""
    h = _with_maybe_writes(every=40)
    assert sum(o.unknown for o in h) == 5
    assert check_operations(R, h, budget=200_000).ok is True
    h.append(op(len(h), "read", None, 201, 202, "v150", client=4))  # stale
    res = check_operations(R, h, budget=200_000)
    assert res.ok is False
    assert res.window[-1].output == "v150"


def test_too_many_maybe_applied_writes_is_undecided_never_a_pass() -> None:
    """The known limit: proving a violation behind many maybe-applied writes can exhaust the
    budget. The answer is then None (the run is not valid), never True."""
    h = _with_maybe_writes(every=15)
    h.append(op(len(h), "read", None, 201, 202, "v150", client=4))
    assert check_operations(R, h, budget=20_000).ok in (False, None)


def test_minimal_window_keeps_ops_in_flight_so_it_never_blames_a_legal_pair() -> None:
    """Cutting a window out of a history must not invent a violation: w(b) is still running
    when 'read a, read b' happen, so that pair is legal; the real culprit is the read of zzz."""
    h = [op(0, "write", "a", 0, 1), op(1, "write", "b", 2, 10, client=1),
         op(2, "read", None, 3, 4, "a", client=2), op(3, "read", None, 5, 6, "b", client=2),
         op(4, "read", None, 7, 8, "zzz", client=2)]
    res = check_operations(R, h)
    assert res.ok is False
    definite = [o.id for o in res.window if not o.unknown]
    assert 4 in definite and 2 not in definite
    assert any(o.id == 1 and o.unknown for o in res.window)  # w(b) carried in as maybe-applied
