"""ACL.* endpoints: bootstrap, tokens, policies, roles, auth methods, binding rules, login/logout,
and ``ACL.ResolveToken`` (what an agent asks to build an Authorizer for a secret).

Every call carries the caller's secret in ``args["token"]``. Reads need ``acl:read`` (a token
may always read itself); writes need ``acl:write``. SecretIDs are shown only to callers with
``acl:write`` (others see ``<hidden>``), and never appear in errors. IDs, secrets and times are
chosen here, before proposing, so the FSM stays pure.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.duration import parse_duration
from lictor.common.errors import ACLNotFoundError, Conflict, NotFound, PermissionDeniedError, ValidationError
from lictor.server.acl import authmethod
from lictor.server.acl.authorizer import (ANONYMOUS_ACCESSOR_ID, GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME,
                                          TEMPLATED_POLICIES, _valid_identity_name)
from lictor.server.acl.config import acl_config
from lictor.server.acl.enforce import authorize, authorizer_for, denied
from lictor.server.acl.leader import global_management_policy, new_token_row
from lictor.server.acl.rules import parse_rules, policy_to_dict
from lictor.server.acl.state import (find_token_by_secret, format_time, policy_to_api, resolve_identity,
                                     role_to_api, token_to_api)
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

__all__ = ["MIN_TOKEN_TTL", "MAX_TOKEN_TTL"]

MIN_TOKEN_TTL = 1.0          # Consul: 1 minute; Lictor allows shorter for tests and short-lived jobs
MAX_TOKEN_TTL = 24 * 3600.0


def _enabled(server: Server) -> None:
    if acl_config(server) is None:
        raise ValidationError("ACL support disabled", status=401)


def _uuid(v: Any, what: str) -> str:
    """A new ID given by the caller: a UUID in its canonical 36-character form, kept as given
    (Consul stores IDs as written and looks them up case-insensitively)."""
    s = str(v)
    try:
        uuid.UUID(s)
    except ValueError:
        raise ValidationError(f"{what}: invalid UUID {v!r}") from None
    if len(s) != 36:
        raise ValidationError(f"{what}: invalid UUID {v!r}")
    return s


def _lookup_id(v: Any) -> str:
    """An ID to look up, checked as Consul's UUID index checks it (its errors answer 500)."""
    s = str(v)
    if len(s) != 36:
        raise ValidationError("UUID must be 36 characters", status=500)
    if s[8] != "-" or s[13] != "-" or s[18] != "-" or s[23] != "-":
        raise ValidationError("UUID is improperly formatted", status=500)
    try:
        bytes.fromhex(s.replace("-", ""))
    except ValueError:
        raise ValidationError(f"Invalid UUID: {s!r}", status=500) from None
    return s


def _by_id(rows: dict[str, Any], v: Any) -> tuple[str, Any]:
    """(stored key, row or None) for the ID ``v``, matched case-insensitively."""
    key = _lookup_id(v)
    row = rows.get(key)
    if row is not None:
        return key, row
    low = key.lower()
    for k, r in rows.items():
        if isinstance(k, str) and k.lower() == low:
            return k, r
    return key, None


# ----- resolution (agents) -----------------------------------------------------------------------------

