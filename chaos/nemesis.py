"""The nemesis: faults on a schedule, each recorded as a :class:`Fault` window.

Kinds:
  kill         SIGKILL the leader (2 in 3) or a random server; restart it 1-3 s later (the
               window lasts until the restarted server answers HTTP again)
  kill-leader  the same, always the current leader
  pause        SIGSTOP the leader or a random server for 2-4 s, then SIGCONT
  partition    majority/minority, isolated leader, or bridge (one node sees both halves) for
               3-5 s, then heal (emulated by SIGSTOP of the minority without namespaces)
  restart-all  SIGKILL every server, start them all again

The schedule is the list of kinds repeated in order (``kill,kill,pause,partition`` gives three
kills per pause...), with 2-4 s of quiet between faults so the cluster can recover. A fault is
never started within ``tail`` seconds of the end of the run, so the final reads see a healed
cluster. ``heal_all`` undoes everything (used at the end and on errors).
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
from collections.abc import Callable
from typing import Any

from chaos.history import Fault
from chaos.netns import Network
from chaos.systems import System

__all__ = ["Nemesis", "KINDS", "PARTITION_MODES"]

KINDS = ("kill", "kill-leader", "pause", "partition", "restart-all")
PARTITION_MODES = ("majority-minority", "isolated-leader", "bridge")


class Nemesis:
    def __init__(self, system: System, net: Network, schedule: list[str], *, seed: int,
                 now: Callable[[], float], log: Callable[[str], None] = print,
                 warmup: float = 3.0, quiet: tuple[float, float] = (2.0, 4.0)) -> None:
        for k in schedule:
            if k not in KINDS:
                raise ValueError(f"unknown nemesis {k!r}; choose from {', '.join(KINDS)}")
        self.system = system
        self.net = net
        self.schedule = schedule
        self.rng = random.Random(seed)
        self.now = now
        self.log = log
        self.warmup = warmup
        self.quiet = quiet
        self.faults: list[Fault] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline = 0.0
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def start(self, until: float) -> None:
        """Inject faults until ``until`` (run-relative seconds)."""
        self._deadline = until
        self._thread = threading.Thread(target=self._run, name="chaos-nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _sleep(self, s: float) -> None:
        self._stop.wait(max(0.0, s))

    def _target(self) -> int:
        n = len(self.system.servers)
        if self.rng.random() < 2 / 3:
            ld = self.system.leader()
            if ld is not None:
                return ld
        return self.rng.randrange(n)

    def _run(self) -> None:
        self._sleep(self.warmup)
        for kind in itertools.cycle(self.schedule):
            if self._stop.is_set() or self.now() > self._deadline:
                return
            try:
                getattr(self, "_" + kind.replace("-", "_"))()
            except Exception as exc:  # noqa: BLE001 - a failed fault must not kill the run
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                self.log(f"nemesis: {kind} failed: {exc}")
                self.heal_all()
            self._sleep(self.rng.uniform(*self.quiet))

    def _record(self, kind: str, start: float, **detail: Any) -> None:
        f = Fault(kind=kind, start=start, end=self.now(), detail=detail)
        with self._lock:
            self.faults.append(f)
        self.log(f"nemesis: {kind} {detail} [{f.start:.1f}s - {f.end:.1f}s]")

    # ------------------------------------------------------------------ faults

    def _kill_leader(self) -> None:
        self._kill(leader_only=True)

    def _kill(self, leader_only: bool = False) -> None:
        i = self._target()
        if leader_only:
            ld = self.system.wait_leader(10)
            i = ld if ld is not None else i
        was_leader = self.system.leader() == i
        start = self.now()
        self.system.kill(i)
        self._sleep(self.rng.uniform(1.0, 3.0))
        self.system.start(i)
        up = self.system.wait_responsive(i, 30)
        self._record("kill", start, server=self.system.servers[i].name, leader=was_leader,
                     restarted=up)

    def _pause(self) -> None:
        i = self._target()
        was_leader = self.system.leader() == i
        start = self.now()
        self.system.signal(i, signal.SIGSTOP)
        try:
            self._sleep(self.rng.uniform(2.0, 4.0))
        finally:
            self.system.signal(i, signal.SIGCONT)
        self._record("pause", start, server=self.system.servers[i].name, leader=was_leader)

    def _halves(self, mode: str) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        n = len(self.system.servers)
        ids = list(range(n))
        self.rng.shuffle(ids)
        leader = self.system.leader()
        if mode == "isolated-leader" and leader is not None:
            minority = [leader]
        else:
            minority = ids[: (n - 1) // 2]
        majority = [i for i in range(n) if i not in minority]
        if mode == "bridge":
            # two halves that cannot see each other, and one node in the middle sees both
            bridge = majority[0]
            left, right = minority, [i for i in majority if i != bridge]
            pairs = [(a, b) for a in left for b in right]
            return left, right, pairs
        return minority, majority, [(a, b) for a in minority for b in majority]

    def _partition(self) -> None:
        mode = self.rng.choice(PARTITION_MODES)
        minority, majority, pairs = self._halves(mode)
        names = self.system.servers
        start = self.now()
        hold = self.rng.uniform(3.0, 5.0)
        if self.net.supports_partitions:
            self.net.cut(pairs)
            try:
                self._sleep(hold)
            finally:
                self.net.heal()
            emulated = False
        else:  # loopback fallback: the minority side stops instead of being cut off
            for i in minority:
                self.system.signal(i, signal.SIGSTOP)
            try:
                self._sleep(hold)
            finally:
                for i in minority:
                    self.system.signal(i, signal.SIGCONT)
            emulated = True
        middle = [names[i].name for i in range(len(names)) if i not in minority and i not in majority]
        self._record("partition", start, mode=mode, side_a=[names[i].name for i in minority],
                     side_b=[names[i].name for i in majority], sees_both=middle, emulated=emulated)

    def _restart_all(self) -> None:
        start = self.now()
        for s in self.system.servers:
            self.system.kill(s.index)
        self._sleep(self.rng.uniform(0.5, 1.5))
        for s in self.system.servers:
            self.system.start(s.index)
        ok = self.system.wait_leader(60) is not None
        self._record("restart-all", start, leader_elected=ok)

    def heal_all(self) -> None:
        """Remove partitions, resume paused servers, start dead ones."""
        if self.net.supports_partitions:
            self.net.heal()
        for s in self.system.servers:
            if s.alive() and s.paused:
                self.system.signal(s.index, signal.SIGCONT)
        for s in self.system.servers:
            if not s.alive():
                self.system.start(s.index)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.faults:
            key = f.kind
            if f.kind == "kill" and f.detail.get("leader"):
                key = "kill-leader"
            out[key] = out.get(key, 0) + 1
        return out
