"""Linearizability checking: Wing & Gong's search with Lowe's memoisation (as Porcupine does).

An :class:`Operation` has a call time, a return time and an output. An operation whose outcome is
unknown (the client timed out, or the connection broke after the request was sent) is
*maybe-applied*: its return time is +infinity and its output is not checked, exactly as Porcupine
and Knossos treat Jepsen's ``:info`` operations. It may therefore be linearized at any point after
its call, including "after everything", which is the same as never having happened.

Algorithm (Lowe, "Testing for linearizability", 2017; Porcupine's ``checkSingle``)::

    events sorted by time (calls before returns on ties, which is the permissive choice)
    candidates = the calls before the first return in the doubly linked event list
    for each candidate in turn: step the model; if the (linearized-set, state) pair is new,
    remember it, push (candidates, index, state), lift the call and its return out of the
    list, and start again with the new candidates
    no candidate left -> the op returning next can no longer be linearized: backtrack (pop,
    unlift, try the next candidate of that level)
    success when every op with a known outcome is linearized (maybe-applied ops can always
    go last); failure when a level runs out of candidates with an empty stack.

Beyond Porcupine: a configuration is pruned when one with the same set of linearized definite
ops, the same state and a *subset* of its linearized maybe-applied ops was already explored
(that one dominates: it can still apply or skip the others). This keeps violations behind a
handful of maybe-applied ops decidable; behind dozens the search can still exhaust its budget,
and the answer is then None (undecided), never True.

Models are deterministic: the next state depends only on (state, input); the recorded output is
only checked. That is why an unknown output needs no branching.

``ANY`` is an initial state used when a *window* of a history is checked on its own (the
minimiser): the value before the window is unknown, so the first read defines it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ANY", "INF", "Operation", "Model", "RegisterModel", "MutexModel", "CheckResult",
           "check_operations", "minimal_window"]

INF = math.inf
ANY = "\x00any"  # an unknown state (only at the start of a window)


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation on one key. ``input`` is ``(f, arg)``; ``ret`` is INF when unknown."""

    id: int
    client: int
    input: tuple[str, Any]
    call: float
    ret: float
    output: Any = None
    unknown: bool = False

    def describe(self) -> str:
        f, arg = self.input
        out = "?" if self.unknown else repr(self.output)
        end = "inf" if self.ret == INF else f"{self.ret:.4f}"
        return f"#{self.id} c{self.client} [{self.call:.4f}, {end}] {f}({arg!r}) -> {out}"


class Model(Protocol):
    """A deterministic sequential specification."""

    def init(self) -> Hashable: ...

    def step(self, state: Hashable, inp: tuple[str, Any], output: Any,
             unknown: bool) -> tuple[bool, Hashable]:
        """(is ``output`` legal from ``state``, next state). Unknown outputs are always legal."""
        ...


class RegisterModel:
    """A register with read / write / cas. The value ``None`` means "absent"."""

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, inp: tuple[str, Any], output: Any,
             unknown: bool) -> tuple[bool, Hashable]:
        f, arg = inp
        if f == "read":
            if state == ANY:
                return True, output if not unknown else ANY
            return unknown or output == state, state
        if f == "write":
            return True, arg
        if f == "cas":
            expected, new = arg
            if state == ANY:
                if unknown:
                    return True, ANY
                return True, new if output else ANY
            applies = state == expected
            if not unknown and bool(output) != applies:
                return False, state
            return True, new if applies else state
        raise ValueError(f"register: unknown operation {f!r}")


class MutexModel:
    """A lock held by at most one session: acquire(s) succeeds iff free or already held by s;
    release(s) succeeds iff held by s; read returns the holder (None when free)."""

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, inp: tuple[str, Any], output: Any,
             unknown: bool) -> tuple[bool, Hashable]:
        f, s = inp
        if f == "read":
            if state == ANY:
                return True, output if not unknown else ANY
            return unknown or output == state, state
        if f == "acquire":
            if state == ANY:
                return True, s if (output and not unknown) else ANY
            can = state is None or state == s
            if not unknown and bool(output) != can:
                return False, state
            return True, s if can else state
        if f == "release":
            if state == ANY:
                return True, None if (output and not unknown) else ANY
            can = state == s
            if not unknown and bool(output) != can:
                return False, state
            return True, None if can else state
        raise ValueError(f"mutex: unknown operation {f!r}")


