"""One chaos run: network -> cluster -> workload + nemesis -> heal -> final reads -> checks ->
report. Everything started here is stopped here (``finally``), by PID, and every namespace is
deleted; SIGINT/SIGTERM are turned into an exception so the same path runs on Ctrl-C."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos import checkers, faults
from chaos.history import KV, LOCK, Op, write_jsonl
from chaos.nemesis import Nemesis
from chaos.netns import Network, netns_available
from chaos.report import op_counts, plot
from chaos.systems import make_system
from chaos.workload import KEYS, LOCK_KEY, Workload

__all__ = ["RunConfig", "run"]


@dataclass(slots=True)
class RunConfig:
    system: str = "lictor"
    servers: int = 3
    duration: float = 60.0
    max_ops: int = 20000
    seed: int = 1
    nemesis: tuple[str, ...] = ("kill", "pause", "partition")
    out: Path = Path("chaos-out")
    clients: int = 6
    broken: str | None = None
    netns: bool | None = None  # None: use namespaces when available
    timeout: float = 4.0
    tail: float = 4.0  # no new fault in the last `tail` seconds
    quiet: tuple[float, float] = (2.0, 4.0)  # seconds between faults
    disk_mb: int = 192
    spare: int = 0  # servers beyond --servers that the grow fault may add  # size of each server's tmpfs data directory when disk-full is scheduled


class Interrupted(Exception):
    pass


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def _log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cfg: RunConfig) -> dict[str, Any]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    use_netns = netns_available() if cfg.netns is None else cfg.netns
    run_id = f"{os.getpid() % 100000:x}{random.Random().randrange(16**3):03x}"
    net = Network(run_id, cfg.servers + cfg.spare, use_netns=use_netns)
    system = make_system(cfg.system, net, out / "servers", timeout=cfg.timeout, broken=cfg.broken,
                         rng=random.Random(cfg.seed + 7), active=cfg.servers)
    (out / "run.json").write_text(json.dumps({"run_id": run_id, "pid": os.getpid(),
                                              "namespaces": use_netns, "config": {
                                                  k: str(getattr(cfg, k)) for k in cfg.__slots__}}))
    mounts: list[Path] = []
    old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    _log(f"run {run_id}: {cfg.system} x{cfg.servers}, {cfg.duration:.0f}s, nemesis "
         f"{','.join(cfg.nemesis)}, {'namespaces' if use_netns else 'loopback (no namespaces)'}"
         + (f", BROKEN={cfg.broken}" if cfg.broken else ""))
    try:
        net.setup()
        net.enter_hub()
        if "disk-full" in cfg.nemesis:  # a small filesystem per data directory, to fill
            for srv in system.servers:
                faults.mount_tmpfs(system.data_dir(srv.index), cfg.disk_mb)
                mounts.append(system.data_dir(srv.index))
        t0 = time.monotonic()
        for s in system.servers[: cfg.servers]:
            system.start(s.index)
        leader = _wait_first_leader(system, 60)
        for s in system.servers[: cfg.servers]:
            if not system.wait_responsive(s.index, 30):
                raise RuntimeError(f"{s.name} not responsive; see {s.workdir / 'server.log'}")
        _log(f"cluster up in {time.monotonic() - t0:.1f}s, leader {system.servers[leader].name}")
        wl = Workload(system, clients=cfg.clients, max_ops=cfg.max_ops, seed=cfg.seed,
                      t0=time.monotonic())
        wl.prepare()  # sessions: a new cluster may refuse them until its node is registered
        _log(f"clients ready in {time.monotonic() - wl.t0:.1f}s")
        wl.t0 = time.monotonic()
        nem = Nemesis(system, net, list(cfg.nemesis), seed=cfg.seed, now=wl.now, log=_log,
                      broken=cfg.broken, disk_mounted=bool(mounts), quiet=cfg.quiet)
        nem.start(until=cfg.duration - cfg.tail)
        wl.start()
        while wl.now() < cfg.duration and not wl.done():
            time.sleep(0.2)
        nem.stop()
        wl.stop()
        workload_end = wl.now()
        nem.heal_all()
        history: list[Op] = list(wl.history)
        final, catalog_views, converged = _final_reads(system, wl, history)
        healed_at = wl.now()
        summary = _check(cfg, history, nem, final, catalog_views, converged, workload_end,
                         healed_at - workload_end)
        write_jsonl(out / "history.jsonl", (op.to_json() for op in sorted(history, key=lambda o: o.id)))
        write_jsonl(out / "faults.jsonl", (f.to_json() for f in nem.faults))
        title = (f"{cfg.system} x{cfg.servers} seed {cfg.seed}{' BROKEN ' + cfg.broken if cfg.broken else ''}: "
                 f"{summary['ops']} ops, {summary['faults_total']} faults, linearizable="
                 f"{summary['linearizable']}, lost writes={summary['lost_writes']}")
        err = plot(history, nem.faults, out / "timeline.png", title)
        summary["plot"] = str(out / "timeline.png") if err is None else err
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    finally:
        for s in old:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(s, signal.SIG_IGN)
        try:
            system.stop_all()
            for m in mounts:
                faults.unmount(m)
            for srv in system.servers:
                system.fault_socket(srv.index).unlink(missing_ok=True)
            net.teardown()
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _wait_first_leader(system: Any, timeout: float) -> int:
    """The new cluster's leader; fail fast (with a server's last log lines) if servers die."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [system.servers[i] for i in system.members if not system.servers[i].alive()]
        if dead:
            log = (dead[0].workdir / "server.log").read_text(errors="replace").splitlines()
            tail = "\n".join(log[-12:])
            raise RuntimeError(f"{dead[0].name} exited during start-up:\n{tail}")
        ld = system.leader()
        if ld is not None:
            return int(ld)
        time.sleep(0.2)
    raise RuntimeError(f"no leader within {timeout:.0f} s; logs in {system.workdir}")


