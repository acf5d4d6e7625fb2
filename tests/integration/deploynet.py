"""Hosts for the deployment tests: one network namespace per machine on a bridge (chaos.netns's
layout, under our own name prefix ``ldep-<pid>-`` so no other run's cleanup touches it), an
``/etc/netns/<ns>/hosts`` per machine for names (``ip netns exec`` bind-mounts it over
/etc/hosts, as a cluster DNS would answer), processes started with ``ip netns exec`` and stopped
by PID, and HTTP to a machine's loopback from a thread that entered its namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from chaos.netns import CLONE_NEWNET, Network

__all__ = ["DeployNetwork", "Host", "netns_usable"]


def netns_usable() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


class DeployNetwork(Network):
    """``n`` machines 10.77.0.1..n on a bridge in a hub namespace; names carry this PID."""

    def __init__(self, n: int) -> None:
        super().__init__(f"dep{os.getpid()}", n, use_netns=True)
        self.prefix = f"ldep-{os.getpid()}-"
        self.hub = f"{self.prefix}hub"
        self._etc: list[Path] = []

    def ns(self, i: int) -> str:
        return f"{self.prefix}m{i + 1}"

    def set_hosts(self, names: dict[str, str]) -> None:
        """Every machine resolves ``names`` (name -> address) through its own /etc/hosts."""
        lines = ["127.0.0.1 localhost"] + [f"{addr} {name}" for name, addr in names.items()]
        for i in range(self.n):
            d = Path("/etc/netns") / self.ns(i)
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text("\n".join(lines) + "\n")
            self._etc.append(d)

    def teardown(self) -> None:
        super().teardown()
        for d in self._etc:
            shutil.rmtree(d, ignore_errors=True)
        self._etc.clear()
        try:
            Path("/etc/netns").rmdir()  # only if nobody else uses it
        except OSError:
            pass


def in_namespace(ns: str, fn: Any, timeout: float) -> Any:
    """Run ``fn()`` in a thread that entered network namespace ``ns``; its result or exception."""
    box: dict[str, Any] = {}

    def run() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                box["error"] = OSError(ctypes.get_errno(), f"setns({ns})")
                return
        finally:
            os.close(fd)
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout + 2)
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise TimeoutError(f"no answer from namespace {ns} within {timeout}s")
    return box["value"]


class Host:
    """One machine: a namespace, an address, a working directory and at most one agent process."""

    def __init__(self, net: DeployNetwork, i: int, name: str, root: Path) -> None:
        self.net, self.i, self.name = net, i, name
        self.ns = net.ns(i)
        self.addr = net.addr(i)
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        """Run ``argv`` as this machine's main process: its network namespace, and its own UTS
        namespace with the machine's hostname (an agent's default node name). Every step execs
        the next, so the PID we hold is the agent's."""
        self._log = open(self.log_path, "ab")
        machine = ["ip", "netns", "exec", self.ns, "unshare", "--uts", "--",
                   "/bin/sh", "-c", 'hostname "$0" && exec "$@"', self.name]
        self.proc = subprocess.Popen([*machine, *argv], env=env, cwd=self.dir,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], env=env, cwd=self.dir, capture_output=True,
                              text=True, timeout=timeout)

    def http(self, method: str, path: str, body: Any = None, *, token: str = "", host: str = "127.0.0.1",
             port: int = 8500, timeout: float = 5.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-Consul-Token": token} if token else {}

        def call() -> tuple[int, Any]:
            req = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    raw = r.read()
                    return r.status, json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode(errors="replace")

        return tuple(in_namespace(self.ns, call, timeout))  # type: ignore[return-value]

    def try_json(self, path: str, *, token: str = "", host: str = "127.0.0.1") -> Any:
        try:
            status, body = self.http("GET", path, token=token, host=host, timeout=3)
        except (OSError, TimeoutError):
            return None
        return body if status == 200 else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop_like_systemd(self, timeout_stop: float) -> tuple[int, bool]:
        """KillMode=mixed: SIGTERM to the main process, SIGKILL after TimeoutStopSec. The process
        we started is ``ip netns exec``, which execs the agent: its PID *is* the agent's.
        Returns (exit status, whether SIGKILL was needed)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        killed = False
        try:
            self.proc.wait(timeout_stop)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            killed = True
            self.proc.wait(15)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode, killed

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        if self._log is not None and not self._log.closed:
            self._log.close()


def wait_until(cond: Any, timeout: float, what: str, hosts: list[Host], step: float = 0.2) -> float:
    t0 = time.monotonic()
    last: BaseException | None = None
    while time.monotonic() - t0 < timeout:
        try:
            if cond():
                return time.monotonic() - t0
            last = None
        except (OSError, AssertionError, KeyError, TypeError, ValueError, TimeoutError) as exc:
            last = exc
        time.sleep(step)
    logs = "\n".join(f"--- {h.name} ({h.addr})\n{h.log_text()[-3000:]}" for h in hosts)
    raise AssertionError(f"timed out after {timeout}s waiting for: {what} ({last!r})\n{logs}")
