"""Real `lictor agent -server` processes on 127.0.0.1 forming Raft clusters (issue 3).

Every process is started and stopped by PID (fixtures in conftest.py); Raft runs with 50 ms
ticks so elections take about a second. Keys are unique per test (the 3-server cluster of
`shared_cluster` serves several tests).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest

pytestmark = pytest.mark.integration

LICTOR = [sys.executable, "-m", "lictor.cli.main"]


def kv_put(server: Any, key: str, value: str, timeout: float = 10.0) -> bool:
    status, raw = server.request("PUT", f"/v1/kv/{key}", value.encode(), timeout=timeout)
    return status == 200 and json.loads(raw) is True


def kv_value(server: Any, key: str, mode: str = "stale") -> str | None:
    status, raw = server.request("GET", f"/v1/kv/{key}?{mode}", timeout=5.0)
    if status == 404:
        return None
    assert status == 200, f"{server.name}: GET {key}?{mode} -> {status} {raw!r}"
    return base64.b64decode(json.loads(raw)[0]["Value"]).decode()


def cli(server: Any, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`lictor <command words> -http-addr=<server> <args>` (flags before positional args)."""
    return subprocess.run([*LICTOR, *command.split(), f"-http-addr={server.url}", *args],
                          capture_output=True, text=True, timeout=60)


class Writer:
    """Concurrent clients writing unique keys, each to a random running server, recording which
    writes were acknowledged (HTTP 200 + true)."""

    def __init__(self, cluster: Any, prefix: str, clients: int = 4) -> None:
        self.cluster = cluster
        self.prefix = prefix
        self.acked: dict[str, str] = {}
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(clients)]

    def _run(self, i: int) -> None:
        rng = random.Random(i)
        n = 0
        while not self._stop.is_set():
            targets = [s for s in self.cluster.servers if s.alive()]
            if not targets:
                time.sleep(0.05)
                continue
            s = rng.choice(targets)
            key, value = f"{self.prefix}/c{i}/{n}", f"v{n}"
            n += 1
            try:
                ok = kv_put(s, key, value, timeout=10.0)
            except OSError:
                ok = False
            with self._lock:
                if ok:
                    self.acked[key] = value
                else:
                    self.failed += 1
            if not ok:
                time.sleep(0.02)

    def start(self) -> Writer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def all_present(server: Any, expected: dict[str, str], prefix: str, mode: str) -> list[str]:
    """Keys of `expected` missing or wrong on `server` (one recursive read)."""
    status, raw = server.request("GET", f"/v1/kv/{prefix}?recurse&{mode}", timeout=10.0)
    got: dict[str, str] = {}
    if status == 200:
        for e in json.loads(raw):
            got[e["Key"]] = base64.b64decode(e["Value"] or "").decode()
    else:
        assert status == 404, f"{server.name}: recurse read -> {status} {raw!r}"
    return [k for k, v in expected.items() if got.get(k) != v]


# ============================================================================ formation


