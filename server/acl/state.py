"""ACL tables: reads, API shapes, and token -> :class:`Identity` resolution from a store.

Rows are API-shaped dicts (PascalCase, as Consul's JSON) that are never mutated after they are
written: a change writes a new dict. Tables (``store.ext``), keyed by:

* ``acl_tokens``        AccessorID
* ``acl_policies``      ID
* ``acl_roles``         ID
* ``acl_auth_methods``  Name
* ``acl_binding_rules`` ID

Token links (``Policies``, ``Roles``) are stored by ID; names are filled in when read, and links
to deleted objects are dropped, as Consul does. The secret -> accessor index and the resolved
identities are derived caches kept per store and rebuilt when an ACL index row moves, so a restore
(which builds a new store) can never serve stale identities.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import weakref
from dataclasses import dataclass
from typing import Any

from lictor.common.errors import ACLNotFoundError
from lictor.server.acl.authorizer import (ANONYMOUS_ACCESSOR_ID, GLOBAL_MANAGEMENT_ID, Authorizer,
                                          build_authorizer, node_identity_policy, service_identity_policy,
                                          templated_policy)
from lictor.server.acl.rules import Policy, parse_rules
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

__all__ = [
    "ACL_TABLES",
    "BOOTSTRAP_INDEX_KEY",
    "Identity",
    "acl_index",
    "expiry_of",
    "find_token_by_secret",
    "policy_to_api",
    "resolve_identity",
    "role_to_api",
    "token_to_api",
]

ACL_TABLES = ("acl_tokens", "acl_policies", "acl_roles", "acl_auth_methods", "acl_binding_rules")
BOOTSTRAP_INDEX_KEY = "acl.bootstrap"
REDACTED = "<hidden>"


def acl_index(store: Store, ws: WatchSet | None = None, *tables: str) -> int:
    names = tables or ACL_TABLES
    store.watch(ws, *names)
    return store.index(*names)


def parse_time(value: str) -> float | None:
    if not value:
        return None
    v = value.replace("Z", "+00:00")
    return _dt.datetime.fromisoformat(v).timestamp()


def format_time(t: float) -> str:
    d = _dt.datetime.fromtimestamp(t, _dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}Z"


def expiry_of(token: dict[str, Any]) -> float | None:
    return parse_time(token.get("ExpirationTime") or "")


# ----- derived caches ------------------------------------------------------------------------------

class _Derived:
    __slots__ = ("identities", "index", "policies", "secrets")

    def __init__(self, index: int) -> None:
        self.index = index
        self.secrets: dict[str, str] = {}  # sha256(secret) -> accessor
        self.identities: dict[tuple[str, str], Identity] = {}
        self.policies: dict[str, Policy] = {}


_DERIVED: weakref.WeakKeyDictionary[Store, _Derived] = weakref.WeakKeyDictionary()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _derived(store: Store) -> _Derived:
    idx = store.index(*ACL_TABLES)
    d = _DERIVED.get(store)
    if d is None or d.index != idx:
        d = _Derived(idx)
        for acc, tok in store.ext["acl_tokens"].items():
            d.secrets[_digest(tok["SecretID"])] = acc
        _DERIVED[store] = d
    return d


def find_token_by_secret(store: Store, secret: str) -> dict[str, Any] | None:
    acc = _derived(store).secrets.get(_digest(secret))
    return store.ext["acl_tokens"].get(acc) if acc is not None else None


# ----- API shapes --------------------------------------------------------------------------------------

def _links(store: Store, table: str, links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = store.ext[table]
    out = []
    for link in links or []:
        row = rows.get(link.get("ID", ""))
        if row is not None:
            out.append({"ID": row["ID"], "Name": row["Name"]})
    return out


def token_to_api(store: Store, tok: dict[str, Any], *, redact: bool = False, stub: bool = False) -> dict[str, Any]:
    out = dict(tok)
    out["Policies"] = _links(store, "acl_policies", tok.get("Policies", []))
    out["Roles"] = _links(store, "acl_roles", tok.get("Roles", []))
    for k in ("Policies", "Roles", "ServiceIdentities", "NodeIdentities", "TemplatedPolicies"):
        if not out.get(k):
            out.pop(k, None)
    if not out.get("ExpirationTime"):
        out.pop("ExpirationTime", None)
    if not out.get("AuthMethod"):
        out.pop("AuthMethod", None)
    if redact:
        out["SecretID"] = REDACTED
    if stub:
        out["Legacy"] = False
    return out


def policy_to_api(p: dict[str, Any], *, stub: bool = False) -> dict[str, Any]:
    out = dict(p)
    if stub:
        out.pop("Rules", None)
    return out


def role_to_api(store: Store, r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["Policies"] = _links(store, "acl_policies", r.get("Policies", []))
    for k in ("Policies", "ServiceIdentities", "NodeIdentities", "TemplatedPolicies"):
        if not out.get(k):
            out.pop(k, None)
    return out


# ----- resolution ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Identity:
    """Who a secret is: its accessor ID, its merged policy (None for management) and expiry."""

    accessor_id: str
    policy: Policy | None
    management: bool
    expires: float | None
    description: str = ""

    def authorizer(self, default: str) -> Authorizer:
        if self.management:
            return build_authorizer([], default=default, management=True, accessor_id=self.accessor_id)
        return Authorizer(self.policy, default=default, accessor_id=self.accessor_id)


def _policy(store: Store, d: _Derived, pid: str) -> tuple[Policy | None, bool]:
    if pid == GLOBAL_MANAGEMENT_ID:
        return None, True
    row = store.ext["acl_policies"].get(pid)
    if row is None:
        return None, False
    pol = d.policies.get(pid)
    if pol is None:
        pol = d.policies[pid] = parse_rules(row.get("Rules") or "")
    return pol, False


def _identity_policies(obj: dict[str, Any], datacenter: str) -> list[Policy]:
    out: list[Policy] = []
    for si in obj.get("ServiceIdentities") or []:
        dcs = si.get("Datacenters") or []
        if not dcs or datacenter in dcs:
            out.append(service_identity_policy(si["ServiceName"]))
    for ni in obj.get("NodeIdentities") or []:
        if ni.get("Datacenter", datacenter) == datacenter:
            out.append(node_identity_policy(ni["NodeName"]))
    for tp in obj.get("TemplatedPolicies") or []:
        dcs = tp.get("Datacenters") or []
        if not dcs or datacenter in dcs:
            out.append(templated_policy(tp["TemplateName"], tp.get("TemplateVariables") or {}))
    return out


def identity_of_token(store: Store, tok: dict[str, Any], datacenter: str) -> Identity:
    d = _derived(store)
    key = (tok["AccessorID"], datacenter)
    hit = d.identities.get(key)
    if hit is not None:
        return hit
    policies: list[Policy] = []
    management = False
    links = list(tok.get("Policies") or [])
    roles = [store.ext["acl_roles"].get(r.get("ID", "")) for r in tok.get("Roles") or []]
    for role in roles:
        if role is not None:
            links += role.get("Policies") or []
            policies += _identity_policies(role, datacenter)
    for link in links:
        pol, mgmt = _policy(store, d, link.get("ID", ""))
        management = management or mgmt
        if pol is not None:
            policies.append(pol)
    policies += _identity_policies(tok, datacenter)
    from lictor.server.acl.rules import merge_policies

    ident = Identity(accessor_id=tok["AccessorID"], policy=None if management else merge_policies(policies),
                     management=management, expires=expiry_of(tok), description=tok.get("Description", ""))
    d.identities[key] = ident
    return ident


def resolve_identity(store: Store, secret: str, *, now: float, datacenter: str) -> Identity:
    """The identity of ``secret`` ("" = anonymous). ACLNotFoundError if unknown or expired."""
    if not secret:
        tok = store.ext["acl_tokens"].get(ANONYMOUS_ACCESSOR_ID)
        if tok is None:  # not created yet (before the leader's first round): anonymous has no rights
            return Identity(accessor_id=ANONYMOUS_ACCESSOR_ID, policy=Policy(), management=False, expires=None)
    else:
        tok = find_token_by_secret(store, secret)
        if tok is None:
            raise ACLNotFoundError()
    ident = identity_of_token(store, tok, datacenter)
    if ident.expires is not None and ident.expires <= now:
        raise ACLNotFoundError()
    return ident
