"""The authorization matrix (issue 18): for every write endpoint of the HTTP API and every field
of its request that names a service, node, key, session, intention or proxy destination, a token
holding every permission the request needs *but that one* is refused with 403 naming it, and
nothing changes; the token holding all of them succeeds (so each refusal is due to the one
missing permission, not to something else).

Runs against a real ``lictor agent -dev`` with ``default_policy = "deny"``. ``test_every_write_
route_is_in_the_matrix`` keeps the table complete: a new write route fails it until it has a row
here (or an entry in ``NO_NAMED_RESOURCE`` saying why no field of it names a resource)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import AgentProcess
from .test_acl import AGENT_TOKEN, MGMT, call, req, start_acl_agent, token_with

pytestmark = pytest.mark.integration

NODE = "lictor-test"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = start_acl_agent(tmp_path_factory.mktemp("aclmatrix"))
    p = call(a, "PUT", "/v1/acl/policy", {"Name": "agent", "Rules": 'node_prefix "" { policy = "write" }\n'
                                           'service_prefix "" { policy = "write" }'})
    call(a, "PUT", "/v1/acl/token", {"SecretID": AGENT_TOKEN, "Policies": [{"ID": p["ID"]}]})
    yield a
    a.stop()


Setup = Callable[[AgentProcess], dict[str, str]]


@dataclass
class Case:
    id: str
    route: tuple[str, str]          # (method, path template) as registered in ROUTES
    path: str                       # formatted with what setup returns
    body: Any
    grants: dict[str, str]          # the field it covers -> the one rule granting its permission
    state: tuple[str, ...]          # GET paths (management token) that must not change on refusal
    setup: list[tuple[str, str, Any]] = field(default_factory=list)
    setup_fn: Setup | None = None
    base: str = ""                  # rules every token gets (reads the request also needs)
    run_success: bool = True        # False: succeeding would stop or disturb the agent
    after: list[tuple[str, str, Any]] = field(default_factory=list)


def _svc(name: str, sid: str = "", port: int = 1, **extra: Any) -> tuple[str, str, Any]:
    return ("PUT", "/v1/agent/service/register", {"Name": name, "ID": sid or name, "Port": port, **extra})


def _cat(node: str, svc: dict[str, Any] | None = None, **extra: Any) -> tuple[str, str, Any]:
    body: dict[str, Any] = {"Node": node, "Address": "10.9.9.9", **extra}
    if svc is not None:
        body["Service"] = svc
    return ("PUT", "/v1/catalog/register", body)


def _session(a: AgentProcess) -> dict[str, str]:
    return {"sid": call(a, "PUT", "/v1/session/create", {"Node": NODE, "Checks": []})["ID"]}




def _query(name: str) -> Setup:
    def make(a: AgentProcess) -> dict[str, str]:
        return {"qid": call(a, "POST", "/v1/query", {"Name": name, "Service": {"Service": "mpq-svc"}})["ID"]}
    return make


def query_w(name: str) -> str:
    return f'query "{name}" {{ policy = "write" }}'


def svc_w(name: str) -> str:
    return f'service "{name}" {{ policy = "write" }}'


def node_w(name: str) -> str:
    return f'node "{name}" {{ policy = "write" }}'


AGENT_SVCS = ("/v1/agent/services", "/v1/agent/checks")
ISTIO_DOC = (b"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n"
             b"  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n")
ISTIO_STATE = ("/v1/istio", "/v1/config/mesh")
MESH_W = 'mesh = "write"'
# what a token lacking mesh:write still has: every service and its intentions (still refused)
ALL_SERVICES_W = 'service_prefix "" {\n  policy = "write"\n  intentions = "write"\n}'


CASES: list[Case] = [
    # ----- /v1/agent: local services and checks -----
    Case("agent-service-name", ("PUT", "/v1/agent/service/register"), "/v1/agent/service/register",
         {"Name": "ma-web", "Port": 1}, {"Name": svc_w("ma-web")}, AGENT_SVCS),
    Case("agent-sidecar-name", ("PUT", "/v1/agent/service/register"), "/v1/agent/service/register",
         {"Name": "mb-web", "Port": 1, "Connect": {"SidecarService": {"Name": "mb-side"}}},
         {"Name": svc_w("mb-web"), "Connect.SidecarService.Name": svc_w("mb-side")}, AGENT_SVCS),
    Case("agent-proxy-destination", ("PUT", "/v1/agent/service/register"), "/v1/agent/service/register",
         {"Name": "mc-proxy", "Kind": "connect-proxy", "Port": 21001, "proxy": {"destination_service_name": "mc-db"}},
         {"Name": svc_w("mc-proxy"), "proxy.destination_service_name": svc_w("mc-db")}, AGENT_SVCS),
    Case("agent-proxy-destination-id", ("PUT", "/v1/agent/service/register"), "/v1/agent/service/register",
         {"Name": "mq-proxy", "Kind": "connect-proxy", "Port": 21002,
          "Proxy": {"DestinationServiceName": "mq-proxy-app", "DestinationServiceID": "mq-db-id"}},
         {"Name": svc_w("mq-proxy"), "Proxy.DestinationServiceName": svc_w("mq-proxy-app"),
          "Proxy.DestinationServiceID (of mq-db)": svc_w("mq-db")}, AGENT_SVCS, setup=[_svc("mq-db", "mq-db-id")]),
    Case("agent-existing-service-id", ("PUT", "/v1/agent/service/register"), "/v1/agent/service/register",
         {"Name": "md-web", "ID": "md-id", "Port": 2}, {"Name": svc_w("md-web"), "ID (held by md-db)": svc_w("md-db")},
         AGENT_SVCS, setup=[_svc("md-db", "md-id")]),
    Case("agent-service-check-id", ("PUT", "/v1/agent/service/register"), "/v1/agent/service/register",
         {"Name": "me-web", "Port": 1, "Check": {"CheckID": "me-chk", "TTL": "30s"}},
         {"Name": svc_w("me-web"), "Check.CheckID (held by me-db)": svc_w("me-db")}, AGENT_SVCS,
         setup=[_svc("me-db", Check={"CheckID": "me-chk", "TTL": "30s"})]),
    Case("agent-service-check-over-node-check", ("PUT", "/v1/agent/service/register"), "/v1/agent/service/register",
         {"Name": "mr-web", "Port": 1, "Check": {"CheckID": "mr-node-chk", "TTL": "30s"}},
         {"Name": svc_w("mr-web"), "Check.CheckID (a node check)": node_w(NODE)}, AGENT_SVCS,
         setup=[("PUT", "/v1/agent/check/register", {"Name": "mr-node-chk", "CheckID": "mr-node-chk", "TTL": "30s"})],
         after=[("PUT", "/v1/agent/service/deregister/mr-web", None)]),
    Case("agent-service-deregister", ("PUT", "/v1/agent/service/deregister/{id}"),
         "/v1/agent/service/deregister/mf-id", None, {"{id} (of mf-db)": svc_w("mf-db")}, AGENT_SVCS,
         setup=[_svc("mf-db", "mf-id")]),
    Case("agent-service-maintenance", ("PUT", "/v1/agent/service/maintenance/{id}"),
         "/v1/agent/service/maintenance/mg-id?enable=true", None, {"{id} (of mg-db)": svc_w("mg-db")}, AGENT_SVCS,
         setup=[_svc("mg-db", "mg-id")]),
    Case("agent-node-maintenance", ("PUT", "/v1/agent/maintenance"), "/v1/agent/maintenance?enable=true", None,
         {"this node": node_w(NODE)}, AGENT_SVCS, after=[("PUT", "/v1/agent/maintenance?enable=false", None)]),
    Case("agent-node-check", ("PUT", "/v1/agent/check/register"), "/v1/agent/check/register",
         {"Name": "mh", "CheckID": "mh", "TTL": "30s"}, {"this node": node_w(NODE)}, AGENT_SVCS),
    Case("agent-check-service-id", ("PUT", "/v1/agent/check/register"), "/v1/agent/check/register",
         {"Name": "mi", "CheckID": "mi", "service_id": "mi-id", "TTL": "30s"},
         {"service_id (of mi-db)": svc_w("mi-db")}, AGENT_SVCS, setup=[_svc("mi-db", "mi-id")]),
    Case("agent-check-replaces-service-check", ("PUT", "/v1/agent/check/register"), "/v1/agent/check/register",
         {"Name": "mj", "CheckID": "mj-chk", "TTL": "30s"},
         {"this node": node_w(NODE), "CheckID (held by mj-db)": svc_w("mj-db")}, AGENT_SVCS,
         setup=[_svc("mj-db", Check={"CheckID": "mj-chk", "TTL": "30s"})]),
    *[Case(f"agent-check-{verb}", ("PUT", f"/v1/agent/check/{verb}/{{id}}"), f"/v1/agent/check/{verb}/mk-{verb}",
           {"Status": "critical"} if verb == "update" else None, {"{id} (of the service)": svc_w(f"mk-db-{verb}")},
           AGENT_SVCS, setup=[_svc(f"mk-db-{verb}", Check={"CheckID": f"mk-{verb}", "TTL": "30s",
                                                             "Status": "passing"})])
      for verb in ("deregister", "pass", "warn", "fail", "update")],
    Case("agent-connect-authorize", ("POST", "/v1/agent/connect/authorize"), "/v1/agent/connect/authorize",
         {"Target": "ml-db", "ClientCertURI": "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/ml-web"},
         {"Target": svc_w("ml-db")}, ()),
    Case("agent-reload", ("PUT", "/v1/agent/reload"), "/v1/agent/reload", None,
         {"this agent": f'agent "{NODE}" {{ policy = "write" }}'}, AGENT_SVCS),
    Case("agent-leave", ("PUT", "/v1/agent/leave"), "/v1/agent/leave", None,
         {"this agent": f'agent "{NODE}" {{ policy = "write" }}'}, ("/v1/agent/members",), run_success=False),
    Case("agent-join", ("PUT", "/v1/agent/join/{address}"), "/v1/agent/join/127.0.0.1:1", None,
         {"this agent": f'agent "{NODE}" {{ policy = "write" }}'}, ("/v1/agent/members",), run_success=False),
    Case("agent-force-leave", ("PUT", "/v1/agent/force-leave/{node}"), "/v1/agent/force-leave/mm-gone", None,
         {"operator": 'operator = "write"'}, ("/v1/agent/members",), run_success=False),
    # ----- /v1/catalog -----
    Case("catalog-new-node-service-check", ("PUT", "/v1/catalog/register"), "/v1/catalog/register",
         {"Node": "mn-node", "Address": "10.0.0.1", "Service": {"Service": "mn-svc", "Port": 1},
          "Check": {"CheckID": "mn-chk", "Name": "mn-chk", "ServiceID": "mn-svc"}},
         {"Node": node_w("mn-node"), "Service.Service": svc_w("mn-svc")}, ("/v1/catalog/node/mn-node",)),
    Case("catalog-service-id-held-by-another", ("PUT", "/v1/catalog/register"), "/v1/catalog/register",
         {"Node": "mo-node", "Address": "10.9.9.9", "Service": {"Service": "mo-web", "ID": "mo-id", "Port": 2}},
         {"Service.Service": svc_w("mo-web"), "Service.ID (held by mo-db)": svc_w("mo-db")},
         ("/v1/catalog/node/mo-node",), setup=[_cat("mo-node", {"Service": "mo-db", "ID": "mo-id", "Port": 1})]),
    Case("catalog-proxy-destination", ("PUT", "/v1/catalog/register"), "/v1/catalog/register",
         {"Node": "mp-node", "Address": "10.9.9.9",
          "Service": {"Service": "mp-proxy", "Kind": "connect-proxy", "Port": 1,
                      "Proxy": {"destination_service_name": "mp-db"}}},
         {"Service.Service": svc_w("mp-proxy"), "Service.Proxy.destination_service_name": svc_w("mp-db")},
         ("/v1/catalog/node/mp-node",), setup=[_cat("mp-node")]),
    Case("catalog-node-meta", ("PUT", "/v1/catalog/register"), "/v1/catalog/register",
         {"Node": "mq-node", "Address": "10.9.9.9", "NodeMeta": {"team": "b"}, "Service": {"Service": "mq-svc"}},
         {"NodeMeta (changes the node)": node_w("mq-node"), "Service.Service": svc_w("mq-svc")},
         ("/v1/catalog/node/mq-node",), setup=[_cat("mq-node", NodeMeta={"team": "a"})]),
    Case("catalog-check-of-another-service", ("PUT", "/v1/catalog/register"), "/v1/catalog/register",
         {"Node": "mr-node", "Address": "10.9.9.9", "Check": {"CheckID": "mr-chk", "Name": "x", "ServiceID": "mr-id"}},
         {"Check.ServiceID (of mr-db)": svc_w("mr-db")}, ("/v1/catalog/node/mr-node", "/v1/health/node/mr-node"),
         setup=[_cat("mr-node", {"Service": "mr-db", "ID": "mr-id"})]),
    Case("catalog-deregister-service", ("PUT", "/v1/catalog/deregister"), "/v1/catalog/deregister",
         {"Node": "ms-node", "ServiceID": "ms-id"}, {"ServiceID (of ms-db)": svc_w("ms-db")},
         ("/v1/catalog/node/ms-node",), setup=[_cat("ms-node", {"Service": "ms-db", "ID": "ms-id"})]),
    Case("catalog-deregister-node", ("PUT", "/v1/catalog/deregister"), "/v1/catalog/deregister",
         {"Node": "mt-node"}, {"Node": node_w("mt-node")}, ("/v1/catalog/node/mt-node",), setup=[_cat("mt-node")]),
    Case("catalog-deregister-service-check", ("PUT", "/v1/catalog/deregister"), "/v1/catalog/deregister",
         {"Node": "mu-node", "CheckID": "mu-chk"}, {"CheckID (of mu-db)": svc_w("mu-db")},
         ("/v1/health/node/mu-node",),
         setup=[_cat("mu-node", {"Service": "mu-db", "ID": "mu-id"},
                     Check={"CheckID": "mu-chk", "Name": "mu-chk", "ServiceID": "mu-id"})]),
    Case("coordinate-update", ("PUT", "/v1/coordinate/update"), "/v1/coordinate/update",
         {"Node": "mv-node", "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}},
         {"Node": node_w("mv-node")}, ("/v1/coordinate/node/mv-node",), setup=[_cat("mv-node")]),
    # ----- prepared queries (issue 15): the name stored and, on update/delete, the name held -----
    Case("query-create", ("POST", "/v1/query"), "/v1/query", {"Name": "mpq-a", "Service": {"Service": "mpq-svc"}},
         {"Name": query_w("mpq-a")}, ("/v1/query",)),
    Case("query-update", ("PUT", "/v1/query/{id}"), "/v1/query/{qid}",
         {"Name": "mpq-b2", "Service": {"Service": "mpq-svc"}},
         {"Name": query_w("mpq-b2"), "{id} (held by mpq-b)": query_w("mpq-b")}, ("/v1/query",),
         setup_fn=_query("mpq-b")),
    Case("query-delete", ("DELETE", "/v1/query/{id}"), "/v1/query/{qid}", None,
         {"{id} (held by mpq-c)": query_w("mpq-c")}, ("/v1/query",), setup_fn=_query("mpq-c")),
    # ----- Istio resources (issue 14): they translate into entries for many services at once, so
    # the gate is mesh:write, stricter than any one service's permission -----
    Case("istio-apply", ("PUT", "/v1/istio/apply"), "/v1/istio/apply", ISTIO_DOC, {"(mesh-wide)": MESH_W},
         ISTIO_STATE, base=ALL_SERVICES_W, after=[("DELETE", "/v1/istio/PeerAuthentication/default?namespace=istio-system", None)]),
    Case("istio-delete", ("DELETE", "/v1/istio/{kind}/{name}"), "/v1/istio/PeerAuthentication/default?namespace=istio-system", None,
         {"(mesh-wide)": MESH_W}, ISTIO_STATE, base=ALL_SERVICES_W, setup=[("PUT", "/v1/istio/apply", ISTIO_DOC)]),
    Case("istio-delete-documents", ("PUT", "/v1/istio/delete"), "/v1/istio/delete", ISTIO_DOC,
         {"(mesh-wide)": MESH_W}, ISTIO_STATE, base=ALL_SERVICES_W, setup=[("PUT", "/v1/istio/apply", ISTIO_DOC)]),
    # ----- events, KV, sessions -----
    Case("event-fire", ("PUT", "/v1/event/fire/{name}"), "/v1/event/fire/mw-ev", b"",
         {"{name}": 'event "mw-ev" { policy = "write" }'}, ("/v1/event/list?name=mw-ev",)),
    Case("kv-put", ("PUT", "/v1/kv/{key:.*}"), "/v1/kv/mx/a", b"v", {"{key}": 'key "mx/a" { policy = "write" }'},
         ("/v1/kv/mx/?recurse",)),
    Case("kv-delete", ("DELETE", "/v1/kv/{key:.*}"), "/v1/kv/my/a", None, {"{key}": 'key "my/a" { policy = "write" }'},
         ("/v1/kv/my/?recurse",), setup=[("PUT", "/v1/kv/my/a", "v")]),
    Case("kv-delete-recurse", ("DELETE", "/v1/kv/{key:.*}"), "/v1/kv/mz/a?recurse", None,
         {"{key} as a prefix": 'key_prefix "mz/a" { policy = "write" }'}, ("/v1/kv/mz/?recurse",),
         setup=[("PUT", "/v1/kv/mz/a", "v"), ("PUT", "/v1/kv/mz/ab", "v"), ("PUT", "/v1/kv/mz/a/c", "v")]),
    Case("session-create", ("PUT", "/v1/session/create"), "/v1/session/create", {"Node": NODE, "Checks": []},
         {"Node": f'session "{NODE}" {{ policy = "write" }}'}, ("/v1/session/node/" + NODE,)),
    Case("session-destroy", ("PUT", "/v1/session/destroy/{id}"), "/v1/session/destroy/{sid}", None,
         {"{id} (on this node)": f'session "{NODE}" {{ policy = "write" }}'}, ("/v1/session/node/" + NODE,),
         setup_fn=_session),
    Case("session-renew", ("PUT", "/v1/session/renew/{id}"), "/v1/session/renew/{sid}", None,
         {"{id} (on this node)": f'session "{NODE}" {{ policy = "write" }}'}, ("/v1/session/node/" + NODE,),
         setup_fn=_session),
    # ----- txn -----
    Case("txn-kv-set", ("PUT", "/v1/txn"), "/v1/txn", [{"KV": {"Verb": "set", "Key": "na/t", "Value": "dg=="}}],
         {"KV.Key": 'key "na/t" { policy = "write" }'}, ("/v1/kv/na/?recurse",)),
    Case("txn-kv-delete-tree", ("PUT", "/v1/txn"), "/v1/txn", [{"KV": {"Verb": "delete-tree", "Key": "nb/a"}}],
         {"KV.Key as a prefix": 'key_prefix "nb/a" { policy = "write" }'}, ("/v1/kv/nb/?recurse",),
         setup=[("PUT", "/v1/kv/nb/a", "v"), ("PUT", "/v1/kv/nb/ab", "v")]),
    Case("txn-node-set", ("PUT", "/v1/txn"), "/v1/txn",
         [{"Node": {"Verb": "set", "Node": {"Node": "nc-node", "Address": "10.0.0.2"}}}],
         {"Node.Node": node_w("nc-node")}, ("/v1/catalog/node/nc-node",)),
    Case("txn-service-set-over-another-id", ("PUT", "/v1/txn"), "/v1/txn",
         [{"Service": {"Verb": "set", "Node": "nd-node", "Service": {"ID": "nd-id", "Service": "nd-web", "Port": 2}}}],
         {"Service.Service": svc_w("nd-web"), "Service.ID (held by nd-db)": svc_w("nd-db")},
         ("/v1/catalog/node/nd-node",), setup=[_cat("nd-node", {"Service": "nd-db", "ID": "nd-id", "Port": 1})]),
    Case("txn-service-delete", ("PUT", "/v1/txn"), "/v1/txn",
         [{"Service": {"Verb": "delete", "Node": "ne-node", "Service": {"ID": "ne-id", "Service": "ne-web"}}}],
         {"Service.ID (of ne-db)": svc_w("ne-db")}, ("/v1/catalog/node/ne-node",),
         setup=[_cat("ne-node", {"Service": "ne-db", "ID": "ne-id"})]),
    Case("txn-service-proxy-destination", ("PUT", "/v1/txn"), "/v1/txn",
         [{"Service": {"Verb": "set", "Node": "nf-node",
                       "Service": {"Service": "nf-proxy", "Kind": "connect-proxy", "Port": 1,
                                   "Proxy": {"DestinationServiceName": "nf-db"}}}}],
         {"Service.Service": svc_w("nf-proxy"), "Service.Proxy.DestinationServiceName": svc_w("nf-db")},
         ("/v1/catalog/node/nf-node",), setup=[_cat("nf-node")]),
    Case("txn-check-set-service", ("PUT", "/v1/txn"), "/v1/txn",
         [{"Check": {"Verb": "set", "Check": {"Node": "ng-node", "CheckID": "ng-chk", "Name": "ng",
                                               "ServiceID": "ng-id"}}}],
         {"Check.ServiceID (of ng-db)": svc_w("ng-db")}, ("/v1/health/node/ng-node",),
         setup=[_cat("ng-node", {"Service": "ng-db", "ID": "ng-id"})]),
    Case("txn-check-delete-service-check", ("PUT", "/v1/txn"), "/v1/txn",
         [{"Check": {"Verb": "delete", "Check": {"Node": "nh-node", "CheckID": "nh-chk"}}}],
         {"Check.CheckID (of nh-db)": svc_w("nh-db")}, ("/v1/health/node/nh-node",),
         setup=[_cat("nh-node", {"Service": "nh-db", "ID": "nh-id"},
                     Check={"CheckID": "nh-chk", "Name": "nh-chk", "ServiceID": "nh-id"})]),
    # ----- config entries and intentions -----
    Case("config-service-defaults", ("PUT", "/v1/config"), "/v1/config",
         {"Kind": "service-defaults", "Name": "ni-svc", "Protocol": "http"}, {"Name": svc_w("ni-svc")},
         ("/v1/config/service-defaults",)),
    Case("config-proxy-defaults", ("PUT", "/v1/config"), "/v1/config",
         {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}}, {"mesh": 'mesh = "write"'},
         ("/v1/config/proxy-defaults",)),
    Case("config-service-intentions", ("PUT", "/v1/config"), "/v1/config",
         {"Kind": "service-intentions", "Name": "nj-db", "Sources": [{"Name": "nj-web", "Action": "allow"}]},
         {"Name": 'service "nj-db" { intentions = "write" }'}, ("/v1/config/service-intentions",)),
    Case("config-router-destinations", ("PUT", "/v1/config"), "/v1/config",
         {"kind": "service-router", "name": "no-web",
          "routes": [{"match": {"http": {"path_prefix": "/admin"}}, "destination": {"service": "no-db"}}]},
         {"name": svc_w("no-web"), "routes[].destination.service": 'service "no-db" { policy = "read" }'},
         ("/v1/config/service-router",),
         setup=[("PUT", "/v1/config", {"Kind": "service-defaults", "Name": n, "Protocol": "http"}) for n in
                ("no-web", "no-db")]),
    Case("config-terminating-gateway", ("PUT", "/v1/config"), "/v1/config",
         {"Kind": "terminating-gateway", "Name": "np-gw", "Services": [{"Name": "np-db"}]},
         {"mesh (the gateway decides what it fronts)": 'mesh = "write"'}, ("/v1/config/terminating-gateway",),
         base=svc_w("np-gw")),
    Case("config-delete", ("DELETE", "/v1/config/{kind}/{name}"), "/v1/config/service-defaults/nk-svc", None,
         {"{name}": svc_w("nk-svc")}, ("/v1/config/service-defaults",),
         setup=[("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "nk-svc", "Protocol": "http"})]),
    Case("intention-exact-put", ("PUT", "/v1/connect/intentions/exact"),
         "/v1/connect/intentions/exact?source=nl-web&destination=nl-db", {"Action": "allow"},
         {"destination": 'service "nl-db" { intentions = "write" }'}, ("/v1/connect/intentions",)),
    Case("intention-exact-delete", ("DELETE", "/v1/connect/intentions/exact"),
         "/v1/connect/intentions/exact?source=nm-web&destination=nm-db", None,
         {"destination": 'service "nm-db" { intentions = "write" }'}, ("/v1/connect/intentions",),
         setup=[("PUT", "/v1/connect/intentions/exact?source=nm-web&destination=nm-db", {"Action": "allow"})]),
    Case("discovery-chain-post", ("POST", "/v1/discovery-chain/{service}"), "/v1/discovery-chain/nn-svc", {},
         {"{service}": 'service "nn-svc" { policy = "read" }'}, ()),
]

# Write routes no field of which names a service, node, key, session, intention or proxy
# destination: each needs one fixed permission (operator, keyring, acl) checked elsewhere.
NO_NAMED_RESOURCE: dict[tuple[str, str], str] = {
    ("DELETE", "/v1/operator/raft/peer"): "operator:write (test_acl.py covers operator routes)",
    ("POST", "/v1/operator/raft/transfer-leader"): "operator:write",
    ("PUT", "/v1/snapshot"): "acl:write: a snapshot holds every secret",
    ("PUT", "/v1/connect/ca/configuration"): "operator:write",
    ("PUT", "/v1/operator/autopilot/configuration"): "operator:write",
    ("POST", "/v1/operator/keyring"): "keyring:write", ("PUT", "/v1/operator/keyring"): "keyring:write",
    ("DELETE", "/v1/operator/keyring"): "keyring:write",
    ("PUT", "/v1/agent/token/{type}"): "acl:write (test_acl.py: escalation attempts)",
    ("PUT", "/v1/acl/bootstrap"): "no token: allowed once", ("POST", "/v1/acl/login"): "authenticates itself",
    ("POST", "/v1/acl/logout"): "the token itself",
    ("POST", "/v1/acl/templated-policy/preview/{name:.+}"): "acl:read, no write",
}
for _kind in ("token", "policy", "role", "auth-method", "binding-rule"):
    _seg = "{name}" if _kind == "auth-method" else "{id}"
    NO_NAMED_RESOURCE[("PUT", f"/v1/acl/{_kind}")] = "acl:write (test_acl.py: escalation attempts)"
    NO_NAMED_RESOURCE[("PUT", f"/v1/acl/{_kind}/{_seg}")] = "acl:write"
    NO_NAMED_RESOURCE[("DELETE", f"/v1/acl/{_kind}/{_seg}")] = "acl:write"
NO_NAMED_RESOURCE[("PUT", "/v1/acl/token/{id}/clone")] = "acl:write"


def test_every_write_route_is_in_the_matrix() -> None:
    from lictor.agent.http.app import _load_routes
    from lictor.agent.http.base import ROUTES

    _load_routes()
    covered = {c.route for c in CASES} | set(NO_NAMED_RESOURCE)
    missing = sorted((r.method, r.path) for r in ROUTES if r.method != "GET" and (r.method, r.path) not in covered)
    assert not missing, f"write routes without an authorization-matrix row: {missing}"
    stale = sorted(set(NO_NAMED_RESOURCE) | {c.route for c in CASES})
    routes = {(r.method, r.path) for r in ROUTES}
    assert [s for s in stale if s not in routes] == []


def _snapshot(a: AgentProcess, paths: tuple[str, ...]) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    for p in paths:
        status, raw, _ = req(a, "GET", p, token=MGMT)
        body = json.loads(raw) if status == 200 and raw.strip() else raw
        out.append((status, body))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_token_lacking_one_permission_changes_nothing(agent: AgentProcess, case: Case) -> None:
    for method, path, body in case.setup:
        status, raw, _ = req(agent, method, path, body, MGMT)
        assert 200 <= status < 300, (path, raw)
    subst = case.setup_fn(agent) if case.setup_fn is not None else {}
    path = case.path.format(**subst)
    for missing, rule in case.grants.items():
        others = [r for f, r in case.grants.items() if f != missing]
        tok = token_with(agent, "\n".join([case.base, *others, 'key "matrix-nothing" { policy = "read" }']))
        before = _snapshot(agent, case.state)
        status, raw, _ = req(agent, case.route[0], path, case.body, tok)
        assert status == 403, f"{case.id}: without {missing} ({rule}) -> {status}: {raw!r}"
        assert raw.startswith(b"Permission denied"), raw
        assert _snapshot(agent, case.state) == before, f"{case.id}: refused without {missing}, but state changed"
    if case.run_success:
        tok = token_with(agent, "\n".join([case.base, *case.grants.values()]))
        status, raw, _ = req(agent, case.route[0], path, case.body, tok)
        assert 200 <= status < 300, f"{case.id}: with every grant -> {status}: {raw!r}"
    for method, p, body in case.after:
        req(agent, method, p, body, MGMT)
