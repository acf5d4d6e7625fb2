"""``lictor kv get|put|delete|export|import``: Consul's KV commands over ``/v1/kv``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any

from lictor.cli.base import Exit, err, fail, make_client, out, parse, read_data_arg
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, add_http_flags, kv_path

__all__ = ["SUBCOMMANDS", "format_detailed"]


def _decode_value(entry: dict[str, Any]) -> bytes:
    value = entry.get("Value")
    if not value:
        return b""
    return base64.b64decode(value)


def _value_text(entry: dict[str, Any], as_base64: bool) -> str:
    raw = _decode_value(entry)
    if as_base64:
        return base64.b64encode(raw).decode()
    return raw.decode("utf-8", "replace")


def columns(rows: Sequence[Sequence[str]], glue: str = "  ") -> list[str]:
    """Left-aligned columns, like ryanuber/columnize (the last column is not padded)."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append(glue.join(cells).rstrip())
    return lines


def format_detailed(entry: dict[str, Any], as_base64: bool) -> str:
    rows = [
        ("CreateIndex", str(entry.get("CreateIndex", 0))),
        ("Flags", str(entry.get("Flags", 0))),
        ("Key", str(entry.get("Key", ""))),
        ("LockIndex", str(entry.get("LockIndex", 0))),
        ("ModifyIndex", str(entry.get("ModifyIndex", 0))),
        ("Session", entry.get("Session") or "-"),
        ("Value", _value_text(entry, as_base64)),
    ]
    return "\n".join(columns(rows, glue=" " * 6))


def _one_key(args: list[str], *, required: bool) -> str:
    if len(args) > 1:
        err(f"Too many arguments (expected 1, got {len(args)})")
        raise Exit(1)
    key = args[0] if args else ""
    if required and not key:
        err("Error! Missing KEY argument")
        raise Exit(1)
    return key


# --------------------------------------------------------------------------------------------


def kv_get(argv: list[str]) -> int:
    fs = FlagSet("lictor kv get [options] [KEY_OR_PREFIX]",
                 "Retrieves the value at KEY. If no key exists with that name, an error is returned.\n"
                 "With -recurse or -keys, KEY is a prefix (the root if omitted).")
    add_http_flags(fs)
    fs.bool("base64", "Print values base64-encoded.")
    fs.bool("detailed", "Print the key's metadata (indexes, flags, session) with its value.")
    fs.bool("keys", "List the keys under the prefix, not their values; see -separator.")
    fs.bool("recurse", "Print every key under the prefix as key:value.")
    fs.string("separator", "With -keys, group keys up to the first occurrence of this string after "
                           "the prefix. Empty means list every key.", default="/")
    p = parse(fs, argv)
    key = _one_key(p.args, required=not (p["recurse"] or p["keys"]))
    client = make_client(p)
    try:
        if p["keys"]:
            query: list[tuple[str, str | None]] = [("keys", None)]
            if p["separator"]:
                query.append(("separator", p["separator"]))
            for k in client.get_json(kv_path(key), query, ok_404=True) or []:
                out(k)
            return 0
        if p["recurse"]:
            entries = client.get_json(kv_path(key), [("recurse", None)], ok_404=True) or []
            for i, entry in enumerate(entries):
                if p["detailed"]:
                    out(format_detailed(entry, p["base64"]))
                    if i < len(entries) - 1:
                        out()
                else:
                    out(f"{entry['Key']}:{_value_text(entry, p['base64'])}")
            return 0
        entries = client.get_json(kv_path(key), ok_404=True)
    except ClientError as exc:
        raise fail("Error querying agent: ", exc) from None
    if not entries:
        err(f"Error! No key exists at: {key}")
        return 1
    entry = entries[0]
    if p["detailed"]:
        out(format_detailed(entry, p["base64"]))
    else:
        text = _value_text(entry, p["base64"])
        if text:
            out(text)
    return 0


def kv_put(argv: list[str]) -> int:
    fs = FlagSet("lictor kv put [options] KEY [DATA]",
                 "Writes DATA at KEY. DATA may be \"@path\" to read a file, \"-\" to read stdin,\n"
                 "or omitted to write an empty value.")
    add_http_flags(fs)
    fs.bool("acquire", "Obtain a lock on the key for the session given with -session (creates the key "
                       "if needed).")
    fs.bool("base64", "DATA is base64-encoded: decode it before writing.")
    fs.bool("cas", "Check-and-set: write only if the key's ModifyIndex equals -modify-index "
                   "(0 writes only if the key does not exist).")
    fs.uint("flags", "Unsigned integer stored with the key for clients' use.")
    fs.uint("modify-index", "The ModifyIndex to check against, with -cas.")
    fs.bool("release", "Release the lock held on the key by the session given with -session.")
    fs.string("session", "Session ID for -acquire or -release.", metavar="id")
    p = parse(fs, argv)
    if not p.args:
        err("Error! Missing KEY argument")
        return 1
    if len(p.args) > 2:
        err(f"Too many arguments (expected 1 or 2, got {len(p.args)})")
        return 1
    key = p.args[0]
    data = read_data_arg(p.args[1]) if len(p.args) == 2 else b""
    if p["base64"]:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise fail("Error! Cannot base 64 decode data: ", exc) from None
    if p.given("modify-index") and not p["cas"]:
        err("Cannot specify -modify-index without -cas!")
        return 1
    if (p["acquire"] or p["release"]) and not p["session"]:
        err("Error! Missing -session (required with -acquire and -release)")
        return 1
    if p["acquire"] and p["release"]:
        err("Cannot specify both -acquire and -release!")
        return 1
    query: list[tuple[str, str | None]] = []
    if p.given("flags"):
        query.append(("flags", str(p["flags"])))
    if p["cas"]:
        query.append(("cas", str(p["modify-index"])))
    if p["acquire"]:
        query.append(("acquire", p["session"]))
    if p["release"]:
        query.append(("release", p["session"]))
    client = make_client(p)
    try:
        resp = client.put(kv_path(key), query, data)
    except ClientError as exc:
        raise fail("Error! Failed writing data: ", exc) from None
    ok = resp.body.strip() != b"false"
    if p["acquire"]:
        if not ok:
            err(f"Error! Failed to acquire lock on: {key}")
            return 1
        out(f"Success! Lock acquired on: {key}")
    elif p["release"]:
        if not ok:
            err(f"Error! Failed to release lock on: {key}")
            return 1
        out(f"Success! Lock released on: {key}")
    elif not ok:
        err(f"Error! Did not write to {key}: CAS failed")
        return 1
    else:
        out(f"Success! Data written to: {key}")
    return 0


