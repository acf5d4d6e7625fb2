"""Micro-benchmark: FileLogStore appends/s, one fsync per append vs group commit.

    .venv/bin/python bench/raft_fsync/bench_logstore.py [--runs 5] [--records 4000] [--size 128]

Modes (each a fresh log directory under $TMPDIR, real os.fsync):
  sequential   store.append([r]) in a loop: one write + one fsync per record
  group/N      N coroutines each looping `await store.append_async([r])`; writes that arrive
               while an fsync is in flight share the next one
Prints the median appends/s of --runs runs, the min..max spread, and fsyncs per append (counted
through the store's fsync seam). The whole box is shared (two cores), so compare ratios within
one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lictor.server.raft.filestore import FileLogStore
from lictor.server.raft.logstore import LogRecord


class CountingFsync:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        os.fsync(fd)


def _records(n: int, size: int) -> list[LogRecord]:
    payload = os.urandom(size)
    return [LogRecord(index=i, term=1, kind=0, data=payload) for i in range(1, n + 1)]


def run_sequential(directory: Path, records: list[LogRecord]) -> tuple[float, int]:
    fsync = CountingFsync()
    store = FileLogStore(directory, fsync=fsync)
    t0 = time.perf_counter()
    for r in records:
        store.append([r])
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed, fsync.calls


def run_group(directory: Path, records: list[LogRecord], appenders: int) -> tuple[float, int]:
    async def main() -> tuple[float, int]:
        fsync = CountingFsync()
        store = FileLogStore(directory, fsync=fsync)
        it = iter(records)

        async def appender() -> None:
            for r in it:  # shared iterator: indexes are taken in call order, so contiguous
                await store.append_async([r])

        t0 = time.perf_counter()
        await asyncio.gather(*(appender() for _ in range(appenders)))
        elapsed = time.perf_counter() - t0
        store.close()
        return elapsed, fsync.calls

    return asyncio.run(main())


def measure(
    name: str, fn: Callable[[Path, list[LogRecord]], tuple[float, int]], runs: int,
    records: list[LogRecord],
) -> None:
    rates, per_append = [], []
    for _ in range(runs):
        d = Path(tempfile.mkdtemp(prefix="lictor-bench-"))
        try:
            elapsed, syncs = fn(d, records)
        finally:
            shutil.rmtree(d)
        rates.append(len(records) / elapsed)
        per_append.append(syncs / len(records))
    print(
        f"{name:<14} {statistics.median(rates):>10,.0f} appends/s"
        f"   spread {min(rates):>9,.0f} .. {max(rates):>9,.0f}"
        f"   fsyncs/append {statistics.median(per_append):.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--size", type=int, default=128, help="payload bytes per record")
    args = ap.parse_args()
    records = _records(args.records, args.size)
    print(f"{args.records} records of {args.size} B, median of {args.runs} runs")
    measure("sequential", run_sequential, args.runs, records)
    for n in (1, 16, 64, 256):
        measure(f"group/{n}", functools.partial(run_group, appenders=n), args.runs, records)


if __name__ == "__main__":
    main()
