"""The report: a summary dict (printed as one JSON line) and a PNG timeline (latency and
throughput, fault windows shaded). matplotlib is optional: without it the plot is skipped and
the summary says so."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaos.history import Fault, Op

__all__ = ["op_counts", "plot"]

COLOURS = {"kill": "#d62728", "pause": "#ff7f0e", "partition": "#9467bd", "restart-all": "#8c564b",
           "disk-full": "#1f77b4", "fsync-error": "#17becf", "power-loss": "#393b79", "torn-tail": "#bcbd22",
           "corrupt-middle": "#7f7f7f", "clock-jump": "#e377c2", "clock-skew": "#f7b6d2",
           "stale-leader": "#2ca02c", "transfer-leader": "#98df8a",
           "replace-server": "#c49c94", "leave-rejoin": "#dbdb8d"}


def op_counts(history: Sequence[Op]) -> dict[str, Any]:
    st = Counter(op.status for op in history)
    by_kind = Counter(f"{op.kind}:{op.f}" for op in history)
    return {"ops": len(history), "ok": st.get("ok", 0), "failed": st.get("fail", 0),
            "unknown": st.get("info", 0), "by_op": dict(sorted(by_kind.items()))}


def plot(history: Sequence[Op], faults: Sequence[Fault], path: Path, title: str) -> str | None:
    """Write the timeline PNG; returns an error string instead of raising if it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install 'lictor[chaos]')"
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(12, 6.5),
                                   gridspec_kw={"height_ratios": [3, 2]})
    for f_name, marker in (("read", "."), ("write", "."), ("cas", "."), ("acquire", "."),
                           ("release", "."), ("register", "."), ("deregister", ".")):
        pts = [(op.call, (op.ret - op.call) * 1000) for op in history
               if op.f == f_name and op.status == "ok"]
        if pts:
            ax1.scatter([p[0] for p in pts], [p[1] for p in pts], s=3, marker=marker, label=f_name,
                        alpha=0.6)
    bad = [(op.call, (op.ret - op.call) * 1000) for op in history if op.status == "info"]
    if bad:
        ax1.scatter([p[0] for p in bad], [p[1] for p in bad], s=14, marker="x", color="red",
                    label="unknown (timeout)")
    ax1.set_yscale("log")
    ax1.set_ylabel("latency (ms)")
    ax1.legend(loc="upper right", fontsize=7, ncol=4, markerscale=3)
    end = max((op.ret for op in history), default=1.0)
    bins = int(end) + 1
    ok = [0] * bins
    failed = [0] * bins
    for op in history:
        b = min(bins - 1, int(op.ret))
        if op.status == "ok":
            ok[b] += 1
        else:
            failed[b] += 1
    xs = list(range(bins))
    ax2.step(xs, ok, where="post", label="ok ops/s", color="#2ca02c")
    ax2.step(xs, failed, where="post", label="failed+unknown ops/s", color="#d62728", alpha=0.7)
    ax2.set_ylabel("ops / s")
    ax2.set_xlabel("time (s)")
    ax2.legend(loc="upper right", fontsize=7)
    seen: set[str] = set()
    for f in faults:
        for ax in (ax1, ax2):
            ax.axvspan(f.start, f.end, color=COLOURS.get(f.kind, "grey"), alpha=0.18,
                       label=f.kind if ax is ax1 and f.kind not in seen else None)
        seen.add(f.kind)
        label = f.kind + (" (leader)" if f.detail.get("leader") else "")
        if f.kind == "partition":
            label = f"partition {f.detail.get('mode', '')}"
        if len(faults) <= 30:  # beyond that the labels overlap; the colours still tell
            ax1.text(f.start, ax1.get_ylim()[1], label, fontsize=6, rotation=90, va="top")
    ax1.legend(loc="upper right", fontsize=7, ncol=4, markerscale=3)
    ax1.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
