"""Real agent processes for gossip cluster tests: servers and client agents, either on distinct
loopback addresses with default ports or on one address with distinct ports. Every process is
started and stopped by PID; its output goes to a log file shown on failure.

Timings: ``LICTOR_GOSSIP_FAST=1`` (failure detection in about 1-2 s), 50 ms Raft ticks,
coordinates synced every 0.5 s and flushed by the leader every 0.2 s.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.procutil import ManagedProcess

LICTOR = [sys.executable, "-m", "lictor.cli.main"]

MESH_ENV = {"LICTOR_RAFT_TICK_INTERVAL": "0.05", "LICTOR_RPC_FRAME_TIMEOUT": "2", "LICTOR_RPC_HOLD_TIMEOUT": "5",
            "LICTOR_GOSSIP_FAST": "1", "LICTOR_COORD_SYNC_INTERVAL": "0.5",
            "LICTOR_COORD_UPDATE_PERIOD": "0.2"}
MESH_HCL = 'performance { raft_multiplier = 1 }\nautopilot { server_stabilization_time = "1s" }'


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host``."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            return port
        except OSError:
            continue


class MeshAgent(ManagedProcess):
    def __init__(self, root: Path, name: str, *, server: bool, host: str, distinct_ports: bool,
                 join: list[str], expect: int = 3, extra: tuple[str, ...] = (),
                 netns: str | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.server = server
        self.host = host
        self.workdir = root / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "agent.log"
        if distinct_ports:
            self.http_port, self.rpc_port, self.serf_port = free_port(host), free_port(host), free_port(host)
        else:
            self.http_port, self.rpc_port, self.serf_port = 8500, 8300, 8301
        self.join = join
        self.expect = expect
        self.extra = extra
        self.netns = netns
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def serf_addr(self) -> str:
        return f"{self.host}:{self.serf_port}"

    def args(self) -> list[str]:
        a = [*LICTOR, "agent", "-node", self.name, "-data-dir", str(self.data_dir), "-bind", self.host,
             "-client", self.host, f"-http-port={self.http_port}", "-dns-port=-1", "-grpc-port=-1",
             f"-server-port={self.rpc_port}", f"-serf-lan-port={self.serf_port}", "-retry-interval", "300ms",
             "-hcl", MESH_HCL, "-log-level", "info"]
        if self.server:
            a += ["-server", "-bootstrap-expect", str(self.expect)]
        for j in self.join:
            a += ["-retry-join", j]
        a += list(self.extra)
        if self.netns:
            a = ["ip", "netns", "exec", self.netns, *a]
        return a

    def spawn(self) -> MeshAgent:
        assert self.proc is None or self.proc.poll() is not None
        if self._log is not None and not self._log.closed:
            self._log.close()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **MESH_ENV, **self.env}, cwd=self.workdir)
        return self

    def wait_http(self, timeout: float = 60.0) -> MeshAgent:  # type: ignore[override]
        super().wait_http("/v1/agent/self", timeout)
        return self

    def indexed(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return int(resp.headers.get("X-Consul-Index") or 0), json.loads(resp.read())

    def try_json(self, path: str, timeout: float = 3.0) -> Any:
        try:
            status, raw = self.request("GET", path, timeout=timeout)
        except OSError:
            return None
        return json.loads(raw) if status == 200 and raw else None

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


class Mesh:
    """3 servers + N clients. ``distinct_hosts``: 127.0.0.11.. with default ports (Consul's
    usual local setup); otherwise all on 127.0.0.1 with free ports."""

    def __init__(self, root: Path, *, servers: int = 3, clients: int = 5, distinct_hosts: bool,
                 base: int = 11, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.agents: list[MeshAgent] = []
        n = servers + clients
        hosts = [f"127.0.0.{base + i}" if distinct_hosts else "127.0.0.1" for i in range(n)]
        for i in range(n):
            server = i < servers
            name = f"s{i + 1}" if server else f"c{i - servers + 1}"
            self.agents.append(MeshAgent(root, name, server=server, host=hosts[i],
                                         distinct_ports=not distinct_hosts, join=[], expect=servers,
                                         extra=extra))
        # gossip addresses: with default ports the bare IP is enough (as retry_join = ["10.0.0.1"])
        addrs = [a.host if distinct_hosts else a.serf_addr for a in self.servers]
        for a in self.agents:
            a.join = [x for x in addrs if x not in (a.host, a.serf_addr)]

    @property
    def servers(self) -> list[MeshAgent]:
        return [a for a in self.agents if a.server]

    @property
    def clients(self) -> list[MeshAgent]:
        return [a for a in self.agents if not a.server]

    def start(self, timeout: float = 60.0) -> Mesh:
        self.wait(self._ports_free, 20, "ports free (an earlier run still stopping?)", step=0.2)
        for a in self.agents:
            a.spawn()
        for a in self.agents:
            a.wait_http()
        self.wait(lambda: all(self.alive_members(a) == len(self.agents) for a in self.agents), timeout,
                  "every agent sees every member alive")
        self.wait(lambda: all(a.try_json("/v1/status/leader") for a in self.agents), timeout, "a leader")
        return self

    def _ports_free(self) -> bool:
        for a in self.agents:
            for port in (a.http_port, a.rpc_port, a.serf_port):
                with socket.socket() as s:
                    # as the agent's listeners do: a TIME_WAIT left by the previous run is no clash
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((a.host, port))
                    except OSError:
                        return False
        return True

    def alive_members(self, a: MeshAgent) -> int:
        ms = a.try_json("/v1/agent/members") or []
        return sum(1 for m in ms if m["Status"] == 1)

    def wait(self, cond: Any, timeout: float, what: str, step: float = 0.05) -> float:
        t0 = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - t0 < timeout:
            try:
                if cond():
                    return time.monotonic() - t0
                last = None
            except (OSError, AssertionError, KeyError, TypeError, ValueError) as exc:
                last = exc
            time.sleep(step)
        logs = "\n".join(f"--- {a.name}\n{a.log_text()[-2500:]}" for a in self.agents)
        raise AssertionError(f"timed out after {timeout}s waiting for: {what} ({last!r})\n{logs}")

    def stop(self) -> None:
        for a in self.agents:
            a.stop()
