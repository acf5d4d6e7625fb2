"""Consul HTTP API behaviours, driven with an independent client (py-consul) or raw HTTP against
real ``lictor agent`` processes (issue 16): every expectation below is Consul's, as its API
reference and its Go code state it, not a reading of our own code.

* ``dev``: one ``lictor agent -dev`` (items 4, 5, 7, 9, 10, 12, 13).
* ``acl_dev``: a dev agent with ACLs enabled, default policy allow (items 1-3).
* ``mesh``: three servers and one client agent (items 6, 8, 11; the client/server parity tests
  for defects 1 and 5).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import consul
import pytest

from tests.integration.conftest import AgentProcess, eventually
from tests.integration.meshproc import Mesh, MeshAgent

pytestmark = pytest.mark.integration

MGMT = "7d1e8a3c-2222-4333-8444-a55556666777"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path_factory.mktemp("compat-dev")).start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def c(dev: AgentProcess) -> Any:
    return consul.Consul(host="127.0.0.1", port=dev.http_port)


@pytest.fixture(scope="module")
def acl_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    d = tmp_path_factory.mktemp("compat-acl")
    (d / "acl.hcl").write_text(f'acl {{\n  enabled = true\n  default_policy = "allow"\n'
                               f'  tokens {{ initial_management = "{MGMT}" }}\n}}\n')
    a = AgentProcess(d, "-config-file", str(d / "acl.hcl")).start()
    eventually(lambda: a.request("GET", "/v1/acl/token/self", headers={"X-Consul-Token": MGMT})[0] == 200,
               10, "the initial management token")
    yield a
    a.stop()


@pytest.fixture(scope="module")
def ac(acl_dev: AgentProcess) -> Any:
    return consul.Consul(host="127.0.0.1", port=acl_dev.http_port, token=MGMT)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("compat-mesh"), servers=3, clients=1, distinct_hosts=False)
    try:
        m.start()
        yield m
    finally:
        m.stop()


def mgmt(a: AgentProcess, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    return a.request(method, path, body, headers={"X-Consul-Token": MGMT})


# ----------------------------------------------------------------------------- 1-3: ACLs

def test_1_acl_ids_are_kept_as_given_and_found_case_insensitively(acl_dev: AgentProcess, ac: Any) -> None:
    upper = "ABCDEF01-2345-4678-9ABC-DEF012345678"
    status, raw = mgmt(acl_dev, "PUT", "/v1/acl/token", {"AccessorID": upper, "Description": "as given"})
    assert status == 200, raw
    assert json.loads(raw)["AccessorID"] == upper  # not lower-cased
    got = ac.acl.token.read(accessor_id=upper.lower())
    assert got["AccessorID"] == upper and got["Description"] == "as given"
    # the same ID in another case is the same token
    status, raw = mgmt(acl_dev, "PUT", "/v1/acl/token", {"AccessorID": upper.lower()})
    assert status == 400 and b"already in use" in raw


def test_1_updating_an_unknown_token_is_an_error_not_a_create(acl_dev: AgentProcess, ac: Any) -> None:
    ghost = "0badc0de-0000-4000-8000-000000000001"
    with pytest.raises(consul.ConsulException):
        ac.acl.token.update(accessor_id=ghost, description="should not exist")
    status, raw = mgmt(acl_dev, "PUT", f"/v1/acl/token/{ghost}", {"Description": "x"})
    assert status == 500 and b"Cannot find token" in raw
    assert ghost not in [t["AccessorID"].lower() for t in ac.acl.token.list()]


@pytest.mark.parametrize(("method", "path", "status", "text"), [
    ("GET", "/v1/acl/token/not-a-uuid", 500, b"UUID must be 36 characters"),
    ("PUT", "/v1/acl/token/not-a-uuid/clone", 500, b"UUID must be 36 characters"),
    ("GET", "/v1/acl/policy/not-a-uuid", 500, b"UUID must be 36 characters"),
    ("PUT", "/v1/acl/token/0badc0de-0000-4000-8000-000000000002/clone", 403, b"ACL not found"),
])
def test_2_malformed_and_missing_ids(acl_dev: AgentProcess, method: str, path: str, status: int,
                                     text: bytes) -> None:
    got, raw = mgmt(acl_dev, method, path)
    assert (got, raw) == (status, text)


def test_2_login_with_an_unknown_auth_method_is_acl_not_found(acl_dev: AgentProcess) -> None:
    status, raw = acl_dev.request("POST", "/v1/acl/login", {"AuthMethod": "nope", "BearerToken": "x.y.z"})
    assert (status, raw) == (403, b"ACL not found")


def test_3_acl_bodies_match_keys_case_insensitively(acl_dev: AgentProcess, ac: Any) -> None:
    # py-consul sends {"name": ..., "rules": ...}: Go's decoder takes them as Name and Rules
    created = ac.acl.policy.create(name="compat-lower-keys", rules={"key_prefix": {"compat/": {"policy": "read"}}})
    assert created["Name"] == "compat-lower-keys" and "compat/" in created["Rules"]
    assert ac.acl.policy.read(uuid=created["ID"])["Name"] == "compat-lower-keys"
    status, raw = mgmt(acl_dev, "PUT", "/v1/acl/token", {"description": "lower", "policies": [{"name": "compat-lower-keys"}]})
    assert status == 200, raw
    tok = json.loads(raw)
    assert tok["Description"] == "lower" and [p["Name"] for p in tok["Policies"]] == ["compat-lower-keys"]


def test_3_templated_policy_variables_are_spelled_name(acl_dev: AgentProcess) -> None:
    body = {"TemplatedPolicies": [{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "web"}}]}
    status, raw = mgmt(acl_dev, "PUT", "/v1/acl/token", body)
    assert status == 200, raw
    tok = json.loads(raw)
    assert tok["TemplatedPolicies"][0]["TemplateVariables"] == {"name": "web"}
    status, raw = mgmt(acl_dev, "GET", f"/v1/acl/token/{tok['AccessorID']}")
    assert json.loads(raw)["TemplatedPolicies"][0]["TemplateVariables"] == {"name": "web"}


# ----------------------------------------------------------------------------- 4: 500, not 404

def test_4_errors_consul_answers_with_500(dev: AgentProcess, c: Any) -> None:
    assert dev.request("PUT", "/v1/agent/force-leave/no-such-node") == (
        500, b"agent: No node found with name 'no-such-node'")
    status, raw = dev.request("PUT", "/v1/session/create", {"Node": "no-such-node"})
    assert status == 500 and b"no-such-node" in raw
    unknown = "3f0f1a53-0000-4000-8000-000000000000"
    assert dev.request("PUT", f"/v1/kv/compat/lock?acquire={unknown}", b"x") == (
        500, f'invalid session "{unknown}"'.encode())
    assert dev.request("PUT", "/v1/kv/compat/lock?acquire=not-a-session", b"x") == (
        500, b"failed session lookup: UUID must be 36 characters")
    # a release by a session that does not hold the lock stays a plain false
    holder, other = c.session.create(), c.session.create()
    assert c.kv.put("compat/lock", "v", acquire=holder) is True
    assert dev.request("PUT", f"/v1/kv/compat/lock?release={other}", b"v") == (200, b"false")


# ----------------------------------------------------------------------------- 5: agent self

def test_5_agent_self_reports_the_consul_api_version_and_consul_stats(dev: AgentProcess, c: Any) -> None:
    me = c.agent.self()
    assert re.fullmatch(r"1\.\d+\.\d+", me["Config"]["Version"]), me["Config"]
    assert me["Config"]["LictorVersion"] and me["Config"]["LictorVersion"] != me["Config"]["Version"]
    stats = me["Stats"]["consul"]
    assert {"leader", "leader_addr", "server", "bootstrap", "known_datacenters", "acl"} <= set(stats)
    assert stats["leader_addr"] == c.status.leader()
    assert (stats["server"], stats["leader"], stats["acl"], stats["known_datacenters"]) == (
        "true", "true", "disabled", "1")


# ----------------------------------------------------------------------------- 7: agent services

def test_7_agent_services_omit_what_consul_omits(dev: AgentProcess, c: Any) -> None:
    assert c.agent.service.register("compat-plain", service_id="compat-plain", port=81) is True
    dev.json("PUT", "/v1/agent/service/register", {"Name": "compat-native", "Port": 82, "Connect": {"Native": True}})
    dev.json("PUT", "/v1/agent/service/register", {"Name": "compat-proxy", "Kind": "connect-proxy", "Port": 21000,
                                                   "Proxy": {"DestinationServiceName": "compat-plain"}})
    svcs = c.agent.services()
    plain, native, proxy = svcs["compat-plain"], svcs["compat-native"], svcs["compat-proxy"]
    for s in (plain, native):
        assert "TaggedAddresses" not in s and "Proxy" not in s, s
    assert "Connect" not in plain and native["Connect"] == {"Native": True}
    assert proxy["Proxy"]["DestinationServiceName"] == "compat-plain" and "Connect" not in proxy
    tagged = dev.json("PUT", "/v1/agent/service/register",
                      {"Name": "compat-tagged", "Port": 83, "TaggedAddresses": {"lan": {"Address": "10.0.0.1",
                                                                                       "Port": 83}}})
    assert tagged is None
    assert c.agent.services()["compat-tagged"]["TaggedAddresses"]["lan"]["Address"] == "10.0.0.1"


# ----------------------------------------------------------------------------- 9, 10: KV, CA

def test_9_an_empty_kv_value_is_null(dev: AgentProcess, c: Any) -> None:
    assert c.kv.put("compat/empty", "") is True
    _, entry = c.kv.get("compat/empty")
    assert entry["Value"] is None
    status, raw = dev.request("GET", "/v1/kv/compat/empty")
    assert status == 200 and json.loads(raw)[0]["Value"] is None


def test_10_ca_configuration_reads_back_as_last_written(dev: AgentProcess) -> None:
    cfg = dev.json("GET", "/v1/connect/ca/configuration")["Config"]
    assert (cfg["LeafCertTTL"], cfg["RotationPeriod"]) == ("72h", "2160h")  # Consul's defaults, as they read
    assert dev.json("PUT", "/v1/connect/ca/configuration",
                    {"Provider": "consul", "Config": {"LeafCertTTL": "48h", "RotationPeriod": "1440m"}}) is True
    cfg = dev.json("GET", "/v1/connect/ca/configuration")["Config"]
    assert (cfg["LeafCertTTL"], cfg["RotationPeriod"]) == ("48h", "1440m")


# ----------------------------------------------------------------------------- 12: operator

def test_12_raft_configuration_index_is_zero(c: Any) -> None:
    conf = c.operator.raft_config()
    assert conf["Index"] == 0 and len(conf["Servers"]) == 1


def test_12_autopilot_configuration_can_be_written(dev: AgentProcess, c: Any) -> None:
    assert c.operator.update_autopilot_configuration(cleanup_dead_servers=False,
                                                     last_contact_threshold="300ms") is True
    got = c.operator.autopilot_configuration()
    assert (got["CleanupDeadServers"], got["LastContactThreshold"]) == (False, "300ms")
    assert got["ModifyIndex"] > 0
    stale = got["ModifyIndex"] - 1
    assert dev.request("PUT", f"/v1/operator/autopilot/configuration?cas={stale}", {"MinQuorum": 3}) == (
        200, b"false")
    assert c.operator.autopilot_configuration()["MinQuorum"] == 0
    assert dev.request("PUT", f"/v1/operator/autopilot/configuration?cas={got['ModifyIndex']}",
                       {"MinQuorum": 3}) == (200, b"true")
    assert c.operator.autopilot_configuration()["MinQuorum"] == 3
    status, raw = dev.request("PUT", "/v1/operator/autopilot/configuration", {"MinQuorum": -1})
    assert status == 400 and b"MinQuorum" in raw


def test_12_usage_carries_query_meta(dev: AgentProcess) -> None:
    usage = dev.json("GET", "/v1/operator/usage")
    assert {"Index", "LastContact", "KnownLeader", "ConsistencyLevel", "NotModified", "Backend",
            "ResultsFilteredByACLs"} <= set(usage)
    assert usage["KnownLeader"] is True and usage["Index"] > 0 and "dc1" in usage["Usage"]


# ----------------------------------------------------------------------------- 13: ?peer=

def test_13_an_unknown_peer_has_no_data(dev: AgentProcess, c: Any) -> None:
    assert c.agent.service.register("compat-peered", port=90, check=consul.Check.ttl("60s")) is True
    eventually(lambda: c.health.checks("compat-peered")[1], 10, "anti-entropy to register it")
    for path, empty in [("/v1/health/service/compat-peered", []), ("/v1/catalog/service/compat-peered", []),
                        ("/v1/catalog/services", {}), ("/v1/health/checks/compat-peered", [])]:
        assert dev.json("GET", path) != empty, path  # local data exists...
        assert dev.json("GET", f"{path}?peer=not-a-peer") == empty, path  # ...but not in an unknown peer


# ----------------------------------------------------------------------------- 6, 8, 11: servers

def server_names(mesh: Mesh) -> set[str]:
    return {s.name for s in mesh.servers}


def test_6_members_wan_lists_the_servers_by_node_and_datacenter(mesh: Mesh) -> None:
    want = {f"{n}.dc1" for n in server_names(mesh)}
    for s in mesh.servers:
        wan = consul.Consul(host=s.host, port=s.http_port).agent.members(wan=True)
        assert {m["Name"] for m in wan} == want
        assert all(m["Tags"]["role"] == "consul" for m in wan)
    assert mesh.clients[0].try_json("/v1/agent/members?wan=1") == []  # a client has no WAN pool


def test_8_every_server_carries_the_consul_service(mesh: Mesh) -> None:
    c = consul.Consul(host=mesh.clients[0].host, port=mesh.clients[0].http_port)

    def consul_nodes() -> dict[str, int]:
        return {r["Node"]: r["ServicePort"] for r in c.catalog.service("consul")[1]}
    eventually(lambda: set(consul_nodes()) == server_names(mesh), 15, "the consul service on every server")
    assert consul_nodes() == {s.name: s.rpc_port for s in mesh.servers}
    assert mesh.clients[0].name not in consul_nodes()


def test_8_catalog_deregister_honours_the_datacenter(mesh: Mesh) -> None:
    s = mesh.servers[0]
    s.json("PUT", "/v1/catalog/register", {"Node": "compat-ext", "Address": "10.1.1.1"})
    status, raw = s.request("PUT", "/v1/catalog/deregister", {"Node": "compat-ext", "Datacenter": "dc-other"})
    assert status == 500 and b"dc-other" in raw
    assert s.try_json("/v1/catalog/node/compat-ext") is not None  # nothing removed in dc1
    assert s.json("PUT", "/v1/catalog/deregister", {"Node": "compat-ext", "Datacenter": "dc1"}) is True
    assert s.try_json("/v1/catalog/node/compat-ext") is None


def test_8_catalog_services_filter_matches_instances(mesh: Mesh) -> None:
    s = mesh.servers[0]
    s.json("PUT", "/v1/catalog/register", {"Node": "compat-f1", "Address": "10.1.1.2",
                                           "Service": {"Service": "compat-flt", "Tags": ["blue"], "Meta": {"v": "1"}}})
    s.json("PUT", "/v1/catalog/register", {"Node": "compat-f2", "Address": "10.1.1.3",
                                           "Service": {"Service": "compat-flt", "Tags": ["green"], "Meta": {"v": "2"}}})
    c = consul.Consul(host=s.host, port=s.http_port)
    _, all_services = c.catalog.services()
    assert sorted(all_services["compat-flt"]) == ["blue", "green"]
    _, only = c.catalog.services(filter_expr='ServiceMeta.v == "2"')
    assert only == {"compat-flt": ["green"]}  # tags of the matching instance only
    q = urllib.parse.quote('ServiceTags contains "nothing"')
    assert s.json("GET", f"/v1/catalog/services?filter={q}") == {}


def test_11_coordinate_datacenters_has_every_server_from_start_up(mesh: Mesh) -> None:
    for a in (*mesh.servers, mesh.clients[0]):
        (dc,) = a.json("GET", "/v1/coordinate/datacenters")
        assert dc["Datacenter"] == "dc1"
        assert {x["Node"] for x in dc["Coordinates"]} == {f"{n}.dc1" for n in server_names(mesh)}
        assert all(len(x["Coord"]["Vec"]) == 8 for x in dc["Coordinates"])


# ----------------------------------------------------------------------------- defect 1: authorize

def authorize(a: MeshAgent, source: str, target: str, trust_domain: str) -> dict[str, Any]:
    uri = f"spiffe://{trust_domain}/ns/default/dc/dc1/svc/{source}"
    return a.json("POST", "/v1/agent/connect/authorize", {"Target": target, "ClientCertURI": uri})  # type: ignore[no-any-return]


def test_a_client_agent_authorizes_from_the_intentions(mesh: Mesh) -> None:
    server, client = mesh.servers[0], mesh.clients[0]
    td = server.json("GET", "/v1/connect/ca/roots")["TrustDomain"]
    assert server.json("PUT", "/v1/connect/intentions/exact?source=compat-web&destination=compat-db",
                       {"Action": "deny"}) is True
    denied = authorize(client, "compat-web", "compat-db", td)
    assert denied["Authorized"] is False and "Matched L4 intention" in denied["Reason"], denied
    assert authorize(server, "compat-web", "compat-db", td) == denied  # client and server agents alike
    # no intention for this pair: the default (ACLs disabled: allow)
    assert authorize(client, "compat-other", "compat-db", td) == {
        "Authorized": True, "Reason": "ACLs disabled, access is allowed by default"}
    # the client's view is a blocking watch: a change reaches it without a restart
    assert server.json("PUT", "/v1/connect/intentions/exact?source=compat-web&destination=compat-db",
                       {"Action": "allow"}) is True
    eventually(lambda: authorize(client, "compat-web", "compat-db", td)["Authorized"] is True, 10,
               "the client to see the intention change")
    # a mesh-wide deny default reaches the client too
    assert server.json("PUT", "/v1/config", {"Kind": "mesh", "Name": "mesh",
                                             "DefaultIntentionPolicy": "deny"}) is True
    eventually(lambda: authorize(client, "compat-other", "compat-db", td)["Authorized"] is False, 10,
               "the client to see the mesh default")
    assert server.request("DELETE", "/v1/config/mesh/mesh")[0] == 200


# ----------------------------------------------------------------------------- defect 5: errors

BAD_REQUESTS = [
    ("GET", "/v1/acl/policies", None),                                  # 401 ACL support disabled
    ("GET", "/v1/catalog/nodes?filter=" + urllib.parse.quote("Node =="), None),  # 400 filter
    ("PUT", "/v1/session/create", {"Node": "compat-nowhere"}),          # 500 missing node
    ("PUT", "/v1/kv/compat/err?acquire=not-a-session", "x"),             # 500 session lookup
    ("DELETE", "/v1/operator/raft/peer?id=compat-nope", None),          # 404 not a peer
    ("PUT", "/v1/connect/intentions/exact?source=a&destination=b", {"Action": "maybe"}),  # 400 invalid
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_client_and_server_agents_answer_bad_requests_alike(mesh: Mesh, method: str, path: str,
                                                            body: Any) -> None:
    raw_body = body.encode() if isinstance(body, str) else body
    answers = {a.name: a.request(method, path, raw_body) for a in (*mesh.servers, mesh.clients[0])}
    assert len(set(answers.values())) == 1, answers
    status, _ = next(iter(answers.values()))
    assert status >= 400


def test_the_statuses_of_bad_requests_are_consuls(mesh: Mesh) -> None:
    client = mesh.clients[0]
    assert client.request("GET", "/v1/acl/policies") == (401, b"ACL support disabled")
    assert client.request("DELETE", "/v1/operator/raft/peer?id=compat-nope")[0] == 404


# ----------------------------------------------------------------------------- with ACLs enabled

ACL_HCL = (f'acl {{ enabled = true\n default_policy = "allow"\n'
           f' tokens {{ initial_management = "{MGMT}"\n agent = "{MGMT}" }} }}')


@pytest.fixture(scope="module")
def acl_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("compat-acl-mesh"), servers=1, clients=1, distinct_hosts=False,
             extra=("-hcl", ACL_HCL))
    try:
        m.start()
        eventually(lambda: m.servers[0].request("GET", "/v1/acl/token/self",
                                                headers={"X-Consul-Token": MGMT})[0] == 200, 15, "ACL bootstrap")
        yield m
    finally:
        m.stop()


def _jwt_method(server: MeshAgent) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    status, raw = server.request("PUT", "/v1/acl/auth-method", {
        "Name": "compat-jwt", "Type": "jwt", "Config": {"JWTValidationPubKeys": [pem], "BoundAudiences": ["x"]}},
        headers={"X-Consul-Token": MGMT})
    assert status == 200, raw


def test_acl_errors_answer_alike_on_client_and_server(acl_mesh: Mesh) -> None:
    """Policy-parse (400), JWT (403), permission (403) and missing-ACL (403) errors: the server
    raises them, the client agent gets them over RPC and must answer its caller identically."""
    server, client = acl_mesh.servers[0], acl_mesh.clients[0]
    _jwt_method(server)
    h = {"X-Consul-Token": MGMT}
    pol = server.json("PUT", "/v1/acl/policy", {"Name": "compat-no-acl", "Rules": 'acl = "deny"'}, headers=h)
    weak = server.json("PUT", "/v1/acl/token", {"Policies": [{"ID": pol["ID"]}]}, headers=h)["SecretID"]
    cases = [
        ("PUT", "/v1/acl/policy", {"Name": "compat-bad", "Rules": 'key_prefix "" { policy = "sideways" }'}, MGMT),
        ("POST", "/v1/acl/login", {"AuthMethod": "compat-jwt", "BearerToken": "not.a.jwt"}, None),
        ("GET", "/v1/acl/tokens", None, weak),  # the policy denies acl:read
        ("GET", "/v1/acl/token/0badc0de-0000-4000-8000-000000000009", None, MGMT),
    ]
    seen = []
    for method, path, body, token in cases:
        headers = {"X-Consul-Token": token} if token else {}
        answers = {a.name: a.request(method, path, body, headers=headers) for a in (server, client)}
        assert answers[server.name] == answers[client.name], (path, answers)
        seen.append(answers[client.name][0])
    assert seen[:3] == [400, 403, 403], seen


def test_authorize_on_a_client_with_acls_uses_the_acl_default(acl_mesh: Mesh) -> None:
    server, client = acl_mesh.servers[0], acl_mesh.clients[0]
    td = server.json("GET", "/v1/connect/ca/roots", headers={"X-Consul-Token": MGMT})["TrustDomain"]
    h = {"X-Consul-Token": MGMT}
    uri = f"spiffe://{td}/ns/default/dc/dc1/svc/compat-web"
    got = client.json("POST", "/v1/agent/connect/authorize", {"Target": "compat-db", "ClientCertURI": uri}, headers=h)
    assert got == {"Authorized": True, "Reason": "Default behavior configured by ACLs"}  # ACL default: allow
    assert server.json("PUT", "/v1/connect/intentions/exact?source=compat-web&destination=compat-db",
                       {"Action": "deny"}, headers=h) is True
    eventually(lambda: client.json("POST", "/v1/agent/connect/authorize",
                                   {"Target": "compat-db", "ClientCertURI": uri}, headers=h)["Authorized"] is False,
               10, "the client to see the deny intention")
