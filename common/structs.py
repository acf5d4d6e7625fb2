"""Frozen wire values shared by the state store, the RPC layer and the HTTP API.

Rows are immutable: a change makes a new row with ``dataclasses.replace``. That keeps the state
store's undo log exact and lets a snapshot share rows with the live tables.

Python names are snake_case; ``*_to_api`` functions give Consul's PascalCase JSON shapes. Nested
free-form structures (Proxy, Connect, TaggedAddresses, check Definition) are kept in their API
shape as plain dicts, because Lictor does not interpret them at this layer.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CheckRow",
    "KVEntry",
    "Node",
    "ServiceRow",
    "Session",
    "check_to_api",
    "kv_to_api",
    "node_to_api",
    "service_to_agent_api",
    "service_to_catalog_api",
    "session_to_api",
]

_EMPTY: dict[str, Any] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    node: str
    id: str = ""
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: Node) -> bool:
        return (self.id, self.address, self.tagged_addresses, self.meta) == (
            other.id, other.address, other.tagged_addresses, other.meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRow:
    """One service instance registered on one node (Consul's ServiceNode / NodeService)."""

    node: str
    id: str
    service: str
    kind: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    tagged_addresses: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    port: int = 0
    socket_path: str = ""
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    enable_tag_override: bool = False
    proxy: dict[str, Any] = field(default_factory=dict)
    connect: dict[str, Any] = field(default_factory=dict)
    locality: dict[str, Any] | None = None
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: ServiceRow) -> bool:
        a = _service_content(self)
        b = _service_content(other)
        return a == b


def _service_content(s: ServiceRow) -> tuple[Any, ...]:
    return (s.service, s.kind, s.tags, s.address, s.tagged_addresses, s.meta, s.port, s.socket_path,
            s.weights, s.enable_tag_override, s.proxy, s.connect, s.locality)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRow:
    node: str
    check_id: str
    name: str = ""
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: str = ""
    timeout: str = ""
    exposed_port: int = 0
    definition: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: CheckRow) -> bool:
        return (self.name, self.status, self.notes, self.output, self.service_id, self.service_name,
                self.service_tags, self.type, self.interval, self.timeout, self.definition) == (
            other.name, other.status, other.notes, other.output, other.service_id, other.service_name,
            other.service_tags, other.type, other.interval, other.timeout, other.definition)


@dataclass(frozen=True, slots=True, kw_only=True)
class KVEntry:
    key: str
    value: bytes | None = None
    flags: int = 0
    session: str = ""
    lock_index: int = 0
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    id: str
    node: str
    name: str = ""
    node_checks: tuple[str, ...] = ("serfHealth",)
    service_checks: tuple[dict[str, str], ...] = ()
    lock_delay: float = 15.0  # seconds
    behavior: str = "release"  # or "delete"
    ttl: str = ""
    create_index: int = 0
    modify_index: int = 0


def node_to_api(n: Node) -> dict[str, Any]:
    return {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses or {"lan": n.address, "lan_ipv4": n.address,
                                                   "wan": n.address, "wan_ipv4": n.address},
        "Meta": n.meta,
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    }


def service_to_agent_api(s: ServiceRow, *, datacenter: str = "") -> dict[str, Any]:
    """The NodeService shape: /v1/agent/services, /v1/health/service's "Service", catalog node-services."""
    out: dict[str, Any] = {
        "ID": s.id,
        "Service": s.service,
        "Tags": list(s.tags),
        "Address": s.address,
        "TaggedAddresses": s.tagged_addresses,
        "Meta": s.meta,
        "Port": s.port,
        "Weights": s.weights,
        "EnableTagOverride": s.enable_tag_override,
        "Proxy": s.proxy or {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": s.connect,
        "PeerName": "",
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }
    if s.kind:
        out["Kind"] = s.kind
    if s.socket_path:
        out["SocketPath"] = s.socket_path
    if s.locality:
        out["Locality"] = s.locality
    if datacenter:
        out["Datacenter"] = datacenter
    return out


def service_to_catalog_api(s: ServiceRow, n: Node | None, *, datacenter: str) -> dict[str, Any]:
    """The ServiceNode shape of /v1/catalog/service/:service."""
    return {
        "ID": n.id if n else "",
        "Node": s.node,
        "Address": n.address if n else "",
        "Datacenter": datacenter,
        "TaggedAddresses": (node_to_api(n)["TaggedAddresses"] if n else {}),
        "NodeMeta": n.meta if n else {},
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.service,
        "ServiceTags": list(s.tags),
        "ServiceAddress": s.address,
        "ServiceTaggedAddresses": s.tagged_addresses,
        "ServiceWeights": s.weights,
        "ServiceMeta": s.meta,
        "ServicePort": s.port,
        "ServiceSocketPath": s.socket_path,
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": s.proxy or {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": s.connect,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }


def check_to_api(c: CheckRow) -> dict[str, Any]:
    return {
        "Node": c.node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status,
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": list(c.service_tags),
        "Type": c.type,
        "Interval": c.interval,
        "Timeout": c.timeout,
        "ExposedPort": c.exposed_port,
        "Definition": c.definition,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def kv_to_api(e: KVEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "LockIndex": e.lock_index,
        "Key": e.key,
        "Flags": e.flags,
        # Consul's empty value is nil after the Raft round trip: JSON null, never ""
        "Value": base64.b64encode(e.value).decode("ascii") if e.value else None,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    }
    if e.session:
        out["Session"] = e.session
    return out


def session_to_api(s: Session) -> dict[str, Any]:
    return {
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": int(s.lock_delay * 1e9),
        "Behavior": s.behavior,
        "TTL": s.ttl,
        "NodeChecks": list(s.node_checks),
        "ServiceChecks": [dict(x) for x in s.service_checks],
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }
