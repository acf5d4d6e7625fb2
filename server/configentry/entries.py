"""Configuration entries: the kinds, their field schemas, decoding to one canonical shape, the
stored row, and read-only *views* over a set of entries.

Decoding (``decode_entry``) turns Consul's JSON (PascalCase), the snake_case of HCL files, or any
mixture into one canonical dict with PascalCase keys, using the same key rules as service
definitions (``lictor.common.servicedef``: a key matches by ``key.lower().replace("_", "")``).
Unlike service definitions an unknown key is an **error** naming its path, as Consul's
``DecodeConfigEntry`` (ErrorUnused) does: a typo in routing configuration must not pass silently.
Decoding checks types only; the meaning of the values is checked by ``validate.py``.

Canonical values: strings, ints, floats, bools, durations as Go strings ("5s", "1m30s"), lists
and dicts. User-owned maps (Meta, header maps, proxy Config) keep their keys untouched.
Decoding a canonical dict again returns an equal dict (idempotent), so the RPC endpoint can
normalise what a client agent forwarded without trusting it.

Rows are immutable by convention: a stored ``ConfigEntryRow.body`` is never mutated after the
write that created it (readers may share it; writers replace the row).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lictor.common.duration import format_duration
from lictor.common.errors import ValidationError

# The key-normalisation and typed-getter helpers of service definitions: one set of key rules
# for everything a user writes. (Private names of that module; see the report to make them public.)
from lictor.common.servicedef import _Block, _fail, _json_copy, _join, _show, _spec, _type_name

__all__ = [
    "ALL_KINDS",
    "ConfigEntryRow",
    "EntryView",
    "OverlayView",
    "StoreView",
    "TABLE",
    "decode_entry",
    "entry_key",
    "split_key",
]

TABLE = "config_entries"

PROXY_DEFAULTS = "proxy-defaults"
SERVICE_DEFAULTS = "service-defaults"
SERVICE_ROUTER = "service-router"
SERVICE_SPLITTER = "service-splitter"
SERVICE_RESOLVER = "service-resolver"
INGRESS_GATEWAY = "ingress-gateway"
TERMINATING_GATEWAY = "terminating-gateway"
MESH = "mesh"
JWT_PROVIDER = "jwt-provider"
SERVICE_INTENTIONS = "service-intentions"

ALL_KINDS: tuple[str, ...] = (
    PROXY_DEFAULTS, SERVICE_DEFAULTS, SERVICE_ROUTER, SERVICE_SPLITTER, SERVICE_RESOLVER,
    INGRESS_GATEWAY, TERMINATING_GATEWAY, MESH, JWT_PROVIDER, SERVICE_INTENTIONS,
)

# Kinds that shape discovery chains: a write of one of them re-checks the chains it can affect.
CHAIN_KINDS = frozenset({PROXY_DEFAULTS, SERVICE_DEFAULTS, SERVICE_ROUTER, SERVICE_SPLITTER, SERVICE_RESOLVER})

DEFAULT_NS = "default"

# --------------------------------------------------------------------------------------------
# Schema language: a schema is a mapping from canonical (PascalCase) field name to a type:
#   "str" "int" "uint" "bool" "float" "dur" "strs" "ints" "strmap" "json" "ignore"
#   Obj(...)  a nested object       ListOf(Obj)  a list of objects     MapOf(Obj)  user keys -> objects


@dataclass(frozen=True, slots=True)
class Obj:
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Obj


@dataclass(frozen=True, slots=True)
class MapOf:
    item: Obj


def obj(**fields: Any) -> Obj:
    return Obj(fields)


def _decode_obj(schema: Obj, data: Any, path: str) -> dict[str, Any]:
    warnings: list[str] = []
    b = _Block(data, path, _spec(*schema.fields), warnings)
    if warnings:
        raise ValidationError(warnings[0].replace("unknown key, ignored", "unknown field"))
    out: dict[str, Any] = {}
    for name, t in schema.fields.items():
        if not b.has(name) or t == "ignore":
            continue
        out[name] = _decode_value(t, b, name)
    return out


def _decode_value(t: Any, b: _Block, name: str) -> Any:
    at = b.at(name)
    raw = b.raw(name)
    if t == "str":
        return b.text(name)
    if t == "int":
        return b.integer(name, lo=-(2**31), hi=2**31 - 1)
    if t == "uint":
        return b.integer(name, lo=0, hi=2**32 - 1)
    if t == "bool":
        return b.flag(name)
    if t == "float":
        return _as_float(raw, at)
    if t == "dur":
        seconds = b.duration(name)
        return format_duration(seconds or 0.0)
    if t == "strs":
        if isinstance(raw, str):  # HCL/JSON users sometimes write a single string
            return [raw]
        return list(b.texts(name))
    if t == "ints":
        items = raw if isinstance(raw, list | tuple) else [raw]
        out = []
        for i, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
                raise _fail(f"{at}[{i}]", f"expected an integer, got {_type_name(v)} {_show(v)}")
            out.append(int(v))
        return out
    if t == "strmap":
        m = b.mapping(name) or {}
        for k, v in m.items():
            if not isinstance(v, str):
                raise _fail(_join(at, k), f"expected a string, got {_type_name(v)} {_show(v)}")
        return dict(m)
    if t == "json":
        return _json_copy(raw, at)
    if isinstance(t, Obj):
        return _decode_obj(t, raw, at)
    if isinstance(t, ListOf):
        items = [raw] if isinstance(raw, Mapping) else b.seq(name)  # one HCL block = a list of one
        return [_decode_obj(t.item, v, f"{at}[{i}]") for i, v in enumerate(items)]
    if isinstance(t, MapOf):
        m = b.mapping(name) or {}
        return {k: _decode_obj(t.item, v, _join(at, k)) for k, v in m.items()}
    raise AssertionError(f"unknown schema type {t!r}")


def _as_float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail(path, f"expected a number, got {_type_name(value)} {_show(value)}")
    try:
        f = float(value)
    except ValueError:
        raise _fail(path, f"expected a number, got {_show(value)}") from None
    if not math.isfinite(f):
        raise _fail(path, "numbers must be finite")
    return f


# --------------------------------------------------------------------------------------------
# The schemas, kind by kind (Consul's field names; Lictor's additions are marked and documented
# in docs/config-entries.md).

_COMMON = {"Kind": "str", "Name": "str", "Namespace": "str", "Partition": "str", "Meta": "strmap",
           "CreateIndex": "ignore", "ModifyIndex": "ignore", "Hash": "ignore"}

MESH_GATEWAY = obj(Mode="str")
TRANSPARENT_PROXY = obj(OutboundListenerPort="uint", DialedDirectly="bool")
# Lictor: first-class tracing (docs/observability.md), on proxy-defaults and service-defaults.
TRACING = obj(Provider="str", Collector=obj(Service="str", Address="str"), SamplingPercent="float",
              CustomTags=ListOf(obj(Tag="str", Header="str", Literal="str")))
EXPOSE = obj(Checks="bool", Paths=ListOf(obj(ListenerPort="uint", Path="str", LocalPathPort="uint",
                                               Protocol="str", ParsedFromCheck="bool")))
ACCESS_LOGS = obj(Enabled="bool", DisableListenerLogs="bool", Type="str", Path="str", JSONFormat="json",
                  TextFormat="str")
HEADER_MODIFIERS = obj(Add="strmap", Set="strmap", Remove="strs")
# Lictor: Limits.MaxRetries and RetryBudget (Envoy's retry budget) beyond Consul's fields.
LIMITS = obj(MaxConnections="uint", MaxPendingRequests="uint", MaxConcurrentRequests="uint", MaxRetries="uint")
RETRY_BUDGET = obj(BudgetPercent="float", MinRetryConcurrency="uint")
# Lictor: MinHealthPercent (Istio's outlierDetection.minHealthPercent, Envoy's healthy_panic_threshold):
# below that share of healthy hosts, ejections are ignored; 0 never ignores them (Istio's default)
PASSIVE_HEALTH_CHECK = obj(Interval="dur", MaxFailures="uint", EnforcingConsecutive5xx="uint",
                           MaxEjectionPercent="uint", BaseEjectionTime="dur", MinHealthPercent="uint")
# Lictor: fault injection (Istio's HTTPFaultInjection) and a local token-bucket rate limit.
HEADER_MATCH = obj(Name="str", Present="bool", Exact="str", Prefix="str", Suffix="str", Contains="str",
                   Regex="str", IgnoreCase="bool", Invert="bool")
FAULT_INJECTION = obj(Delay=obj(Duration="dur", Percent="float"),
                      Abort=obj(HTTPStatus="uint", GRPCStatus="uint", Percent="float"),
                      HeaderMatch=ListOf(HEADER_MATCH))
RATE_LIMIT = obj(RequestsPerSecond="float", RequestsMaxBurst="uint")
# Lictor: traffic mirroring (Istio's mirror + mirrorPercentage), several per route or splitter.
MIRROR = obj(Service="str", ServiceSubset="str", Namespace="str", Partition="str", Percent="float")

UPSTREAM_CONFIG_FIELDS = {
    "ConnectTimeoutMs": "uint", "Protocol": "str", "Limits": LIMITS, "PassiveHealthCheck": PASSIVE_HEALTH_CHECK,
    "RetryBudget": RETRY_BUDGET, "MeshGateway": MESH_GATEWAY, "BalanceOutboundConnections": "str", "EnvoyListenerJSON": "str",
    "EnvoyClusterJSON": "str",
}
UPSTREAM_OVERRIDE = Obj({"Name": "str", "Namespace": "str", "Partition": "str", "Peer": "str",
                         **UPSTREAM_CONFIG_FIELDS})

QUERY_MATCH = obj(Name="str", Present="bool", Exact="str", Regex="str")

SCHEMAS: dict[str, Obj] = {
    PROXY_DEFAULTS: Obj({
        **_COMMON, "Config": "json", "Mode": "str", "TransparentProxy": TRANSPARENT_PROXY,
        "MutualTLSMode": "str", "MeshGateway": MESH_GATEWAY, "Expose": EXPOSE, "AccessLogs": ACCESS_LOGS,
        "Tracing": TRACING,
        "EnvoyExtensions": "json", "FailoverPolicy": obj(Mode="str", Regions="strs"),
        "PrioritizeByLocality": obj(Mode="str"),
        # Lictor: upstream defaults for every proxy (service-defaults' UpstreamConfig overrides them),
        # and per-upstream overrides for every caller (what an Istio DestinationRule's policy is)
        "UpstreamConfig": obj(Overrides=ListOf(UPSTREAM_OVERRIDE), Defaults=Obj(UPSTREAM_CONFIG_FIELDS)),
    }),
    SERVICE_DEFAULTS: Obj({
        **_COMMON, "Protocol": "str", "Mode": "str", "TransparentProxy": TRANSPARENT_PROXY,
        "MutualTLSMode": "str", "MeshGateway": MESH_GATEWAY, "Expose": EXPOSE, "ExternalSNI": "str",
        "Tracing": TRACING,
        "UpstreamConfig": obj(Overrides=ListOf(UPSTREAM_OVERRIDE), Defaults=Obj(UPSTREAM_CONFIG_FIELDS)),
        "Destination": obj(Addresses="strs", Port="uint"),
        "MaxInboundConnections": "uint", "LocalConnectTimeoutMs": "uint", "LocalRequestTimeoutMs": "uint",
        "BalanceInboundConnections": "str",
        "RateLimits": obj(InstanceLevel=obj(RequestsPerSecond="float", RequestsMaxBurst="uint",
                                            Routes=ListOf(obj(PathExact="str", PathPrefix="str", PathRegex="str",
                                                              RequestsPerSecond="float",
                                                              RequestsMaxBurst="uint")))),
        "EnvoyExtensions": "json", "FaultInjection": FAULT_INJECTION,
    }),
    SERVICE_ROUTER: Obj({
        **_COMMON,
        "Routes": ListOf(obj(
            Match=obj(HTTP=obj(PathExact="str", PathPrefix="str", PathRegex="str", Header=ListOf(HEADER_MATCH),
                               QueryParam=ListOf(QUERY_MATCH), Methods="strs")),
            Destination=obj(Service="str", ServiceSubset="str", Namespace="str", Partition="str",
                            Datacenter="str", PrefixRewrite="str", RequestTimeout="dur", IdleTimeout="dur",
                            NumRetries="uint", RetryOnConnectFailure="bool", RetryOn="strs",
                            RetryOnStatusCodes="ints", PerTryTimeout="dur", RequestHeaders=HEADER_MODIFIERS,
                            ResponseHeaders=HEADER_MODIFIERS, FaultInjection=FAULT_INJECTION,
                            RateLimit=RATE_LIMIT, RequestMirrorPolicies=ListOf(MIRROR)),
        )),
    }),
    SERVICE_SPLITTER: Obj({
        **_COMMON,
        "Splits": ListOf(obj(Weight="float", Service="str", ServiceSubset="str", Namespace="str",
                             Partition="str", RequestHeaders=HEADER_MODIFIERS, ResponseHeaders=HEADER_MODIFIERS)),
        "Mirrors": ListOf(MIRROR),
    }),
    SERVICE_RESOLVER: Obj({
        **_COMMON, "DefaultSubset": "str", "ConnectTimeout": "dur", "RequestTimeout": "dur",
        "Subsets": MapOf(obj(Filter="str", OnlyPassing="bool")),
        "Redirect": obj(Service="str", ServiceSubset="str", Namespace="str", Partition="str", Datacenter="str",
                        Peer="str", SamenessGroup="str"),
        "Failover": MapOf(obj(Service="str", ServiceSubset="str", Namespace="str", Datacenters="strs",
                              Targets=ListOf(obj(Service="str", ServiceSubset="str", Namespace="str",
                                                 Partition="str", Datacenter="str", Peer="str")),
                              SamenessGroup="str")),
        "LoadBalancer": obj(Policy="str", RingHashConfig=obj(MinimumRingSize="uint", MaximumRingSize="uint"),
                            LeastRequestConfig=obj(ChoiceCount="uint"),
                            HashPolicies=ListOf(obj(Field="str", FieldValue="str",
                                                    CookieConfig=obj(Session="bool", TTL="dur", Path="str"),
                                                    SourceIP="bool", Terminal="bool"))),
        "PrioritizeByLocality": obj(Mode="str"),
    }),
    INGRESS_GATEWAY: Obj({
        **_COMMON,
        "TLS": obj(Enabled="bool", TLSMinVersion="str", TLSMaxVersion="str", CipherSuites="strs",
                   SDS=obj(ClusterName="str", CertResource="str")),
        "Listeners": ListOf(obj(
            Port="uint", Protocol="str",
            TLS=obj(Enabled="bool", TLSMinVersion="str", TLSMaxVersion="str", CipherSuites="strs",
                    SDS=obj(ClusterName="str", CertResource="str")),
            Services=ListOf(obj(Name="str", Namespace="str", Partition="str", Hosts="strs",
                                TLS=obj(SDS=obj(ClusterName="str", CertResource="str")),
                                RequestHeaders=HEADER_MODIFIERS, ResponseHeaders=HEADER_MODIFIERS,
                                MaxConnections="uint", MaxPendingRequests="uint", MaxConcurrentRequests="uint",
                                PassiveHealthCheck=PASSIVE_HEALTH_CHECK)),
        )),
        "Defaults": obj(MaxConnections="uint", MaxPendingRequests="uint", MaxConcurrentRequests="uint",
                        PassiveHealthCheck=PASSIVE_HEALTH_CHECK),
    }),
    TERMINATING_GATEWAY: Obj({
        **_COMMON,
        "Services": ListOf(obj(Name="str", Namespace="str", Partition="str", CAFile="str", CertFile="str",
                               KeyFile="str", SNI="str", DisableAutoHostRewrite="bool")),
    }),
    MESH: Obj({
        **_COMMON,
        "TransparentProxy": obj(MeshDestinationsOnly="bool"),
        "AllowEnablingPermissiveMutualTLS": "bool",
        "ValidateClusters": "bool",
        "TLS": obj(Incoming=obj(TLSMinVersion="str", TLSMaxVersion="str", CipherSuites="strs"),
                   Outgoing=obj(TLSMinVersion="str", TLSMaxVersion="str", CipherSuites="strs")),
        "HTTP": obj(SanitizeXForwardedClientCert="bool", Incoming=obj(RequestNormalization="json")),
        "Peering": obj(PeerThroughMeshGateways="bool"),
        # Lictor: what a pair without any intention gets ("deny" overrides the default).
        "DefaultIntentionPolicy": "str",
    }),
    JWT_PROVIDER: Obj({
        **_COMMON, "Issuer": "str", "Audiences": "strs",
        "JSONWebKeySet": obj(
            Local=obj(JWKS="str", Filename="str"),
            Remote=obj(URI="str", RequestTimeoutMs="uint", CacheDuration="dur", FetchAsynchronously="bool",
                       UseSNI="bool",
                       RetryPolicy=obj(NumRetries="uint",
                                       RetryPolicyBackOff=obj(BaseInterval="dur", MaxInterval="dur")),
                       JWKSCluster=obj(DiscoveryType="str", ConnectTimeout="dur",
                                       TLSCertificates=obj(CaCertificateProviderInstance=obj(
                                           InstanceName="str", CertificateName="str"),
                                           TrustedCA=obj(Filename="str", EnvironmentVariable="str",
                                                         InlineString="str", InlineBytes="str"))))),
        "Locations": ListOf(obj(Header=obj(Name="str", ValuePrefix="str", Forward="bool"),
                                QueryParam=obj(Name="str"), Cookie=obj(Name="str"))),
        "Forwarding": obj(HeaderName="str", PadForwardPayloadHeader="bool"),
        "ClockSkewSeconds": "uint",
        "CacheConfig": obj(Size="uint"),
    }),
}

_INTENTION_HTTP = obj(PathExact="str", PathPrefix="str", PathRegex="str", Header=ListOf(HEADER_MATCH),
                      Methods="strs")
_JWT_REQ = obj(Providers=ListOf(obj(Name="str", VerifyClaims=ListOf(obj(Path="strs", Value="str")))))
INTENTION_PERMISSION = obj(Action="str", HTTP=_INTENTION_HTTP, JWT=_JWT_REQ)
INTENTION_SOURCE = obj(Name="str", Peer="str", Namespace="str", Partition="str", SamenessGroup="str",
                       Action="str", Permissions=ListOf(INTENTION_PERMISSION), Precedence="ignore",
                       Type="str", Description="str", LegacyID="str", LegacyMeta="strmap",
                       LegacyCreateTime="ignore", LegacyUpdateTime="ignore")
SCHEMAS[SERVICE_INTENTIONS] = Obj({**_COMMON, "Sources": ListOf(INTENTION_SOURCE), "JWT": _JWT_REQ})


# --------------------------------------------------------------------------------------------
# Decoding


def decode_entry(data: Any, *, kind: str = "", name: str = "") -> dict[str, Any]:
    """The canonical body of one entry from a JSON/HCL-shaped mapping. ``kind``/``name`` fill in
    (and must agree with) the body's Kind/Name, as the HTTP path or CLI flags give them.
    Raises ValidationError naming the field."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"config entry: expected an object, got {_type_name(data)}")
    probe = {re.sub("_", "", str(k)).lower(): v for k, v in data.items()}
    body_kind = probe.get("kind")
    if body_kind is not None and not isinstance(body_kind, str):
        raise ValidationError(f"Kind: expected a string, got {_type_name(body_kind)} {_show(body_kind)}")
    k = (body_kind or kind or "").strip().lower()
    if not k:
        raise ValidationError("Kind: missing config entry kind")
    if kind and body_kind and kind.lower() != body_kind.lower():
        raise ValidationError(f"Kind: {body_kind!r} does not match {kind!r}")
    schema = SCHEMAS.get(k)
    if schema is None:
        raise ValidationError(f"Kind: invalid config entry kind: {k}")
    out = _decode_obj(schema, data, "")
    out["Kind"] = k
    if name and out.get("Name") and out["Name"] != name:
        raise ValidationError(f"Name: {out['Name']!r} does not match {name!r}")
    out["Name"] = out.get("Name") or name
    ns = out.pop("Namespace", "") or DEFAULT_NS
    part = out.pop("Partition", "") or "default"
    if part != "default":
        raise ValidationError(f"Partition: admin partitions are not supported (got {part!r})")
    if ns != DEFAULT_NS:
        out["Namespace"] = ns
    return _order(out)


