"""``lictor config write|read|list|delete``: Consul's config entry commands over ``/v1/config``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from lictor.cli.base import Exit, err, fail, make_client, out, parse, read_data_arg
from lictor.cli.flags import FlagSet, Parsed
from lictor.cli.http import ClientError, add_http_flags
from lictor.common.config_file import parse_text
from lictor.common.errors import ConfigError

__all__ = ["SUBCOMMANDS", "parse_entry_text"]


def parse_entry_text(text: str, name: str) -> dict[str, Any]:
    """One entry from HCL or JSON text (keys in any case; the server normalises them)."""
    try:
        return parse_text(text, name)
    except ConfigError as exc:
        raise fail("Failed to decode config entry input: ", exc) from None


def _kind_name(p: Parsed, *, name_required: bool = True) -> tuple[str, str]:
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        raise Exit(1)
    if not p["kind"]:
        err("Must specify the -kind parameter")
        raise Exit(1)
    if name_required and not p["name"]:
        err("Must specify the -name parameter")
        raise Exit(1)
    return p["kind"], p.values.get("name", "")


def config_write(argv: list[str]) -> int:
    fs = FlagSet("lictor config write [options] <configuration>",
                 "Writes a configuration entry. <configuration> is a file of HCL or JSON, or - for stdin.")
    add_http_flags(fs, server=False)
    fs.bool("cas", "Perform a check-and-set: write only if the entry's ModifyIndex still equals -modify-index.")
    fs.uint("modify-index", "The ModifyIndex the entry must have for a -cas write (0: must not exist).")
    p = parse(fs, argv)
    if len(p.args) != 1:
        err(f"Must provide exactly one positional argument to specify the config entry to write (got {len(p.args)})")
        return 1
    arg = p.args[0]
    data = read_data_arg(arg if arg == "-" or arg.startswith("@") else "@" + arg, "config entry")
    entry = parse_entry_text(data.decode("utf-8", "replace"), arg)
    fields = {str(k).lower().replace("_", ""): v for k, v in entry.items()}
    kind, name = fields.get("kind", ""), fields.get("name", "")
    query: list[tuple[str, str | None]] = []
    if p["cas"]:
        query.append(("cas", str(p["modify-index"])))
    client = make_client(p)
    try:
        ok = client.put_json("/v1/config", entry, query).json()
    except ClientError as exc:
        raise fail(f"Error writing config entry {kind}/{name}: ", exc) from None
    if not ok:
        err(f"Config entry not updated: {kind}/{name}")
        return 1
    out(f"Config entry written: {kind}/{name}")
    return 0


def config_read(argv: list[str]) -> int:
    fs = FlagSet("lictor config read -kind <kind> -name <name> [options]",
                 "Reads one configuration entry and prints it as JSON.")
    add_http_flags(fs)
    fs.string("kind", "The kind of the entry to read.", metavar="kind")
    fs.string("name", "The name of the entry to read.", metavar="name")
    p = parse(fs, argv)
    kind, name = _kind_name(p)
    client = make_client(p)
    try:
        entry = client.get_json(f"/v1/config/{quote(kind, safe='')}/{quote(name, safe='')}", ok_404=True)
    except ClientError as exc:
        raise fail(f"Error reading config entry {kind}/{name}: ", exc) from None
    if entry is None:
        err(f'Error reading config entry {kind}/{name}: Config entry not found for "{kind}" / "{name}"')
        return 1
    out(json.dumps(entry, indent=4))
    return 0


def config_list(argv: list[str]) -> int:
    fs = FlagSet("lictor config list -kind <kind> [options]", "Lists the names of the entries of one kind.")
    add_http_flags(fs)
    fs.string("kind", "The kind of entries to list.", metavar="kind")
    fs.string("filter", "A filter expression over the entries.", metavar="expression")
    p = parse(fs, argv)
    kind, _ = _kind_name(p, name_required=False)
    client = make_client(p)
    query: list[tuple[str, str | None]] = [("filter", p["filter"])] if p["filter"] else []
    try:
        entries = client.get_json(f"/v1/config/{quote(kind, safe='')}", query) or []
    except ClientError as exc:
        raise fail(f"Error listing config entries for kind {kind!r}: ", exc) from None
    for e in entries:
        out(str(e.get("Name", "")))
    return 0


def config_delete(argv: list[str]) -> int:
    fs = FlagSet("lictor config delete (-kind <kind> -name <name> | -filename <file>) [options]",
                 "Deletes a configuration entry.")
    add_http_flags(fs, server=False)
    fs.string("kind", "The kind of the entry to delete.", metavar="kind")
    fs.string("name", "The name of the entry to delete.", metavar="name")
    fs.string("filename", "A file (HCL or JSON) naming the entry to delete by its Kind and Name.", metavar="path")
    fs.bool("cas", "Perform a check-and-set: delete only if the entry's ModifyIndex equals -modify-index.")
    fs.uint("modify-index", "The ModifyIndex the entry must have for a -cas delete.")
    p = parse(fs, argv)
    if p["filename"]:
        if p["kind"] or p["name"]:
            err("Cannot specify -filename with -kind or -name")
            return 1
        entry = parse_entry_text(read_data_arg("@" + p["filename"], "config entry").decode("utf-8", "replace"),
                                 p["filename"])
        fields = {str(k).lower().replace("_", ""): v for k, v in entry.items()}
        kind, name = str(fields.get("kind", "")), str(fields.get("name", ""))
    else:
        kind, name = _kind_name(p)
    if p.given("modify-index") and not p["cas"]:
        err("Cannot specify -modify-index without -cas")
        return 1
    query: list[tuple[str, str | None]] = [("cas", str(p["modify-index"]))] if p["cas"] else []
    client = make_client(p)
    try:
        resp = client.request("DELETE", f"/v1/config/{quote(kind, safe='')}/{quote(name, safe='')}", query)
    except ClientError as exc:
        raise fail(f"Error deleting config entry {kind}/{name}: ", exc) from None
    if p["cas"] and resp.json() is not True:
        err(f"Config entry not deleted: {kind}/{name}")
        return 1
    out(f"Config entry deleted: {kind}/{name}")
    return 0


SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "delete": (config_delete, "Delete a centralized config entry"),
    "list": (config_list, "List centralized config entries of a given kind"),
    "read": (config_read, "Read a centralized config entry"),
    "write": (config_write, "Create or update a centralized config entry"),
}
