"""The nemesis: faults on a schedule, each recorded as a :class:`Fault` window.

Kinds:
  kill         SIGKILL the leader (2 in 3) or a random server; restart it 1-3 s later (the
               window lasts until the restarted server answers HTTP again)
  kill-leader  the same, always the current leader
  pause        SIGSTOP the leader or a random server for 2-4 s, then SIGCONT
  partition    majority/minority, isolated leader, or bridge (one node sees both halves) for
               3-5 s, then heal (emulated by SIGSTOP of the minority without namespaces)
  restart-all  SIGKILL every server, start them all again

Disk, clock and leadership faults (issue 19; Lictor's test-only fault hook, see chaos/faults.py):
  disk-full        fill the server's data directory (a size-limited tmpfs the runner mounted)
                   for 3-5 s, then free it; a server whose Raft stopped is restarted
  fsync-error      every fsync of the server's Raft stores fails (EIO) for 2-4 s; then a power
                   loss (SIGKILL, every write since arming undone) and a restart. With
                   ``--broken lying-fsync`` the fsyncs *succeed without syncing* instead
  power-loss       the same on every server at once, then a whole-cluster power loss: a correct
                   build acknowledges nothing after the first failed fsync, so nothing
                   acknowledged is lost; with ``--broken lying-fsync`` acknowledged writes are
                   destroyed and the checkers must notice (one server, or even a majority, is
                   not enough for that: Raft masks it when an untouched server wins the next
                   election)
  torn-tail        SIGKILL, half a frame appended to the last log segment, restart: the torn
                   tail must be truncated with a log line and the server must rejoin
  corrupt-middle   SIGKILL, one byte flipped inside a record in the middle of the log, restart:
                   the server must refuse to start naming file, offset and index; it is then
                   re-added with an empty data directory
  clock-jump       jump a server's Raft clock forward by 5-120 s or back by 5-30 s
  clock-skew       run a server's Raft clock at 0.25x-4x for 5-10 s
  stale-leader     jump the leader's clock back by the isolation time + 1 s (frozen: no ticks,
                   so no check-quorum step-down) and isolate it for 5-7 s: it still believes it leads while the
                   majority elects another; reads sent to it must not be stale
  transfer-leader  ask the leader to hand leadership to another server
  replace-server   SIGKILL a server, remove it from Raft (operator remove-peer by address), wipe
                   its data directory and start a new, empty server with the same name and
                   address; it must be added back as a voter
  leave-rejoin     a graceful leave (PUT /v1/agent/leave): the server must leave Raft (the
                   cluster shrinks by one), then it is started again and must be re-added
  grow             start a spare server (``--spare N``: e.g. a 4th and a 5th for a 3-server
                   cluster); it must be added as a voter
  shrink           a server added by grow leaves gracefully (never below the initial size) and
                   its data is wiped; it must leave Raft

Every fault also checks what the server must do (``expected``): a stopped Raft with a log line
after EIO, a truncated torn tail, a refusal naming the corrupt record. A miss is a
``fault_expectations`` checker failure. Kinds the system cannot take (the etcd control has no
fault hook; of the new kinds it takes disk-full and transfer-leader) are skipped and counted
under ``skipped``.

The schedule is the list of kinds repeated in order (``kill,kill,pause,partition`` gives three
kills per pause...), with 2-4 s of quiet between faults so the cluster can recover. A fault is
never started within ``tail`` seconds of the end of the run, so the final reads see a healed
cluster. ``heal_all`` undoes everything (used at the end and on errors).
"""

from __future__ import annotations

import itertools
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from chaos import faults
from chaos.history import Fault
from chaos.netns import Network
from chaos.systems import System

__all__ = ["Nemesis", "KINDS", "BASIC_KINDS", "DISK_KINDS", "CLOCK_KINDS", "HOOK_KINDS",
           "PARTITION_MODES"]

BASIC_KINDS = ("kill", "kill-leader", "pause", "partition", "restart-all")
DISK_KINDS = ("disk-full", "fsync-error", "power-loss", "torn-tail", "corrupt-middle")
CLOCK_KINDS = ("clock-jump", "clock-skew", "stale-leader")
MEMBERSHIP_KINDS = ("transfer-leader", "replace-server", "leave-rejoin", "grow", "shrink")
KINDS = (*BASIC_KINDS, *DISK_KINDS, *CLOCK_KINDS, *MEMBERSHIP_KINDS)
#: kinds that need Lictor's fault hook, its log format or its operator API
HOOK_KINDS = ("fsync-error", "power-loss", "torn-tail", "corrupt-middle", *CLOCK_KINDS, "replace-server",
              "leave-rejoin", "grow", "shrink")
