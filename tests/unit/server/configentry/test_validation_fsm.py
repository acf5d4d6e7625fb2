"""Validation errors (each names its field), CAS, rejected writes changing nothing, deletes refused
when others depend on the entry, snapshot/restore, and watches."""

from __future__ import annotations

import io

import pytest

from lictor.common.commands import MessageType
from lictor.common.config_file import parse_text
from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import StoreView, decode_entry
from lictor.server.configentry.validate import validate_entry
from lictor.server.fsm import FSM, Rejected
from lictor.server.state.watch import WatchSet

HTTP_WEB = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
RESOLVER = {"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Service.Meta.v == 1"}}}


def check(body: dict, *others: dict) -> None:
    from lictor.server.configentry.entries import DictView
    validate_entry(decode_entry(body), DictView([decode_entry(o) for o in others]))


@pytest.mark.parametrize(("body", "others", "message"), [
    ({"Kind": "service-fancy", "Name": "x"}, [], "Kind: invalid config entry kind: service-fancy"),
    ({"Kind": "service-defaults"}, [], "Name: config entry name is required"),
    ({"Kind": "service-defaults", "Name": "w", "Protocl": "http"}, [], "Protocl: unknown field"),
    ({"Kind": "service-defaults", "Name": "w", "Protocol": "udp"}, [], "Protocol: invalid value 'udp'"),
    ({"Kind": "proxy-defaults", "Name": "web"}, [], 'Name: invalid name \'web\': proxy-defaults must be named "global"'),
    ({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 60}, {"Weight": 30, "Service": "b"}]},
     [HTTP_WEB], "Splits: the sum of all split weights must be 100, not 90"),
    ({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50}, {"Weight": 50}]}, [HTTP_WEB],
     "Splits[1]: split destination occurs more than once"),
    ({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100}]}, [],
     'service-splitter "web": service "web" has protocol "tcp", which does not permit advanced routing'),
    ({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/"}}}]},
     [{"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}}],
     'service-router "web": service "web" has protocol "tcp"'),
    ({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathRegex": "/a(["}}}]}, [HTTP_WEB],
     "Routes[0].Match.HTTP.PathRegex: invalid regular expression '/a(['"),
    ({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"Header": [{"Name": "x", "Regex": "(?=a)"}]}}}]},
     [HTTP_WEB], "Routes[0].Match.HTTP.Header[0].Regex: invalid regular expression"),
    ({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathExact": "/a", "PathPrefix": "/"}}}]},
     [HTTP_WEB], "Routes[0].Match.HTTP: PathExact, PathPrefix cannot be combined"),
    ({"Kind": "service-router", "Name": "web", "Routes": [{"Destination": {"PrefixRewrite": "/"}}]}, [HTTP_WEB],
     "Routes[0].Destination.PrefixRewrite: requires that either PathPrefix or PathExact"),
    ({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"Methods": ["FETCH"]}}}]}, [HTTP_WEB],
     "Routes[0].Match.HTTP.Methods[0]: invalid value 'FETCH'"),
    ({"Kind": "service-router", "Name": "web", "Routes": [{"Destination": {"ServiceSubset": "v2"}}]},
     [HTTP_WEB, RESOLVER], 'Routes[0].Destination.ServiceSubset: service-resolver "web" does not have a subset named "v2"'),
    ({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v3", "Subsets": {"v1": {}}}, [],
     "DefaultSubset: service-resolver does not have a subset named 'v3'"),
    ({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Service.Meta.v =="}}}, [],
     "Subsets.v1.Filter: invalid filter"),
    ({"Kind": "service-resolver", "Name": "a", "Redirect": {"Service": "b"}},
     [{"Kind": "service-resolver", "Name": "b", "Redirect": {"Service": "a"}}],
     "Redirect: detected a circular resolver redirect"),
    ({"Kind": "service-resolver", "Name": "a", "Redirect": {"Service": "a"}}, [], "Redirect: a redirect of 'a' to itself"),
    ({"Kind": "service-resolver", "Name": "a", "Redirect": {"Service": "b"}, "Subsets": {"v1": {}}}, [],
     "Redirect: Redirect and Subsets cannot both be set"),
    ({"Kind": "service-resolver", "Name": "a", "Failover": {"v9": {"Datacenters": ["dc2"]}}}, [],
     "Failover['v9']: service-resolver does not have a subset named 'v9'"),
    ({"Kind": "service-resolver", "Name": "a", "LoadBalancer": {"Policy": "random", "HashPolicies": [{"SourceIP": True}]}},
     [], 'LoadBalancer.HashPolicies: require Policy "ring_hash" or "maglev"'),
    ({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "allow"}],
      "JWT": {"Providers": [{"Name": "okta"}]}}, [], 'JWT.Providers[0].Name: jwt-provider "okta" does not exist'),
    ({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Permissions": [
        {"Action": "allow", "JWT": {"Providers": [{"Name": "auth0"}]}}]}]}, [],
     'Sources[0].Permissions[0].JWT.Providers[0].Name: jwt-provider "auth0" does not exist'),
    ({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "allow", "Permissions": [
        {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]}, [], "Sources[0]: Action and Permissions cannot both be set"),
    ({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Permissions": [
        {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]}, [],
     'Sources[0].Permissions[0].HTTP: L7 permissions require the destination service "db"'),
    ({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "permit"}]}, [],
     "Sources[0].Action: invalid value 'permit'"),
    ({"Kind": "ingress-gateway", "Name": "ig", "Listeners": [{"Port": 80, "Protocol": "tcp", "Services": [
        {"Name": "a"}, {"Name": "b"}]}]}, [], "Listeners[0].Services: a tcp listener can only route to one service"),
    ({"Kind": "ingress-gateway", "Name": "ig", "Listeners": [{"Port": 80, "Protocol": "http", "Services": [
        {"Name": "db"}]}]}, [], 'Listeners[0].Services[0]: service "db" has protocol "tcp", which does not match'),
    ({"Kind": "mesh", "Name": "mesh", "TLS": {"Incoming": {"TLSMinVersion": "TLSv1_3", "TLSMaxVersion": "TLSv1_2"}}},
     [], "TLS.Incoming.TLSMinVersion: TLSv1_3 is greater than TLSMaxVersion TLSv1_2"),
    ({"Kind": "service-defaults", "Name": "web", "MutualTLSMode": "permissive"}, [],
     'service-defaults "web" MutualTLSMode: "permissive" is not allowed'),
    ({"Kind": "service-defaults", "Name": "web", "FaultInjection": {"Abort": {"HTTPStatus": 700, "Percent": 5}}}, [],
     "FaultInjection.Abort.HTTPStatus: must be an HTTP status between 200 and 599"),
    ({"Kind": "service-defaults", "Name": "web", "FaultInjection": {"Delay": {"Duration": "1s", "Percent": 10}}}, [],
     'service-defaults "web" FaultInjection: requires protocol http, http2 or grpc, not "tcp"'),
    ({"Kind": "jwt-provider", "Name": "okta", "JSONWebKeySet": {"Remote": {"URI": "ftp://x"}}}, [],
     "JSONWebKeySet.Remote.URI: must be an http:// or https:// URL"),
])
def test_validation_errors_name_the_field(body: dict, others: list, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        check(body, *others)
    assert message in str(info.value)


def test_valid_entries_of_every_kind_pass() -> None:
    jwt = {"Kind": "jwt-provider", "Name": "okta", "Issuer": "https://okta",
           "JSONWebKeySet": {"Remote": {"URI": "https://okta/keys", "CacheDuration": "5m"}},
           "Locations": [{"Header": {"Name": "Authorization", "ValuePrefix": "Bearer "}}]}
    mesh = {"Kind": "mesh", "Name": "mesh", "AllowEnablingPermissiveMutualTLS": True,
            "TLS": {"Incoming": {"TLSMinVersion": "TLSv1_2"}}, "DefaultIntentionPolicy": "deny"}
    entries = [
        mesh,
        {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}, "MeshGateway": {"Mode": "local"}},
        {**HTTP_WEB, "MutualTLSMode": "permissive", "MaxInboundConnections": 100,
         "UpstreamConfig": {"Defaults": {"Limits": {"MaxConnections": 10}, "PassiveHealthCheck": {"Interval": "10s",
                                                                                                   "MaxFailures": 3}}},
         "FaultInjection": {"Delay": {"Duration": "100ms", "Percent": 1.5}, "Abort": {"GRPCStatus": 14, "Percent": 0.1}},
         "RateLimits": {"InstanceLevel": {"RequestsPerSecond": 100, "RequestsMaxBurst": 200,
                                          "Routes": [{"PathPrefix": "/api", "RequestsPerSecond": 10}]}}},
        RESOLVER,
        {"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 33.33, "ServiceSubset": "v1"},
                                                              {"Weight": 66.67}], "Mirrors": [{"Service": "web", "ServiceSubset": "v1", "Percent": 1}]},
        {"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/a", "QueryParam": [
            {"Name": "x", "Exact": "1"}]}}, "Destination": {"RetryOn": ["5xx"], "RateLimit": {"RequestsPerSecond": 5},
                                                           "FaultInjection": {"Abort": {"HTTPStatus": 503, "Percent": 50}}}}]},
        {"Kind": "ingress-gateway", "Name": "ig", "Listeners": [{"Port": 8080, "Protocol": "http", "Services": [
            {"Name": "web", "Hosts": ["web.example.com"]}, {"Name": "*"}]}]},
        {"Kind": "terminating-gateway", "Name": "tg", "Services": [{"Name": "legacy", "CAFile": "/ca.pem"}]},
        jwt,
        {"Kind": "service-intentions", "Name": "web", "JWT": {"Providers": [{"Name": "okta"}]},
         "Sources": [{"Name": "api", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/", "Methods": ["GET"]}}]},
                     {"Name": "*", "Action": "deny"}]},
    ]
    from lictor.server.configentry.entries import DictView
    done: list[dict] = []
    for e in entries:
        validate_entry(decode_entry(e), DictView([decode_entry(d) for d in done]))
        done.append(e)