def test_three_servers_form_agree_and_forward(shared_cluster: Any, wait_for: Any) -> None:
    c = shared_cluster
    leader = c.wait_leader()
    leaders = {s.name: s.leader() for s in c.servers}
    assert set(leaders.values()) == {leader.rpc_addr}, leaders
    peers = leader.json("GET", "/v1/status/peers")
    assert sorted(peers) == sorted(s.rpc_addr for s in c.servers)

    follower = next(s for s in c.servers if s is not leader)
    assert kv_put(follower, "form/k", "from-a-follower")  # forwarded to the leader
    for s in c.servers:
        assert wait_for(lambda s=s: kv_value(s, "form/k") == "from-a-follower", 5,
                        f"stale read on {s.name}")
    # default and consistent reads on a follower are answered by the leader
    assert kv_value(follower, "form/k", "consistent") == "from-a-follower"
    status, raw = follower.request("GET", "/v1/kv/form/k?stale")
    assert status == 200
    # headers: stale read answered locally, leader known
    req = urllib.request.Request(follower.url + "/v1/kv/form/k?stale")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["X-Consul-KnownLeader"] == "true"
        assert int(resp.headers["X-Consul-LastContact"]) < 2000
        assert resp.headers["X-Consul-Effective-Consistency"] == "stale"

    conf = follower.json("GET", "/v1/operator/raft/configuration")
    assert len(conf["Servers"]) == 3 and conf["Index"] == 0  # as Consul (see Operator.RaftGetConfiguration)
    assert {s["Node"] for s in conf["Servers"]} == {"s1", "s2", "s3"}
    assert [s["Address"] for s in conf["Servers"] if s["Leader"]] == [leader.rpc_addr]
    assert all(s["Voter"] and s["ProtocolVersion"] == "3" for s in conf["Servers"])

    health = follower.json("GET", "/v1/operator/autopilot/health")
    assert health["Healthy"] is True and health["FailureTolerance"] == 1
    assert {s["Name"] for s in health["Servers"]} == {"s1", "s2", "s3"}
    apc = follower.json("GET", "/v1/operator/autopilot/configuration")
    assert apc["ServerStabilizationTime"] == "1s" and apc["CleanupDeadServers"] is True
    usage = follower.json("GET", "/v1/operator/usage")
    assert usage["Usage"]["dc1"]["KVCount"] >= 1

    out = cli(follower, "operator raft list-peers")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["Node", "ID", "Address"]
    assert sum(" leader " in line for line in lines) == 1 and len(lines) == 4


def test_single_server_bootstraps_and_restarts_with_its_data(cluster_factory: Any) -> None:
    c = cluster_factory(1)  # -bootstrap-expect 1: the same as -bootstrap
    s = c.wait_leader(10)
    assert kv_put(s, "single/k", "v1")
    assert s.stop() == 0
    s.spawn().wait_http()
    assert c.wait_leader(10) is s
    assert kv_value(s, "single/k", "consistent") == "v1"
    assert "ignoring bootstrap settings" in s.log_text()


# ============================================================================ failover


def test_sigkill_leader_under_load_loses_no_acknowledged_write(cluster_factory: Any,
                                                               wait_for: Any) -> None:
    c = cluster_factory(3)
    old = c.wait_leader()
    w = Writer(c, "load").start()
    try:
        wait_for(lambda: w.count() >= 50, 30, "50 acknowledged writes before the kill")
        killed_at = time.monotonic()
        old.kill(signal.SIGKILL)
        survivors = [s for s in c.servers if s is not old]
        new = c.wait_leader(15, among=survivors)
        elected_in = time.monotonic() - killed_at
        # ~1 s on an idle machine (elections time out after 0.5-1 s); generous for a loaded box
        assert new is not old and elected_in < 8, f"new leader after {elected_in:.1f}s"
        before = w.count()
        wait_for(lambda: w.count() >= before + 50, 30, "writes continue on the new leader")
    finally:
        w.stop()
    missing = all_present(new, w.acked, "load", "consistent")
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    # the killed server comes back with its data and catches up
    old.spawn().wait_http()
    wait_for(lambda: not all_present(old, w.acked, "load", "stale"), 30,
             "the restarted server to catch up")
    assert c.wait_leader().alive()


# ============================================================================ restarts, disk


def _last_segment(server: Any) -> Path:
    segs = sorted((server.data_dir / "raft" / "log").glob("*.seg"))
    assert segs, f"no log segments under {server.data_dir}"
    return segs[-1]


