"""Policies -> an :class:`Authorizer` that answers "may this token do ``access`` on ``resource``
``name``?". Pure: no store, no clock, no I/O.

Decision for a segmented resource (``key``, ``service``, ``node`` ...), Consul's rules:

1. an *exact* rule for the name decides, if there is one;
2. otherwise the *longest prefix* rule that is a prefix of the name decides;
3. a rule's level grants: ``write`` -> read, list, write; ``list`` -> read, list; ``read`` -> read;
   ``deny`` -> nothing, and stops the search;
4. with no rule (or a rule silent on this access, such as an ``intentions``-only service rule)
   the decision falls to the next authorizer in the chain: the agent's ``default_policy``.

When several policies (a token's policies, roles, identities) name the same rule they are merged
first, and at the same specificity the strongest wins: deny > write > list > read. A deny at a
*less* specific place never beats a more specific grant (longest prefix wins).

``acl`` is special: ``default_policy = "allow"`` grants no ``acl`` access, only a policy does
(Consul's allow-all authorizer cannot manage ACLs). The ``global-management`` policy makes a
management authorizer that allows everything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lictor.server.acl.rules import SEGMENTED, SINGLE, Policy, Rule, merge_policies, parse_rules

__all__ = [
    "ANONYMOUS_ACCESSOR_ID",
    "ANONYMOUS_SECRET_ID",
    "GLOBAL_MANAGEMENT_ID",
    "GLOBAL_MANAGEMENT_NAME",
    "GLOBAL_MANAGEMENT_RULES",
    "TEMPLATED_POLICIES",
    "Authorizer",
    "Decision",
    "build_authorizer",
    "node_identity_policy",
    "service_identity_policy",
    "templated_policy",
]

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_NAME = "global-management"
GLOBAL_MANAGEMENT_RULES = """
acl = "write"
agent_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
key_prefix "" { policy = "write" }
keyring = "write"
node_prefix "" { policy = "write" }
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" { policy = "write" }
service_prefix "" { policy = "write" intentions = "write" }
session_prefix "" { policy = "write" }
"""
ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET_ID = "anonymous"


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    DEFAULT = "default"  # no rule applies: ask the next authorizer


def _enforce(level: str, access: str) -> Decision:
    if level == "write":
        return Decision.ALLOW
    if level == "list":
        return Decision.ALLOW if access in ("read", "list") else Decision.DENY
    if level == "read":
        return Decision.ALLOW if access == "read" else Decision.DENY
    if level == "deny":
        return Decision.DENY
    return Decision.DEFAULT


def _find(policy: Policy, resource: str, name: str) -> Rule | None:
    """The rule that governs ``name``: exact first, else the longest matching prefix."""
    exact = policy.exact.get(resource)
    if exact is not None and name in exact:
        return exact[name]
    prefixes = policy.prefix.get(resource)
    if not prefixes:
        return None
    best: str | None = None
    for p in prefixes:
        if name.startswith(p) and (best is None or len(p) > len(best)):
            best = p
    return prefixes[best] if best is not None else None


def _rule_level(rule: Rule, resource: str, field: str) -> str:
    if field == "intentions":
        if rule.intentions:
            return rule.intentions
        # Consul: a service rule with read or write (and no intentions field) grants intention read
        return "read" if rule.policy in ("read", "write") else ""
    return rule.policy


@dataclass(frozen=True, slots=True)
class Authorizer:
    """A token's authority: merged ``policy`` (None for management) chained to ``default``
    ("allow" or "deny"). ``accessor_id`` identifies the token in errors and audit records."""

    policy: Policy | None
    default: str = "deny"
    management: bool = False
    accessor_id: str = ""

    # ----- decisions --------------------------------------------------------------------------
    def decide(self, resource: str, access: str, name: str = "") -> Decision:
        """ALLOW or DENY (the default policy already applied)."""
        if self.management or resource == "none":
            return Decision.ALLOW
        d = self._policy_decision(resource, access, name)
        if d is not Decision.DEFAULT:
            return d
        if resource == "acl":
            return Decision.DENY  # only a policy grants acl access
        return Decision.ALLOW if self.default == "allow" else Decision.DENY

    def allowed(self, resource: str, access: str, name: str = "") -> bool:
        return self.decide(resource, access, name) is Decision.ALLOW

    def _policy_decision(self, resource: str, access: str, name: str) -> Decision:
        pol = self.policy
        if pol is None:
            return Decision.DEFAULT
        if resource in SINGLE:
            level = pol.single.get(resource, "")
            if resource == "mesh" and not level:
                level = pol.single.get("operator", "")  # mesh falls back to operator
            return _enforce(level, access)
        if resource == "intention":
            rule = _find(pol, "service", name)
            return Decision.DEFAULT if rule is None else _enforce(_rule_level(rule, "service", "intentions"), access)
        if resource not in SEGMENTED:
            raise ValueError(f"unknown ACL resource {resource!r}")
        rule = _find(pol, resource, name)
        return Decision.DEFAULT if rule is None else _enforce(rule.policy, access)

    def key_write_prefix(self, prefix: str) -> bool:
        """May this token write (delete) every key under ``prefix``? Consul's KeyWritePrefix:

        * any rule (exact or prefix) at or below ``prefix`` that does not grant write -> no;
        * else the longest *prefix* rule covering ``prefix`` decides (an exact rule on the
          prefix's own name covers that one key, not the keys that start with it);
        * no such rule -> the default policy.
        """
        if self.management:
            return True
        pol = self.policy
        if pol is None:
            return self.default == "allow"
        for kind in (pol.exact, pol.prefix):
            for name, rule in kind.get("key", {}).items():
                if name.startswith(prefix) and rule.policy and rule.policy != "write":
                    return False
        best: str | None = None
        for name, rule in pol.prefix.get("key", {}).items():
            if rule.policy and prefix.startswith(name) and (best is None or len(name) > len(best)):
                best = name
        if best is not None:
            return pol.prefix["key"][best].policy == "write"
        return self.default == "allow"

    def __repr__(self) -> str:  # never shows anything secret; the accessor ID is not a secret
        return f"Authorizer(accessor_id={self.accessor_id!r}, management={self.management}, default={self.default!r})"


# ----- synthesized policies ----------------------------------------------------------------------

def service_identity_policy(service: str) -> Policy:
    return parse_rules(f'''
service "{service}" {{ policy = "write" }}
service "{service}-sidecar-proxy" {{ policy = "write" }}
service_prefix "" {{ policy = "read" }}
node_prefix "" {{ policy = "read" }}
''')


def node_identity_policy(node: str) -> Policy:
    return parse_rules(f'''
node "{node}" {{ policy = "write" }}
service_prefix "" {{ policy = "read" }}
''')


# name -> (description, required variables, rules template with {name})
TEMPLATED_POLICIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "builtin/service": ("Gives the token or role permissions to register a service and discover services in "
                        "the Consul catalog. It also gives the specified service's sidecar proxy the permission "
                        "to discover and route traffic to other services.", ("name",),
                        'service "{name}" {{ policy = "write" }}\nservice "{name}-sidecar-proxy" '
                        '{{ policy = "write" }}\nservice_prefix "" {{ policy = "read" }}\nnode_prefix "" '
                        '{{ policy = "read" }}\n'),
    "builtin/node": ("Gives the token or role permissions for a register an agent/node into the catalog. "
                     "A node is typically a consul agent but can also be a physical server, cloud instance "
                     "or a container.", ("name",),
                     'node "{name}" {{ policy = "write" }}\nservice_prefix "" {{ policy = "read" }}\n'),
    "builtin/dns": ("Gives the token or role permissions for the Consul DNS to query services in the "
                    "network.", (),
                    'node_prefix "" {{ policy = "read" }}\nservice_prefix "" {{ policy = "read" }}\n'
                    'query_prefix "" {{ policy = "read" }}\n'),
    "builtin/api-gateway": ("Allows the API gateway to register into the catalog and discover services.",
                            ("name",),
                            'mesh = "read"\nnode_prefix "" {{ policy = "read" }}\nservice_prefix "" '
                            '{{ policy = "read" }}\nservice "{name}" {{ policy = "write" }}\n'),
}


def templated_policy_rules(template: str, variables: dict[str, str] | None) -> str:
    from lictor.common.errors import ValidationError

    spec = TEMPLATED_POLICIES.get(template)
    if spec is None:
        raise ValidationError(f"templated policy {template!r} does not exist")
    name = (variables or {}).get("name") or (variables or {}).get("Name") or ""
    if "name" in spec[1] and not name:
        raise ValidationError(f"templated policy {template!r} requires the variable name")
    if name and not _valid_identity_name(name):
        raise ValidationError(f"templated policy {template!r}: invalid name {name!r}")
    return spec[2].format(name=name)


def templated_policy(template: str, variables: dict[str, str] | None) -> Policy:
    return parse_rules(templated_policy_rules(template, variables))


def _valid_identity_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9]([a-z0-9\-_]*[a-z0-9])?", name)) and len(name) <= 256


def build_authorizer(policies: list[Policy], *, default: str, management: bool = False,
                     accessor_id: str = "") -> Authorizer:
    """The authorizer of a token whose policies (roles and identities already expanded) are given."""
    if management:
        return Authorizer(None, default=default, management=True, accessor_id=accessor_id)
    return Authorizer(merge_policies(policies), default=default, accessor_id=accessor_id)
