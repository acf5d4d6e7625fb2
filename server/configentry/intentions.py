"""Intentions: the sources of ``service-intentions`` entries seen as Consul's Intention values,
their precedence, matching, and the allow/deny decision (L4 and L7), as pure functions.

Precedence (Consul's table; higher wins, at most one intention per level for a given pair)::

    source ns  source name  dest ns  dest name   precedence
    exact      exact        exact    exact       9
    exact      *            exact    exact       8
    *          *            exact    exact       7
    exact      exact        exact    *           6
    exact      *            exact    *           5
    *          *            exact    *           4
    exact      exact        *        *           3
    exact      *            *        *           2
    *          *            *        *           1

i.e. 3 x (exact parts of the destination) + (exact parts of the source) + 1 — destination
specificity always dominates.

Decision for (source, destination), :func:`intention_decision`:

1. The matching intention with the highest precedence decides; none -> the default policy.
2. Action allow/deny decides at L4. An intention with L7 ``Permissions`` decides nothing at L4:
   an L4 check (no request) is *denied*, as Consul's ``/check`` answers.
3. With a request, permissions are tried in order; the first that matches decides (allow/deny);
   none -> the default policy. An entry-level ``JWT`` requirement must also be met to allow.

Default policy (:func:`default_allow`): the ACL default policy when ACLs are enabled (hook:
``acl_enabled``/``acl_default_policy``), else allow; a ``mesh`` entry with
``DefaultIntentionPolicy = "deny"`` or the agent setting ``config_default="deny"`` turns it to deny.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lictor.common.errors import ValidationError
from lictor.common.regex import Pattern, RegexError, compile_pattern
from lictor.server.configentry.entries import (DEFAULT_NS, MESH, SERVICE_INTENTIONS, EntryView, as_view,
                                               decode_entry)
from lictor.server.configentry.entries import INTENTION_SOURCE, _decode_obj

__all__ = [
    "Decision",
    "Intention",
    "L7Request",
    "all_intentions",
    "default_allow",
    "intention_decision",
    "intention_to_api",
    "match_intentions",
    "parse_service_ref",
    "permission_matches",
    "precedence",
    "source_from_api",
]

WILDCARD = "*"


def precedence(src_ns: str, src_name: str, dst_ns: str, dst_name: str) -> int:
    dst_exact = (dst_ns != WILDCARD) + (dst_name != WILDCARD)
    src_exact = (src_ns != WILDCARD) + (src_name != WILDCARD)
    return 3 * dst_exact + src_exact + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Intention:
    source_ns: str
    source_name: str
    destination_ns: str
    destination_name: str
    action: str = ""  # "" when permissions decide
    permissions: tuple[dict[str, Any], ...] = ()
    description: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)
    jwt: Mapping[str, Any] | None = None  # the destination entry's JWT requirement
    legacy_id: str = ""
    create_index: int = 0
    modify_index: int = 0

    @property
    def precedence(self) -> int:
        return precedence(self.source_ns, self.source_name, self.destination_ns, self.destination_name)

    def sort_key(self) -> tuple[Any, ...]:
        """Highest precedence first; ties by names, for a stable order."""
        return (-self.precedence, self.destination_ns, self.destination_name, self.source_ns, self.source_name)


def intentions_of_entry(body: Mapping[str, Any], create_index: int = 0, modify_index: int = 0) -> list[Intention]:
    dst_ns = body.get("Namespace") or DEFAULT_NS
    return [Intention(source_ns=s.get("Namespace") or DEFAULT_NS, source_name=s["Name"], destination_ns=dst_ns,
                      destination_name=body["Name"], action=s.get("Action", ""),
                      permissions=tuple(s.get("Permissions") or ()), description=s.get("Description", ""),
                      meta=s.get("LegacyMeta") or {}, jwt=body.get("JWT"), legacy_id=s.get("LegacyID", ""),
                      create_index=create_index, modify_index=modify_index)
            for s in body.get("Sources") or []]


def all_intentions(source: Any) -> list[Intention]:
    """Every intention of a store (with the entry's indexes) or of a view, in precedence order."""
    out: list[Intention] = []
    if hasattr(source, "ext"):
        for (kind, _), row in source.ext["config_entries"].items():
            if kind == SERVICE_INTENTIONS:
                out += intentions_of_entry(row.body, row.create_index, row.modify_index)
    else:
        for body in source.list(SERVICE_INTENTIONS):
            out += intentions_of_entry(body)
    out.sort(key=Intention.sort_key)
    return out


def intention_to_api(ix: Intention) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": ix.legacy_id, "Description": ix.description,
        "SourceNS": ix.source_ns, "SourceName": ix.source_name, "SourcePartition": "default",
        "DestinationNS": ix.destination_ns, "DestinationName": ix.destination_name,
        "DestinationPartition": "default", "SourceType": "consul",
    }
    if ix.action:
        out["Action"] = ix.action
    if ix.permissions:
        out["Permissions"] = list(ix.permissions)
    out.update({"Meta": dict(ix.meta), "Precedence": ix.precedence, "CreateIndex": ix.create_index,
                "ModifyIndex": ix.modify_index})
    return out


