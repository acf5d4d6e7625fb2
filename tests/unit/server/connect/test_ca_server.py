"""The CA on a server: initialization, configuration, rotation, signing RPC, rate limits,
serial numbers, snapshot/restore and FSM determinism (in-process dev server, real crypto)."""

from __future__ import annotations

import asyncio
import io
import re

import pytest

from lictor.common.errors import Conflict, PermissionDeniedError, ValidationError
from lictor.server import endpoints
from lictor.server.connect import ca, leader, state
from lictor.server.fsm import FSM
from lictor.server.server import Server

from .conftest import certs, csr_pem, make_server, ready_server, roots_of, sign, verify

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def test_first_leadership_creates_cluster_id_trust_domain_and_one_active_root() -> None:
    s = make_server()
    said = await leader.ca_leader_duties(s)
    assert said == "initialized the CA"
    assert await leader.ca_leader_duties(s) == ""  # once only
    cid = s.store.ext["system_metadata"]["cluster_id"]
    assert UUID.match(cid)
    out = await endpoints.call(s, "ConnectCA.Roots", {})
    r = out["result"]
    assert r["TrustDomain"] == f"{cid}.consul"
    assert len(r["Roots"]) == 1
    root = r["Roots"][0]
    assert root["ID"] == r["ActiveRootID"] == ca.fingerprint(ca.load_cert(root["RootCert"]))
    assert set(root) >= {"ID", "Name", "SerialNumber", "SigningKeyID", "NotBefore", "NotAfter", "RootCert",
                         "IntermediateCerts", "Active", "PrivateKeyType", "PrivateKeyBits", "CreateIndex",
                         "ModifyIndex", "ExternalTrustDomain"}
    assert root["Active"] and root["PrivateKeyType"] == "ec" and root["PrivateKeyBits"] == 256
    assert root["ExternalTrustDomain"] == cid and out["index"] == root["ModifyIndex"]
    assert root["SigningKeyID"] == ca.key_id(ca.load_cert(root["RootCert"]).public_key())
    cfg = (await endpoints.call(s, "ConnectCA.ConfigurationGet", {}))["result"]
    assert cfg["Provider"] == "consul"
    assert cfg["Config"]["LeafCertTTL"] == "72h" and cfg["Config"]["RootCertTTL"] == "87600h"  # as Consul's defaults read
    assert cfg["Config"]["CSRMaxPerSecond"] == 50.0
    # the private key is in the CA state and nowhere in what the API serves
    assert "PRIVATE KEY" in state.signing_key_pem(s.store, root["ID"])
    assert "PRIVATE KEY" not in repr(out) + repr(cfg)


async def test_existing_cluster_id_is_kept() -> None:
    s = make_server()
    s.store.ext["system_metadata"]["cluster_id"] = "00000000-0000-0000-0000-000000000001"
    await leader.ca_initialize(s)
    assert (await roots_of(s))["TrustDomain"] == "00000000-0000-0000-0000-000000000001.consul"


@pytest.mark.parametrize("body,field", [
    ({"Config": {"LeafCertTTL": "10m"}}, "Config.LeafCertTTL"),
    ({"Config": {"LeafCertTTL": "soon"}}, "Config.LeafCertTTL"),
    ({"Config": {"PrivateKeyType": "dsa"}}, "Config.PrivateKeyType"),
    ({"Config": {"PrivateKeyType": "rsa", "PrivateKeyBits": 1024}}, "Config.PrivateKeyBits"),
    ({"Config": {"PrivateKeyBits": 521}}, "Config.PrivateKeyBits"),
    ({"Config": {"PrivateKeyBits": "many"}}, "Config.PrivateKeyBits"),
    ({"Config": {"LeafCertTTL": "100h", "IntermediateCertTTL": "200h"}}, "Config.IntermediateCertTTL"),
    ({"Config": {"IntermediateCertTTL": "87600h", "RootCertTTL": "8760h"}}, "Config.RootCertTTL"),
    ({"Config": {"CSRMaxPerSecond": -1}}, "Config.CSRMaxPerSecond"),
    ({"Config": {"CSRMaxConcurrent": -2}}, "Config.CSRMaxConcurrent"),
    ({"Config": {"RootCert": "-----BEGIN CERTIFICATE-----"}}, "Config.RootCert"),
    ({"Provider": "vault"}, "Provider"),
    ({"Config": "yes"}, "Config"),
    ({"ForceWithoutCrossSigning": "yes"}, "ForceWithoutCrossSigning"),
])
async def test_invalid_configuration_is_refused_by_field_and_changes_nothing(body: dict, field: str) -> None:
    s = await ready_server()
    before = (dict(s.store.indexes), dict(s.store.ext["ca_config"]), dict(s.store.ext["ca_roots"]))
    with pytest.raises(ValidationError, match=re.escape(field) + ":"):
        await endpoints.call(s, "ConnectCA.ApplyConfiguration", {"config": body})
    assert (dict(s.store.indexes), dict(s.store.ext["ca_config"]), dict(s.store.ext["ca_roots"])) == before


