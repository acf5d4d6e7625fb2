"""Consul service and check definitions: parse, validate, default, expand sidecars.

Pure functions only: no I/O, no clock, no agent state. The agent (config files and
``PUT /v1/agent/service/register``, ``PUT /v1/agent/check/register``) calls in here, then hands
:func:`service_row_payload` / :func:`check_row_payload` to the state store.

::

    config file (snake_case) ──┐
                               ├─> parse_service_definition ─> ServiceDefinition ─┬─> service_row_payload ─> ServiceRow
    HTTP body (PascalCase) ────┘        (validate, default                        ├─> check_row_payload   ─> CheckRow
                                         check IDs, warnings)                     └─> expand_sidecar ─> ServiceDefinition

Rules:

- **Structural keys are case- and underscore-insensitive**: a key is matched by
  ``key.lower().replace("_", "")``, so ``ServiceID``, ``service_id``, ``serviceId`` and ``SERVICEID``
  are one key (Go's JSON decoding is case-insensitive; Consul's ``TranslateKeys`` adds the snake
  spellings). Some fields have extra aliases (``ScriptArgs`` for ``args``, ``CheckID`` for a check's
  ``id``). Two spellings of one key with different values are an error.
- **User-owned map keys are never touched**: Meta keys, TaggedAddresses names, HTTP header names,
  Proxy.Config / Upstreams[].Config keys, AccessLogs / EnvoyExtensions contents.
- **Unknown keys warn, they do not fail**: each becomes a line in ``.warnings`` (not compared).
- ``null`` means "not set" everywhere, as Go decodes it to the zero value.
- Error messages name the key path as the user spelled it, prefixed by ``where``.
- Durations: Go strings ("10s", "1m30s") or numbers taken as seconds (see ``lictor.common.duration``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lictor.common.duration import format_duration, parse_duration
from lictor.common.errors import ValidationError
from lictor.common.types import ServiceKind

__all__ = [
    "CHECK_TYPES",
    "DEFAULT_OUTPUT_MAX_SIZE",
    "MIN_CHECK_INTERVAL",
    "CheckDefinition",
    "ServiceDefinition",
    "check_row_payload",
    "expand_sidecar",
    "parse_check_definition",
    "parse_service_definition",
    "service_row_payload",
]

MIN_CHECK_INTERVAL = 1.0
"""Consul's ``checks.MinInterval``: shorter intervals are raised to this, with a warning."""

DEFAULT_OUTPUT_MAX_SIZE = 4096
"""Consul's default ``check_output_max_size`` (bytes of check output kept)."""

CHECK_TYPES = ("ttl", "http", "tcp", "udp", "grpc", "h2ping", "script", "alias")
"""The check types Lictor runs (``CheckDefinition.type``). Docker and os_service are refused."""

