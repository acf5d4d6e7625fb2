"""Fixtures that run a real ``lictor agent -dev`` process on loopback.

Every process a test starts is stopped by PID (SIGTERM, then SIGKILL after a grace period), and
its output is kept in a log file that is printed when the agent fails to start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

LICTOR = [sys.executable, "-m", "lictor.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AgentProcess:
    """A running agent: its HTTP address, its PID, and a tiny JSON client for assertions."""

    def __init__(self, workdir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.http_port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "agent.log"
        self.args = [*LICTOR, "agent", "-dev", "-node", "lictor-test", f"-http-port={self.http_port}",
                     "-dns-port=-1", f"-server-port={free_port()}", f"-serf-lan-port={free_port()}", *extra]
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

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 10.0,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, raw = self.request(method, path, body, **kw)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {raw!r}"
        return json.loads(raw) if raw else None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


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
