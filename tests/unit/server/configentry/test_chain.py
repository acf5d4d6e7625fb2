"""Discovery chain compilation: the default chain, routers, splitters, resolvers, protocols."""

from __future__ import annotations

import pytest

from lictor.server.configentry.chain import ChainError, compile_chain
from lictor.server.configentry.entries import DictView, decode_entry


def view(*entries: dict) -> DictView:
    return DictView([decode_entry(e) for e in entries])


HTTP_WEB = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
RESOLVER = {"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1", "ConnectTimeout": "3s",
            "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2",
                                                                              "OnlyPassing": True}}}


def test_default_chain() -> None:
    c = compile_chain(view(), "web", datacenter="dc1", trust_domain="abc.consul")
    assert c["Default"] is True and c["Protocol"] == "tcp"
    assert c["StartNode"] == "resolver:web.default.default.dc1"
    assert c["Nodes"] == {"resolver:web.default.default.dc1": {
        "Type": "resolver", "Name": "web.default.default.dc1",
        "Resolver": {"ConnectTimeout": "5s", "Default": True, "Target": "web.default.default.dc1"}}}
    t = c["Targets"]["web.default.default.dc1"]
    assert (t["Service"], t["Datacenter"], t["SNI"]) == ("web", "dc1", "web.default.dc1.internal.abc.consul")


def test_router_with_path_header_and_regex_matches() -> None:
    router = {"Kind": "service-router", "Name": "web", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin", "PrefixRewrite": "/"}},
        {"Match": {"HTTP": {"PathRegex": "/v[0-9]+/.*", "Header": [{"Name": "x-canary", "Exact": "1"}]}},
         "Destination": {"ServiceSubset": "v2", "RequestTimeout": "2s", "NumRetries": 3,
                         "RetryOnStatusCodes": [503]}},
    ]}
    c = compile_chain(view(HTTP_WEB, {"Kind": "service-defaults", "Name": "admin", "Protocol": "http"}, RESOLVER,
                           router), "web", datacenter="dc1")
    assert c["StartNode"] == "router:web.default.default"
    routes = c["Nodes"]["router:web.default.default"]["Routes"]
    assert [r["NextNode"] for r in routes] == ["resolver:admin.default.default.dc1",
                                                "resolver:v2.web.default.default.dc1",
                                                "resolver:v1.web.default.default.dc1"]  # default route -> DefaultSubset
    assert routes[1]["Definition"]["Destination"]["RequestTimeout"] == "2s"
    assert routes[-1]["Definition"]["Match"] == {"HTTP": {"PathPrefix": "/"}}
    assert c["Targets"]["v2.web.default.default.dc1"]["Subset"] == {"Filter": "Service.Meta.version == v2",
                                                                    "OnlyPassing": True}
    assert c["Targets"]["v1.web.default.default.dc1"]["ConnectTimeout"] == "3s"


