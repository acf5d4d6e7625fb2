"""An encrypted gossip cluster (1 server, 2 clients on 127.0.0.1): bad packets are dropped and
counted, the keyring is rotated across the cluster, ``lictor watch`` runs its handlers."""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lictor.common.gossip.keyring import Keyring, generate_key
from lictor.common.gossip.messages import Ping, encode_message, encode_packet
from tests.integration.meshproc import LICTOR, MESH_ENV, Mesh, MeshAgent

pytestmark = pytest.mark.integration

KEY = generate_key()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("enc"), servers=1, clients=2, distinct_hosts=False, extra=("-encrypt", KEY))
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def serf_stats(a: MeshAgent) -> dict[str, int]:
    st = a.json("GET", "/v1/agent/self")["Stats"]["serf_lan"]
    return {k: int(v) for k, v in st.items() if v.lstrip("-").isdigit()}


def cli(a: MeshAgent, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LICTOR, args[0], f"-http-addr={a.url}", *args[1:]], capture_output=True, text=True,
                          timeout=timeout)


def test_bad_packets_are_dropped_and_counted(mesh: Mesh) -> None:
    target = mesh.clients[0]
    before = serf_stats(target)
    assert target.json("GET", "/v1/agent/self")["Stats"]["serf_lan"]["encrypted"] == "true"
    ping = encode_packet([encode_message(Ping(seq=7, target=target.name, source="intruder",
                                              source_addr=("127.0.0.1", 9)))])
    good = Keyring([KEY]).encrypt(ping)
    wrong = Keyring([generate_key()]).encrypt(ping)
    addr = ("127.0.0.1", target.serf_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(os.urandom(200), addr)                  # garbage
        s.sendto(b"\x81" + os.urandom(100), addr)        # garbage that claims to be encrypted
        s.sendto(b"\x01" + ping, addr)                   # plaintext to an encrypting node
        s.sendto(wrong, addr)                            # another cluster's key
        s.sendto(good[:20], addr)                        # truncated
        s.sendto(good, addr)                             # valid (answered with an ack)
        s.sendto(good, addr)                             # replayed
        s.sendto(b"", addr)                              # empty
    # a TCP stream of junk too
    with socket.create_connection(addr, timeout=2) as c:
        c.sendall(b"\x00\x00\x00\x10" + os.urandom(16))
        c.settimeout(2)
        try:
            c.recv(10)
        except OSError:
            pass

    def dropped() -> bool:
        now = serf_stats(target)
        d = {k: now.get(k, 0) - before.get(k, 0) for k in now if k.startswith("dropped.")}
        return (d.get("dropped.replay", 0) >= 1 and d.get("dropped.unencrypted", 0) >= 1
                and d.get("dropped.decrypt", 0) >= 2 and d.get("dropped.truncated", 0) >= 2
                and sum(d.values()) >= 8)

    mesh.wait(dropped, 5, "drops counted")
    assert target.alive()
    assert mesh.alive_members(target) == 3
    assert mesh.alive_members(mesh.servers[0]) == 3


def test_keyring_rotation_across_the_cluster(mesh: Mesh) -> None:
    s1, c2 = mesh.servers[0], mesh.clients[1]
    out = cli(c2, "keyring", "-list")
    assert out.returncode == 0, out.stderr
    assert f"{KEY} [3/3]" in out.stdout
    kg = subprocess.run([*LICTOR, "keygen"], capture_output=True, text=True, timeout=30)
    new = kg.stdout.strip()
    assert kg.returncode == 0 and len(base64.b64decode(new)) == 32
    assert cli(c2, "keyring", "-install", new).returncode == 0
    out = cli(s1, "keyring", "-list")
    assert f"{new} [3/3]" in out.stdout and f"{KEY} [3/3]" in out.stdout, out.stdout
    assert cli(s1, "keyring", "-use", new).returncode == 0
    pool = s1.json("GET", "/v1/operator/keyring")[0]
    assert pool["PrimaryKeys"] == {new: 3}, pool
    assert cli(s1, "keyring", "-remove", KEY).returncode == 0
    pool = c2.json("GET", "/v1/operator/keyring")[0]
    assert pool["Keys"] == {new: 3} and pool["NumNodes"] == 3, pool
    # removing the primary is refused
    bad = cli(s1, "keyring", "-remove", new)
    assert bad.returncode == 1 and "primary" in bad.stderr
    # gossip still flows with the new key: an event reaches everyone, members stay alive
    ev = c2.json("PUT", "/v1/event/fire/after-rotation", b"x")
    mesh.wait(lambda: all(any(e["ID"] == ev["ID"] for e in a.try_json("/v1/event/list") or [])
                          for a in mesh.agents), 10, "event after rotation")
    time.sleep(1.0)
    assert all(mesh.alive_members(a) == 3 for a in mesh.agents)
    # the keyring is persisted: it is what a restarted agent uses (not -encrypt)
    ring = json.loads((mesh.clients[0].data_dir / "serf" / "local.keyring").read_text())
    assert ring == [new]


class _Sink(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        _Sink.bodies.append(self.rfile.read(n))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


def test_watch_runs_handlers(mesh: Mesh, tmp_path: Path) -> None:
    c1 = mesh.clients[0]
    out_file = tmp_path / "key.out"
    env = {**os.environ, **MESH_ENV}
    w = subprocess.Popen([*LICTOR, "watch", f"-http-addr={c1.url}", "-type=key", "-key=cfg/color", "-max-runs=2",
                          f"cat >> {out_file}; echo >> {out_file}"], env=env, stderr=subprocess.PIPE)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    w2 = subprocess.Popen([*LICTOR, "watch", f"-http-addr={c1.url}", "-type=event", "-name=ping", "-max-runs=2",
                           f"-http-handler=http://127.0.0.1:{srv.server_address[1]}/hook"], env=env,
                          stderr=subprocess.PIPE)
    try:
        mesh.wait(lambda: out_file.exists() and "null" in out_file.read_text(), 15, "first key run (no key)")
        mesh.servers[0].json("PUT", "/v1/kv/cfg/color", b"blue")
        assert w.wait(15) == 0
        lines = [ln for ln in out_file.read_text().splitlines() if ln.strip()]
        assert lines[0] == "null" and json.loads(lines[1])["Key"] == "cfg/color"
        mesh.wait(lambda: len(_Sink.bodies) >= 1, 15, "first event run")
        mesh.clients[1].json("PUT", "/v1/event/fire/ping", b"hello")
        assert w2.wait(15) == 0
        events = json.loads(_Sink.bodies[-1])
        assert [e["Name"] for e in events] == ["ping"]
    finally:
        for p in (w, w2):
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stderr:
                p.stderr.close()
        srv.shutdown()
        srv.server_close()
