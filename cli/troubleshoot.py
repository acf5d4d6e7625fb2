"""``lictor troubleshoot proxy -envoy-admin-endpoint=127.0.0.1:19000``: what a running Envoy
sidecar has, read from its admin API, as Consul's ``troubleshoot proxy`` reports it::

    /certs                       leaf and CA certificates: present and within their validity
    /config_dump                 listeners and clusters Envoy accepted (dynamic, active)
    /clusters?format=json        each upstream cluster's endpoints and their health
    /stats                       rejected xDS updates (NACKs)

Exit 0 when every check passes, 1 otherwise (and 1 with one line when the admin API is not
reachable)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from lictor.cli.base import err, out, parse
from lictor.cli.flags import FlagSet

__all__ = ["SUBCOMMANDS", "diagnose"]


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if path.startswith(("/certs", "/config_dump", "/clusters")) else body


def diagnose(certs: dict[str, Any], dump: dict[str, Any], clusters: dict[str, Any], stats: str,
             upstream: str = "") -> list[tuple[bool, str]]:
    """(ok, sentence) for each check; pure, so it is tested without an Envoy."""
    out: list[tuple[bool, str]] = []
    entries = certs.get("certificates") or []
    leafs = [c for e in entries for c in e.get("cert_chain") or []]
    cas = [c for e in entries for c in e.get("ca_cert") or []]
    if not leafs or not cas:
        out.append((False, "no certificates: Envoy has not received its leaf and roots (SDS)"))
    seen: set[tuple[str, str]] = set()
    for c in leafs + cas:
        what_key = ("leaf" if c in leafs else "CA", str(c.get("serial_number")))
        if what_key in seen:
            continue  # the same certificate in several TLS contexts
        seen.add(what_key)
        days = int(c.get("days_until_expiration") or 0)
        what = "leaf" if c in leafs else "CA"
        ok = days > 0
        out.append((ok, f"{what} certificate {c.get('serial_number', '?')} "
                        + (f"valid ({days} days left)" if ok else "expired")))
    listeners: list[str] = []
    active_clusters: list[str] = []
    for cfg in dump.get("configs") or []:
        t = cfg.get("@type", "")
        if t.endswith("ListenersConfigDump"):
            for lis in cfg.get("dynamic_listeners") or []:
                if "active_state" in lis:
                    listeners.append(lis["name"])
                if lis.get("error_state"):
                    out.append((False, f"listener {lis['name']} rejected: {lis['error_state'].get('details', '')}"))
        elif t.endswith("ClustersConfigDump"):
            for c in cfg.get("dynamic_active_clusters") or []:
                active_clusters.append(c["cluster"]["name"])
    public = [n for n in listeners if n.startswith("public_listener:")]
    out.append((bool(public), f"public listener {'found: ' + public[0] if public else 'missing'}"))
    for n in sorted(listeners):
        if not n.startswith("public_listener:") and (not upstream or n.split(":")[0] == upstream):
            out.append((True, f"upstream listener found: {n}"))
    if upstream and not any(n.split(":")[0] == upstream for n in listeners):
        out.append((False, f"no listener for upstream {upstream!r}"))
    health: dict[str, list[str]] = {}
    for cs in clusters.get("cluster_statuses") or []:
        hs = []
        for h in cs.get("host_statuses") or []:
            st = h.get("health_status") or {}
            if st.get("eds_health_status", "HEALTHY") == "HEALTHY" and not st.get("failed_outlier_check"):
                hs.append(h["address"]["socket_address"]["address"] + ":" + str(h["address"]["socket_address"]
                                                                             .get("port_value", "")))
        health[cs["name"]] = hs
    for name in sorted(active_clusters):
        if name == "local_app" or (upstream and not name.startswith(upstream + ".")):
            continue
        eps = health.get(name, [])
        out.append((bool(eps), f"cluster {name}: " + (f"{len(eps)} healthy endpoint(s) ({', '.join(eps)})" if eps
                                                      else "no healthy endpoints")))
    for line in stats.splitlines():
        k, _, v = line.partition(": ")
        if k.endswith("update_rejected") and v.strip().isdigit() and int(v) > 0:
            # a count since Envoy started: the last good config is still in use, so a note, not a failure
            out.append((True, f"note: {k} = {v.strip()}: Envoy rejected configuration updates since it "
                              "started (see the agent's log for the NACK)"))
    return out


def proxy(argv: list[str]) -> int:
    fs = FlagSet("lictor troubleshoot proxy [options]",
                 "Checks a running Envoy sidecar through its admin API: certificates, listeners,\n"
                 "clusters and endpoint health, rejected configuration.")
    fs.string("envoy-admin-endpoint", "Envoy's admin address (default 127.0.0.1:19000).", metavar="host:port")
    fs.string("upstream-envoy-id", "Only check this upstream (its name).", metavar="name")
    p = parse(fs, argv)
    addr = p["envoy-admin-endpoint"] or "127.0.0.1:19000"
    base = addr if addr.startswith("http") else f"http://{addr}"
    try:
        certs = _get(base, "/certs")
        dump = _get(base, "/config_dump")
        clusters = _get(base, "/clusters?format=json")
        stats = _get(base, "/stats?filter=update_rejected")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        err(f"Error! cannot read Envoy's admin API at {addr}: {getattr(exc, 'reason', exc)}")
        return 1
    results = diagnose(certs, dump, clusters, stats, upstream=p["upstream-envoy-id"])
    for ok, sentence in results:
        out(f"{'✓' if ok else '✗'} {sentence}")
    bad = sum(1 for ok, _ in results if not ok)
    out("" if not bad else f"\n{bad} problem(s) found")
    return 1 if bad else 0


SUBCOMMANDS = {"proxy": (proxy, "Troubleshoots a running Envoy sidecar through its admin API")}
