"""The ACL rule language (Consul's): HCL or JSON policy documents parsed into a :class:`Policy`.

::

    key_prefix "app/" { policy = "read" }        # prefix rule: every key starting with "app/"
    key "app/secret"   { policy = "deny" }       # exact rule: this key only
    service "web"      { policy = "write"  intentions = "read" }
    operator = "read"                            # single-valued resources
    acl      = "write"

Resources with a name (segmented): ``agent``, ``event``, ``key``, ``node``, ``query``,
``service``, ``session`` (each with an ``*_prefix`` form). Single-valued: ``acl``, ``keyring``,
``mesh``, ``operator``, ``peering``. Access levels: ``read`` < ``list`` < ``write``, and ``deny``
(``list`` only for ``key``). The parser is strict: an unknown resource, a bad level or a block of
the wrong shape is an error that names the offending rule (``key_prefix "app/": invalid policy
"wirte"``), so a typo never silently grants or withholds access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lictor.common.errors import ConfigError, ValidationError

__all__ = [
    "ACCESS_LEVELS",
    "SEGMENTED",
    "SINGLE",
    "Policy",
    "PolicyParseError",
    "Rule",
    "merge_policies",
    "parse_rules",
    "policy_to_dict",
]

ACCESS_LEVELS = ("read", "list", "write", "deny")
SEGMENTED = ("agent", "event", "key", "node", "query", "service", "session")
SINGLE = ("acl", "keyring", "mesh", "operator", "peering")

# Which level wins when two policies name the same rule (Consul's takesPrecedenceOver).
_PRECEDENCE = {"deny": 4, "write": 3, "list": 2, "read": 1, "": 0}


class PolicyParseError(ValidationError):
    """A policy document is invalid; the message names the rule."""

    error_code = "PolicyParse"  # stable across RPC (lictor.common.rpc.errmap)


@dataclass(frozen=True, slots=True)
class Rule:
    """One segmented rule: ``policy`` for the resource, and for services ``intentions``."""

    policy: str = ""
    intentions: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed document: ``exact[resource][name]`` and ``prefix[resource][name]`` rules plus the
    single-valued levels in ``single[resource]``."""

    exact: dict[str, dict[str, Rule]] = field(default_factory=dict)
    prefix: dict[str, dict[str, Rule]] = field(default_factory=dict)
    single: dict[str, str] = field(default_factory=dict)


def _level(value: Any, where: str, *, allow_list: bool = False) -> str:
    if not isinstance(value, str):
        raise PolicyParseError(f"{where}: policy must be a string, got {type(value).__name__}")
    if value not in ACCESS_LEVELS:
        raise PolicyParseError(f"{where}: invalid policy {value!r} (use read, write, deny"
                               f"{', list' if allow_list else ''})")
    if value == "list" and not allow_list:
        raise PolicyParseError(f"{where}: invalid policy 'list' (list is only valid for key rules)")
    return value


def _blocks(value: Any, where: str) -> list[tuple[str, Any]]:
    """``{"name": {...}}`` or a list of such maps (HCL repeats) -> [(name, body)]."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise PolicyParseError(f"{where}: expected a block like {where} \"name\" {{ policy = \"read\" }}")
        out.extend(item.items())
    return out


def _parse_doc(doc: dict[str, Any]) -> Policy:
    pol = Policy()
    for key, value in doc.items():
        if key in SINGLE:
            if isinstance(value, dict) and "policy" in value:  # tolerate `operator { policy = "read" }`
                value = value["policy"]
            lvl = _level(value, key)
            pol.single[key] = _strongest(pol.single.get(key, ""), lvl)
            continue
        base, is_prefix = (key[:-7], True) if key.endswith("_prefix") else (key, False)
        if base not in SEGMENTED:
            raise PolicyParseError(f"unknown rule resource {key!r}")
        target = (pol.prefix if is_prefix else pol.exact).setdefault(base, {})
        for name, body in _blocks(value, key):
            where = f'{key} "{name}"'
            if not isinstance(body, dict):
                raise PolicyParseError(f"{where}: expected a block with policy = \"...\"")
            unknown = set(body) - ({"policy", "intentions"} if base == "service" else {"policy"})
            if unknown:
                raise PolicyParseError(f"{where}: unknown field {sorted(unknown)[0]!r}")
            lvl = _level(body["policy"], where, allow_list=base == "key") if "policy" in body else ""
            intentions = _level(body["intentions"], f"{where}: intentions") if "intentions" in body else ""
            if not lvl and not intentions:
                raise PolicyParseError(f"{where}: missing policy")
            old = target.get(name)
            target[name] = Rule(lvl, intentions) if old is None else _merge_rule(old, Rule(lvl, intentions))
    return pol


def parse_rules(text: str) -> Policy:
    """Parse a policy document (HCL or JSON, guessed like Consul: JSON when it starts with "{")."""
    text = text or ""
    if not text.strip():
        return Policy()
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyParseError(f"Failed to parse ACL rules: line {exc.lineno}, column {exc.colno}: "
                                   f"invalid JSON: {exc.msg}") from None
    else:
        from lictor.common.config_file import parse_text
        try:
            doc = parse_text(text, "rules", "hcl")
        except ConfigError as exc:
            raise PolicyParseError(f"Failed to parse ACL rules: {exc}") from None
    if not isinstance(doc, dict):
        raise PolicyParseError("Failed to parse ACL rules: expected an object at the top level")
    try:
        return _parse_doc(doc)
    except PolicyParseError as exc:
        raise PolicyParseError(f"Failed to parse ACL rules: {exc}") from None


def _strongest(a: str, b: str) -> str:
    return a if _PRECEDENCE[a] >= _PRECEDENCE[b] else b


def _merge_rule(a: Rule, b: Rule) -> Rule:
    return Rule(_strongest(a.policy, b.policy), _strongest(a.intentions, b.intentions))


def merge_policies(policies: list[Policy]) -> Policy:
    """One policy from many: for the same rule the strongest level wins (deny > write > list > read)."""
    out = Policy()
    for p in policies:
        for kind_src, kind_dst in ((p.exact, out.exact), (p.prefix, out.prefix)):
            for res, rules in kind_src.items():
                dst = kind_dst.setdefault(res, {})
                for name, rule in rules.items():
                    old = dst.get(name)
                    dst[name] = rule if old is None else _merge_rule(old, rule)
        for res, lvl in p.single.items():
            out.single[res] = _strongest(out.single.get(res, ""), lvl)
    return out


def policy_to_dict(p: Policy) -> dict[str, Any]:
    """A msgpack/JSON-able form (what servers send agents): the Consul JSON rule shape."""
    doc: dict[str, Any] = dict(p.single)
    for kind, suffix in ((p.exact, ""), (p.prefix, "_prefix")):
        for res, rules in kind.items():
            doc[res + suffix] = {n: {k: v for k, v in (("policy", r.policy), ("intentions", r.intentions)) if v}
                                 for n, r in rules.items()}
    return doc


def policy_from_dict(doc: dict[str, Any]) -> Policy:
    return _parse_doc(doc)