def test_hcl_snake_case_decodes_like_json() -> None:
    hcl = '''
Kind = "service-router"
Name = "web"
routes = [
  {
    match = { http = { path_prefix = "/admin" } }
    destination = { service = "admin", request_timeout = "1m30s", retry_on_status_codes = [503] }
  },
]
'''
    body = decode_entry(parse_text(hcl, "r.hcl"))
    assert body == {"Kind": "service-router", "Name": "web", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/admin"}},
         "Destination": {"Service": "admin", "RequestTimeout": "1m30s", "RetryOnStatusCodes": [503]}}]}
    assert decode_entry(body) == body  # canonical bodies decode to themselves


# ----- the FSM: CAS, rejected writes, deletes, snapshots, watches --------------------------------

def test_cas_semantics(log) -> None:
    assert log.write(HTTP_WEB, cas=5) is False                # cas != 0 on a missing entry
    assert log.write(HTTP_WEB, cas=0) is True                 # create-only
    row = StoreView(log.store).row("service-defaults", "web")
    assert log.write({**HTTP_WEB, "Protocol": "grpc"}, cas=0) is False
    assert log.write({**HTTP_WEB, "Protocol": "grpc"}, cas=row.modify_index + 1) is False
    assert log.write({**HTTP_WEB, "Protocol": "grpc"}, cas=row.modify_index) is True
    row2 = StoreView(log.store).row("service-defaults", "web")
    assert (row2.create_index, row2.body["Protocol"]) == (row.create_index, "grpc")
    assert log.delete("service-defaults", "web", cas=row.modify_index) is False
    assert log.delete("service-defaults", "web", cas=row2.modify_index) is True
    assert StoreView(log.store).row("service-defaults", "web") is None