def parse_service_ref(text: str, what: str) -> tuple[str, str]:
    """``name`` or ``namespace/name`` -> (namespace, name)."""
    if not text:
        raise ValidationError(f"Missing {what}: give a service name (or namespace/name)")
    parts = text.split("/")
    if len(parts) == 1:
        return DEFAULT_NS, parts[0]
    if len(parts) == 2 and all(parts):
        if parts[0] == WILDCARD and parts[1] != WILDCARD:
            raise ValidationError(f"Invalid {what} {text!r}: a wildcard namespace requires a wildcard name")
        return parts[0], parts[1]
    raise ValidationError(f"Invalid {what} {text!r}: expected name or namespace/name")


def _ns_matches(pattern: str, value: str) -> bool:
    return pattern == WILDCARD or pattern == value


def _matches(ix: Intention, by: str, ns: str, name: str) -> bool:
    if by == "destination":
        return _ns_matches(ix.destination_ns, ns) and _ns_matches(ix.destination_name, name)
    return _ns_matches(ix.source_ns, ns) and _ns_matches(ix.source_name, name)


def match_intentions(intentions: Iterable[Intention], by: str, ns: str, name: str) -> list[Intention]:
    """Intentions that apply to service ns/name as a ``by`` ("source"|"destination"), highest
    precedence first (Consul's ``/match``)."""
    if by not in ("source", "destination"):
        raise ValidationError(f"Invalid 'by' value {by!r}: must be source or destination")
    return sorted((ix for ix in intentions if _matches(ix, by, ns, name)), key=Intention.sort_key)


def source_from_api(data: Mapping[str, Any], *, source_ns: str, source_name: str) -> dict[str, Any]:
    """The service-intentions source for a ``PUT /v1/connect/intentions/exact`` body."""
    fields = {str(k).lower().replace("_", ""): v for k, v in data.items()}
    for ignored in ("id", "sourcens", "sourcename", "destinationns", "destinationname", "sourcepartition",
                    "destinationpartition", "precedence", "createindex", "modifyindex", "hash", "createdat",
                    "updatedat", "legacyid"):
        fields.pop(ignored, None)
    src: dict[str, Any] = {"Name": source_name}
    if source_ns != DEFAULT_NS:
        src["Namespace"] = source_ns
    mapping = {"action": "Action", "permissions": "Permissions", "description": "Description",
               "sourcetype": "Type", "meta": "LegacyMeta"}
    for k, v in fields.items():
        if k not in mapping:
            raise ValidationError(f"{k}: unknown field")
        if v is not None:
            src[mapping[k]] = v
    return _decode_obj(INTENTION_SOURCE, src, "")


def upsert_source(entry: Mapping[str, Any] | None, dest_ns: str, dest_name: str,
                  source: dict[str, Any]) -> dict[str, Any]:
    """The service-intentions entry after setting one source (replacing the same ns/name)."""
    if entry is None:
        body: dict[str, Any] = {"Kind": SERVICE_INTENTIONS, "Name": dest_name}
        if dest_ns != DEFAULT_NS:
            body["Namespace"] = dest_ns
        sources: list[dict[str, Any]] = []
    else:
        body = dict(entry)
        sources = list(entry.get("Sources") or [])
    key = (source["Name"], source.get("Namespace") or DEFAULT_NS)
    sources = [s for s in sources if (s["Name"], s.get("Namespace") or DEFAULT_NS) != key]
    sources.append(source)
    body["Sources"] = sources
    return decode_entry(body)


def remove_source(entry: Mapping[str, Any], source_ns: str, source_name: str) -> dict[str, Any] | None:
    """The entry without one source; None when no source is left (the entry goes away)."""
    sources = [s for s in entry.get("Sources") or []
               if (s["Name"], s.get("Namespace") or DEFAULT_NS) != (source_name, source_ns)]
    if not sources:
        return None
    return {**entry, "Sources": sources}


# --------------------------------------------------------------------------------------------
# Decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class L7Request:
    """What an L7 decision looks at. ``jwt`` maps a provider name to the claims of a token that
    provider's keys verified (verification itself is the data plane's job)."""

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    jwt: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    reason: str
    intention: Intention | None = None
    default: bool = False  # decided by the default policy

    @property
    def has_permissions(self) -> bool:
        return bool(self.intention and self.intention.permissions)


