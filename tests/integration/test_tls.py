"""TLS with real processes (issue 7): certificates made by `lictor tls` in a tmp dir, a 3-server
cluster with verify_incoming + verify_server_hostname, who is refused on the RPC port and on
HTTPS, certificate reload on SIGHUP without losing the leader, auto-encrypt against a real
server, and a grep of everything a running agent shows for key material."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest

from lictor.cli.tls import create_cert
from lictor.common.errors import LictorError, PermissionDeniedError
from lictor.common.rpc import RPCClient

from .conftest import RaftCluster, eventually

pytestmark = pytest.mark.integration

LICTOR = [sys.executable, "-m", "lictor.cli.main"]
GOSSIP_KEY = "c2VjcmV0LWdvc3NpcC1rZXktMTIzNDU2Nzg5MDEyMzQ="


def tls_cli(cwd: Path, *args: str) -> str:
    r = subprocess.run([*LICTOR, "tls", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def key_material(path: Path) -> list[str]:
    """The base64 lines inside a PEM key: what must never appear anywhere."""
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("-----")]


class PKI:
    def __init__(self, root: Path, servers: int = 3) -> None:
        self.dir = root / "pki"
        self.dir.mkdir()
        out = tls_cli(self.dir, "ca", "create")
        assert "consul-agent-ca.pem" in out and "consul-agent-ca-key.pem" in out
        for i in range(servers):
            assert f"dc1-server-consul-{i}.pem" in tls_cli(self.dir, "cert", "create", "-server", "-dc", "dc1")
        assert "dc1-client-consul-0.pem" in tls_cli(self.dir, "cert", "create", "-client")
        self.ca = self.dir / "consul-agent-ca.pem"
        self.ca_key = self.dir / "consul-agent-ca-key.pem"
        assert (self.ca_key.stat().st_mode & 0o777) == 0o600

    def server(self, i: int) -> tuple[Path, Path]:
        return self.dir / f"dc1-server-consul-{i}.pem", self.dir / f"dc1-server-consul-{i}-key.pem"

    def client(self) -> tuple[Path, Path]:
        return self.dir / "dc1-client-consul-0.pem", self.dir / "dc1-client-consul-0-key.pem"

    def extra(self, name: str, kind: str = "client", **kw: Any) -> tuple[Path, Path]:
        cert, key = create_cert(kind, ca_cert=self.ca.read_bytes(), ca_key=self.ca_key.read_bytes(), **kw)
        c, k = self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"
        c.write_bytes(cert)
        k.write_bytes(key)
        return c, k


def server_hcl(pki: PKI, cert: Path, key: Path, https_port: int, audit: Path | None = None) -> str:
    text = f'''
encrypt = "{GOSSIP_KEY}"
ports {{ https = {https_port} }}
tls {{
  defaults {{
    ca_file = "{pki.ca}"
    cert_file = "{cert}"
    key_file = "{key}"
    verify_incoming = true
    verify_outgoing = true
  }}
  internal_rpc {{ verify_server_hostname = true }}
}}
auto_encrypt {{ allow_tls = true }}
'''
    if audit is not None:
        text += f'audit {{ enabled = true\n sink "f" {{ type = "file"\n format = "json"\n path = "{audit}" }} }}\n'
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("tls")
    pki = PKI(root)
    cluster = RaftCluster(root / "cluster", 3)
    live: list[tuple[Path, Path]] = []
    for i, s in enumerate(cluster.servers):
        # each server reads its cert from a "live" path we can replace for the reload test
        cert, key = pki.server(i)
        lc, lk = s.workdir / "server.pem", s.workdir / "server-key.pem"
        lc.write_bytes(cert.read_bytes())
        lk.write_bytes(key.read_bytes())
        live.append((lc, lk))
        s.https_port = free_port()  # type: ignore[attr-defined]
        conf = s.workdir / "tls.hcl"
        conf.write_text(server_hcl(pki, lc, lk, s.https_port))  # type: ignore[attr-defined]
        s.extra = ("-config-file", str(conf))
    try:
        cluster.start()
        cluster.wait_leader(timeout=45)
        yield cluster, pki, live
    finally:
        cluster.stop()


def client_ctx(pki: PKI, cert: tuple[Path, Path] | None, *, ca: Path | None = None,
               check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca or pki.ca))
    ctx.check_hostname = check_hostname
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


async def rpc(addr: str, ctx: ssl.SSLContext | None, method: str = "Status.Leader",
              args: dict[str, Any] | None = None, hostname: str = "server.dc1.consul") -> Any:
    async with RPCClient(ssl=ctx, server_hostname=hostname if ctx else None, connect_timeout=3,
                         request_timeout=5) as c:
        return await c.call(addr, method, args or {})


def https_get(port: int, ctx: ssl.SSLContext | None, path: str = "/v1/status/leader",
              host: str = "localhost") -> tuple[int, bytes]:
    url = f"https://{host}:{port}{path}"
    with urllib.request.urlopen(urllib.request.Request(url), timeout=5, context=ctx) as resp:
        return resp.status, resp.read()


# ----------------------------------------------------------------------------- the cluster

def test_cluster_forms_and_replicates_with_verify_incoming_and_server_hostname(tls_cluster: Any) -> None:
    cluster, pki, _ = tls_cluster
    leader = cluster.wait_leader()
    follower = next(s for s in cluster.servers if s is not leader)
    assert follower.json("PUT", "/v1/kv/tls/replicated", b"over-mtls") is True  # forwarded over mTLS RPC
    for s in cluster.servers:
        eventually(lambda s=s: s.request("GET", "/v1/kv/tls/replicated?stale")[0] == 200, 10, "replication")
    peers = leader.json("GET", "/v1/status/peers")
    assert len(peers) == 3


async def test_rpc_port_refuses_plaintext_other_ca_expired_and_client_certs_as_servers(tls_cluster: Any,
                                                                                       tmp_path: Path) -> None:
    cluster, pki, _ = tls_cluster
    leader = cluster.wait_leader()
    addr = leader.rpc_addr
    # a valid client certificate works for endpoints
    assert await rpc(addr, client_ctx(pki, pki.client())) is not None
    # plaintext: a raw msgpack frame gets no answer, the connection is closed
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        body = msgpack.packb({"t": "req", "id": 1, "m": "Status.Leader", "a": {}})
        sock.sendall(len(body).to_bytes(4, "big") + body)
        sock.settimeout(5)
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert b"Status" not in data and (not data or data[:1] in (b"\x15", b"\x16"))  # TLS alert/handshake
    # another CA's client certificate
    other = PKI(tmp_path, servers=0)
    with pytest.raises(LictorError):
        await rpc(addr, client_ctx(pki, other.client()))
    # an expired client certificate from the right CA
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    expired = pki.extra("expired-client", not_before=past, not_after=past + dt.timedelta(days=1))
    with pytest.raises(LictorError):
        await rpc(addr, client_ctx(pki, expired))
    # a client certificate trying to act as a server: Raft/Cluster methods are refused
    with pytest.raises(PermissionDeniedError, match="servers only"):
        await rpc(addr, client_ctx(pki, pki.client()), "Cluster.Hello",
                  {"node_name": "evil", "node_id": "00000000-0000-0000-0000-00000000beef",
                   "rpc_addr": "127.0.0.1:1", "datacenter": "dc1"})
    # and a server that presents a client certificate is refused by hostname-verifying peers
    assert "server.dc1.consul" not in pki.client()[0].read_text()


def test_https_refuses_plaintext_other_ca_and_expired(tls_cluster: Any, tmp_path: Path) -> None:
    cluster, pki, _ = tls_cluster
    s = cluster.wait_leader()
    port = s.https_port
    status, body = https_get(port, client_ctx(pki, pki.client()))
    assert status == 200 and json.loads(body) == s.rpc_addr
    with pytest.raises(OSError):  # plaintext HTTP to the TLS port
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status/leader", timeout=5)
    with pytest.raises(OSError):  # no client certificate (verify_incoming)
        https_get(port, client_ctx(pki, None))
    other = PKI(tmp_path, servers=0)
    with pytest.raises(OSError):
        https_get(port, client_ctx(pki, other.client()))
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    with pytest.raises(OSError):
        https_get(port, client_ctx(pki, pki.extra("expired-https", not_before=past,
                                                  not_after=past + dt.timedelta(days=1))))
    with pytest.raises(OSError):  # a server we reach must be ours: another CA does not validate it
        https_get(port, client_ctx(pki, pki.client(), ca=other.ca))


async def test_auto_encrypt_client_gets_a_certificate_that_works_for_endpoints_not_raft(tls_cluster: Any) -> None:
    from lictor.agent.autoencrypt import request_certificate
    from lictor.common.tls import TLSConfig, TLSManager, TLSSettings

    cluster, pki, _ = tls_cluster
    follower = next(s for s in cluster.servers if s is not cluster.wait_leader())
    settings = TLSSettings(ca_file=str(pki.ca), verify_outgoing=True, verify_server_hostname=True,
                           where="tls.internal_rpc")
    issued = await request_certificate(servers=[follower.rpc_addr], node="client-7", datacenter="dc1",
                                       tls=settings, dns_san=["client-7.example"])
    assert issued.manual_roots and issued.connect_roots
    from lictor.common.tls import AutoEncryptConfig

    mgr = TLSManager(TLSConfig(internal_rpc=settings), datacenter="dc1",
                     auto_encrypt=AutoEncryptConfig(tls=True))
    mgr.use_auto_cert(issued.cert_pem, issued.key_pem, list(issued.manual_roots))

    async def ok() -> Any:
        return await rpc(follower.rpc_addr, mgr.rpc_client_context, "Status.Leader")

    # the servers trust the Connect roots within about a second (ServerRootsWatcher)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert await ok()
            break
        except LictorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with pytest.raises(PermissionDeniedError):
        await rpc(follower.rpc_addr, mgr.rpc_client_context, "Cluster.Join", {})
    # without a certificate only AutoEncrypt.Sign is allowed
    bare = client_ctx(pki, None)
    with pytest.raises(PermissionDeniedError, match="requires a client certificate"):
        await rpc(follower.rpc_addr, bare, "Status.Leader")


def test_sighup_reloads_certificates_and_keeps_the_leader(tls_cluster: Any) -> None:
    cluster, pki, live = tls_cluster
    leader = cluster.wait_leader()
    i = cluster.servers.index(leader)
    new_cert, new_key = pki.extra("reloaded-server", "server", dns_names=["reloaded.example"])

    def presented(port: int) -> list[str]:
        ctx = client_ctx(pki, pki.client())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="server.dc1.consul") as tls:
                cert = tls.getpeercert()
        return [v for k, v in cert["subjectAltName"] if k == "DNS"]

    rpc_port = int(leader.rpc_addr.rsplit(":", 1)[1])
    assert "reloaded.example" not in presented(rpc_port)
    live[i][0].write_bytes(new_cert.read_bytes())
    live[i][1].write_bytes(new_key.read_bytes())
    os.kill(leader.proc.pid, signal.SIGHUP)
    eventually(lambda: "reloaded.example" in presented(rpc_port), 10, "the new certificate on the RPC port")
    eventually(lambda: "reloaded.example" in presented(leader.https_port), 10, "the new certificate on HTTPS")
    assert "TLS certificates reloaded" in leader.log_text()
    # no election happened: same leader, and writes keep flowing through all servers
    assert cluster.wait_leader() is leader
    for s in cluster.servers:
        assert s.json("PUT", "/v1/kv/tls/after-reload-" + s.name, b"x") is True


def test_secrets_never_appear_in_logs_self_metrics_or_errors(tls_cluster: Any) -> None:
    cluster, pki, live = tls_cluster
    s = cluster.servers[0]
    forbidden = [GOSSIP_KEY, *key_material(pki.ca_key)]
    for _, key in live:
        forbidden += key_material(key)
    forbidden += key_material(pki.server(0)[1])
    seen: dict[str, str] = {}
    seen["self"] = s.request("GET", "/v1/agent/self")[1].decode()
    assert str(live[0][1]) in seen["self"]  # key *paths* are shown
    assert '"encrypt": "hidden"' in seen["self"] or '"encrypt":"hidden"' in seen["self"]
    seen["metrics"] = s.request("GET", "/v1/agent/metrics")[1].decode()
    seen["prometheus"] = s.request("GET", "/v1/agent/metrics?format=prometheus")[1].decode()
    # an error that involves the key files: a reload whose key file holds garbage key material
    conf = s.workdir / "tls.hcl"
    good = conf.read_text()
    garbage_key = s.workdir / "garbage-key.pem"
    garbage_key.write_text("-----BEGIN PRIVATE KEY-----\n" + forbidden[1] + "\n-----END PRIVATE KEY-----\n")
    conf.write_text(good.replace(str(live[0][1]), str(garbage_key)))
    try:
        status, body = s.request("PUT", "/v1/agent/reload")
    finally:
        conf.write_text(good)
    assert status >= 400 and b"tls." in body, body
    seen["reload-error"] = body.decode(errors="replace")
    for srv in cluster.servers:
        seen[f"log-{srv.name}"] = srv.log_text()
    for where, text in seen.items():
        for secret in forbidden:
            assert secret not in text, f"key material found in {where}"


def test_client_agent_gets_its_rpc_certificate_by_auto_encrypt_and_uses_it(tls_cluster: Any) -> None:
    """A client agent with only the CA (no certificate of its own) joins by gossip, is issued a
    client certificate by the servers, and can then make RPCs through verify_incoming."""
    from .conftest import CLUSTER_ENV
    from .procutil import ManagedProcess

    cluster, pki, _ = tls_cluster
    workdir = cluster.servers[0].workdir.parent / "ae-client"
    workdir.mkdir(exist_ok=True)
    conf = workdir / "client.hcl"
    conf.write_text(f'''
encrypt = "{GOSSIP_KEY}"
tls {{
  defaults {{
    ca_file = "{pki.ca}"
    verify_outgoing = true
  }}
  internal_rpc {{ verify_server_hostname = true }}
}}
auto_encrypt {{ tls = true }}
''')
    http_port = free_port()

    class Client(ManagedProcess):
        name = "ae-client"

    c = Client()
    c.url = f"http://127.0.0.1:{http_port}"
    c.log_path = workdir / "agent.log"
    c._log = open(c.log_path, "ab")
    args = [sys.executable, "-m", "lictor.cli.main", "agent", "-node", "ae-client", "-data-dir", str(workdir / "data"),
            "-bind", "127.0.0.1", f"-http-port={http_port}", "-dns-port=-1", f"-serf-lan-port={free_port()}",
            "-config-file", str(conf), "-retry-join", f"127.0.0.1:{cluster.servers[0].serf_port}",
            "-retry-interval", "200ms"]
    c.proc = subprocess.Popen(args, stdout=c._log, stderr=subprocess.STDOUT, env={**os.environ, **CLUSTER_ENV},
                              cwd=workdir)
    try:
        c.wait_http("/v1/agent/self", 45)
        c.json("PUT", "/v1/agent/service/register", {"Name": "ae-web", "Port": 8080})
        leader = cluster.wait_leader()
        eventually(lambda: leader.json("GET", "/v1/catalog/service/ae-web"), timeout=45,
                   what="the client's service reached the catalog over auto-encrypted RPC")
        assert "auto-encrypt: client certificate valid until" in c.log_text()
        # reads from the client agent also go to the servers over the same TLS pool
        assert c.json("GET", "/v1/catalog/service/ae-web")[0]["ServiceName"] == "ae-web"
    finally:
        c.stop()
