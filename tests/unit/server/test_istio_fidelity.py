"""docs/istio.md's field-by-field table stays true: one document per row is applied (the same
plan `lictor apply` runs, against an empty store) and the row's status is checked: supported
fields apply without a warning about them, approximate ones apply with a warning naming them,
refused ones fail naming them; a row whose `needs` field this build lacks must be refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import DictView
from lictor.server.istio.documents import parse_documents
from lictor.server.istio.plan import make_plan, schema_supports

DOC = Path(__file__).resolve().parents[3] / "docs" / "istio.md"

API = {"VirtualService": "networking.istio.io/v1", "DestinationRule": "networking.istio.io/v1",
       "Gateway": "networking.istio.io/v1", "ServiceEntry": "networking.istio.io/v1",
       "PeerAuthentication": "security.istio.io/v1", "AuthorizationPolicy": "security.istio.io/v1",
       "RequestAuthentication": "security.istio.io/v1", "Telemetry": "telemetry.istio.io/v1"}

# the context every row's document may refer to: web with subsets v1/v2, a gateway, a JWT issuer
CONTEXT: list[dict[str, Any]] = [
    {"kind": "DestinationRule", "name": "web-subsets",
     "spec": {"host": "web", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                         {"name": "v2", "labels": {"version": "v2"}}]}},
    {"kind": "Gateway", "name": "gw", "spec": {"selector": {"app": "gw"},
                                               "servers": [{"port": {"number": 8080, "protocol": "HTTP"},
                                                            "hosts": ["*"]}]}},
    {"kind": "RequestAuthentication", "name": "issuer",
     "spec": {"selector": {"matchLabels": {"app": "web"}},
              "jwtRules": [{"issuer": "https://iss.example", "jwksUri": "https://iss.example/jwks"}]}},
]


def vs(route: dict[str, Any] | None = None, match: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    http: dict[str, Any] = {"route": [{"destination": {"host": "web"}}], **(route or {})}
    if match is not None:
        http["match"] = [match]
    return {"kind": "VirtualService", "spec": {"hosts": ["web"], "http": [http], **spec}}


def dr(tp: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"kind": "DestinationRule", "spec": {"host": "api", **({"trafficPolicy": tp} if tp else {}), **spec}}


def gw(server: dict[str, Any] | None = None, **spec: Any) -> list[dict[str, Any]]:
    """The row's Gateway, and a VirtualService bound to it (a gateway without routes opens nothing)."""
    s = {"port": {"number": 9090, "protocol": "HTTP"}, "hosts": ["*"], **(server or {})}
    bound = {"kind": "VirtualService", "name": "bound",
             "spec": {"hosts": ["*"], "gateways": ["row3"],
                      **({"tcp": [{"route": [{"destination": {"host": "db"}}]}]}
                         if s["port"]["protocol"] == "TCP" else {"http": [{"route": [{"destination": {"host": "web"}}]}]})}}
    return [{"kind": "Gateway", "spec": {"selector": {"app": "gw2"}, "servers": [s], **spec}}, bound]


def ap(rule: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}, **spec}
    if rule is not None:
        s["rules"] = [rule]
    return {"kind": "AuthorizationPolicy", "spec": s}


def ra(rule: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "RequestAuthentication",
            "spec": {"selector": {"matchLabels": {"app": "api"}},
                     "jwtRules": [{"issuer": "https://other.example", "jwksUri": "https://o/jwks", **rule}]}}


def se(**spec: Any) -> dict[str, Any]:
    base = {"hosts": ["api.example.com"], "ports": [{"number": 443, "protocol": "TLS", "name": "tls"}],
            "resolution": "DNS"}
    return {"kind": "ServiceEntry", "spec": {**base, **spec}}


