"""Cluster commands (issue 4), as Consul's: ``members``, ``join``, ``force-leave``, ``keygen``,
``keyring``, ``event``, ``rtt`` and ``watch``. Each talks to the local agent's HTTP API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any
from urllib.parse import quote

from lictor.cli.base import err, fail, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, HTTPClient, add_http_flags

__all__ = ["COMMANDS"]

_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_members(argv: list[str]) -> int:
    fs = FlagSet("lictor members [options]", "Lists the members of the cluster as the agent's gossip sees them.")
    add_http_flags(fs, server=False)
    fs.bool("detailed", "Show every tag of each member.")
    fs.string("status", "Only members whose status matches this regular expression.", metavar="regex")
    fs.bool("wan", "Accepted for compatibility; there is no WAN pool.")
    p = parse(fs, argv)
    client = make_client(p)
    try:
        members = client.get_json("/v1/agent/members")
    except ClientError as exc:
        raise fail("Error retrieving members: ", exc) from None
    try:
        status_re = re.compile(p["status"]) if p["status"] else None
    except re.error as exc:
        raise fail("Failed to compile status regexp: ", exc) from None
    rows = [["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]]
    if p["detailed"]:
        rows = [["Node", "Address", "Status", "Tags"]]
    for m in sorted(members, key=lambda m: m["Name"]):
        status = _STATUS.get(int(m.get("Status", 0)), "unknown")
        if status_re is not None and not status_re.search(status):
            continue
        tags = m.get("Tags") or {}
        addr = f"{m['Addr']}:{m['Port']}"
        if p["detailed"]:
            rows.append([m["Name"], addr, status, ",".join(f"{k}={v}" for k, v in sorted(tags.items()))])
        else:
            rows.append([m["Name"], addr, status, "server" if tags.get("role") == "consul" else "client",
                         tags.get("build", "").split(":")[0], tags.get("vsn", "2"), tags.get("dc", ""),
                         "default", tags.get("segment", "") or "<default>"])
    out(_table(rows))
    return 0


def cmd_join(argv: list[str]) -> int:
    fs = FlagSet("lictor join [options] address ...", "Tells the agent to join the cluster through these "
                 "gossip addresses (host or host:port).")
    add_http_flags(fs, server=False)
    fs.bool("wan", "Accepted for compatibility; there is no WAN pool.")
    p = parse(fs, argv)
    if not p.args:
        err("At least one address to join must be specified.")
        return 1
    client = make_client(p)
    joined = 0
    for addr in p.args:
        try:
            client.put(f"/v1/agent/join/{quote(addr, safe='')}")
            joined += 1
        except ClientError as exc:
            err(f"Error joining address '{addr}': {exc}")
    if not joined:
        return 1
    out(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0


def cmd_force_leave(argv: list[str]) -> int:
    fs = FlagSet("lictor force-leave [options] name", "Forces a failed member into the left state (and, with "
                 "-prune, out of the member list); the leader then removes it from the catalog.")
    add_http_flags(fs, server=False)
    fs.bool("prune", "Remove the member from the member list entirely.")
    p = parse(fs, argv)
    if len(p.args) != 1:
        err("A single node name must be specified to force leave.")
        return 1
    client = make_client(p)
    try:
        client.put(f"/v1/agent/force-leave/{quote(p.args[0], safe='')}", [("prune", None)] if p["prune"] else [])
    except ClientError as exc:
        raise fail("Error force leaving: ", exc) from None
    return 0


def cmd_keygen(argv: list[str]) -> int:
    fs = FlagSet("lictor keygen", "Prints a new random 32-byte gossip encryption key in base64.")
    parse(fs, argv)
    from lictor.common.gossip.keyring import generate_key

    out(generate_key())
    return 0


def cmd_keyring(argv: list[str]) -> int:
    fs = FlagSet("lictor keyring [options]", "Manages the gossip encryption keys of every member: install a "
                 "key everywhere, make it the primary (use) everywhere, then remove the old one.")
    add_http_flags(fs, server=False)
    fs.string("install", "Install a new key on every member.", metavar="key")
    fs.string("use", "Make an installed key the primary on every member.", metavar="key")
    fs.string("remove", "Remove a key from every member (not the primary).", metavar="key")
    fs.bool("list", "List the installed keys and how many members hold each.")
    p = parse(fs, argv)
    ops = [(name, p[name]) for name in ("install", "use", "remove") if p[name]]
    if len(ops) + bool(p["list"]) != 1:
        err("Exactly one of -list, -install, -use, or -remove must be provided")
        return 1
    client = make_client(p)
    try:
        if ops:
            op, key = ops[0]
            verb = {"install": "Installing new gossip encryption key",
                    "use": "Changing primary gossip encryption key",
                    "remove": "Removing gossip encryption key"}[op]
            out(f"==> {verb}...")
            method = {"install": "POST", "use": "PUT", "remove": "DELETE"}[op]
            client.request(method, "/v1/operator/keyring", body=json.dumps({"Key": key}).encode())
            return 0
        out("==> Gathering installed encryption keys...")
        for pool in client.get_json("/v1/operator/keyring"):
            out("")
            out(f"{pool['Datacenter']} (LAN):")
            for k, n in sorted(pool["Keys"].items()):
                out(f"  {k} [{n}/{pool['NumNodes']}]")
    except ClientError as exc:
        raise fail("Error: ", exc) from None
    return 0


def cmd_event(argv: list[str]) -> int:
    fs = FlagSet("lictor event [options] [payload]", "Fires a user event to every agent (filters are regular "
                 "expressions applied by each receiver).")
    add_http_flags(fs, server=False)
    fs.string("name", "Name of the event.", metavar="name")
    fs.string("node", "Regular expression to filter on node names.", metavar="regex")
    fs.string("service", "Regular expression to filter on service names.", metavar="regex")
    fs.string("tag", "Regular expression to filter on service tags (needs -service).", metavar="regex")
    p = parse(fs, argv)
    if not p["name"]:
        err("Event name must be specified")
        return 1
    if len(p.args) > 1:
        err("Too many command line arguments.")
        return 1
    q = [(k, p[k]) for k in ("node", "service", "tag") if p[k]]
    client = make_client(p)
    try:
        ev = client.request("PUT", f"/v1/event/fire/{quote(p['name'], safe='')}", q,
                            p.args[0].encode() if p.args else b"").json()
    except ClientError as exc:
        raise fail("Error firing event: ", exc) from None
    out(f"Event ID: {ev['ID']}")
    return 0


def cmd_rtt(argv: list[str]) -> int:
    fs = FlagSet("lictor rtt [options] node1 [node2]", "Estimates the network round trip time between two nodes "
                 "from their coordinates (node2 defaults to the agent's node).")
    add_http_flags(fs, server=False)
    fs.bool("wan", "Accepted for compatibility; there is no WAN pool.")
    p = parse(fs, argv)
    if not 1 <= len(p.args) <= 2:
        err("One or two node names must be specified")
        return 1
    client = make_client(p)
    from lictor.agent.coordinates import Coordinate

    try:
        rows = client.get_json("/v1/coordinate/nodes")
        a = p.args[0]
        b = p.args[1] if len(p.args) == 2 else client.get_json("/v1/agent/self")["Config"]["NodeName"]
    except ClientError as exc:
        raise fail("Error getting coordinates: ", exc) from None
    coords = {r["Node"]: r["Coord"] for r in rows}
    for n in (a, b):
        if n not in coords:
            err(f"Could not find a coordinate for node {n!r}")
            return 1
    d = Coordinate.from_api(coords[a]).distance(Coordinate.from_api(coords[b]))
    out(f"Estimated {a} <-> {b} rtt: {d * 1000:.3f} ms (using LAN coordinates)")
    return 0


# -------------------------------------------------------------------------------------- watch

_WATCH_TYPES = ("key", "keyprefix", "services", "nodes", "service", "checks", "event")


def watch_path(kind: str, p: Any) -> tuple[str, list[tuple[str, str | None]]]:
    """The blocking endpoint of a watch type (ValueError naming a missing option)."""
    if kind == "key":
        if not p["key"]:
            raise ValueError("Must specify a single key to watch")
        return f"/v1/kv/{quote(p['key'])}", []
    if kind == "keyprefix":
        if not p["prefix"]:
            raise ValueError("Must specify a single prefix to watch")
        return f"/v1/kv/{quote(p['prefix'])}", [("recurse", None)]
    if kind == "services":
        return "/v1/catalog/services", []
    if kind == "nodes":
        return "/v1/catalog/nodes", []
    if kind == "service":
        if not p["service"]:
            raise ValueError("Must specify a single service to watch")
        q: list[tuple[str, str | None]] = [("tag", t) for t in p["tag"]]
        if p["passingonly"]:
            q.append(("passing", None))
        return f"/v1/health/service/{quote(p['service'])}", q
    if kind == "checks":
        if p["service"]:
            return f"/v1/health/checks/{quote(p['service'])}", []
        return f"/v1/health/state/{quote(p['state'] or 'any')}", []
    if kind == "event":
        return "/v1/event/list", [("name", p["name"])] if p["name"] else []
    raise ValueError(f"Unsupported watch type: {kind}")


def _run_handler(p: Any, data: bytes, index: int) -> int:
    if p["http-handler"]:
        req = urllib.request.Request(p["http-handler"], data=data, method="POST",
                                     headers={"Content-Type": "application/json", "X-Consul-Index": str(index)})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return 0 if resp.status < 300 else 1
        except OSError as exc:
            raise fail("Error calling the HTTP handler: ", exc) from None
    if not p.args:
        sys.stdout.write(data.decode() + "\n")
        sys.stdout.flush()
        return 0
    import os

    env = {**os.environ, "CONSUL_INDEX": str(index), "LICTOR_INDEX": str(index)}
    cmd: Any = " ".join(p.args) if p["shell"] else p.args
    return subprocess.run(cmd, input=data, shell=bool(p["shell"]), env=env).returncode


def cmd_watch(argv: list[str]) -> int:
    fs = FlagSet("lictor watch [options] [handler ...]",
                 "Watches a view of the cluster with blocking queries and runs the handler with the new\n"
                 "data as JSON on stdin each time it changes (no handler: prints the JSON). As Consul's\n"
                 "watch command; -http-handler POSTs the JSON to a URL instead.")
    add_http_flags(fs, server=False)
    fs.string("type", f"Watch type: {', '.join(_WATCH_TYPES)}.", metavar="type")
    fs.string("key", "Key to watch (type key).", metavar="key")
    fs.string("prefix", "Key prefix to watch (type keyprefix).", metavar="prefix")
    fs.string("service", "Service to watch (type service, checks).", metavar="name")
    fs.list("tag", "Service tag to filter on (type service).", metavar="tag")
    fs.bool("passingonly", "Only passing instances (type service).")
    fs.string("state", "Check state to watch (type checks): any, passing, warning, critical.", metavar="state")
    fs.string("name", "Event name to watch (type event).", metavar="name")
    fs.bool("shell", "Run the handler through a shell.", default=True)
    fs.string("http-handler", "POST each result to this URL instead of running a command.", metavar="url")
    fs.int("max-runs", "Stop after running the handler this many times (0 = forever; for tests).")
    p = parse(fs, argv)
    if p["type"] not in _WATCH_TYPES:
        err(f"Unsupported watch type: {p['type'] or '(none)'}")
        return 1
    try:
        path, query = watch_path(p["type"], p)
    except ValueError as exc:
        err(str(exc))
        return 1
    client: HTTPClient = make_client(p)
    client.timeout = 400.0
    index = 0
    last: bytes | None = None
    runs = 0
    while True:
        try:
            resp = client.request("GET", path, [*query, ("index", str(index)), ("wait", "5m")] if index else query,
                                  read=True, ok_404=True)
        except ClientError as exc:
            err(f"Error querying the agent: {exc}")
            time.sleep(1.0)
            continue
        new_index = int(resp.headers.get("X-Consul-Index", "0") or 0)
        if new_index < index:  # Consul resets on an index that goes backwards
            new_index = 0
        body = resp.body if resp.status == 200 else b"null"
        if p["type"] == "key" and resp.status == 200:
            rows = json.loads(body)
            body = json.dumps(rows[0] if rows else None).encode()
        changed = index == 0 or new_index != index
        index = max(new_index, 1)
        if changed and body != last:
            last = body
            rc = _run_handler(p, body, index)
            if rc != 0:
                err(f"Handler exited with code {rc}")
            runs += 1
            if p["max-runs"] and runs >= p["max-runs"]:
                return 0


COMMANDS: dict[str, tuple[Any, str]] = {
    "members": (cmd_members, "Lists the members of a Lictor cluster"),
    "join": (cmd_join, "Tell Lictor agent to join cluster"),
    "force-leave": (cmd_force_leave, "Forces a member of the cluster to enter the \"left\" state"),
    "keygen": (cmd_keygen, "Generates a new encryption key"),
    "keyring": (cmd_keyring, "Manages gossip layer encryption keys"),
    "event": (cmd_event, "Fire a new event"),
    "rtt": (cmd_rtt, "Estimates network round trip time between nodes"),
    "watch": (cmd_watch, "Watch for changes in Lictor"),
}
