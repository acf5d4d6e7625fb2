"""The systems under test: Lictor servers and the etcd control, as real processes.

A :class:`System` starts/kills/pauses its servers (always by PID) and performs single client
operations, each returning a :class:`Result` with a Jepsen status:

* ``ok``   the server answered (a CAS or an acquire may answer False),
* ``fail`` definitely not applied (connection refused before sending, or a 4xx rejection),
* ``info`` unknown (timeout, reset after sending, 5xx): the write may or may not have happened.

Lictor's CAS compares ModifyIndex, not values; every written value is unique, so "the
ModifyIndex I read with value v is still current" is the same as "the value is still v"
(and ``cas=0`` is "the key is absent"). The client therefore records a value CAS.

``broken='stale-reads'`` sends every read to a random server as ``?stale`` (Lictor) or
``serializable`` (etcd): the checker still treats them as linearizable, so it must fail.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.netns import Network

__all__ = ["Result", "Server", "System", "LictorSystem", "EtcdSystem", "make_system"]



@dataclass(slots=True)
class Result:
    status: str  # ok | fail | info
    output: Any = None
    error: str = ""
    meta: Any = None  # e.g. a ModifyIndex


class HTTPStatus(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


def http_call(host: str, port: int, method: str, path: str, body: bytes | None = None,
              timeout: float = 4.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def classify(exc: BaseException) -> Result:
    """Exceptions from a request -> fail (never reached the server) or info (maybe applied)."""
    if isinstance(exc, ConnectionRefusedError):
        return Result("fail", error="refused")
    if isinstance(exc, HTTPStatus):
        if 400 <= exc.status < 500 and exc.status not in (408, 429):
            return Result("fail", error=str(exc))
        return Result("info", error=str(exc))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return Result("info", error="timeout")
    return Result("info", error=f"{type(exc).__name__}: {exc}")


class Server:
    def __init__(self, index: int, name: str, workdir: Path) -> None:
        self.index = index
        self.name = name
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class System:
    """Base: process control. Subclasses give commands and client operations."""

    name = "?"
    http_port = 0

    def __init__(self, net: Network, workdir: Path, *, timeout: float = 4.0,
                 broken: str | None = None, rng: random.Random | None = None,
                 active: int | None = None) -> None:
        self.net = net
        self.workdir = workdir
        self.timeout = timeout
        self.broken = broken
        self.rng = rng or random.Random(0)
        self.servers = [Server(i, f"s{i + 1}", workdir / f"s{i + 1}") for i in range(net.n)]
        #: the servers started at the beginning, and those in the cluster now (the others are
        #: spares that the grow fault may add)
        self.initial = list(range(active if active is not None else net.n))
        self.members = list(self.initial)
        for s in self.servers:
            s.workdir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ processes

    def command(self, i: int) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, i: int) -> None:
        s = self.servers[i]
        assert not s.alive(), f"{s.name} already running"
        s.starts += 1
        log = open(s.workdir / "server.log", "ab")
        log.write(f"\n===== start #{s.starts} at {time.time():.3f} =====\n".encode())
        log.flush()
        env = {**self.env(), **getattr(self, "_env_extra", {})}
        s.proc = subprocess.Popen([*self.net.exec_prefix(i), *self.command(i)], stdout=log,
                                  stderr=subprocess.STDOUT, env=env, cwd=s.workdir,
                                  start_new_session=True)  # Ctrl-C in the terminal is ours to relay
        log.close()
        s.paused = False
        with open(self.workdir / "pids.log", "a") as fh:  # every PID this run started
            fh.write(f"{s.name} {s.proc.pid}\n")

    def signal(self, i: int, sig: int) -> None:
        s = self.servers[i]
        if s.alive():
            assert s.pid is not None
            os.kill(s.pid, sig)
            if sig == signal.SIGSTOP:
                s.paused = True
            elif sig == signal.SIGCONT:
                s.paused = False

    def kill(self, i: int) -> None:
        s = self.servers[i]
        if s.alive():
            assert s.proc is not None
            os.kill(s.proc.pid, signal.SIGKILL)
            s.proc.wait(20)
        s.paused = False

    def stop_all(self) -> None:
        for s in self.servers:
            if s.alive():
                assert s.proc is not None
                try:
                    os.kill(s.proc.pid, signal.SIGCONT)
                    os.kill(s.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    s.proc.wait(20)
                except subprocess.TimeoutExpired:
                    pass

    def data_dir(self, i: int) -> Path:
        return self.servers[i].workdir / "data"

    def fault_socket(self, i: int) -> Path:
        """The Unix socket of server i's test-only fault hook (short: sun_path is 108 bytes)."""
        return Path(f"/tmp/lch-{self.net.run_id}-{self.servers[i].name}.sock")

    supports_fault_hook = False

    def log_size(self, i: int) -> int:
        try:
            return (self.servers[i].workdir / "server.log").stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, i: int, offset: int) -> str:
        with open(self.servers[i].workdir / "server.log", "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def wait_exit(self, i: int, timeout: float) -> int | None:
        s = self.servers[i]
        if s.proc is None:
            return None
        try:
            return s.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def transfer_leader(self, i: int) -> bool:
        """Ask server i (the leader) to hand leadership over; False if unsupported/failed."""
        return False

    def knows_leader(self, i: int) -> bool:
        return self.responsive(i)

    def believes_leader(self, i: int) -> bool:
        return self.leader() == i

    def raft_servers(self, via: int) -> list[dict[str, Any]] | None:
        return None

    def remove_peer(self, via: int, i: int) -> bool:
        return False

    def leave(self, i: int) -> bool:
        return False

    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s.alive() and s.pid is not None]

    def responsive(self, i: int) -> bool:
        raise NotImplementedError

    def wait_responsive(self, i: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.servers[i].alive():
                return False
            if self.responsive(i):
                return True
            time.sleep(0.1)
        return False

    def leader(self) -> int | None:
        raise NotImplementedError

    def wait_leader(self, timeout: float = 60.0) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ld = self.leader()
            if ld is not None:
                return ld
            time.sleep(0.2)
        return None

    # ------------------------------------------------------------------ client (per subclass)

    def prepare_client(self, process: int, node: int) -> str:
        """Per-client set-up done before faults (e.g. a Lictor session); returns its lock owner."""
        return f"p{process}"

    def read(self, node: int, key: str, *, final: bool = False) -> Result: ...
    def write(self, node: int, key: str, value: str) -> Result: ...
    def cas(self, node: int, key: str, expected: str | None, meta: Any, new: str) -> Result: ...
    def acquire(self, node: int, key: str, owner: str) -> Result: ...
    def release(self, node: int, key: str, owner: str) -> Result: ...
    def lock_read(self, node: int, key: str) -> Result: ...
    def register(self, node: int, svc_node: str, service_id: str) -> Result: ...
    def deregister(self, node: int, svc_node: str, service_id: str) -> Result: ...
    def catalog_view(self, node: int) -> Any: ...

    def _read_node(self, node: int, final: bool) -> int:
        if self.broken == "stale-reads" and not final:
            return self.rng.randrange(len(self.servers))
        return node

    def _call(self, node: int, method: str, path: str, body: Any = None,
              timeout: float | None = None) -> Any:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        status, raw = http_call(self.net.addr(node), self.http_port, method, path, data,
                                timeout or self.timeout)
        if status == 404:
            return None
        if status != 200:
            raise HTTPStatus(status, raw)
        return json.loads(raw) if raw else None


# ============================================================================ Lictor

LICTOR_ENV = {"LICTOR_RAFT_TICK_INTERVAL": "0.05", "LICTOR_RPC_FRAME_TIMEOUT": "2",
              "LICTOR_RPC_HOLD_TIMEOUT": "3"}
LICTOR_HCL = 'performance { raft_multiplier = 1 }\nautopilot { server_stabilization_time = "1s" }'


class LictorSystem(System):
    name = "lictor"
    http_port = 8500
    server_port = 8300
    serf_lan_port = 8301

    def command(self, i: int) -> list[str]:
        s = self.servers[i]
        a = self.net.addr(i)
        cmd = [sys.executable, "-m", "lictor.cli.main", "agent", "-server",
               "-bootstrap-expect", str(len(self.initial)), "-data-dir", str(s.workdir / "data"),
               "-node", s.name, "-bind", a, "-client", a, f"-http-port={self.http_port}",
               f"-server-port={self.server_port}", f"-serf-lan-port={self.serf_lan_port}",
               "-dns-port=-1", "-retry-interval", "200ms", "-hcl", LICTOR_HCL]
        # retry_join is a LAN gossip join list (as Consul's): name the others' serf LAN ports,
        # never their server RPC ports
        for j in range(len(self.servers)):
            if j != i:
                cmd += ["-retry-join", f"{self.net.addr(j)}:{self.serf_lan_port}"]
        return cmd

    supports_fault_hook = True

    def env(self) -> dict[str, str]:
        return {**os.environ, **LICTOR_ENV}  # lictor comes from the venv, not from the checkout

    def start(self, i: int) -> None:
        # the test-only fault hook (lictor.server.raft.faults): a control socket per server;
        # "broken" also allows fsyncs that lie (the deliberately broken build)
        self._env_extra = {"LICTOR_TEST_FAULTS": "broken" if self.broken == "lying-fsync" else "1",
                           "LICTOR_TEST_FAULT_SOCKET": str(self.fault_socket(i))}
        super().start(i)

    def transfer_leader(self, i: int) -> bool:
        try:
            self._call(i, "POST", "/v1/operator/raft/transfer-leader", timeout=10.0)
        except Exception:  # noqa: BLE001 - reported as not transferred
            return False
        return True

    def responsive(self, i: int) -> bool:
        try:
            status, _ = http_call(self.net.addr(i), self.http_port, "GET", "/v1/status/leader",
                                  timeout=1.0)
            return status == 200
        except OSError:
            return False

    def _leader_addr(self, i: int) -> str:
        try:
            status, raw = http_call(self.net.addr(i), self.http_port, "GET", "/v1/status/leader",
                                    timeout=2.0)
        except OSError:
            return ""
        return str(json.loads(raw) or "") if status == 200 else ""

    def knows_leader(self, i: int) -> bool:
        return bool(self._leader_addr(i))

    def raft_servers(self, via: int) -> list[dict[str, Any]] | None:
        """The Raft configuration as server ``via`` reports it (None: no answer)."""
        try:
            got = self._call(via, "GET", "/v1/operator/raft/configuration", timeout=3.0)
        except Exception:  # noqa: BLE001
            return None
        return list(got.get("Servers") or []) if isinstance(got, dict) else None

    def remove_peer(self, via: int, i: int) -> bool:
        """Remove server i from the Raft configuration by address (operator raft remove-peer)."""
        addr = f"{self.net.addr(i)}:{self.server_port}"
        try:
            self._call(via, "DELETE", f"/v1/operator/raft/peer?address={addr}", timeout=10.0)
        except HTTPStatus as exc:
            return exc.status == 404 or b"not found" in exc.body  # already gone
        except Exception:  # noqa: BLE001
            return False
        return True

    def leave(self, i: int) -> bool:
        """Graceful leave (PUT /v1/agent/leave): the server leaves gossip and Raft, then exits."""
        try:
            self._call(i, "PUT", "/v1/agent/leave", timeout=15.0)
        except Exception:  # noqa: BLE001
            return False
        return True

    def believes_leader(self, i: int) -> bool:
        """Server i's own view: it names itself as the leader."""
        return self._leader_addr(i).rsplit(":", 1)[0] == self.net.addr(i)

    def leader(self) -> int | None:
        for s in self.servers:
            if not s.alive() or s.paused:
                continue
            try:
                status, raw = http_call(self.net.addr(s.index), self.http_port, "GET",
                                        "/v1/status/leader", timeout=2.0)
            except OSError:
                continue
            if status != 200:
                continue
            addr = json.loads(raw) or ""
            ip = addr.rsplit(":", 1)[0]
            for t in self.servers:
                if self.net.addr(t.index) == ip and t.alive() and not t.paused:
                    return t.index
        return None

    #: the catalog node the workload's sessions belong to. Not a server's own node: a server that
    #: leaves (leave-rejoin) is deregistered and, as in Consul, that destroys its sessions, which
    #: would free the lock without a release the lock checker knows of.
    SESSION_NODE = "chaos-sessions"

    def prepare_client(self, process: int, node: int) -> str:
        body = {"Name": f"chaos-p{process}", "LockDelay": "0s", "NodeChecks": [],
                "Behavior": "release", "Node": self.SESSION_NODE}
        deadline = time.monotonic() + 30
        while True:
            try:
                self._call(node, "PUT", "/v1/catalog/register",
                           {"Node": self.SESSION_NODE, "Address": "192.0.2.1"})
                return str(self._call(node, "PUT", "/v1/session/create", body)["ID"])
            except (OSError, HTTPStatus, TypeError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def read(self, node: int, key: str, *, final: bool = False) -> Result:
        n = self._read_node(node, final)
        mode = "stale" if self.broken == "stale-reads" and not final else "consistent"
        try:
            got = self._call(n, "GET", f"/v1/kv/{key}?{mode}")
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            return classify(exc)
        if not got:
            return Result("ok", None, meta=0)
        raw = got[0].get("Value")
        return Result("ok", base64.b64decode(raw).decode() if raw else "",
                      meta=got[0]["ModifyIndex"])

    def write(self, node: int, key: str, value: str) -> Result:
        try:
            got = self._call(node, "PUT", f"/v1/kv/{key}", value.encode())
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", None) if got is True else Result("info", error=f"PUT returned {got!r}")

    def cas(self, node: int, key: str, expected: str | None, meta: Any, new: str) -> Result:
        try:
            got = self._call(node, "PUT", f"/v1/kv/{key}?cas={int(meta or 0)}", new.encode())
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", bool(got))

    def acquire(self, node: int, key: str, owner: str) -> Result:
        try:
            got = self._call(node, "PUT", f"/v1/kv/{key}?acquire={owner}", owner.encode())
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", bool(got))

    def release(self, node: int, key: str, owner: str) -> Result:
        try:
            got = self._call(node, "PUT", f"/v1/kv/{key}?release={owner}", b"")
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", bool(got))

    def lock_read(self, node: int, key: str) -> Result:
        n = self._read_node(node, False)
        mode = "stale" if self.broken == "stale-reads" else "consistent"
        try:
            got = self._call(n, "GET", f"/v1/kv/{key}?{mode}")
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", (got[0].get("Session") or None) if got else None)

    def register(self, node: int, svc_node: str, service_id: str) -> Result:
        body = {"Node": svc_node, "Address": "192.0.2.77",
                "Service": {"ID": service_id, "Service": "chaos", "Port": 9000}}
        try:
            got = self._call(node, "PUT", "/v1/catalog/register", body)
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", got)

    def deregister(self, node: int, svc_node: str, service_id: str) -> Result:
        try:
            got = self._call(node, "PUT", "/v1/catalog/deregister",
                             {"Node": svc_node, "ServiceID": service_id})
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", got)

    def catalog_view(self, node: int) -> Any:
        got = self._call(node, "GET", "/v1/catalog/service/chaos?stale", timeout=3.0) or []
        return sorted((e["Node"], e["ServiceID"]) for e in got)


# ============================================================================ etcd


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str | None) -> str:
    return base64.b64decode(s or "").decode()


class EtcdSystem(System):
    name = "etcd"
    http_port = 2379

    def command(self, i: int) -> list[str]:
        s = self.servers[i]
        a = self.net.addr(i)
        peers = ",".join(f"{self.servers[j].name}=http://{self.net.addr(j)}:2380" for j in self.initial)
        return ["etcd", "--name", s.name, "--data-dir", str(s.workdir / "data"),
                "--listen-client-urls", f"http://{a}:2379", "--advertise-client-urls", f"http://{a}:2379",
                "--listen-peer-urls", f"http://{a}:2380", "--initial-advertise-peer-urls", f"http://{a}:2380",
                "--initial-cluster", peers, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"chaos-{self.net.run_id}", "--log-level", "warn"]

    def transfer_leader(self, i: int) -> bool:
        """etcd's move-leader: POST /v3/maintenance/transfer-leadership to the leader."""
        try:
            members = self._call(i, "POST", "/v3/cluster/member/list", {})["members"]
            me = self.servers[i].name
            others = [m["ID"] for m in members if m.get("name") != me]
            self._call(i, "POST", "/v3/maintenance/transfer-leadership",
                       {"targetID": self.rng.choice(others)}, timeout=10.0)
        except Exception:  # noqa: BLE001 - reported as not transferred
            return False
        return True

    def responsive(self, i: int) -> bool:
        try:
            status, _ = http_call(self.net.addr(i), self.http_port, "POST", "/v3/maintenance/status",
                                  b"{}", timeout=1.0)
            return status == 200
        except OSError:
            return False

    def leader(self) -> int | None:
        ids: dict[str, int] = {}
        leaders = []
        for s in self.servers:
            if not s.alive() or s.paused:
                continue
            try:
                st = self._call(s.index, "POST", "/v3/maintenance/status", {}, timeout=1.0)
            except Exception:  # noqa: BLE001 - an unreachable member is just skipped
                continue
            ids[st["header"]["member_id"]] = s.index
            if st.get("leader"):
                leaders.append(st["leader"])
        for ld in leaders:
            if ld in ids:
                return ids[ld]
        return None

    def read(self, node: int, key: str, *, final: bool = False) -> Result:
        n = self._read_node(node, final)
        body: dict[str, Any] = {"key": _b64(key)}
        if self.broken == "stale-reads" and not final:
            body["serializable"] = True
        try:
            got = self._call(n, "POST", "/v3/kv/range", body)
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        kvs = got.get("kvs") or []
        return Result("ok", _unb64(kvs[0].get("value")) if kvs else None)

    def write(self, node: int, key: str, value: str) -> Result:
        try:
            self._call(node, "POST", "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", None)

    def _txn(self, node: int, compare: dict[str, Any], success: list[Any],
             failure: list[Any] | None = None) -> Any:
        return self._call(node, "POST", "/v3/kv/txn",
                          {"compare": [compare], "success": success, "failure": failure or []})

    def cas(self, node: int, key: str, expected: str | None, meta: Any, new: str) -> Result:
        if expected is None:
            cmp = {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        else:
            cmp = {"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(expected)}
        try:
            got = self._txn(node, cmp, [{"requestPut": {"key": _b64(key), "value": _b64(new)}}])
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", bool(got.get("succeeded")))

    def acquire(self, node: int, key: str, owner: str) -> Result:
        cmp = {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        try:
            got = self._txn(node, cmp, [{"requestPut": {"key": _b64(key), "value": _b64(owner)}}],
                            [{"requestRange": {"key": _b64(key)}}])
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        if got.get("succeeded"):
            return Result("ok", True)
        kvs = (got.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
        return Result("ok", bool(kvs) and _unb64(kvs[0].get("value")) == owner)

    def release(self, node: int, key: str, owner: str) -> Result:
        cmp = {"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(owner)}
        try:
            got = self._txn(node, cmp, [{"requestDeleteRange": {"key": _b64(key)}}])
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", bool(got.get("succeeded")))

    def lock_read(self, node: int, key: str) -> Result:
        r = self.read(node, key)
        return r if r.status != "ok" else Result("ok", r.output)

    def register(self, node: int, svc_node: str, service_id: str) -> Result:
        return self.write(node, f"catalog/{svc_node}/{service_id}", "chaos")

    def deregister(self, node: int, svc_node: str, service_id: str) -> Result:
        try:
            self._call(node, "POST", "/v3/kv/deleterange", {"key": _b64(f"catalog/{svc_node}/{service_id}")})
        except Exception as exc:  # noqa: BLE001
            return classify(exc)
        return Result("ok", True)

    def catalog_view(self, node: int) -> Any:
        got = self._call(node, "POST", "/v3/kv/range",
                         {"key": _b64("catalog/"), "range_end": _b64("catalog0"),
                          "serializable": True, "keys_only": True}, timeout=3.0)
        return sorted(_unb64(kv["key"]) for kv in (got.get("kvs") or []))


def make_system(name: str, net: Network, workdir: Path, **kw: Any) -> System:
    if name == "lictor":
        return LictorSystem(net, workdir, **kw)
    if name == "etcd":
        return EtcdSystem(net, workdir, **kw)
    raise ValueError(f"unknown system {name!r} (lictor or etcd)")
