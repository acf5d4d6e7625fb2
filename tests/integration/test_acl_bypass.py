"""Issue 18's authorization holes (items 1-10), each against a real ``lictor agent -dev`` with
ACLs on and ``default_policy = "deny"``: a token limited to one service, key or node must not
reach anything else by another spelling, an existing ID, a stored row or a side channel, and a
refused write changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import AgentProcess
from .test_acl import AGENT_TOKEN, MGMT, call, req, start_acl_agent, token_with

pytestmark = pytest.mark.integration

NODE = "lictor-test"  # the test agent's node name (conftest)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = start_acl_agent(tmp_path_factory.mktemp("aclbypass"))
    # the agent token may write this node but no service: a service syncs only with its own token
    p = call(a, "PUT", "/v1/acl/policy", {"Name": "agent", "Rules": f'node "{NODE}" {{ policy = "write" }}'})
    call(a, "PUT", "/v1/acl/token", {"SecretID": AGENT_TOKEN, "Policies": [{"ID": p["ID"]}]})
    yield a
    a.stop()


def services(a: AgentProcess) -> dict[str, Any]:
    return dict(call(a, "GET", "/v1/agent/services"))


def checks(a: AgentProcess) -> dict[str, Any]:
    return dict(call(a, "GET", "/v1/agent/checks"))


def denied(status: int, raw: bytes, perm: str, name: str) -> bool:
    return status == 403 and perm.encode() in raw and f'"{name}"'.encode() in raw


# ----- 1. a sidecar's name ------------------------------------------------------------------------

def test_1_a_sidecar_cannot_take_another_services_name(agent: AgentProcess) -> None:
    web = token_with(agent, 'service "b1-web" { policy = "write" }\nservice "b1-web-sidecar-proxy" { policy = "write" }')
    body = {"Name": "b1-web", "Port": 8080, "Connect": {"SidecarService": {"Name": "b1-db"}}}
    status, raw, _ = req(agent, "PUT", "/v1/agent/service/register", body, web)
    assert denied(status, raw, "service:write", "b1-db"), raw
    assert not {"b1-web", "b1-db", "b1-web-sidecar-proxy"} & set(services(agent))
    # the token can register the same service with its default sidecar name
    body["Connect"] = {"SidecarService": {}}
    assert req(agent, "PUT", "/v1/agent/service/register", body, web)[0] == 200
    assert {"b1-web", "b1-web-sidecar-proxy"} <= set(services(agent))


# ----- 2. a proxy's destination, however it is spelled -------------------------------------------

@pytest.mark.parametrize("spelling", ["destination_service_name", "DESTINATIONSERVICENAME", "Destination_Service_Name"])
def test_2_a_proxy_destination_is_authorized_after_decoding(agent: AgentProcess, spelling: str) -> None:
    proxy = f"b2-proxy-{spelling.lower()}"
    tok = token_with(agent, f'service "{proxy}" {{ policy = "write" }}')
    body = {"Name": proxy, "Kind": "connect-proxy", "Port": 21000, "Proxy": {spelling: "b2-db"}}
    status, raw, _ = req(agent, "PUT", "/v1/agent/service/register", body, tok)
    assert denied(status, raw, "service:write", "b2-db"), raw
    assert proxy not in services(agent)
    status, raw, _ = req(agent, "GET", "/v1/health/connect/b2-db", token=MGMT)
    assert status == 200 and json.loads(raw) == []


# ----- 3. a check's service, after decoding; replacing a service check --------------------------------

def test_3_a_check_binds_only_to_a_service_the_token_may_write(agent: AgentProcess) -> None:
    call(agent, "PUT", "/v1/agent/service/register",
         {"Name": "b3-db", "ID": "b3-db-local", "Port": 5432,
          "Check": {"CheckID": "b3-db-ttl", "TTL": "60s", "Status": "passing"}})
    node_writer = token_with(agent, f'node "{NODE}" {{ policy = "write" }}')
    evil = {"Name": "evil", "CheckID": "b3-evil", "S_erviceID": "b3-db-local", "TTL": "60s", "Status": "critical"}
    status, raw, _ = req(agent, "PUT", "/v1/agent/check/register", evil, node_writer)
    assert denied(status, raw, "service:write", "b3-db"), raw
    assert "b3-evil" not in checks(agent)
    # an existing service check cannot be replaced by a node check, nor then deregistered
    status, raw, _ = req(agent, "PUT", "/v1/agent/check/register",
                         {"Name": "mine", "CheckID": "b3-db-ttl", "TTL": "60s"}, node_writer)
    assert denied(status, raw, "service:write", "b3-db"), raw
    status, raw, _ = req(agent, "PUT", "/v1/agent/check/deregister/b3-db-ttl", token=node_writer)
    assert denied(status, raw, "service:write", "b3-db"), raw
    c = checks(agent)["b3-db-ttl"]
    assert c["ServiceID"] == "b3-db-local" and c["Status"] == "passing"
    # the node token may still register a node check of its own
    assert req(agent, "PUT", "/v1/agent/check/register", {"Name": "b3-node", "TTL": "60s"}, node_writer)[0] == 200


# ----- 4. an existing service ID ----------------------------------------------------------------------

def test_4_registering_over_another_services_id_is_refused(agent: AgentProcess) -> None:
    call(agent, "PUT", "/v1/agent/service/register", {"Name": "b4-db", "ID": "b4-shared", "Port": 1})
    web = token_with(agent, 'service "b4-web" { policy = "write" }')
    status, raw, _ = req(agent, "PUT", "/v1/agent/service/register",
                         {"Name": "b4-web", "ID": "b4-shared", "Port": 2}, web)
    assert denied(status, raw, "service:write", "b4-db"), raw
    s = services(agent)["b4-shared"]
    assert s["Service"] == "b4-db" and s["Port"] == 1


# ----- 5. /v1/catalog/register: other services' IDs and the node's fields ------------------------------

def test_5_catalog_register_needs_node_write_to_change_the_node(agent: AgentProcess) -> None:
    node = {"Node": "b5-node", "ID": "0b5e0b5e-0000-4000-8000-00000000b5b5", "Address": "10.5.5.5",
            "TaggedAddresses": {"lan": "10.5.5.5"}, "NodeMeta": {"team": "a"}}
    call(agent, "PUT", "/v1/catalog/register", {**node, "Service": {"Service": "b5-db", "ID": "b5-db-1", "Port": 1}})
    web = token_with(agent, 'service "b5-web" { policy = "write" }')
    # the unchanged node re-posted with a new service: service:write is enough
    assert req(agent, "PUT", "/v1/catalog/register", {**node, "Service": {"Service": "b5-web", "Port": 2}}, web)[0] == 200
    attempts: list[tuple[dict[str, Any], str, str]] = [
        ({**node, "Service": {"Service": "b5-web", "ID": "b5-db-1", "Port": 3}}, "service:write", "b5-db"),
        ({**node, "NodeMeta": {"team": "evil"}, "Service": {"Service": "b5-web", "Port": 2}}, "node:write", "b5-node"),
        ({**node, "TaggedAddresses": {"lan": "6.6.6.6"}, "Service": {"Service": "b5-web", "Port": 2}},
         "node:write", "b5-node"),
        ({k: v for k, v in node.items() if k != "ID"} | {"Service": {"Service": "b5-web", "Port": 2}},
         "node:write", "b5-node"),
    ]
    for body, perm, name in attempts:
        status, raw, _ = req(agent, "PUT", "/v1/catalog/register", body, web)
        assert denied(status, raw, perm, name), (body, raw)
    n = call(agent, "GET", "/v1/catalog/node/b5-node")
    assert n["Node"]["Meta"] == {"team": "a"} and n["Node"]["ID"] == node["ID"]
    assert n["Node"]["TaggedAddresses"]["lan"] == "10.5.5.5"
    assert n["Services"]["b5-db-1"]["Service"] == "b5-db" and n["Services"]["b5-db-1"]["Port"] == 1


# ----- 6. txn service verbs: the stored service --------------------------------------------------------

def test_6_txn_service_verbs_authorize_the_stored_service(agent: AgentProcess) -> None:
    call(agent, "PUT", "/v1/catalog/register", {"Node": "b6-node", "Address": "10.6.6.6",
                                                "Service": {"Service": "b6-db", "ID": "b6-db-1", "Port": 1}})
    web = token_with(agent, 'service "b6-web" { policy = "write" }\nnode "b6-node" { policy = "read" }')
    for verb in ("delete", "delete-cas", "set", "cas"):
        op = {"Service": {"Verb": verb, "Node": "b6-node",
                          "Service": {"ID": "b6-db-1", "Service": "b6-web", "Port": 9, "ModifyIndex": 0}}}
        status, raw, _ = req(agent, "PUT", "/v1/txn", [op], web)
        assert denied(status, raw, "service:write", "b6-db"), (verb, raw)
    svc = call(agent, "GET", "/v1/catalog/node/b6-node")["Services"]["b6-db-1"]
    assert svc["Service"] == "b6-db" and svc["Port"] == 1


# ----- 7. recursive deletes need write on the whole prefix ----------------------------------------------

def test_7_recursive_delete_needs_prefix_write(agent: AgentProcess) -> None:
    for k in ("b7/allowed", "b7/allowed-other-team/x", "b7/allowed/child"):
        call(agent, "PUT", f"/v1/kv/{k}", "v")
    exact = token_with(agent, 'key "b7/allowed" { policy = "write" }')
    status, raw, _ = req(agent, "DELETE", "/v1/kv/b7/allowed?recurse", token=exact)
    assert denied(status, raw, "key:write", "b7/allowed"), raw
    op = [{"KV": {"Verb": "delete-tree", "Key": "b7/allowed"}}]
    status, raw, _ = req(agent, "PUT", "/v1/txn", op, exact)
    assert denied(status, raw, "key:write", "b7/allowed"), raw
    assert sorted(call(agent, "GET", "/v1/kv/b7/?keys")) == ["b7/allowed", "b7/allowed-other-team/x",
                                                            "b7/allowed/child"]
    # the exact rule still deletes its one key; a prefix rule deletes the tree
    assert req(agent, "DELETE", "/v1/kv/b7/allowed", token=exact)[0] == 200
    prefix = token_with(agent, 'key_prefix "b7/allowed" { policy = "write" }')
    assert req(agent, "DELETE", "/v1/kv/b7/allowed?recurse", token=prefix)[0] == 200
    status, raw, _ = req(agent, "GET", "/v1/kv/b7/?keys", token=MGMT)
    assert status == 404 or (status == 200 and json.loads(raw) == []), raw


# ----- 8. ?filter is no oracle on hidden rows --------------------------------------------------------------

def test_8_acl_filtering_runs_before_the_user_filter(agent: AgentProcess) -> None:
    for name in ("b8-public", "b8-secret"):
        call(agent, "PUT", "/v1/catalog/register", {"Node": f"{name}-node", "Address": "10.8.8.8",
                                                    "Service": {"Service": name, "Port": 1}})
        call(agent, "PUT", "/v1/agent/service/register", {"Name": f"{name}-local", "Port": 1})
    tok = token_with(agent, 'node_prefix "b8-public" { policy = "read" }\n'
                            'service_prefix "b8-public" { policy = "read" }')
    from urllib.parse import quote

    def flagged(path: str, expr: str) -> tuple[Any, str | None]:
        status, raw, h = req(agent, "GET", f"{path}?filter={quote(expr)}", token=tok)
        assert status == 200, raw
        return json.loads(raw), h.get("X-Consul-Results-Filtered-By-ACLs")

    for path, field, hidden in (("/v1/catalog/nodes", "Node", "b8-secret-node"),
                                ("/v1/agent/services", "Service", "b8-secret-local")):
        rows_hit, hit = flagged(path, f'{field} == "{hidden}"')
        rows_miss, miss = flagged(path, f'{field} == "no-such-thing"')
        assert not rows_hit and not rows_miss
        assert hit == miss == "true"  # hidden rows exist; whether one matched is not told


# ----- 9. anti-entropy syncs each service with its own token ------------------------------------------------

def test_9_a_service_syncs_with_the_token_it_was_registered_with(agent: AgentProcess) -> None:
    # the agent token of this module cannot write services: only the registration's token can
    tok = token_with(agent, 'service "b9-web" { policy = "write" }')
    assert req(agent, "PUT", "/v1/agent/service/register", {"Name": "b9-web", "Port": 80}, tok)[0] == 200
    mgmt_only = {"Name": "b9-mgmt", "Port": 81}
    assert req(agent, "PUT", "/v1/agent/service/register", mgmt_only, MGMT)[0] == 200
    deadline = time.monotonic() + 10
    found: set[str] = set()
    while time.monotonic() < deadline and found != {"b9-web", "b9-mgmt"}:
        n = call(agent, "GET", f"/v1/catalog/node/{NODE}") or {}
        found = {s["Service"] for s in (n.get("Services") or {}).values()} & {"b9-web", "b9-mgmt"}
        time.sleep(0.1)
    assert found == {"b9-web", "b9-mgmt"}
    # deregistration syncs with the same token
    assert req(agent, "PUT", "/v1/agent/service/deregister/b9-web", token=tok)[0] == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        n = call(agent, "GET", f"/v1/catalog/node/{NODE}") or {}
        if "b9-web" not in (n.get("Services") or {}):
            break
        time.sleep(0.1)
    assert "b9-web" not in (call(agent, "GET", f"/v1/catalog/node/{NODE}").get("Services") or {})


# ----- 10. one token per request ---------------------------------------------------------------------------

def test_10_the_token_authorized_is_the_token_stored(agent: AgentProcess) -> None:
    web = token_with(agent, 'service "b10-web" { policy = "write" }')
    weak = token_with(agent, 'key "nothing" { policy = "read" }')
    import urllib.error
    import urllib.request

    # ?token comes first (Consul's order): the header is ignored, for authorization and storage alike
    r = urllib.request.Request(f"{agent.url}/v1/agent/service/register?token={weak}",
                               data=json.dumps({"Name": "b10-web", "Port": 1}).encode(), method="PUT",
                               headers={"Authorization": f"Bearer {web}"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(r, timeout=10)
    assert exc.value.code == 403
    exc.value.close()
    r = urllib.request.Request(f"{agent.url}/v1/agent/service/register?token={web}",
                               data=json.dumps({"Name": "b10-web", "Port": 1}).encode(), method="PUT",
                               headers={"X-Consul-Token": weak})
    with urllib.request.urlopen(r, timeout=10) as resp:
        assert resp.status == 200
    # stored with the token that was authorized: it syncs (the weak token could not)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        n = call(agent, "GET", f"/v1/catalog/node/{NODE}") or {}
        if "b10-web" in (n.get("Services") or {}):
            break
        time.sleep(0.1)
    assert "b10-web" in (call(agent, "GET", f"/v1/catalog/node/{NODE}").get("Services") or {})