async def test_config_change_without_key_change_does_not_rotate() -> None:
    s = await ready_server()
    active = (await roots_of(s))["ActiveRootID"]
    out = await endpoints.call(s, "ConnectCA.ApplyConfiguration",
                               {"config": {"Config": {"leaf_cert_ttl": "24h", "CSRMaxPerSecond": 100}}})
    assert out == {"result": True, "rotated_to": ""}
    cfg = (await endpoints.call(s, "ConnectCA.ConfigurationGet", {}))["result"]
    assert cfg["Config"]["LeafCertTTL"] == "24h" and cfg["Config"]["CSRMaxPerSecond"] == 100
    assert cfg["Config"]["PrivateKeyType"] == "ec"  # untouched fields keep their values
    await endpoints.call(s, "ConnectCA.ApplyConfiguration", {"config": {"Config": {"RotationPeriod": "1440m"}}})
    cfg = (await endpoints.call(s, "ConnectCA.ConfigurationGet", {}))["result"]
    assert (cfg["Config"]["RotationPeriod"], cfg["Config"]["LeafCertTTL"]) == ("1440m", "24h")  # as last written
    assert (await roots_of(s))["ActiveRootID"] == active
    leaf, _ = await sign(s, "web")
    c = certs(leaf["CertPEM"])[0]
    assert (c.not_valid_after_utc - c.not_valid_before_utc).total_seconds() == 24 * 3600 + 60


async def test_key_type_change_rotates_to_a_cross_signed_root_and_keeps_old_leaves_valid(server: Server) -> None:
    s = server
    old_leaf, _ = await sign(s, "web")
    before = await roots_of(s)
    old_id = before["ActiveRootID"]
    old_root_pem = before["Roots"][0]["RootCert"]
    out = await endpoints.call(s, "ConnectCA.ApplyConfiguration",
                               {"config": {"Config": {"PrivateKeyType": "rsa", "PrivateKeyBits": 2048}}})
    new_id = out["rotated_to"]
    after = await roots_of(s)
    assert after["ActiveRootID"] == new_id != old_id
    assert after["TrustDomain"] == before["TrustDomain"]
    by_id = {r["ID"]: r for r in after["Roots"]}
    assert by_id[old_id]["Active"] is False and by_id[new_id]["Active"] is True
    assert by_id[new_id]["PrivateKeyType"] == "rsa" and by_id[new_id]["PrivateKeyBits"] == 2048
    assert after["Roots"][0]["ID"] == new_id  # active first
    (xpem,) = by_id[new_id]["IntermediateCerts"]
    x = ca.load_cert(xpem)
    assert x.issuer == ca.load_cert(old_root_pem).subject
    bundle = [r["RootCert"] for r in after["Roots"]]
    # old leaf: still valid against the new bundle
    verify(old_leaf["CertPEM"], bundle)
    # new leaf: chains to the new root; with the intermediate in CertPEM, also to the old root alone
    new_leaf, _ = await sign(s, "web")
    assert new_leaf["RootID"] == new_id
    assert certs(new_leaf["CertPEM"])[1] == x
    assert verify(new_leaf["CertPEM"], [by_id[new_id]["RootCert"]])[-1] == ca.load_cert(by_id[new_id]["RootCert"])
    assert verify(new_leaf["CertPEM"], [old_root_pem])[-1] == ca.load_cert(old_root_pem)
    cfg = (await endpoints.call(s, "ConnectCA.ConfigurationGet", {}))["result"]
    assert cfg["Config"]["PrivateKeyType"] == "rsa"


async def test_on_demand_rotation_and_force_without_cross_signing(server: Server) -> None:
    s = server
    r1 = await endpoints.call(s, "ConnectCA.ApplyConfiguration", {"config": {}, "rotate": True})
    assert (await roots_of(s))["ActiveRootID"] == r1["rotated_to"]
    r2 = await endpoints.call(s, "ConnectCA.ApplyConfiguration",
                              {"config": {"ForceWithoutCrossSigning": True}, "rotate": True})
    roots = (await roots_of(s))["Roots"]
    assert len(roots) == 3 and [r["Active"] for r in roots] == [True, False, False]
    assert roots[0]["ID"] == r2["rotated_to"] and roots[0]["IntermediateCerts"] is None


