"""``lictor catalog services|nodes``: read the catalog (``/v1/catalog/...``) as Consul's CLI prints it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from lictor.cli.base import err, fail, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, add_http_flags
from lictor.cli.kv import columns

__all__ = ["SUBCOMMANDS"]


def _pairs(mapping: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((mapping or {}).items()))


def catalog_services(argv: list[str]) -> int:
    fs = FlagSet("lictor catalog services [options]",
                 "Lists the services registered in the datacenter, or on one node with -node.")
    add_http_flags(fs)
    fs.string("node", "List only the services registered on this node.", metavar="name")
    fs.bool("tags", "Print each service's tags next to its name.")
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    client = make_client(p)
    services: dict[str, list[str]] = {}
    try:
        if p["node"]:
            node = client.get_json(f"/v1/catalog/node/{quote(p['node'], safe='')}", ok_404=True)
            for svc in ((node or {}).get("Services") or {}).values():
                tags = services.setdefault(svc.get("Service", ""), [])
                tags.extend(t for t in svc.get("Tags") or [] if t not in tags)
        else:
            services = {k: list(v or []) for k, v in (client.get_json("/v1/catalog/services") or {}).items()}
    except ClientError as exc:
        raise fail("Error listing services: ", exc) from None
    if not services:
        err("No services match the given query - try expanding your search.")
        return 0
    if p["tags"]:
        for line in columns([(name, ",".join(sorted(services[name]))) for name in sorted(services)]):
            out(line)
    else:
        for name in sorted(services):
            out(name)
    return 0


def catalog_nodes(argv: list[str]) -> int:
    fs = FlagSet("lictor catalog nodes [options]",
                 "Lists the nodes in the datacenter, or those providing a service with -service.")
    add_http_flags(fs)
    fs.bool("detailed", "Print full node IDs, tagged addresses and node metadata.")
    fs.string("service", "List only the nodes providing this service.", metavar="name")
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    client = make_client(p)
    try:
        if p["service"]:
            entries = client.get_json(f"/v1/catalog/service/{quote(p['service'], safe='')}") or []
            seen: set[str] = set()
            nodes = []
            for e in entries:
                if e.get("Node") in seen:
                    continue
                seen.add(e.get("Node"))
                nodes.append({"Node": e.get("Node", ""), "ID": e.get("ID", ""), "Address": e.get("Address", ""),
                              "Datacenter": e.get("Datacenter", ""), "TaggedAddresses": e.get("TaggedAddresses"),
                              "Meta": e.get("NodeMeta")})
        else:
            nodes = client.get_json("/v1/catalog/nodes") or []
    except ClientError as exc:
        raise fail("Error listing nodes: ", exc) from None
    if not nodes:
        err("No nodes match the given query - try expanding your search.")
        return 0
    if p["detailed"]:
        rows = [("Node", "ID", "Address", "DC", "TaggedAddresses", "Meta")]
        rows += [(n.get("Node", ""), n.get("ID", ""), n.get("Address", ""), n.get("Datacenter", ""),
                  _pairs(n.get("TaggedAddresses")), _pairs(n.get("Meta"))) for n in nodes]
    else:
        rows = [("Node", "ID", "Address", "DC")]
        rows += [(n.get("Node", ""), (n.get("ID") or "")[:8], n.get("Address", ""), n.get("Datacenter", ""))
                 for n in nodes]
    for line in columns(rows):
        out(line)
    return 0


SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "nodes": (catalog_nodes, "Lists all nodes in the given datacenter"),
    "services": (catalog_services, "Lists all registered services in a datacenter"),
}
