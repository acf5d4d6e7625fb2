"""Raft write benchmark: a 3-server Lictor cluster against a 3-member etcd cluster (the anchor).

    .venv/bin/python bench/raft/run.py            # 3 rounds x 4 concurrencies x 10 s + failover x5, ~13 min
    .venv/bin/python bench/raft/run.py --quick    # 1 round, 3 s points, failover x1, ~2 min
    .venv/bin/python bench/raft/run.py --systems etcd --no-failover
    .venv/bin/python bench/raft/run.py --profile  # + py-spy on the Lictor leader at -c256

Throughput: KV PUT of 100-byte values under distinct keys, wrk -t1 (-t2 at 256) -cC for C in
1, 16, 64, 256, sent to the leader (Lictor `PUT /v1/kv/<key>`, etcd `POST /v3/kv/put` through its
gRPC JSON gateway); for Lictor also "spread" over all three servers (wrk -t3, one thread per
server, C rounded down to a multiple of 3; followers forward to the leader). Both on loopback,
fsync on. Rounds alternate the systems (round 1: Lictor then etcd, round 2: etcd then Lictor,
...), each system gets a fresh cluster per round, only one cluster runs at a time. After every
point a follower reads back (consistently) the key count under the point's prefix and a few keys.

Failover: fresh cluster, 16 asyncio writers against the two followers, SIGKILL the leader after
3 s; window = kill -> first success after the last failure, plus the longest gap between
successes. Alternating systems, --failover-repeats (5) each.

Prints a table of median [min .. max] per figure and the ratio Lictor/etcd (ratio of medians and
median [min..max] of the per-round ratios), writes bench/results/raft-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clusters  # noqa: E402
from clusters import HOST, EtcdCluster, LictorCluster, proc_cpu_seconds, stop_all_children  # noqa: E402
import failover  # noqa: E402

sys.path.insert(0, str(HERE.parent))
import trivial_server  # noqa: E402

BENCH = HERE.parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
LUA = HERE / "kv_put.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, flush=True)


def _on_signal(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt(f"signal {signum}")


# ------------------------------------------------------------------------------------------------
# measurement helpers
# ------------------------------------------------------------------------------------------------
def box_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_wrk(port: int, conc: int, duration: float, mode: str, prefix: str, threads: int,
            spread: list[int] | None = None) -> dict:
    env = dict(os.environ)
    if spread:
        env["WRK_SPREAD"] = ",".join(f"{HOST}:{p}" for p in spread)
    args = ["wrk", f"-t{threads}", f"-c{conc}", f"-d{duration:g}s", "--timeout=10s", "-s", str(LUA),
            f"http://{HOST}:{port}", "--", mode, prefix]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    clusters.CHILDREN[p.pid] = p
    try:
        out, err = p.communicate(timeout=duration + 60)
    finally:
        if p.poll() is None:
            clusters.stop_proc(p)
        clusters.CHILDREN.pop(p.pid, None)
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            doc = json.loads(line[8:])
            doc["args"] = args
            return doc
    raise RuntimeError(f"wrk printed no WRKJSON line (rc={p.returncode}):\n{out}\n{err}")


def measure_point(cl, target: int | None, conc: int, duration: float, prefix: str) -> dict:
    """One wrk run at concurrency conc against member `target` (None = spread over all three)."""
    mode = cl.mode
    if target is None:
        threads = 3
        conc = max(3, conc - conc % 3)
        spread = [cl.http_ports[i] for i in range(3)]
        port = spread[0]
    else:
        threads = 2 if conc >= 256 else 1
        spread, port = None, cl.http_ports[target]
    pids = cl.pids()
    cpu0 = {pid: proc_cpu_seconds(pid) for pid in pids}
    ch0, (b0, _) = children_cpu(), box_cpu()
    w0 = time.monotonic()
    doc = run_wrk(port, conc, duration, mode, prefix, threads, spread)
    wall = time.monotonic() - w0
    cpu1 = {pid: proc_cpu_seconds(pid) for pid in pids}
    ch1, (b1, _) = children_cpu(), box_cpu()
    e = doc["errors"]
    secs = doc["duration_us"] / 1e6
    ok = doc["requests"] - e["status"]
    srv_cpu = {pid: cpu1[pid] - cpu0[pid] for pid in pids}
    leader_pid = cl.procs[cl.leader].pid if cl.leader is not None else None
    cluster_cpu = sum(srv_cpu.values())
    wrk_cpu = ch1 - ch0
    box_busy = (b1 - b0) / CLK_TCK
    return {
        "system": cl.system, "target": "spread" if target is None else ("leader" if target == cl.leader else f"member{target}"),
        "concurrency": conc, "threads": threads, "prefix": prefix,
        "writes_per_s": ok / secs if secs else 0.0,
        "p50_ms": doc["latency_us"]["p50"] / 1000, "p99_ms": doc["latency_us"]["p99"] / 1000,
        "p90_ms": doc["latency_us"]["p90"] / 1000, "max_ms": doc["latency_us"]["max"] / 1000,
        "requests": doc["requests"], "non2xx": e["status"],
        "socket_errors": e["connect"] + e["read"] + e["write"] + e["timeout"], "errors": e,
        "leader_cpu_pct": 100 * srv_cpu.get(leader_pid, 0.0) / wall if leader_pid else None,
        "cluster_cpu_pct": 100 * cluster_cpu / wall,
        "cluster_cpu_us_per_write": 1e6 * cluster_cpu / ok if ok else None,
        "wrk_cpu_pct": 100 * wrk_cpu / wall,
        "box_busy_pct": 100 * box_busy / wall,
        "other_cpu_pct": 100 * max(0.0, box_busy - cluster_cpu - wrk_cpu) / wall,
        "threads_issued": doc["threads"],
        "wrk": doc,
    }


def measure_ceiling(port: int, pid: int, mode: str, conc: int, duration: float, rnd: int) -> dict:
    """wrk with exactly the arguments and script of a real point (mode = lictor | etcd decides the
    request the Lua script builds), against the trivial server: the load generator's ceiling."""
    threads = 2 if conc >= 256 else 1
    cpu0, ch0 = proc_cpu_seconds(pid), children_cpu()
    w0 = time.monotonic()
    doc = run_wrk(port, conc, duration, mode, f"ceil{rnd}c{conc}", threads)
    wall = time.monotonic() - w0
    secs = doc["duration_us"] / 1e6
    e = doc["errors"]
    ok = doc["requests"] - e["status"]
    return {"system": f"ceiling-{mode}", "target": "trivial", "concurrency": conc, "threads": threads,
            "round": rnd, "writes_per_s": ok / secs if secs else 0.0,
            "p50_ms": doc["latency_us"]["p50"] / 1000, "p99_ms": doc["latency_us"]["p99"] / 1000,
            "socket_errors": e["connect"] + e["read"] + e["write"] + e["timeout"],
            "server_cpu_pct": 100 * (proc_cpu_seconds(pid) - cpu0) / wall,
            "wrk_cpu_pct": 100 * (children_cpu() - ch0) / wall}


