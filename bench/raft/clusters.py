"""3-member clusters on loopback for bench/raft: etcd (the anchor) and Lictor.

Every process started here is registered by PID in ``CHILDREN`` and stopped by PID (SIGTERM,
then SIGKILL after a grace period) by ``Cluster.stop()``; ``stop_all_children()`` is wired to
atexit and to SIGINT/SIGTERM by run.py, so nothing outlives the benchmark even on errors.
All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python")

CHILDREN: dict[int, subprocess.Popen] = {}


def spawn(args: list[str], log_path: Path, **kw: Any) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    finally:
        log.close()
    CHILDREN[p.pid] = p
    return p


def stop_proc(p: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop one child by its PID: SIGTERM, wait up to ``grace`` s, then SIGKILL."""
    try:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(grace)
    except ProcessLookupError:
        pass
    finally:
        CHILDREN.pop(p.pid, None)


def kill_proc(p: subprocess.Popen) -> None:
    """SIGKILL one child by PID (the failover test) and reap it."""
    try:
        os.kill(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(10)
    CHILDREN.pop(p.pid, None)


def stop_all_children() -> None:
    for p in list(CHILDREN.values()):
        stop_proc(p, grace=3.0)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def http_req(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 3.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def prefix_end(prefix: bytes) -> bytes:
    """etcd range_end for a prefix scan: the prefix with its last byte incremented."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


class Cluster:
    """Common part: three members, each with an HTTP port the load goes to."""

    system = "?"
    mode = "?"  # request format: "etcd" or "lictor"

    def __init__(self, workdir: Path, label: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.system}-{label}-", dir=workdir))
        self.procs: list[subprocess.Popen | None] = [None, None, None]
        self.http_ports: list[int] = []
        self.names = [f"{self.system[0]}{i + 1}" for i in range(3)]

    # -- to implement
    def start(self, timeout: float = 60.0) -> None: ...
    def leader_index(self) -> int | None: ...
    def put(self, i: int, key: str, value: bytes) -> bool: ...
    def get(self, i: int, key: str) -> bytes | None: ...
    def count_prefix(self, i: int, prefix: str) -> int: ...

    # -- shared
    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def wait_ready(self, timeout: float) -> int:
        """Until every live member agrees on a leader and a write through a follower succeeds."""
        deadline = time.monotonic() + timeout
        last_err: Any = None
        while time.monotonic() < deadline:
            for i, p in enumerate(self.procs):
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"{self.names[i]} exited with {p.returncode}; log: {self.log_path(i)}\n"
                                       + self.log_tail(i))
            try:
                lead = self.leader_index()
                if lead is not None:
                    follower = next(i for i in self.alive() if i != lead)
                    if self.put(follower, "bench-ready", b"1") and self.get(follower, "bench-ready") == b"1":
                        return lead
            except Exception as e:  # noqa: BLE001 - still starting
                last_err = e
            time.sleep(0.2)
        raise RuntimeError(f"{self.system} cluster not ready after {timeout:.0f}s (last error: {last_err!r}); "
                           f"logs in {self.dir}")

    def log_path(self, i: int) -> Path:
        return self.dir / f"{self.names[i]}.log"

    def log_tail(self, i: int, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path(i).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, keep_dir: bool = False) -> None:
        for p in self.procs:
            if p is not None:
                stop_proc(p)
        if not keep_dir:
            shutil.rmtree(self.dir / "data", ignore_errors=True)

    def kill(self, i: int) -> None:
        p = self.procs[i]
        assert p is not None
        kill_proc(p)


class EtcdCluster(Cluster):
    """Debian's etcd, 3 members on loopback, fsync on (etcd's default; --unsafe-no-fsync not set)."""

    system = "etcd"
    mode = "etcd"

    def __init__(self, workdir: Path, label: str) -> None:
        super().__init__(workdir, label)
        ports = free_ports(6)
        self.http_ports, self.peer_ports = ports[:3], ports[3:]
        self.member_ids: list[str | None] = [None, None, None]

    def command(self, i: int) -> list[str]:
        cluster = ",".join(f"{n}=http://{HOST}:{p}" for n, p in zip(self.names, self.peer_ports))
        c, pp = self.http_ports[i], self.peer_ports[i]
        return ["etcd", "--name", self.names[i], "--data-dir", str(self.dir / "data" / self.names[i]),
                "--listen-client-urls", f"http://{HOST}:{c}", "--advertise-client-urls", f"http://{HOST}:{c}",
                "--listen-peer-urls", f"http://{HOST}:{pp}", "--initial-advertise-peer-urls", f"http://{HOST}:{pp}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"bench-{self.dir.name}", "--logger", "zap", "--log-level", "warn"]

    def start(self, timeout: float = 60.0) -> int:
        (self.dir / "data").mkdir(exist_ok=True)
        for i in range(3):
            self.procs[i] = spawn(self.command(i), self.log_path(i))
        return self.wait_ready(timeout)

    def _post(self, i: int, path: str, doc: dict, timeout: float = 3.0) -> tuple[int, dict]:
        st, body = http_req(self.http_ports[i], "POST", path, json.dumps(doc).encode(), timeout=timeout,
                            headers={"Content-Type": "application/json"})
        try:
            return st, json.loads(body or b"{}")
        except ValueError:
            return st, {"raw": body.decode(errors="replace")}

    def status(self, i: int) -> dict:
        st, doc = self._post(i, "/v3/maintenance/status", {}, timeout=1.0)
        if st != 200:
            raise RuntimeError(f"status {st}: {doc}")
        return doc

    def leader_index(self) -> int | None:
        leaders, ids = set(), {}
        for i in self.alive():
            doc = self.status(i)
            ids[doc["header"]["member_id"]] = i
            leaders.add(doc.get("leader"))
        if len(leaders) != 1:
            return None
        lead = leaders.pop()
        return ids.get(lead)

    def put(self, i: int, key: str, value: bytes) -> bool:
        st, _ = self._post(i, "/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return st == 200

    def get(self, i: int, key: str) -> bytes | None:
        """Linearizable read (etcd's default for Range) on member i."""
        st, doc = self._post(i, "/v3/kv/range", {"key": b64(key)})
        if st != 200:
            raise RuntimeError(f"range {st}: {doc}")
        kvs = doc.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def count_prefix(self, i: int, prefix: str) -> int:
        p = prefix.encode()
        st, doc = self._post(i, "/v3/kv/range", {"key": b64(p), "range_end": b64(prefix_end(p)),
                                                 "count_only": True}, timeout=30)
        if st != 200:
            raise RuntimeError(f"range count {st}: {doc}")
        return int(doc.get("count", 0))


class LictorCluster(Cluster):
    """Three `lictor agent -server -bootstrap-expect 3` processes on loopback, each joining the
    others' gossip (serf LAN) ports with -retry-join."""

    system = "lictor"
    mode = "lictor"

    def __init__(self, workdir: Path, label: str, extra_args: list[str] | None = None,
                 raft_multiplier: int | None = None, system: str = "lictor") -> None:
        self.system = system
        super().__init__(workdir, label)
        self.names = [f"l{i + 1}" for i in range(3)]
        self.raft_multiplier = raft_multiplier
        ports = free_ports(9)
        self.http_ports, self.server_ports, self.serf_ports = ports[:3], ports[3:6], ports[6:]
        self.extra_args = list(extra_args or [])

    def command(self, i: int) -> list[str]:
        args = [PY, "-m", "lictor.cli.main", "agent", "-server", "-bootstrap-expect", "3",
                "-data-dir", str(self.dir / "data" / self.names[i]), "-node", self.names[i],
                "-bind", HOST, "-http-port", str(self.http_ports[i]), "-server-port", str(self.server_ports[i]),
                "-serf-lan-port", str(self.serf_ports[i]), "-dns-port", "-1"]
        # retry_join is a LAN gossip join list (as Consul's): the others' serf LAN ports, never
        # their server RPC ports
        for j in range(3):
            if j != i:
                args += ["-retry-join", f"{HOST}:{self.serf_ports[j]}"]
        # join retries every 1 s instead of Consul's 30 s: only cluster formation gets quicker
        args += ["-retry-interval", "1s"]
        if self.raft_multiplier is not None:
            args += ["-hcl", f"performance {{ raft_multiplier = {self.raft_multiplier} }}"]
        return args + self.extra_args

    def start(self, timeout: float = 60.0) -> int:
        (self.dir / "data").mkdir(exist_ok=True)
        for i in range(3):
            (self.dir / "data" / self.names[i]).mkdir(exist_ok=True)
            # LICTOR_BENCH_TREE=DIR: run another build (DIR/lictor/{agent,cli,common,server}), e.g. a
            # "before" checkout, with the same venv; its servers start in DIR with DIR on PYTHONPATH
            tree = os.environ.get("LICTOR_BENCH_TREE")
            env = {**os.environ, "PYTHONPATH": tree} if tree else None
            self.procs[i] = spawn(self.command(i), self.log_path(i), cwd=tree or str(REPO), env=env)
        return self.wait_ready(timeout)

    def leader_index(self) -> int | None:
        leaders = set()
        for i in self.alive():
            st, body = http_req(self.http_ports[i], "GET", "/v1/status/leader", timeout=1.0)
            if st != 200:
                return None
            leaders.add(json.loads(body))
        if len(leaders) != 1:
            return None
        lead = leaders.pop()
        if not lead:
            return None
        port = int(str(lead).rsplit(":", 1)[1])
        return self.server_ports.index(port) if port in self.server_ports else None

    def put(self, i: int, key: str, value: bytes) -> bool:
        st, body = http_req(self.http_ports[i], "PUT", f"/v1/kv/{key}", value)
        return st == 200 and body.strip() == b"true"

    def get(self, i: int, key: str) -> bytes | None:
        """?consistent read on server i (ReadIndex on the leader, forwarded from a follower)."""
        st, body = http_req(self.http_ports[i], "GET", f"/v1/kv/{key}?consistent&raw")
        if st == 404:
            return None
        if st != 200:
            raise RuntimeError(f"GET {key}: {st} {body[:200]!r}")
        return body

    def count_prefix(self, i: int, prefix: str) -> int:
        st, body = http_req(self.http_ports[i], "GET", f"/v1/kv/{prefix}?keys&consistent", timeout=60)
        if st == 404:
            return 0
        if st != 200:
            raise RuntimeError(f"GET {prefix}?keys: {st} {body[:200]!r}")
        return len(json.loads(body))
