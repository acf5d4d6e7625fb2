"""The ``audit`` configuration block as values (the sink itself is :mod:`lictor.agent.audit`).

::

    audit {
      enabled = true
      sink "My Sink" {
        type               = "file"          # the only type
        format             = "json"          # the only format: one JSON object per line
        path               = "/var/log/lictor/audit.json"
        delivery_guarantee = "best-effort"   # or "guaranteed" (Lictor's: fsync before the reply)
        mode               = "0600"          # file permissions
        rotate_bytes       = 25165824        # rotate when the file would grow past this (0 = never)
        rotate_duration    = "24h"           # rotate when the file is this old (0 = never)
        rotate_max_files   = 15              # rotated files kept (0 = keep all)
      }
    }

Consul Enterprise requires ACLs for audit logging; Lictor does not (without ACLs every request
is recorded as the anonymous accessor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lictor.common.duration import parse_duration
from lictor.common.errors import ConfigError, ValidationError

__all__ = ["DELIVERY_GUARANTEES", "AuditConfig", "AuditSinkConfig", "audit_config_from_raw"]

DELIVERY_GUARANTEES = ("best-effort", "guaranteed")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditSinkConfig:
    name: str
    path: str
    type: str = "file"
    format: str = "json"
    delivery_guarantee: str = "best-effort"
    mode: int = 0o600
    rotate_bytes: int = 0
    rotate_duration: float = 0.0
    rotate_max_files: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditConfig:
    enabled: bool = False
    sinks: tuple[AuditSinkConfig, ...] = ()


def _plain_error(path: str, message: str) -> ConfigError:
    return ConfigError(message, path=path)


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None


def audit_config_from_raw(raw: Mapping[str, Any] | None,
                          error: Callable[[str, str], ConfigError] = _plain_error) -> AuditConfig:
    """Validate the merged ``audit`` block; every error names ``audit.sink.<name>.<key>``."""
    raw = raw or {}
    enabled = bool(raw.get("enabled", False))
    sinks_raw = raw.get("sink") or {}
    if isinstance(sinks_raw, list):  # HCL: sink "a" {...} sink "b" {...}
        merged: dict[str, Any] = {}
        for item in sinks_raw:
            if isinstance(item, dict):
                merged.update(item)
        sinks_raw = merged
    if not isinstance(sinks_raw, dict):
        raise error("audit.sink", "expected named sink blocks: sink \"name\" { ... }")
    sinks = []
    for name, body in sorted(sinks_raw.items()):
        where = f"audit.sink.{name}"
        if isinstance(body, list):
            merged = {}
            for item in body:
                if isinstance(item, dict):
                    merged.update(item)
            body = merged
        if not isinstance(body, dict):
            raise error(where, "expected an object")
        unknown = set(body) - {"type", "format", "path", "delivery_guarantee", "mode", "rotate_bytes",
                               "rotate_duration", "rotate_max_files", "name"}
        if unknown:
            raise error(f"{where}.{sorted(unknown)[0]}", "unknown sink key")
        typ = str(body.get("type", "file"))
        if typ != "file":
            raise error(f"{where}.type", f"unsupported sink type {typ!r} (only \"file\")")
        fmt = str(body.get("format", "json"))
        if fmt != "json":
            raise error(f"{where}.format", f"unsupported format {fmt!r} (only \"json\")")
        path = body.get("path")
        if not isinstance(path, str) or not path:
            raise error(f"{where}.path", "a file path is required")
        dg = str(body.get("delivery_guarantee", "best-effort"))
        if dg not in DELIVERY_GUARANTEES:
            raise error(f"{where}.delivery_guarantee",
                        f"invalid value {dg!r} (use {' or '.join(DELIVERY_GUARANTEES)})")
        mode_raw = body.get("mode", "0600")
        try:
            mode = int(str(mode_raw), 8)
        except ValueError:
            raise error(f"{where}.mode", f"expected octal permissions like \"0600\", got {mode_raw!r}") from None
        if not 0 <= mode <= 0o777:
            raise error(f"{where}.mode", f"expected octal permissions like \"0600\", got {mode_raw!r}")
        rb = _int(body.get("rotate_bytes", 0))
        if rb is None or rb < 0:
            raise error(f"{where}.rotate_bytes", f"expected a number of bytes >= 0, got {body.get('rotate_bytes')!r}")
        rm = _int(body.get("rotate_max_files", 0))
        if rm is None or rm < 0:
            raise error(f"{where}.rotate_max_files", f"expected a count >= 0, got {body.get('rotate_max_files')!r}")
        rd_raw = body.get("rotate_duration", 0)
        try:
            rd = parse_duration(rd_raw) if rd_raw not in (0, "0", "", None) else 0.0
        except ValidationError as exc:
            raise error(f"{where}.rotate_duration", str(exc).removeprefix("duration: ")) from None
        sinks.append(AuditSinkConfig(name=str(name), path=path, type=typ, format=fmt, delivery_guarantee=dg,
                                     mode=mode, rotate_bytes=rb, rotate_duration=float(rd), rotate_max_files=rm))
    if enabled and not sinks:
        raise error("audit.enabled", "audit logging needs at least one sink \"name\" { type = \"file\" ... }")
    paths = [s.path for s in sinks]
    if len(set(paths)) != len(paths):
        raise error("audit.sink", "two sinks write to the same path")
    return AuditConfig(enabled=enabled, sinks=tuple(sinks))
