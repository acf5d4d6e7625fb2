"""Prepared queries (Consul's ``/v1/query``): the ``prepared_queries`` table, its FSM command, and
the pure parts of resolving and executing a query.

Rows are Consul's API shape (``ID``, ``Name``, ``Session``, ``Token``, ``Template``, ``Service``,
``DNS``, ``CreateIndex``, ``ModifyIndex``), keyed by ID, so snapshots carry them as they are.

``MessageType.PREPARED_QUERY`` payloads, made by server/endpoints/prepared_query.py after
:func:`parse_query` validated them (the FSM checks again against its own state):

* ``{"op": "create" | "update", "query": <row without indexes>}`` -> the ID
* ``{"op": "delete", "id": ...}`` -> bool (whether it existed)

Rules kept here, as Consul's state store keeps them: a name belongs to one query (a template's
name is a prefix and belongs to one template); a name may not look like another query's ID; a
query's session must exist. A template (``Template.Type = "name_prefix_match"``) answers every
name that starts with its ``Name`` (the longest prefix wins); its strings may use ``${name.full}``,
``${name.prefix}``, ``${name.suffix}``, ``${match(N)}`` (groups of ``Template.Regexp``, run on RE2,
linear time) and ``${agent.segment}``.
"""

from __future__ import annotations

import copy
import functools
import re
import uuid
from collections.abc import Mapping
from typing import Any

import re2

from lictor.common.commands import MessageType
from lictor.common.duration import parse_duration
from lictor.common.errors import NotFound, ValidationError
from lictor.server.fsm import register_handler
from lictor.server.state.store import Store, WriteTxn

__all__ = ["TABLE", "apply_prepared_query", "filter_nodes", "get_field", "parse_query", "render", "resolve"]

TABLE = "prepared_queries"
TEMPLATE_TYPE = "name_prefix_match"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_VAR = re.compile(r"\$\{\s*([a-z.]+(?:\(\s*\d+\s*\))?)\s*\}")
MAX_REGEXP_LEN = 1024


def get_field(d: Any, key: str, default: Any = None) -> Any:
    """Consul's JSON decoding is case-insensitive on field names: the exact spelling first, else the
    first key that matches ignoring case. The ACL rules read names with this same function."""
    if not isinstance(d, Mapping):
        return default
    if key in d:
        return d[key]
    low = key.lower()
    for k, v in d.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