def readback(cl, point: dict) -> dict:
    """On a follower: consistent count of the point's keys, and a few keys' values."""
    follower = next(i for i in cl.alive() if i != cl.leader)
    t0 = time.monotonic()
    ok_n = point["requests"] - point["non2xx"]
    issued = sum(t["n"] for t in point["threads_issued"].values())
    stored = cl.count_prefix(follower, point["prefix"] + "/")
    bad = []
    checked = 0
    for t in point["threads_issued"].values():
        n = t["n"]
        # keys certainly completed: all but the last `conc` issued on this thread (closed loop);
        # n = 1 of thread 1 is never sent (wrk calls request() once on thread 1 to verify the script)
        safe = max(0, n - point["concurrency"])
        for k in sorted({2, safe // 2, safe} - {0, 1}):
            checked += 1
            v = cl.get(follower, f"{t['head']}{k}")
            if v != failover.VALUE:
                bad.append((f"{t['head']}{k}", None if v is None else v[:20]))
    clean = point["non2xx"] == 0 and point["socket_errors"] == 0
    ok = (stored >= ok_n if clean else True) and stored <= issued and not (clean and bad)
    return {"follower": cl.names[follower], "acked": ok_n, "issued": issued, "stored": stored,
            "keys_checked": checked, "bad_keys": bad, "ok": ok, "seconds": time.monotonic() - t0}


def fmt_point(p: dict) -> str:
    rb = p.get("readback", {})
    return (f"{p['system']:6s} {p['target']:6s} c={p['concurrency']:<3d} {p['writes_per_s']:8.0f} w/s  "
            f"p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms  non2xx {p['non2xx']} sockerr {p['socket_errors']}  "
            f"cpu: leader {p['leader_cpu_pct'] or 0:.0f}% cluster {p['cluster_cpu_pct']:.0f}% "
            f"({(p['cluster_cpu_us_per_write'] or 0):.0f} us/w) wrk {p['wrk_cpu_pct']:.0f}% other {p['other_cpu_pct']:.0f}%  "
            f"readback {'OK' if rb.get('ok') else 'FAIL'} ({rb.get('stored')}/{rb.get('acked')} stored/acked)")


def make_cluster(system: str, workdir: Path, label: str, args) -> Any:  # noqa: ANN001
    """etcd: Debian's etcd with its defaults (heartbeat 100 ms, election timeout 1000 ms).
    lictor: Lictor's defaults (raft_multiplier 5, as Consul: heartbeat 0.5 s, election 5-10 s).
    lictor-m1: raft_multiplier = 1 (heartbeat 0.1 s, election 1-2 s: etcd's timing)."""
    if system == "etcd":
        return EtcdCluster(workdir, label)
    if system == "lictor":
        return LictorCluster(workdir, label, extra_args=args.lictor_arg)
    if system.startswith("lictor-m"):
        return LictorCluster(workdir, label, extra_args=args.lictor_arg, raft_multiplier=int(system[8:]),
                             system=system)
    raise ValueError(f"unknown system {system!r}")


def start_cluster(cl, timeout: float) -> None:
    t0 = time.monotonic()
    cl.leader = cl.start(timeout=timeout)
    cl.ready_s = time.monotonic() - t0
    log(f"  {cl.system} cluster up in {cl.ready_s:.1f}s, leader {cl.names[cl.leader]} "
        f"(pids {cl.pids()}, http ports {cl.http_ports})")


def throughput_round(systems: list[str], rnd: int, args, workdir: Path, results: list[dict]) -> None:  # noqa: ANN001
    """One round: a fresh cluster of each system, all up at once (the idle one is measured too),
    and per concurrency the systems back to back, the order alternating from point to point, so
    drift in the background load of this shared box falls on both alike."""
    cls: dict[str, Any] = {}
    trivial = None
    try:
        for system in systems:
            cls[system] = make_cluster(system, workdir, f"r{rnd}", args)
            start_cluster(cls[system], args.start_timeout)
        if args.ceiling_duration > 0:
            tport = clusters.free_ports(1)[0]
            trivial = trivial_server.spawn(tport, body_bytes=64, python=sys.executable)
            clusters.CHILDREN[trivial.pid] = trivial
        for ci, conc in enumerate(args.concurrency):
            order = systems if (rnd + ci) % 2 == 1 else systems[::-1]
            if trivial is not None:
                # the load generator's ceiling at this point, between the systems' runs
                order = order[:1] + ["ceiling"] + order[1:]
            for system in order:
                if system == "ceiling":
                    for mode in dict.fromkeys(cls[s2].mode for s2 in systems):
                        c = measure_ceiling(tport, trivial.pid, mode, conc, args.ceiling_duration, rnd)
                        results.append(c)
                        log(f"  ceiling {mode:6s} c={conc:<3d} {c['writes_per_s']:8.0f} req/s  "
                            f"p50 {c['p50_ms']:7.2f} ms  sockerr {c['socket_errors']}  wrk {c['wrk_cpu_pct']:.0f}% "
                            f"trivial server {c['server_cpu_pct']:.0f}%")
                    continue
                cl = cls[system]
                others = [c for s2, c in cls.items() if s2 != system]
                if args.warmup > 0:
                    measure_point(cl, cl.leader, conc, args.warmup, f"w{rnd}c{conc}")
                targets: list[int | None] = [cl.leader]
                if cl.mode == "lictor" and args.spread and conc >= 3:
                    targets.append(None)
                for target in targets:
                    tag = "s" if target is None else "l"
                    idle0 = {c.system: sum(proc_cpu_seconds(pid) for pid in c.pids()) for c in others}
                    p = measure_point(cl, target, conc, args.duration, f"r{rnd}c{conc}{tag}")
                    secs = p["wrk"]["duration_us"] / 1e6
                    p["idle_cluster_cpu_pct"] = {c.system: 100 * (sum(proc_cpu_seconds(pid) for pid in c.pids())
                                                                   - idle0[c.system]) / secs for c in others}
                    # "other": the box's busy time minus this cluster, wrk and the idle cluster(s)
                    p["other_cpu_pct"] = max(0.0, p["other_cpu_pct"] - sum(p["idle_cluster_cpu_pct"].values()))
                    p["round"] = rnd
                    p["readback"] = readback(cl, p)
                    results.append(p)
                    log("  " + fmt_point(p))
                    now = cl.leader_index()
                    if now != cl.leader:
                        log(f"  !! {system}: leader changed during the run (now {now})")
                        p["leader_changed"] = True
                        cl.leader = now
    finally:
        if trivial is not None:
            clusters.stop_proc(trivial)
            clusters.CHILDREN.pop(trivial.pid, None)
        for cl in cls.values():
            cl.stop()


def failover_one(system: str, rep: int, args, workdir: Path, fault: str = "kill") -> dict:  # noqa: ANN001
    """fault: kill = SIGKILL the leader; stop = SIGSTOP it (a paused process: its sockets stay
    open and nothing answers; SIGCONT when the run ends, so it rejoins as a follower)."""
    cl = make_cluster(system, workdir, f"fo{rep}{fault[0]}", args)
    stopped: list[int] = []
    try:
        start_cluster(cl, args.start_timeout)
        lead = cl.leader
        survivors = [i for i in range(3) if i != lead]
        ports = [cl.http_ports[i] for i in survivors]

        def fault_fn() -> None:
            if fault == "kill":
                cl.kill(lead)
            elif fault == "stop":
                pid = cl.procs[lead].pid
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            else:
                raise ValueError(f"unknown fault {fault!r}")
        run = failover.run_failover(cl.mode, ports, kill=fault_fn, conc=16, timeout=args.fo_timeout,
                                    prefix=f"fo{rep}", before=args.fo_before, settle=3.0, max_after=args.fo_max)
        res = failover.analyse(run)
        for pid in stopped:  # resume the paused old leader: it must rejoin as a follower
            os.kill(pid, signal.SIGCONT)
        stopped.clear()
        # new leader, and no acknowledged write lost: count on a survivor, and read back the
        # acknowledged keys completed within 1 s either side of the kill
        t0 = time.monotonic()
        new_lead = None
        while time.monotonic() - t0 < 15 and new_lead is None:
            try:
                new_lead = cl.leader_index()
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.2)
        acked = [r for r in run.records if r.ok]
        stored = cl.count_prefix(survivors[0], f"fo{rep}/")
        near = [r for r in acked if abs(r.t_done - run.t_kill) < 1.0]
        random.Random(rep).shuffle(near)
        missing = [r.key for r in near[:100] if cl.get(survivors[1], r.key) != failover.VALUE]
        res.update({"system": system, "fault": fault, "repeat": rep, "killed": cl.names[lead],
                    "new_leader": cl.names[new_lead] if new_lead is not None else None,
                    "acked": len(acked), "stored": stored, "acked_near_kill_checked": min(100, len(near)),
                    "acked_missing": missing, "no_loss": stored >= len(acked) and not missing})
        return res
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        cl.stop()


# ------------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------------
def mmm(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def f_mmm(d: dict, fmt: str = "{:,.0f}") -> str:
    if d["median"] is None:
        return "-"
    if d["n"] == 1:
        return fmt.format(d["median"])
    return f"{fmt.format(d['median'])} [{fmt.format(d['min'])}..{fmt.format(d['max'])}]"


def summarise(points: list[dict], fo: list[dict], concs: list[int]) -> dict:
    summ: dict[str, Any] = {"throughput": [], "failover": {}}
    for conc in concs:
        row: dict[str, Any] = {"concurrency": conc}
        for key, sel in (("lictor", lambda p: p["system"] == "lictor" and p["target"] == "leader"),
                         ("lictor_spread", lambda p: p["system"] == "lictor" and p["target"] == "spread"),
                         ("etcd", lambda p: p["system"] == "etcd")):
            ps = [p for p in points if sel(p) and (p["concurrency"] == conc or
                                                     (p["target"] == "spread" and p["concurrency"] == max(3, conc - conc % 3)))]
            row[key] = {f: mmm([p[f] for p in ps]) for f in
                        ("writes_per_s", "p50_ms", "p99_ms", "cluster_cpu_us_per_write", "leader_cpu_pct", "other_cpu_pct")}
            row[key]["rounds"] = [p["round"] for p in ps]
        for key in ("lictor", "lictor_spread"):
            le, ee = row[key]["writes_per_s"]["median"], row["etcd"]["writes_per_s"]["median"]
            row[f"ratio_{key}_over_etcd"] = (le / ee) if le and ee else None
            paired = []
            for rnd in set(row[key]["rounds"]) & set(row["etcd"]["rounds"]):
                lp = [p for p in points if p["round"] == rnd and p["system"] == "lictor"
                      and p["target"] == ("leader" if key == "lictor" else "spread")
                      and p["concurrency"] in (conc, max(3, conc - conc % 3))]
                ep = [p for p in points if p["round"] == rnd and p["system"] == "etcd" and p["concurrency"] == conc]
                if lp and ep and ep[0]["writes_per_s"]:
                    paired.append(lp[0]["writes_per_s"] / ep[0]["writes_per_s"])
            row[f"paired_ratio_{key}"] = mmm(paired)
        # the load generator's ceiling (same wrk args and script against a trivial server) must be
        # >= 3x the rate measured with that script, or the measured rate may be wrk's own limit
        for key, mode in (("lictor", "lictor"), ("lictor_spread", "lictor"), ("etcd", "etcd")):
            cs = [p for p in points if p["system"] == f"ceiling-{mode}" and p["concurrency"] == conc]
            ceil = mmm([p["writes_per_s"] for p in cs])
            row[f"ceiling_{mode}"] = ceil
            meas = row[key]["writes_per_s"]["median"]
            headroom = [c["writes_per_s"] / m["writes_per_s"] for c in cs for m in points
                        if m["round"] == c["round"] and m["system"] == key.split("_")[0]
                        and m["target"] == ("spread" if key.endswith("spread") else ("leader" if key == "lictor" else m["target"]))
                        and m["concurrency"] in (conc, max(3, conc - conc % 3)) and m["writes_per_s"]]
            row[f"loadgen_{key}"] = {"headroom": mmm(headroom),
                                     "verdict": trivial_server.verdict(ceil["median"], meas)}
        summ["throughput"].append(row)
    def fo_key(r: dict) -> str:
        return r["system"] if r.get("fault", "kill") == "kill" else f"{r['system']}@{r['fault']}"
    fo_systems = list(dict.fromkeys(fo_key(r) for r in fo))
    for system in fo_systems:
        rs = [r for r in fo if fo_key(r) == system]
        summ["failover"][system] = {f: mmm([r[f] for r in rs]) for f in
                                    ("window_s", "window_done_s", "gap_s", "first_ok_sent_after_kill_s",
                                     "failed_after_kill", "writes_per_s_before_kill")}
        summ["failover"][system]["no_loss_all"] = all(r["no_loss"] for r in rs)
    summ["failover_ratios"] = {}
    for system in fo_systems:
        lf = summ["failover"][system]
        anchor = "etcd" + system.partition("@")[1] + system.partition("@")[2]
        ef = summ["failover"].get(anchor)
        if system.startswith("etcd") or not ef:
            continue
        summ["failover_ratios"][system] = {}
        for f in ("window_s", "window_done_s", "gap_s"):
            a, b = lf[f]["median"], ef[f]["median"]
            summ["failover_ratios"][system][f] = (a / b) if a is not None and b else None
    return summ


def print_table(summ: dict) -> None:
    log("\nKV PUT, 100-byte values, 3 servers on loopback, fsync on; median [min..max] over rounds")
    hdr = f"{'conc':>4} | {'system':14s} | {'writes/s':>24s} | {'p50 ms':>22s} | {'p99 ms':>24s} | {'CPU us/write':>18s}"
    log(hdr)
    log("-" * len(hdr))
    for row in summ["throughput"]:
        for key, name in (("lictor", "lictor->leader"), ("lictor_spread", "lictor spread"), ("etcd", "etcd->leader")):
            d = row[key]
            if d["writes_per_s"]["n"] == 0:
                continue
            log(f"{row['concurrency']:>4} | {name:14s} | {f_mmm(d['writes_per_s']):>24s} | "
                f"{f_mmm(d['p50_ms'], '{:.2f}'):>22s} | {f_mmm(d['p99_ms'], '{:.2f}'):>24s} | "
                f"{f_mmm(d['cluster_cpu_us_per_write']):>18s}")
        for key, name in (("lictor", "lictor->leader"), ("lictor_spread", "lictor spread"), ("etcd", "etcd->leader")):
            lg = row.get(f"loadgen_{key}")
            if not lg or lg["verdict"] == "unknown":
                continue
            mode = "etcd" if key == "etcd" else "lictor"
            log(f"{'':>4} | load generator for {name}: ceiling {f_mmm(row[f'ceiling_{mode}'])} req/s "
                f"(wrk, same script, trivial server), headroom {f_mmm(lg['headroom'], '{:.1f}')}x -> "
                + ("ok (>= 3x)" if lg["verdict"] == "ok" else "SATURATED: ceiling < 3x the measured rate; "
                   "this figure may be the load generator's limit"))
        for key, name in (("lictor", "leader"), ("lictor_spread", "spread")):
            r = row.get(f"ratio_{key}_over_etcd")
            if r is not None:
                log(f"{'':>4} | ratio Lictor({name})/etcd writes/s: {r:.3f} (ratio of medians); "
                    f"per-round {f_mmm(row[f'paired_ratio_{key}'], '{:.3f}')}")
        log("-" * len(hdr))
    fo = summ["failover"]
    if fo:
        log("\nFailover: SIGKILL (system@stop: SIGSTOP) the leader under 16 concurrent writers + a 25 ms prober "
            "(sent to the survivors); seconds, median [min..max]")
        for system, d in fo.items():
            log(f"  {system:9s} window {f_mmm(d['window_s'], '{:.2f}')}  longest success gap {f_mmm(d['gap_s'], '{:.2f}')}  "
                f"first ok (sent after kill) {f_mmm(d['first_ok_sent_after_kill_s'], '{:.2f}')}  "
                f"to last failure's completion {f_mmm(d['window_done_s'], '{:.2f}')}  "
                f"failed reqs {f_mmm(d['failed_after_kill'])}  no acked write lost: {d['no_loss_all']}")
        for system, r in summ.get("failover_ratios", {}).items():
            log(f"  ratio {system}/etcd: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in r.items()))


# ------------------------------------------------------------------------------------------------
# profile
# ------------------------------------------------------------------------------------------------
def profile_lictor(args, workdir: Path, stamp: str) -> dict:  # noqa: ANN001
    """A fresh Lictor cluster; wrk at --profile-concurrency against the leader while py-spy samples
    the leader: one pass as collapsed stacks (summarised: top frames by self and inclusive time),
    one as speedscope JSON (https://www.speedscope.app). Sampling slows the leader, so the
    writes/s printed here are not results."""
    pyspy = REPO / ".venv" / "bin" / "py-spy"
    if not pyspy.exists():
        log("py-spy not installed (.venv/bin/pip install py-spy); skipping the profile")
        return {}
    cl = make_cluster("lictor", workdir, "prof", args)
    out: dict[str, Any] = {}
    conc = args.profile_concurrency
    base = RESULTS / f"raft-{stamp}-profile-leader-c{conc}"
    dur = max(3, int(args.duration))
    try:
        start_cluster(cl, args.start_timeout)
        measure_point(cl, cl.leader, conc, 2, "pw")  # warm-up
        pid = cl.procs[cl.leader].pid
        points = []
        for i, (fmt, ext, extra) in enumerate((("raw", "txt", ["--function"]), ("raw", "native.txt", ["--function", "--native"]),
                                               ("speedscope", "speedscope.json", []))):
            # --native cannot be --nonblocking (it pauses the process for each sample)
            nb = [] if "--native" in extra else ["--nonblocking"]
            cmd = [str(pyspy), "record", "-p", str(pid), "-d", str(dur), "-r", "100", *nb,
                   "--full-filenames", "--format", fmt, "-o", f"{base}.{ext}"] + extra
            pr = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            clusters.CHILDREN[pr.pid] = pr
            try:
                p = measure_point(cl, cl.leader, conc, dur + 1, f"prof{i}")
                o, _ = pr.communicate(timeout=60)
                if pr.returncode != 0:
                    log(f"  py-spy {fmt} {extra}: rc {pr.returncode}: {o[-500:]}")
            finally:
                clusters.stop_proc(pr)
            log(f"  (under py-spy {fmt}{' --native' if '--native' in extra else ''}) " + fmt_point({**p, "readback": {}}))
            points.append(p)
        out = {"files": [f"{base}.txt", f"{base}.native.txt", f"{base}.speedscope.json"], "points": points,
               "summary": summarise_collapsed(Path(f"{base}.txt")),
               "summary_native": summarise_collapsed(Path(f"{base}.native.txt"))}
        print_profile(out["summary"], "Python frames")
        print_profile(out["summary_native"], "--native")
    finally:
        cl.stop()
    return out


def _short(frame: str) -> str:
    """'func (/long/path/site-packages/aiohttp/x.py:12)' -> 'func (aiohttp/x.py:12)'."""
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        i = frame.find(marker)
        if i >= 0:
            j = frame.rfind("(", 0, i)
            return frame[: j + 1] + frame[i + len(marker):]
    return frame


# inclusive share of these frames (substring of the frame name) = where the leader's time goes
COMPONENTS = [
    ("HTTP request handling (aiohttp + handler)", "RequestHandler._handle_request"),
    ("  KV PUT handler incl. propose + wait", "kv_put ("),
    ("RPC connections: frames from peers", "_ServerConnection.data_received"),
    ("  Raft message decode + validation", "decode_batch"),
    ("Raft driver loop", "RaftNode._run"),
    ("  feeding messages/proposals to the core", "RaftNode._feed"),
    ("  handling a Ready (persist, send, apply)", "RaftNode._handle_ready"),
    ("  Raft message encode", "encode_message"),
    ("FSM apply", "apply ("),
    ("FSM snapshot (state store -> file)", "FSMSnapshot.persist"),
    ("log fsync (_sync_fds)", "_sync_fds"),
    ("thread-pool workers", "_worker ("),
    ("garbage collector (--native only)", "gc_collect"),
    ("idle lock waits in threads (--native only)", "PyThread_acquire_lock_timed"),
]


def summarise_collapsed(path: Path, top: int = 20) -> dict:
    comp_c = {name: 0 for name, _ in COMPONENTS}
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        try:
            n_i = int(n)
        except ValueError:
            continue
        frames = stack.split(";")
        # py-spy puts "process ..." and "thread ..." pseudo-frames first
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        total += n_i
        if not frames:
            continue
        frames = [_short(f) for f in frames if f.strip()]
        if not frames:
            continue
        leaf = frames[-1]
        self_c[leaf] = self_c.get(leaf, 0) + n_i
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n_i
        for name, key in COMPONENTS:
            if any(key in f for f in frames):
                comp_c[name] += n_i
    pct = lambda c: round(100.0 * c / total, 1) if total else 0.0  # noqa: E731
    return {"samples": total, "components": [(pct(c), name) for name, c in comp_c.items()],
            "self": [(pct(c), f) for f, c in sorted(self_c.items(), key=lambda kv: -kv[1])[:top]],
            "inclusive": [(pct(c), f) for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top * 2]]}


def print_profile(s: dict, what: str) -> None:
    log(f"\nProfile of the Lictor leader, {what} ({s['samples']} samples); top by self time:")
    for p, f in s["self"]:
        log(f"  {p:5.1f}%  {f}")
    log("top by inclusive time:")
    for p, f in s["inclusive"][:25]:
        log(f"  {p:5.1f}%  {f}")
    log("by component (inclusive):")
    for p, name in s["components"]:
        log(f"  {p:5.1f}%  {name}")


# ------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s points, 1 s warm-up, 1 failover each")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--ceiling-duration", type=float, default=None,
                    help="seconds of wrk against a trivial server per point (the load generator's ceiling); "
                         "default min(duration, 5); 0 = skip")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64, 256])
    ap.add_argument("--systems", default="lictor,etcd", help="throughput systems (lictor, lictor-mN, etcd)")
    ap.add_argument("--no-spread", dest="spread", action="store_false", help="skip Lictor's spread-over-3 runs")
    ap.add_argument("--no-throughput", dest="throughput", action="store_false")
    ap.add_argument("--no-failover", dest="failover", action="store_false")
    ap.add_argument("--failover-repeats", type=int, default=5)
    ap.add_argument("--failover-systems", default="lictor,lictor-m1,etcd",
                    help="lictor = Lictor defaults (raft_multiplier 5), lictor-m1 = raft_multiplier 1")
    ap.add_argument("--faults", default="kill,stop", help="failover faults: kill (SIGKILL), stop (SIGSTOP)")
    ap.add_argument("--fo-timeout", type=float, default=2.0, help="failover client per-request timeout (s)")
    ap.add_argument("--fo-before", type=float, default=3.0, help="seconds of load before the SIGKILL")
    ap.add_argument("--fo-max", type=float, default=30.0, help="max seconds observed after the kill")
    ap.add_argument("--profile", action="store_true", help="py-spy the Lictor leader at --profile-concurrency")
    ap.add_argument("--profile-concurrency", type=int, default=256)
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--lictor-arg", action="append", default=[], help="extra flag for every Lictor server")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the members' logs")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.failover_repeats = 1, 3.0, 1.0, 1
    if args.ceiling_duration is None:
        args.ceiling_duration = min(args.duration, 5.0)
    systems = [s for s in args.systems.split(",") if s]

    atexit.register(stop_all_children)
    signal.signal(signal.SIGTERM, _on_signal)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="lictor-raft-bench-"))
    env = {
        "date_utc": stamp, "cpus": os.cpu_count(), "python": platform.python_version(),
        "etcd": subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.splitlines()[0:1],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0:1],
        "git_head": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True).stdout.strip(),
        "git_dirty": bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True,
                                         text=True).stdout.strip()),
        "loadavg_start": open("/proc/loadavg").read().split()[:3], "args": vars(args),
    }
    log(f"bench/raft {stamp}: systems {systems}, rounds {args.rounds}, {args.duration:g}s points, "
        f"concurrency {args.concurrency}; workdir {workdir}; load avg {env['loadavg_start']}")
    points: list[dict] = []
    fo: list[dict] = []
    prof: dict = {}
    errors: list[str] = []
    t_start = time.monotonic()
    out_path = RESULTS / f"raft-{stamp}.json"
    try:
        if args.throughput:
            for rnd in range(1, args.rounds + 1):
                log(f"round {rnd}")
                try:
                    throughput_round(systems, rnd, args, workdir, points)
                except Exception as e:  # noqa: BLE001 - keep the other rounds' figures
                    errors.append(f"round {rnd}: {e}")
                    log(f"  !! round {rnd} failed: {e}")
        if args.failover:
            fo_systems = [s for s in args.failover_systems.split(",") if s]
            faults = [f for f in args.faults.split(",") if f]
            for rep in range(1, args.failover_repeats + 1):
                order = fo_systems if rep % 2 == 1 else fo_systems[::-1]
                for system, fault in [(s, f) for f in faults for s in order]:
                    log(f"failover {rep}: {system} ({fault} the leader)")
                    try:
                        r = failover_one(system, rep, args, workdir, fault)
                        fo.append(r)
                        log(f"  window {r['window_s'] if r['window_s'] is None else round(r['window_s'], 3)} s "
                            f"(to last failure's completion {r['window_done_s']}), "
                            f"longest success gap {r['gap_s']:.3f} s (from {r['gap_starts_at_s']:+.3f} s), "
                            f"first ok sent after kill {r['first_ok_sent_after_kill_s']}, "
                            f"failed after kill {r['failed_after_kill']} {r['failure_kinds']}, "
                            f"{r['writes_per_s_before_kill']:.0f} w/s before; new leader {r['new_leader']}; "
                            f"acked {r['acked']} stored {r['stored']} no loss {r['no_loss']}")
                    except Exception as e:  # noqa: BLE001
                        errors.append(f"failover {rep} {system} {fault}: {e}")
                        log(f"  !! {system} failover {rep} failed: {e}")
        if args.profile and "lictor" in systems:
            try:
                prof = profile_lictor(args, workdir, stamp)
            except Exception as e:  # noqa: BLE001
                errors.append(f"profile: {e}")
                log(f"  !! profile failed: {e}")
    except KeyboardInterrupt:
        errors.append("interrupted")
        log("interrupted; stopping everything")
    finally:
        stop_all_children()
        summ = summarise(points, fo, args.concurrency)
        env["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        env["elapsed_s"] = time.monotonic() - t_start
        out_path.write_text(json.dumps({"env": env, "summary": summ, "points": points, "failover": fo,
                                        "profile": prof, "errors": errors}, indent=1, default=str))
        print_table(summ)
        if errors:
            log("\nerrors:\n  " + "\n  ".join(errors))
        log(f"\nraw figures: {out_path} (elapsed {env['elapsed_s']:.0f}s)")
        if args.keep:
            log(f"members' logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
