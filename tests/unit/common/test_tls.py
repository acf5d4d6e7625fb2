"""common/tls.py: config parsing (errors name the key path), the contexts on a real loopback RPC
port (who is refused), the RPC peer policy, reload in place, gRPC credentials."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest

from lictor.cli.tls import create_ca, create_cert
from lictor.common.config import ConfigSource, load_config
from lictor.common.errors import ConfigError, LictorError, PermissionDeniedError
from lictor.common.rpc import PeerInfo, RPCClient, RPCServer
from lictor.common.tls import (RPCPeerPolicy, TLSConfig, TLSManager, TLSSettings, grpc_server_credentials,
                               tls_config_from_raw)


# ----------------------------------------------------------------------------- fixtures

class PKI:
    """A CA and certificates in a directory; ``files(kind)`` -> (cert path, key path)."""

    def __init__(self, root: Path, name: str = "ca") -> None:
        self.root = root
        self.name = name
        self.ca_cert, self.ca_key = create_ca()
        self.ca_file = root / f"{name}.pem"
        self.ca_file.write_bytes(self.ca_cert)
        self.n = 0

    def issue(self, kind: str, **kw: Any) -> tuple[str, str]:
        cert, key = create_cert(kind, ca_cert=self.ca_cert, ca_key=self.ca_key, **kw)
        self.n += 1
        c, k = self.root / f"{self.name}-{kind}-{self.n}.pem", self.root / f"{self.name}-{kind}-{self.n}-key.pem"
        c.write_bytes(cert)
        k.write_bytes(key)
        return str(c), str(k)


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path)


@pytest.fixture
def other_pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path, "other")


def settings(pki: PKI, cert: tuple[str, str] | None, **kw: Any) -> TLSSettings:
    base: dict[str, Any] = {"ca_file": str(pki.ca_file), "verify_incoming": True, "verify_outgoing": True,
                            "verify_server_hostname": True, "where": "tls.internal_rpc"}
    base.update(kw)
    if cert:
        base["cert_file"], base["key_file"] = cert
    return TLSSettings(**base)


def manager(s: TLSSettings, *, server: bool, **kw: Any) -> TLSManager:
    return TLSManager(TLSConfig(internal_rpc=s), datacenter="dc1", server=server, **kw)


class Echo:
    def __init__(self, policy: RPCPeerPolicy | None = None) -> None:
        self.policy = policy
        self.peers: list[PeerInfo] = []

    async def handle(self, method: str, args: dict[str, Any], peer: PeerInfo) -> Any:
        self.peers.append(peer)
        if self.policy is not None:
            why = self.policy.denial(method, peer_tls=peer.tls, cert=peer.cert)
            if why:
                raise PermissionDeniedError(f"Permission denied: {why}")
        return {"ok": True, "cn": dict(x[0] for x in peer.cert["subject"])["commonName"] if peer.cert else ""}

    def notify(self, method: str, args: dict[str, Any], peer: PeerInfo) -> None:
        pass


async def serve(mgr: TLSManager, handler: Echo | None = None) -> RPCServer:
    srv = RPCServer(handler or Echo(), host="127.0.0.1", port=0, ssl=mgr.rpc_server_context)
    await srv.start()
    return srv


async def call(mgr: TLSManager | None, srv: RPCServer, method: str = "Status.Ping") -> Any:
    ctx = mgr.rpc_client_context if mgr is not None else None
    async with RPCClient(ssl=ctx, server_hostname="server.dc1.consul" if ctx else None, connect_timeout=2,
                         request_timeout=3) as c:
        return await c.call(srv.addr, method, {})


# ----------------------------------------------------------------------------- config

def load(tmp_path: Path, hcl: str, **kw: Any) -> Any:
    f = tmp_path / "c.hcl"
    f.write_text(hcl)
    return load_config(ConfigSource(config_files=(str(f),), flags={"data_dir": str(tmp_path / "d"), **kw}))


def test_config_effective_settings_merge_defaults_with_protocol_blocks(tmp_path: Path, pki: PKI) -> None:
    cert, key = pki.issue("server")
    r = load(tmp_path, f'''tls {{
      defaults {{ ca_file = "{pki.ca_file}"  cert_file = "{cert}"  key_file = "{key}"  verify_incoming = true }}
      internal_rpc {{ verify_server_hostname = true }}
      https {{ verify_incoming = false }}
    }}''', server=True, **{"ports.https": 8501})
    c = r.config.tls
    assert c.internal_rpc.verify_incoming and c.internal_rpc.verify_server_hostname
    assert c.internal_rpc.verify_outgoing  # implied by verify_server_hostname
    assert not c.https.verify_incoming and c.https.cert_file == cert
    assert not c.https.verify_server_hostname


@pytest.mark.parametrize("hcl, path, words", [
    ('tls { defaults { cert_file = "X" } }', "tls.defaults.cert_file", "key_file is required"),
    ('tls { https { verify_incoming = true } }', "tls.https.verify_incoming", "requires ca_file"),
    ('tls { internal_rpc { verify_server_hostname = true } }', "tls.internal_rpc.verify_server_hostname",
     "requires ca_file"),
    ('tls { defaults { tls_min_version = "TLSv1_0" } }', "tls.defaults.tls_min_version", "TLSv1_2"),
    ('tls { defaults { tls_cipher_suites = "TLS_RSA_WITH_RC4_128_SHA" } }', "tls.defaults.tls_cipher_suites",
     "unsupported"),
    ('tls { defaults { ca_file = "/nonexistent/ca.pem" } }', "tls.defaults.ca_file", "no such file"),
    ('tls { defaults { verify_incoming = "maybe" } }', "tls.defaults.verify_incoming", "true or false"),
    ('auto_encrypt { allow_tls = true }', "auto_encrypt.allow_tls", "server mode"),
    ('audit { enabled = true }', "audit.enabled", "at least one sink"),
    ('audit { sink "a" { type = "socket" path = "/x" } }', "audit.sink.a.type", "only \\\"file\\\""),
    ('audit { sink "a" { path = "/x" delivery_guarantee = "maybe" } }', "audit.sink.a.delivery_guarantee",
     "best-effort"),
    ('audit { sink "a" { path = "/x" rotate_bytes = -1 } }', "audit.sink.a.rotate_bytes", ">= 0"),
])
def test_config_errors_name_file_and_key_path(tmp_path: Path, hcl: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, hcl)
    msg = str(ei.value)
    assert str(tmp_path / "c.hcl") in msg and path in msg, msg
    assert words.replace("\\", "") in msg, msg


def test_https_port_without_a_certificate_is_a_warning(tmp_path: Path) -> None:
    r = load(tmp_path, "", **{"ports.https": 8501})
    assert any("ports.https: no tls.https" in w and "not served" in w for w in r.warnings)


def test_legacy_top_level_keys_map_into_tls_with_a_warning(tmp_path: Path, pki: PKI) -> None:
    r = load(tmp_path, f'ca_file = "{pki.ca_file}"\nverify_outgoing = true\nverify_server_hostname = true\n')
    assert r.config.tls.internal_rpc.ca_file == str(pki.ca_file)
    assert r.config.tls.internal_rpc.verify_server_hostname
    assert any("verify_server_hostname: deprecated: use tls.internal_rpc.verify_server_hostname" in w
               for w in r.warnings)


def test_debug_config_shows_key_paths_but_never_the_gossip_key(tmp_path: Path, pki: PKI) -> None:
    cert, key = pki.issue("server")
    r = load(tmp_path, f'encrypt = "c2VjcmV0LWdvc3NpcC1rZXktMTIzNDU2Nzg5MDEyMzQ="\n'
                       f'tls {{ defaults {{ cert_file = "{cert}" key_file = "{key}" }} }}')
    raw = repr(r.config.raw)
    assert key in raw and cert in raw
    assert "c2VjcmV0" not in raw and "c2VjcmV0" not in repr(r.config)


# ----------------------------------------------------------------------------- the RPC port

async def test_mutual_tls_round_trip_and_peer_certificate(pki: PKI) -> None:
    srv = await serve(manager(settings(pki, pki.issue("server")), server=True))
    try:
        reply = await call(manager(settings(pki, pki.issue("client")), server=False), srv)
        assert reply == {"ok": True, "cn": "client.dc1.consul"}
    finally:
        await srv.close()


async def test_plaintext_client_is_refused(pki: PKI) -> None:
    srv = await serve(manager(settings(pki, pki.issue("server")), server=True))
    try:
        with pytest.raises(LictorError):
            await call(None, srv)
        assert srv.stats.requests == 0
    finally:
        await srv.close()


async def test_client_certificate_from_another_ca_is_refused(pki: PKI, other_pki: PKI) -> None:
    srv = await serve(manager(settings(pki, pki.issue("server")), server=True))
    try:
        # the client trusts our CA (so it would accept the server) but its cert is from another CA
        rogue = manager(settings(pki, other_pki.issue("client")), server=False)
        with pytest.raises(LictorError):
            await call(rogue, srv)
        assert srv.stats.requests == 0
    finally:
        await srv.close()


async def test_expired_client_certificate_is_refused(pki: PKI) -> None:
    srv = await serve(manager(settings(pki, pki.issue("server")), server=True))
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    expired = pki.issue("client", not_before=past, not_after=past + dt.timedelta(days=1))
    try:
        with pytest.raises(LictorError):
            await call(manager(settings(pki, expired), server=False), srv)
        assert srv.stats.requests == 0
    finally:
        await srv.close()


async def test_expired_server_certificate_is_refused_by_clients(pki: PKI) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    srv = await serve(manager(settings(pki, pki.issue("server", not_before=past,
                                                      not_after=past + dt.timedelta(days=1))), server=True))
    try:
        with pytest.raises(LictorError, match="(?i)expired|verify"):
            await call(manager(settings(pki, pki.issue("client")), server=False), srv)
    finally:
        await srv.close()


async def test_client_certificate_used_as_server_certificate_is_refused(pki: PKI) -> None:
    # a "server" presenting a client certificate: clients with verify_server_hostname refuse it
    srv = await serve(manager(settings(pki, pki.issue("client")), server=True))
    try:
        with pytest.raises(LictorError, match="(?i)hostname|match"):
            await call(manager(settings(pki, pki.issue("server")), server=False), srv)
        # without verify_server_hostname the same chain is accepted: the name check is what refuses
        lax = manager(settings(pki, pki.issue("server"), verify_server_hostname=False), server=False)
        assert (await call(lax, srv))["ok"]
    finally:
        await srv.close()


async def test_client_certificate_cannot_speak_raft_or_cluster_methods(pki: PKI) -> None:
    smgr = manager(settings(pki, pki.issue("server")), server=True)
    srv = await serve(smgr, Echo(smgr.rpc_policy()))
    try:
        client = manager(settings(pki, pki.issue("client")), server=False)
        assert (await call(client, srv, "KVS.Get"))["ok"]
        with pytest.raises(PermissionDeniedError, match="for servers only"):
            await call(client, srv, "Cluster.Hello")
        peer = manager(settings(pki, pki.issue("server")), server=False)
        assert (await call(peer, srv, "Cluster.Hello"))["ok"]
    finally:
        await srv.close()


def test_peer_policy_rules() -> None:
    p = RPCPeerPolicy(tls=True, verify_incoming=True, verify_server_hostname=True,
                      server_name="server.dc1.consul", datacenter="dc1")
    server = {"subjectAltName": (("DNS", "server.dc1.consul"),)}
    client = {"subjectAltName": (("DNS", "client.dc1.consul"),)}
    agent = {"subjectAltName": (("URI", "spiffe://x.consul/agent/client/dc/dc1/id/n1"),)}
    svc = {"subjectAltName": (("URI", "spiffe://x.consul/ns/default/dc/dc1/svc/web"),)}
    assert p.denial("Raft.Msgs", peer_tls=True, cert=server) is None
    assert p.denial("Raft.Msgs", peer_tls=True, cert=client)
    assert p.denial("KVS.Apply", peer_tls=True, cert=client) is None
    assert p.denial("KVS.Apply", peer_tls=True, cert=agent) is None
    assert p.denial("Cluster.Join", peer_tls=True, cert=agent)
    assert "not an agent" in (p.denial("KVS.Apply", peer_tls=True, cert=svc) or "")
    assert p.denial("AutoEncrypt.Sign", peer_tls=True, cert=None) is None
    assert p.denial("KVS.Apply", peer_tls=True, cert=None)
    off = RPCPeerPolicy(tls=True, verify_incoming=False, verify_server_hostname=False, server_name="s",
                        datacenter="dc1")
    assert off.denial("Raft.Msgs", peer_tls=True, cert=None) is None


async def test_auto_encrypt_servers_accept_a_certless_handshake_but_only_for_sign(pki: PKI) -> None:
    from lictor.common.tls import AutoEncryptConfig

    smgr = manager(settings(pki, pki.issue("server")), server=True, auto_encrypt=AutoEncryptConfig(allow_tls=True))
    assert smgr.rpc_server_context is not None
    assert smgr.rpc_server_context.verify_mode == ssl.CERT_OPTIONAL
    srv = await serve(smgr, Echo(smgr.rpc_policy()))
    try:
        bare = manager(settings(pki, None), server=False)
        assert (await call(bare, srv, "AutoEncrypt.Sign"))["ok"]
        with pytest.raises(PermissionDeniedError, match="requires a client certificate"):
            await call(bare, srv, "KVS.Get")
    finally:
        await srv.close()


# ----------------------------------------------------------------------------- reload

async def test_reload_new_connections_present_the_new_certificate_old_ones_continue(pki: PKI,
                                                                                     tmp_path: Path) -> None:
    first = pki.issue("server", dns_names=["first.example"])
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    live_cert.write_bytes(Path(first[0]).read_bytes())
    live_key.write_bytes(Path(first[1]).read_bytes())
    smgr = manager(settings(pki, (str(live_cert), str(live_key))), server=True)
    handler = Echo()
    srv = await serve(smgr, handler)
    cmgr = manager(settings(pki, pki.issue("client")), server=False)
    old = RPCClient(ssl=cmgr.rpc_client_context, server_hostname="server.dc1.consul")
    try:
        await old.call(srv.addr, "x", {})

        def served_sans(c: RPCClient) -> list[str]:
            conn = c._endpoints[srv.addr].conns[0]
            cert = conn.transport.get_extra_info("peercert")
            return [v for k, v in cert["subjectAltName"] if k == "DNS"]

        assert "first.example" in served_sans(old)
        second = pki.issue("server", dns_names=["second.example"])
        live_cert.write_bytes(Path(second[0]).read_bytes())
        live_key.write_bytes(Path(second[1]).read_bytes())
        said = smgr.reload(smgr.config)
        assert said[0].startswith("TLS certificates reloaded")
        new = RPCClient(ssl=cmgr.rpc_client_context, server_hostname="server.dc1.consul")
        try:
            await new.call(srv.addr, "x", {})
            assert "second.example" in served_sans(new)
        finally:
            await new.close()
        await old.call(srv.addr, "x", {})  # the established connection is untouched
        assert "first.example" in served_sans(old)
        assert srv.stats.accepted == 2
    finally:
        await old.close()
        await srv.close()


async def test_reload_with_a_mismatched_key_changes_nothing(pki: PKI, tmp_path: Path) -> None:
    a, b = pki.issue("server"), pki.issue("server")
    smgr = manager(settings(pki, a), server=True)
    bad = TLSConfig(internal_rpc=settings(pki, (a[0], b[1])))
    with pytest.raises(ConfigError) as ei:
        smgr.reload(bad)
    assert "tls.internal_rpc.cert_file" in str(ei.value)
    assert "PRIVATE KEY" not in str(ei.value)
    srv = await serve(smgr)
    try:
        assert (await call(manager(settings(pki, pki.issue("client")), server=False), srv))["ok"]
    finally:
        await srv.close()
    assert smgr.config.internal_rpc.key_file == a[1]


def test_bad_files_at_start_name_the_key_and_never_the_contents(pki: PKI, tmp_path: Path) -> None:
    cert, key = pki.issue("server")
    garbage = tmp_path / "garbage-key.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as ei:
        manager(settings(pki, (cert, str(garbage))), server=True)
    assert "tls.internal_rpc.cert_file" in str(ei.value) and "TOPSECRET" not in str(ei.value)


# ----------------------------------------------------------------------------- gRPC

async def test_grpc_server_credentials_serve_mutual_tls(pki: PKI) -> None:
    grpc = pytest.importorskip("grpc")
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    s = settings(pki, pki.issue("server"), where="tls.grpc")
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer() if hasattr(health, "aio")
                                                 else health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc_server_credentials(s))
    await server.start()
    try:
        ca = pki.ca_file.read_bytes()
        ccert, ckey = pki.issue("client")
        good = grpc.ssl_channel_credentials(ca, Path(ckey).read_bytes(), Path(ccert).read_bytes())
        opts = (("grpc.ssl_target_name_override", "server.dc1.consul"),)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", good, options=opts) as ch:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        nocert = grpc.ssl_channel_credentials(ca)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", nocert, options=opts) as ch:
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
    finally:
        await server.stop(None)


def test_tls_config_from_raw_without_files_check() -> None:
    cfg, warnings = tls_config_from_raw({"defaults": {"ca_file": "/x", "verify_outgoing": True}},
                                        check_files=False)
    assert cfg.internal_rpc.verify_outgoing and cfg.https.verify_outgoing and not warnings
    assert not cfg.enabled