def _order(body: dict[str, Any]) -> dict[str, Any]:
    """Kind and Name first, then the rest in schema order (stable JSON for people and tests)."""
    return {"Kind": body["Kind"], "Name": body["Name"], **{k: v for k, v in body.items() if k not in ("Kind", "Name")}}


def entry_key(body: Mapping[str, Any]) -> tuple[str, str]:
    """The store key of an entry: (kind, name), or (kind, "ns/name") outside the default namespace."""
    return key_for(body["Kind"], body["Name"], body.get("Namespace") or DEFAULT_NS)


def key_for(kind: str, name: str, namespace: str = DEFAULT_NS) -> tuple[str, str]:
    return (kind, name if namespace in ("", DEFAULT_NS) else f"{namespace}/{name}")


def split_key(key_name: str) -> tuple[str, str]:
    """(namespace, name) of a store key's name part."""
    ns, sep, name = key_name.partition("/")
    return (ns, name) if sep else (DEFAULT_NS, key_name)


# --------------------------------------------------------------------------------------------
# Rows and views


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigEntryRow:
    """One stored entry. ``body`` is canonical (Kind, Name, fields) and never mutated."""

    kind: str
    name: str
    body: dict[str, Any]
    create_index: int = 0
    modify_index: int = 0

    def to_api(self) -> dict[str, Any]:
        return {**self.body, "CreateIndex": self.create_index, "ModifyIndex": self.modify_index}


