"""Distributed tracing through real Envoys (issue 13): one request through three sidecars yields one
trace with the right parent/child spans, sent to a small local collector: Zipkin JSON v2 over HTTP,
then OTLP over gRPC (``opentelemetry-proto`` messages)::

    test --> web sidecar --mTLS--> booking sidecar --> booking app (forwards the trace headers)
                 --> booking sidecar --mTLS--> shipping sidecar --> shipping app
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.integration.conftest import AgentProcess, eventually, free_ports
from tests.integration.dataplane import Sidecar

pytestmark = pytest.mark.integration

PROPAGATED = ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
              "traceparent", "tracestate")


class _Server:
    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def app(name: str, port: int, seen: list[dict[str, str]], forward_to: int = 0) -> _Server:
    """An HTTP app that records the headers it gets and, with ``forward_to``, calls its upstream
    listener first, passing the trace context on (what an instrumented app does)."""

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append(headers)
            body = f"{name}\n".encode()
            if forward_to:
                req = urllib.request.Request(f"http://127.0.0.1:{forward_to}{self.path}",
                                             headers={k: headers[k] for k in PROPAGATED if k in headers})
                with urllib.request.urlopen(req, timeout=5) as r:
                    body += r.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass
    return _Server(port, H)


def zipkin_collector(port: int, spans: list[dict[str, Any]]) -> _Server:
    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while size := int(self.rfile.readline().strip() or b"0", 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            assert self.path == "/api/v2/spans"
            spans.extend(json.loads(data))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass
    return _Server(port, H)


class OTLPCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, port: int) -> None:
        self.spans: list[tuple[str, Any]] = []  # (service.name resource attribute, Span)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        for rs in request.resource_spans:
            svc = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            # xds-protos ships an old copy of the OTLP protos into the same package as
            # opentelemetry-proto, and whichever installs last wins: the field (number 2) is
            # scope_spans in the new copy, instrumentation_library_spans in the old one
            scopes = getattr(rs, "scope_spans", None)
            for ss in scopes if scopes is not None else rs.instrumentation_library_spans:
                for span in ss.spans:
                    self.spans.append((svc, span))
        return trace_service_pb2.ExportTraceServiceResponse()

    def stop(self) -> None:
        self.server.stop(0)


class TraceMesh:
    def __init__(self, root: Path) -> None:
        (self.grpc, self.web_up, self.web_pub, self.book_app, self.book_pub, self.book_up, self.ship_app,
         self.ship_pub, self.zipkin, self.otlp, *admins) = free_ports(13)
        self.agent = AgentProcess(root, f"-grpc-port={self.grpc}").start()
        self.zipkin_spans: list[dict[str, Any]] = []
        self.seen_booking: list[dict[str, str]] = []
        self.seen_shipping: list[dict[str, str]] = []
        self.servers = [zipkin_collector(self.zipkin, self.zipkin_spans),
                        app("booking", self.book_app, self.seen_booking, forward_to=self.book_up),
                        app("shipping", self.ship_app, self.seen_shipping)]
        self.otel = OTLPCollector(self.otlp)
        self.set_tracing({"Provider": "zipkin", "Collector": {"Address": f"127.0.0.1:{self.zipkin}"},
                          "SamplingPercent": 100,
                          "CustomTags": [{"Tag": "tenant", "Header": "x-tenant"}, {"Tag": "mesh", "Literal": "lictor"}]})
        for name, port, pub, ups in (
                ("shipping", self.ship_app, self.ship_pub, []),
                ("booking", self.book_app, self.book_pub, [{"DestinationName": "shipping", "LocalBindPort": self.book_up}]),
                ("web", 1, self.web_pub, [{"DestinationName": "booking", "LocalBindPort": self.web_up}])):
            self.agent.json("PUT", "/v1/agent/service/register", {
                "Name": name, "ID": name, "Port": port,
                "Connect": {"SidecarService": {"Port": pub, "Proxy": {"Upstreams": ups}}}})
        self.sidecars = [Sidecar(root, s, http_addr=self.agent.addr, grpc_port=self.grpc, admin_port=a).start()
                         for s, a in zip(("shipping", "booking", "web"), admins)]
        for sc in self.sidecars:  # flush spans every 200 ms instead of 5 s (Envoy reads it at each flush)
            status, _ = sc.request("POST", "/runtime_modify?tracing.zipkin.flush_interval_ms=200"
                                           "&tracing.opentelemetry.flush_interval_ms=200")
            assert status == 200

    def set_tracing(self, tracing: dict[str, Any]) -> None:
        self.agent.json("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global",
                                              "Config": {"protocol": "http"}, "Tracing": tracing})

    def call(self, path: str, headers: dict[str, str] | None = None) -> str:
        req = urllib.request.Request(f"http://127.0.0.1:{self.web_up}{path}", headers=headers or {})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        for sc in self.sidecars:
            sc.stop()
        for s in self.servers:
            s.stop()
        self.otel.stop()
        self.agent.stop()


@pytest.fixture(scope="module")
def tm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraceMesh]:
    m = TraceMesh(tmp_path_factory.mktemp("tracing"))

    def ok() -> bool:
        try:
            return m.call("/warmup") == "booking\nshipping\n"
        except OSError:
            return False
    try:
        eventually(ok, 40, "a first request through three sidecars")
        yield m
    finally:
        m.stop()


def _chain(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans ordered root first, each the parent of the next; asserts it is one chain."""
    roots = [s for s in spans if not s.get("parentId")]
    assert len(roots) == 1, spans
    chain = roots
    while True:
        kids = [s for s in spans if s.get("parentId") == chain[-1]["id"]]
        if not kids:
            break
        assert len(kids) == 1, spans
        chain.append(kids[0])
    assert len(chain) == len(spans), spans
    return chain


def test_one_zipkin_trace_across_three_sidecars(tm: TraceMesh) -> None:
    assert tm.call("/book/42", {"x-tenant": "acme"}) == "booking\nshipping\n"
    inbound = tm.seen_shipping[-1]
    trace_id = inbound["x-b3-traceid"]

    def spans() -> list[dict[str, Any]]:
        return [s for s in tm.zipkin_spans if s["traceId"] == trace_id]
    got = eventually(lambda: len(spans()) >= 4 and spans(), 20, "four spans of the trace at the collector")
    chain = _chain(got)
    # web's egress -> booking's ingress -> booking's egress -> shipping's ingress
    assert [(s["localEndpoint"]["serviceName"], s["kind"]) for s in chain] == [
        ("web-sidecar-proxy", "CLIENT"), ("booking-sidecar-proxy", "SERVER"),
        ("booking-sidecar-proxy", "CLIENT"), ("shipping-sidecar-proxy", "SERVER")]
    assert all(s["tags"].get("mesh") == "lictor" for s in chain)  # custom tag: a literal
    # custom tag from a header: the booking app does not pass x-tenant on, so only the first hop has it
    assert [s["tags"].get("tenant") for s in chain] == ["acme", "acme", None, None]
    assert all(s["tags"].get("http.url", "").endswith("/book/42") for s in chain)
    assert len(trace_id) == 32  # 128-bit ids
    # W3C traceparent travels with B3: same trace id, and the sampled flag
    version, tp_trace, _, flags = inbound["traceparent"].split("-")
    assert version == "00" and tp_trace == trace_id and flags == "01"
    assert inbound.get("x-request-id")  # generated because tracing is on


def test_otlp_grpc_trace_across_three_sidecars(tm: TraceMesh) -> None:
    tm.set_tracing({"Provider": "opentelemetry", "Collector": {"Address": f"127.0.0.1:{tm.otlp}"}})

    def traced() -> bool:
        n = len(tm.otel.spans)
        tm.call("/otel-warmup")
        return eventually(lambda: len(tm.otel.spans) > n, 12, "spans over OTLP", interval=0.2) is not None
    eventually(traced, 40, "the proxies to switch to OpenTelemetry")
    assert tm.call("/ship/7") == "booking\nshipping\n"
    tp = tm.seen_shipping[-1]["traceparent"]
    trace_id = bytes.fromhex(tp.split("-")[1])

    def spans() -> list[tuple[str, Any]]:
        return [(svc, s) for svc, s in tm.otel.spans if s.trace_id == trace_id]
    got = eventually(lambda: len(spans()) >= 4 and spans(), 20, "four OTLP spans of the trace")
    as_dicts = [{"id": s.span_id.hex(), "parentId": s.parent_span_id.hex(), "svc": svc, "kind": s.kind}
                for svc, s in got]
    chain = _chain(as_dicts)
    from opentelemetry.proto.trace.v1 import trace_pb2
    client, server = trace_pb2.Span.SPAN_KIND_CLIENT, trace_pb2.Span.SPAN_KIND_SERVER
    assert [(s["svc"], s["kind"]) for s in chain] == [("web", client), ("booking", server), ("booking", client),
                                                      ("shipping", server)]


def test_bad_tracing_config_is_refused_at_write(tm: TraceMesh) -> None:
    for tracing, want in [
        ({"Provider": "jaeger", "Collector": {"Address": "127.0.0.1:1"}}, "Tracing.Provider: invalid value 'jaeger'"),
        ({"Provider": "zipkin", "Collector": {"Address": "127.0.0.1:1"}, "SamplingPercent": 150},
         "Tracing.SamplingPercent: must be between 0 and at most 100"),
        ({"Provider": "zipkin", "Collector": {}}, "Tracing.Collector"),
        ({"Provider": "zipkin", "Collector": {"Address": "nohost"}}, "Tracing.Collector.Address: expected host:port"),
        ({"Provider": "zipkin", "Collector": {"Service": "z"}, "CustomTags": [{"Tag": "t"}]},
         "Tracing.CustomTags[0]"),
    ]:
        status, raw = tm.agent.request("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global",
                                                             "Tracing": tracing})
        assert status == 400 and want in raw.decode(), (tracing, status, raw)