def test_rejected_write_changes_nothing(log) -> None:
    log.write(HTTP_WEB)
    log.write({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100}]})
    before = (dict(log.store.ext["config_entries"]), dict(log.store.indexes), log.store.latest_index)
    ws = WatchSet()
    log.store.watch(ws, "config_entries", "config_entries.service-defaults")
    # making web tcp would leave a splitter on a tcp service: refused by the FSM itself
    out = log.write({**HTTP_WEB, "Protocol": "tcp"})
    assert isinstance(out, Rejected) and "does not permit advanced routing" in str(out.error)
    out = log.delete("service-defaults", "web")
    assert isinstance(out, Rejected)
    assert (dict(log.store.ext["config_entries"]), dict(log.store.indexes), log.store.latest_index) == before
    assert not ws.fired


def test_jwt_provider_in_use_cannot_be_deleted(log) -> None:
    log.write({"Kind": "jwt-provider", "Name": "okta", "JSONWebKeySet": {"Local": {"Filename": "/k.json"}}})
    assert log.write({"Kind": "service-intentions", "Name": "db", "JWT": {"Providers": [{"Name": "okta"}]},
                      "Sources": [{"Name": "web", "Action": "allow"}]}) is True
    out = log.delete("jwt-provider", "okta")
    assert isinstance(out, Rejected) and 'jwt-provider "okta" does not exist' in str(out.error)


