"""Micro-benchmark of the server RPC layer over one loopback connection.

Prints calls/s for 1, 16 and 64 concurrent callers sharing ONE multiplexed connection, and
one-way notifications/s (sender -> server handler, counted on arrival), each as the median of
N runs with min-max spread. Client and server share one event loop and one process, so the
figures are the whole round trip's CPU cost (both ends), not network latency.

    .venv/bin/python bench/rpc/bench_rpc.py [--runs 5] [--seconds 1.0] [--uvloop] [--payload 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from lictor.common.rpc.conn import PeerInfo, RPCClient, RPCServer


class EchoHandler:
    def __init__(self) -> None:
        self.notes = 0

    async def handle(self, method: str, args: dict[str, Any], peer: PeerInfo) -> Any:
        return args

    def notify(self, method: str, args: dict[str, Any], peer: PeerInfo) -> None:
        self.notes += 1


async def calls_per_second(client: RPCClient, addr: str, callers: int, seconds: float,
                           args: dict[str, Any]) -> float:
    done = 0
    stop = False

    async def caller() -> None:
        nonlocal done
        while not stop:
            await client.call(addr, "Echo", args)
            done += 1

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    stop = True
    n = done
    elapsed = time.perf_counter() - start
    await asyncio.gather(*tasks)
    return n / elapsed


async def notes_per_second(client: RPCClient, handler: EchoHandler, addr: str, seconds: float,
                           args: dict[str, Any]) -> float:
    """Send in batches of 256 and yield so the server can read; count what arrived."""
    before = handler.notes
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(256):
            client.notify(addr, "Raft.AppendEntries", args)
        await asyncio.sleep(0)
    await client.call(addr, "Echo", {})  # barrier: everything sent before it has arrived
    return (handler.notes - before) / (time.perf_counter() - start)


def fmt(samples: list[float]) -> str:
    med = statistics.median(samples)
    return (f"{med:>10,.0f}/s  (min {min(samples):,.0f}, max {max(samples):,.0f}, "
            f"spread {100 * (max(samples) - min(samples)) / med:.0f}%)")


async def main(args: argparse.Namespace) -> None:
    handler = EchoHandler()
    payload = {"term": 7, "leader": "10.0.0.1:8300", "entries": [b"x" * args.payload]}
    async with RPCServer(handler, host="127.0.0.1", port=0) as srv, \
            RPCClient(request_timeout=30.0) as client:
        addr = srv.addr
        await client.connect(addr)
        await calls_per_second(client, addr, 16, 0.3, payload)  # warm-up
        results: dict[str, list[float]] = {}
        for _ in range(args.runs):
            for callers in (1, 16, 64):
                r = await calls_per_second(client, addr, callers, args.seconds, payload)
                results.setdefault(f"calls, {callers:>2} concurrent", []).append(r)
            r = await notes_per_second(client, handler, addr, args.seconds, payload)
            results.setdefault("notifications", []).append(r)
        assert srv.stats.accepted == 1, "everything should have used one connection"
        assert client.stats.notifications_dropped == 0
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"lictor rpc, one connection, {loop}, {args.payload}-byte entry, "
          f"median of {args.runs} x {args.seconds}s")
    for name, samples in results.items():
        print(f"  {name:<22} {fmt(samples)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--payload", type=int, default=64)
    p.add_argument("--uvloop", action="store_true")
    ns = p.parse_args()
    if ns.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(ns))
