"""``lictor services register|deregister``: the local agent's ``/v1/agent/service/...`` endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from lictor.cli.base import err, fail, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, add_http_flags
from lictor.cli.service_def import definition_to_api, definitions_from_file
from lictor.common.errors import ConfigError

__all__ = ["SUBCOMMANDS"]


def _from_files(paths: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in paths:
        try:
            found.extend(definitions_from_file(path))
        except ConfigError as exc:
            raise fail("Error! ", exc) from None
    return found


def services_register(argv: list[str]) -> int:
    fs = FlagSet("lictor services register [options] [FILE...]",
                 "Registers services with the local agent, either one from the flags below or every\n"
                 "\"service\" block and \"services\" list in the given HCL or JSON files.")
    add_http_flags(fs, server=False)
    fs.string("name", "Name of the service to register (flag-based registration).", metavar="name")
    fs.string("id", "ID of the service; defaults to -name.", metavar="id")
    fs.string("address", "Address of the service; defaults to the node's address.", metavar="addr")
    fs.int("port", "Port of the service.")
    fs.string("kind", "Kind of service, e.g. connect-proxy (empty for a typical service).", metavar="kind")
    fs.list("tag", "Tag to add to the service.", metavar="tag")
    fs.map("meta", "Metadata pair to set on the service.")
    p = parse(fs, argv)
    flag_based = any(p.given(n) for n in ("name", "id", "address", "port", "kind", "tag", "meta"))
    if p.args and flag_based:
        err("Error! Cannot specify both service definition flags and files")
        return 1
    if p.args:
        definitions = [definition_to_api(d) for d in _from_files(p.args)]
    else:
        if not p["name"]:
            err("Error! Service name must be specified with the -name flag (or give definition files)")
            return 1
        body: dict[str, Any] = {"Name": p["name"]}
        for flag, api in (("id", "ID"), ("address", "Address"), ("kind", "Kind")):
            if p[flag]:
                body[api] = p[flag]
        if p.given("port"):
            body["Port"] = p["port"]
        if p["tag"]:
            body["Tags"] = p["tag"]
        if p["meta"]:
            body["Meta"] = p["meta"]
        definitions = [body]
    client = make_client(p)
    for d in definitions:
        try:
            client.put_json("/v1/agent/service/register", d)
        except ClientError as exc:
            raise fail(f"Error registering service {d.get('Name', '')!r}: ", exc) from None
        out(f"Registered service: {d.get('Name', '')}")
    return 0


def services_deregister(argv: list[str]) -> int:
    fs = FlagSet("lictor services deregister [options] [FILE...]",
                 "Deregisters services from the local agent: the one named by -id, or every service\n"
                 "defined in the given files (by id, or by name when a definition has no id).")
    add_http_flags(fs, server=False)
    fs.string("id", "ID of the service to deregister.", metavar="id")
    p = parse(fs, argv)
    if p.args and p["id"]:
        err("Error! Cannot specify both -id and files")
        return 1
    if p.args:
        ids = [str(d.get("id") or d.get("ID") or d.get("name") or d.get("Name") or "") for d in _from_files(p.args)]
    elif p["id"]:
        ids = [p["id"]]
    else:
        err("Error! Either -id or service definition files are required")
        return 1
    client = make_client(p)
    for sid in ids:
        try:
            client.put(f"/v1/agent/service/deregister/{quote(sid, safe='')}")
        except ClientError as exc:
            raise fail(f"Error deregistering service {sid!r}: ", exc) from None
        out(f"Deregistered service: {sid}")
    return 0


SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "deregister": (services_deregister, "Deregister services with the local agent"),
    "register": (services_register, "Register services with the local agent"),
}
