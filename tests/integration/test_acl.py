"""ACLs end to end on a real ``lictor agent -dev`` with ``acl { default_policy = "deny" }``:
the initial tokens, bootstrap-once, an authorization matrix over the HTTP API, filtered lists,
escalation attempts, expiry, agent tokens, login/logout, and no secret in responses or logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import AgentProcess

pytestmark = pytest.mark.integration

MGMT = "6c0e7a2b-1111-4222-8333-944445555666"
AGENT_TOKEN = "6c0e7a2b-1111-4222-8333-944445555667"

CONFIG = f'''
acl {{
  enabled = true
  default_policy = "deny"
  down_policy = "extend-cache"
  tokens {{
    initial_management = "{MGMT}"
    agent = "{AGENT_TOKEN}"
  }}
}}
'''


def start_acl_agent(d: Path) -> AgentProcess:
    """A dev agent with CONFIG's ACLs (default deny), once the leader has created the initial
    management token (on its first round)."""
    (d / "acl.hcl").write_text(CONFIG)
    a = AgentProcess(d, "-config-file", str(d / "acl.hcl")).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if a.request("GET", "/v1/acl/token/self", headers={"X-Consul-Token": MGMT})[0] == 200:
            break
        time.sleep(0.05)
    return a


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = start_acl_agent(tmp_path_factory.mktemp("acl"))
    # the agent token: what anti-entropy uses for this node's registration
    p = call(a, "PUT", "/v1/acl/policy", {"Name": "agent", "Rules": 'node_prefix "" { policy = "write" }\n'
                                           'service_prefix "" { policy = "write" }'})
    call(a, "PUT", "/v1/acl/token", {"SecretID": AGENT_TOKEN, "Policies": [{"ID": p["ID"]}]})
    yield a
    a.stop()


def req(a: AgentProcess, method: str, path: str, body: Any = None, token: str | None = None,
        how: str = "header") -> tuple[int, bytes, dict[str, str]]:
    import urllib.error
    import urllib.request

    headers = {}
    if token is not None and how == "header":
        headers["X-Consul-Token"] = token
    elif token is not None and how == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None:
        path += ("&" if "?" in path else "?") + f"token={token}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    r = urllib.request.Request(a.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers.items())


def call(a: AgentProcess, method: str, path: str, body: Any = None, token: str = MGMT) -> Any:
    status, raw, _ = req(a, method, path, body, token)
    assert 200 <= status < 300, f"{method} {path} -> {status}: {raw!r}"
    return json.loads(raw) if raw.strip() else None


def token_with(a: AgentProcess, rules: str, **extra: Any) -> str:
    p = call(a, "PUT", "/v1/acl/policy", {"Name": f"p{time.monotonic_ns()}", "Rules": rules})
    return str(call(a, "PUT", "/v1/acl/token", {"Policies": [{"ID": p["ID"]}], **extra})["SecretID"])


def test_fresh_cluster_holds_the_two_initial_tokens_and_bootstrap_is_refused(agent: AgentProcess) -> None:
    toks = call(agent, "GET", "/v1/acl/tokens")
    initial = [t for t in toks if t["SecretID"] in (MGMT, "anonymous")]
    assert sorted(t["Description"] for t in initial) == ["Anonymous Token", "Initial Management Token"]
    mgmt = next(t for t in initial if t["SecretID"] == MGMT)
    assert [p["Name"] for p in mgmt["Policies"]] == ["global-management"]
    status, raw, _ = req(agent, "PUT", "/v1/acl/bootstrap")
    assert status == 403 and b"ACL bootstrap no longer allowed" in raw
    out = subprocess.run([sys.executable, "-m", "lictor.cli.main", "acl", "bootstrap", f"-http-addr={agent.addr}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "ACL bootstrap no longer allowed" in out.stderr


# (method, path, body, rules that grant exactly this, the permission named when missing)
MATRIX: list[tuple[str, str, Any, str, str]] = [
    ("PUT", "/v1/kv/mx/a", b"v", 'key "mx/a" { policy = "write" }', "key:write"),
    ("GET", "/v1/kv/mx/a", None, 'key "mx/a" { policy = "read" }', "key:read"),
    ("PUT", "/v1/catalog/register", {"Node": "mx-node", "Address": "10.1.1.1"},
     'node "mx-node" { policy = "write" }', "node:write"),
    ("GET", "/v1/catalog/node/mx-node", None, 'node "mx-node" { policy = "read" }', "node:read"),
    ("PUT", "/v1/agent/service/register", {"Name": "mx-svc", "Port": 1},
     'service "mx-svc" { policy = "write" }', "service:write"),
    ("GET", "/v1/health/service/mx-svc", None, 'service "mx-svc" { policy = "read" }', "service:read"),
    ("PUT", "/v1/session/create", {"Node": "lictor-test", "Checks": []},
     'session "lictor-test" { policy = "write" }', "session:write"),
    ("PUT", "/v1/event/fire/mx-ev", b"", 'event "mx-ev" { policy = "write" }', "event:write"),
    ("GET", "/v1/operator/raft/configuration", None, 'operator = "read"', "operator:read"),
    ("GET", "/v1/connect/ca/configuration", None, 'operator = "read"', "operator:read"),
    ("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "mx-svc", "Protocol": "http"},
     'service "mx-svc" { policy = "write" }', "service:write"),
    ("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global"}, 'mesh = "write"', "mesh:write"),
    ("PUT", "/v1/connect/intentions/exact?source=a&destination=mx-svc", {"Action": "allow"},
     'service "mx-svc" { policy = "read" intentions = "write" }', "intention:write"),
    ("GET", "/v1/agent/self", None, 'agent "lictor-test" { policy = "read" }', "agent:read"),
    ("GET", "/v1/acl/policies", None, 'acl = "read"', "acl:read"),
    ("PUT", "/v1/txn", [{"KV": {"Verb": "set", "Key": "mx/t", "Value": "dg=="}}],
     'key "mx/t" { policy = "write" }', "key:write"),
]


@pytest.mark.parametrize(("method", "path", "body", "rules", "perm"), MATRIX,
                         ids=[f"{m} {p.split('?')[0]}" for m, p, *_ in MATRIX])
def test_authorization_matrix(agent: AgentProcess, method: str, path: str, body: Any, rules: str, perm: str) -> None:
    right = token_with(agent, rules)
    wrong = token_with(agent, 'key "nothing" { policy = "read" }')
    status, raw, _ = req(agent, method, path, body, right)
    assert 200 <= status < 300, f"{method} {path} with {rules!r} -> {status}: {raw!r}"
    for tok in (wrong, None):
        status, raw, _ = req(agent, method, path, body, tok)
        assert status == 403, f"{method} {path} -> {status}: {raw!r}"
        assert raw.startswith(b"Permission denied: token with AccessorID") and perm.encode() in raw
        assert tok is None or tok.encode() not in raw


def test_tokens_from_bearer_and_query(agent: AgentProcess) -> None:
    t = token_with(agent, 'key "tq" { policy = "write" }')
    assert req(agent, "PUT", "/v1/kv/tq", b"1", t, how="bearer")[0] == 200
    assert req(agent, "PUT", "/v1/kv/tq", b"1", t, how="query")[0] == 200
    status, raw, _ = req(agent, "PUT", "/v1/kv/tq", b"1", "00000000-dead-beef-0000-000000000000")
    assert status == 403 and raw == b"ACL not found"


def test_lists_are_filtered_with_the_header(agent: AgentProcess) -> None:
    for name in ("flt-web", "flt-db"):
        call(agent, "PUT", "/v1/catalog/register", {"Node": f"{name}-node", "Address": "10.0.0.9",
                                                    "Service": {"Service": name, "Port": 80}})
        call(agent, "PUT", f"/v1/kv/flt/{name}", "v")
    t = token_with(agent, 'service "flt-web" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'
                          'key_prefix "flt/flt-web" { policy = "read" }')
    status, raw, h = req(agent, "GET", "/v1/catalog/services", token=t)
    assert status == 200 and list(json.loads(raw)) == ["flt-web"]
    assert h.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    status, raw, h = req(agent, "GET", "/v1/kv/flt/?recurse", token=t)
    assert [e["Key"] for e in json.loads(raw)] == ["flt/flt-web"] and h.get("X-Consul-Results-Filtered-By-ACLs")
    status, raw, h = req(agent, "GET", "/v1/kv/flt/?keys", token=t)
    assert json.loads(raw) == ["flt/flt-web"]
    # the management token sees everything, unflagged, and the shared result was not damaged
    status, raw, h = req(agent, "GET", "/v1/catalog/services", token=MGMT)
    assert {"flt-web", "flt-db"} <= set(json.loads(raw)) and "X-Consul-Results-Filtered-By-ACLs" not in h
    # anonymous under default deny sees nothing
    for path in ("/v1/catalog/services", "/v1/catalog/nodes", "/v1/kv/flt/?recurse", "/v1/agent/services",
                 "/v1/agent/members", "/v1/session/list", "/v1/connect/intentions"):
        status, raw, h = req(agent, "GET", path)
        assert status in (200, 404), path
        if status == 200:
            assert not json.loads(raw), f"{path}: {raw!r}"


def test_escalation_attempts_fail(agent: AgentProcess) -> None:
    reader = token_with(agent, 'acl = "read"')
    for method, path, body in [("PUT", "/v1/acl/token", {"Policies": [{"Name": "global-management"}]}),
                               ("PUT", "/v1/acl/policy", {"Name": "evil", "Rules": 'acl = "write"'}),
                               ("PUT", "/v1/agent/token/default", {"Token": MGMT})]:
        status, raw, _ = req(agent, method, path, body, reader)
        assert status == 403 and b"acl:write" in raw, (path, raw)
    listed = json.loads(req(agent, "GET", "/v1/acl/tokens", token=reader)[1])
    assert MGMT.encode() not in json.dumps(listed).encode() and all(t["SecretID"] == "<hidden>" for t in listed)
    svc = call(agent, "PUT", "/v1/acl/token", {"ServiceIdentities": [{"ServiceName": "esc-web"}]})["SecretID"]
    assert req(agent, "PUT", "/v1/agent/service/register", {"Name": "esc-web", "Port": 1}, svc)[0] == 200
    status, raw, _ = req(agent, "PUT", "/v1/agent/service/register", {"Name": "esc-db", "Port": 1}, svc)
    assert status == 403 and b"service:write" in raw and b"esc-db" in raw
    status, raw, _ = req(agent, "GET", "/v1/agent/connect/ca/leaf/esc-db", token=svc)
    assert status == 403 and b"esc-db" in raw
    assert req(agent, "GET", "/v1/agent/connect/ca/leaf/esc-web", token=svc)[0] == 200
    kv = token_with(agent, 'key_prefix "esc/" { policy = "write" }')
    assert req(agent, "PUT", "/v1/kv/esc/a", b"1", kv)[0] == 200
    assert req(agent, "GET", "/v1/kv/other", token=kv)[0] == 403
    assert req(agent, "DELETE", "/v1/kv/?recurse", token=kv)[0] == 403


def test_expired_token_is_refused_everywhere(agent: AgentProcess) -> None:
    t = call(agent, "PUT", "/v1/acl/token", {"ExpirationTTL": "2s", "Policies": [{"Name": "global-management"}]})
    secret = t["SecretID"]
    assert req(agent, "GET", "/v1/kv/any", token=secret)[0] in (200, 404)
    time.sleep(2.2)
    for method, path in [("GET", "/v1/kv/any"), ("GET", "/v1/acl/token/self"), ("GET", "/v1/catalog/nodes"),
                         ("GET", "/v1/agent/self"), ("PUT", "/v1/kv/x")]:
        status, raw, _ = req(agent, method, path, token=secret)
        assert status == 403 and raw == b"ACL not found", (path, status, raw)


def test_agent_default_token_and_secrets_never_leak(agent: AgentProcess) -> None:
    dflt = token_with(agent, 'key "dflt" { policy = "read" }')
    call(agent, "PUT", "/v1/kv/dflt", "v")
    assert req(agent, "GET", "/v1/kv/dflt")[0] == 403
    call(agent, "PUT", "/v1/agent/token/default", {"Token": dflt})
    assert req(agent, "GET", "/v1/kv/dflt")[0] == 200
    call(agent, "PUT", "/v1/agent/token/default", {"Token": ""})
    assert req(agent, "GET", "/v1/kv/dflt")[0] == 403
    selfinfo = req(agent, "GET", "/v1/agent/self", token=MGMT)[1]
    for secret in (MGMT, AGENT_TOKEN, dflt):
        assert secret.encode() not in selfinfo
        assert secret not in agent.log_text()


def test_login_and_logout_with_a_locally_signed_jwt(agent: AgentProcess) -> None:
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    call(agent, "PUT", "/v1/acl/auth-method", {"Name": "local-jwt", "Type": "jwt", "Config": {
        "JWTValidationPubKeys": [pem], "BoundAudiences": ["lictor"], "ClaimMappings": {"svc": "svc"}}})
    call(agent, "PUT", "/v1/acl/binding-rule", {"AuthMethod": "local-jwt", "BindType": "service",
                                                 "BindName": "${value.svc}"})

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    signing = (b64(json.dumps({"alg": "ES256"}).encode()) + "." +
               b64(json.dumps({"aud": "lictor", "svc": "jwt-web", "exp": time.time() + 60}).encode())).encode()
    r, s = decode_dss_signature(key.sign(signing, ec.ECDSA(hashes.SHA256())))
    jwt = signing.decode() + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    tok = call(agent, "POST", "/v1/acl/login", {"AuthMethod": "local-jwt", "BearerToken": jwt}, token="")
    assert tok["ServiceIdentities"] == [{"ServiceName": "jwt-web"}]
    assert req(agent, "PUT", "/v1/agent/service/register", {"Name": "jwt-web", "Port": 2}, tok["SecretID"])[0] == 200
    assert req(agent, "POST", "/v1/acl/logout", token=tok["SecretID"])[0] == 200
    assert req(agent, "GET", "/v1/acl/token/self", token=tok["SecretID"])[1] == b"ACL not found"
    status, _, _ = req(agent, "POST", "/v1/acl/login", {"AuthMethod": "local-jwt", "BearerToken": jwt[:-4] + "AAAA"})
    assert status == 403


def test_cli_token_policy_role(agent: AgentProcess, tmp_path: Path) -> None:
    def cli(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "lictor.cli.main", "acl", *args, f"-http-addr={agent.addr}",
                              f"-token={MGMT}", "-format=json"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    (tmp_path / "r.hcl").write_text('key_prefix "cli/" { policy = "write" }')
    p = cli("policy", "create", "-name", "cli-pol", "-rules", f"@{tmp_path / 'r.hcl'}")
    role = cli("role", "create", "-name", "cli-role", "-policy-name", "cli-pol")
    t = cli("token", "create", "-description", "cli", "-role-name", "cli-role")
    assert t["Roles"][0]["Name"] == "cli-role" and p["Name"] == "cli-pol" and role["Name"] == "cli-role"
    assert req(agent, "PUT", "/v1/kv/cli/x", b"1", t["SecretID"])[0] == 200
    assert any(x["AccessorID"] == t["AccessorID"] for x in cli("token", "list"))
    assert cli("token", "read", "-id", t["AccessorID"])["Description"] == "cli"