def _final_reads(system: Any, wl: Workload, history: list[Op]) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """After healing: a consistent read of every key through the leader (recorded in the
    history, so it is checked too), and the catalog as every server sees it."""
    deadline = time.monotonic() + 60
    final: dict[str, Any] = {}
    pending = list(KEYS) + [LOCK_KEY]
    while pending and time.monotonic() < deadline:
        leader = system.wait_leader(max(1.0, deadline - time.monotonic()))
        if leader is None:
            break
        key = pending[0]
        kind = LOCK if key == LOCK_KEY else KV
        fn = system.lock_read if kind == LOCK else (lambda n, k: system.read(n, k, final=True))
        op, res = wl.invoke(-1, leader, kind, key, "read", None, fn, leader, key)
        history.append(op)
        if res.status == "ok":
            final[key] = res.output
            pending.pop(0)
        else:
            time.sleep(0.3)
    if pending:
        _log(f"final reads failed for {pending}")
    views: dict[str, Any] = {}
    converged = False
    while time.monotonic() < deadline + 30:
        views = {}
        for s in (system.servers[i] for i in system.members):
            try:
                views[s.name] = system.catalog_view(s.index)
            except Exception as exc:  # noqa: BLE001 - a server still catching up
                views[s.name] = f"error: {exc}"
        if checkers.catalog_converged(views) and not any(isinstance(v, str) for v in views.values()):
            converged = True
            break
        time.sleep(0.5)
    return final, views, converged


def _check(cfg: RunConfig, history: list[Op], nem: Nemesis, final: dict[str, Any],
           views: dict[str, Any], converged: bool, workload_end: float, heal_time: float) -> dict[str, Any]:
    t = time.monotonic()
    lin = checkers.check_linearizability(history)
    lost = checkers.lost_writes(history, {k: v for k, v in final.items() if k in KEYS})
    lock_problems = checkers.lock_safety(history)
    missing_final = [k for k in KEYS if k not in final]
    if lin.ok is False:
        _log(lin.explain())
    for p in lock_problems[:10]:
        _log("lock safety: " + p)
    for x in lost[:10]:
        _log(f"lost write: {x}")
    if not converged:
        _log(f"catalog did not converge: {json.dumps(views)[:2000]}")
    workload = [op for op in history if op.process >= 0]
    for x in nem.expect_failures:
        _log(f"fault expectation failed: {x}")
    valid = (lin.ok is True and not lost and not lock_problems and converged and not missing_final
             and not nem.expect_failures)
    faults = nem.counts()
    windows = [(checkers.fault_key(f.kind, f.detail), f.start, f.end) for f in nem.faults]
    return {
        "system": cfg.system, "servers": cfg.servers, "spare": cfg.spare,
        "final_members": [nem.system.servers[i].name for i in nem.system.members],
        "seed": cfg.seed, "broken": cfg.broken,
        **op_counts(workload),
        "faults": faults, "faults_total": sum(faults.values()),
        "linearizable": lin.ok,
        "checkers": {"linearizability": lin.ok, "per_key": lin.per_key,
                     "lost_writes": not lost and not missing_final, "lock_safety": not lock_problems,
                     "catalog_converged": converged,
                     "fault_expectations": not nem.expect_failures},
        "fault_expectation_failures": nem.expect_failures,
        "skipped_faults": nem.skipped,
        "availability": checkers.availability(workload, windows, workload_end),
        "lost_writes": len(lost),
        "final_reads_missing": missing_final,
        "worst_unavailability_s": round(checkers.worst_unavailability(workload, 0.0, workload_end), 3),
        "heal_and_final_reads_s": round(heal_time, 2),
        "duration_s": round(workload_end, 2),
        "check_s": round(time.monotonic() - t, 2),
        "nemesis_errors": nem.errors,
        "windows": {k: [o.describe() for o in w] for k, w in lin.windows.items()},
        "valid": valid,
    }