def kv_delete(argv: list[str]) -> int:
    fs = FlagSet("lictor kv delete [options] KEY_OR_PREFIX",
                 "Removes the value at KEY. If no key exists there, nothing happens.")
    add_http_flags(fs)
    fs.bool("cas", "Check-and-set: delete only if the key's ModifyIndex equals -modify-index.")
    fs.uint("modify-index", "The ModifyIndex to check against, with -cas.")
    fs.bool("recurse", "Delete every key under the prefix.")
    p = parse(fs, argv)
    key = _one_key(p.args, required=not p["recurse"])
    if p["cas"] and p["recurse"]:
        err("Cannot specify both -cas and -recurse!")
        return 1
    if p["cas"] and not p["modify-index"]:
        err("Must specify -modify-index with -cas!")
        return 1
    if p.given("modify-index") and not p["cas"]:
        err("Cannot specify -modify-index without -cas!")
        return 1
    query: list[tuple[str, str | None]] = []
    if p["recurse"]:
        query.append(("recurse", None))
    if p["cas"]:
        query.append(("cas", str(p["modify-index"])))
    client = make_client(p)
    try:
        resp = client.request("DELETE", kv_path(key), query)
    except ClientError as exc:
        what = "prefix" if p["recurse"] else "key"
        raise fail(f"Error! Error deleting {what} {key}: ", exc) from None
    if p["cas"] and resp.body.strip() == b"false":
        err(f"Error! Did not delete key {key}: CAS failed")
        return 1
    if p["recurse"]:
        out(f"Success! Deleted keys with prefix: {key}")
    else:
        out(f"Success! Deleted key: {key}")
    return 0


def kv_export(argv: list[str]) -> int:
    fs = FlagSet("lictor kv export [options] [PREFIX]",
                 "Prints the keys under PREFIX (all keys if omitted) as a JSON array of\n"
                 "{\"key\", \"flags\", \"value\" (base64)} objects, for \"lictor kv import\".")
    add_http_flags(fs)
    p = parse(fs, argv)
    prefix = _one_key(p.args, required=False)
    client = make_client(p)
    try:
        entries = client.get_json(kv_path(prefix), [("recurse", None)], ok_404=True) or []
    except ClientError as exc:
        raise fail("Error querying agent: ", exc) from None
    exported = [{"key": e["Key"], "flags": e.get("Flags", 0), "value": e.get("Value") or ""} for e in entries]
    out(json.dumps(exported, indent="\t"))
    return 0


def kv_import(argv: list[str]) -> int:
    fs = FlagSet("lictor kv import [options] [DATA]",
                 "Writes the entries of a \"lictor kv export\" JSON array. DATA is the JSON itself,\n"
                 "\"@path\" to read a file, or \"-\" (or nothing) to read stdin.")
    add_http_flags(fs)
    fs.string("prefix", "Prepend this prefix to every imported key.", metavar="prefix")
    p = parse(fs, argv)
    if len(p.args) > 1:
        err(f"Too many arguments (expected 1, got {len(p.args)})")
        return 1
    data = read_data_arg(p.args[0] if p.args else "-")
    try:
        entries = json.loads(data)
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "key" in e for e in entries):
            raise ValueError("expected a JSON array of {\"key\", \"flags\", \"value\"} objects")
    except ValueError as exc:
        raise fail("Error! Cannot unmarshal data: ", exc) from None
    client = make_client(p)
    for entry in entries:
        key = p["prefix"] + str(entry["key"])
        try:
            value = base64.b64decode(entry.get("value") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise fail(f"Error! Cannot base 64 decode value for key {key}: ", exc) from None
        query: list[tuple[str, str | None]] = []
        if entry.get("flags"):
            query.append(("flags", str(int(entry["flags"]))))
        try:
            client.put(kv_path(key), query, value)
        except ClientError as exc:
            raise fail(f"Error! Failed writing data for key {key}: ", exc) from None
        out(f"Imported: {key}")
    return 0


SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "delete": (kv_delete, "Removes data from the KV store"),
    "export": (kv_export, "Exports part of the KV tree in JSON format"),
    "get": (kv_get, "Retrieves or lists data from the KV store"),
    "import": (kv_import, "Imports part of the KV tree in JSON format"),
    "put": (kv_put, "Sets or updates data in the KV store"),
}