@dataclass(slots=True)
class CheckResult:
    """``ok`` is True, False, or None when the search budget ran out (undecided)."""

    ok: bool | None
    steps: int = 0
    window: list[Operation] = field(default_factory=list)  # minimal offending window, if failed


class _Budget(Exception):
    pass


def _search(model: Model, ops: Sequence[Operation], initial: Hashable, budget: int) -> tuple[bool, int]:
    n = len(ops)
    if n == 0:
        return True, 0
    events = sorted(((op.call, 0, i) for i, op in enumerate(ops)),)
    events += [(op.ret, 1, i) for i, op in enumerate(ops)]
    events.sort()
    m = len(events)
    # node 0 is the head sentinel; node k+1 is events[k]; -1 ends the list
    nxt = list(range(1, m + 2))
    nxt[m] = -1
    prv = list(range(-1, m + 1))
    is_call = [False] * (m + 1)
    opid = [0] * (m + 1)
    ret_node = [0] * n
    for k, (_, kind, i) in enumerate(events, start=1):
        is_call[k] = kind == 0
        opid[k] = i
        if kind == 1:
            ret_node[i] = k
    definite = sum(1 for op in ops if not op.unknown)

    def lift(e: int) -> None:
        nxt[prv[e]] = nxt[e]
        if nxt[e] != -1:
            prv[nxt[e]] = prv[e]
        r = ret_node[opid[e]]
        nxt[prv[r]] = nxt[r]
        if nxt[r] != -1:
            prv[nxt[r]] = prv[r]

    def unlift(e: int) -> None:
        r = ret_node[opid[e]]
        nxt[prv[r]] = r
        if nxt[r] != -1:
            prv[nxt[r]] = r
        nxt[prv[e]] = e
        if nxt[e] != -1:
            prv[nxt[e]] = e

    def candidates() -> list[int]:
        """Calls before the first return (the minimal ops), in time order. Trying maybe-applied
        ops eagerly (as Porcupine does) is the fast path for real histories, where most timed
        out writes did take effect; trying definite ops first measured 100x slower on them."""
        out = []
        e = nxt[0]
        while e != -1 and is_call[e]:
            out.append(e)
            e = nxt[e]
        return out

    # Lowe's cache, keyed by (linearized definite ops, state). The value lists the sets of
    # maybe-applied ops linearized when that configuration was reached. A configuration whose
    # maybe-set is a superset of a cached one is dominated (the cached one could still apply or
    # skip those ops: it has every completion the new one has), so it is pruned.
    state = initial
    def_bits = 0
    unk_bits = 0
    cache: dict[tuple[int, Hashable], list[int]] = {}
    stack: list[tuple[list[int], int, Hashable]] = []
    cands = candidates()
    idx = 0
    steps = 0
    while True:
        if definite == 0:
            return True, steps
        steps += 1
        if steps > budget:
            raise _Budget(steps)
        if idx < len(cands):
            e = cands[idx]
            i = opid[e]
            op = ops[i]
            legal, new_state = model.step(state, op.input, op.output, op.unknown)
            if legal:
                if op.unknown:
                    nd, nu = def_bits, unk_bits | (1 << i)
                else:
                    nd, nu = def_bits | (1 << i), unk_bits
                key = (nd, new_state)
                seen = cache.get(key)
                if seen is None or not any(u & ~nu == 0 for u in seen):
                    if seen is None:
                        cache[key] = [nu]
                    else:
                        seen.append(nu)
                    stack.append((cands, idx, state))
                    state, def_bits, unk_bits = new_state, nd, nu
                    lift(e)
                    if not op.unknown:
                        definite -= 1
                    cands = candidates()
                    idx = 0
                    continue
            idx += 1
        else:
            if not stack:
                return False, steps
            cands, idx, state = stack.pop()
            i = opid[cands[idx]]
            if ops[i].unknown:
                unk_bits &= ~(1 << i)
            else:
                def_bits &= ~(1 << i)
                definite += 1
            unlift(cands[idx])
            idx += 1