_ROW_MARK = "__config_entry_row__"


def row_encode(row: Any) -> Any:
    """Snapshot form of a row. Values that are not ConfigEntryRow (plain msgpack-able values other
    code may have stored in the table) pass through unchanged."""
    if not isinstance(row, ConfigEntryRow):
        return row
    return {_ROW_MARK: 1, "kind": row.kind, "name": row.name, "body": row.body, "create_index": row.create_index,
            "modify_index": row.modify_index}


def row_decode(data: Any) -> Any:
    if not isinstance(data, dict) or _ROW_MARK not in data:
        return data
    return ConfigEntryRow(**{k: v for k, v in data.items() if k != _ROW_MARK})


class EntryView(Protocol):
    """What validation and compilation read: entries by kind and name (in a namespace)."""

    def get(self, kind: str, name: str, namespace: str = DEFAULT_NS) -> dict[str, Any] | None: ...

    def list(self, kind: str) -> list[dict[str, Any]]: ...


class StoreView:
    """Entries of a state store (or of a write transaction's store, mid-transaction)."""

    __slots__ = ("_rows",)

    def __init__(self, store: Any) -> None:
        self._rows: dict[tuple[str, str], ConfigEntryRow] = store.ext[TABLE]

    def get(self, kind: str, name: str, namespace: str = DEFAULT_NS) -> dict[str, Any] | None:
        row = self._rows.get(key_for(kind, name, namespace))
        return row.body if row is not None else None

    def row(self, kind: str, name: str, namespace: str = DEFAULT_NS) -> ConfigEntryRow | None:
        return self._rows.get(key_for(kind, name, namespace))

    def list(self, kind: str) -> list[dict[str, Any]]:
        return [r.body for (k, _), r in sorted(self._rows.items()) if k == kind]


