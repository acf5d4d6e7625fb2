"""Session.* endpoints: create/destroy through the log, renew on the leader's timers only."""

from __future__ import annotations

import uuid
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.duration import parse_duration
from lictor.common.errors import NotFound, ValidationError
from lictor.common.structs import session_to_api
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.server import Server
from lictor.server.state import sessions
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

SESSION_TTL_MIN = 10.0
SESSION_TTL_MAX = 24 * 3600.0
MAX_LOCK_DELAY = 60.0


def _validate(s: dict[str, Any]) -> None:
    if s.get("behavior", "release") not in ("release", "delete"):
        raise ValidationError(f"Invalid Behavior setting '{s.get('behavior')}'")
    ttl = s.get("ttl") or ""
    if ttl:
        seconds = parse_duration(ttl, what="Session TTL")
        if not SESSION_TTL_MIN <= seconds <= SESSION_TTL_MAX:
            raise ValidationError(f"Invalid Session TTL '{ttl}', must be between [10s=24h0m0s]")
    try:
        delay = float(s.get("lock_delay", 15.0))
    except (TypeError, ValueError):
        raise ValidationError("Invalid LockDelay, expected a duration") from None
    if not 0 <= delay <= MAX_LOCK_DELAY:  # written so NaN is refused too (every NaN comparison is false)
        raise ValidationError(f"Invalid LockDelay, must be between 0 and {MAX_LOCK_DELAY:g}s")


@endpoint("Session.Apply", write=True, args={"op": str}, optional={"session": dict, "id": str})
async def apply(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    if a.get("op") == "create":
        if not isinstance(a.get("session"), dict):
            raise ValidationError("Session.Apply: create needs a session map")
        s = dict(a["session"])
        _validate(s)
        if not s.get("node"):
            raise ValidationError("Must provide Node")
        store = server.store
        while True:
            sid = str(uuid.uuid4())
            if sid not in store.sessions:
                break
        s["id"] = sid
        await server.apply(MessageType.SESSION, {"op": "create", "session": s})
        if server.log.is_leader() and s.get("ttl"):
            server.session_timers.reset(sid, s["ttl"])
        return {"result": sid}
    if a.get("op") == "destroy":
        sid = a.get("id") or ""
        if not sid:
            raise ValidationError("Must provide ID")
        server.session_timers.clear(sid)
        await server.apply(MessageType.SESSION, {"op": "destroy", "id": sid})
        return {"result": True}
    raise ValidationError(f"Invalid session operation {a.get('op')!r}")


@endpoint("Session.Renew", write=True, args={"id": str})
async def renew(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    await server.check_read(stale=False, consistent=False)  # renewal happens on the leader
    s = server.store.sessions.get(a["id"])
    if s is None:
        raise NotFound(f"Session id '{a['id']}' not found")
    if s.ttl:
        server.session_timers.reset(s.id, s.ttl)
    return {"result": [session_to_api(s)]}


@endpoint("Session.Get", args={"id": str})
async def get(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, s = sessions.session_get(store, ws, a["id"])
        return idx, ([session_to_api(s)] if s else [])
    return await blocking_read(server, a, q)


@endpoint("Session.List")
async def list_(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = sessions.session_list(store, ws)
        return idx, [session_to_api(s) for s in rows]
    return await blocking_read(server, a, q)


@endpoint("Session.NodeSessions", args={"node": str})
async def node_sessions(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = sessions.session_node(store, ws, a["node"])
        return idx, [session_to_api(s) for s in rows]
    return await blocking_read(server, a, q)
