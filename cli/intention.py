"""``lictor intention create|delete|get|list|check|match``: intentions over
``/v1/connect/intentions`` (exact source/destination addressing, as Consul 1.9+)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lictor.cli.base import Exit, err, fail, make_client, out, parse, read_data_arg
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, HTTPClient, add_http_flags
from lictor.cli.kv import columns

__all__ = ["SUBCOMMANDS"]


def _two(args: list[str], what: str = "SRC and DST") -> tuple[str, str]:
    if len(args) != 2:
        err(f"Error! {what} must be specified (got {len(args)} arguments)")
        raise Exit(1)
    return args[0], args[1]


def _pair(src: str, dst: str) -> list[tuple[str, str | None]]:
    return [("source", src), ("destination", dst)]


def _name(ns: str, name: str) -> str:
    return name if ns == "default" else f"{ns}/{name}"


def _action(ixn: dict[str, Any]) -> str:
    return ixn.get("Action") or ("L7 permissions" if ixn.get("Permissions") else "")


def _get(client: HTTPClient, src: str, dst: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = client.get_json("/v1/connect/intentions/exact", _pair(src, dst), ok_404=True)
    return result


def intention_create(argv: list[str]) -> int:
    fs = FlagSet("lictor intention create [options] SRC DST\n       lictor intention create [options] -file FILE...",
                 "Creates an intention from SRC to DST (a name, namespace/name, or * for all), or every\n"
                 "intention in the given JSON files. Fails if one already exists, unless -replace.")
    add_http_flags(fs, server=False)
    fs.bool("allow", "Allow the connection (the default).")
    fs.bool("deny", "Deny the connection.")
    fs.bool("file", "Read intention definitions (JSON, one object or a list) from the arguments as files.")
    fs.bool("replace", "Replace an existing intention with the same source and destination.")
    fs.string("description", "A description of the intention.", metavar="text")
    fs.map("meta", "Metadata pair for the intention.")
    p = parse(fs, argv)
    if p["allow"] and p["deny"]:
        err("Error! Only one of -allow or -deny may be specified")
        return 1
    todo: list[tuple[str, str, dict[str, Any]]] = []
    if p["file"]:
        if not p.args:
            err("Error! At least one file must be given with -file")
            return 1
        for path in p.args:
            try:
                data = json.loads(read_data_arg("@" + path, "intention"))
            except ValueError as exc:
                raise fail(f"Error! Invalid intention file {path}: ", exc) from None
            for ixn in data if isinstance(data, list) else [data]:
                src = _name(ixn.get("SourceNS") or "default", ixn.get("SourceName", ""))
                dst = _name(ixn.get("DestinationNS") or "default", ixn.get("DestinationName", ""))
                body = {k: v for k, v in ixn.items() if k in ("Action", "Permissions", "Description", "Meta",
                                                              "SourceType")}
                todo.append((src, dst, body))
    else:
        src, dst = _two(p.args)
        body: dict[str, Any] = {"SourceType": "consul", "Action": "deny" if p["deny"] else "allow"}
        if p["description"]:
            body["Description"] = p["description"]
        if p["meta"]:
            body["Meta"] = p["meta"]
        todo.append((src, dst, body))
    client = make_client(p)
    for src, dst, body in todo:
        try:
            if not p["replace"] and _get(client, src, dst) is not None:
                err(f"Error creating intention: an intention with source {src!r} and destination {dst!r} "
                    "already exists (use -replace)")
                return 1
            client.request("PUT", "/v1/connect/intentions/exact", _pair(src, dst), json.dumps(body).encode())
        except ClientError as exc:
            raise fail(f"Error creating intention {src} => {dst}: ", exc) from None
        out(f"Created: {src} => {dst} ({body.get('Action') or 'L7 permissions'})")
    return 0


def intention_delete(argv: list[str]) -> int:
    fs = FlagSet("lictor intention delete [options] SRC DST", "Deletes the intention from SRC to DST.")
    add_http_flags(fs, server=False)
    p = parse(fs, argv)
    src, dst = _two(p.args)
    client = make_client(p)
    try:
        client.request("DELETE", "/v1/connect/intentions/exact", _pair(src, dst))
    except ClientError as exc:
        raise fail(f"Error deleting intention {src} => {dst}: ", exc) from None
    out("Intention deleted.")
    return 0


def intention_get(argv: list[str]) -> int:
    fs = FlagSet("lictor intention get [options] SRC DST", "Shows the intention from SRC to DST.")
    add_http_flags(fs)
    p = parse(fs, argv)
    src, dst = _two(p.args)
    client = make_client(p)
    try:
        ixn = _get(client, src, dst)
    except ClientError as exc:
        raise fail("Error reading the intention: ", exc) from None
    if ixn is None:
        err(f"Error reading the intention: no intention from {src!r} to {dst!r}")
        return 1
    rows = [("Source:", _name(ixn["SourceNS"], ixn["SourceName"])),
            ("Destination:", _name(ixn["DestinationNS"], ixn["DestinationName"])),
            ("Action:", _action(ixn)), ("Precedence:", str(ixn["Precedence"]))]
    if ixn.get("Description"):
        rows.append(("Description:", ixn["Description"]))
    rows += [("Create Index:", str(ixn["CreateIndex"])), ("Modify Index:", str(ixn["ModifyIndex"]))]
    for k, v in sorted((ixn.get("Meta") or {}).items()):
        rows.append((f"Meta[{k}]:", v))
    for line in columns(rows, glue="       "):
        out(line)
    if ixn.get("Permissions"):
        out("Permissions:")
        out(json.dumps(ixn["Permissions"], indent=4))
    return 0


def intention_list(argv: list[str]) -> int:
    fs = FlagSet("lictor intention list [options]", "Lists every intention, highest precedence first.")
    add_http_flags(fs)
    p = parse(fs, argv)
    client = make_client(p)
    try:
        ixns = client.get_json("/v1/connect/intentions") or []
    except ClientError as exc:
        raise fail("Error listing intentions: ", exc) from None
    if not ixns:
        out("There are no intentions.")
        return 0
    rows = [("Source", "Action", "Destination", "Precedence")]
    rows += [(_name(i["SourceNS"], i["SourceName"]), _action(i), _name(i["DestinationNS"], i["DestinationName"]),
              str(i["Precedence"])) for i in ixns]
    for line in columns(rows, glue="  "):
        out(line)
    return 0


def intention_check(argv: list[str]) -> int:
    fs = FlagSet("lictor intention check [options] SRC DST",
                 "Checks whether a connection from SRC to DST would be allowed (exit 0) or denied (exit 2).")
    add_http_flags(fs)
    p = parse(fs, argv)
    src, dst = _two(p.args)
    client = make_client(p)
    try:
        res = client.get_json("/v1/connect/intentions/check", _pair(src, dst))
    except ClientError as exc:
        raise fail("Error checking the connection: ", exc) from None
    if res and res.get("Allowed"):
        out("Allowed")
        return 0
    out("Denied")
    return 2


def intention_match(argv: list[str]) -> int:
    fs = FlagSet("lictor intention match [options] SRC_OR_DST",
                 "Shows the intentions that apply to a service as a destination (or, with -source, as a\n"
                 "source), in the order they are evaluated.")
    add_http_flags(fs)
    fs.bool("source", "Match intentions whose source is the service.")
    fs.bool("destination", "Match intentions whose destination is the service (the default).")
    p = parse(fs, argv)
    if len(p.args) != 1:
        err(f"Error! Exactly one service must be given (got {len(p.args)} arguments)")
        return 1
    if p["source"] and p["destination"]:
        err("Error! Only one of -source or -destination may be specified")
        return 1
    by = "source" if p["source"] else "destination"
    client = make_client(p)
    try:
        res = client.get_json("/v1/connect/intentions/match", [("by", by), ("name", p.args[0])]) or {}
    except ClientError as exc:
        raise fail("Error matching the service: ", exc) from None
    for ixn in res.get(p.args[0], []):
        out(f"{_name(ixn['SourceNS'], ixn['SourceName'])} => "
            f"{_name(ixn['DestinationNS'], ixn['DestinationName'])} ({_action(ixn)})")
    return 0


SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "check": (intention_check, "Check whether a connection between two services is allowed"),
    "create": (intention_create, "Create intentions"),
    "delete": (intention_delete, "Delete an intention"),
    "get": (intention_get, "Show an intention"),
    "list": (intention_list, "List all intentions"),
    "match": (intention_match, "Show the intentions that match a source or destination"),
}
