"""Agent configuration: Consul's configuration keys, from JSON/HCL files, directories, the environment
and command-line flags, merged in Consul's order and validated into one frozen :class:`RuntimeConfig`.

::

    ConfigSource (what the operator gave)            load_config(source) -> LoadResult
      built-in defaults ─┐                             (config: RuntimeConfig, warnings)
      dev-mode defaults ─┤  each fragment:
      -config-file/-dir ─┤    parse (config_file.py) -> check every key against _SCHEMA
      $CONSUL_LOCAL_CONFIG┤    (type errors name source + key path; unknown keys warn)
      $LICTOR_LOCAL_CONFIG┤  merge in order: scalars overwrite, maps merge, lists append
      -hcl fragments    ─┤  -> build RuntimeConfig + cross-key validation (names the source
      flags (last)      ─┘     that set the offending key)

Rules kept here:

- ``load_config`` is a pure function of its :class:`ConfigSource` plus the files it names, so the
  agent calls it again on SIGHUP or ``PUT /v1/agent/reload`` with the same source. Its one side
  effect is Consul's: when ``node_id`` is not configured and ``data_dir`` is set, the ID is read
  from ``<data_dir>/node-id`` or generated and written there, so a reload returns the same ID.
  In ``-dev`` mode without a data directory the ID is derived from the node name (uuid5), so it
  is also stable across reloads (Consul picks a random one; nothing depends on that).
- Services and checks are not parsed here: they are kept as :class:`Sourced` raw definitions with
  the file and key path they came from; the agent's service-definition parser owns their rules.
- Keys Consul knows but Lictor does not act on yet are accepted with a warning (``_NOT_USED``); a
  few harmless ones are accepted silently. Unknown keys are a warning, never an error.
- ``encrypt`` and anything that looks like a token is never logged or shown: warnings name only
  the key path, ``RuntimeConfig.raw`` redacts the values and ``encrypt`` is left out of repr.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lictor.common.audit import AuditConfig, audit_config_from_raw
from lictor.common.config_file import list_config_dir, load_file, parse_text
from lictor.common.duration import parse_duration
from lictor.common.errors import ConfigError, ValidationError
from lictor.common.tls import LEGACY_KEYS as _TLS_LEGACY_KEYS
from lictor.common.tls import AutoEncryptConfig, TLSConfig, auto_encrypt_config_from_raw, tls_config_from_raw

__all__ = [
    "ENV_LOCAL_CONFIG",
    "SOURCE_DEFAULTS",
    "SOURCE_DEV",
    "SOURCE_FLAGS",
    "Addresses",
    "ConfigSource",
    "LoadResult",
    "Ports",
    "RuntimeConfig",
    "Sourced",
    "load_config",
    "redact",
]

SOURCE_DEFAULTS = "built-in defaults"
SOURCE_DEV = "dev-mode defaults"
SOURCE_FLAGS = "command-line flags"
# Environment variables holding an inline JSON/HCL fragment, loaded in this order after the files.
ENV_LOCAL_CONFIG = ("CONSUL_LOCAL_CONFIG", "LICTOR_LOCAL_CONFIG")


# --------------------------------------------------------------------------------------------
# Public values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSource:
    """Everything the operator gave, before any file is read. Hand the same value to
    :func:`load_config` again to reload.

    - ``flags``: values from command-line flags, already typed by the CLI, keyed by configuration
      key with dots for nesting: ``{"datacenter": "dc2", "ports.http": 8501, "retry_join": ["a"],
      "ui_config.enabled": True}``. Lists append to what the files gave; everything else wins.
    - ``config_files``/``config_dirs``: ``-config-file``/``-config-dir`` values. A config file
      may also be a directory (Consul accepts that); a config dir must be a directory.
    - ``config_paths``: optional; all of the above in command-line order. When given it decides
      the load order (``-config-dir d -config-file override.json`` lets the file win, as in Consul);
      when empty, ``config_files`` load first, then ``config_dirs``.
    - ``hcl``: inline fragments (``-hcl``), loaded after the environment fragment.
    - ``env``: the process environment (only ``ENV_LOCAL_CONFIG`` names are read).
    """

    flags: Mapping[str, object] = field(default_factory=dict)
    config_files: tuple[str, ...] = ()
    config_dirs: tuple[str, ...] = ()
    config_paths: tuple[str, ...] = ()
    hcl: tuple[str, ...] = ()
    dev: bool = False
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sourced:
    """A raw definition (service, check) and where it came from, for error messages:
    ``f"{s.source}: {s.path}.port: ..."``."""

    source: str
    path: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ports:
    """Listening ports; -1 disables a listener (dns, http, https, grpc, grpc_tls, serf_wan)."""

    dns: int = 8600
    http: int = 8500
    https: int = -1
    grpc: int = -1
    grpc_tls: int = -1
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300
    sidecar_min_port: int = 21000
    sidecar_max_port: int = 21255
    expose_min_port: int = 21500
    expose_max_port: int = 21755


@dataclass(frozen=True, slots=True, kw_only=True)
class Addresses:
    """Per-listener bind addresses (``addresses { http = "0.0.0.0" }``); empty means client_addr."""

    dns: tuple[str, ...] = ()
    http: tuple[str, ...] = ()
    https: tuple[str, ...] = ()
    grpc: tuple[str, ...] = ()
    grpc_tls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """The validated configuration the agent consumes. Durations are float seconds."""

    datacenter: str
    primary_datacenter: str
    domain: str
    node_name: str
    node_id: str  # lowercase UUID; see the module docstring for where it comes from
    node_meta: Mapping[str, str]
    data_dir: str  # "" only in -dev mode (in-memory)
    server: bool
    bootstrap: bool
    bootstrap_expect: int  # 0 = not set
    dev: bool
    bind_addr: str
    client_addr: tuple[str, ...]  # one or more IPs (space-separated in the file)
    advertise_addr: str  # "" = not set: the agent uses bind_addr, or picks a private IP if that is 0.0.0.0/::
    advertise_addr_wan: str  # "" = same as advertise_addr
    ports: Ports
    addresses: Addresses
    retry_join: tuple[str, ...]
    retry_join_wan: tuple[str, ...]
    retry_interval: float
    retry_interval_wan: float
    retry_max: int  # 0 = retry forever
    log_level: str  # one of trace, debug, info, warn, err
    log_json: bool
    enable_script_checks: bool
    enable_local_script_checks: bool
    enable_debug: bool
    disable_remote_exec: bool
    connect_enabled: bool
    ui_enabled: bool
    ui_dir: str  # ui_config.dir: serve these files instead of the packaged UI ("" = packaged)
    ui_content_path: str  # ui_config.content_path: the UI's URL prefix, "/ui/" by default
    check_update_interval: float
    check_output_max_size: int
    enable_central_service_config: bool
    session_ttl_min: float
    leave_on_terminate: bool  # default: true for clients, false for servers (as Consul)
    skip_leave_on_interrupt: bool  # default: true for servers, false for clients (as Consul)
    rejoin_after_leave: bool
    reconnect_timeout: float
    reconnect_timeout_wan: float
    recursors: tuple[str, ...]
    services: tuple[Sourced, ...]
    checks: tuple[Sourced, ...]
    acl: Mapping[str, Any]  # raw
    raft_multiplier: int
    limits: Mapping[str, Any]  # raw, with Consul's defaults filled in
    # autopilot keys the operator set (validated; seconds for durations); defaults live in
    # lictor.server.cluster.AutopilotConfig
    autopilot: Mapping[str, Any] = field(default_factory=dict)
    encrypt: str = field(default="", repr=False)  # gossip key; never log it
    tls: TLSConfig = field(default_factory=TLSConfig)  # effective settings per protocol (paths only)
    auto_encrypt: AutoEncryptConfig = field(default_factory=AutoEncryptConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    # DNS (issue 15): `dns_config { ... }` as checked by the schema (durations in seconds), turned
    # into typed settings by lictor.agent.dns.config; "" = no alternative domain
    dns_config: Mapping[str, Any] = field(default_factory=dict)
    alt_domain: str = ""
    # What the operator's sources set (files, env, -hcl, flags; not the built-in defaults), merged,
    # secrets redacted, services/checks as lists: for /v1/agent/self's DebugConfig.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def listen_addresses(self, kind: str) -> tuple[str, ...]:
        """Bind addresses for a client listener (``"http"``, ``"https"``, ``"dns"``, ``"grpc"``,
        ``"grpc_tls"``): its ``addresses`` override if set, else ``client_addr``."""
        override: tuple[str, ...] = getattr(self.addresses, kind)
        return override or self.client_addr

    def bind_addresses(self, kind: str) -> tuple[str, ...]:
        """Same as :meth:`listen_addresses` (the name the agent uses)."""
        return self.listen_addresses(kind)


@dataclass(frozen=True, slots=True)
class LoadResult:
    config: RuntimeConfig
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Value checkers: each returns the typed value or raises _Invalid with a message (no path)
# --------------------------------------------------------------------------------------------


class _Invalid(Exception):
    pass


def _show(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _c_any(value: object) -> object:
    return value


def _c_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Invalid(f"expected a string, got {_show(value)}")


def _c_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Invalid(f"expected true or false, got {_show(value)}")


def _to_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _c_int(value: object) -> int:
    n = _to_int(value)
    if n is None:
        raise _Invalid(f"expected an integer, got {_show(value)}")
    return n


def _c_port(value: object) -> int:
    n = _to_int(value)
    if n is None or not -1 <= n <= 65535:
        raise _Invalid(f"expected an integer port 0-65535 (or -1 to disable), got {_show(value)}")
    return n


def _c_duration(value: object) -> float:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _Invalid(f"expected a duration like \"10s\", got {_show(value)}")
    try:
        return parse_duration(value)
    except ValidationError as exc:
        detail = str(exc).removeprefix("duration: ")
        raise _Invalid(detail) from exc


def _c_str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of strings, got {_show(value)}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(f"item {i}: expected a string, got {_show(item)}")
        out.append(item)
    return out


def _c_str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected an object of string values, got {_show(value)}")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, int | float):
            v = str(v)
        if not isinstance(v, str):
            raise _Invalid(f"{k}: expected a string value, got {_show(v)}")
        out[str(k)] = v
    return out


def _c_map(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected an object, got {_show(value)}")
    return value


def _check_ip(text: str, *, allow_unix: bool = False) -> str:
    if "{{" in text:
        raise _Invalid(f"go-sockaddr templates are not supported yet, got {_show(text)}")
    if text.startswith("unix://"):
        raise _Invalid(f"unix sockets are not supported yet, got {_show(text)}")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise _Invalid(f"expected an IP address, got {_show(text)}") from None


def _c_ip(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected an IP address, got {_show(value)}")
    if "{{" not in value and len(value.split()) > 1:
        raise _Invalid(f"expected a single IP address, got {_show(value)}")
    return _check_ip(value.strip())


def _c_ip_list(value: object) -> tuple[str, ...]:
    """Space-separated IPs in a string (Consul's form) or a list of them. A tuple, so that a later
    source replaces it rather than appending (it is one setting, not a list of definitions)."""
    if isinstance(value, str):
        parts = [value] if "{{" in value else value.split()
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        parts = list(value)
    else:
        raise _Invalid(f"expected space-separated IP addresses, got {_show(value)}")
    if not parts:
        raise _Invalid("expected at least one IP address, got \"\"")
    return tuple(_check_ip(p) for p in parts)


# --------------------------------------------------------------------------------------------
# The schema: every key we know, how to check it, and whether it is used
# --------------------------------------------------------------------------------------------

USED, SILENT, NOT_USED = "used", "silent", "not used"


@dataclass(frozen=True, slots=True)
class _Key:
    check: Callable[[object], object]
    use: str = USED


# Markers for definitions collected as Sourced
_SERVICE, _CHECK = object(), object()
_Schema = dict[str, "_Key | dict[str, Any] | object"]


def _nu(check: Callable[[object], object] = _c_any) -> _Key:
    return _Key(check, NOT_USED)


def _silent(check: Callable[[object], object] = _c_any) -> _Key:
    return _Key(check, SILENT)


_PORTS: _Schema = {
    name: _Key(_c_port)
    for name in (
        "dns", "http", "https", "grpc", "grpc_tls", "serf_lan", "serf_wan", "server",
        "sidecar_min_port", "sidecar_max_port", "expose_min_port", "expose_max_port",
    )
}
_ADDRESSES: _Schema = {name: _Key(_c_ip_list) for name in ("dns", "http", "https", "grpc", "grpc_tls")}

_TLS_BLOCK: _Schema = {
    "ca_file": _Key(_c_str), "ca_path": _Key(_c_str), "cert_file": _Key(_c_str), "key_file": _Key(_c_str),
    "verify_incoming": _Key(_c_bool), "verify_outgoing": _Key(_c_bool), "tls_min_version": _Key(_c_str),
    "tls_cipher_suites": _Key(_c_str),
}

_SCHEMA: _Schema = {
    "datacenter": _Key(_c_str),
    "primary_datacenter": _Key(_c_str),
    "domain": _Key(_c_str),
    "node_name": _Key(_c_str),
    "node_id": _Key(_c_str),
    "node_meta": _Key(_c_str_map),
    "data_dir": _Key(_c_str),
    "server": _Key(_c_bool),
    "bootstrap": _Key(_c_bool),
    "bootstrap_expect": _Key(_c_int),
    "bind_addr": _Key(_c_ip),
    "client_addr": _Key(_c_ip_list),
    "advertise_addr": _Key(_c_ip),
    "advertise_addr_wan": _Key(_c_ip),
    "ports": _PORTS,
    "addresses": _ADDRESSES,
    "retry_join": _Key(_c_str_list),
    "retry_join_wan": _Key(_c_str_list),
    "retry_interval": _Key(_c_duration),
    "retry_interval_wan": _Key(_c_duration),
    "retry_max": _Key(_c_int),
    "log_level": _Key(_c_str),
    "log_json": _Key(_c_bool),
    "enable_script_checks": _Key(_c_bool),
    "enable_local_script_checks": _Key(_c_bool),
    "enable_debug": _Key(_c_bool),
    "disable_remote_exec": _Key(_c_bool),
    "connect": {
        "enabled": _Key(_c_bool),
        "ca_provider": _nu(_c_str),
        "ca_config": _nu(_c_map),
        "enable_mesh_gateway_wan_federation": _nu(_c_bool),
        "enable_serverless_plugin": _nu(_c_bool),
    },
    "ui_config": {
        "enabled": _Key(_c_bool),
        "dir": _nu(_c_str),
        "content_path": _nu(_c_str),
        "metrics_provider": _nu(_c_str),
        "metrics_provider_options_json": _nu(_c_str),
        "metrics_proxy": _nu(_c_map),
        "dashboard_url_templates": _nu(_c_map),
    },
    "ui": _Key(_c_bool),  # legacy spelling of ui_config.enabled
    "check_update_interval": _Key(_c_duration),
    "check_output_max_size": _Key(_c_int),
    "enable_central_service_config": _Key(_c_bool),
    "session_ttl_min": _Key(_c_duration),
    "leave_on_terminate": _Key(_c_bool),
    "skip_leave_on_interrupt": _Key(_c_bool),
    "rejoin_after_leave": _Key(_c_bool),
    "reconnect_timeout": _Key(_c_duration),
    "reconnect_timeout_wan": _Key(_c_duration),
    "recursors": _Key(_c_str_list),
    "alt_domain": _Key(_c_str),
    "dns_config": {  # lictor.agent.dns.config has the defaults and the cross-key rules
        **{k: _Key(_c_bool) for k in ("allow_stale", "enable_truncate", "only_passing", "use_cache",
                                       "enable_additional_node_meta_txt")},
        "disable_compression": _nu(_c_bool),  # answers are always compressed (dnspython)
        **{k: _Key(_c_duration) for k in ("max_stale", "node_ttl", "recursor_timeout", "cache_max_age")},
        **{k: _Key(_c_int) for k in ("udp_answer_limit", "a_record_limit")},
        "service_ttl": _Key(_c_map),
        "recursor_strategy": _Key(_c_str),
        "soa": {k: _Key(_c_int) for k in ("refresh", "retry", "expire", "min_ttl")},
        "prefer_namespace": _nu(_c_bool),
    },
    "service": _SERVICE,
    "services": _SERVICE,
    "check": _CHECK,
    "checks": _CHECK,
    "performance": {
        "raft_multiplier": _Key(_c_int),
        "leave_drain_time": _nu(_c_duration),
        "rpc_hold_timeout": _nu(_c_duration),
        "grpc_keepalive_interval": _nu(_c_duration),
        "grpc_keepalive_timeout": _nu(_c_duration),
    },
    "limits": _Key(_c_map),
    "autopilot": {
        "cleanup_dead_servers": _Key(_c_bool),
        "last_contact_threshold": _Key(_c_duration),
        "max_trailing_logs": _Key(_c_int),
        "min_quorum": _Key(_c_int),
        "server_stabilization_time": _Key(_c_duration),
        # Lictor's: without gossip, "dead" = the leader has not heard from it for this long.
        "dead_server_last_contact_threshold": _Key(_c_duration),
        "redundancy_zone_tag": _nu(_c_str),
        "disable_upgrade_migration": _nu(_c_bool),
        "upgrade_version_tag": _nu(_c_str),
    },
    "acl": _nu(_c_map),
    "encrypt": _Key(_c_str),  # issue 4: gossip keyring (lictor.agent.membership)
    # TLS (issue 7): parsed by lictor.common.tls, audit by lictor.common.audit
    "tls": {
        "defaults": _TLS_BLOCK,
        "internal_rpc": {**_TLS_BLOCK, "verify_server_hostname": _Key(_c_bool)},
        "https": _TLS_BLOCK,
        "grpc": {**_TLS_BLOCK, "use_auto_cert": _Key(_c_bool)},
    },
    "auto_encrypt": {"tls": _Key(_c_bool), "allow_tls": _Key(_c_bool), "dns_san": _Key(_c_str_list),
                     "ip_san": _Key(_c_str_list)},
    "audit": {"enabled": _Key(_c_bool), "sink": _Key(_c_map)},
    # Consul's pre-1.12 spellings, mapped into tls { ... } with a deprecation warning
    **{name: _Key(_c_str) for name in ("ca_file", "ca_path", "cert_file", "key_file", "tls_min_version",
                                        "tls_cipher_suites")},
    **{name: _Key(_c_bool) for name in ("verify_incoming", "verify_incoming_https", "verify_incoming_rpc",
                                        "verify_outgoing", "verify_server_hostname")},
    # Accepted silently: they only switch off things Lictor never does.
    "disable_anonymous_signature": _silent(_c_bool),
    "disable_update_check": _silent(_c_bool),
    "disable_host_node_id": _silent(_c_bool),
    "disable_keyring_file": _silent(_c_bool),
    "disable_coordinates": _silent(_c_bool),
    # Known to Consul, accepted, not acted upon yet (a warning says so).
    **{
        name: _nu()
        for name in (
            "acl_datacenter", "acl_default_policy", "acl_down_policy", "acl_token", "acl_master_token",
            "advertise_addr_ipv4", "advertise_addr_ipv6", "auto_config",
            "auto_reload_config", "cache", "cloud", "config_entries", "default_query_time",
            "discovery_max_stale", "enable_acl_replication", "enable_agent_tls_for_checks",
            "enable_syslog", "encrypt_verify_incoming", "encrypt_verify_outgoing", "gossip_lan",
            "gossip_wan", "http_config", "leave_drain_time", "license_path", "log_file",
            "log_rotate_bytes", "log_rotate_duration", "log_rotate_max_files", "max_query_time",
            "partition", "peering", "pid_file", "primary_gateways", "primary_gateways_interval",
            "protocol", "raft_boltdb", "raft_logstore", "raft_protocol", "raft_snapshot_interval",
            "raft_snapshot_threshold", "raft_trailing_logs", "read_replica", "reporting", "rpc",
            "segment", "segments", "serf_lan", "serf_lan_allowed_cidrs", "serf_wan",
            "serf_wan_allowed_cidrs", "server_name", "server_rejoin_age_max", "syslog_facility",
            "tagged_addresses", "telemetry",
            "translate_wan_addrs", "ui_content_path", "ui_dir", "unix_sockets", "use_streaming_backend",
            "watches", "xds", "retry_max_wan", "start_join", "start_join_wan",
            "node_meta_sort",
        )
    },
}

_DEFAULT_LIMITS: dict[str, Any] = {
    "http_max_conns_per_client": 200,
    "rpc_max_conns_per_client": 100,
    "rpc_handshake_timeout": "5s",
    "rpc_rate": -1,  # unlimited
    "rpc_max_burst": 1000,
    "kv_max_value_size": 512 * 1024,
    "txn_max_req_len": 512 * 1024,
}

_DEFAULTS: dict[str, Any] = {
    "datacenter": "dc1",
    "domain": "consul",
    "bind_addr": "0.0.0.0",
    "client_addr": ("127.0.0.1",),
    "ports": {f.name: f.default for f in Ports.__dataclass_fields__.values()},  # type: ignore[attr-defined]
    "retry_interval": 30.0,
    "retry_interval_wan": 30.0,
    "retry_max": 0,
    "log_level": "info",
    "log_json": False,
    "server": False,
    "bootstrap": False,
    "bootstrap_expect": 0,
    "enable_script_checks": False,
    "enable_local_script_checks": False,
    "enable_debug": False,
    "disable_remote_exec": True,
    "connect": {"enabled": True},
    "ui_config": {"enabled": False},
    "check_update_interval": 300.0,
    "check_output_max_size": 4096,
    "enable_central_service_config": True,
    "session_ttl_min": 10.0,
    "rejoin_after_leave": False,
    "reconnect_timeout": 72 * 3600.0,
    "reconnect_timeout_wan": 72 * 3600.0,
    "performance": {"raft_multiplier": 5},
    "limits": dict(_DEFAULT_LIMITS),
}

# Consul's -dev: one in-memory server on loopback that elects itself at once.
_DEV_DEFAULTS: dict[str, Any] = {
    "bind_addr": "127.0.0.1",
    "client_addr": ("127.0.0.1",),
    "server": True,
    "bootstrap": True,
    "ui_config": {"enabled": True},
    "connect": {"enabled": True},
    "ports": {"grpc": 8502, "grpc_tls": 8503},
    "log_level": "debug",
    "enable_debug": True,
    "disable_anonymous_signature": True,
    "performance": {"raft_multiplier": 1},
}

_LOG_LEVELS = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "err": "err",
    "error": "err",
}
_DC_RE = re.compile(r"^[a-z0-9_-]+$")
_DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SECRET_KEY_RE = re.compile(r"token|secret|password|private_key|^encrypt$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Per-fragment checking
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Fragment:
    source: str
    values: dict[str, Any]  # checked and typed
    raw: dict[str, Any]  # as written, minus services/checks
    services: list[Sourced]
    checks: list[Sourced]


def _collect_definitions(value: object, key: str, source: str, prefix: str) -> list[Sourced]:
    path = prefix + key
    if isinstance(value, dict):
        return [Sourced(source, path, value)]
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(f"expected an object, got {_show(item)}", source=source, path=f"{path}[{i}]")
            out.append(Sourced(source, f"{path}[{i}]", item))
        return out
    raise ConfigError(f"expected an object or a list of objects, got {_show(value)}", source=source, path=path)


def _merge_block_list(value: list[Any], source: str, path: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in value:
        if not isinstance(item, dict):
            raise ConfigError(f"expected an object, got {_show(item)}", source=source, path=path)
        _merge(merged, item)
    return merged


def _check_fragment(
    data: Mapping[str, Any], schema: _Schema, source: str, prefix: str, frag: _Fragment, warnings: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    values: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for key, value in data.items():
        path = prefix + key
        spec = schema.get(key)
        if spec is None:
            warnings.append(f"{source}: {path}: unknown configuration key (ignored)")
            continue
        if spec is _SERVICE:
            frag.services.extend(_collect_definitions(value, key, source, prefix))
            continue
        if spec is _CHECK:
            frag.checks.extend(_collect_definitions(value, key, source, prefix))
            continue
        if isinstance(spec, dict):
            if isinstance(value, list):  # the same HCL block written twice
                value = _merge_block_list(value, source, path)
            if not isinstance(value, dict):
                raise ConfigError(f"expected an object, got {_show(value)}", source=source, path=path)
            values[key], raw[key] = _check_fragment(value, spec, source, path + ".", frag, warnings)
            continue
        assert isinstance(spec, _Key)
        _refuse_placeholder(value, source, path)
        if spec.check is _c_map and isinstance(value, list):
            value = _merge_block_list(value, source, path)
        try:
            values[key] = spec.check(value)
        except _Invalid as exc:
            raise ConfigError(str(exc), source=source, path=path) from None
        raw[key] = value
        if spec.use == NOT_USED:
            warnings.append(f"{source}: {path}: accepted but not used yet")
    return values, raw


#: the example configs' fill-in markers (deploy/systemd/*.hcl): "<GOSSIP_KEY>", "<THIS_HOST_IP>"
_PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z0-9_]*>")


def _refuse_placeholder(value: object, source: str, path: str) -> None:
    """A fill-in marker copied from an example config and never replaced is an error naming the
    key, never a value the agent tries to use (an ACL token "<AGENT_TOKEN>" would look valid)."""
    if isinstance(value, dict):  # raw blocks (acl, tls, ...): their leaves name the full path
        for k, v in value.items():
            _refuse_placeholder(v, source, f"{path}.{k}")
    elif isinstance(value, list):
        for item in value:
            _refuse_placeholder(item, source, path)
    elif isinstance(value, str):
        m = _PLACEHOLDER_RE.search(value)
        if m:
            raise ConfigError(f"placeholder {m.group(0)} left in: replace it with this machine's value "
                              "(see deploy/README.md)", source=source, path=path)


def _fragment(data: Mapping[str, Any], source: str, warnings: list[str]) -> _Fragment:
    frag = _Fragment(source, {}, {}, [], [])
    frag.values, frag.raw = _check_fragment(data, _SCHEMA, source, "", frag, warnings)
    if "ui" in frag.values:  # the legacy spelling; ui_config.enabled wins within one fragment
        frag.values.setdefault("ui_config", {}).setdefault("enabled", frag.values.pop("ui"))
    return frag


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


def _merge(dst: dict[str, Any], src: Mapping[str, Any], source: str = "", origin: dict[str, str] | None = None,
           prefix: str = "") -> None:
    """Consul's rules: maps merge, lists append, anything else is replaced by the later source."""
    for key, value in src.items():
        path = prefix + key
        old = dst.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value, source, origin, path + ".")
            continue
        if isinstance(old, list) and isinstance(value, list):
            dst[key] = old + value
        elif isinstance(value, dict):
            dst[key] = {}
            _merge(dst[key], value, source, origin, path + ".")
            continue
        else:
            dst[key] = list(value) if isinstance(value, list) else value
        if origin is not None:
            origin[path] = source


