"""KVS.* endpoints."""

from __future__ import annotations

import time
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import Conflict, ValidationError
from lictor.common.structs import kv_to_api
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.server import Server
from lictor.server.state import kvs
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

OPS = {"set", "cas", "lock", "unlock", "delete", "delete-cas", "delete-tree"}
_UINT64_MAX = (1 << 64) - 1


def validate_kv_args(a: dict[str, Any]) -> None:
    """What may reach the FSM, checked again on the server (a client agent or any RPC caller may
    send it): a string key (empty only for delete-tree), flags and indexes within Go's uint64."""
    key = a.get("key", "")
    if not isinstance(key, str) or (not key and a.get("op") != "delete-tree"):
        raise ValidationError("Missing key name")
    for name in ("flags", "index", "cas"):
        v = a.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _UINT64_MAX):
            raise ValidationError(f"Invalid {name} {v!r}: expected an unsigned 64-bit integer")
    value = a.get("value")
    if value is not None and not isinstance(value, bytes | bytearray):
        raise ValidationError("Invalid value: expected bytes")


@endpoint("KVS.Apply", write=True, args={"op": str},
          optional={"key": str, "value": bytes, "flags": int, "cas": int, "session": str, "index": int})
async def apply(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    op = a.get("op")
    if op not in OPS:
        raise ValidationError(f"Invalid KV operation {op!r}")
    if op in ("lock", "unlock") and not a.get("session"):
        raise ValidationError("Missing session")
    validate_kv_args(a)
    if op == "lock":
        # Consul's state store refuses a lock by a session it cannot find (500, not a `false`);
        # a release by a non-holder stays a plain `false` (the FSM decides).
        sid = str(a.get("session"))
        if len(sid) != 36:
            raise Conflict("failed session lookup: UUID must be 36 characters")
        if sid not in server.store.sessions:
            raise Conflict(f'invalid session "{sid}"')
        # Consul checks the lock-delay on the leader before proposing, against its own clock.
        if kvs.kvs_lock_delay(server.store, a.get("key", "")) > time.time():
            return {"result": False}
    return {"result": await server.apply(MessageType.KVS, a)}


@endpoint("KVS.Get", args={"key": str})
async def get(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    key = a["key"]

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, e = kvs.kvs_get(store, ws, key)
        return idx, (kv_to_api(e) if e is not None else None)
    return await blocking_read(server, a, q)


@endpoint("KVS.List", optional={"key": str})
async def list_(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = kvs.kvs_list(store, ws, a.get("key", ""))
        return idx, [kv_to_api(e) for e in rows]
    return await blocking_read(server, a, q, shared="KVS.List")


@endpoint("KVS.ListKeys", optional={"prefix": str, "separator": str})
async def list_keys(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        return kvs.kvs_keys(store, ws, a.get("prefix", ""), a.get("separator", ""))
    return await blocking_read(server, a, q, shared="KVS.ListKeys")
