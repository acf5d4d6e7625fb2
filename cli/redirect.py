"""``lictor connect redirect-traffic``: Consul's transparent-proxy traffic redirection with iptables.

The rules (nat table), as Consul's::

    OUTPUT      -p tcp -j LICTOR_PROXY_OUTPUT
    LICTOR_PROXY_OUTPUT   -m owner --uid-owner <proxy uid> -j RETURN      (the proxy's own traffic)
                          -m owner --uid-owner <excluded uid> -j RETURN
                          -d 127.0.0.1/32 -j RETURN
                          -d <excluded cidr> -j RETURN
                          -p tcp --dport <excluded outbound port> -j RETURN
                          -j LICTOR_PROXY_REDIRECT
    LICTOR_PROXY_REDIRECT -p tcp -j REDIRECT --to-ports <outbound listener port, 15001>
    PREROUTING  -p tcp -j LICTOR_PROXY_INBOUND
    LICTOR_PROXY_INBOUND  -p tcp --dport <excluded inbound port> -j RETURN
                          -p tcp -j LICTOR_PROXY_IN_REDIRECT
    LICTOR_PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports <proxy public port>

The proxy's registration (``-proxy-id``, read from the agent) gives the inbound port, the outbound
listener port (``Proxy.TransparentProxy.OutboundListenerPort``) and the ports to leave alone
(``envoy_prometheus_bind_addr``, ``envoy_stats_bind_addr``, expose listeners). Rules go in the
current network namespace, or in ``-netns <name>`` (``ip netns exec``: the agent is still asked
from here). Applied in one ``iptables-restore --noflush`` transaction; re-running replaces them.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from typing import Any

from lictor.cli.base import Exit, err, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import APIError, ClientError, add_http_flags

__all__ = ["redirect_rules", "redirect_traffic"]

DEFAULT_OUTBOUND_PORT = 15001
CHAINS = ("LICTOR_PROXY_INBOUND", "LICTOR_PROXY_IN_REDIRECT", "LICTOR_PROXY_OUTPUT", "LICTOR_PROXY_REDIRECT")


def redirect_rules(*, proxy_uid: int, inbound_port: int, outbound_port: int = DEFAULT_OUTBOUND_PORT,
                   exclude_inbound_ports: list[int] = (), exclude_outbound_ports: list[int] = (),  # type: ignore[assignment]
                   exclude_outbound_cidrs: list[str] = (), exclude_uids: list[int] = ()) -> str:  # type: ignore[assignment]
    """The ``iptables-restore`` input (nat table) for these settings (pure)."""
    lines = ["*nat"]
    lines += [f":{c} - [0:0]" for c in CHAINS]
    lines += [f"-F {c}" for c in CHAINS]
    # jumps from the built-in chains, once (deleted first so re-running does not add a second one)
    lines += ["-A LICTOR_PROXY_REDIRECT -p tcp -j REDIRECT --to-ports " + str(outbound_port),
              "-A LICTOR_PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports " + str(inbound_port),
              f"-A LICTOR_PROXY_OUTPUT -m owner --uid-owner {proxy_uid} -j RETURN"]
    for uid in exclude_uids:
        lines.append(f"-A LICTOR_PROXY_OUTPUT -m owner --uid-owner {uid} -j RETURN")
    lines.append("-A LICTOR_PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN")
    for cidr in exclude_outbound_cidrs:
        lines.append(f"-A LICTOR_PROXY_OUTPUT -d {cidr} -j RETURN")
    for port in exclude_outbound_ports:
        lines.append(f"-A LICTOR_PROXY_OUTPUT -p tcp --dport {port} -j RETURN")
    lines.append("-A LICTOR_PROXY_OUTPUT -j LICTOR_PROXY_REDIRECT")
    for port in exclude_inbound_ports:
        lines.append(f"-A LICTOR_PROXY_INBOUND -p tcp --dport {port} -j RETURN")
    lines.append("-A LICTOR_PROXY_INBOUND -p tcp -j LICTOR_PROXY_IN_REDIRECT")
    lines += ["-A OUTPUT -p tcp -j LICTOR_PROXY_OUTPUT", "-A PREROUTING -p tcp -j LICTOR_PROXY_INBOUND", "COMMIT", ""]
    return "\n".join(lines)


def _ports(values: list[str], what: str) -> list[int]:
    outp = []
    for v in values:
        if not v.isdigit() or not 0 < int(v) < 65536:
            err(f"Error! {what} {v!r}: expected a port number (1-65535)")
            raise Exit(1)
        outp.append(int(v))
    return outp


def _cidrs(values: list[str]) -> list[str]:
    outp = []
    for v in values:
        try:
            outp.append(str(ipaddress.ip_network(v, strict=False)))
        except ValueError:
            err(f"Error! -exclude-outbound-cidr {v!r}: expected an IPv4 address or CIDR")
            raise Exit(1) from None
    return outp


def _port_of(addr: Any) -> int | None:
    text = str(addr or "")
    port = text.rpartition(":")[2]
    return int(port) if port.isdigit() else None


def redirect_traffic(argv: list[str]) -> int:
    fs = FlagSet("lictor connect redirect-traffic -proxy-id <id> -proxy-uid <uid> [options]",
                 "Installs iptables rules that send this network namespace's outbound TCP to the sidecar's\n"
                 "outbound listener and its inbound TCP to the sidecar's public listener (transparent proxy).")
    add_http_flags(fs, server=False)
    fs.string("proxy-id", "The proxy's service ID on the local agent.", metavar="id")
    fs.string("proxy-uid", "The user ID the proxy runs as: its own traffic is not redirected.", metavar="uid")
    fs.string("proxy-inbound-port", "Override the inbound port (default: the proxy's registered port).", metavar="port")
    fs.string("proxy-outbound-port", "Override the outbound listener port (default: the registration's "
                                     f"TransparentProxy.OutboundListenerPort, else {DEFAULT_OUTBOUND_PORT}).",
              metavar="port")
    fs.list("exclude-inbound-port", "An inbound port not to redirect (repeatable).", metavar="port")
    fs.list("exclude-outbound-port", "An outbound port not to redirect (repeatable).", metavar="port")
    fs.list("exclude-outbound-cidr", "An outbound address or CIDR not to redirect (repeatable).",
                   metavar="cidr")
    fs.list("exclude-uid", "A user ID whose traffic is not redirected (repeatable).", metavar="uid")
    fs.string("netns", "Apply the rules in this named network namespace (ip netns exec).", metavar="name")
    fs.bool("print-rules", "Print the iptables-restore input and exit, changing nothing.")
    p = parse(fs, argv)
    if not p["proxy-id"]:
        err("Error! -proxy-id is required")
        return 1
    uid_text = p["proxy-uid"]
    if not uid_text.isdigit():
        err(f"Error! -proxy-uid {uid_text!r}: a numeric user ID is required")
        return 1
    client = make_client(p)
    try:
        svc = client.get_json(f"/v1/agent/service/{p['proxy-id']}", ok_404=True)
    except (APIError, ClientError) as exc:
        err(f"Error! cannot read the proxy's registration: {exc}")
        return 1
    if not svc:
        err(f"Error! No proxy registered on this agent with ID {p['proxy-id']!r}")
        return 1
    if svc.get("Kind") != "connect-proxy":
        err(f"Error! {p['proxy-id']!r} is not a connect-proxy (kind {svc.get('Kind') or 'typical'!r})")
        return 1
    proxy = svc.get("Proxy") or {}
    cfg = proxy.get("Config") or {}
    inbound = _ports([p["proxy-inbound-port"]], "-proxy-inbound-port")[0] if p["proxy-inbound-port"] else int(svc["Port"])
    tp = proxy.get("TransparentProxy") or {}
    outbound = (_ports([p["proxy-outbound-port"]], "-proxy-outbound-port")[0] if p["proxy-outbound-port"]
                else int(tp.get("OutboundListenerPort") or DEFAULT_OUTBOUND_PORT))
    excl_in = _ports(p["exclude-inbound-port"], "-exclude-inbound-port")
    for key in ("envoy_prometheus_bind_addr", "envoy_stats_bind_addr"):
        port = _port_of(cfg.get(key))
        if port:
            excl_in.append(port)
    for path in (proxy.get("Expose") or {}).get("Paths") or []:
        if path.get("ListenerPort"):
            excl_in.append(int(path["ListenerPort"]))
    rules = redirect_rules(proxy_uid=int(uid_text), inbound_port=inbound, outbound_port=outbound,
                           exclude_inbound_ports=sorted(set(excl_in)),
                           exclude_outbound_ports=_ports(p["exclude-outbound-port"], "-exclude-outbound-port"),
                           exclude_outbound_cidrs=_cidrs(p["exclude-outbound-cidr"]),
                           exclude_uids=[int(u) for u in _ports(p["exclude-uid"], "-exclude-uid")])
    if p["print-rules"]:
        out(rules)
        return 0
    restore = shutil.which("iptables-restore")
    if not restore:
        err("Error! iptables-restore not found (install iptables)")
        return 1
    cmd = [restore, "--noflush"]
    if p["netns"]:
        cmd = ["ip", "netns", "exec", p["netns"], *cmd]
    # the jumps from OUTPUT/PREROUTING must not pile up when re-run: drop earlier ones first
    for chain, target in (("OUTPUT", "LICTOR_PROXY_OUTPUT"), ("PREROUTING", "LICTOR_PROXY_INBOUND")):
        pre = ["ip", "netns", "exec", p["netns"]] if p["netns"] else []
        while subprocess.run([*pre, "iptables", "-t", "nat", "-D", chain, "-p", "tcp", "-j", target],
                             capture_output=True).returncode == 0:
            pass
    proc = subprocess.run(cmd, input=rules, text=True, capture_output=True)
    if proc.returncode != 0:
        err(f"Error! iptables-restore failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return 1
    out(f"Successfully applied traffic redirection rules for proxy {p['proxy-id']}")
    return 0
