"""ACL endpoints and RPC enforcement on an in-process server: bootstrap once, the initial
management token, escalation attempts, expiry, filtering, login/logout with locally signed JWTs,
snapshots."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from lictor.common.commands import MessageType
from lictor.common.errors import ACLNotFoundError, NotFound, PermissionDeniedError, ValidationError
from lictor.server import endpoints
from lictor.server.acl.authmethod import JWTError
from lictor.server.acl.authorizer import ANONYMOUS_ACCESSOR_ID, GLOBAL_MANAGEMENT_ID
from lictor.server.acl.config import ACLConfig, configure, parse_acl_config
from lictor.server.acl.leader import acl_leader_duties, new_token_row
from lictor.server.server import Server, ServerConfig

MGMT = "11111111-2222-3333-4444-555555555555"


def make(default: str = "deny", **tokens: str) -> Server:
    s = Server(ServerConfig(datacenter="dc1", node_name="s1", rpc_address="127.0.0.1:8300"))
    configure(s, ACLConfig(enabled=True, default_policy=default, tokens=tokens))
    return s


@pytest.fixture
async def server() -> Server:
    s = make(initial_management=MGMT)
    await acl_leader_duties(s)
    return s


async def call(s: Server, endpoint_name: str, /, token: str = MGMT, **args: Any) -> Any:
    return (await endpoints.call(s, endpoint_name, {"token": token, **args}))["result"]


async def policy(s: Server, name: str, rules: str) -> dict[str, Any]:
    return await call(s, "ACL.PolicySet", body={"Name": name, "Rules": rules}, create=True)


async def token(s: Server, **body: Any) -> str:
    return (await call(s, "ACL.TokenSet", body=body, create=True))["SecretID"]


async def token_with_rules(s: Server, rules: str) -> str:
    p = await policy(s, f"p{time.monotonic_ns()}", rules)
    return await token(s, Policies=[{"ID": p["ID"]}])


# ----- bootstrap and the initial tokens --------------------------------------------------------------

async def test_initial_management_cluster_holds_exactly_two_tokens(server: Server) -> None:
    toks = await call(server, "ACL.TokenList")
    assert len(toks) == 2
    by_acc = {t["AccessorID"]: t for t in toks}
    anon = by_acc.pop(ANONYMOUS_ACCESSOR_ID)
    assert anon["Description"] == "Anonymous Token" and anon["SecretID"] == "anonymous"
    (mgmt,) = by_acc.values()
    assert mgmt["Description"] == "Initial Management Token" and mgmt["SecretID"] == MGMT
    assert mgmt["Policies"] == [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}]
    await acl_leader_duties(server)  # a new leader's round creates nothing more
    assert len(await call(server, "ACL.TokenList")) == 2
    with pytest.raises(PermissionDeniedError, match=r"ACL bootstrap no longer allowed \(reset index: \d+\)"):
        await call(server, "ACL.Bootstrap", token="")


async def test_bootstrap_once() -> None:
    s = make()
    await acl_leader_duties(s)
    tok = await call(s, "ACL.Bootstrap", token="")
    assert tok["Policies"][0]["Name"] == "global-management" and tok["SecretID"]
    assert (await call(s, "ACL.TokenSelf", token=tok["SecretID"]))["AccessorID"] == tok["AccessorID"]
    with pytest.raises(PermissionDeniedError, match="ACL bootstrap no longer allowed"):
        await call(s, "ACL.Bootstrap", token="")


async def test_acls_disabled_answers_401() -> None:
    s = Server(ServerConfig(datacenter="dc1", node_name="s1", rpc_address="x:1"))
    with pytest.raises(ValidationError, match="ACL support disabled") as ei:
        await call(s, "ACL.TokenList")
    assert ei.value.status == 401
    assert (await endpoints.call(s, "KVS.Get", {"key": "x"}))["result"] is None  # no enforcement


# ----- escalation ----------------------------------------------------------------------------------------

async def test_acl_read_token_cannot_write_tokens_or_policies_and_sees_no_secrets(server: Server) -> None:
    reader = await token_with_rules(server, 'acl = "read"')
    toks = await call(server, "ACL.TokenList", token=reader)
    assert toks and all(t["SecretID"] == "<hidden>" for t in toks)
    assert MGMT not in json.dumps(toks)
    some = toks[0]["AccessorID"]
    assert (await call(server, "ACL.TokenRead", token=reader, accessor_id=some))["SecretID"] == "<hidden>"
    for name, args in [("ACL.TokenSet", {"body": {"Description": "x"}, "create": True}),
                       ("ACL.PolicySet", {"body": {"Name": "p", "Rules": 'acl = "write"'}, "create": True}),
                       ("ACL.TokenClone", {"accessor_id": some}),
                       ("ACL.TokenDelete", {"accessor_id": some}),
                       ("ACL.RoleSet", {"body": {"Name": "r"}, "create": True})]:
        with pytest.raises(PermissionDeniedError, match="lacks permission 'acl:write'") as ei:
            await call(server, name, token=reader, **args)
        assert reader not in str(ei.value)
    # and it cannot update its own token to add a management policy
    me = await call(server, "ACL.TokenSelf", token=reader)
    with pytest.raises(PermissionDeniedError):
        await call(server, "ACL.TokenSet", token=reader,
                   body={"AccessorID": me["AccessorID"], "Policies": [{"ID": GLOBAL_MANAGEMENT_ID}]})


async def test_service_token_stays_in_its_lane(server: Server) -> None:
    web = await token(server, ServiceIdentities=[{"ServiceName": "web"}])
    base = {"node": "n1", "address": "10.0.0.1", "checks": []}
    await call(server, "Catalog.Register", **base, service={"id": "x", "service": "db"})  # mgmt registers node
    await call(server, "Catalog.Register", token=web, **base, skip_node_update=True,
               service={"id": "web1", "service": "web"})
    with pytest.raises(PermissionDeniedError, match="lacks permission 'service:write' on \"db\""):
        await call(server, "Catalog.Register", token=web, **base, skip_node_update=True,
                   service={"id": "db2", "service": "db"})
    with pytest.raises(PermissionDeniedError, match="lacks permission 'service:write' on \"db\""):
        await call(server, "Catalog.Deregister", token=web, node="n1", service_id="x")
    from lictor.server.acl.enforce import authorize_sign as _sign_authorizer
    _sign_authorizer(server, web, "web")
    with pytest.raises(PermissionDeniedError, match="'service:write' on \"db\""):
        _sign_authorizer(server, web, "db")


async def test_kv_prefix_token(server: Server) -> None:
    for k in ("app/a", "app/b", "other/c"):
        await call(server, "KVS.Apply", op="set", key=k, value=b"v", flags=0)
    app = await token_with_rules(server, 'key_prefix "app/" { policy = "write" }')
    assert (await call(server, "KVS.Get", token=app, key="app/a"))["Key"] == "app/a"
    with pytest.raises(PermissionDeniedError, match="'key:read' on \"other/c\""):
        await call(server, "KVS.Get", token=app, key="other/c")
    with pytest.raises(PermissionDeniedError, match="'key:write' on \"other/x\""):
        await call(server, "KVS.Apply", token=app, op="set", key="other/x", value=b"v", flags=0)
    with pytest.raises(PermissionDeniedError, match="'key:write' on \"\""):
        await call(server, "KVS.Apply", token=app, op="delete-tree", key="")
    shared = await endpoints.call(server, "KVS.List", {"token": MGMT, "key": ""})
    before = list(shared["result"])
    out = await endpoints.call(server, "KVS.List", {"token": app, "key": ""})
    assert [e["Key"] for e in out["result"]] == ["app/a", "app/b"] and out["results_filtered_by_acls"]
    assert shared["result"] == before  # the unfiltered result was not mutated
    keys = await call(server, "KVS.ListKeys", token=app, prefix="", separator="")
    assert keys == ["app/a", "app/b"]


async def test_anonymous_under_default_deny_sees_nothing(server: Server) -> None:
    await call(server, "Catalog.Register", node="n1", address="10.0.0.1", checks=[],
               service={"id": "web1", "service": "web"})
    await call(server, "KVS.Apply", op="set", key="k", value=b"v", flags=0)
    assert await call(server, "Catalog.ListNodes", token="") == []
    assert await call(server, "Catalog.ListServices", token="") == {}
    assert await call(server, "KVS.List", token="", key="") == []
    for name, args in [("KVS.Get", {"key": "k"}), ("Catalog.ServiceNodes", {"service": "web"}),
                       ("Operator.Usage", {}), ("Snapshot.Save", {}), ("ConnectCA.ConfigurationGet", {}),
                       ("Catalog.Register", {"node": "n2", "address": "a", "checks": []}),
                       ("Intention.Get", {"source": "a", "destination": "b"}), ("ACL.TokenList", {}),
                       ("Made.Up", {})]:
        with pytest.raises((PermissionDeniedError, KeyError)):
            await call(server, name, token="", **args)


async def test_unknown_endpoint_fails_closed(server: Server) -> None:
    from lictor.server.acl.rpc_rules import authorize_rpc
    with pytest.raises(PermissionDeniedError, match="operator:write"):
        authorize_rpc(server, "Future.Thing", {"token": ""})
    assert authorize_rpc(server, "Future.Thing", {"token": MGMT}) is not None


# ----- expiry -----------------------------------------------------------------------------------------------

async def test_expired_token_is_refused_everywhere_and_reaped(server: Server) -> None:
    past = "2000-01-01T00:00:00.000000Z"
    row = new_token_row(accessor="aaaaaaaa-0000-0000-0000-000000000001", secret="bbbbbbbb-0000-0000-0000-000000000001",
                        description="old", now=time.time(), ExpirationTime=past,
                        Policies=[{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}])
    await server.apply(MessageType.ACL, {"op": "token_set", "token": row})
    secret = row["SecretID"]
    for name, args in [("KVS.Get", {"key": "k"}), ("ACL.TokenSelf", {}), ("ACL.TokenList", {}),
                       ("Catalog.ListNodes", {}), ("Status.Leader", {})]:
        with pytest.raises(ACLNotFoundError):
            await call(server, name, token=secret, **args)
    from lictor.server.acl.enforce import authorize_sign as _sign_authorizer
    with pytest.raises(ACLNotFoundError):
        _sign_authorizer(server, secret, "web")
    assert "reaped 1 expired tokens" in await acl_leader_duties(server)
    assert row["AccessorID"] not in server.store.ext["acl_tokens"]


async def test_ttl_token_gets_an_expiration_time(server: Server) -> None:
    t = await call(server, "ACL.TokenSet", body={"ExpirationTTL": "1h"}, create=True)
    assert t["ExpirationTime"].endswith("Z")
    with pytest.raises(ValidationError, match="ExpirationTTL cannot be less"):
        await call(server, "ACL.TokenSet", body={"ExpirationTTL": "100h"}, create=True)
    with pytest.raises(ValidationError, match="in the past"):
        await call(server, "ACL.TokenSet", body={"ExpirationTime": "2001-01-01T00:00:00Z"}, create=True)


# ----- objects ------------------------------------------------------------------------------------------------

async def test_policy_role_token_lifecycle_and_clone(server: Server) -> None:
    p = await policy(server, "kv-read", 'key_prefix "" { policy = "read" }')
    with pytest.raises(ValidationError, match="already exists"):
        await policy(server, "kv-read", "")
    with pytest.raises(ValidationError, match="invalid policy"):
        await policy(server, "bad", 'key "x" { policy = "nope" }')
    role = await call(server, "ACL.RoleSet", body={"Name": "reader", "Policies": [{"Name": "kv-read"}]}, create=True)
    assert role["Policies"] == [{"ID": p["ID"], "Name": "kv-read"}]
    t = await call(server, "ACL.TokenSet", body={"Description": "r", "Roles": [{"Name": "reader"}]}, create=True)
    await call(server, "KVS.Apply", op="set", key="k", value=b"v", flags=0)
    assert (await call(server, "KVS.Get", token=t["SecretID"], key="k"))["Key"] == "k"
    clone = await call(server, "ACL.TokenClone", accessor_id=t["AccessorID"], description="copy")
    assert clone["AccessorID"] != t["AccessorID"] and clone["SecretID"] != t["SecretID"]
    assert clone["Roles"] == t["Roles"] and clone["Description"] == "copy"
    listed = await call(server, "ACL.PolicyList")
    assert all("Rules" not in x for x in listed)
    assert (await call(server, "ACL.PolicyRead", name="kv-read"))["Rules"]
    await call(server, "ACL.PolicyDelete", id=p["ID"])
    with pytest.raises(PermissionDeniedError):  # the role's only policy is gone
        await call(server, "KVS.Get", token=t["SecretID"], key="k")
    assert (await call(server, "ACL.TokenRead", accessor_id=t["AccessorID"]))["Roles"][0]["Name"] == "reader"
    with pytest.raises(ValidationError, match="global-management"):
        await call(server, "ACL.PolicyDelete", id=GLOBAL_MANAGEMENT_ID)
    await call(server, "ACL.TokenDelete", accessor_id=t["AccessorID"])
    with pytest.raises(NotFound):
        await call(server, "ACL.TokenRead", accessor_id=t["AccessorID"])
    with pytest.raises(ValidationError, match="anonymous"):
        await call(server, "ACL.TokenDelete", accessor_id=ANONYMOUS_ACCESSOR_ID)


async def test_anonymous_token_can_be_granted_rights(server: Server) -> None:
    p = await policy(server, "anon", 'node_prefix "" { policy = "read" }')
    await call(server, "ACL.TokenSet", body={"AccessorID": ANONYMOUS_ACCESSOR_ID, "Policies": [{"ID": p["ID"]}]})
    await call(server, "Catalog.Register", node="n1", address="a", checks=[])
    assert [n["Node"] for n in await call(server, "Catalog.ListNodes", token="")] == ["n1"]


async def test_snapshot_round_trip_keeps_acls(server: Server) -> None:
    await token_with_rules(server, 'acl = "read"')
    snap = server.fsm.snapshot()
    buf = io.BytesIO()
    snap.persist(buf)
    before = dict(server.store.ext["acl_tokens"])
    server.fsm.restore(io.BytesIO(buf.getvalue()))
    assert server.store.ext["acl_tokens"] == before
    with pytest.raises(PermissionDeniedError, match="bootstrap no longer allowed"):
        await call(server, "ACL.Bootstrap", token="")
    assert (await call(server, "ACL.TokenSelf"))["SecretID"] == MGMT


# ----- auth methods, login, logout ------------------------------------------------------------------------------

def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_jwt(key: Any, claims: dict[str, Any], alg: str = "ES256", kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = key.sign(signing, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing.decode()}.{_b64(sig)}"


def pem(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


async def test_jwt_login_binds_a_service_identity_and_logout_deletes(server: Server) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    await call(server, "ACL.AuthMethodSet", body={
        "Name": "ci", "Type": "jwt", "MaxTokenTTL": "10m", "TokenLocality": "global",
        "Config": {"JWTValidationPubKeys": [pem(key)], "BoundIssuer": "https://ci", "BoundAudiences": ["lictor"],
                   "ClaimMappings": {"service": "service", "team": "team"}}})
    await call(server, "ACL.BindingRuleSet", body={"AuthMethod": "ci", "BindType": "service",
                                                   "BindName": "${value.service}", "Selector": 'value.team == "blue"'})
    now = time.time()
    claims = {"iss": "https://ci", "aud": "lictor", "exp": now + 60, "service": "web", "team": "blue"}
    tok = await call(server, "ACL.Login", token="", auth_method="ci", bearer_token=make_jwt(key, claims))
    assert tok["ServiceIdentities"] == [{"ServiceName": "web"}] and tok["AuthMethod"] == "ci"
    assert tok["Local"] is False and tok["ExpirationTime"]
    await call(server, "Catalog.Register", node="n1", address="a", checks=[])
    await call(server, "Catalog.Register", token=tok["SecretID"], node="n1", address="a", checks=[],
               skip_node_update=True, service={"id": "web1", "service": "web"})
    # the selector does not match: no binding -> denied
    with pytest.raises(PermissionDeniedError):
        await call(server, "ACL.Login", token="", auth_method="ci", bearer_token=make_jwt(key, {**claims, "team": "red"}))
    other = ec.generate_private_key(ec.SECP256R1())
    for bad, msg in [(make_jwt(other, claims), "signature"), (make_jwt(key, {**claims, "aud": "x"}), "audience"),
                     (make_jwt(key, {**claims, "iss": "evil"}), "issuer"),
                     (make_jwt(key, {**claims, "exp": now - 3600}), "expired"),
                     (make_jwt(key, claims).rsplit(".", 1)[0] + ".", "signature"), ("not-a-jwt", "not a JWT")]:
        with pytest.raises(JWTError, match=msg):
            await call(server, "ACL.Login", token="", auth_method="ci", bearer_token=bad)
    header_none = _b64(json.dumps({"alg": "none"}).encode()) + "." + _b64(json.dumps(claims).encode()) + "."
    with pytest.raises(JWTError, match="unsupported algorithm"):
        await call(server, "ACL.Login", token="", auth_method="ci", bearer_token=header_none)
    await call(server, "ACL.Logout", token=tok["SecretID"])
    with pytest.raises(ACLNotFoundError):
        await call(server, "ACL.TokenSelf", token=tok["SecretID"])
    with pytest.raises(PermissionDeniedError, match="not created by an auth method"):
        await call(server, "ACL.Logout", token=MGMT)


async def test_kubernetes_login_with_rs256_and_jwks(server: Server) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await call(server, "ACL.AuthMethodSet", body={"Name": "k8s", "Type": "kubernetes",
                                                  "Config": {"Host": "https://k8s", "JWTValidationPubKeys": [pem(key)]}})
    await call(server, "ACL.RoleSet", body={"Name": "ops", "Description": "ops"}, create=True)
    await call(server, "ACL.BindingRuleSet", body={"AuthMethod": "k8s", "BindType": "service",
                                                   "BindName": "${serviceaccount.name}",
                                                   "Selector": 'serviceaccount.namespace == "default"'})
    await call(server, "ACL.BindingRuleSet", body={"AuthMethod": "k8s", "BindType": "role", "BindName": "ops"})
    claims = {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "default",
              "kubernetes.io/serviceaccount/service-account.name": "api"}
    tok = await call(server, "ACL.Login", token="", auth_method="k8s", bearer_token=make_jwt(key, claims, "RS256"))
    assert tok["ServiceIdentities"] == [{"ServiceName": "api"}] and tok["Roles"][0]["Name"] == "ops"
    assert tok["Local"] is True
    # JWKS with a kid, on a jwt method
    n = key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "kid": "k1", "n": _b64(n.n.to_bytes(256, "big")), "e": _b64(n.e.to_bytes(3, "big"))}]}
    await call(server, "ACL.AuthMethodSet", body={"Name": "jw", "Type": "jwt", "Config": {
        "JWKS": jwks, "ClaimMappings": {"sub": "sub"}}})
    await call(server, "ACL.BindingRuleSet", body={"AuthMethod": "jw", "BindType": "node", "BindName": "${value.sub}"})
    t2 = await call(server, "ACL.Login", token="", auth_method="jw",
                    bearer_token=make_jwt(key, {"sub": "node-7"}, "RS256", kid="k1"))
    assert t2["NodeIdentities"] == [{"NodeName": "node-7", "Datacenter": "dc1"}]
    # deleting the method deletes its rules and the tokens it issued
    await call(server, "ACL.AuthMethodDelete", name="k8s")
    assert not [r for r in await call(server, "ACL.BindingRuleList") if r["AuthMethod"] == "k8s"]
    with pytest.raises(ACLNotFoundError):
        await call(server, "ACL.TokenSelf", token=tok["SecretID"])


async def test_auth_method_validation(server: Server) -> None:
    with pytest.raises(ValidationError, match="Type should be one of"):
        await call(server, "ACL.AuthMethodSet", body={"Name": "x", "Type": "oidc", "Config": {}})
    with pytest.raises(ValidationError, match="JWTValidationPubKeys"):
        await call(server, "ACL.AuthMethodSet", body={"Name": "x", "Type": "jwt", "Config": {}})
    with pytest.raises(ValidationError, match="unknown auth method"):
        await call(server, "ACL.BindingRuleSet", body={"AuthMethod": "nope", "BindType": "service", "BindName": "a"})


# ----- config --------------------------------------------------------------------------------------------------

def test_acl_config_parsing() -> None:
    c = parse_acl_config({"enabled": True, "default_policy": "deny", "down_policy": "async-cache",
                          "token_ttl": "10s", "tokens": {"master": "m", "agent": "a"}})
    assert c.enabled and c.default_policy == "deny" and c.token_ttl == 10.0
    assert c.tokens == {"initial_management": "m", "agent": "a"}
    assert "m" not in repr(c) and "a" not in repr(c).replace("ACLConfig", "").replace("enabled", "").replace(
        "default_policy", "").replace("down_policy", "").replace("async-cache", "").replace("deny", "").replace("hidden", "")
    from lictor.common.errors import ConfigError
    for bad, msg in [({"default_policy": "maybe"}, "acl.default_policy"), ({"down_policy": "x"}, "acl.down_policy"),
                     ({"tokens": {"boss": "x"}}, "unknown token type"), ({"enabeld": True}, "unknown key")]:
        with pytest.raises(ConfigError, match=msg):
            parse_acl_config(bad)
