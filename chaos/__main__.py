"""``python -m chaos run|check|cleanup`` (run from the repository root, as root for namespaces).

    python -m chaos run --system lictor --servers 3 --duration 75 --seed 1 \\
        --nemesis kill,kill,pause,kill,partition --out /tmp/chaos-smoke
    python -m chaos run --system etcd --broken stale-reads ...   # must FAIL
    python -m chaos run --compare etcd ...   # the same nemesis and seed against etcd as well
    python -m chaos soak --out DIR       # the 1-hour preset: 5 servers, every fault kind
    python -m chaos check --out DIR      # re-run the checkers on a recorded history.jsonl
    python -m chaos cleanup              # kill and remove leftovers of interrupted runs

``run`` prints one JSON summary line on stdout (progress goes to stderr) and exits 0 when every
checker passed, 1 when one failed, 2 on an error (cluster never came up, bad arguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from chaos.nemesis import KINDS

_SUMMARY_KEYS = ("system", "servers", "spare", "final_members", "seed", "broken", "ops", "ok", "failed", "unknown", "faults",
                 "faults_total", "linearizable", "checkers", "lost_writes", "worst_unavailability_s",
                 "duration_s", "skipped_faults", "fault_expectation_failures", "availability",
                 "valid", "plot")

#: ``chaos soak``: every fault kind, 5 servers, one hour (README: "the soak")
SOAK_NEMESIS = ("kill-leader,disk-full,pause,fsync-error,partition,clock-jump,torn-tail,kill,"
                "clock-skew,transfer-leader,partition,stale-leader,replace-server,pause,power-loss,"
                "corrupt-middle,leave-rejoin,grow,kill,shrink,restart-all")
SOAK_ARGS = ["--servers", "5", "--spare", "1", "--duration", "3600", "--max-ops", "2000000",
             "--seed", "19", "--quiet", "1,2", "--nemesis", SOAK_NEMESIS]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a cluster under faults and check the history")
    sub.add_parser("soak", help=f"the soak preset: run {' '.join(SOAK_ARGS)} "
                                       "(later options override: e.g. --duration 600)")
    r.add_argument("--system", choices=["lictor", "etcd"], default="lictor")
    r.add_argument("--servers", type=int, choices=[3, 5], default=3)
    r.add_argument("--duration", type=float, default=60.0, help="seconds of workload (bounded)")
    r.add_argument("--max-ops", type=int, default=20000, help="stop the workload after this many ops")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--nemesis", default="kill,pause,partition",
                   help=f"comma-separated schedule, repeated in order; kinds: {', '.join(KINDS)}")
    r.add_argument("--clients", type=int, default=6)
    r.add_argument("--timeout", type=float, default=4.0, help="client request timeout (s)")
    r.add_argument("--broken", choices=["stale-reads", "lying-fsync"], default=None,
                   help="deliberately break the system (stale-reads: weak reads checked as "
                        "linearizable; lying-fsync: Lictor's fsync-error and power-loss faults make "
                        "fsyncs lie instead of failing); the checkers must then fail")
    r.add_argument("--no-netns", action="store_true",
                   help="loopback addresses; partitions emulated by SIGSTOP of the minority")
    r.add_argument("--out", type=Path, default=Path("chaos-out"))
    r.add_argument("--quiet", default="2,4", help="min,max seconds of quiet between faults")
    r.add_argument("--spare", type=int, default=0, choices=range(0, 5), metavar="0-4",
                   help="extra servers the grow fault adds to the cluster (Lictor)")
    r.add_argument("--compare", choices=["etcd"], default=None,
                   help="then run the etcd control under the same nemesis, seed and options; "
                        "the summary puts their availability side by side")
    c = sub.add_parser("check", help="re-check a recorded history (linearizability, locks)")
    c.add_argument("--out", type=Path, required=True)
    cl = sub.add_parser("cleanup", help="remove namespaces and processes left by killed runs")
    cl.add_argument("--prefix", default=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["soak"]:
        argv = ["run", *SOAK_ARGS, *argv[1:]]
    a = p.parse_args(argv)

    if a.cmd == "cleanup":
        from chaos.netns import PREFIX, cleanup

        removed = cleanup(a.prefix or PREFIX)
        from chaos.faults import leftover_mounts, unmount

        for sock in Path("/tmp").glob(f"{a.prefix or PREFIX}*.sock"):  # fault-hook sockets
            sock.unlink(missing_ok=True)
            removed.append(str(sock))
        if a.prefix is None:  # the disk-full tmpfs data directories of killed runs
            for m in leftover_mounts():
                unmount(m)
                removed.append(f"tmpfs {m}")
        print(json.dumps({"removed": removed}))
        return 0
    if a.cmd == "check":
        from chaos import checkers
        from chaos.history import read_history

        h = read_history(a.out / "history.jsonl")
        lin = checkers.check_linearizability(h)
        locks = checkers.lock_safety(h)
        # the runner records its final reads after healing as process -1
        final = {op.key: op.output for op in sorted(h, key=lambda o: o.id)
                 if op.process == -1 and op.status == "ok" and op.kind == "kv"}
        lost = checkers.lost_writes(h, final)
        if lin.ok is False:
            print(lin.explain(), file=sys.stderr)
        print(json.dumps({"ops": len(h), "linearizable": lin.ok, "per_key": lin.per_key,
                          "lock_safety": not locks, "lost_writes": len(lost),
                          "worst_unavailability_s": round(checkers.worst_unavailability(
                              [op for op in h if op.process >= 0]), 3)}))
        return 0 if lin.ok and not locks and not lost else 1

    from chaos.runner import RunConfig, run

    nemesis = tuple(k for k in a.nemesis.split(",") if k)
    bad = [k for k in nemesis if k not in KINDS]
    if bad:
        p.error(f"unknown nemesis {bad}; choose from {', '.join(KINDS)}")
    try:
        qlo, qhi = (float(x) for x in a.quiet.split(","))
    except ValueError:
        p.error(f"--quiet {a.quiet!r}: expected min,max seconds, e.g. 2,4")
    cfg = RunConfig(system=a.system, servers=a.servers, duration=a.duration, max_ops=a.max_ops,
                    seed=a.seed, nemesis=nemesis, out=a.out, clients=a.clients, broken=a.broken,
                    netns=False if a.no_netns else None, timeout=a.timeout, quiet=(qlo, qhi),
                    spare=a.spare)
    runs = [cfg]
    if a.compare:
        cfg.out = a.out / cfg.system
        runs.append(dataclasses.replace(cfg, system=a.compare, out=a.out / a.compare,
                                        broken=None, spare=0))
    results = {}
    for c in runs:
        try:
            results[c.system] = run(c)
        except Exception as exc:  # noqa: BLE001 - reported as one line, exit 2
            print(json.dumps({"error": f"{c.system}: {type(exc).__name__}: {exc}", "valid": None}))
            return 2
    if len(results) == 1:
        summary = results[cfg.system]
        print(json.dumps({k: summary[k] for k in _SUMMARY_KEYS if k in summary}))
        return 0 if summary["valid"] else 1
    combined = {name: {k: s[k] for k in _SUMMARY_KEYS if k in s and k != "availability"}
                for name, s in results.items()}
    kinds = sorted({k for s in results.values() for k in s["availability"]})
    side_by_side = {k: {name: s["availability"].get(k) for name, s in results.items()} for k in kinds}
    out = {"compare": list(results), "valid": all(s["valid"] for s in results.values()),
           "runs": combined, "availability": side_by_side}
    (a.out / "compare.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))
    return 0 if out["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