def default_allow(source: Any, *, acl_enabled: bool = False, acl_default_policy: str = "allow",
                  config_default: str = "") -> bool:
    """Consul's rule for pairs with no intention: the ACL default policy when ACLs are enabled,
    otherwise allow; overridden to deny mesh-wide by the mesh entry or the agent configuration."""
    allow = acl_default_policy == "allow" if acl_enabled else True
    mesh = as_view(source).get(MESH, "mesh") or {}
    if mesh.get("DefaultIntentionPolicy") == "deny" or config_default == "deny":
        return False
    return allow


def _header_matches(rule: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(str(rule.get("Name", "")).lower())
    if rule.get("Present"):
        result = value is not None
    elif value is None:
        result = False
    else:
        ci = bool(rule.get("IgnoreCase"))
        v = value.lower() if ci else value

        def want(k: str) -> str:
            s = str(rule[k])
            return s.lower() if ci else s
        if rule.get("Exact"):
            result = v == want("Exact")
        elif rule.get("Prefix"):
            result = v.startswith(want("Prefix"))
        elif rule.get("Suffix"):
            result = v.endswith(want("Suffix"))
        elif rule.get("Contains"):
            result = want("Contains") in v
        elif rule.get("Regex"):
            result = _fullmatch(rule["Regex"], value)
        else:
            result = False
    return not result if rule.get("Invert") else result


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Pattern | None:
    try:
        return compile_pattern(pattern)
    except RegexError:
        return None  # stored before validation used RE2: a pattern RE2 refuses matches nothing


def _fullmatch(pattern: Any, text: str) -> bool:
    rx = _compiled(str(pattern))
    return rx is not None and rx.fullmatch(text)


def _claim(claims: Mapping[str, Any], path: list[str]) -> Any:
    cur: Any = claims
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _jwt_satisfied(req: Mapping[str, Any] | None, request: L7Request) -> bool:
    providers = (req or {}).get("Providers") or []
    if not providers:
        return True
    for prov in providers:
        claims = request.jwt.get(prov.get("Name", ""))
        if claims is None:
            continue
        ok = True
        for c in prov.get("VerifyClaims") or []:
            got = _claim(claims, list(c.get("Path") or []))
            want = c.get("Value")
            if not (got == want or (isinstance(got, list) and want in got)):
                ok = False
                break
        if ok:
            return True
    return False


def permission_matches(perm: Mapping[str, Any], request: L7Request) -> bool:
    """Does one L7 permission match the request (path, headers, methods and JWT all must)?"""
    http = perm.get("HTTP") or {}
    if http.get("PathExact") and request.path != http["PathExact"]:
        return False
    if http.get("PathPrefix") and not request.path.startswith(http["PathPrefix"]):
        return False
    if http.get("PathRegex") and not _fullmatch(http["PathRegex"], request.path):
        return False
    for rule in http.get("Header") or []:
        if not _header_matches(rule, request.headers):
            return False
    methods = http.get("Methods") or []
    if methods and request.method.upper() not in methods:
        return False
    return _jwt_satisfied(perm.get("JWT"), request)


def intention_decision(source: Any, source_name: str, destination: str, *, source_ns: str = DEFAULT_NS,
                       destination_ns: str = DEFAULT_NS, request: L7Request | None = None,
                       default: bool | None = None) -> Decision:
    """Allow or deny ``source_ns/source_name`` -> ``destination_ns/destination``, from the
    intentions of ``source`` (a Store, or an EntryView). ``default`` overrides the computed
    default policy (see :func:`default_allow`)."""
    view: EntryView = as_view(source)
    dflt = default_allow(view) if default is None else default
    candidates = [ix for ix in all_intentions(source)
                  if _matches(ix, "destination", destination_ns, destination)
                  and _matches(ix, "source", source_ns, source_name)]
    if not candidates:
        return Decision(allowed=dflt, reason=f"no intention matches; default policy {'allow' if dflt else 'deny'}",
                        default=True)
    ix = candidates[0]
    label = f"intention {ix.source_ns}/{ix.source_name} => {ix.destination_ns}/{ix.destination_name}"
    if ix.permissions:
        if request is None:
            return Decision(allowed=False, intention=ix,
                            reason=f"{label} has L7 permissions; an L4 check is denied")
        for i, perm in enumerate(ix.permissions):
            if permission_matches(perm, request):
                allowed = perm.get("Action") == "allow" and _jwt_satisfied(ix.jwt, request)
                return Decision(allowed=allowed, intention=ix,
                                reason=f"{label} Permissions[{i}] matches: {perm.get('Action')}")
        return Decision(allowed=dflt, intention=ix, default=True,
                        reason=f"{label}: no permission matches; default policy {'allow' if dflt else 'deny'}")
    allowed = ix.action == "allow"
    if allowed and request is not None and not _jwt_satisfied(ix.jwt, request):
        return Decision(allowed=False, intention=ix, reason=f"{label}: the JWT requirement is not met")
    return Decision(allowed=allowed, intention=ix, reason=f"{label}: {ix.action}")
