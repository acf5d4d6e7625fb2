"""Networks for a chaos run: one namespace per server on a bridge, and partitions as routes.

Layout (names carry the run's prefix ``lch-<run>-`` so ``python -m chaos cleanup`` finds them)::

    ns lch-<run>-hub:  br0 10.77.0.254/24  <- the runner's client sockets live here (setns)
        |-- veth h1 ---- eth0 10.77.0.1  ns lch-<run>-s1   (server 1)
        |-- veth h2 ---- eth0 10.77.0.2  ns lch-<run>-s2   (server 2)
        ...

The host's own network is never touched: every address is inside namespaces this module made.
A partition installs ``blackhole`` routes for the peers' /32s inside the affected servers'
namespaces: server-to-server packets are dropped silently (TCP stalls, as with a real cut), while
the clients on the hub still reach every server (as in Jepsen, clients see both sides).

Fallback (no ``ip netns``, e.g. not root): servers bind 127.0.0.(10+i) on loopback and a
partition is *emulated* by SIGSTOP-ing the minority side for its duration (the nemesis does
that; ``supports_partitions`` is False here). This is weaker: a stopped minority cannot serve
stale reads or accept doomed writes, so runs in this mode do not exercise split-brain reads.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable

__all__ = ["PREFIX", "Network", "netns_available", "cleanup"]

PREFIX = "lch-"
SUBNET = "10.77.0"
CLONE_NEWNET = 0x40000000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"{PREFIX}probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
        return True
    except (subprocess.CalledProcessError, OSError):
        return False
    finally:
        _ip("netns", "del", probe, check=False)


class Network:
    """Addresses, exec prefixes and partitions for ``n`` servers of run ``run_id``."""

    def __init__(self, run_id: str, n: int, *, use_netns: bool) -> None:
        self.run_id = run_id
        self.n = n
        self.use_netns = use_netns
        self.hub = f"{PREFIX}{run_id}-hub"
        self._cuts: set[tuple[int, int]] = set()
        self._made: list[str] = []

    @property
    def supports_partitions(self) -> bool:
        return self.use_netns

    def ns(self, i: int) -> str:
        return f"{PREFIX}{self.run_id}-s{i + 1}"

    def addr(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}" if self.use_netns else f"127.0.0.{10 + i}"

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)] if self.use_netns else []

    def setup(self) -> None:
        if not self.use_netns:
            return
        _ip("netns", "add", self.hub)
        self._made.append(self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{SUBNET}.254/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i in range(self.n):
            ns = self.ns(i)
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.hub, "link", "add", f"h{i + 1}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _ip("-n", self.hub, "link", "set", f"h{i + 1}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def enter_hub(self) -> None:
        """Move this (still single-threaded) process's network into the hub namespace, so the
        client sockets reach the servers. Files and subprocesses are unaffected."""
        if not self.use_netns:
            return
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = os.open(f"/var/run/netns/{self.hub}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({self.hub}): {os.strerror(err)}")
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ partitions

    def cut(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Drop traffic between each (a, b), both ways."""
        assert self.use_netns, "partitions need network namespaces"
        for a, b in pairs:
            for x, y in ((a, b), (b, a)):
                if (x, y) not in self._cuts:
                    _ip("-n", self.ns(x), "route", "add", "blackhole", f"{self.addr(y)}/32")
                    self._cuts.add((x, y))

    def heal(self) -> None:
        for x, y in sorted(self._cuts):
            _ip("-n", self.ns(x), "route", "del", "blackhole", f"{self.addr(y)}/32", check=False)
        self._cuts.clear()

    @property
    def cuts(self) -> set[tuple[int, int]]:
        return set(self._cuts)

    def teardown(self) -> None:
        for ns in reversed(self._made):
            _kill_namespace_processes(ns)
            _ip("netns", "del", ns, check=False)
        self._made.clear()


def _kill_namespace_processes(ns: str) -> list[int]:
    res = _ip("netns", "pids", ns, check=False)
    # the runner itself lives in the hub namespace: never signal ourselves
    pids = [int(p) for p in res.stdout.split() if p.strip().isdigit() and int(p) != os.getpid()]
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    return pids


def cleanup(prefix: str = PREFIX) -> list[str]:
    """Remove every namespace named ``prefix*`` and kill the processes inside it (they can only
    be servers a chaos run started there). Returns what was removed."""
    if shutil.which("ip") is None:
        return []
    res = _ip("netns", "list", check=False)
    removed = []
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix):
            pids = _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)
            removed.append(f"{name} (killed {len(pids)} processes)")
    return removed