async def test_rotation_is_a_cas_on_the_active_root(server: Server) -> None:
    s = server
    stale = state.active_root(s.store)
    await leader.rotate(s)
    from lictor.server.connect import provider

    payload = provider.rotation_payload(s.store, stale, s.store.ext["ca_config"]["config"], serials=(900, 901),
                                        now=0.0)
    from lictor.common.commands import MessageType

    with pytest.raises(Conflict, match="lost a race"):
        await s.apply(MessageType.CONNECT_CA, payload)
    assert sum(r.active for r in s.store.ext["ca_roots"].values()) == 1


async def test_blocking_roots_query_wakes_on_rotation(server: Server) -> None:
    s = server
    idx = (await endpoints.call(s, "ConnectCA.Roots", {}))["index"]
    waiter = asyncio.ensure_future(endpoints.call(s, "ConnectCA.Roots", {"min_index": idx, "wait": 5}))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await leader.rotate(s)
    out = await asyncio.wait_for(waiter, 1)
    assert out["index"] > idx and len(out["result"]["Roots"]) == 2


async def test_prune_removes_retired_roots_only_after_their_leaves_expired(server: Server) -> None:
    s = server
    old = state.active_root(s.store)
    await leader.rotate(s)
    retired = s.store.ext["ca_roots"][old.id]
    ttl = s.store.ext["ca_config"]["config"].leaf_cert_ttl
    assert state.prunable_roots(s.store, retired.rotated_out_at + ttl) == []
    late = retired.rotated_out_at + ttl + state.PRUNE_MARGIN + 1
    assert state.prunable_roots(s.store, late) == [old.id]
    from lictor.common.commands import MessageType

    active = state.active_root(s.store).id
    n = await s.apply(MessageType.CONNECT_CA, {"op": "prune", "root_ids": [old.id, active]})
    assert n == 1 and set(s.store.ext["ca_roots"]) == {active} and old.id not in s.store.ext["ca_state"]


@pytest.mark.parametrize("service,uri_svc,td,dc,msg", [
    ("web", "db", None, "dc1", "names service 'db'"),
    ("web", "web", "evil.consul", "dc1", "trust domain 'evil.consul'"),
    ("web", "web", None, "dc9", "datacenter 'dc9'"),
])
async def test_sign_rpc_refuses_csr_abuse(server: Server, service: str, uri_svc: str, td: str | None, dc: str,
                                          msg: str) -> None:
    roots = await roots_of(server)
    uri = ca.spiffe_service_uri(td or roots["TrustDomain"], dc, uri_svc)
    with pytest.raises(ValidationError, match=re.escape(msg)):
        await sign(server, service, uri=uri)


async def test_sign_rpc_refuses_missing_arguments_and_weak_keys(server: Server) -> None:
    with pytest.raises(ValidationError, match="service"):
        await endpoints.call(server, "ConnectCA.Sign", {"csr": "x"})
    with pytest.raises(ValidationError, match="not a PEM"):
        await endpoints.call(server, "ConnectCA.Sign", {"csr": "x", "service": "web"})
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValidationError, match="too weak"):
        await sign(server, "web", key=weak)


async def test_sign_authorizer_hook_is_consulted() -> None:
    s = await ready_server(CSRMaxPerSecond=0)
    seen = []

    def deny_db(server: Server, token: str, service: str) -> None:
        seen.append((token, service))
        if service == "db":
            raise ValidationError("Permission denied", status=403)
    s.sign_authorizer = deny_db  # this server's field: nothing to reset afterwards
    await sign(s, "web")
    with pytest.raises(ValidationError, match="Permission denied"):
        await sign(s, "db")
    assert seen == [("", "web"), ("", "db")]


async def test_sign_authorizer_is_per_server_and_defaults_to_the_acl_rule() -> None:
    """Issue 16, defect 8: the hook was a module global installed by an import side effect,
    and the test above reset it to allow-all for every server for the rest of the run."""
    from lictor.server.acl.config import ACLConfig, configure
    from lictor.server.acl.enforce import authorize_sign
    from lictor.server.endpoints import connect_ca

    assert not hasattr(connect_ca, "set_sign_authorizer")
    lax = await ready_server(CSRMaxPerSecond=0)
    lax.sign_authorizer = lambda server, token, service: None
    strict = await ready_server(CSRMaxPerSecond=0)
    assert strict.sign_authorizer is authorize_sign
    configure(strict, ACLConfig(enabled=True, default_policy="deny"))
    await sign(lax, "db")
    with pytest.raises(PermissionDeniedError, match="service:write"):
        await sign(strict, "db")


