"""Gossip failure-detection benchmark on the simulated network (simulated time: fast).

For each cluster size and packet-loss rate: build a cluster with LAN timings, let it settle,
measure messages per member per second in steady state, then crash members one at a time and
record, for each crash, when the first member declared it FAILED and when each live member
learnt it. False positives are FAILED events about members that did not crash.

    .venv/bin/python bench/gossip/run.py                      # 10/100/1000 x 1%/5%
    .venv/bin/python bench/gossip/run.py --sizes 10,100 --crashes 5 --seeds 2

Prints a table and writes bench/results/gossip-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from lictor.common.gossip.members import MemberState
from lictor.common.gossip.sim import SimEvent, SimNetwork
from lictor.common.gossip.swim import EventKind, SwimConfig

RESULTS = Path(__file__).resolve().parents[1] / "results"


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def run(n: int, loss: float, seed: int, crashes: int, steady: float,
        per_crash: float) -> dict[str, object]:
    wall = time.perf_counter()
    net = SimNetwork(seed=seed, loss=loss, record_events=False)
    failed: list[SimEvent] = []
    suspects: list[SimEvent] = []

    def on_event(e: SimEvent) -> None:
        if e.event.kind is EventKind.FAILED:
            failed.append(e)
        elif e.event.kind is EventKind.SUSPECT:
            suspects.append(e)

    net.on_event = on_event
    # joins: each member through one random earlier member, as retry_join does
    if n > 200:  # the join storm is O(n^2) decodes in Python; start from a settled cluster
        net.add_settled_cluster(n)
    else:
        net.add_cluster(n)
    ok = net.run_until(net.now + 120 + n * 0.1, stop=net.converged, check_every=0.5)
    settle_at = net.now
    net.run_for(10)
    # steady state: messages per member per second
    before = net.messages_sent()
    b_bytes = sum(m.core.counters["bytes_sent"] for m in net.members.values())
    t0 = net.now
    net.run_for(steady)
    dt = net.now - t0
    msgs_rate = (net.messages_sent() - before) / n / dt
    bytes_rate = (sum(m.core.counters["bytes_sent"] for m in net.members.values()) - b_bytes) / n / dt
    fp_before_crash = len(failed)
    sus_before = len(suspects)

    detect_first: list[float] = []
    detect_all: list[float] = []
    detect_each: list[float] = []
    missed = 0
    crashed: set[str] = set()
    for c in range(crashes):
        live = [m.name for m in net.live()]
        victim = net.rng.choice(live)
        crashed.add(victim)
        net.crash(victim)
        tc = net.now
        start = len(failed)
        observers = [x for x in live if x != victim]

        def all_know() -> bool:
            return all(
                (s := net.members[o].core.member(victim)) is None or s.state is MemberState.DEAD
                for o in observers)

        net.run_until(tc + per_crash, stop=all_know, check_every=0.25)
        times = [e.time - tc for e in failed[start:] if e.event.member.name == victim]
        if len(times) < len(observers):
            missed += len(observers) - len(times)
        if times:
            detect_first.append(min(times))
            detect_all.append(max(times))
            detect_each.extend(times)
        net.run_for(5)
    false_pos = [e for e in failed if e.event.member.name not in crashed]
    return {
        "members": n, "loss": loss, "seed": seed, "converged": ok,
        "settle_s": round(settle_at, 2),
        "msgs_per_member_s": round(msgs_rate, 3),
        "bytes_per_member_s": round(bytes_rate, 1),
        "crashes": crashes,
        "detect_first_p50": pct(detect_first, 50), "detect_first_p99": pct(detect_first, 99),
        "detect_p50": pct(detect_each, 50), "detect_p99": pct(detect_each, 99),
        "detect_all_max": max(detect_all) if detect_all else float("nan"),
        "missed_detections": missed,
        "false_positives": len(false_pos),
        "false_positive_pairs": len({(e.observer, e.event.member.name) for e in false_pos}),
        "false_suspicions_steady": sus_before,
        "false_positives_steady": fp_before_crash,
        "sim_seconds": round(net.now, 1),
        "wall_seconds": round(time.perf_counter() - wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--losses", default="0.01,0.05")
    ap.add_argument("--crashes", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steady", type=float, default=30.0, help="simulated seconds measured")
    ap.add_argument("--per-crash", type=float, default=120.0)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    losses = [float(x) for x in args.losses.split(",")]
    cfg = SwimConfig.lan("x")
    rows = []
    print(f"LAN timings: probe_interval={cfg.probe_interval}s probe_timeout={cfg.probe_timeout}s "
          f"suspicion_mult={cfg.suspicion_mult} max_mult={cfg.suspicion_max_timeout_mult} "
          f"gossip={cfg.gossip_interval}s x{cfg.gossip_nodes}")
    hdr = (f"{'members':>7} {'loss':>5} {'first p50':>9} {'first p99':>9} {'all p50':>8} "
           f"{'all p99':>8} {'missed':>6} {'false+':>6} {'msg/mbr/s':>9} {'B/mbr/s':>8} "
           f"{'wall s':>6}")
    print(hdr)
    for n in sizes:
        for loss in losses:
            for seed in range(1, args.seeds + 1):
                r = run(n, loss, seed, args.crashes, args.steady, args.per_crash)
                rows.append(r)
                print(f"{n:>7} {loss:>5.0%} {r['detect_first_p50']:>9.2f} "
                      f"{r['detect_first_p99']:>9.2f} {r['detect_p50']:>8.2f} "
                      f"{r['detect_p99']:>8.2f} {r['missed_detections']:>6} "
                      f"{r['false_positives']:>6} {r['msgs_per_member_s']:>9.2f} "
                      f"{r['bytes_per_member_s']:>8.0f} {r['wall_seconds']:>6}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"gossip-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "env": {"python": platform.python_version(), "machine": platform.machine(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "name"},
        "args": vars(args), "runs": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