def test_restart_all_torn_tail_and_corrupt_middle(cluster_factory: Any, wait_for: Any) -> None:
    c = cluster_factory(3)
    leader = c.wait_leader()
    data = {f"persist/{i}": f"value-{i}" for i in range(40)}
    for k, v in data.items():
        assert kv_put(leader, k, v)
    for s in c.servers:
        assert s.stop() == 0, s.log_text()[-2000:]

    # torn tail on s1: cut a few bytes off its last segment
    seg = _last_segment(c.servers[0])
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 5)

    for s in c.servers:
        s.spawn()
    for s in c.servers:
        s.wait_http()
    leader = c.wait_leader()
    assert not all_present(leader, data, "persist", "consistent")
    for s in c.servers:
        wait_for(lambda s=s: not all_present(s, data, "persist", "stale"), 30,
                 f"{s.name} to hold every key after the restart")
    assert "torn" in c.servers[0].log_text().lower() or "truncat" in c.servers[0].log_text().lower()

    # corrupt middle on s2: flip a byte in the middle of a segment -> refuses to start
    victim = c.servers[1]
    assert victim.stop() == 0
    seg = _last_segment(victim)
    raw = bytearray(seg.read_bytes())
    assert len(raw) > 200
    raw[len(raw) // 2] ^= 0xFF
    seg.write_bytes(bytes(raw))
    victim.spawn()
    assert victim.proc is not None
    rc = victim.proc.wait(30)
    text = victim.log_text().split("===== start #")[-1]
    assert rc != 0
    assert str(seg) in text and "corrupt" in text.lower(), text[-2000:]
    # the other two keep serving
    rest = [s for s in c.servers if s is not victim]
    leader = c.wait_leader(10, among=rest)
    assert kv_put(leader, "persist/after", "yes")


# ============================================================================ snapshots


def test_snapshot_save_restore_round_trip(shared_cluster: Any, tmp_path: Path, wait_for: Any) -> None:
    c = shared_cluster
    leader = c.wait_leader()
    follower = next(s for s in c.servers if s is not leader)
    for i in range(10):
        assert kv_put(follower, f"snap/{i}", f"before-{i}")
    path = tmp_path / "backup.snap"
    out = cli(follower, "snapshot save", str(path))
    assert out.returncode == 0, out.stderr
    assert "Saved and verified snapshot" in out.stdout
    out = subprocess.run([*LICTOR, "snapshot", "inspect", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and "Index" in out.stdout and "kv" in out.stdout, out.stderr

    for i in range(10):
        assert kv_put(leader, f"snap/{i}", f"after-{i}")
    assert kv_put(leader, "snap/new", "only-after")

    other = next(s for s in c.servers if s not in (leader, follower))
    out = cli(other, "snapshot restore", str(path))
    assert out.returncode == 0, out.stderr
    for s in c.servers:
        wait_for(lambda s=s: kv_value(s, "snap/3") == "before-3" and kv_value(s, "snap/new") is None,
                 10, f"restored state on {s.name}")
    # writes keep working after a restore
    assert kv_put(follower, "snap/post", "ok")

    # garbage and tampered archives are refused with 400, nothing changes
    status, body = leader.request("PUT", "/v1/snapshot", b"not a snapshot at all")
    assert status == 400 and b"gzip" in body
    tar_bytes = bytearray(gzip.decompress(path.read_bytes()))
    idx = tar_bytes.find(b"snap/3")
    assert idx > 0
    tar_bytes[idx + 5] = ord("9")  # changes state.bin, not its checksum
    status, body = leader.request("PUT", "/v1/snapshot", gzip.compress(bytes(tar_bytes)))
    assert status == 400 and b"checksum mismatch" in body, body
    assert kv_value(leader, "snap/3", "consistent") == "before-3"


# ============================================================================ membership


def test_add_fourth_server_and_remove_one_under_writes(cluster_factory: Any, wait_for: Any) -> None:
    c = cluster_factory(3)
    leader = c.wait_leader()
    w = Writer(c, "member", clients=2).start()
    try:
        fourth = c.add("s4", join=[c.servers[0].serf_addr])
        fourth.spawn().wait_http()

        def fourth_is_voter() -> bool:
            conf = leader.json("GET", "/v1/operator/raft/configuration")
            return any(s["Node"] == "s4" and s["Voter"] for s in conf["Servers"])

        wait_for(fourth_is_voter, 30, "s4 promoted to voter by autopilot")
        assert "promoting s4" in leader.log_text()

        # remove a follower that is not s4: stop it first (a running server would rejoin)
        gone = next(s for s in c.servers[:3] if s is not leader)
        gone.stop()
        out = cli(leader, "operator raft remove-peer", f"-address={gone.rpc_addr}")
        assert out.returncode == 0, out.stderr
        conf = leader.json("GET", "/v1/operator/raft/configuration")
        assert gone.rpc_addr not in [s["Address"] for s in conf["Servers"]]
        assert len(conf["Servers"]) == 3
        before = w.count()
        wait_for(lambda: w.count() >= before + 20, 30, "writes after the removal")
        bad = cli(leader, "operator raft remove-peer", "-id=no-such-server")
        assert bad.returncode == 1 and "not found" in bad.stderr
    finally:
        w.stop()
    live = [s for s in c.servers if s.alive()]
    new_leader = c.wait_leader(10, among=live)
    assert not all_present(new_leader, w.acked, "member", "consistent")
    wait_for(lambda: not all_present(fourth, w.acked, "member", "stale"), 10, "s4 has every write")


# ============================================================================ bad input


def _frame(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _rpc_call(addr: tuple[str, int], method: str, args: Any) -> dict[str, Any]:
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(_frame({"t": "req", "id": 1, "m": method, "a": args}))
        hdr = b""
        while len(hdr) < 4:
            hdr += s.recv(4 - len(hdr))
        n = struct.unpack(">I", hdr)[0]
        body = b""
        while len(body) < n:
            body += s.recv(n - len(body))
        return msgpack.unpackb(body, raw=False)


def test_bad_input_on_rpc_port_drops_only_that_connection(shared_cluster: Any, wait_for: Any) -> None:
    c = shared_cluster
    leader = c.wait_leader()
    target = ("127.0.0.1", leader.server_port)

    stalled = socket.create_connection(target)
    stalled.sendall(struct.pack(">I", 100) + b"\x81")  # announces 100 bytes, sends 1, stalls

    for bad in (b"\x00\x00\x00\x05garbage!!" + os.urandom(64),          # not msgpack
                struct.pack(">I", 0x7FFFFFFF) + b"xx",                  # oversized length prefix
                _frame({"t": "req", "id": "one", "m": 5, "a": []}),     # wrong types
                _frame([1, 2, 3])):                                     # not a message map
        s = socket.create_connection(target)
        s.sendall(bad)
        assert _closed_by_server(s, 5), f"connection not dropped after {bad[:12]!r}"
        s.close()

    # well-formed frames with wrong argument types get an error reply, nothing more
    reply = _rpc_call(target, "KVS.Apply", {"op": "set", "key": 5, "value": {"x": 1}})
    assert reply["t"] == "err", reply
    reply = _rpc_call(target, "Cluster.Hello", {"node_name": 1})
    assert reply["t"] == "err" and reply["e"]["type"] == "ValidationError", reply
    reply = _rpc_call(target, "No.Such", {})
    assert reply["t"] == "err", reply
    # Raft notes with garbage are dropped without a reply and without hurting anyone
    with socket.create_connection(target) as s:
        s.sendall(_frame({"t": "note", "m": "Raft.Msgs", "a": {"b": [1, 2, "x", [["junk"]]]}}))

    for i in range(5):
        assert kv_put(leader, f"bad/{i}", "still-serving")
    assert all(wait_for(lambda s=s: kv_value(s, "bad/4") == "still-serving", 5, s.name)
               for s in c.servers)
    assert _closed_by_server(stalled, 8), "a client stalled mid-frame was not dropped"
    stalled.close()
    assert c.wait_leader() is leader or c.wait_leader().alive()
    assert all(s.alive() for s in c.servers)
