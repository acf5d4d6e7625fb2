"""Connect CA benchmarks (in-process; see README.md):

1. ``sign``: leaf-signing throughput on the leader. 1,000 services each send one CSR at once
   through the server RPC endpoint ``ConnectCA.Sign`` (in-process call on a dev server: CSR
   validation + signing + serial allocation; the agent's key generation is done beforehand and
   not timed). CSRMaxPerSecond is set to 0 (unlimited) for this run. Reports CSRs/s and the
   p50/p99 latency of the individual calls.
2. ``limited``: the same 1,000 services through agent leaf managers (key generation, CSR, RPC,
   backoff on "rate limit reached") with the default CSRMaxPerSecond=50: time until every
   service has a certificate, and how many CSRs were refused.
3. ``rotate``: a node with 100 sidecars holds current leaves; the root is rotated; time until
   every leaf has been re-issued by the new root (root-change jitter 0, and Consul's 30 s).

Each figure is the median of N runs with min-max. Usage:
    .venv/bin/python bench/connect/run.py [--runs 5] [--only sign,limited,rotate] [--rotate-jitter 0,30]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from typing import Any

from cryptography.hazmat.primitives import serialization

from lictor.agent.leafcert import LeafCertManager
from lictor.server import endpoints
from lictor.server.connect import ca, leader, state
from lictor.server.server import Server, ServerConfig


async def new_server(csr_max_per_second: float) -> Server:
    s = Server(ServerConfig(datacenter="dc1", node_name="bench", rpc_address="127.0.0.1:8300"))
    await leader.ca_initialize(s)
    await endpoints.call(s, "ConnectCA.ApplyConfiguration",
                         {"config": {"Config": {"CSRMaxPerSecond": csr_max_per_second}}})
    return s


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def bench_sign(n: int) -> dict[str, float]:
    s = await new_server(0)
    td = (await endpoints.call(s, "ConnectCA.Roots", {}))["result"]["TrustDomain"]
    csrs = []
    for i in range(n):
        k = ca.generate_private_key()
        csrs.append(ca.create_csr(k, [ca.spiffe_service_uri(td, "dc1", f"svc{i}")])
                    .public_bytes(serialization.Encoding.PEM).decode())
    service: list[float] = []  # time inside the call
    waited: list[float] = []   # time from the moment all 1,000 asked to the answer

    async def one(i: int) -> None:
        t = time.perf_counter()
        await endpoints.call(s, "ConnectCA.Sign", {"csr": csrs[i], "service": f"svc{i}"})
        end = time.perf_counter()
        service.append(end - t)
        waited.append(end - t0)

    # anchor, same run: the bare certificate maths (validate + sign_leaf) for the same CSRs, no
    # RPC, no rate limiter, no serial allocation -- the box is shared, so quote the ratio
    import datetime as dt

    cfg = s.store.ext["ca_config"]["config"]
    root = state.active_root(s.store)
    key = ca.load_private_key(state.signing_key_pem(s.store, root.id))
    rc = ca.load_cert(root.root_cert)
    a0 = time.perf_counter()
    for i in range(n):
        c = ca.load_csr(csrs[i])
        sid, dns = ca.validate_csr(c, trust_domain=td, datacenter="dc1", service=f"svc{i}")
        ca.sign_leaf(c, signer_key=key, signer_cert=rc, serial=i + 10, uri=sid.uri, dns_names=dns,
                     now=dt.datetime.now(dt.timezone.utc), ttl=dt.timedelta(seconds=cfg.leaf_cert_ttl))
    anchor = n / (time.perf_counter() - a0)
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    return {"csr_per_s": n / wall, "anchor_per_s": anchor, "ratio": (n / wall) / anchor, "call_p50_ms": pct(service, 50) * 1e3, "call_p99_ms": pct(service, 99) * 1e3,
            "client_p50_ms": pct(waited, 50) * 1e3, "client_p99_ms": pct(waited, 99) * 1e3, "total_s": wall}


class CountingRPC:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.refused = 0
        self.calls = 0

    async def __call__(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "ConnectCA.Sign":
            self.calls += 1
        try:
            return await endpoints.call(self.server, name, args)
        except leader.RateLimitedError:
            self.refused += 1
            raise


async def bench_limited(n: int) -> dict[str, float]:
    s = await new_server(50.0)
    rpc = CountingRPC(s)
    mgr = LeafCertManager(rpc=rpc, datacenter="dc1", root_change_jitter=0)
    t0 = time.perf_counter()
    await asyncio.gather(*(mgr.get(f"svc{i}") for i in range(n)))
    wall = time.perf_counter() - t0
    await mgr.close()
    return {"csr_per_s": n / wall, "total_s": wall, "refused": rpc.refused, "sign_calls": rpc.calls}


async def bench_rotate(n: int, jitter: float) -> dict[str, float]:
    s = await new_server(50.0)  # the default limit
    rpc = CountingRPC(s)
    mgr = LeafCertManager(rpc=rpc, datacenter="dc1", root_change_jitter=jitter)
    # fill the node's leaves without the limit, then restore the default for the rotation
    await endpoints.call(s, "ConnectCA.ApplyConfiguration", {"config": {"Config": {"CSRMaxPerSecond": 0}}})
    await asyncio.gather(*(mgr.get(f"sidecar{i}") for i in range(n)))
    await endpoints.call(s, "ConnectCA.ApplyConfiguration", {"config": {"Config": {"CSRMaxPerSecond": 50}}})
    rpc.refused = 0
    t0 = time.perf_counter()
    new_root = await leader.rotate(s)
    while True:
        done = sum(1 for i in range(n) if mgr._leaves[f"sidecar{i}"].root_id == new_root)  # noqa: SLF001
        if done == n:
            break
        await asyncio.sleep(0.005)
    wall = time.perf_counter() - t0
    await mgr.close()
    return {"total_s": wall, "refused": rpc.refused}


def summarize(name: str, runs: list[dict[str, float]]) -> None:
    keys = runs[0].keys()
    parts = []
    for k in keys:
        xs = [r[k] for r in runs]
        parts.append(f"{k}={statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]")
    print(f"{name} (median [min-max] of {len(runs)}): " + ", ".join(parts), flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--sidecars", type=int, default=100)
    ap.add_argument("--only", default="sign,limited,rotate")
    ap.add_argument("--rotate-jitter", default="0,30")
    ap.add_argument("--limited-runs", type=int, default=3)
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    only = set(a.only.split(","))
    if "sign" in only:
        summarize(f"sign: {a.services} CSRs at once, RPC, unlimited",
                  [await bench_sign(a.services) for _ in range(a.runs)])
    if "limited" in only:
        summarize(f"limited: {a.services} services via leaf managers, CSRMaxPerSecond=50",
                  [await bench_limited(a.services) for _ in range(a.limited_runs)])
    if "rotate" in only:
        for j in (float(x) for x in a.rotate_jitter.split(",")):
            runs = a.runs if j < 1 else a.limited_runs
            summarize(f"rotate: {a.sidecars} sidecars re-issued, root-change jitter {j:g}s, CSRMaxPerSecond=50",
                      [await bench_rotate(a.sidecars, j) for _ in range(runs)])


if __name__ == "__main__":
    asyncio.run(main())