def test_identical_write_bumps_nothing(log) -> None:
    log.write(HTTP_WEB)
    idx = dict(log.store.indexes)
    assert log.write(HTTP_WEB) is True
    assert log.store.indexes == idx


def test_intention_ops_edit_the_entry(log) -> None:
    up = {"op": "intention-upsert", "destination": "db", "source": {"Name": "web", "Action": "allow"}}
    assert log.apply(MessageType.CONFIG_ENTRY, up) is True
    assert log.apply(MessageType.CONFIG_ENTRY, {**up, "source": {"Name": "api", "Action": "deny"}}) is True
    body = StoreView(log.store).get("service-intentions", "db")
    assert [(s["Name"], s["Action"]) for s in body["Sources"]] == [("web", "allow"), ("api", "deny")]
    rm = {"op": "intention-delete", "destination": "db", "source": "web"}
    assert log.apply(MessageType.CONFIG_ENTRY, rm) is True
    assert log.apply(MessageType.CONFIG_ENTRY, rm) is False
    assert log.apply(MessageType.CONFIG_ENTRY, {**rm, "source": "api"}) is True
    assert StoreView(log.store).get("service-intentions", "db") is None


def test_watches_fire_for_the_kind_written(log) -> None:
    ws_kind, ws_other = WatchSet(), WatchSet()
    log.store.watch(ws_kind, "config_entries.service-defaults")
    log.store.watch(ws_other, "config_entries.service-resolver", "intentions")
    log.write(HTTP_WEB)
    assert ws_kind.fired and not ws_other.fired
    assert log.store.index("config_entries.service-defaults") == log.index


def test_snapshot_restore_keeps_entries(log) -> None:
    log.write(HTTP_WEB)
    log.write(RESOLVER)
    log.write({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "*", "Action": "deny"}]})
    buf = io.BytesIO()
    log.fsm.snapshot().persist(buf)
    fresh = FSM()
    fresh.restore(io.BytesIO(buf.getvalue()))
    assert fresh.store.ext["config_entries"] == log.store.ext["config_entries"]
    assert fresh.store.index("config_entries") == log.store.index("config_entries")
    from lictor.server.configentry.intentions import intention_decision
    assert not intention_decision(fresh.store, "api", "web").allowed