@endpoint("ACL.ResolveToken")
async def resolve_token(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """The identity of ``token`` for an agent's cache: accessor, merged policy, expiry."""
    _enabled(server)
    ident = resolve_identity(server.store, str(a.get("token") or ""), now=time.time(),
                             datacenter=server.config.datacenter)
    return {"result": {"accessor_id": ident.accessor_id, "management": ident.management,
                       "policy": policy_to_dict(ident.policy) if ident.policy is not None else None,
                       "expires": ident.expires}}


# ----- bootstrap ---------------------------------------------------------------------------------------

@endpoint("ACL.Bootstrap", write=True)
async def bootstrap(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    now = time.time()
    secret = a.get("bootstrap_secret") or str(uuid.uuid4())
    tok = new_token_row(accessor=str(uuid.uuid4()), secret=_uuid(secret, "BootstrapSecret"),
                        description="Bootstrap Token (Global Management)", now=now,
                        Policies=[{"ID": GLOBAL_MANAGEMENT_ID, "Name": GLOBAL_MANAGEMENT_NAME}])
    row = await server.apply(MessageType.ACL, {"op": "bootstrap", "token": tok,
                                               "policies": [global_management_policy()]})
    return {"result": token_to_api(server.store, row)}


# ----- tokens --------------------------------------------------------------------------------------------

def _resolve_links(store: Store, table: str, links: Any, what: str) -> list[dict[str, str]]:
    out = []
    rows = store.ext[table]
    for link in links or []:
        if not isinstance(link, dict):
            raise ValidationError(f"{what} links must be objects with ID or Name")
        row = None
        if link.get("ID"):
            try:
                row = _by_id(rows, link["ID"])[1]
            except ValidationError:
                row = None
        elif link.get("Name"):
            row = next((r for r in rows.values() if r["Name"] == link["Name"]), None)
        if row is None:
            raise ValidationError(f"cannot find {what.lower()} {link.get('ID') or link.get('Name')!r}")
        if not any(x["ID"] == row["ID"] for x in out):
            out.append({"ID": row["ID"], "Name": row["Name"]})
    return out


def _identities(body: dict[str, Any], datacenter: str) -> dict[str, Any]:
    sids, nids, tps = [], [], []
    for si in body.get("ServiceIdentities") or []:
        name = si.get("ServiceName", "")
        if not _valid_identity_name(name):
            raise ValidationError(f"Service identity {name!r} has an invalid name. Only lowercase alphanumeric "
                                  "characters, '-' and '_' are allowed")
        sids.append({"ServiceName": name, **({"Datacenters": list(si["Datacenters"])} if si.get("Datacenters")
                                            else {})})
    for ni in body.get("NodeIdentities") or []:
        name = ni.get("NodeName", "")
        if not _valid_identity_name(name):
            raise ValidationError(f"Node identity {name!r} has an invalid name")
        if not ni.get("Datacenter"):
            raise ValidationError(f"Node identity {name!r} must have a Datacenter")
        nids.append({"NodeName": name, "Datacenter": ni["Datacenter"]})
    for tp in body.get("TemplatedPolicies") or []:
        tname = tp.get("TemplateName", "")
        if tname not in TEMPLATED_POLICIES:
            raise ValidationError(f"templated policy {tname!r} does not exist")
        tv = {k.lower(): v for k, v in (tp.get("TemplateVariables") or {}).items()}
        from lictor.server.acl.authorizer import templated_policy_rules
        templated_policy_rules(tname, tv)  # validates the variables
        tps.append({"TemplateName": tname, "TemplateVariables": {"name": tv["name"]} if tv.get("name") else {},
                    **({"Datacenters": list(tp["Datacenters"])} if tp.get("Datacenters") else {})})
    return {"ServiceIdentities": sids, "NodeIdentities": nids, "TemplatedPolicies": tps}


def _can_write(authz: Any) -> bool:
    return authz is None or authz.allowed("acl", "write")


@endpoint("ACL.TokenSet", write=True)
async def token_set(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Create (no AccessorID, or ``create``) or update a token. Args: ``token`` (caller), ``body``."""
    _enabled(server)
    authorize(server, a, "acl", None, "write")
    body = a.get("body") or {}
    store, now = server.store, time.time()
    acc = body.get("AccessorID") or ""
    create = bool(a.get("create"))
    if create:
        existing = _by_id(store.ext["acl_tokens"], _uuid(acc, "AccessorID"))[1] if acc else None
        if existing is not None:
            raise ValidationError("Invalid Token: AccessorID is already in use")
    else:  # an update names an existing token: never a silent create (Consul: 500)
        if not acc:
            raise ValidationError("Token AccessorID is required to update a token")
        acc, existing = _by_id(store.ext["acl_tokens"], acc)
        if existing is None:
            raise Conflict(f"Cannot find token {acc!r}")
    links = {"Policies": _resolve_links(store, "acl_policies", body.get("Policies"), "Policy"),
             "Roles": _resolve_links(store, "acl_roles", body.get("Roles"), "Role"),
             **_identities(body, server.config.datacenter)}
    if create:
        acc = _uuid(acc, "AccessorID") if acc else str(uuid.uuid4())
        secret = _uuid(body["SecretID"], "SecretID") if body.get("SecretID") else str(uuid.uuid4())
        if find_token_by_secret(store, secret) is not None:
            raise ValidationError("Invalid Token: SecretID is already in use")
        exp = ""
        if body.get("ExpirationTTL") and body.get("ExpirationTime"):
            raise ValidationError("Expiration TTL and Expiration Time cannot both be set")
        if body.get("ExpirationTTL"):
            ttl = parse_duration(str(body["ExpirationTTL"]), what="ExpirationTTL")
            if not MIN_TOKEN_TTL <= ttl <= MAX_TOKEN_TTL:
                raise ValidationError(f"ExpirationTTL cannot be less than {MIN_TOKEN_TTL:g}s or more than "
                                      f"{MAX_TOKEN_TTL / 3600:g}h")
            exp = format_time(now + ttl)
        elif body.get("ExpirationTime"):
            from lictor.server.acl.state import parse_time
            try:
                t = parse_time(str(body["ExpirationTime"]))
            except ValueError:
                raise ValidationError("ExpirationTime: invalid time") from None
            if t is None or t <= now:
                raise ValidationError("ExpirationTime cannot be in the past")
            exp = format_time(t)
        row = new_token_row(accessor=acc, secret=secret, description=str(body.get("Description") or ""), now=now,
                            Local=bool(body.get("Local")), ExpirationTime=exp, **links)
    else:
        assert existing is not None
        if body.get("SecretID") and body["SecretID"] != existing["SecretID"]:
            raise ValidationError("Changing a token's SecretID is not permitted")
        if "Local" in body and bool(body["Local"]) != bool(existing.get("Local")):
            raise ValidationError("Cannot toggle local mode of " + acc)
        if body.get("ExpirationTime") and body["ExpirationTime"] != existing.get("ExpirationTime"):
            raise ValidationError("Cannot change expiration time of " + acc)
        if acc == ANONYMOUS_ACCESSOR_ID and (links["ServiceIdentities"] or links["NodeIdentities"]):
            pass
        row = {**existing, "Description": str(body.get("Description", existing.get("Description", ""))), **links}
    out = await server.apply(MessageType.ACL, {"op": "token_set", "token": row, "must_exist": not create})
    return {"result": token_to_api(server.store, out)}


def _token_readable(server: Server, a: dict[str, Any], tok: dict[str, Any]) -> dict[str, Any]:
    authz = authorizer_for(server, a.get("token"))
    is_self = bool(a.get("token")) and a.get("token") == tok["SecretID"]
    if authz is not None and not is_self and not authz.allowed("acl", "read"):
        raise denied(authz, "acl", "read")
    return token_to_api(server.store, tok, redact=not is_self and not _can_write(authz))


@endpoint("ACL.TokenRead")
async def token_read(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    acc = _lookup_id(a.get("accessor_id") or "")
    authorize(server, a, "acl", None, "read")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, "acl_tokens")
        tok = _by_id(store.ext["acl_tokens"], acc)[1]
        return store.index("acl_tokens"), tok
    out = await blocking_read(server, a, q)
    if out["result"] is None:
        raise NotFound("ACL not found")
    out["result"] = _token_readable(server, a, out["result"])
    return out


@endpoint("ACL.TokenSelf")
async def token_self(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    secret = str(a.get("token") or "")
    tok = find_token_by_secret(server.store, secret) if secret else None
    if tok is None:
        raise ACLNotFoundError()
    resolve_identity(server.store, secret, now=time.time(), datacenter=server.config.datacenter)  # expiry
    return {"index": server.store.index("acl_tokens"), "known_leader": True, "last_contact": 0,
            "consistency": "leader", "result": token_to_api(server.store, tok)}


@endpoint("ACL.TokenList")
async def token_list(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authz = authorize(server, a, "acl", None, "read")
    redact = not _can_write(authz)
    pol, role, method, svc = (a.get(k) or "" for k in ("policy", "role", "authmethod", "servicename"))

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, "acl_tokens")
        rows = []
        for t in sorted(store.ext["acl_tokens"].values(), key=lambda t: t["CreateIndex"]):
            if pol and not any(p["ID"] == pol for p in t.get("Policies") or []):
                continue
            if role and not any(r["ID"] == role for r in t.get("Roles") or []):
                continue
            if method and t.get("AuthMethod") != method:
                continue
            if svc and not any(s["ServiceName"] == svc for s in t.get("ServiceIdentities") or []):
                continue
            rows.append(token_to_api(store, t, redact=redact, stub=True))
        return store.index("acl_tokens", "acl_policies", "acl_roles"), rows
    return await blocking_read(server, a, q)


def _existing_id(rows: dict[str, Any], rid: Any, create: bool, what: str) -> str:
    """The ID a write names: on update, the stored spelling of an existing row (an unknown one
    is an error, never a silent create); on create, a new UUID kept as given ("" for a fresh one)."""
    if create:
        if rid and _by_id(rows, _uuid(rid, "ID"))[1] is not None:
            raise ValidationError(f"Invalid {what}: ID is already in use")
        return str(rid)
    if not rid:
        return ""
    key, row = _by_id(rows, rid)
    if row is None:
        raise Conflict(f"Cannot find {what} {key!r}")
    return key


def _delete_endpoint(name: str, op: str, key: str, table: str | None = None) -> None:
    """Register ``name``: with acl:write, propose ``{"op": op, key: args[key]}`` (idempotent; the
    ID matched case-insensitively against ``table``, when given)."""

    @endpoint(name, write=True)
    async def delete(server: Server, a: dict[str, Any]) -> dict[str, Any]:
        _enabled(server)
        authorize(server, a, "acl", None, "write")
        rid = _by_id(server.store.ext[table], a.get(key) or "")[0] if table else str(a.get(key) or "")
        await server.apply(MessageType.ACL, {"op": op, key: rid})
        return {"result": True}


@endpoint("ACL.TokenDelete", write=True)
async def token_delete(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "write")
    acc, tok = _by_id(server.store.ext["acl_tokens"], a.get("accessor_id") or "")
    if acc.lower() == ANONYMOUS_ACCESSOR_ID:
        raise ValidationError("Delete operation not permitted on the anonymous token")
    if tok is not None and tok["SecretID"] == a.get("token"):
        raise ValidationError("Deletion of the request's authorization token is not permitted")
    await server.apply(MessageType.ACL, {"op": "token_delete", "ids": [acc]})
    return {"result": True}


@endpoint("ACL.TokenClone", write=True)
async def token_clone(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "write")
    _, src = _by_id(server.store.ext["acl_tokens"], a.get("accessor_id") or "")
    if src is None:
        raise ACLNotFoundError()  # Consul: 403 "ACL not found"
    if src.get("AuthMethod"):
        raise ValidationError("Cannot clone a token created from an auth method")
    now = time.time()
    row = {**src, "AccessorID": str(uuid.uuid4()), "SecretID": str(uuid.uuid4()), "CreateTime": format_time(now),
           "Description": a.get("description") if a.get("description") is not None else src.get("Description", "")}
    row.pop("CreateIndex", None)
    row.pop("ModifyIndex", None)
    out = await server.apply(MessageType.ACL, {"op": "token_set", "token": row})
    return {"result": token_to_api(server.store, out)}


# ----- policies, roles ---------------------------------------------------------------------------------------

def _named_read(table: str, shape: Any) -> Any:
    async def read(server: Server, a: dict[str, Any]) -> dict[str, Any]:
        _enabled(server)
        authorize(server, a, "acl", None, "read")
        rid, name = str(a.get("id") or ""), str(a.get("name") or "")
        if rid or not name:
            rid = _lookup_id(rid)

        def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
            store.watch(ws, table)
            rows = store.ext[table]
            row = _by_id(rows, rid)[1] if rid else next((r for r in rows.values() if r["Name"] == name), None)
            return store.index(table), (shape(store, row) if row is not None else None)
        out = await blocking_read(server, a, q)
        if out["result"] is None:
            raise NotFound("ACL not found")
        return out
    return read


def _named_list(table: str, shape: Any) -> Any:
    async def lst(server: Server, a: dict[str, Any]) -> dict[str, Any]:
        _enabled(server)
        authorize(server, a, "acl", None, "read")
        pol = a.get("policy") or ""

        def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
            store.watch(ws, table)
            rows = sorted(store.ext[table].values(), key=lambda r: r["Name"])
            if pol:
                rows = [r for r in rows if any(p["ID"] == pol for p in r.get("Policies") or [])]
            return store.index(table), [shape(store, r) for r in rows]
        return await blocking_read(server, a, q)
    return lst


endpoint("ACL.PolicyRead")(_named_read("acl_policies", lambda s, r: policy_to_api(r)))
endpoint("ACL.PolicyList")(_named_list("acl_policies", lambda s, r: policy_to_api(r, stub=True)))
endpoint("ACL.RoleRead")(_named_read("acl_roles", role_to_api))
endpoint("ACL.RoleList")(_named_list("acl_roles", role_to_api))


def _check_name(name: Any, what: str) -> str:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9\-_]{1,128}", name):
        raise ValidationError(f"Invalid {what} Name: {name!r}. Names may only contain letters, digits, '-' and '_'")
    return name


@endpoint("ACL.PolicySet", write=True)
async def policy_set(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "write")
    body = a.get("body") or {}
    rules = body.get("Rules") or ""
    if not isinstance(rules, str):
        raise ValidationError("Rules must be a string")
    parse_rules(rules)  # PolicyParseError (400) names the bad rule
    pid = _existing_id(server.store.ext["acl_policies"], body.get("ID") or "", bool(a.get("create")), "policy")
    row = {"ID": pid or str(uuid.uuid4()), "Name": _check_name(body.get("Name"), "Policy"),
           "Description": str(body.get("Description") or ""), "Rules": rules,
           "Datacenters": list(body.get("Datacenters") or [])}
    out = await server.apply(MessageType.ACL, {"op": "policy_set", "policy": row})
    return {"result": policy_to_api(out)}


_delete_endpoint("ACL.PolicyDelete", "policy_delete", "id", "acl_policies")


@endpoint("ACL.RoleSet", write=True)
async def role_set(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "write")
    body = a.get("body") or {}
    store = server.store
    rid = _existing_id(store.ext["acl_roles"], body.get("ID") or "", bool(a.get("create")), "role")
    row = {"ID": rid or str(uuid.uuid4()), "Name": _check_name(body.get("Name"), "Role"),
           "Description": str(body.get("Description") or ""),
           "Policies": _resolve_links(store, "acl_policies", body.get("Policies"), "Policy"),
           **_identities(body, server.config.datacenter), "Hash": ""}
    out = await server.apply(MessageType.ACL, {"op": "role_set", "role": row})
    return {"result": role_to_api(server.store, out)}


_delete_endpoint("ACL.RoleDelete", "role_delete", "id", "acl_roles")


# ----- auth methods and binding rules ------------------------------------------------------------------------

def _method_api(store: Store, m: dict[str, Any]) -> dict[str, Any]:
    return dict(m)


endpoint("ACL.AuthMethodList")(_named_list("acl_auth_methods", lambda s, m: {
    k: v for k, v in m.items() if k != "Config"}))


@endpoint("ACL.AuthMethodRead")
async def auth_method_read(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "read")
    m = server.store.ext["acl_auth_methods"].get(str(a.get("name") or ""))
    if m is None:
        raise NotFound("ACL not found")
    return {"index": server.store.index("acl_auth_methods"), "result": dict(m)}


@endpoint("ACL.AuthMethodSet", write=True)
async def auth_method_set(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "write")
    body = a.get("body") or {}
    name = _check_name(body.get("Name"), "Auth Method")
    mtype = body.get("Type") or ""
    existing = server.store.ext["acl_auth_methods"].get(name)
    if existing is not None and existing["Type"] != mtype:
        raise ValidationError("Invalid Auth Method: cannot change Type")
    if existing is None and a.get("update"):
        raise NotFound(f"Cannot find auth method {name!r}")
    cfg = body.get("Config") or {}
    authmethod.validate_method_config(mtype, cfg)
    max_ttl = 0.0
    if body.get("MaxTokenTTL"):
        max_ttl = parse_duration(str(body["MaxTokenTTL"]), what="MaxTokenTTL")
    locality = body.get("TokenLocality") or ""
    if locality not in ("", "local", "global"):
        raise ValidationError("Invalid Auth Method: TokenLocality should be one of 'local' or 'global' or empty")
    row = {"Name": name, "Type": mtype, "DisplayName": str(body.get("DisplayName") or ""),
           "Description": str(body.get("Description") or ""), "MaxTokenTTL": str(body.get("MaxTokenTTL") or ""),
           "MaxTokenTTLSeconds": max_ttl, "TokenLocality": locality, "Config": cfg}
    out = await server.apply(MessageType.ACL, {"op": "auth_method_set", "method": row})
    return {"result": {k: v for k, v in out.items() if k != "MaxTokenTTLSeconds"}}


_delete_endpoint("ACL.AuthMethodDelete", "auth_method_delete", "name")


@endpoint("ACL.BindingRuleList")
async def binding_rule_list(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "read")
    method = a.get("authmethod") or ""
    rows = [dict(r) for r in sorted(server.store.ext["acl_binding_rules"].values(), key=lambda r: r["CreateIndex"])
            if not method or r["AuthMethod"] == method]
    return {"index": server.store.index("acl_binding_rules"), "result": rows}


@endpoint("ACL.BindingRuleRead")
async def binding_rule_read(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "read")
    _, r = _by_id(server.store.ext["acl_binding_rules"], a.get("id") or "")
    if r is None:
        raise NotFound("ACL not found")
    return {"index": server.store.index("acl_binding_rules"), "result": dict(r)}


_BIND_TYPES = ("service", "node", "role", "policy", "templated-policy")


@endpoint("ACL.BindingRuleSet", write=True)
async def binding_rule_set(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    authorize(server, a, "acl", None, "write")
    body = a.get("body") or {}
    rid = _existing_id(server.store.ext["acl_binding_rules"], body.get("ID") or "", bool(a.get("create")),
                       "binding rule")
    method = server.store.ext["acl_auth_methods"].get(body.get("AuthMethod") or "")
    if method is None:
        raise ValidationError(f"Invalid Binding Rule: unknown auth method {body.get('AuthMethod')!r}")
    if body.get("BindType") not in _BIND_TYPES:
        raise ValidationError(f"Invalid Binding Rule: unknown BindType {body.get('BindType')!r}")
    if body["BindType"] != "templated-policy" and not body.get("BindName"):
        raise ValidationError("Invalid Binding Rule: no BindName is set")
    if body.get("Selector"):
        from lictor.common.filter import compile_filter
        try:
            compile_filter(body["Selector"])
        except ValidationError as exc:
            raise ValidationError(f"Invalid Binding Rule: Selector is invalid: {exc}") from None
    row = {"ID": rid or str(uuid.uuid4()), "Description": str(body.get("Description") or ""),
           "AuthMethod": method["Name"], "Selector": str(body.get("Selector") or ""), "BindType": body["BindType"],
           "BindName": str(body.get("BindName") or ""), "BindVars": dict(body.get("BindVars") or {})}
    out = await server.apply(MessageType.ACL, {"op": "binding_rule_set", "rule": row})
    return {"result": dict(out)}


_delete_endpoint("ACL.BindingRuleDelete", "binding_rule_delete", "id", "acl_binding_rules")


# ----- login / logout ---------------------------------------------------------------------------------------

@endpoint("ACL.Login", write=True)
async def login(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Args: ``auth_method``, ``bearer_token``, ``meta``. No caller token needed."""
    _enabled(server)
    store, now = server.store, time.time()
    method = store.ext["acl_auth_methods"].get(str(a.get("auth_method") or ""))
    if method is None:
        raise ACLNotFoundError()  # Consul: 403 "ACL not found" for an unknown auth method
    claims = authmethod.verify_jwt(str(a.get("bearer_token") or ""), method["Config"], now=now,
                                   kubernetes=method["Type"] == "kubernetes")
    variables = authmethod.identity_vars(method["Type"], method["Config"], claims)
    rules = [r for r in store.ext["acl_binding_rules"].values() if r["AuthMethod"] == method["Name"]]
    links: dict[str, list[Any]] = {"Policies": [], "Roles": [], "ServiceIdentities": [], "NodeIdentities": [],
                                   "TemplatedPolicies": []}
    for btype, bname, bvars in authmethod.bindings_for(rules, variables):
        if btype == "service":
            links["ServiceIdentities"].append({"ServiceName": bname})
        elif btype == "node":
            links["NodeIdentities"].append({"NodeName": bname, "Datacenter": server.config.datacenter})
        elif btype == "role":
            r = next((r for r in store.ext["acl_roles"].values() if r["Name"] == bname), None)
            if r is not None:
                links["Roles"].append({"ID": r["ID"], "Name": r["Name"]})
        elif btype == "policy":
            p = next((p for p in store.ext["acl_policies"].values() if p["Name"] == bname), None)
            if p is not None:
                links["Policies"].append({"ID": p["ID"], "Name": p["Name"]})
        elif btype == "templated-policy":
            links["TemplatedPolicies"].append({"TemplateName": bname, "TemplateVariables":
                                               {"name": bvars.get("name") or bvars.get("Name") or ""}})
    if not any(links.values()):
        raise PermissionDeniedError("Permission denied")
    links.update(_identities(links, server.config.datacenter))
    ttl = float(method.get("MaxTokenTTLSeconds") or 0)
    meta = a.get("meta") or {}
    desc = "token created via login" + (f": {meta}" if meta else "")
    row = new_token_row(accessor=str(uuid.uuid4()), secret=str(uuid.uuid4()), description=desc, now=now,
                        Local=method.get("TokenLocality") != "global", AuthMethod=method["Name"],
                        ExpirationTime=format_time(now + ttl) if ttl else "", **links)
    out = await server.apply(MessageType.ACL, {"op": "token_set", "token": row})
    return {"result": token_to_api(server.store, out)}


@endpoint("ACL.Logout", write=True)
async def logout(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    _enabled(server)
    secret = str(a.get("token") or "")
    tok = find_token_by_secret(server.store, secret) if secret else None
    if tok is None:
        raise ACLNotFoundError()
    if not tok.get("AuthMethod"):
        raise PermissionDeniedError("Permission denied: token was not created by an auth method")
    await server.apply(MessageType.ACL, {"op": "token_delete", "ids": [tok["AccessorID"]]})
    return {"result": True}

