"""``lictor acl bootstrap`` and ``lictor acl token|policy|role create|read|update|delete|list``
over ``/v1/acl`` (Consul's flags; output is Consul's ``-format=json`` shape, or a short listing)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lictor.cli.base import Exit, err, fail, make_client, out, parse, read_data_arg
from lictor.cli.flags import FlagSet, Parsed
from lictor.cli.http import ClientError, add_http_flags

__all__ = ["SUBCOMMANDS"]

Cmd = Callable[[list[str]], int]


def _show(obj: Any, fmt: str) -> None:
    if fmt == "json":
        out(json.dumps(obj, indent=4))
        return
    if isinstance(obj, list):
        for o in obj:
            _show(o, fmt)
            out()
        return
    for k, v in obj.items():
        if k in ("CreateIndex", "ModifyIndex", "Hash"):
            continue
        if isinstance(v, list):
            v = ", ".join(x.get("Name") or x.get("ServiceName") or x.get("NodeName") or x.get("TemplateName") or str(x)
                          if isinstance(x, dict) else str(x) for x in v)
        out(f"{k + ':':<20}{v}")


def _run(p: Parsed, action: str, fn: Callable[[Any], Any]) -> int:
    client = make_client(p)
    try:
        _show(fn(client), p["format"])
    except ClientError as exc:
        raise fail(f"Failed to {action}: ", exc) from None
    return 0


def _fs(usage: str, help_: str) -> FlagSet:
    fs = FlagSet(usage, help_)
    add_http_flags(fs)
    fs.string("format", "Output format: pretty or json.", default="pretty")
    return fs


def bootstrap(argv: list[str]) -> int:
    p = parse(_fs("lictor acl bootstrap [options]", "Creates the initial management token (once)."), argv)
    return _run(p, "bootstrap ACLs", lambda c: c.put_json("/v1/acl/bootstrap", {}).json())


def _links(p: Parsed) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if p["description"]:
        body["Description"] = p["description"]
    pols = [{"ID": x} for x in p["policy-id"]] + [{"Name": x} for x in p["policy-name"]]
    if pols:
        body["Policies"] = pols
    if "role-id" in p.values:
        roles = [{"ID": x} for x in p["role-id"]] + [{"Name": x} for x in p["role-name"]]
        if roles:
            body["Roles"] = roles
    if p["service-identity"]:
        body["ServiceIdentities"] = [{"ServiceName": s.split(":")[0],
                                      **({"Datacenters": s.split(":")[1].split(",")} if ":" in s else {})}
                                     for s in p["service-identity"]]
    if p["node-identity"]:
        body["NodeIdentities"] = [{"NodeName": s.split(":")[0], "Datacenter": s.split(":")[1]}
                                  for s in p["node-identity"]]
    return body


def _link_flags(fs: FlagSet, roles: bool) -> None:
    fs.string("description", "A description.")
    fs.list("policy-id", "ID of a policy to link (repeatable).")
    fs.list("policy-name", "Name of a policy to link (repeatable).")
    if roles:
        fs.list("role-id", "ID of a role to link (repeatable).")
        fs.list("role-name", "Name of a role to link (repeatable).")
    fs.list("service-identity", "NAME[:DC1,DC2] service identity (repeatable).")
    fs.list("node-identity", "NAME:DC node identity (repeatable).")


def token_create(argv: list[str]) -> int:
    fs = _fs("lictor acl token create [options]", "Creates a token.")
    _link_flags(fs, True)
    fs.string("secret", "The SecretID (generated when empty).")
    fs.string("accessor", "The AccessorID (generated when empty).")
    fs.string("expires-ttl", "Time until the token expires, e.g. 1h.")
    fs.bool("local", "Create a datacenter-local token.")
    p = parse(fs, argv)
    body = _links(p)
    for flag, key in (("secret", "SecretID"), ("accessor", "AccessorID"), ("expires-ttl", "ExpirationTTL")):
        if p[flag]:
            body[key] = p[flag]
    if p["local"]:
        body["Local"] = True
    return _run(p, "create token", lambda c: c.put_json("/v1/acl/token", body).json())


def _id_flag(fs: FlagSet) -> None:
    fs.string("id", "The ID (a token's AccessorID).")


def _need_id(p: Parsed) -> str:
    if not p["id"]:
        err("Must specify the -id parameter")
        raise Exit(1)
    return str(p["id"])


def token_read(argv: list[str]) -> int:
    fs = _fs("lictor acl token read [options]", "Reads a token.")
    _id_flag(fs)
    fs.bool("self", "Read the token used for the request.")
    p = parse(fs, argv)
    path = "/v1/acl/token/self" if p["self"] else f"/v1/acl/token/{_need_id(p)}"
    return _run(p, "read token", lambda c: c.get_json(path))


def token_update(argv: list[str]) -> int:
    fs = _fs("lictor acl token update [options]", "Updates a token (the links given replace the old ones).")
    _id_flag(fs)
    _link_flags(fs, True)
    p = parse(fs, argv)
    tid = _need_id(p)

    def do(c: Any) -> Any:
        cur = c.get_json(f"/v1/acl/token/{tid}")
        body = {k: cur[k] for k in ("Description", "Policies", "Roles", "ServiceIdentities", "NodeIdentities")
                if k in cur}
        body.update(_links(p))
        return c.put_json(f"/v1/acl/token/{tid}", body).json()
    return _run(p, "update token", do)


def _delete(kind: str) -> Cmd:
    def cmd(argv: list[str]) -> int:
        fs = _fs(f"lictor acl {kind} delete [options]", f"Deletes a {kind}.")
        _id_flag(fs)
        p = parse(fs, argv)
        i = _need_id(p)
        client = make_client(p)
        try:
            client.request("DELETE", f"/v1/acl/{kind}/{i}")
        except ClientError as exc:
            raise fail(f"Failed to delete {kind} {i}: ", exc) from None
        out(f"{kind.capitalize()} {i!r} deleted successfully")
        return 0
    return cmd


def _list(kind: str, plural: str) -> Cmd:
    def cmd(argv: list[str]) -> int:
        p = parse(_fs(f"lictor acl {kind} list [options]", f"Lists {plural}."), argv)
        return _run(p, f"list {plural}", lambda c: c.get_json(f"/v1/acl/{plural}"))
    return cmd


def policy_create(argv: list[str]) -> int:
    fs = _fs("lictor acl policy create [options]", "Creates a policy.")
    fs.string("name", "The policy's name.")
    fs.string("description", "A description.")
    fs.string("rules", "The rules (HCL or JSON); @file reads a file, - reads stdin.")
    fs.list("valid-datacenter", "Datacenter where the policy is valid (repeatable).")
    p = parse(fs, argv)
    rules = read_data_arg(p["rules"], "rules").decode() if p["rules"] else ""
    body = {"Name": p["name"], "Description": p["description"], "Rules": rules,
            "Datacenters": list(p["valid-datacenter"])}
    return _run(p, "create policy", lambda c: c.put_json("/v1/acl/policy", body).json())


def policy_read(argv: list[str]) -> int:
    fs = _fs("lictor acl policy read [options]", "Reads a policy.")
    _id_flag(fs)
    fs.string("name", "The policy's name.")
    p = parse(fs, argv)
    path = f"/v1/acl/policy/name/{p['name']}" if p["name"] else f"/v1/acl/policy/{_need_id(p)}"
    return _run(p, "read policy", lambda c: c.get_json(path))


def policy_update(argv: list[str]) -> int:
    fs = _fs("lictor acl policy update [options]", "Updates a policy.")
    _id_flag(fs)
    fs.string("name", "A new name.")
    fs.string("description", "A new description.")
    fs.string("rules", "New rules; @file reads a file.")
    p = parse(fs, argv)
    pid = _need_id(p)

    def do(c: Any) -> Any:
        cur = c.get_json(f"/v1/acl/policy/{pid}")
        body = {"Name": p["name"] or cur["Name"], "Description": p["description"] or cur.get("Description", ""),
                "Rules": read_data_arg(p["rules"], "rules").decode() if p["rules"] else cur.get("Rules", ""),
                "Datacenters": cur.get("Datacenters") or []}
        return c.put_json(f"/v1/acl/policy/{pid}", body).json()
    return _run(p, "update policy", do)


def role_create(argv: list[str]) -> int:
    fs = _fs("lictor acl role create [options]", "Creates a role.")
    fs.string("name", "The role's name.")
    _link_flags(fs, False)
    p = parse(fs, argv)
    body = {"Name": p["name"], **_links(p)}
    return _run(p, "create role", lambda c: c.put_json("/v1/acl/role", body).json())


def role_read(argv: list[str]) -> int:
    fs = _fs("lictor acl role read [options]", "Reads a role.")
    _id_flag(fs)
    fs.string("name", "The role's name.")
    p = parse(fs, argv)
    path = f"/v1/acl/role/name/{p['name']}" if p["name"] else f"/v1/acl/role/{_need_id(p)}"
    return _run(p, "read role", lambda c: c.get_json(path))


def role_update(argv: list[str]) -> int:
    fs = _fs("lictor acl role update [options]", "Updates a role (the links given replace the old ones).")
    _id_flag(fs)
    fs.string("name", "A new name.")
    _link_flags(fs, False)
    p = parse(fs, argv)
    rid = _need_id(p)

    def do(c: Any) -> Any:
        cur = c.get_json(f"/v1/acl/role/{rid}")
        body = {k: cur[k] for k in ("Name", "Description", "Policies", "ServiceIdentities", "NodeIdentities")
                if k in cur}
        body.update(_links(p))
        if p["name"]:
            body["Name"] = p["name"]
        return c.put_json(f"/v1/acl/role/{rid}", body).json()
    return _run(p, "update role", do)


def _group(subs: dict[str, tuple[Cmd, str]], name: str) -> Cmd:
    def run(argv: list[str]) -> int:
        if not argv or argv[0] not in subs:
            out(f"Usage: lictor acl {name} <subcommand> [options]\n\nSubcommands:")
            for k, (_, h) in subs.items():
                out(f"    {k:<10}{h}")
            return 0 if argv and argv[0] in ("-h", "--help") else 1
        return subs[argv[0]][0](argv[1:])
    return run


SUBCOMMANDS: dict[str, tuple[Cmd, str]] = {
    "bootstrap": (bootstrap, "Bootstrap the ACL system"),
    "token": (_group({"create": (token_create, "Create a token"), "read": (token_read, "Read a token"),
                      "update": (token_update, "Update a token"), "delete": (_delete("token"), "Delete a token"),
                      "list": (_list("token", "tokens"), "List tokens")}, "token"), "Manage tokens"),
    "policy": (_group({"create": (policy_create, "Create a policy"), "read": (policy_read, "Read a policy"),
                       "update": (policy_update, "Update a policy"), "delete": (_delete("policy"), "Delete a policy"),
                       "list": (_list("policy", "policies"), "List policies")}, "policy"), "Manage policies"),
    "role": (_group({"create": (role_create, "Create a role"), "read": (role_read, "Read a role"),
                     "update": (role_update, "Update a role"), "delete": (_delete("role"), "Delete a role"),
                     "list": (_list("role", "roles"), "List roles")}, "role"), "Manage roles"),
}
