"""The same ACL answers through a client agent as through a server agent (issue 16 defect 9: one
rule table, on the server), and a client syncs each service with the token it was registered
with (issue 18 item 9) over the network. One server and one client, real processes, ACLs on with
``default_policy = "deny"``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .meshproc import Mesh, MeshAgent
from .test_acl import AGENT_TOKEN, MGMT

pytestmark = pytest.mark.integration

# the default token is the management token only so the harness's own probes (members, leader)
# see everything; every request below names its token
HCL = f'''acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    initial_management = "{MGMT}"
    default = "{MGMT}"
    agent = "{AGENT_TOKEN}"
  }}
}}'''


def http(a: MeshAgent, method: str, path: str, body: Any = None, token: str = MGMT) -> tuple[int, Any, dict[str, str]]:
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(a.url + path, data=data, method=method, headers={"X-Consul-Token": token})
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw.strip() else None, dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        exc.close()
        return exc.code, raw, dict(exc.headers.items())


def ok(a: MeshAgent, method: str, path: str, body: Any = None) -> Any:
    status, out, _ = http(a, method, path, body)
    assert 200 <= status < 300, (path, status, out)
    return out


def token_with(a: MeshAgent, rules: str, secret: str | None = None) -> str:
    p = ok(a, "PUT", "/v1/acl/policy", {"Name": f"p{time.monotonic_ns()}", "Rules": rules})
    body: dict[str, Any] = {"Policies": [{"ID": p["ID"]}]}
    if secret:
        body["SecretID"] = secret
    return str(ok(a, "PUT", "/v1/acl/token", body)["SecretID"])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeshAgent, MeshAgent]]:
    root: Path = tmp_path_factory.mktemp("aclclient")
    m = Mesh(root, servers=1, clients=1, distinct_hosts=False, extra=("-hcl", HCL))
    try:
        m.start(timeout=60)
        server, client = m.servers[0], m.clients[0]
        # each agent token may write its own node and nothing else
        token_with(server, 'node_prefix "" { policy = "write" }', secret=AGENT_TOKEN)
        yield server, client
    finally:
        m.stop()


def test_a_client_syncs_a_service_with_its_registration_token(pair: tuple[MeshAgent, MeshAgent]) -> None:
    server, client = pair
    tok = token_with(server, 'service "cl-web" { policy = "write" }')
    status, out, _ = http(client, "PUT", "/v1/agent/service/register", {"Name": "cl-web", "Port": 80}, tok)
    assert status == 200, out
    deadline = time.monotonic() + 15
    seen: Any = None
    while time.monotonic() < deadline:
        seen = http(server, "GET", f"/v1/catalog/node/{client.name}")[1]
        if seen and "cl-web" in (seen.get("Services") or {}):
            break
        time.sleep(0.2)
    assert seen and "cl-web" in (seen.get("Services") or {}), seen


def test_client_and_server_agents_answer_alike(pair: tuple[MeshAgent, MeshAgent]) -> None:
    server, client = pair
    ok(server, "PUT", "/v1/catalog/register", {"Node": "cl-node", "Address": "10.1.2.3",
                                               "Service": {"Service": "cl-db", "ID": "cl-db-1"}})
    web = token_with(server, 'service "cl-web2" { policy = "write" }\nservice "cl-db" { policy = "write" }')
    other = token_with(server, 'service "cl-web2" { policy = "write" }')
    cases = [
        # an ID held by another service (issue 18 item 5)
        ("PUT", "/v1/catalog/register", {"Node": "cl-node", "Address": "10.1.2.3",
                                         "Service": {"Service": "cl-web2", "ID": "cl-db-1"}}, other, 403),
        # a check on a service the token may write, node unchanged: no node:write needed
        ("PUT", "/v1/catalog/register", {"Node": "cl-node", "Address": "10.1.2.3",
                                         "Check": {"CheckID": "cl-chk", "Name": "c", "ServiceID": "cl-db-1"}},
         web, 200),
        # a recursive delete with an exact key rule (item 7)
        ("DELETE", "/v1/kv/cl-allowed?recurse", None,
         token_with(server, 'key "cl-allowed" { policy = "write" }'), 403),
    ]
    for method, path, body, tok, want in cases:
        got = [http(a, method, path, body, tok)[0] for a in (client, server)]
        assert got == [want, want], (path, body, got)
    # ?filter is no oracle through the client either (item 8)
    reader = token_with(server, 'node "cl-node" { policy = "read" }')
    flags = []
    for expr in (f'Node == "{server.name}"', 'Node == "nothing"'):
        status, _, h = http(client, "GET", f"/v1/catalog/nodes?filter={quote(expr)}", token=reader)
        assert status == 200
        flags.append(h.get("X-Consul-Results-Filtered-By-ACLs"))
    assert flags == ["true", "true"]
