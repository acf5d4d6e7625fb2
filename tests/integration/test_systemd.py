"""deploy/systemd/lictor.service: the unit passes ``systemd-analyze verify`` (Debian's systemd,
installed by .ci/run), has the hardening issue 10 asks for, and the agent speaks the notify
protocol to a real ``NOTIFY_SOCKET`` datagram socket as systemd's manager would see it:
STATUS while a server waits for peers, READY=1 only once it serves, RELOADING=1/READY=1 around
SIGHUP, STOPPING=1 on SIGTERM. Agents run from the wheel install with the unit's own ExecStart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.deployfiles import DEPLOY, INSTALLED_LICTOR, exec_start_argv, read_unit
from tests.integration.meshproc import free_port
from tests.integration.wheelenv import WheelInstall

pytestmark = pytest.mark.integration

UNIT = DEPLOY / "systemd" / "lictor.service"


def verify(unit_dir: Path) -> tuple[int, str]:
    """``systemd-analyze verify`` of the unit in ``unit_dir`` (drop-ins in lictor.service.d/ are
    read too). systemd only *warns* about many bad settings ("Failed to parse ..., ignoring") and
    still exits 0, so any output at all counts as a problem here."""
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: install Debian's systemd package (.ci/run does)"
    res = subprocess.run([exe, "verify", str(unit_dir / "lictor.service")], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    return res.returncode, (res.stdout + res.stderr).strip()


def test_unit_is_type_notify_and_hardened() -> None:
    svc = read_unit(UNIT)["Service"]
    assert svc["Type"] == ["notify"]
    assert svc["CapabilityBoundingSet"] == []  # present and empty: no capabilities at all
    assert "CapabilityBoundingSet" in svc and svc["AmbientCapabilities"] == []
    assert svc["SystemCallFilter"] == ["@system-service"]
    assert svc["UMask"] == ["0077"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("RestrictNamespaces", "yes")):
        assert svc[key] == [value], key
    assert svc["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert svc["ExecStart"][0].split()[0] == INSTALLED_LICTOR


def test_systemd_analyze_verify(wheel_install: WheelInstall, tmp_path: Path) -> None:
    # As shipped, the unit names /opt/lictor/venv/bin/lictor, which verify insists exists: that is
    # the one complaint it may have here.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(UNIT, shipped / "lictor.service")
    rc, out = verify(shipped)
    if out:
        assert rc != 0 and f"Command {INSTALLED_LICTOR} is not executable" in out, out
        assert len(out.splitlines()) == 1, out
    # With the install path pointing at a real install (the wheel's venv) it is clean.
    real = tmp_path / "real"
    real.mkdir()
    (real / "lictor.service").write_text(UNIT.read_text().replace(INSTALLED_LICTOR, str(wheel_install.lictor)))
    assert verify(real) == (0, "")


@pytest.mark.parametrize("override, complaint", [
    ("[Service]\nType=notfy\n", "Failed to parse service type"),
    ("[Service]\nSystemCallFilter=@no-such-group\n", "Unknown system call group"),
    ("[Service]\nExecStart=\nExecStart=/nonexistent/lictor agent\n", "/nonexistent/lictor is not executable"),
])
def test_a_broken_override_is_named(wheel_install: WheelInstall, tmp_path: Path, override: str,
                                     complaint: str) -> None:
    (tmp_path / "lictor.service").write_text(UNIT.read_text().replace(INSTALLED_LICTOR, str(wheel_install.lictor)))
    (tmp_path / "lictor.service.d").mkdir()
    (tmp_path / "lictor.service.d" / "override.conf").write_text(override)
    _, out = verify(tmp_path)
    assert complaint in out, out


# ---------------------------------------------------------------------------------------------
# the notify protocol, against real agents


class NotifySocket:
    """The manager's end: an AF_UNIX datagram socket, messages parsed into dicts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[dict[str, str]] = []

    def next(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            raw = self.sock.recv(65536)
        except TimeoutError:
            return None
        msg = dict(line.split("=", 1) for line in raw.decode().split("\n") if line)
        self.seen.append(msg)
        return msg

    def wait_for(self, key: str, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.next(max(0.05, deadline - time.monotonic()))
            if msg is not None and key in msg:
                return msg
        raise AssertionError(f"no {key} within {timeout}s; seen {self.seen}")

    def close(self) -> None:
        self.sock.close()


def _server_config(d: Path, name: str, *, join: list[str]) -> tuple[Path, int]:
    """A loopback server wanting 2 servers, on its own free ports, in config dir ``d``."""
    http, rpc, serf = free_port(), free_port(), free_port()
    d.mkdir(parents=True)
    joins = ", ".join(f'"{j}"' for j in join)
    (d / "server.hcl").write_text(f"""
node_name = "{name}"
data_dir = "{d / 'data'}"
server = true
bootstrap_expect = 2
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
retry_join = [{joins}]
retry_interval = "300ms"
ports {{
  http = {http}
  server = {rpc}
  serf_lan = {serf}
  dns = -1
  grpc = -1
}}
performance {{
  raft_multiplier = 1
}}
""")
    return d, http


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
        return bytes(r.read())


def test_notify_protocol(wheel_install: WheelInstall, tmp_path: Path) -> None:
    s1_dir, s1_http = _server_config(tmp_path / "s1", "s1", join=[])
    sock = NotifySocket(tmp_path / "notify.sock")
    env = {"PATH": f"{wheel_install.venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "NOTIFY_SOCKET": str(sock.path), "LICTOR_RAFT_TICK_INTERVAL": "0.05", "LICTOR_GOSSIP_FAST": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(cfg: Path, notify: bool) -> subprocess.Popen[bytes]:
        log = open(cfg / "agent.log", "wb")
        logs.append(log)
        e = env if notify else {k: v for k, v in env.items() if k != "NOTIFY_SOCKET"}
        p = subprocess.Popen(exec_start_argv(UNIT, wheel_install.lictor, config_dir=cfg), env=e,
                             stdout=log, stderr=subprocess.STDOUT, cwd=cfg)
        procs.append(p)
        return p

    try:
        s1 = start(s1_dir, notify=True)
        # alone, with bootstrap_expect = 2: it serves HTTP but is not READY; STATUS says why
        first = sock.wait_for("STATUS", 20)
        assert "READY" not in first and "waiting for a leader or a peer" in first["STATUS"], first
        assert _get(s1_http, "/v1/agent/self")  # HTTP is up already ...
        assert sock.next(1.5) is None            # ... and still no READY=1
        # a second server joins it: now s1 serves, and READY=1 comes with a STATUS line
        s2_dir, _ = _server_config(tmp_path / "s2", "s2",
                                   join=[f"127.0.0.1:{_serf_port(s1_dir)}"])
        start(s2_dir, notify=False)
        ready = sock.wait_for("READY", 30)
        assert ready["READY"] == "1" and ready["STATUS"].startswith("server "), ready
        assert _get(s1_http, "/v1/agent/self")
        # SIGHUP: RELOADING=1 (with the monotonic time systemd >= 253 wants), then READY=1
        s1.send_signal(signal.SIGHUP)
        rel = sock.wait_for("RELOADING", 10)
        assert rel["RELOADING"] == "1" and int(rel["MONOTONIC_USEC"]) > 0
        again = sock.wait_for("READY", 10)
        assert again["STATUS"].startswith("reloaded; "), again
        # a reload that fails keeps running and says so
        (s1_dir / "broken.hcl").write_text("bind_addr = \"not-an-ip\"\n")
        s1.send_signal(signal.SIGHUP)
        sock.wait_for("RELOADING", 10)
        failed = sock.wait_for("READY", 10)
        assert failed["STATUS"].startswith("reload failed, kept the running configuration"), failed
        assert "bind_addr" in failed["STATUS"]
        assert s1.poll() is None
        # SIGTERM: STOPPING=1, then the process exits by itself
        s1.send_signal(signal.SIGTERM)
        stopping = sock.wait_for("STOPPING", 10)
        assert stopping["STOPPING"] == "1" and "terminated" in stopping["STATUS"]
        assert s1.wait(30) == 0
        order = [k for m in sock.seen for k in ("READY", "RELOADING", "STOPPING") if k in m]
        assert order == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"], sock.seen
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for log in logs:
            log.close()
        sock.close()


def _serf_port(cfg: Path) -> int:
    import re

    m = re.search(r"serf_lan = (\d+)", (cfg / "server.hcl").read_text())
    assert m
    return int(m.group(1))
