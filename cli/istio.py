"""``lictor apply -f``, ``lictor get``, ``lictor delete -f``: Istio resources over ``/v1/istio``."""

from __future__ import annotations

import json
import os
import re
import sys
from urllib.parse import quote

import yaml

from lictor.cli.base import Exit, err, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, add_http_flags

__all__ = ["COMMANDS"]


def _count_documents(text: str) -> int | None:
    """How many documents the server will see in ``text`` (None when it does not parse: the
    server's message then names the line)."""
    try:
        n = 0
        for d in yaml.safe_load_all(text):
            if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
                n += len(d["items"])
            elif d is not None:
                n += 1
        return n
    except yaml.YAMLError:
        return None


def _where(message: str, files: list[tuple[str, int | None]]) -> str:
    """Turn the server's ``document N`` (of all files joined) into ``FILE document M``."""
    if len(files) < 2 or any(n is None for _, n in files):
        return message

    def one(m: re.Match[str]) -> str:
        k = int(m.group(1))
        for name, n in files:
            if k <= (n or 0):
                return f"{name} document {k}"
            k -= n or 0
        return m.group(0)
    return re.sub(r"\bdocument (\d+)", one, message)


def _read(paths: list[str], files: list[tuple[str, int | None]] | None = None) -> str:
    """The documents of every -f: a file, a directory (its .yaml/.yml/.json files in name order) or -.
    ``files`` collects (name, number of documents) for messages."""
    parts: list[str] = []
    files = files if files is not None else []
    for path in paths:
        if path == "-":
            parts.append(sys.stdin.read())
            files.append(("<stdin>", _count_documents(parts[-1])))
            continue
        names = ([os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith((".yaml", ".yml", ".json"))]
                 if os.path.isdir(path) else [path])
        for f in names:
            try:
                with open(f, encoding="utf-8") as fh:
                    parts.append(fh.read())
                files.append((f, _count_documents(parts[-1])))
            except (OSError, UnicodeDecodeError) as exc:
                err(f"Error! Failed to read {f}: {getattr(exc, 'strerror', None) or exc}")
                raise Exit(1) from None
    return "\n---\n".join(parts)


def _report(res: dict, verb: str) -> None:
    for note in res.get("Skipped") or []:
        out(note)
    for w in res.get("Warnings") or []:
        err(f"Warning: {w}")
    dry = " (dry run)" if res.get("DryRun") else ""
    for ref in res.get("Applied") or []:
        out(f"{ref} {verb}{dry}")
    for ref in res.get("Deleted") or []:
        out(f"{ref} deleted{dry}")
    ent = res.get("Entries") or {}
    for e in ent.get("Write") or []:
        out(f"  config entry {e} written{dry}")
    for e in ent.get("Delete") or []:
        out(f"  config entry {e} deleted{dry}")
    if not (res.get("Applied") or res.get("Deleted")):
        out(f"nothing changed{dry}")


def _files_command(argv: list[str], *, deleting: bool) -> int:
    name = "delete" if deleting else "apply"
    fs = FlagSet(f"lictor {name} -f FILE|DIR|- [options]",
                 ("Deletes the Istio resources named in the files." if deleting else
                  "Applies Istio resources (VirtualService, DestinationRule, Gateway, PeerAuthentication, "
                  "AuthorizationPolicy, RequestAuthentication, ServiceEntry, Telemetry) from multi-document YAML or JSON. "
                  "Nothing is applied unless every document is valid; Kubernetes workload kinds are skipped."))
    add_http_flags(fs, server=False)
    fs.list("f", "A YAML/JSON file, a directory of them, or - for stdin (repeatable).", metavar="path")
    fs.bool("dry-run", "Print what would be written without writing it.")
    p = parse(fs, argv)
    if p.args or not p["f"]:
        err("Must specify -f FILE|DIR|- and no positional arguments")
        return 1
    files: list[tuple[str, int | None]] = []
    text = _read(list(p["f"]), files)
    query: list[tuple[str, str | None]] = [("dry-run", None)] if p["dry-run"] else []
    client = make_client(p)
    try:
        res = client.put(f"/v1/istio/{name}", query, text.encode()).json()
    except ClientError as exc:
        err(f"Error! {_where(str(exc), files)}")
        return 1
    res["Skipped"] = [_where(n, files) for n in res.get("Skipped") or []]
    res["Warnings"] = [_where(w, files) for w in res.get("Warnings") or []]
    _report(res, "configured")
    return 0


def cmd_apply(argv: list[str]) -> int:
    return _files_command(argv, deleting=False)


def cmd_delete(argv: list[str]) -> int:
    return _files_command(argv, deleting=True)


def cmd_get(argv: list[str]) -> int:
    fs = FlagSet("lictor get [KIND [NAME]] [options]",
                 "Prints Istio resources as applied (JSON): all of them, one kind, or one by name.")
    add_http_flags(fs)
    fs.string("namespace", "The namespace of NAME.", default="default", metavar="ns")
    p = parse(fs, argv)
    if len(p.args) > 2:
        err(f"Too many arguments (expected at most 2, got {len(p.args)})")
        return 1
    client = make_client(p)
    path = "/v1/istio" + "".join("/" + quote(a, safe="") for a in p.args)
    query: list[tuple[str, str | None]] = [("namespace", p["namespace"])] if len(p.args) == 2 else []
    try:
        res = client.get_json(path, query, ok_404=True)
    except ClientError as exc:
        err(f"Error! {exc}")
        return 1
    if res is None:
        err(f"Error! {' '.join(p.args)} not found")
        return 1
    out(json.dumps(res, indent=2, sort_keys=False))
    return 0


COMMANDS = {
    "apply": (cmd_apply, "Applies Istio resources from YAML or JSON"),
    "delete": (cmd_delete, "Deletes the Istio resources named in YAML or JSON files"),
    "get": (cmd_get, "Prints applied Istio resources"),
}
