"""Fixtures that run a real ``lictor agent -dev`` process on loopback.

Every process a test starts is stopped by PID (SIGTERM, then SIGKILL after a grace period), and
its output is kept in a log file that is printed when the agent fails to start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procutil import ManagedProcess
from tests.integration.wheelenv import WheelInstall, build_and_install

LICTOR = [sys.executable, "-m", "lictor.cli.main"]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: the sockets stay bound until all are picked, so the kernel
    cannot hand the same port out twice (which one-at-a-time picking did, now and then)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class AgentProcess(ManagedProcess):
    """A running agent: its HTTP address, its PID, and a tiny JSON client for assertions."""

    def __init__(self, workdir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.http_port, server_port, serf_port = free_ports(3)
        self.workdir = workdir
        self.log_path = workdir / "agent.log"
        self.args = [*LICTOR, "agent", "-dev", "-node", "lictor-test", f"-http-port={self.http_port}",
                     "-dns-port=-1", f"-server-port={server_port}", f"-serf-lan-port={serf_port}", *extra]
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def start(self, timeout: float = 15.0) -> AgentProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self._env,
                                     cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                status, body = self.request("GET", "/v1/status/leader", timeout=0.5)
                if status == 200 and json.loads(body):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"agent did not answer within {timeout}s:\n{self.log_text()}")


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[AgentProcess] = []

    def make(*extra: str, env: dict[str, str] | None = None, start: bool = True) -> AgentProcess:
        d = tmp_path / f"agent{len(started)}"
        d.mkdir()
        a = AgentProcess(d, *extra, env=env)
        started.append(a)
        return a.start() if start else a

    yield make
    for a in started:
        a.stop()


@pytest.fixture(scope="session")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> WheelInstall:
    """The sdist and wheel built from this checkout, the wheel installed into a fresh venv without
    test extras: one build for the whole session (tests/integration/wheelenv.py)."""
    return build_and_install(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def dev_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One dev agent shared by a module's tests (they use distinct keys and names)."""
    a = AgentProcess(tmp_path_factory.mktemp("dev"), "-enable-script-checks").start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def consul_client(dev_agent: AgentProcess) -> Any:
    import consul

    return consul.Consul(host="127.0.0.1", port=dev_agent.http_port)


# ----------------------------------------------------------------------------- server clusters

#: Short Raft timings for cluster tests: 50 ms ticks (elections after 0.5-1 s), autopilot
#: promoting after 1 s, half-sent RPC frames dropped after 2 s. Documented in
#: lictor.agent.agent.cluster_config.
CLUSTER_ENV = {"LICTOR_RAFT_TICK_INTERVAL": "0.05", "LICTOR_RPC_FRAME_TIMEOUT": "2",
               "LICTOR_RPC_HOLD_TIMEOUT": "5"}
CLUSTER_HCL = ('performance { raft_multiplier = 1 }\n'
               'autopilot { server_stabilization_time = "1s" }')


class ServerProcess(ManagedProcess):
    """One `lictor agent -server` process with its own data dir and ports (all on 127.0.0.1).
    Restartable with the same data dir and ports; stopped by PID."""

    def __init__(self, workdir: Path, name: str, *, expect: int = 3, join: list[str] | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.name = name
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.http_port, self.server_port, self.serf_port = free_ports(3)
        self.expect = expect
        self.join = list(join or [])
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "agent.log"
        self.starts = 0
        self._log: Any = None

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    @property
    def serf_addr(self) -> str:
        """The LAN gossip address: what retry_join takes."""
        return f"127.0.0.1:{self.serf_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def args(self) -> list[str]:
        a = [*LICTOR, "agent", "-server", "-node", self.name, "-data-dir", str(self.data_dir),
             "-bind", "127.0.0.1", f"-http-port={self.http_port}", "-dns-port=-1",
             f"-server-port={self.server_port}", f"-serf-lan-port={self.serf_port}",
             "-retry-interval", "200ms", "-hcl", CLUSTER_HCL, "-log-level", "debug"]
        if self.expect:
            a += ["-bootstrap-expect", str(self.expect)]
        for j in self.join:
            a += ["-retry-join", j]
        return a + list(self.extra)

    def spawn(self) -> ServerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self._close_log()  # it may have exited on its own (a graceful leave)
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n===== start #{self.starts} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **CLUSTER_ENV}, cwd=self.workdir)
        return self

    def wait_http(self, timeout: float = 45.0) -> ServerProcess:  # type: ignore[override]
        super().wait_http("/v1/status/leader", timeout)
        return self

    def leader(self) -> str:
        try:
            status, raw = self.request("GET", "/v1/status/leader", timeout=2.0)
        except OSError:
            return ""
        return json.loads(raw) if status == 200 else ""


class RaftCluster:
    """N servers that retry-join each other's gossip (serf LAN) port with -bootstrap-expect N."""

    def __init__(self, root: Path, n: int = 3) -> None:
        self.root = root
        self.servers: list[ServerProcess] = []
        for i in range(n):
            d = root / f"s{i + 1}"
            d.mkdir(parents=True)
            self.servers.append(ServerProcess(d, f"s{i + 1}", expect=n))
        for s in self.servers:
            s.join = [o.serf_addr for o in self.servers if o is not s]

    def add(self, name: str, *, join: list[str], expect: int = 0) -> ServerProcess:
        d = self.root / name
        d.mkdir(parents=True)
        s = ServerProcess(d, name, expect=expect, join=join)
        self.servers.append(s)
        return s

    def start(self) -> RaftCluster:
        for s in self.servers:
            s.spawn()
        for s in self.servers:
            s.wait_http()
        return self

    def running(self) -> list[ServerProcess]:
        return [s for s in self.servers if s.alive()]

    def wait_leader(self, timeout: float = 30.0, among: list[ServerProcess] | None = None) -> ServerProcess:
        """Until every running server (or `among`) names the same leader; returns it."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            group = among or self.running()
            seen = [s.leader() for s in group]
            if seen and seen[0] and all(x == seen[0] for x in seen):
                for s in self.servers:
                    if s.rpc_addr == seen[0] and s.alive():
                        return s
            time.sleep(0.05)
        logs = "\n".join(f"--- {s.name}\n{s.log_text()[-3000:]}" for s in self.servers)
        raise AssertionError(f"no agreed leader within {timeout}s: {seen}\n{logs}")

    def followers(self) -> list[ServerProcess]:
        leader = self.wait_leader()
        return [s for s in self.running() if s is not leader]

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[RaftCluster] = []

    def make(n: int = 3, start: bool = True) -> RaftCluster:
        c = RaftCluster(tmp_path / f"cluster{len(made)}", n)
        made.append(c)
        return c.start() if start else c

    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaftCluster]:
    """One 3-server cluster shared by a module's read-mostly tests (distinct keys per test)."""
    c = RaftCluster(tmp_path_factory.mktemp("raft"), 3)
    try:
        c.start()
        c.wait_leader()
        yield c
    finally:
        c.stop()


def eventually(fn: Any, timeout: float = 10.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll `fn` until it returns a truthy value (returned) or raise AssertionError."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, AssertionError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture
def wait_for() -> Any:
    return eventually