_INTERVAL_TYPES = frozenset({"http", "tcp", "udp", "grpc", "h2ping", "script"})
_VALID_STATUSES = ("passing", "warning", "critical")
_KINDS = tuple(k.value for k in ServiceKind)
_GATEWAY_KINDS = frozenset(k for k in _KINDS if k.endswith("-gateway"))
_META_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_PORT = 65535


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckDefinition:
    """One validated check. Durations are seconds; ``type`` is derived, never given."""

    id: str = ""
    name: str = ""
    notes: str = ""
    service_id: str = ""
    status: str = "critical"  # the initial status; Consul's default
    type: str = ""
    ttl: float | None = None
    http: str = ""
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    tls_skip_verify: bool = False
    tls_server_name: str = ""
    disable_redirects: bool = False
    tcp: str = ""
    tcp_use_tls: bool = False
    udp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    h2ping: str = ""
    h2ping_use_tls: bool = True
    args: tuple[str, ...] = ()
    alias_node: str = ""
    alias_service: str = ""
    interval: float = 0.0
    timeout: float | None = None
    deregister_critical_service_after: float | None = None
    success_before_passing: int = 0
    failures_before_warning: int = 0  # 0: same as failures_before_critical (Consul's rule)
    failures_before_critical: int = 0
    output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE
    token: str = field(default="", repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_api_definition(self) -> dict[str, Any]:
        """Consul's HealthCheckDefinition JSON: the check's ``Definition``; empty fields omitted."""
        out: dict[str, Any] = {}

        def put(key: str, value: Any) -> None:
            if value:
                out[key] = value

        put("HTTP", self.http)
        put("Header", {k: list(v) for k, v in self.header.items()})
        put("Method", self.method)
        put("Body", self.body)
        put("TLSServerName", self.tls_server_name)
        put("TLSSkipVerify", self.tls_skip_verify)
        put("DisableRedirects", self.disable_redirects)
        put("TCP", self.tcp)
        put("TCPUseTLS", self.tcp_use_tls)
        put("UDP", self.udp)
        put("GRPC", self.grpc)
        put("GRPCUseTLS", self.grpc_use_tls)
        put("H2PING", self.h2ping)
        if self.type == "h2ping":
            out["H2PingUseTLS"] = self.h2ping_use_tls
        put("ScriptArgs", list(self.args))
        put("AliasNode", self.alias_node)
        put("AliasService", self.alias_service)
        if self.ttl:
            out["TTL"] = format_duration(self.ttl)
        if self.interval:
            out["Interval"] = format_duration(self.interval)
        if self.timeout:
            out["Timeout"] = format_duration(self.timeout)
        if self.deregister_critical_service_after:
            out["DeregisterCriticalServiceAfter"] = format_duration(self.deregister_critical_service_after)
        if self.output_max_size != DEFAULT_OUTPUT_MAX_SIZE:
            out["OutputMaxSize"] = self.output_max_size
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceDefinition:
    """One validated service. Nested structures are kept in Consul's API (PascalCase) shape.

    ``proxy`` is ``{}`` unless the definition has a proxy block or is a connect-proxy.
    ``connect`` is always ``{"Native": bool, "SidecarService": ServiceDefinition | None}``; a parsed
    sidecar is a *nested* definition: its ``id`` is empty and its checks have no IDs until
    :func:`expand_sidecar` fills them in.
    """

    kind: str = ""
    id: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    port: int = 0
    socket_path: str = ""
    enable_tag_override: bool = False
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    checks: tuple[CheckDefinition, ...] = ()
    proxy: dict[str, Any] = field(default_factory=dict)
    connect: dict[str, Any] = field(default_factory=lambda: {"Native": False, "SidecarService": None})
    locality: dict[str, str] | None = None
    token: str = field(default="", repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def sidecar_service(self) -> ServiceDefinition | None:
        sidecar: ServiceDefinition | None = self.connect.get("SidecarService")
        return sidecar

    def without_sidecar(self) -> ServiceDefinition:
        """This service as the agent stores it once the sidecar is registered on its own
        (Consul strips ``Connect.SidecarService`` from the parent)."""
        if self.sidecar_service is None:
            return self
        return dataclasses.replace(self, connect={**self.connect, "SidecarService": None})


# --------------------------------------------------------------------------------------------
# Key handling


def _norm(key: str) -> str:
    return key.lower().replace("_", "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fail(path: str, message: str) -> ValidationError:
    return ValidationError(f"{path}: {message}" if path else message)


def _show(value: Any) -> str:
    """A value as it would appear in JSON, for messages: "10x", 3, true, a list."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class _Block:
    """One JSON object at ``path``: its structural keys matched against ``spec``.

    ``spec`` maps each canonical (snake_case) name to its extra aliases. Values set to ``null``
    count as absent. Unknown keys are reported in ``warnings``.
    """

    __slots__ = ("path", "_values", "_spelled")

    def __init__(self, data: Any, path: str, spec: Mapping[str, tuple[str, ...]], warnings: list[str]) -> None:
        if not isinstance(data, Mapping):
            raise _fail(path, f"expected an object, got {_type_name(data)}")
        lookup: dict[str, str] = {}
        for canon, aliases in spec.items():
            for name in (canon, *aliases):
                lookup[_norm(name)] = canon
        self.path = path
        self._values: dict[str, Any] = {}
        self._spelled: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise _fail(path, f"keys must be strings, got {_show(key)}")
            canon = lookup.get(_norm(key))
            if canon is None:
                warnings.append(f"{_join(path, key)}: unknown key, ignored")
                continue
            if canon in self._spelled:
                if self._values[canon] != value:
                    raise _fail(path, f"{self._spelled[canon]!r} and {key!r} are the same key with different values")
                continue
            self._spelled[canon] = key
            self._values[canon] = value

    def has(self, canon: str) -> bool:
        return self._values.get(canon) is not None

    def raw(self, canon: str) -> Any:
        return self._values.get(canon)

    def at(self, canon: str) -> str:
        """The path of a key, as the user spelled it (canonical name if absent)."""
        return _join(self.path, self._spelled.get(canon, canon))

    # Typed getters: each returns ``default`` when the key is absent or null.

    def text(self, canon: str, default: str = "") -> str:
        value = self.raw(canon)
        if value is None:
            return default
        if not isinstance(value, str):
            raise _fail(self.at(canon), f"expected a string, got {_type_name(value)} {_show(value)}")
        return value

    def flag(self, canon: str, default: bool = False) -> bool:
        value = self.raw(canon)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        # Lenient like Consul's weakly typed config decoding: "true"/"false".
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise _fail(self.at(canon), f"expected true or false, got {_show(value)}")

    def integer(self, canon: str, default: int = 0, *, lo: int = 0, hi: int = 2**31 - 1) -> int:
        value = self.raw(canon)
        if value is None:
            return default
        return _as_int(value, self.at(canon), lo=lo, hi=hi)

    def duration(self, canon: str) -> float | None:
        value = self.raw(canon)
        if value is None:
            return None
        return _as_duration(value, self.at(canon))

    def mapping(self, canon: str) -> Mapping[str, Any] | None:
        value = self.raw(canon)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise _fail(self.at(canon), f"expected an object, got {_type_name(value)} {_show(value)}")
        for key in value:
            if not isinstance(key, str):
                raise _fail(self.at(canon), f"keys must be strings, got {_show(key)}")
        return value

    def seq(self, canon: str) -> list[Any]:
        value = self.raw(canon)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise _fail(self.at(canon), f"expected a list, got {_type_name(value)} {_show(value)}")
        return list(value)

    def texts(self, canon: str) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.seq(canon)):
            if not isinstance(item, str):
                raise _fail(f"{self.at(canon)}[{i}]", f"expected a string, got {_type_name(item)} {_show(item)}")
            out.append(item)
        return tuple(out)


def _as_int(value: Any, path: str, *, lo: int, hi: int) -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
        number = int(value)  # Consul's weakly typed decoding accepts numeric strings
    if number is None:
        raise _fail(path, f"expected an integer, got {_type_name(value)} {_show(value)}")
    if not lo <= number <= hi:
        raise _fail(path, f"must be between {lo} and {hi}, got {number}")
    return number


def _as_duration(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(path, f'expected a duration like "10s", got {_type_name(value)} {_show(value)}')
    if isinstance(value, float) and value != value:  # NaN
        raise _fail(path, f"invalid duration {_show(value)}")
    try:
        seconds = parse_duration(value, what=path, allow_negative=True)
    except ValidationError as exc:
        if "absurdly" in str(exc):
            raise _fail(path, f"duration {_show(value)} is absurdly long (over 10 years)") from None
        raise _fail(
            path, f'invalid duration {_show(value)} (a number with a unit: ns, us, ms, s, m, h; e.g. "10s")'
        ) from None
    if seconds < 0:
        raise _fail(path, f"duration must not be negative, got {_show(value)}")
    return seconds


def _json_copy(value: Any, path: str) -> Any:
    """A deep copy of a user-owned JSON-like value (keys untouched); refuses non-JSON values."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _fail(path, "numbers must be finite")
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(path, f"keys must be strings, got {_show(k)}")
            out[k] = _json_copy(v, _join(path, k))
        return out
    if isinstance(value, list | tuple):
        return [_json_copy(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise _fail(path, f"unsupported value {_type_name(value)}")


def _spec(*names: str, **aliases: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    spec: dict[str, tuple[str, ...]] = {name: () for name in names}
    spec.update(aliases)
    return spec


# --------------------------------------------------------------------------------------------
# Checks

_CHECK_SPEC = _spec(
    "name", "notes", "service_id", "status", "ttl", "http", "method", "header", "body",
    "tls_skip_verify", "tls_server_name", "disable_redirects", "tcp", "tcp_use_tls", "udp",
    "grpc", "grpc_use_tls", "h2ping", "h2ping_use_tls", "alias_node", "alias_service",
    "interval", "timeout", "deregister_critical_service_after", "success_before_passing",
    "failures_before_warning", "failures_before_critical", "output_max_size", "token",
    "docker_container_id", "shell", "os_service", "script", "namespace", "partition",
    id=("check_id",),
    args=("script_args",),
)

# Consul's type precedence (CheckType.Type()): the first field set decides.
_TYPE_FIELDS = (
    ("grpc", "grpc"),
    ("http", "http"),
    ("ttl", "ttl"),
    ("tcp", "tcp"),
    ("udp", "udp"),
    ("alias_node", "alias"),
    ("alias_service", "alias"),
    ("args", "script"),
    ("h2ping", "h2ping"),
)


def parse_check_definition(data: Mapping[str, Any], *, where: str = "", service_id: str = "") -> CheckDefinition:
    """A standalone check (a config file's ``check`` block, ``PUT /v1/agent/check/register``).

    ``name`` is required; ``id`` defaults to the name. ``service_id`` (if given) binds the check
    to that service, overriding any ServiceID in ``data``. Raises :class:`ValidationError`.
    """
    warnings: list[str] = []
    check = _parse_check(data, where, warnings)
    if not check.name:
        raise _fail(where, "Missing check name")
    bound_service = service_id or check.service_id
    return dataclasses.replace(
        check, id=check.id or check.name, service_id=bound_service, warnings=tuple(warnings)
    )


def _parse_check(data: Any, path: str, warnings: list[str]) -> CheckDefinition:
    b = _Block(data, path, _CHECK_SPEC, warnings)
    if b.has("script"):
        raise _fail(b.at("script"), 'the "script" field was removed in Consul 1.1; use "args" with a list, '
                                    'e.g. ["/bin/check.sh", "-v"]')
    if b.text("docker_container_id"):
        raise _fail(b.at("docker_container_id"), "Docker checks are not supported by Lictor; "
                                                 "use args (script), http, tcp or grpc")
    if b.text("os_service"):
        raise _fail(b.at("os_service"), "os_service checks (Windows services) are not supported by Lictor")
    for enterprise in ("namespace", "partition"):
        if b.text(enterprise) not in ("", "default"):
            warnings.append(f"{b.at(enterprise)}: Consul Enterprise field, ignored")
    if b.has("shell"):
        warnings.append(f"{b.at('shell')}: only used by Docker checks, ignored")

    status = b.text("status", "critical") or "critical"
    if status not in _VALID_STATUSES:
        raise _fail(b.at("status"), f"must be one of passing, warning or critical, got {_show(status)}")

    header: dict[str, list[str]] = {}
    for name, values in (b.mapping("header") or {}).items():
        hpath = f"{b.at('header')}[{_show(name)}]"
        if isinstance(values, str):
            header[name] = [values]  # lenient: a single value
        elif isinstance(values, list | tuple) and all(isinstance(v, str) for v in values):
            header[name] = list(values)
        else:
            raise _fail(hpath, f"expected a list of strings, got {_show(values)}")

    ttl = b.duration("ttl")
    interval = b.duration("interval")
    timeout = b.duration("timeout")
    deregister = b.duration("deregister_critical_service_after")
    output_max_size = b.integer("output_max_size", 0)

    # Type: the first field set in Consul's precedence order; others are ignored (warned about).
    present = [(key, kind) for key, kind in _TYPE_FIELDS if (b.texts(key) if key == "args" else
                                                              (ttl if key == "ttl" else b.text(key)))]
    if not present and b.has("ttl"):
        raise _fail(b.at("ttl"), "TTL must be > 0 for TTL checks")
    if not present:
        raise _fail(path, "Check type not supported: must have one of ttl, http, tcp, udp, grpc, h2ping, "
                          "args, alias_service or alias_node")
    ctype = present[0][1]
    ignored = [b.at(key) for key, kind in present[1:] if kind != ctype]
    if ignored:
        warnings.append(f"{path or 'check'}: is a {ctype} check; ignoring {', '.join(ignored)}")

    if ctype == "ttl" and interval:
        raise _fail(b.at("interval"), "Interval and TTL cannot both be specified")
    if ctype in _INTERVAL_TYPES:
        if not interval:
            raise _fail(b.at("interval"), "Interval must be > 0 for script, HTTP, H2PING, TCP, UDP and gRPC checks")
        if interval < MIN_CHECK_INTERVAL:
            warnings.append(f"{b.at('interval')}: {format_duration(interval)} is below the minimum of "
                            f"{format_duration(MIN_CHECK_INTERVAL)}; using {format_duration(MIN_CHECK_INTERVAL)}")
            interval = MIN_CHECK_INTERVAL
    if timeout == 0:
        timeout = None  # Consul: zero means "the default"
    if ctype == "http":
        _check_http_url(b.text("http"), b.at("http"))

    return CheckDefinition(
        id=b.text("id"),
        name=b.text("name"),
        notes=b.text("notes"),
        service_id=b.text("service_id"),
        status=status,
        type=ctype,
        ttl=ttl if ctype == "ttl" else None,
        http=b.text("http"),
        method=b.text("method"),
        header=header,
        body=b.text("body"),
        tls_skip_verify=b.flag("tls_skip_verify"),
        tls_server_name=b.text("tls_server_name"),
        disable_redirects=b.flag("disable_redirects"),
        tcp=b.text("tcp"),
        tcp_use_tls=b.flag("tcp_use_tls"),
        udp=b.text("udp"),
        grpc=b.text("grpc"),
        grpc_use_tls=b.flag("grpc_use_tls"),
        h2ping=b.text("h2ping"),
        h2ping_use_tls=b.flag("h2ping_use_tls", True),
        args=b.texts("args"),
        alias_node=b.text("alias_node"),
        alias_service=b.text("alias_service"),
        interval=(interval or 0.0) if ctype in _INTERVAL_TYPES else 0.0,
        timeout=timeout,
        deregister_critical_service_after=deregister or None,
        success_before_passing=b.integer("success_before_passing"),
        failures_before_warning=b.integer("failures_before_warning"),
        failures_before_critical=b.integer("failures_before_critical"),
        output_max_size=output_max_size or DEFAULT_OUTPUT_MAX_SIZE,
        token=b.text("token"),
    )


def _check_http_url(url: str, path: str) -> None:
    """An HTTP check's URL is http(s) with a host, refused here so a bad one registers nothing
    (``file:///etc/passwd`` must not reach the prober, nor half-register a service)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise _fail(path, f"invalid URL {_show(url)}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _fail(path, f"invalid URL {_show(url)}: scheme must be http or https")
    if not parts.hostname:
        raise _fail(path, f"invalid URL {_show(url)}: no host")


def _bind_checks(checks: Iterable[CheckDefinition], service_id: str, service_name: str) -> tuple[CheckDefinition, ...]:
    """Consul's defaults for a service's checks: ID ``service:<id>`` (``:<n>`` from 1 when there
    are several), name ``Service '<name>' check``, ServiceID the service's."""
    items = list(checks)
    out = []
    for i, check in enumerate(items, start=1):
        check_id = check.id or (f"service:{service_id}:{i}" if len(items) > 1 else f"service:{service_id}")
        out.append(dataclasses.replace(
            check, id=check_id, name=check.name or f"Service '{service_name}' check", service_id=service_id,
        ))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Services

_SERVICE_SPEC = _spec(
    "kind", "id", "name", "tags", "address", "tagged_addresses", "meta", "port", "socket_path",
    "enable_tag_override", "weights", "check", "checks", "proxy", "connect", "locality", "token",
    "namespace", "partition",
)
_CONNECT_SPEC = _spec("native", "sidecar_service", "proxy")
_WEIGHTS_SPEC = _spec("passing", "warning")
_TAGGED_SPEC = _spec("address", "port")
_LOCALITY_SPEC = _spec("region", "zone")
_PROXY_SPEC = _spec(
    "destination_service_name", "destination_service_id", "local_service_address", "local_service_port",
    "local_service_socket_path", "mode", "config", "upstreams", "mesh_gateway", "expose", "transparent_proxy",
    "access_logs", "envoy_extensions",
)
_UPSTREAM_SPEC = _spec(
    "destination_type", "destination_namespace", "destination_partition", "destination_peer",
    "destination_name", "datacenter", "local_bind_address", "local_bind_port", "local_bind_socket_path",
    "local_bind_socket_mode", "config", "mesh_gateway", "centrally_configured",
)
_MESH_GATEWAY_SPEC = _spec("mode")
_EXPOSE_SPEC = _spec("checks", "paths")
_EXPOSE_PATH_SPEC = _spec("listener_port", "path", "local_path_port", "protocol", "parsed_from_check")
_TPROXY_SPEC = _spec("outbound_listener_port", "dialed_directly")


def parse_service_definition(data: Mapping[str, Any], *, where: str = "") -> ServiceDefinition:
    """A service (a config file's ``service`` block, ``PUT /v1/agent/service/register``).

    Validates, defaults the ID to the name, and gives checks their Consul default IDs and names.
    ``.warnings`` lists unknown keys and other ignored input. Raises :class:`ValidationError`.
    """
    warnings: list[str] = []
    svc = _parse_service(data, where, warnings, nested_sidecar=False)
    return dataclasses.replace(svc, warnings=tuple(warnings))


def _parse_service(data: Any, path: str, warnings: list[str], *, nested_sidecar: bool) -> ServiceDefinition:
    b = _Block(data, path, _SERVICE_SPEC, warnings)
    for enterprise in ("namespace", "partition"):
        if b.text(enterprise) not in ("", "default"):
            warnings.append(f"{b.at(enterprise)}: Consul Enterprise field, ignored")

    kind = b.text("kind")
    if kind not in _KINDS:
        raise _fail(b.at("kind"), f"invalid service kind {_show(kind)}: must be one of "
                                  f"{', '.join(k for k in _KINDS if k)} or empty")
    name = b.text("name")
    service_id = b.text("id")
    if nested_sidecar:
        if service_id:
            raise _fail(b.at("id"), "a sidecar_service cannot set an ID: the agent names it <parent id>-sidecar-proxy")
        if kind not in ("", ServiceKind.CONNECT_PROXY.value):
            raise _fail(b.at("kind"), f"a sidecar_service is always a connect-proxy, got {_show(kind)}")
    elif not name:
        raise _fail(path, "Missing service name")
    else:
        service_id = service_id or name

    address = b.text("address")
    _check_not_unspecified(address, b.at("address"))
    port = b.integer("port", lo=0, hi=_MAX_PORT)
    socket_path = b.text("socket_path")

    tagged: dict[str, dict[str, Any]] = {}
    for tag_name, value in (b.mapping("tagged_addresses") or {}).items():
        tpath = f"{b.at('tagged_addresses')}.{tag_name}"
        tb = _Block(value, tpath, _TAGGED_SPEC, warnings)
        taddr = tb.text("address")
        _check_not_unspecified(taddr, tb.at("address"))
        tagged[tag_name] = {"Address": taddr, "Port": tb.integer("port", lo=0, hi=_MAX_PORT)}

    weights = {"Passing": 1, "Warning": 1}
    if b.has("weights"):
        wb = _Block(b.raw("weights"), b.at("weights"), _WEIGHTS_SPEC, warnings)
        weights = {"Passing": wb.integer("passing", 1, lo=-(2**31), hi=2**31 - 1),
                   "Warning": wb.integer("warning", 1, lo=-(2**31), hi=2**31 - 1)}
        if weights["Passing"] < 1:
            raise _fail(wb.at("passing"), f"Passing must be greater than 0, got {weights['Passing']}")
        if weights["Warning"] < 0:
            raise _fail(wb.at("warning"), f"Warning must be greater than or equal to 0, got {weights['Warning']}")
        for key, value in weights.items():
            if value > 65535:
                raise _fail(b.at("weights"), f"{key} must be at most 65535, got {value}")

    locality = None
    if b.has("locality"):
        lb = _Block(b.raw("locality"), b.at("locality"), _LOCALITY_SPEC, warnings)
        locality = {"Region": lb.text("region"), "Zone": lb.text("zone")}

    checks: list[CheckDefinition] = []
    for key in ("check", "checks"):
        raw = b.raw(key)
        if raw is None:
            continue
        if key == "check" and isinstance(raw, Mapping) and all(v in (None, "", 0, [], {}) for v in raw.values()):
            continue  # Consul ignores an all-zero singular Check (py-consul and others send "check": {})
        items = [raw] if isinstance(raw, Mapping) else b.seq(key)
        for i, item in enumerate(items):
            cpath = b.at(key) if isinstance(raw, Mapping) else f"{b.at(key)}[{i}]"
            if item is None:
                continue
            checks.append(_parse_check(item, cpath, warnings))

    proxy: dict[str, Any] = {}
    if b.has("proxy") or kind == ServiceKind.CONNECT_PROXY.value or nested_sidecar:
        proxy = _parse_proxy(b.raw("proxy") or {}, b.at("proxy"), warnings)

    native = False
    sidecar: ServiceDefinition | None = None
    if b.has("connect"):
        cb = _Block(b.raw("connect"), b.at("connect"), _CONNECT_SPEC, warnings)
        if cb.has("proxy"):
            raise _fail(cb.at("proxy"), "managed proxies were removed in Consul 1.6; use sidecar_service")
        native = cb.flag("native")
        if cb.has("sidecar_service"):
            if nested_sidecar:
                raise _fail(cb.at("sidecar_service"), "a sidecar_service cannot have a nested sidecar_service")
            sidecar = _parse_service(cb.raw("sidecar_service"), cb.at("sidecar_service"), warnings, nested_sidecar=True)
            if kind:
                raise _fail(cb.at("sidecar_service"), f"a {kind} service cannot have a sidecar_service")
        if native and sidecar is not None:
            raise _fail(b.at("connect"), "a service cannot be both Connect native and have a sidecar_service")
        if native and kind:
            raise _fail(cb.at("native"), f"a {kind} service cannot be Connect native; only typical services can")

    if kind == ServiceKind.CONNECT_PROXY.value and not nested_sidecar:
        if not proxy["DestinationServiceName"]:
            raise _fail(_join(b.at("proxy"), "destination_service_name"),
                        "must be non-empty for a connect-proxy service")
        if not port and not socket_path:
            raise _fail(path, "port or socket_path must be set for a connect-proxy service")
    if native and not port and not socket_path:
        raise _fail(path, "port or socket_path must be set for a Connect native service")
    if kind in (ServiceKind.MESH_GATEWAY.value, ServiceKind.TERMINATING_GATEWAY.value) and not port:
        raise _fail(b.at("port"), f"must be non-zero for a {kind}")
    if kind in _GATEWAY_KINDS and proxy:
        for key in ("DestinationServiceName", "DestinationServiceID", "LocalServiceAddress", "LocalServicePort"):
            if proxy.get(key):
                raise _fail(b.at("proxy"), f"{key} is not valid for a {kind}")
        if proxy.get("Upstreams"):
            raise _fail(b.at("proxy"), f"Upstreams are not valid for a {kind}")

    if kind != ServiceKind.CONNECT_PROXY.value and not nested_sidecar and not any(proxy.values()):
        proxy = {}  # an empty proxy block on a typical service or gateway: nothing to keep
    bound = tuple(checks) if nested_sidecar else _bind_checks(checks, service_id, name)
    return ServiceDefinition(
        kind=kind,
        id=service_id,
        name=name,
        tags=b.texts("tags"),
        address=address,
        tagged_addresses=tagged,
        meta=_parse_meta(b, kind),
        port=port,
        socket_path=socket_path,
        enable_tag_override=b.flag("enable_tag_override"),
        weights=weights,
        checks=bound,
        proxy=proxy,
        connect={"Native": native, "SidecarService": sidecar},
        locality=locality,
        token=b.text("token"),
    )


def _check_not_unspecified(address: str, path: str) -> None:
    if address.strip("[]") in ("0.0.0.0", "::"):
        raise _fail(path, f"{_show(address)} is not a usable address (0.0.0.0 and :: mean 'any')")


def _parse_meta(b: _Block, kind: str) -> dict[str, str]:
    meta = b.mapping("meta") or {}
    if len(meta) > 64:
        raise _fail(b.at("meta"), f"at most 64 pairs are allowed, got {len(meta)}")
    out: dict[str, str] = {}
    for key, value in meta.items():
        kpath = f"{b.at('meta')}[{_show(key)}]"
        if not key:
            raise _fail(b.at("meta"), "keys cannot be empty")
        if len(key) > 128:
            raise _fail(kpath, "key is too long (limit: 128 characters)")
        if not _META_KEY_RE.match(key):
            raise _fail(kpath, "key may only contain letters, digits, '_' and '-'")
        if key.startswith("consul-") and not (kind in _GATEWAY_KINDS and key == "consul-wan-federation"):
            raise _fail(kpath, "the key prefix 'consul-' is reserved for internal use")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _fail(kpath, f"expected a string, got {_type_name(value)} {_show(value)}")
        text = value if isinstance(value, str) else _show(value)  # lenient: numbers become strings
        if len(text) > 512:
            raise _fail(kpath, "value is too long (limit: 512 characters)")
        out[key] = text
    return out


def _parse_proxy(data: Any, path: str, warnings: list[str]) -> dict[str, Any]:
    p = _Block(data, path, _PROXY_SPEC, warnings)
    mode = p.text("mode")
    if mode not in ("", "direct", "transparent"):
        raise _fail(p.at("mode"), f"must be one of direct or transparent (or empty), got {_show(mode)}")
    proxy: dict[str, Any] = {
        "DestinationServiceName": p.text("destination_service_name"),
        "DestinationServiceID": p.text("destination_service_id"),
        "LocalServiceAddress": p.text("local_service_address"),
        "LocalServicePort": p.integer("local_service_port", lo=0, hi=_MAX_PORT),
        "Mode": mode,
        "Config": _json_copy(p.mapping("config") or {}, p.at("config")),
        "Upstreams": [],
        "MeshGateway": _parse_mesh_gateway(p, warnings),
        "Expose": {},
        "TransparentProxy": {},
    }
    if p.text("local_service_socket_path"):
        proxy["LocalServiceSocketPath"] = p.text("local_service_socket_path")
    if p.has("access_logs"):
        proxy["AccessLogs"] = _json_copy(p.mapping("access_logs"), p.at("access_logs"))
    if p.has("envoy_extensions"):
        proxy["EnvoyExtensions"] = _json_copy(p.seq("envoy_extensions"), p.at("envoy_extensions"))

    bind_addrs: set[str] = set()
    for i, raw in enumerate(p.seq("upstreams")):
        upath = f"{p.at('upstreams')}[{i}]"
        up = _parse_upstream(raw, upath, warnings)
        if not up["LocalBindPort"] and not up.get("LocalBindSocketPath") and mode != "transparent" \
                and not up.get("CentrallyConfigured"):
            raise _fail(upath, "local_bind_port or local_bind_socket_path must be set (non-zero)")
        bind = up.get("LocalBindSocketPath") or f"{up['LocalBindAddress'] or '127.0.0.1'}:{up['LocalBindPort']}"
        if up["LocalBindPort"] or up.get("LocalBindSocketPath"):
            if bind in bind_addrs:
                raise _fail(upath, f"another upstream already binds {bind}")
            bind_addrs.add(bind)
        proxy["Upstreams"].append(up)

    if p.has("expose"):
        eb = _Block(p.raw("expose"), p.at("expose"), _EXPOSE_SPEC, warnings)
        paths = []
        for i, raw in enumerate(eb.seq("paths")):
            xb = _Block(raw, f"{eb.at('paths')}[{i}]", _EXPOSE_PATH_SPEC, warnings)
            xpath = xb.text("path")
            if xpath and not xpath.startswith("/"):
                raise _fail(xb.at("path"), f"must begin with a '/', got {_show(xpath)}")
            protocol = xb.text("protocol")
            if protocol not in ("", "http", "http2"):
                raise _fail(xb.at("protocol"), f"must be http or http2, got {_show(protocol)}")
            paths.append({
                "ListenerPort": xb.integer("listener_port", lo=0, hi=_MAX_PORT),
                "Path": xpath,
                "LocalPathPort": xb.integer("local_path_port", lo=0, hi=_MAX_PORT),
                "Protocol": protocol,
                "ParsedFromCheck": xb.flag("parsed_from_check"),
            })
        expose: dict[str, Any] = {}
        if eb.flag("checks"):
            expose["Checks"] = True
        if paths:
            expose["Paths"] = paths
        proxy["Expose"] = expose

    if p.has("transparent_proxy"):
        tb = _Block(p.raw("transparent_proxy"), p.at("transparent_proxy"), _TPROXY_SPEC, warnings)
        tproxy: dict[str, Any] = {}
        if tb.has("outbound_listener_port"):
            tproxy["OutboundListenerPort"] = tb.integer("outbound_listener_port", lo=0, hi=_MAX_PORT)
        if tb.flag("dialed_directly"):
            tproxy["DialedDirectly"] = True
        proxy["TransparentProxy"] = tproxy
    return proxy


def _parse_mesh_gateway(b: _Block, warnings: list[str]) -> dict[str, str]:
    if not b.has("mesh_gateway"):
        return {}
    mb = _Block(b.raw("mesh_gateway"), b.at("mesh_gateway"), _MESH_GATEWAY_SPEC, warnings)
    mode = mb.text("mode")
    if mode not in ("", "none", "local", "remote"):
        raise _fail(mb.at("mode"), f"must be one of none, local or remote (or empty), got {_show(mode)}")
    return {"Mode": mode} if mode else {}


def _parse_upstream(data: Any, path: str, warnings: list[str]) -> dict[str, Any]:
    u = _Block(data, path, _UPSTREAM_SPEC, warnings)
    dest_type = u.text("destination_type") or "service"
    if dest_type not in ("service", "prepared_query"):
        raise _fail(u.at("destination_type"), f"must be service or prepared_query, got {_show(dest_type)}")
    dest_name = u.text("destination_name")
    if not dest_name:
        raise _fail(u.at("destination_name"), "an upstream must name its destination")
    up: dict[str, Any] = {
        "DestinationType": dest_type,
        "DestinationNamespace": u.text("destination_namespace"),
        "DestinationName": dest_name,
        "Datacenter": u.text("datacenter"),
        "LocalBindAddress": u.text("local_bind_address"),
        "LocalBindPort": u.integer("local_bind_port", lo=0, hi=_MAX_PORT),
        "Config": _json_copy(u.mapping("config") or {}, u.at("config")),
        "MeshGateway": _parse_mesh_gateway(u, warnings),
    }
    for canon, key in (("destination_partition", "DestinationPartition"), ("destination_peer", "DestinationPeer"),
                       ("local_bind_socket_path", "LocalBindSocketPath"),
                       ("local_bind_socket_mode", "LocalBindSocketMode")):
        if u.text(canon):
            up[key] = u.text(canon)
    if u.flag("centrally_configured"):
        up["CentrallyConfigured"] = True
    return up


# --------------------------------------------------------------------------------------------
# Sidecar expansion


def expand_sidecar(
    parent: ServiceDefinition,
    *,
    used_ports: set[int],
    port_range: tuple[int, int] = (21000, 21255),
    node_address: str = "",
    previous_port: int = 0,
) -> ServiceDefinition | None:
    """The connect-proxy registration for ``parent``'s ``connect.sidecar_service``, or None.

    Consul's defaults: ID ``<parent id>-sidecar-proxy`` (not overridable), name
    ``<parent name>-sidecar-proxy``, kind connect-proxy, tags/meta/address/locality from the parent
    when the sidecar sets none, Proxy destination = the parent, LocalService = 127.0.0.1:<parent
    port> (or the parent's socket path) unless any LocalService* field is set. Port: the sidecar's
    own, else ``previous_port`` if it is in ``port_range`` (re-registration keeps its port, as
    Consul does), else the lowest port in ``port_range`` (inclusive) not in ``used_ports``.
    Without checks of its own, the sidecar gets a TCP check on its address and port and an alias
    check on the parent. Store the parent as ``parent.without_sidecar()``.
    """
    sidecar = parent.sidecar_service
    if sidecar is None:
        return None
    sidecar_id = f"{parent.id}-sidecar-proxy"
    port = sidecar.port
    lo, hi = port_range
    if not port and not sidecar.socket_path:
        if lo < 1 or hi < lo:
            raise ValidationError("no port provided for sidecar_service and auto-assignment is disabled")
        if lo <= previous_port <= hi:
            port = previous_port
        else:
            port = next((p for p in range(lo, hi + 1) if p not in used_ports), 0)
        if not port:
            raise ValidationError(
                f"no port provided for sidecar_service and none left in the configured range [{lo}, {hi}]"
            )

    proxy = dict(sidecar.proxy)
    proxy["DestinationServiceName"] = proxy.get("DestinationServiceName") or parent.name
    proxy["DestinationServiceID"] = proxy.get("DestinationServiceID") or parent.id
    if not (proxy.get("LocalServiceAddress") or proxy.get("LocalServicePort")
            or proxy.get("LocalServiceSocketPath")):
        if parent.socket_path:
            proxy["LocalServiceSocketPath"] = parent.socket_path
        else:
            proxy["LocalServiceAddress"] = "127.0.0.1"
            proxy["LocalServicePort"] = parent.port

    address = sidecar.address or parent.address
    if sidecar.checks:
        checks = _bind_checks(sidecar.checks, sidecar_id, sidecar.name or f"{parent.name}-sidecar-proxy")
    else:
        check_address = address or proxy.get("LocalServiceAddress") or node_address or "127.0.0.1"
        host = f"[{check_address}]" if ":" in check_address and not check_address.startswith("[") else check_address
        checks = (
            CheckDefinition(id=f"service:{sidecar_id}:1", name="Connect Sidecar Listening", service_id=sidecar_id,
                            type="tcp", tcp=f"{host}:{port}", interval=10.0),
            CheckDefinition(id=f"service:{sidecar_id}:2", name=f"Connect Sidecar Aliasing {parent.id}",
                            service_id=sidecar_id, type="alias", alias_service=parent.id),
        )

    return dataclasses.replace(
        sidecar,
        kind=ServiceKind.CONNECT_PROXY.value,
        id=sidecar_id,
        name=sidecar.name or f"{parent.name}-sidecar-proxy",
        tags=sidecar.tags or parent.tags,
        meta=dict(sidecar.meta or parent.meta),
        address=address,
        port=port,
        locality=sidecar.locality if sidecar.locality is not None else parent.locality,
        proxy=proxy,
        checks=checks,
        connect={"Native": False, "SidecarService": None},
        token=sidecar.token or parent.token,
        warnings=(),
    )


# --------------------------------------------------------------------------------------------
# State-store payloads


def _connect_api(svc: ServiceDefinition) -> dict[str, Any]:
    return {"Native": True} if svc.connect.get("Native") else {}


def service_row_payload(svc: ServiceDefinition) -> dict[str, Any]:
    """Keyword arguments for ``ServiceRow`` (all but ``node`` and the indexes). Connect is in its
    API shape without SidecarService; tags are a tuple, as ServiceRow stores them."""
    return {
        "service": svc.name,
        "id": svc.id,
        "kind": svc.kind,
        "tags": tuple(svc.tags),
        "address": svc.address,
        "tagged_addresses": copy.deepcopy(svc.tagged_addresses),
        "meta": dict(svc.meta),
        "port": svc.port,
        "socket_path": svc.socket_path,
        "weights": dict(svc.weights),
        "enable_tag_override": svc.enable_tag_override,
        "proxy": copy.deepcopy(svc.proxy),
        "connect": _connect_api(svc),
        "locality": dict(svc.locality) if svc.locality else None,
    }


def check_row_payload(check: CheckDefinition, *, service_id: str = "") -> dict[str, Any]:
    """Keyword arguments for ``CheckRow`` (all but ``node``, service name/tags and the indexes)."""
    return {
        "check_id": check.id or check.name,
        "name": check.name,
        "status": check.status,
        "notes": check.notes,
        "output": "",
        "service_id": service_id or check.service_id,
        "type": check.type,
        "interval": format_duration(check.interval) if check.interval else "",
        "timeout": format_duration(check.timeout) if check.timeout else "",
        "definition": check.to_api_definition(),
    }

