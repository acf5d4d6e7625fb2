"""The autopilot configuration stored through Raft (Consul's ``PUT /v1/operator/autopilot/configuration``).

``store.ext["system_metadata"]["autopilot"]`` holds the configuration in Consul's API shape
(``CleanupDeadServers``, ``LastContactThreshold`` ... as last written, plus ``CreateIndex`` and
``ModifyIndex``). Until an operator writes one, every server uses its own agent configuration (the
``autopilot`` block); once written, the stored one wins on every server, as in Consul.

A SYSTEM_METADATA command ``{"op": "autopilot-set", "config": {...}, "cas": index|None}`` writes it;
with ``cas`` the write happens only if the stored ModifyIndex equals it (0: only if none is
stored), and the FSM result is the bool the HTTP API returns. The payload is validated by
:func:`parse_autopilot_config` on the leader before proposing and again in the FSM.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.duration import parse_duration
from lictor.common.errors import ValidationError
from lictor.server.fsm import register_handler
from lictor.server.state.store import Store, WriteTxn
from lictor.server.state.watch import WatchSet

__all__ = ["KEY", "TABLE", "apply_system_metadata", "effective_autopilot", "parse_autopilot_config",
           "stored_autopilot"]

TABLE = "system_metadata"
KEY = "autopilot"

_BOOLS = ("CleanupDeadServers", "DisableUpgradeMigration")
_DURATIONS = ("LastContactThreshold", "ServerStabilizationTime")
_UINTS = ("MaxTrailingLogs", "MinQuorum")
_STRINGS = ("RedundancyZoneTag", "UpgradeVersionTag")
_FIELDS = {k.lower(): k for k in (*_BOOLS, *_DURATIONS, *_UINTS, *_STRINGS)}


def parse_autopilot_config(body: Any, *, current: dict[str, Any]) -> dict[str, Any]:
    """A ``PUT`` body (keys matched case-insensitively, as Go's decoder does) over ``current``
    (the API shape): every field checked, durations kept as written. Unknown keys are ignored, as
    Consul's decoder ignores them; CreateIndex/ModifyIndex are never taken from the body."""
    if not isinstance(body, dict):
        raise ValidationError("Request decode failed: expected a JSON object")
    out = {k: v for k, v in current.items() if k not in ("CreateIndex", "ModifyIndex")}
    for raw_key, value in body.items():
        key = _FIELDS.get(str(raw_key).lower())
        if key is None:
            continue
        if key in _BOOLS:
            if not isinstance(value, bool):
                raise ValidationError(f"{key}: expected true or false, got {value!r}")
        elif key in _DURATIONS:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValidationError(f"{key}: expected a duration such as \"200ms\", got {value!r}")
            parse_duration(value, what=key)
            value = value if isinstance(value, str) else f"{value}s"
        elif key in _UINTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"{key}: expected an unsigned integer, got {value!r}")
        elif not isinstance(value, str):
            raise ValidationError(f"{key}: expected a string, got {value!r}")
        out[key] = value
    return out


def stored_autopilot(store: Store, ws: WatchSet | None = None) -> dict[str, Any] | None:
    store.watch(ws, TABLE)
    row = store.ext[TABLE].get(KEY)
    return dict(row) if isinstance(row, dict) else None


def effective_autopilot(store: Store | None, default: Any) -> Any:
    """``default`` (an :class:`~lictor.server.cluster.AutopilotConfig`) with the stored fields
    applied: what the leader's autopilot decides with."""
    row = stored_autopilot(store) if store is not None else None
    if row is None:
        return default
    return dataclasses.replace(
        default, cleanup_dead_servers=bool(row.get("CleanupDeadServers", default.cleanup_dead_servers)),
        last_contact_threshold=parse_duration(row.get("LastContactThreshold") or default.last_contact_threshold),
        max_trailing_logs=int(row.get("MaxTrailingLogs", default.max_trailing_logs)),
        min_quorum=int(row.get("MinQuorum", default.min_quorum)),
        server_stabilization_time=parse_duration(row.get("ServerStabilizationTime")
                                                 or default.server_stabilization_time))


def apply_system_metadata(tx: WriteTxn, p: dict[str, Any], now: float) -> bool:
    if p.get("op") != "autopilot-set":
        raise ValidationError(f"unknown system metadata operation {p.get('op')!r}")
    table = tx.store.ext[TABLE]
    old = table.get(KEY)
    cas = p.get("cas")
    if cas is not None:
        have = int(old.get("ModifyIndex", 0)) if isinstance(old, dict) else 0
        if int(cas) != have:
            return False
    config = parse_autopilot_config(p.get("config") or {}, current={})
    create = int(old.get("CreateIndex", tx.index)) if isinstance(old, dict) else tx.index
    tx.put(table, KEY, {**config, "CreateIndex": create, "ModifyIndex": tx.index})
    tx.bump(TABLE)
    return True


register_handler(MessageType.SYSTEM_METADATA, apply_system_metadata)