def test_splitter_weights_and_flattening() -> None:
    entries = [HTTP_WEB, RESOLVER, {"Kind": "service-defaults", "Name": "web2", "Protocol": "http"},
               {"Kind": "service-splitter", "Name": "web", "Splits": [
                   {"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "Service": "web2"}]},
               {"Kind": "service-splitter", "Name": "web2", "Splits": [
                   {"Weight": 80}, {"Weight": 20, "Service": "web", "ServiceSubset": "v2"}]}]
    c = compile_chain(view(*entries), "web", datacenter="dc1")
    assert c["StartNode"] == "splitter:web.default.default"
    splits = [(s["Weight"], s["NextNode"]) for s in c["Nodes"]["splitter:web.default.default"]["Splits"]]
    assert splits == [(50.0, "resolver:v1.web.default.default.dc1"), (40.0, "resolver:web2.default.default.dc1"),
                      (10.0, "resolver:v2.web.default.default.dc1")]


def test_splitter_loop_is_an_error() -> None:
    entries = [HTTP_WEB, {"Kind": "service-defaults", "Name": "b", "Protocol": "http"},
               {"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100, "Service": "b"}]},
               {"Kind": "service-splitter", "Name": "b", "Splits": [{"Weight": 100, "Service": "web"}]}]
    with pytest.raises(ChainError, match="splitter loop"):
        compile_chain(view(*entries), "web", datacenter="dc1")


def test_resolver_redirect_and_loop() -> None:
    c = compile_chain(view({"Kind": "service-resolver", "Name": "web", "Redirect": {"Service": "web-v2"}}),
                      "web", datacenter="dc1")
    assert c["StartNode"] == "resolver:web-v2.default.default.dc1"
    assert list(c["Targets"]) == ["web-v2.default.default.dc1"]
    loop = view({"Kind": "service-resolver", "Name": "a", "Redirect": {"Service": "b"}},
                {"Kind": "service-resolver", "Name": "b", "Redirect": {"Service": "a"}})
    with pytest.raises(ChainError, match=r'Redirect: detected a circular resolver redirect: a -> b -> a'):
        compile_chain(loop, "a", datacenter="dc1")


def test_resolver_failover_targets() -> None:
    r = {**RESOLVER, "Failover": {"v1": {"ServiceSubset": "v2"}, "*": {"Datacenters": ["dc2", "dc3"]}}}
    c = compile_chain(view(r), "web", datacenter="dc1")
    node = c["Nodes"]["resolver:v1.web.default.default.dc1"]["Resolver"]
    assert node["Failover"] == {"Targets": ["v2.web.default.default.dc1"]}
    c2 = compile_chain(view({"Kind": "service-resolver", "Name": "db", "Failover": {"*": {"Datacenters": ["dc2", "dc3"]}}}),
                       "db", datacenter="dc1")
    assert c2["Nodes"]["resolver:db.default.default.dc1"]["Resolver"]["Failover"]["Targets"] == [
        "db.default.default.dc2", "db.default.default.dc3"]
    assert c2["Targets"]["db.default.default.dc2"]["Datacenter"] == "dc2"


def test_undefined_subset_is_an_error_naming_the_field() -> None:
    router = {"Kind": "service-router", "Name": "web",
              "Routes": [{"Match": {"HTTP": {"PathPrefix": "/x"}}, "Destination": {"ServiceSubset": "v9"}}]}
    with pytest.raises(ChainError, match=r'Routes\[0\].Destination.ServiceSubset: service-resolver "web" does not '
                                         r'have a subset named "v9"'):
        compile_chain(view(HTTP_WEB, RESOLVER, router), "web", datacenter="dc1")


@pytest.mark.parametrize(("entries", "protocol"), [
    ([], "tcp"),
    ([{"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http2"}}], "http2"),
    ([{"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}},
      {"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"}], "grpc"),
])
def test_protocol_inheritance(entries: list, protocol: str) -> None:
    assert compile_chain(view(*entries), "web", datacenter="dc1")["Protocol"] == protocol


def test_router_and_splitter_ignored_for_tcp_and_protocol_override() -> None:
    router = {"Kind": "service-router", "Name": "web",
              "Routes": [{"Match": {"HTTP": {"PathPrefix": "/a"}}, "Destination": {"Service": "other"}}]}
    v = view(router)  # web is tcp: the router is not applied at run time
    assert compile_chain(v, "web", datacenter="dc1")["StartNode"] == "resolver:web.default.default.dc1"
    c = compile_chain(v, "web", datacenter="dc1", override_protocol="http", override_connect_timeout="1s")
    assert c["StartNode"] == "router:web.default.default"
    assert c["Targets"]["other.default.default.dc1"]["ConnectTimeout"] == "1s"


def test_mirrors_become_targets() -> None:
    router = {"Kind": "service-router", "Name": "web", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/"}},
         "Destination": {"RequestMirrorPolicies": [{"Service": "shadow", "Percent": 5}]}}]}
    c = compile_chain(view(HTTP_WEB, {"Kind": "service-defaults", "Name": "shadow", "Protocol": "http"}, router),
                      "web", datacenter="dc1")
    route = c["Nodes"]["router:web.default.default"]["Routes"][0]
    assert route["RequestMirrorPolicies"] == [{"Target": "shadow.default.default.dc1", "Percent": 5.0}]
    assert "resolver:shadow.default.default.dc1" in c["Nodes"]


def test_inconsistent_protocols() -> None:
    router = {"Kind": "service-router", "Name": "web",
              "Routes": [{"Match": {"HTTP": {"PathPrefix": "/a"}}, "Destination": {"Service": "tcpsvc"}}]}
    with pytest.raises(ChainError, match='inconsistent protocols: service "tcpsvc" has protocol "tcp"'):
        compile_chain(view(HTTP_WEB, router), "web", datacenter="dc1")
