"""Checkers over a recorded history: linearizability per key, lost acknowledged writes, lock
safety, catalog convergence, and the worst unavailability window.

Each checker is a pure function of the history (and, for lost writes and convergence, of the
final reads taken after healing) and returns a small result record; ``run_all`` combines them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.history import CATALOG, KV, LOCK, Op
from chaos.linearizability import INF, CheckResult, MutexModel, Operation, RegisterModel, check_operations

__all__ = ["to_operations", "check_linearizability", "lost_writes", "lock_safety",
           "catalog_converged", "worst_unavailability", "LinearizabilityReport", "availability",
           "fault_key"]


def to_operations(ops: Sequence[Op]) -> list[Operation]:
    """History ops of one key -> checker operations. ``fail`` ops never happened and are dropped;
    ``info`` reads constrain nothing and are dropped; ``info`` writes are maybe-applied."""
    out = []
    for op in ops:
        if op.status == "fail":
            continue
        unknown = op.status == "info"
        if unknown and op.f == "read":
            continue
        arg = tuple(op.value) if isinstance(op.value, list) else op.value
        out.append(Operation(id=op.id, client=op.process, input=(op.f, arg), call=op.call,
                             ret=INF if unknown else op.ret, output=op.output, unknown=unknown))
    return out


@dataclass(slots=True)
class LinearizabilityReport:
    ok: bool | None  # None: undecided (search budget exhausted on some key)
    per_key: dict[str, bool | None] = field(default_factory=dict)
    windows: dict[str, list[Operation]] = field(default_factory=dict)

    def explain(self) -> str:
        lines = []
        for key, window in self.windows.items():
            lines.append(f"key {key!r} is not linearizable; shortest offending window "
                         f"({len(window)} ops):")
            lines += ["    " + op.describe() for op in window]
        return "\n".join(lines)


def check_linearizability(history: Sequence[Op], *, budget: int = 2_000_000,
                          minimise: bool = True) -> LinearizabilityReport:
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        if op.kind in (KV, LOCK):
            by_key[op.key].append(op)
    rep = LinearizabilityReport(ok=True)
    for key in sorted(by_key):
        ops = by_key[key]
        model = MutexModel() if ops[0].kind == LOCK else RegisterModel()
        res: CheckResult = check_operations(model, to_operations(ops), budget=budget, minimise=minimise)
        rep.per_key[key] = res.ok
        if res.ok is False:
            rep.ok = False
            rep.windows[key] = res.window
        elif res.ok is None and rep.ok is True:
            rep.ok = None
    return rep


def _acked_writes(ops: Sequence[Op]) -> list[tuple[Op, Any]]:
    out = []
    for op in ops:
        if op.status != "ok":
            continue
        if op.f == "write":
            out.append((op, op.value))
        elif op.f == "cas" and op.output is True:
            out.append((op, op.value[1]))
    return out


def lost_writes(history: Sequence[Op], final: dict[str, Any]) -> list[dict[str, Any]]:
    """Acknowledged writes that the final consistent read (after healing) does not reflect.

    Values are unique per write. The final value ``v`` was written by some op ``W``; an
    acknowledged write ``w`` is lost if ``W`` completed before ``w`` was invoked (so ``w``
    must have overwritten it), or if no op ever wrote ``v`` (including ``v`` absent).
    """
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        if op.kind == KV:
            by_key[op.key].append(op)
    lost = []
    for key, ops in sorted(by_key.items()):
        if key not in final:
            continue
        v = final[key]
        writers = [op for op in ops if op.status != "fail" and (
            (op.f == "write" and op.value == v) or (op.f == "cas" and op.value[1] == v))]
        writer_ret = min((INF if w.status == "info" else w.ret) for w in writers) if writers else None
        for w, value in _acked_writes(ops):
            if writer_ret is None or writer_ret < w.call:
                lost.append({"key": key, "op": w.id, "value": value, "final": v})
    return lost


def lock_safety(history: Sequence[Op]) -> list[str]:
    """No two sessions surely hold the same lock at overlapping times.

    A session surely holds a lock from the acknowledgement of its successful acquire until it
    *invokes* its next release (a release whose outcome is unknown may have taken effect at any
    time after it was sent). Reads of the lock holder are also checked: a read that returns a
    holder other than the one that surely held the lock for the read's whole duration is a
    violation.
    """
    held: dict[str, list[tuple[float, float, Any]]] = defaultdict(list)
    end = max((op.ret for op in history), default=0.0)
    by_proc: dict[tuple[str, int], list[Op]] = defaultdict(list)
    for op in history:
        if op.kind == LOCK and op.f in ("acquire", "release"):
            by_proc[(op.key, op.process)].append(op)
    for (key, _), ops in by_proc.items():
        ops.sort(key=lambda o: o.call)
        start = None
        session = None
        for op in ops:
            if op.f == "acquire" and op.status == "ok" and op.output is True and start is None:
                start, session = op.ret, op.value
            elif op.f == "release" and start is not None and op.status != "fail":
                held[key].append((start, op.call, session))
                start = None
        if start is not None:
            held[key].append((start, end, session))
    problems = []
    for key, ivs in held.items():
        ivs.sort()
        for i, (s1, e1, a) in enumerate(ivs):
            for s2, e2, b in ivs[i + 1:]:
                if s2 >= e1:
                    break
                if a != b and s2 < e1 and s1 < e2:
                    problems.append(f"{key}: sessions {a} [{s1:.3f},{e1:.3f}] and {b} "
                                    f"[{s2:.3f},{e2:.3f}] held the lock at the same time")
    for op in history:
        if op.kind == LOCK and op.f == "read" and op.status == "ok":
            for s, e, who in held.get(op.key, ()):
                if s <= op.call and op.ret <= e and op.output != who:
                    problems.append(f"{op.key}: read #{op.id} at [{op.call:.3f},{op.ret:.3f}] saw "
                                    f"holder {op.output!r} while {who} surely held the lock")
    return problems


def catalog_converged(views: dict[str, Any]) -> bool:
    """All servers report the same catalog (``views``: server -> comparable snapshot)."""
    vals = list(views.values())
    return bool(vals) and all(v == vals[0] for v in vals)


def worst_unavailability(history: Sequence[Op], start: float = 0.0, end: float | None = None) -> float:
    """Longest interval in which no KV operation completed successfully (seconds)."""
    done = sorted(op.ret for op in history if op.kind == KV and op.status == "ok")
    if end is None:
        end = max((op.ret for op in history), default=start)
    worst, prev = 0.0, start
    for t in done:
        worst = max(worst, t - prev)
        prev = max(prev, t)
    return max(worst, end - prev)


def catalog_ops_summary(history: Sequence[Op]) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for op in history:
        if op.kind == CATALOG:
            c[f"{op.f}:{op.status}"] += 1
    return dict(c)


def fault_key(kind: str, detail: dict[str, Any]) -> str:
    """The reporting key of a fault window (a kill of the leader counts as kill-leader)."""
    return "kill-leader" if kind == "kill" and detail.get("leader") else kind


def _write_gaps(history: Sequence[Op], start: float, end: float) -> list[tuple[float, float]]:
    """Intervals between consecutive acknowledged KV writes (write / successful-or-not CAS)."""
    done = sorted(op.ret for op in history
                  if op.kind == KV and op.f in ("write", "cas") and op.status == "ok")
    gaps, prev = [], start
    for t in done:
        if t > prev:
            gaps.append((prev, t))
        prev = max(prev, t)
    if end > prev:
        gaps.append((prev, end))
    return gaps


def availability(history: Sequence[Op], windows: Sequence[tuple[str, float, float]],
                 end: float | None = None) -> dict[str, dict[str, Any]]:
    """Per fault kind: the share of operations invoked during its windows that were acknowledged
    (``ok``), and the longest write unavailability touching one of its windows (the longest
    interval without an acknowledged KV write that overlaps the window: the recovery after the
    window counts). ``none`` is the time outside every window. ``windows``: (kind, start, end).
    """
    if end is None:
        end = max((op.ret for op in history), default=0.0)
    gaps = _write_gaps(history, 0.0, end)
    out: dict[str, dict[str, Any]] = {}

    def add(kind: str, ops: list[Op], longest: float, n_windows: int) -> None:
        r = out.setdefault(kind, {"windows": 0, "ops": 0, "acked": 0, "longest_write_unavailability_s": 0.0})
        r["windows"] += n_windows
        r["ops"] += len(ops)
        r["acked"] += sum(1 for op in ops if op.status == "ok")
        r["longest_write_unavailability_s"] = round(max(r["longest_write_unavailability_s"], longest), 3)

    ordered = sorted(history, key=lambda o: o.call)
    calls = [op.call for op in ordered]
    gap_ends = [b for _, b in gaps]

    def gaps_touching(s: float, e: float) -> list[tuple[float, float]]:
        k = bisect.bisect_left(gap_ends, s)
        res = []
        while k < len(gaps) and gaps[k][0] <= e:
            res.append(gaps[k])
            k += 1
        return res

    inside = [False] * len(ordered)
    touched: set[tuple[float, float]] = set()
    for kind, s, e in windows:
        lo, hi = bisect.bisect_left(calls, s), bisect.bisect_right(calls, e)
        for k in range(lo, hi):
            inside[k] = True
        near = gaps_touching(s, e)
        touched.update(near)
        add(kind, ordered[lo:hi], max((b - a for a, b in near), default=0.0), 1)
    outside = [op for k, op in enumerate(ordered) if not inside[k]]
    add("none", outside, max((b - a for a, b in gaps if (a, b) not in touched), default=0.0), 0)
    for r in out.values():
        r["acked_share"] = round(r["acked"] / r["ops"], 4) if r["ops"] else None
    return out
