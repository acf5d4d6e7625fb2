"""What linear-time regexes cost a ``?filter=... matches`` (issue 18 item 11).

Filters 10,000 health-entry-shaped rows with ``Service.Service matches "<pattern>"`` through
:func:`lictor.common.filter.compile_filter` (RE2) and, as the anchor, through the same filter
tree whose leaf uses Python's backtracking ``re`` (what the code did before). The two alternate
within every repeat; the script prints each side's median and spread (min..max) in microseconds
per row and the median ratio RE2 / re.

    .venv/bin/python bench/filter/run.py [--rows 10000] [--repeats 15]

A pure in-process CPU measurement: no sockets, no processes.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Any

from lictor.common import filter as flt

PATTERNS = ["^web-[0-9]+$", "(?i)API", "db|cache|queue"]


def rows(n: int) -> list[dict[str, Any]]:
    kinds = ["web", "api", "db", "cache", "queue", "worker"]
    return [{"Node": {"Node": f"node-{i % 50}"},
             "Service": {"Service": f"{kinds[i % len(kinds)]}-{i}", "Tags": ["v1"], "Port": 8000 + i % 100},
             "Checks": [{"Status": "passing"}]} for i in range(n)]


class _PyRe:
    """The anchor: the filter's regex leaf on Python's re (search returns a bool, like RE2's)."""

    def __init__(self, pattern: str) -> None:
        self._rx = re.compile(pattern)
        self.pattern = pattern

    def search(self, text: str) -> bool:
        return self._rx.search(text) is not None

    def fullmatch(self, text: str) -> bool:
        return self._rx.fullmatch(text) is not None


def build(pattern: str, engine: str) -> flt.Filter:
    if engine == "re2":
        return flt.compile_filter(f'Service.Service matches "{pattern}"')
    original = flt.compile_pattern
    flt.compile_pattern = _PyRe  # type: ignore[assignment]
    try:
        return flt.compile_filter(f'Service.Service matches "{pattern}"')
    finally:
        flt.compile_pattern = original


def per_row_us(f: flt.Filter, data: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    f.apply(data)
    return (time.perf_counter() - t0) / len(data) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    data = rows(a.rows)
    print(f"{a.rows} rows, {a.repeats} alternating repeats; microseconds per row, median (min..max)")
    for pattern in PATTERNS:
        re2_f, re_f = build(pattern, "re2"), build(pattern, "re")
        assert len(re2_f.apply(data)) == len(re_f.apply(data)), pattern  # same answers
        got: dict[str, list[float]] = {"re2": [], "re": []}
        ratios: list[float] = []
        for i in range(a.repeats):
            order = [("re2", re2_f), ("re", re_f)] if i % 2 == 0 else [("re", re_f), ("re2", re2_f)]
            this = {name: per_row_us(f, data) for name, f in order}
            for name, v in this.items():
                got[name].append(v)
            ratios.append(this["re2"] / this["re"])
        line = "  ".join(f"{name} {statistics.median(v):.2f} ({min(v):.2f}..{max(v):.2f})" for name, v in got.items())
        print(f"{pattern!r:18} {line}  ratio re2/re {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}..{max(ratios):.2f})")


if __name__ == "__main__":
    main()
