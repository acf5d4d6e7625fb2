"""ConfigEntry.* endpoints: apply (with CAS), get, list, delete.

Validation runs here, against the store, before anything is proposed; the FSM handler runs it
again against its own transaction (see server/configentry/fsm.py).
"""

from __future__ import annotations

from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import ALL_KINDS, DEFAULT_NS, TABLE, StoreView, decode_entry
from lictor.server.configentry.validate import validate_delete, validate_entry
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read, make_filter
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet


def check_kind(kind: str) -> str:
    k = (kind or "").lower()
    if k not in ALL_KINDS:
        raise ValidationError(f"invalid config entry kind: {kind}")
    return k


def _cas(a: dict[str, Any]) -> int | None:
    cas = a.get("cas")
    if cas is None:
        return None
    try:
        value = int(cas)
    except (TypeError, ValueError):
        raise ValidationError(f"Invalid cas {cas!r}: expected an unsigned integer") from None
    if value < 0:
        raise ValidationError(f"Invalid cas {cas!r}: expected an unsigned integer")
    return value


@endpoint("ConfigEntry.Apply", write=True)
async def apply(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    body = decode_entry(a.get("entry"), kind=a.get("kind") or "", name=a.get("name") or "")
    dc = server.config.datacenter
    validate_entry(body, StoreView(server.store), datacenter=dc)
    payload: dict[str, Any] = {"op": "upsert", "entry": body, "datacenter": dc}
    cas = _cas(a)
    if cas is not None:
        payload["cas"] = cas
    return {"result": bool(await server.apply(MessageType.CONFIG_ENTRY, payload))}


@endpoint("ConfigEntry.Delete", write=True)
async def delete(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    kind = check_kind(a.get("kind", ""))
    name = a.get("name") or ""
    if not name:
        raise ValidationError("Missing config entry name")
    ns = a.get("namespace") or DEFAULT_NS
    dc = server.config.datacenter
    validate_delete(kind, name, StoreView(server.store), namespace=ns, datacenter=dc)
    payload: dict[str, Any] = {"op": "delete", "kind": kind, "name": name, "namespace": ns, "datacenter": dc}
    cas = _cas(a)
    if cas is not None:
        payload["cas"] = cas
    return {"result": bool(await server.apply(MessageType.CONFIG_ENTRY, payload))}


@endpoint("ConfigEntry.Get")
async def get(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    kind = check_kind(a.get("kind", ""))
    name = a.get("name") or ""
    ns = a.get("namespace") or DEFAULT_NS

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, f"{TABLE}.{kind}")
        row = StoreView(store).row(kind, name, ns)
        return store.index(f"{TABLE}.{kind}"), (row.to_api() if row is not None else None)
    return await blocking_read(server, a, q)


@endpoint("ConfigEntry.List")
async def list_(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Entries of one kind, or of every kind when ``kind`` is empty, sorted by kind and name."""
    kind = check_kind(a["kind"]) if a.get("kind") else ""
    filtered = make_filter(a, None)

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        key = f"{TABLE}.{kind}" if kind else TABLE
        store.watch(ws, key)
        rows = [r.to_api() for (k, _), r in sorted(store.ext[TABLE].items()) if not kind or k == kind]
        return store.index(key), filtered(rows)
    return await blocking_read(server, a, q, shared="ConfigEntry.List")