def tel(tracing: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    t = {"providers": [{"name": "zipkin"}], **(tracing or {})}
    return {"kind": "Telemetry", "namespace": "istio-system", "spec": {"tracing": [t], **spec}}


def src(**source: Any) -> dict[str, Any]:
    return {"from": [{"source": source}]}


def op(**operation: Any) -> dict[str, Any]:
    return {"to": [{"operation": operation}]}


ROWS: dict[tuple[str, str], dict[str, Any] | list[dict[str, Any]]] = {
    ("VirtualService", "spec.hosts"): vs(),
    ("VirtualService", "spec.gateways"): vs(gateways=["gw", "mesh"]),
    ("VirtualService", "spec.exportTo"): vs(exportTo=["."]),
    ("VirtualService", "spec.http[].match[].uri"): vs(match={"uri": {"prefix": "/a"}}),
    ("VirtualService", "spec.http[].match[].headers"): vs(match={"headers": {"x-a": {"exact": "1"}}}),
    ("VirtualService", "spec.http[].match[].withoutHeaders"): vs(match={"withoutHeaders": {"x-a": {"exact": "1"}}}),
    ("VirtualService", "spec.http[].match[].queryParams"): vs(match={"queryParams": {"q": {"exact": "1"}}}),
    ("VirtualService", "spec.http[].match[].method"): vs(match={"method": {"exact": "GET"}}),
    ("VirtualService", "spec.http[].match[].port"): vs(match={"port": 80, "uri": {"prefix": "/"}}),
    ("VirtualService", "spec.http[].match[].ignoreUriCase"): vs(match={"ignoreUriCase": True}),
    ("VirtualService", "spec.http[].match[].sourceLabels"): vs(match={"sourceLabels": {"app": "x"}}),
    ("VirtualService", "spec.http[].match[].authority"): vs(match={"authority": {"exact": "x"}}),
    ("VirtualService", "spec.http[].route[].destination"): vs({"route": [{"destination": {"host": "web",
                                                                                          "subset": "v2"}}]}),
    ("VirtualService", "spec.http[].route[].destination.port"): vs({"route": [{"destination": {
        "host": "web", "port": {"number": 80}}}]}),
    ("VirtualService", "spec.http[].route[].weight"): vs({"route": [
        {"destination": {"host": "web", "subset": "v1"}, "weight": 90},
        {"destination": {"host": "web", "subset": "v2"}, "weight": 10}]}),
    ("VirtualService", "spec.http[].route[].headers"): vs({"route": [{"destination": {"host": "web", "subset": "v1"},
                                                                      "headers": {"request": {"set": {"a": "b"}}}}]}),
    ("VirtualService", "spec.http[].headers"): vs({"headers": {"response": {"remove": ["server"]}},
                                                    "route": [{"destination": {"host": "web", "subset": "v1"}}]}),
    ("VirtualService", "spec.http[].rewrite.uri"): vs({"rewrite": {"uri": "/b"}}, match={"uri": {"prefix": "/a"}}),
    ("VirtualService", "spec.http[].rewrite.authority"): vs({"rewrite": {"authority": "x"}}),
    ("VirtualService", "spec.http[].redirect"): vs({"redirect": {"uri": "/x"}}),
    ("VirtualService", "spec.http[].directResponse"): vs({"directResponse": {"status": 200}}),
    ("VirtualService", "spec.http[].corsPolicy"): vs({"corsPolicy": {"allowOrigins": [{"exact": "x"}]}}),
    ("VirtualService", "spec.http[].delegate"): vs({"delegate": {"name": "x"}}),
    ("VirtualService", "spec.http[].timeout"): vs({"timeout": "3s"}, match={"uri": {"prefix": "/"}}),
    ("VirtualService", "spec.http[].retries.attempts"): vs({"retries": {"attempts": 3}},
                                                           match={"uri": {"prefix": "/"}}),
    ("VirtualService", "spec.http[].retries.retryOn"): vs({"retries": {"attempts": 2, "retryOn": "5xx,503"}},
                                                          match={"uri": {"prefix": "/"}}),
    ("VirtualService", "spec.http[].retries.perTryTimeout"): vs({"retries": {"attempts": 2, "perTryTimeout": "1s"}},
                                                                match={"uri": {"prefix": "/"}}),
    ("VirtualService", "spec.http[].retries.retryRemoteLocalities"): vs({"retries": {"retryRemoteLocalities": True}}),
    ("VirtualService", "spec.http[].fault.delay"): vs({"fault": {"delay": {"fixedDelay": "1s",
                                                                           "percentage": {"value": 10}}}},
                                                      match={"uri": {"prefix": "/"}}),
    ("VirtualService", "spec.http[].fault.abort"): vs({"fault": {"abort": {"httpStatus": 503,
                                                                           "percentage": {"value": 5}}}},
                                                      match={"uri": {"prefix": "/"}}),
    ("VirtualService", "spec.http[].mirror"): vs({"mirror": {"host": "web", "subset": "v2"},
                                                  "mirrorPercentage": {"value": 10},
                                                  "route": [{"destination": {"host": "web", "subset": "v1"}}]}),
    ("VirtualService", "spec.tcp"): {"kind": "VirtualService", "spec": {"hosts": ["db"], "tcp": [
        {"route": [{"destination": {"host": "db2"}}]}]}},
    ("VirtualService", "spec.tls"): {"kind": "VirtualService", "spec": {"hosts": ["web"], "tls": [{}]}},
    ("DestinationRule", "spec.host"): dr(),
    ("DestinationRule", "spec.subsets"): dr(subsets=[{"name": "a", "labels": {"version": "a"}}]),
    ("DestinationRule", "spec.subsets[].trafficPolicy"): dr(subsets=[{"name": "a", "trafficPolicy": {}}]),
    ("DestinationRule", "spec.exportTo"): dr(exportTo=["."]),
    ("DestinationRule", "spec.workloadSelector"): dr(workloadSelector={}),
    ("DestinationRule", "spec.trafficPolicy.loadBalancer.simple"): dr({"loadBalancer": {"simple": "LEAST_REQUEST"}}),
    ("DestinationRule", "spec.trafficPolicy.loadBalancer.consistentHash"): dr(
        {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}),
    ("DestinationRule", "spec.trafficPolicy.loadBalancer.localityLbSetting"): dr(
        {"loadBalancer": {"localityLbSetting": {}}}),
    ("DestinationRule", "spec.trafficPolicy.connectionPool.tcp.maxConnections"): dr(
        {"connectionPool": {"tcp": {"maxConnections": 5}}}),
    ("DestinationRule", "spec.trafficPolicy.connectionPool.tcp.connectTimeout"): dr(
        {"connectionPool": {"tcp": {"connectTimeout": "2s"}}}),
    ("DestinationRule", "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests"): dr(
        {"connectionPool": {"http": {"http1MaxPendingRequests": 1}}}),
    ("DestinationRule", "spec.trafficPolicy.connectionPool.http.http2MaxRequests"): dr(
        {"connectionPool": {"http": {"http2MaxRequests": 10}}}),
    ("DestinationRule", "spec.trafficPolicy.connectionPool.http.maxRetries"): dr(
        {"connectionPool": {"http": {"maxRetries": 3}}}),
    ("DestinationRule", "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection"): dr(
        {"connectionPool": {"http": {"maxRequestsPerConnection": 1}}}),
    ("DestinationRule", "spec.trafficPolicy.connectionPool.http.idleTimeout"): dr(
        {"connectionPool": {"http": {"idleTimeout": "1s"}}}),
    ("DestinationRule", "spec.trafficPolicy.outlierDetection.consecutive5xxErrors"): dr(
        {"outlierDetection": {"consecutive5xxErrors": 3, "interval": "1s", "baseEjectionTime": "30s",
                              "maxEjectionPercent": 100}}),
    ("DestinationRule", "spec.trafficPolicy.outlierDetection.consecutiveGatewayErrors"): dr(
        {"outlierDetection": {"consecutiveGatewayErrors": 3}}),
    ("DestinationRule", "spec.trafficPolicy.outlierDetection.minHealthPercent"): dr(
        {"outlierDetection": {"consecutive5xxErrors": 2, "minHealthPercent": 50}}),
    ("DestinationRule", "spec.trafficPolicy.tls.mode"): dr({"tls": {"mode": "ISTIO_MUTUAL"}}),
    ("DestinationRule", "spec.trafficPolicy.tls.credentialName"): dr({"tls": {"mode": "SIMPLE",
                                                                              "credentialName": "c"}}),
    ("DestinationRule", "spec.trafficPolicy.portLevelSettings"): dr({"portLevelSettings": []}),
    ("Gateway", "spec.selector"): gw(),
    ("Gateway", "spec.servers[].port"): gw({"port": {"number": 9091, "protocol": "TCP"}}),
    ("Gateway", "spec.servers[].hosts"): gw({"hosts": ["shop.example.com"]}),
    ("Gateway", "spec.servers[].tls.mode"): gw({"port": {"number": 9443, "protocol": "HTTPS"},
                                                "tls": {"mode": "SIMPLE"}}),
    ("Gateway", "spec.servers[].tls.credentialName"): gw({"port": {"number": 9443, "protocol": "HTTPS"},
                                                          "tls": {"mode": "SIMPLE", "credentialName": "cert"}}),
    ("Gateway", "spec.servers[].tls.httpsRedirect"): gw({"port": {"number": 9443, "protocol": "HTTPS"},
                                                         "tls": {"httpsRedirect": True}}),
    ("Gateway", "spec.servers[].bind"): gw({"bind": "0.0.0.0"}),
    ("PeerAuthentication", "spec.mtls.mode"): {"kind": "PeerAuthentication", "namespace": "istio-system",
                                               "spec": {"mtls": {"mode": "STRICT"}}},
    ("PeerAuthentication", "spec.selector"): {"kind": "PeerAuthentication", "spec": {
        "selector": {"matchLabels": {"app": "api"}}, "mtls": {"mode": "STRICT"}}},
    ("PeerAuthentication", "metadata.namespace"): {"kind": "PeerAuthentication", "spec": {"mtls": {"mode": "STRICT"}}},
    ("PeerAuthentication", "spec.portLevelMtls"): {"kind": "PeerAuthentication", "spec": {"portLevelMtls": {}}},
    ("AuthorizationPolicy", "spec.selector"): ap({}),
    ("AuthorizationPolicy", "spec.action"): ap(src(principals=["cluster.local/ns/default/sa/api"]), action="DENY"),
    ("AuthorizationPolicy", "spec.rules"): ap(None),
    ("AuthorizationPolicy", "spec.rules[].from[].source.principals"): ap(src(
        principals=["cluster.local/ns/default/sa/api"])),
    ("AuthorizationPolicy", "spec.rules[].from[].source.namespaces"): ap(src(namespaces=["default"])),
    ("AuthorizationPolicy", "spec.rules[].from[].source.requestPrincipals"): ap(src(requestPrincipals=["*"])),
    ("AuthorizationPolicy", "spec.rules[].from[].source.ipBlocks"): ap(src(ipBlocks=["10.0.0.0/8"])),
    ("AuthorizationPolicy", "spec.rules[].from[].source.notPrincipals"): ap(src(notPrincipals=["x"])),
    ("AuthorizationPolicy", "spec.rules[].to[].operation.paths"): ap(op(paths=["/api/*", "/health"])),
    ("AuthorizationPolicy", "spec.rules[].to[].operation.methods"): ap(op(methods=["GET"])),
    ("AuthorizationPolicy", "spec.rules[].to[].operation.hosts"): ap(op(hosts=["x"])),
    ("AuthorizationPolicy", "spec.rules[].to[].operation.ports"): ap(op(ports=["80"])),
    ("AuthorizationPolicy", "spec.rules[].when[].key"): ap({"when": [{"key": "request.auth.claims[role]",
                                                                      "values": ["admin"]}]}),
    ("RequestAuthentication", "spec.jwtRules[].issuer"): ra({}),
    ("RequestAuthentication", "spec.jwtRules[].audiences"): ra({"audiences": ["a"]}),
    ("RequestAuthentication", "spec.jwtRules[].jwksUri"): ra({}),
    ("RequestAuthentication", "spec.jwtRules[].jwks"): {"kind": "RequestAuthentication", "spec": {
        "jwtRules": [{"issuer": "i", "jwks": '{"keys": []}'}]}},
    ("RequestAuthentication", "spec.jwtRules[].fromHeaders"): ra({"fromHeaders": [{"name": "x-jwt"}]}),
    ("RequestAuthentication", "spec.jwtRules[].fromParams"): ra({"fromParams": ["token"]}),
    ("RequestAuthentication", "spec.jwtRules[].forwardOriginalToken"): ra({"forwardOriginalToken": True}),
    ("RequestAuthentication", "spec.jwtRules[].outputPayloadToHeader"): ra({"outputPayloadToHeader": "x-payload"}),
    ("RequestAuthentication", "spec.jwtRules[].outputClaimToHeaders"): ra({"outputClaimToHeaders": []}),
    ("ServiceEntry", "spec.hosts"): se(),
    ("ServiceEntry", "spec.ports"): se(ports=[{"number": 80, "protocol": "HTTP", "name": "http"}]),
    ("ServiceEntry", "spec.resolution"): se(resolution="DNS"),
    ("ServiceEntry", "spec.endpoints"): se(resolution="STATIC", endpoints=[{"address": "192.0.2.1"}]),
    ("ServiceEntry", "spec.location"): se(location="MESH_EXTERNAL"),
    ("ServiceEntry", "spec.addresses"): se(addresses=["192.0.2.9"]),
    ("ServiceEntry", "spec.workloadSelector"): se(workloadSelector={}),
    ("Telemetry", "spec.tracing[].providers[].name"): tel(),
    ("Telemetry", "spec.tracing[].randomSamplingPercentage"): tel({"randomSamplingPercentage": 10}),
    ("Telemetry", "spec.tracing[].customTags"): tel({"customTags": {"t": {"header": {"name": "x-t"}}}}),
    ("Telemetry", "spec.tracing[].disableSpanReporting"): tel({"disableSpanReporting": True}),
    ("Telemetry", "spec.selector"): {"kind": "Telemetry", "spec": {"selector": {"matchLabels": {"app": "api"}},
                                                                   "tracing": [{"providers": [{"name": "otel"}]}]}},
    ("Telemetry", "spec.metrics"): tel(metrics=[]),
    ("Telemetry", "spec.accessLogging"): tel(accessLogging=[]),
}


# rows whose document alone is honoured by writing nothing (the mesh's defaults already do it)
IMPLIES_NOTHING = {("DestinationRule", "spec.host"), ("DestinationRule", "spec.trafficPolicy.tls.mode")}


def table_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| (\w+) \| `([^`]+)` \| (supported|approximate|refused) \|([^|]*)\|", line)
        if m:
            rows.append((m.group(1), m.group(2), m.group(3), m.group(4).strip()))
    return rows


def to_yaml(docs: list[dict[str, Any]]) -> str:
    out = []
    for i, d in enumerate(docs):
        body = {"apiVersion": API[d["kind"]], "kind": d["kind"],
                "metadata": {"name": d.get("name", f"row{i}"), "namespace": d.get("namespace", "default")},
                "spec": d["spec"]}
        out.append(yaml.safe_dump(body))
    return "---\n".join(out)


def test_every_row_has_a_document_and_every_document_a_row() -> None:
    rows = {(k, f) for k, f, _, _ in table_rows()}
    assert len(rows) > 80
    assert rows == set(ROWS)


@pytest.mark.parametrize("kind,fld,status,needs", table_rows(), ids=lambda v: str(v))
def test_row(kind: str, fld: str, status: str, needs: str) -> None:
    row = ROWS[(kind, fld)]
    text = to_yaml([*CONTEXT, *(row if isinstance(row, list) else [row])])
    resources, _ = parse_documents(text)
    leaf = fld.split(".")[-1].replace("[]", "")
    if needs:
        nk, _, npath = needs.partition(":")
        if not schema_supports(nk, npath):
            status = "refused-by-build"
    if status.startswith("refused"):
        with pytest.raises(ValidationError) as e:
            make_plan({}, DictView(), apply=resources)
        msg = str(e.value)
        assert f"document {len(CONTEXT) + 1} ({kind}/row{len(CONTEXT)})" in msg, msg
        assert leaf in msg, msg
        if status == "refused-by-build":
            assert "not supported by this Lictor build" in msg
        return
    plan = make_plan({}, DictView(), apply=resources)
    mine = [w for w in plan.warnings if w.startswith(f"document {len(CONTEXT) + 1} ")]
    if status == "approximate":
        assert any(leaf in w for w in mine), (mine, plan.warnings)
    else:
        assert not any(re.search(rf"\b{re.escape(leaf)}\b", w) for w in mine), mine
        if (kind, fld) in IMPLIES_NOTHING:
            return
        first = row[0] if isinstance(row, list) else row
        ref = f"{kind}/{first.get('namespace', 'default')}/row{len(CONTEXT)}"
        assert any(ref in e["Meta"]["lictor-istio"] for e in plan.put_entries), \
            f"a supported field must imply a config entry: {ref} in {[e['Meta'] for e in plan.put_entries]}"