def _unflatten(flags: Mapping[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flags.items():
        parts = dotted.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return out


def redact(value: Any, *, secret: bool = False) -> Any:
    """A copy with secret values replaced by "hidden": strings under a secret-looking key (tokens,
    ``encrypt``, passwords, private keys), including everything inside such a key's object
    (``acl.tokens.agent``)."""
    if isinstance(value, dict):
        return {k: redact(v, secret=secret or bool(_SECRET_KEY_RE.search(str(k)))) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secret=secret) for v in value]
    if secret and isinstance(value, str) and value:
        return "hidden"
    return value


# --------------------------------------------------------------------------------------------
# Loading the sources
# --------------------------------------------------------------------------------------------


def _read_sources(source: ConfigSource, warnings: list[str]) -> list[tuple[str, Mapping[str, Any]]]:
    out: list[tuple[str, Mapping[str, Any]]] = [(SOURCE_DEFAULTS, _DEFAULTS)]
    if source.dev:
        out.append((SOURCE_DEV, _DEV_DEFAULTS))
    paths = source.config_paths or (*source.config_files, *source.config_dirs)
    dirs = set(source.config_dirs)
    for path in paths:
        if os.path.isdir(path):
            for file, is_config in list_config_dir(path):
                if is_config:
                    out.append((file, load_file(file)))
                else:
                    warnings.append(f"{file}: skipped: only .json and .hcl files are read from a config directory")
        elif path in dirs:
            if os.path.exists(path):
                raise ConfigError("-config-dir: not a directory", source=path)
            raise ConfigError("-config-dir: no such directory", source=path)
        else:
            out.append((path, load_file(path)))
    for name in ENV_LOCAL_CONFIG:
        text = source.env.get(name)
        if text and text.strip():
            out.append((f"${name}", parse_text(text, f"${name}")))
    for i, text in enumerate(source.hcl):
        name = "-hcl" if len(source.hcl) == 1 else f"-hcl #{i + 1}"
        out.append((name, parse_text(text, name, "hcl")))
    if source.flags:
        out.append((SOURCE_FLAGS, _unflatten(source.flags)))
    return out


def load_config(source: ConfigSource) -> LoadResult:
    """Read, merge and validate every source. Raises :class:`ConfigError` naming the source and the
    key path; returns the config and the warnings (unknown keys, unused keys, odd settings)."""
    warnings: list[str] = []
    merged: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    services: list[Sourced] = []
    checks: list[Sourced] = []
    for name, data in _read_sources(source, warnings):
        frag = _fragment(data, name, warnings)
        _merge(merged, frag.values, name, origin)
        if name not in (SOURCE_DEFAULTS, SOURCE_DEV):
            _merge(raw, frag.raw)
        services.extend(frag.services)
        checks.extend(frag.checks)
    builder = _Builder(merged, origin, source.dev, warnings)
    config = builder.build(services, checks, raw)
    return LoadResult(config=config, warnings=tuple(warnings))


# --------------------------------------------------------------------------------------------
# Building RuntimeConfig and cross-key validation
# --------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, merged: dict[str, Any], origin: dict[str, str], dev: bool, warnings: list[str]) -> None:
        self.m = merged
        self.origin = origin
        self.dev = dev
        self.warnings = warnings

    def get(self, path: str, default: Any = None) -> Any:
        node: Any = self.m
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def src(self, path: str) -> str:
        return self.origin.get(path, SOURCE_DEFAULTS)

    def is_set(self, path: str) -> bool:
        return path in self.origin and self.origin[path] != SOURCE_DEFAULTS

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.src(path), path=path)

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{self.src(path)}: {path}: {message}")

    # -- pieces ------------------------------------------------------------------------------

    def _datacenter(self, path: str, value: str) -> str:
        dc = value.lower()
        if not dc:
            raise self.error(path, "cannot be empty")
        if not _DC_RE.match(dc):
            raise self.error(path, f"invalid datacenter {value!r}: use only a-z, 0-9, '_' and '-'")
        return dc

    def _node_name(self) -> str:
        name = self.get("node_name") or ""
        if not name:
            try:
                name = socket.gethostname()
            except OSError as exc:  # pragma: no cover - gethostname practically never fails
                raise ConfigError(f"node_name is not set and the hostname is unknown: {exc}") from exc
        if not name:
            raise self.error("node_name", "cannot be empty")
        if not _DNS_LABEL_RE.match(name):
            self.warn("node_name", f"{name!r} is not a valid DNS label: the node will not be discoverable via DNS")
        return name

    def _node_id(self, data_dir: str, node_name: str) -> str:
        configured = self.get("node_id") or ""
        if configured:
            return self._uuid("node_id", configured)
        if data_dir:
            id_file = os.path.join(data_dir, "node-id")
            try:
                with open(id_file, encoding="utf-8") as f:
                    text = f.read().strip()
            except FileNotFoundError:
                text = ""
            except OSError as exc:
                raise ConfigError(f"cannot read: {exc.strerror or exc}", source=id_file) from exc
            if text:
                try:
                    return str(uuid.UUID(text))
                except ValueError:
                    raise ConfigError(f"invalid node ID in file: {text!r}", source=id_file) from None
            new = str(uuid.uuid4())
            try:
                os.makedirs(data_dir, mode=0o700, exist_ok=True)
                with open(id_file, "w", encoding="utf-8") as f:
                    f.write(new)
            except OSError as exc:
                raise ConfigError(f"cannot write: {exc.strerror or exc}", source=id_file) from exc
            return new
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node_name}.lictor-dev"))

    def _uuid(self, path: str, text: str) -> str:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise self.error(path, f"invalid node ID {text!r}: must be a UUID like "
                                   "\"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"") from None

    def _node_meta(self) -> dict[str, str]:
        meta: dict[str, str] = self.get("node_meta") or {}
        if len(meta) > 64:
            raise self.error("node_meta", f"at most 64 pairs are allowed, got {len(meta)}")
        for k, v in meta.items():
            path = f"node_meta.{k}"
            if not k or len(k) > 128 or not re.fullmatch(r"[A-Za-z0-9_-]+", k):
                raise self.error(path, "keys must be 1-128 characters of a-z, A-Z, 0-9, '_' and '-'")
            if k.startswith("consul-"):
                raise self.error(path, "the \"consul-\" prefix is reserved")
            if len(v) > 512:
                raise self.error(path, f"values must be at most 512 characters, got {len(v)}")
        return meta

    def _data_dir(self) -> str:
        data_dir: str = self.get("data_dir") or ""
        if not data_dir:
            if self.dev:
                return ""
            # Consul's words; no source to name: nothing set it
            raise ConfigError("data_dir cannot be empty (set data_dir in a config file, or -data-dir)")
        if os.path.exists(data_dir) and not os.path.isdir(data_dir):
            raise self.error("data_dir", f"{data_dir!r} exists and is not a directory")
        return data_dir

    def _ports(self) -> Ports:
        values = dict(self.get("ports"))
        for name in ("serf_lan", "server"):
            if values[name] < 1:
                raise self.error(f"ports.{name}", f"expected a port 1-65535 (this one cannot be disabled), "
                                                  f"got {values[name]}")
        for lo, hi in (("sidecar_min_port", "sidecar_max_port"), ("expose_min_port", "expose_max_port")):
            if values[lo] > values[hi]:
                raise self.error(f"ports.{hi}", f"must be >= ports.{lo} ({values[lo]}), got {values[hi]}")
        return Ports(**values)

    def _log_level(self) -> str:
        text = str(self.get("log_level")).strip().lower()
        if text not in _LOG_LEVELS:
            raise self.error("log_level", f"invalid log level {self.get('log_level')!r} "
                                          "(use trace, debug, info, warn or err)")
        return _LOG_LEVELS[text]

    def _check_port_collisions(self, config: RuntimeConfig) -> None:
        def overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
            unspecified = {"0.0.0.0", "::"}
            return bool(set(a) & set(b)) or bool(unspecified & (set(a) | set(b)))

        listeners: list[tuple[str, int, tuple[str, ...]]] = []
        for kind in ("dns", "http", "https", "grpc", "grpc_tls"):
            port = getattr(config.ports, kind)
            if port > 0:
                listeners.append((kind, port, config.listen_addresses(kind)))
        bind = (config.bind_addr,)
        listeners.append(("serf_lan", config.ports.serf_lan, bind))
        if config.ports.serf_wan > 0:
            listeners.append(("serf_wan", config.ports.serf_wan, bind))
        if config.server:
            listeners.append(("server", config.ports.server, bind))
        for i, (k1, p1, a1) in enumerate(listeners):
            for k2, p2, a2 in listeners[i + 1:]:
                if p1 == p2 and overlap(a1, a2):
                    path = f"ports.{k2}" if self.is_set(f"ports.{k2}") else f"ports.{k1}"
                    raise self.error(path, f"ports.{k1} and ports.{k2} both use port {p1} on the same address")

    def _bootstrap(self, server: bool, bootstrap: bool, expect: int) -> None:
        if self.is_set("bootstrap_expect"):
            if self.dev:
                raise self.error("bootstrap_expect", "not allowed in dev mode (-dev already bootstraps "
                                                     "a single server)")
            if expect < 1:
                raise self.error("bootstrap_expect", f"expected a number of servers >= 1, got {expect}")
            if not server:
                raise self.error("bootstrap_expect", "requires server mode (server = true, or -server)")
            if bootstrap:
                raise self.error("bootstrap_expect", "bootstrap_expect and bootstrap are mutually exclusive "
                                                     f"(bootstrap was set by {self.src('bootstrap')})")
            if expect == 1:
                self.warn("bootstrap_expect", "1 is the same as bootstrap mode: this server elects itself")
            elif expect == 2:
                self.warn("bootstrap_expect", "a cluster of 2 servers has no failure tolerance")
            elif expect % 2 == 0:
                self.warn("bootstrap_expect", f"an even number of servers ({expect}) does not add failure "
                                              "tolerance over one fewer")
        if bootstrap and not server:
            raise self.error("bootstrap", "requires server mode (server = true, or -server)")

    def _duration_min(self, path: str, minimum: float, shown: str) -> float:
        value = float(self.get(path))
        if value < minimum:
            raise self.error(path, f"must be at least {shown}")
        return value

    def _security(self, server: bool) -> dict[str, Any]:
        """tls, auto_encrypt and audit (rules in lictor.common.tls / lictor.common.audit)."""
        legacy = {k: self.get(k) for k in _TLS_LEGACY_KEYS if self.get(k) is not None}
        tls, tls_warnings = tls_config_from_raw(
            self.get("tls"), legacy, server=server, https_port=int(self.get("ports.https")),
            grpc_tls_port=int(self.get("ports.grpc_tls")), error=self.error)
        for path, message in tls_warnings:
            self.warn(path, message)
        auto = auto_encrypt_config_from_raw(self.get("auto_encrypt"), server=server, error=self.error)
        if auto.tls and not tls.internal_rpc.has_ca:
            self.warn("auto_encrypt.tls", "no tls ca_file: the first contact with a server is not verified")
        return {"tls": tls, "auto_encrypt": auto, "audit": audit_config_from_raw(self.get("audit"), self.error)}

    # -- the whole -------------------------------------------------------------------------------

    def build(self, services: list[Sourced], checks: list[Sourced], raw: dict[str, Any]) -> RuntimeConfig:
        get = self.get
        datacenter = self._datacenter("datacenter", get("datacenter"))
        primary = get("primary_datacenter") or ""
        primary_dc = self._datacenter("primary_datacenter", primary) if primary else datacenter
        domain = str(get("domain")).strip(".") or "consul"
        node_name = self._node_name()
        data_dir = self._data_dir()
        server = bool(get("server"))
        bootstrap = bool(get("bootstrap"))
        expect = int(get("bootstrap_expect"))
        self._bootstrap(server, bootstrap, expect)
        bind_addr = get("bind_addr")
        advertise = get("advertise_addr") or ""
        if advertise in ("0.0.0.0", "::"):
            raise self.error("advertise_addr", f"cannot be {advertise}: advertise an address others can reach")
        advertise_wan = get("advertise_addr_wan") or ""
        if advertise_wan in ("0.0.0.0", "::"):
            raise self.error("advertise_addr_wan", f"cannot be {advertise_wan}")
        raft_multiplier = int(get("performance.raft_multiplier"))
        if not 1 <= raft_multiplier <= 10:
            raise self.error("performance.raft_multiplier", f"must be between 1 and 10, got {raft_multiplier}")
        retry_max = int(get("retry_max"))
        if retry_max < 0:
            raise self.error("retry_max", f"cannot be negative, got {retry_max}")
        check_output_max_size = int(get("check_output_max_size"))
        if check_output_max_size < 1:
            raise self.error("check_output_max_size", f"must be a positive number of bytes, "
                                                      f"got {check_output_max_size}")
        ui_enabled = bool(get("ui_config.enabled"))
        ui_dir = str(get("ui_config.dir") or "")
        if ui_enabled and ui_dir and not self.dev:
            raise self.error("ui_config.dir", "Both the ui_config.enabled and ui_config.dir (or -ui and -ui-dir) "
                             "were specified, please provide only one. To serve your own web UI resources use "
                             "ui_config.dir; the web UI is included in the package, so use ui_config.enabled "
                             "to enable it")
        if ui_dir and not os.path.isdir(ui_dir):
            raise self.error("ui_config.dir", f"{ui_dir!r} is not a directory")
        ui_content_path = "/" + str(get("ui_config.content_path") or "/ui/").strip("/") + "/"
        if ui_content_path == "//" or ui_content_path.startswith("/v1/") or any(
                c in ui_content_path for c in "?#%\\ ") or "/../" in ui_content_path or "/./" in ui_content_path:
            raise self.error("ui_config.content_path", f"must be a URL path prefix other than / and /v1/, "
                             f"got {get('ui_config.content_path')!r}")
        leave_on_terminate = get("leave_on_terminate")
        skip_leave = get("skip_leave_on_interrupt")
        limits = dict(_DEFAULT_LIMITS)
        limits.update(get("limits") or {})
        addresses = Addresses(**{k: tuple(v) for k, v in (get("addresses") or {}).items()})
        autopilot: dict[str, Any] = {}
        for key in ("cleanup_dead_servers", "last_contact_threshold", "max_trailing_logs", "min_quorum",
                    "server_stabilization_time", "dead_server_last_contact_threshold"):
            value = get(f"autopilot.{key}")
            if value is None:
                continue
            if not isinstance(value, bool) and value < 0:
                raise self.error(f"autopilot.{key}", f"cannot be negative, got {value}")
            autopilot[key] = value
        merged_raw = dict(raw)
        merged_raw.pop("service", None)
        merged_raw.pop("check", None)
        merged_raw["services"] = [s.data for s in services]
        merged_raw["checks"] = [c.data for c in checks]
        config = RuntimeConfig(
            datacenter=datacenter,
            primary_datacenter=primary_dc,
            domain=domain,
            node_name=node_name,
            node_id=self._node_id(data_dir, node_name),
            node_meta=MappingProxyType(self._node_meta()),
            data_dir=data_dir,
            server=server,
            bootstrap=bootstrap,
            bootstrap_expect=expect,
            dev=self.dev,
            bind_addr=bind_addr,
            client_addr=tuple(get("client_addr")),
            advertise_addr=advertise,
            advertise_addr_wan=advertise_wan,
            ports=self._ports(),
            addresses=addresses,
            retry_join=tuple(get("retry_join") or ()),
            retry_join_wan=tuple(get("retry_join_wan") or ()),
            retry_interval=self._duration_min("retry_interval", 0.001, "1ms"),
            retry_interval_wan=self._duration_min("retry_interval_wan", 0.001, "1ms"),
            retry_max=retry_max,
            log_level=self._log_level(),
            log_json=bool(get("log_json")),
            enable_script_checks=bool(get("enable_script_checks")),
            enable_local_script_checks=bool(get("enable_local_script_checks")),
            enable_debug=bool(get("enable_debug")),
            disable_remote_exec=bool(get("disable_remote_exec")),
            connect_enabled=bool(get("connect.enabled")),
            ui_enabled=ui_enabled or bool(ui_dir),
            ui_dir=ui_dir,
            ui_content_path=ui_content_path,
            check_update_interval=float(get("check_update_interval")),
            check_output_max_size=check_output_max_size,
            enable_central_service_config=bool(get("enable_central_service_config")),
            session_ttl_min=self._duration_min("session_ttl_min", 1.0, "1s"),
            leave_on_terminate=(not server) if leave_on_terminate is None else bool(leave_on_terminate),
            skip_leave_on_interrupt=server if skip_leave is None else bool(skip_leave),
            rejoin_after_leave=bool(get("rejoin_after_leave")),
            reconnect_timeout=self._duration_min("reconnect_timeout", 8 * 3600.0, "8h"),
            reconnect_timeout_wan=self._duration_min("reconnect_timeout_wan", 8 * 3600.0, "8h"),
            recursors=tuple(get("recursors") or ()),
            services=tuple(services),
            checks=tuple(checks),
            acl=MappingProxyType(dict(get("acl") or {})),
            raft_multiplier=raft_multiplier,
            limits=MappingProxyType(limits),
            autopilot=MappingProxyType(autopilot),
            encrypt=get("encrypt") or "",
            **self._security(server),
            dns_config=MappingProxyType(dict(get("dns_config") or {})),
            alt_domain=get("alt_domain") or "",
            raw=MappingProxyType(redact(merged_raw)),
        )
        self._check_port_collisions(config)
        if config.enable_script_checks and not config.acl.get("enabled"):
            self.warn("enable_script_checks", "script checks are enabled without ACLs: anyone who can reach "
                                              "the HTTP API can run commands on this node")
        return config