class OverlayView:
    """A view with some entries replaced (a body) or removed (None): "the store after this write"."""

    __slots__ = ("_base", "_changes")

    def __init__(self, base: EntryView, changes: Mapping[tuple[str, str], dict[str, Any] | None]) -> None:
        self._base = base
        self._changes = dict(changes)

    def get(self, kind: str, name: str, namespace: str = DEFAULT_NS) -> dict[str, Any] | None:
        key = key_for(kind, name, namespace)
        if key in self._changes:
            return self._changes[key]
        return self._base.get(kind, name, namespace)

    def list(self, kind: str) -> list[dict[str, Any]]:
        out = {entry_key(b): b for b in self._base.list(kind)}
        for key, body in self._changes.items():
            if key[0] != kind:
                continue
            if body is None:
                out.pop(key, None)
            else:
                out[key] = body
        return [out[k] for k in sorted(out)]


class DictView:
    """A view over plain bodies (tests, and the CLI's offline checks)."""

    def __init__(self, bodies: Iterable[Mapping[str, Any]] = ()) -> None:
        self._rows = {entry_key(b): dict(b) for b in bodies}

    def get(self, kind: str, name: str, namespace: str = DEFAULT_NS) -> dict[str, Any] | None:
        return self._rows.get(key_for(kind, name, namespace))

    def list(self, kind: str) -> list[dict[str, Any]]:
        return [b for (k, _), b in sorted(self._rows.items()) if k == kind]


def as_view(source: Any) -> EntryView:
    """A view of whatever the caller has: a view already, or a state store."""
    if hasattr(source, "ext"):
        return StoreView(source)
    return source  # type: ignore[no-any-return]


Checker = Callable[[dict[str, Any], EntryView], None]
