"""The Raft command envelope: what the leader appends to the log and every FSM applies.

An entry's data is ``msgpack([type, payload, now])``:

* ``type`` is a :class:`MessageType` value. If its :data:`IGNORE_UNKNOWN` bit is set, an FSM that
  does not know the type skips it (for commands added in a newer version that older servers may
  safely ignore); an unknown type without the bit stops the process rather than let state diverge.
* ``payload`` is a msgpack-able mapping with snake_case keys, one shape per type.
* ``now`` is the leader's wall clock (float seconds) when it proposed the command. Anything
  time-based that the FSM needs (lock-delay expiry) is computed from it, so applying the same log
  on every server gives the same state: the FSM itself never reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = ["IGNORE_UNKNOWN", "Command", "MessageType", "decode_command", "encode_command"]

IGNORE_UNKNOWN = 0x80


class MessageType(enum.IntEnum):
    REGISTER = 0
    DEREGISTER = 1
    KVS = 2
    SESSION = 3
    TXN = 4
    TOMBSTONE_REAP = 5
    NOOP = 6
    RESTORE = 7
    """payload {"state": bytes}: replace the whole store with an FSM snapshot stream (operator
    snapshot restore, `PUT /v1/snapshot`). Handled by `FSM.apply` itself, not a table handler."""
    CONNECT_CA = 8       # CA roots, configuration and provider state (server/connect)
    CONFIG_ENTRY = 9     # config entries, intentions included (server/configentry)
    ACL = 10             # tokens, policies, roles, auth methods, binding rules
    COORDINATES = 11     # batched network coordinates
    SYSTEM_METADATA = 12  # cluster-wide settings (cluster ID, autopilot configuration)
    PREPARED_QUERY = 13  # /v1/query create, update, delete (server/prepared_query.py)


@dataclass(frozen=True, slots=True)
class Command:
    type: int
    payload: dict[str, Any]
    now: float


def encode_command(msg_type: int, payload: dict[str, Any], now: float) -> bytes:
    data: bytes = msgpack.packb([int(msg_type), payload, now], use_bin_type=True)
    return data


def decode_command(data: bytes) -> Command:
    raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], int) or not isinstance(raw[1], dict):
        raise ValueError("malformed command envelope")
    return Command(type=raw[0], payload=raw[1], now=float(raw[2]))