async def test_csr_rate_limit_refuses_excess_with_429() -> None:
    s = await ready_server(CSRMaxPerSecond=5)
    ok = limited = 0
    for _ in range(8):
        try:
            await sign(s, "web")
            ok += 1
        except leader.RateLimitedError as exc:
            assert exc.status == 429 and leader.is_rate_limited(exc)
            assert str(exc) == "Rate limit reached, try again later"
            limited += 1
    assert (ok, limited) == (5, 3)


async def test_csr_max_concurrent_applies_when_per_second_is_off() -> None:
    s = await ready_server(CSRMaxPerSecond=0, CSRMaxConcurrent=1)
    mgr = leader.manager_for(s)
    mgr.in_flight = 1  # one signing in progress
    with pytest.raises(leader.RateLimitedError):
        await sign(s, "web")
    mgr.in_flight = 0
    await sign(s, "web")


def test_token_bucket_refills_at_its_rate() -> None:
    t = [0.0]
    b = leader.TokenBucket(2.0, clock=lambda: t[0])
    assert [b.try_take() for _ in range(3)] == [True, True, False]
    t[0] = 0.5
    assert [b.try_take(), b.try_take()] == [True, False]
    b.set_rate(0)
    assert all(b.try_take() for _ in range(100))


async def test_serials_are_unique_across_blocks_and_leader_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader, "SERIAL_BLOCK", 3)
    s = await ready_server(CSRMaxPerSecond=0)
    serials = []
    for i in range(7):
        leaf, _ = await sign(s, f"svc{i}")
        serials.append(leaf["SerialNumber"])
    leader._MANAGERS.pop(s)  # a new leader: no block in hand, reserves after the committed mark
    for i in range(4):
        leaf, _ = await sign(s, f"svc{i}")
        serials.append(leaf["SerialNumber"])
    assert len(set(serials)) == len(serials) == 11
    assert s.store.ext["ca_state"]["serial"]["next"] >= 2 + 3 * 4


async def test_ca_survives_snapshot_restore_and_leaves_keep_validating(server: Server) -> None:
    s = server
    await leader.rotate(s)
    old_leaf, _ = await sign(s, "web")
    roots_before = await roots_of(s)
    cfg_before = (await endpoints.call(s, "ConnectCA.ConfigurationGet", {}))["result"]
    buf = io.BytesIO()
    s.fsm.snapshot().persist(buf)
    # a restarted server restores the snapshot: same CA, same key, same serial counter
    s2 = make_server()
    s2.fsm.restore(io.BytesIO(buf.getvalue()))
    assert s2.store.ext["system_metadata"] == s.store.ext["system_metadata"]
    assert s2.store.ext["ca_state"] == s.store.ext["ca_state"]
    assert s2.store.ext["ca_roots"] == s.store.ext["ca_roots"]
    assert await roots_of(s2) == roots_before
    assert (await endpoints.call(s2, "ConnectCA.ConfigurationGet", {}))["result"] == cfg_before
    assert await leader.ca_leader_duties(s2) == ""  # already initialized: no new root
    new_leaf, _ = await sign(s2, "web")
    bundle = [r["RootCert"] for r in (await roots_of(s2))["Roots"]]
    verify(old_leaf["CertPEM"], bundle)
    verify(new_leaf["CertPEM"], bundle)
    assert new_leaf["SerialNumber"] != old_leaf["SerialNumber"]
    # the same signing key: the restored server's leaf verifies against the pre-restore roots
    verify(new_leaf["CertPEM"], [r["RootCert"] for r in roots_before["Roots"]])


async def test_fsm_is_deterministic_replaying_the_log_gives_the_same_ca_state(server: Server) -> None:
    s = server
    await sign(s, "web")
    await leader.rotate(s)
    await endpoints.call(s, "ConnectCA.ApplyConfiguration", {"config": {"Config": {"LeafCertTTL": "48h"}}})
    replica = FSM()
    for idx, data in list(s.log._entries):  # type: ignore[attr-defined]
        replica.apply(idx, data)
    for table in ("ca_roots", "ca_config", "ca_state", "system_metadata"):
        assert replica.store.ext[table] == s.store.ext[table], table
    assert replica.store.index("ca_roots", "ca_config") == s.store.index("ca_roots", "ca_config")


async def test_unknown_op_and_uninitialized_sign_are_refused() -> None:
    s = make_server()
    from lictor.common.commands import MessageType

    with pytest.raises(ValidationError, match="unknown CA operation"):
        await s.apply(MessageType.CONNECT_CA, {"op": "explode"})
    key = ca.generate_private_key()
    with pytest.raises(Conflict, match="not initialized"):
        await endpoints.call(s, "ConnectCA.Sign", {"csr": csr_pem(key, ["spiffe://x/ns/default/dc/dc1/svc/w"]),
                                                  "service": "w"})