PARTITION_MODES = ("majority-minority", "isolated-leader", "bridge")


class Nemesis:
    def __init__(self, system: System, net: Network, schedule: list[str], *, seed: int,
                 now: Callable[[], float], log: Callable[[str], None] = print,
                 warmup: float = 3.0, quiet: tuple[float, float] = (2.0, 4.0),
                 broken: str | None = None, disk_mounted: bool = False) -> None:
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
        self.broken = broken
        self.disk_mounted = disk_mounted
        self.skipped: dict[str, int] = {}
        self.expect_failures: list[str] = []
        self.patience = 1.0  # scales how long a fault waits for recovery (unit tests shrink it)

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

    def _members(self) -> list[int]:
        """The servers that are part of the cluster now (spares and shrunk ones are not)."""
        return list(self.system.members)

    def _target(self) -> int:
        if self.rng.random() < 2 / 3:
            ld = self.system.leader()
            if ld is not None:
                return ld
        return self.rng.choice(self._members())

    def _run(self) -> None:
        self._sleep(self.warmup)
        for kind in itertools.cycle(self.schedule):
            if self._stop.is_set() or self.now() > self._deadline:
                return
            if not self._applicable(kind):
                self.skipped[kind] = self.skipped.get(kind, 0) + 1
                self._sleep(0.5)
                continue
            try:
                getattr(self, "_" + kind.replace("-", "_"))()
            except Exception as exc:  # noqa: BLE001 - a failed fault must not kill the run
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                self.log(f"nemesis: {kind} failed: {exc}")
                self.heal_all()
            self._sleep(self.rng.uniform(*self.quiet))

    def _applicable(self, kind: str) -> bool:
        if kind in HOOK_KINDS and not self.system.supports_fault_hook:
            return False
        if kind == "disk-full" and not self.disk_mounted:
            return False
        if kind == "stale-leader" and not self.net.supports_partitions:
            return False
        return True

    def _expect(self, kind: str, detail: dict[str, Any], ok: bool, what: str) -> None:
        detail.setdefault("expected", {})[what] = ok
        if not ok:
            self.expect_failures.append(f"{kind} on {detail.get('server')}: {what}")
            self.log(f"nemesis: EXPECTATION FAILED: {kind} on {detail.get('server')}: {what}")

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
        members = self._members()
        n = len(members)
        ids = list(members)
        self.rng.shuffle(ids)
        leader = self.system.leader()
        if mode == "isolated-leader" and leader is not None:
            minority = [leader]
        else:
            minority = ids[: (n - 1) // 2]
        majority = [i for i in members if i not in minority]
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
        for i in self._members():
            self.system.kill(i)
        self._sleep(self.rng.uniform(0.5, 1.5))
        for i in self._members():
            self.system.start(i)
        ok = self.system.wait_leader(60) is not None
        self._record("restart-all", start, leader_elected=ok)

    # ------------------------------------------------------------------ disk faults

    def _restart(self, i: int) -> bool:
        self.system.kill(i)
        self.system.start(i)
        return self.system.wait_responsive(i, 30)

    def _raft_stopped(self, text: str) -> bool:
        return "stopped by a fatal error" in text or "log store failed" in text

    def _disk_full(self) -> None:
        i = self._target()
        s = self.system.servers[i]
        was_leader = self.system.leader() == i
        mark = self.system.log_size(i)
        start = self.now()
        d = self.system.data_dir(i)
        try:
            filled = faults.fill_disk(d)
            self._sleep(self.rng.uniform(3.0, 5.0))
        finally:
            faults.clear_disk(d)
        text = self.system.log_since(i, mark)
        stopped = self._raft_stopped(text) or not s.alive()
        detail: dict[str, Any] = {"server": s.name, "leader": was_leader, "filled_mb": filled >> 20,
                                  "raft_stopped": stopped}
        if stopped:  # a server whose Raft store failed must be restarted (store poisoned)
            detail["restarted"] = self._restart(i)
            self._expect("disk-full", detail, detail["restarted"], "rejoins after restart")
        self._record("disk-full", start, **detail)

    def _power_loss(self) -> None:
        self._fsync_error("power-loss", everywhere=True)

    def _fsync_error(self, kind: str = "fsync-error", everywhere: bool = False) -> None:
        lying = self.broken == "lying-fsync"
        targets = self._members() if everywhere else [self._target()]
        names = [self.system.servers[i].name for i in targets]
        was_leader = self.system.leader() in targets
        marks = {i: self.system.log_size(i) for i in targets}
        start = self.now()
        for i in targets:
            faults.control(self.system.fault_socket(i), {"op": "fsync", "mode": "lie" if lying else "eio"})
        # captured after arming: everything durable (and perhaps a little more) is kept, so the
        # power loss below never destroys a write that was acknowledged by a real fsync
        states = {i: faults.DiskState.capture(self.system.data_dir(i)) for i in targets}
        self._sleep(self.rng.uniform(2.0, 4.0))
        status = {}
        for i in targets:
            try:
                status[i] = faults.control(self.system.fault_socket(i), {"op": "status"})
            except Exception as exc:  # noqa: BLE001 - a dead server has no hook
                status[i] = {"error": str(exc)}
        for i in targets:  # power loss: whatever was not durable is gone
            self.system.kill(i)
        undone = {self.system.servers[i].name: states[i].power_loss() for i in targets}
        detail: dict[str, Any] = {"server": ",".join(names), "leader": was_leader,
                                  "mode": "lie" if lying else "eio", "undone": undone,
                                  "fsync_failed": sum(int(st.get("fsync_failed", 0)) for st in status.values()),
                                  "fsync_lied": sum(int(st.get("fsync_lied", 0)) for st in status.values())}
        if not lying:
            for i in targets:
                if int(status[i].get("fsync_failed", 0)):
                    self._expect(kind, detail, self._raft_stopped(self.system.log_since(i, marks[i])),
                                 f"raft on {self.system.servers[i].name} stops with a log line "
                                 "after a failed fsync")
        for i in targets:
            self.system.start(i)
        up = all(self.system.wait_responsive(i, 30) for i in targets)
        if everywhere:
            up = up and self.system.wait_leader(30) is not None
        detail["restarted"] = up
        self._expect(kind, detail, up, "rejoins after restart")
        self._record(kind, start, **detail)

    def _torn_tail(self) -> None:
        i = self._target()
        s = self.system.servers[i]
        was_leader = self.system.leader() == i
        start = self.now()
        self.system.kill(i)
        torn = faults.tear_last_segment(self.system.data_dir(i))
        mark = self.system.log_size(i)
        self.system.start(i)
        up = self.system.wait_responsive(i, 30)
        detail: dict[str, Any] = {"server": s.name, "leader": was_leader, **torn, "restarted": up}
        if torn.get("torn"):
            self._expect("torn-tail", detail, "truncated torn tail" in self.system.log_since(i, mark),
                         "torn tail truncated with a log line")
        self._expect("torn-tail", detail, up, "rejoins after restart")
        self._record("torn-tail", start, **detail)

    def _corrupt_middle(self) -> None:
        members = self._members()
        i = self.rng.choice(members)
        ld = self.system.leader()
        if ld == i and self.rng.random() < 0.5:
            i = members[(members.index(i) + 1) % len(members)]
        s = self.system.servers[i]
        start = self.now()
        self.system.kill(i)
        bad = faults.corrupt_middle_record(self.system.data_dir(i), self.rng)
        detail: dict[str, Any] = {"server": s.name, "leader": ld == i, **bad}
        mark = self.system.log_size(i)
        self.system.start(i)
        if bad.get("corrupted"):
            rc = self.system.wait_exit(i, 30)
            text = self.system.log_since(i, mark)
            named = (rc is not None and rc != 0 and "raft log corrupt" in text
                     and bad["file"] in text and f"offset {bad['offset']}" in text
                     and f"(index {bad['index']})" in text)
            detail["exit_code"] = rc
            self._expect("corrupt-middle", detail, named,
                         "refuses to start, naming file, offset and index")
            # recovery: re-added with an empty data directory (a new node id, the same name)
            detail.update(self._re_add_empty(i))
        else:
            detail["rejoined"] = self.system.wait_responsive(i, 30) and self._wait_caught_up(i, 45 * self.patience)
        self._expect("corrupt-middle", detail, detail["rejoined"], "rejoins (empty) and catches up")
        self._record("corrupt-middle", start, **detail)

    def _re_add_empty(self, i: int) -> dict[str, Any]:
        """Operator recovery of a lost server: remove it from Raft by address, wipe its data
        directory, start it empty (new node id, same name and address), wait until it is a
        voter that knows the leader."""
        self.system.kill(i)
        removed = False
        deadline = time.monotonic() + 45 * self.patience
        while not removed and time.monotonic() < deadline and not self._stop.is_set():
            ld = self.system.wait_leader(5)
            removed = ld is not None and self.system.remove_peer(ld, i)
            if not removed:
                time.sleep(0.5)
        d = self.system.data_dir(i)
        for p in d.iterdir():
            if p.name == faults.FILL_NAME:
                continue
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        self.system.start(i)
        up = self.system.wait_responsive(i, 30) and self._wait_voter(i, 45 * self.patience)
        return {"removed_old_peer": removed, "wiped": True, "rejoined": up}

    def _in_config(self, i: int) -> bool | None:
        """Whether server i is a voter in the leader's Raft configuration (None: no answer)."""
        ld = self.system.leader()
        if ld is None:
            return None
        servers = self.system.raft_servers(ld)
        if servers is None:
            return None
        addr = f"{self.net.addr(i)}:{getattr(self.system, 'server_port', 0)}"
        return any(s.get("Address") == addr and s.get("Voter") for s in servers)

    def _wait_voter(self, i: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.system.knows_leader(i) and self._in_config(i):
                return True
            time.sleep(0.3)
        return False

    # ------------------------------------------------------------------ membership

    def _replace_server(self) -> None:
        i = self._target()
        s = self.system.servers[i]
        was_leader = self.system.leader() == i
        start = self.now()
        detail: dict[str, Any] = {"server": s.name, "leader": was_leader, **self._re_add_empty(i)}
        self._expect("replace-server", detail, detail["removed_old_peer"], "old server removed")
        self._expect("replace-server", detail, detail["rejoined"], "new server added as a voter")
        self._record("replace-server", start, **detail)

    def _grow(self) -> None:
        """Add a spare server (never started, or shrunk away and wiped) to the cluster."""
        spares = [s.index for s in self.system.servers if s.index not in self.system.members]
        if not spares:
            self.skipped["grow"] = self.skipped.get("grow", 0) + 1
            return
        i = spares[0]
        s = self.system.servers[i]
        start = self.now()
        self.system.members.append(i)
        self.system.start(i)
        up = self.system.wait_responsive(i, 30) and self._wait_voter(i, 45 * self.patience)
        detail: dict[str, Any] = {"server": s.name, "size": len(self.system.members), "added": up}
        self._expect("grow", detail, up, "new server added as a voter")
        self._record("grow", start, **detail)

    def _shrink(self) -> None:
        """Remove a server beyond the initial size: graceful leave, then its data is wiped so a
        later grow adds it as a new server."""
        extra = [i for i in self.system.members if i not in self.system.initial]
        if not extra:
            self.skipped["shrink"] = self.skipped.get("shrink", 0) + 1
            return
        i = extra[-1] if self.rng.random() < 0.5 else self.rng.choice(extra)
        s = self.system.servers[i]
        was_leader = self.system.leader() == i
        start = self.now()
        asked = self.system.leave(i)
        exited = self.system.wait_exit(i, 20) is not None
        self.system.kill(i)
        self.system.members.remove(i)
        left = False
        deadline = time.monotonic() + 15 * self.patience
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._in_config(i) is False:
                left = True
                break
            time.sleep(0.3)
        d = self.system.data_dir(i)
        for p in d.iterdir():
            if p.name != faults.FILL_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        detail: dict[str, Any] = {"server": s.name, "leader": was_leader, "leave_accepted": asked,
                                  "exited": exited, "left_raft": left,
                                  "size": len(self.system.members)}
        self._expect("shrink", detail, left, "a gracefully leaving server leaves Raft")
        self._record("shrink", start, **detail)

    def _leave_rejoin(self) -> None:
        i = self._target()
        s = self.system.servers[i]
        was_leader = self.system.leader() == i
        start = self.now()
        asked = self.system.leave(i)
        exited = self.system.wait_exit(i, 20) is not None
        if not exited:
            self.system.kill(i)
        left = False
        deadline = time.monotonic() + 15 * self.patience
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._in_config(i) is False:
                left = True
                break
            time.sleep(0.3)
        self._sleep(self.rng.uniform(1.0, 3.0))  # the cluster runs one server short
        self.system.start(i)
        back = self.system.wait_responsive(i, 30) and self._wait_voter(i, 45 * self.patience)
        detail: dict[str, Any] = {"server": s.name, "leader": was_leader, "leave_accepted": asked,
                                  "exited": exited, "left_raft": left, "re_added": back}
        self._expect("leave-rejoin", detail, left, "a gracefully leaving server leaves Raft")
        self._expect("leave-rejoin", detail, back, "restarted server re-added as a voter")
        self._record("leave-rejoin", start, **detail)

    def _wait_caught_up(self, i: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.system.knows_leader(i):
                return True
            time.sleep(0.3)
        return False

    # ------------------------------------------------------------------ clock faults

    def _clock(self, i: int, req: dict[str, Any]) -> dict[str, Any]:
        return faults.control(self.system.fault_socket(i), {"op": "clock", **req})

    def _clock_jump(self) -> None:
        i = self._target()
        s = self.system.servers[i]
        was_leader = self.system.leader() == i
        # forward up to two minutes; back up to 30 s (the monotonic Raft clock then stands
        # still that long: no ticks, so no heartbeats or elections from this server)
        jump = self.rng.uniform(5.0, 120.0) if self.rng.random() < 0.5 else -self.rng.uniform(5.0, 30.0)
        start = self.now()
        self._clock(i, {"jump": jump})
        self._sleep(self.rng.uniform(3.0, 5.0))
        self._record("clock-jump", start, server=s.name, leader=was_leader, jump_s=round(jump, 1))

    def _clock_skew(self) -> None:
        i = self._target()
        s = self.system.servers[i]
        was_leader = self.system.leader() == i
        rate = self.rng.choice((0.25, 0.5, 2.0, 4.0))
        start = self.now()
        self._clock(i, {"rate": rate})
        try:
            self._sleep(self.rng.uniform(5.0, 10.0))
        finally:
            self._clock(i, {"reset": True})
        self._record("clock-skew", start, server=s.name, leader=was_leader, rate=rate)

    def _stale_leader(self) -> None:
        ld = self.system.wait_leader(10)
        if ld is None:
            raise RuntimeError("no leader to isolate")
        s = self.system.servers[ld]
        others = [j for j in self._members() if j != ld]
        start = self.now()
        hold = self.rng.uniform(5.0, 7.0)
        # frozen while isolated: no ticks, so no check-quorum step-down; it ticks again ~1 s
        # after the partition heals
        self._clock(ld, {"jump": -(hold + 1.0)})
        self.net.cut([(ld, j) for j in others])
        believed = new_leader = None
        try:
            deadline = self.now() + hold
            while self.now() < deadline and not self._stop.is_set():
                self._sleep(0.5)
                if self.system.believes_leader(ld):
                    believed = True if believed is None else believed
                else:
                    believed = False
                for j in others:
                    if self.system.believes_leader(j):
                        new_leader = self.system.servers[j].name
        finally:
            self.net.heal()
        self._record("stale-leader", start, server=s.name, leader=True,
                     believed_it_leads_throughout=bool(believed), new_leader=new_leader)

    def _transfer_leader(self) -> None:
        ld = self.system.wait_leader(10)
        if ld is None:
            raise RuntimeError("no leader to transfer from")
        start = self.now()
        ok = self.system.transfer_leader(ld)
        new = self.system.wait_leader(10)
        self._record("transfer-leader", start, server=self.system.servers[ld].name, leader=True,
                     accepted=ok, new_leader=self.system.servers[new].name if new is not None else None)

    def heal_all(self) -> None:
        """Remove partitions, resume paused servers, disarm fault hooks, free filled disks,
        start dead ones."""
        if self.net.supports_partitions:
            self.net.heal()
        for s in self.system.servers:
            if self.disk_mounted:
                faults.clear_disk(self.system.data_dir(s.index))
            if self.system.supports_fault_hook and s.alive() and not s.paused:
                try:
                    faults.control(self.system.fault_socket(s.index), {"op": "fsync", "mode": "ok"})
                    faults.control(self.system.fault_socket(s.index), {"op": "clock", "reset": True})
                except Exception:  # noqa: BLE001 - best effort (a server still starting)
                    pass
        for s in self.system.servers:
            if s.alive() and s.paused:
                self.system.signal(s.index, signal.SIGCONT)
        for i in self._members():
            if not self.system.servers[i].alive():
                self.system.start(i)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.faults:
            key = f.kind
            if f.kind == "kill" and f.detail.get("leader"):
                key = "kill-leader"
            out[key] = out.get(key, 0) + 1
        return out