def check_operations(model: Model, ops: Sequence[Operation], *, budget: int = 2_000_000,
                     minimise: bool = True, initial: Hashable | None = None) -> CheckResult:
    """Is this single-key history linearizable? On failure, the minimal window is attached."""
    init = model.init() if initial is None else initial
    try:
        ok, steps = _search(model, ops, init, budget)
    except _Budget as exc:
        return CheckResult(ok=None, steps=int(str(exc.args[0])))
    res = CheckResult(ok=ok, steps=steps)
    if not ok and minimise:
        res.window = minimal_window(model, ops, budget=budget)
    return res


def _nonlinearizable(model: Model, ops: Sequence[Operation], initial: Hashable, budget: int) -> bool:
    try:
        ok, _ = _search(model, ops, initial, budget)
    except _Budget:
        return False  # undecided windows are not reported as witnesses
    return not ok


def _first_true(lo: int, hi: int, pred: Callable[[int], bool]) -> int:
    """Smallest x in [lo, hi] with pred(x), assuming pred(hi) and (mostly) monotone."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _as_unknown(op: Operation) -> Operation:
    return Operation(id=op.id, client=op.client, input=op.input, call=op.call, ret=INF,
                     output=op.output, unknown=True)


def window_ops(ordered: Sequence[Operation], i: int, j: int) -> list[Operation]:
    """The ops of ``ordered[i:j]`` (sorted by call) as a history of their own, made sound:

    * ops called before the window and still running at its first call are added as
      maybe-applied (in reality they may have taken effect before or inside the window);
    * window ops still running when the first op *after* the window was called get their
      output unchecked (maybe-applied): they may have been ordered after excluded ops.

    Any linearization of the full history then restricts to one of the window (from the state
    ``ANY`` at its start), so a non-linearizable window is a genuine witness.
    """
    window = list(ordered[i:j])
    if not window:
        return window
    if j < len(ordered):
        cut = ordered[j].call
        window = [op if op.ret < cut else _as_unknown(op) for op in window]
    if i > 0:
        t1 = ordered[i].call
        window += [_as_unknown(op) for op in ordered[:i] if op.ret >= t1 and op.input[0] != "read"]
    return window


def minimal_window(model: Model, ops: Sequence[Operation], *, budget: int = 500_000) -> list[Operation]:
    """The shortest contiguous run (by call order) of ``ops`` that is still non-linearizable.

    A window that does not start at the beginning is checked from the unknown state ``ANY``
    (see :func:`window_ops` for why it is then a witness on its own). The search shrinks the
    end (prefixes from the real initial state), then the start, then tries shorter lengths
    around the result; linear in checks, each usually tiny.
    """
    ordered = sorted(ops, key=lambda o: (o.call, o.id))
    n = len(ordered)
    init = model.init()

    def bad(i: int, j: int) -> bool:  # window (i, j) non-linearizable?
        return _nonlinearizable(model, window_ops(ordered, i, j), init if i == 0 else ANY, budget)

    if not bad(0, n):
        return list(ordered)
    j = _first_true(1, n, lambda x: bad(0, x))
    while not bad(0, j):  # guard against non-monotone prefixes
        j += 1
    lo, hi = 0, j - 1
    while lo < hi:  # largest start that is still bad
        mid = (lo + hi + 1) // 2
        if bad(mid, j):
            lo = mid
        else:
            hi = mid - 1
    best = (lo, j) if bad(lo, j) else (0, j)
    length = best[1] - best[0] - 1
    while length >= 1:  # any shorter window nearby?
        found = None
        for s in range(max(0, best[0] - 20), min(n - length, best[1] + 20) + 1):
            if bad(s, s + length):
                found = (s, s + length)
                break
        if found is None:
            break
        best = found
        length -= 1
    return sorted(window_ops(ordered, *best), key=lambda o: (o.call, o.id))