def _str(v: Any, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ValidationError(f"{what} must be a string")
    return v


def _str_list(v: Any, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValidationError(f"{what} must be a list of strings")
    return list(v)


def _str_map(v: Any, what: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ValidationError(f"{what} must be an object of strings")
    return dict(v)


@functools.lru_cache(maxsize=256)  # executed often, created rarely: compile each pattern once
def compile_regexp(pattern: str) -> Any:
    if len(pattern) > MAX_REGEXP_LEN:
        raise ValidationError(f"Bad Regexp: longer than {MAX_REGEXP_LEN} characters")
    try:
        return re2.compile(pattern)
    except Exception as exc:  # noqa: BLE001 - re2.error and friends
        raise ValidationError(f"Bad Regexp: {exc}") from None


def parse_query(body: Any) -> dict[str, Any]:
    """Validate and canonicalise a query from its API JSON (any key case). Raises ValidationError
    naming the field. The result has every field, in Consul's spelling, without ID or indexes."""
    if not isinstance(body, Mapping):
        raise ValidationError("Request decode failed: expected a JSON object")
    tmpl = get_field(body, "Template") or {}
    if not isinstance(tmpl, Mapping):
        raise ValidationError("Template must be an object")
    ttype = _str(get_field(tmpl, "Type"), "Template.Type")
    if ttype not in ("", TEMPLATE_TYPE):
        raise ValidationError(f"Bad Template.Type '{ttype}'")
    regexp = _str(get_field(tmpl, "Regexp"), "Template.Regexp")
    if regexp:
        if not ttype:
            raise ValidationError("Template.Regexp needs Template.Type")
        compile_regexp(regexp)
    svc = get_field(body, "Service") or {}
    if not isinstance(svc, Mapping):
        raise ValidationError("Service must be an object")
    service = _str(get_field(svc, "Service"), "Service.Service")
    if not service:
        raise ValidationError("Must provide a Service name to query")
    fo = get_field(svc, "Failover") or {}
    if not isinstance(fo, Mapping):
        raise ValidationError("Service.Failover must be an object")
    nearest = get_field(fo, "NearestN", 0) or 0
    if not isinstance(nearest, int) or isinstance(nearest, bool) or nearest < 0:
        raise ValidationError(f"Bad NearestN '{nearest}', must be >= 0")
    targets = get_field(fo, "Targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, Mapping) for t in targets):
        raise ValidationError("Service.Failover.Targets must be a list of objects")
    dns_block = get_field(body, "DNS") or {}
    if not isinstance(dns_block, Mapping):
        raise ValidationError("DNS must be an object")
    ttl = _str(get_field(dns_block, "TTL"), "DNS.TTL")
    if ttl:
        try:
            seconds = parse_duration(ttl)
        except ValidationError:
            raise ValidationError(f"Bad DNS TTL '{ttl}'") from None
        if seconds < 0:
            raise ValidationError(f"DNS TTL '{ttl}', must be >=0")
    connect = get_field(svc, "Connect") or {}
    if not isinstance(connect, Mapping):
        raise ValidationError("Service.Connect must be an object")
    only_passing = get_field(svc, "OnlyPassing", False)
    if not isinstance(only_passing, bool):
        raise ValidationError("Service.OnlyPassing must be true or false")
    name = _str(get_field(body, "Name"), "Name")
    if ttype == "" and _UUID.match(name):
        raise ValidationError("Query name cannot be a UUID")
    q = {
        "Name": name,
        "Session": _str(get_field(body, "Session"), "Session"),
        "Token": _str(get_field(body, "Token"), "Token"),
        "Template": {"Type": ttype, "Regexp": regexp, "RemoveEmptyTags": bool(get_field(tmpl, "RemoveEmptyTags", False))},
        "Service": {
            "Service": service,
            "Failover": {"NearestN": nearest, "Datacenters": _str_list(get_field(fo, "Datacenters"), "Failover.Datacenters"),
                         "Targets": [dict(t) for t in targets]},
            "OnlyPassing": only_passing,
            "IgnoreCheckIDs": _str_list(get_field(svc, "IgnoreCheckIDs"), "Service.IgnoreCheckIDs"),
            "Near": _str(get_field(svc, "Near"), "Service.Near"),
            "Tags": _str_list(get_field(svc, "Tags"), "Service.Tags"),
            "NodeMeta": _str_map(get_field(svc, "NodeMeta"), "Service.NodeMeta"),
            "ServiceMeta": _str_map(get_field(svc, "ServiceMeta"), "Service.ServiceMeta"),
            "Connect": {"Enabled": bool(get_field(connect, "Enabled", False))},
        },
        "DNS": {"TTL": ttl},
    }
    if ttype:
        render(q, name or "x", agent_segment="")  # a template that cannot render is refused now
    return q


# ----- templates -------------------------------------------------------------------------------------


def render(query: Mapping[str, Any], name: str, *, agent_segment: str = "") -> dict[str, Any]:
    """The query a template makes for ``name`` (a non-template query comes back as a copy)."""
    q = copy.deepcopy(dict(query))
    tmpl = q.get("Template") or {}
    if not tmpl.get("Type"):
        return q
    prefix = str(q.get("Name") or "")
    groups: list[str] = []
    if tmpl.get("Regexp"):
        m = compile_regexp(tmpl["Regexp"]).match(name)
        if m is not None:
            groups = [m.group(0)] + [g or "" for g in m.groups()]
    variables = {"name.full": name, "name.prefix": prefix, "name.suffix": name[len(prefix):] if name.startswith(prefix) else "",
                 "agent.segment": agent_segment}

    def sub(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            var = m.group(1).replace(" ", "")
            if var.startswith("match(") and var.endswith(")"):
                i = int(var[6:-1])
                return groups[i] if i < len(groups) else ""
            if var not in variables:
                raise ValidationError(f"Failed to render template: unknown variable '{var}'")
            return variables[var]
        return _VAR.sub(one, text)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return sub(v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    svc = walk(q["Service"])
    if tmpl.get("RemoveEmptyTags"):
        svc["Tags"] = [t for t in svc.get("Tags") or [] if t]
    q["Service"] = svc
    q["DNS"] = walk(q.get("DNS") or {})
    return q


def resolve(store: Store, id_or_name: str) -> dict[str, Any] | None:
    """The stored query an execute/explain names: by ID, then an exact (non-template) name, then
    the template with the longest name prefix of it. Not rendered."""
    table = store.ext[TABLE]
    if id_or_name in table:
        return dict(table[id_or_name])
    best: dict[str, Any] | None = None
    for q in table.values():
        name = q.get("Name") or ""
        if not q["Template"]["Type"]:
            if name and name == id_or_name:
                return dict(q)
            continue
        if id_or_name.startswith(name) and (best is None or len(name) > len(best.get("Name") or "")):
            best = q
    return dict(best) if best is not None else None


# ----- execution (pure filters over API-shaped health rows) -----------------------------------------


def filter_nodes(query: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Health (critical out; warning too with OnlyPassing; IgnoreCheckIDs skipped), tags (``!tag``
    excludes; case-insensitive), node and service metadata."""
    svc = query["Service"]
    ignore = set(svc.get("IgnoreCheckIDs") or ())
    only_passing = bool(svc.get("OnlyPassing"))
    want = [t.lower() for t in svc.get("Tags") or () if t and not t.startswith("!")]
    avoid = [t[1:].lower() for t in svc.get("Tags") or () if t.startswith("!")]
    node_meta, svc_meta = svc.get("NodeMeta") or {}, svc.get("ServiceMeta") or {}
    out = []
    for r in rows:
        ok = True
        for c in r.get("Checks") or ():
            if c.get("CheckID") in ignore:
                continue
            st = c.get("Status")
            if st in ("critical", "maintenance") or (only_passing and st != "passing"):
                ok = False
                break
        if not ok:
            continue
        tags = {t.lower() for t in (r.get("Service") or {}).get("Tags") or ()}
        if any(t not in tags for t in want) or any(t in tags for t in avoid):
            continue
        nm = (r.get("Node") or {}).get("Meta") or {}
        sm = (r.get("Service") or {}).get("Meta") or {}
        if any(nm.get(k) != v for k, v in node_meta.items()) or any(sm.get(k) != v for k, v in svc_meta.items()):
            continue
        out.append(r)
    return out


# ----- the FSM command -------------------------------------------------------------------------------


def _check_names(tx: WriteTxn, q: dict[str, Any]) -> None:
    table = tx.store.ext[TABLE]
    name, qid = q.get("Name") or "", q["ID"]
    is_tmpl = bool(q["Template"]["Type"])
    if name in table and name != qid:
        raise ValidationError(f"Name '{name}' aliases an existing query ID")
    for other in table.values():
        if other["ID"] == qid:
            continue
        if (other.get("Name") or "") == name and (name or (is_tmpl and other["Template"]["Type"])):
            raise ValidationError(f"Name '{name}' aliases an existing query name")
    if q.get("Session") and q["Session"] not in tx.store.sessions:
        raise NotFound(f"Invalid session '{q['Session']}'")


def apply_prepared_query(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    table = tx.store.ext[TABLE]
    op = p.get("op")
    if op in ("create", "update"):
        q = dict(p["query"])
        qid = str(q.get("ID") or "")
        if not qid:
            raise ValidationError("Query ID must be set")
        old = table.get(qid)
        if op == "create" and old is not None:
            raise ValidationError(f"Query ID '{qid}' already exists")
        if op == "update" and old is None:
            raise NotFound(f"Cannot modify non-existent prepared query: '{qid}'")
        canon = parse_query(q)
        canon["ID"] = qid
        _check_names(tx, canon)
        canon["CreateIndex"] = old["CreateIndex"] if old is not None else tx.index
        canon["ModifyIndex"] = tx.index
        if old is not None and {k: v for k, v in old.items() if k != "ModifyIndex"} == \
                {k: v for k, v in canon.items() if k != "ModifyIndex"}:
            return qid
        tx.put(table, qid, canon)
        tx.bump(TABLE)
        return qid
    if op == "delete":
        qid = str(p.get("id") or "")
        if tx.delete(table, qid) is None:
            return False
        tx.bump(TABLE)
        return True
    raise ValidationError(f"unknown prepared query operation {op!r}")


def new_id(store: Store) -> str:
    while True:
        qid = str(uuid.uuid4())
        if qid not in store.ext[TABLE]:
            return qid


register_handler(MessageType.PREPARED_QUERY, apply_prepared_query)
