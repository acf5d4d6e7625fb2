"""Catalog convergence: a service registered on one client agent -> visible in a blocking query
on another client agent. 3 servers + 2 clients as real processes on 127.0.0.1 (fast gossip and
50 ms Raft ticks, as the integration tests). Prints p50/p90/p99/max over N registrations.

    .venv/bin/python bench/cluster/convergence.py [-n 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.integration.meshproc import Mesh  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50)
    args = ap.parse_args()
    m = Mesh(Path(tempfile.mkdtemp(prefix="lictor-conv-")), servers=3, clients=2, distinct_hosts=False)
    try:
        m.start(timeout=90)
        a, b = m.clients
        time.sleep(2.0)
        lat: list[float] = []
        for i in range(args.n):
            name = f"conv{i}"
            idx, _ = b.indexed("/v1/catalog/services")
            seen = threading.Event()
            done_at: list[float] = []

            def watch() -> None:
                nonlocal idx
                while not seen.is_set():
                    with urllib.request.urlopen(f"{b.url}/v1/catalog/services?index={idx}&wait=10s", timeout=20) as r:
                        idx = int(r.headers["X-Consul-Index"])
                        if name in json.loads(r.read()):
                            done_at.append(time.perf_counter())
                            seen.set()

            t = threading.Thread(target=watch)
            t.start()
            time.sleep(0.05)  # the blocking query is parked
            t0 = time.perf_counter()
            a.json("PUT", "/v1/agent/service/register", {"Name": name, "Port": 1000 + i})
            t.join(30)
            lat.append((done_at[0] - t0) * 1000)
            time.sleep(0.1)
        lat.sort()
        q = statistics.quantiles(lat, n=100, method="inclusive")
        print(json.dumps({"n": len(lat), "p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1),
                          "p99_ms": round(q[98], 1), "min_ms": round(lat[0], 1), "max_ms": round(lat[-1], 1)}))
    finally:
        m.stop()


if __name__ == "__main__":
    main()
