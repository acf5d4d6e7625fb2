"""Istio.* endpoints: apply / delete resources (from the text of a YAML or JSON file), list, get.

The plan (server/istio/plan.py) is computed here against the store first, so ``dry_run`` and
errors answer without a write; the FSM computes it again inside its transaction.
"""

from __future__ import annotations

from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import StoreView
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.istio.documents import ISTIO_KINDS, parse_documents, resource_key
from lictor.server.istio.plan import ISTIO_TABLE, make_plan
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

MAX_TEXT = 4 << 20


def _text(a: dict[str, Any]) -> str:
    text = a.get("text")
    if not isinstance(text, str):
        raise ValidationError("text: expected the YAML or JSON documents as a string")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"text: too large ({len(text)} bytes, limit {MAX_TEXT})", status=413)
    return text


async def _run(server: Server, a: dict[str, Any], *, deleting: bool) -> dict[str, Any]:
    resources, notes = parse_documents(_text(a))
    payload: dict[str, Any] = {"op": "istio", "datacenter": server.config.datacenter}
    if deleting:
        payload["delete"] = [list(r.key) for r in resources]
        apply, delete = [], [r.key for r in resources]
    else:
        payload["apply"] = [{"body": r.body, "where": r.where} for r in resources]
        apply, delete = resources, []
    plan = make_plan(server.store.ext[ISTIO_TABLE], StoreView(server.store), apply=apply, delete=delete,
                     datacenter=server.config.datacenter)
    if a.get("dry_run"):
        out = plan.summary()
    else:
        out = await server.apply(MessageType.CONFIG_ENTRY, payload)
        if not isinstance(out, dict):
            out = plan.summary()
    return {"result": {**out, "Skipped": notes, "DryRun": bool(a.get("dry_run"))}}


@endpoint("Istio.Apply", write=True)
async def apply(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    return await _run(server, a, deleting=False)


@endpoint("Istio.DeleteDocuments", write=True)
async def delete_documents(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    return await _run(server, a, deleting=True)


def _kind(kind: str) -> str:
    for k in ISTIO_KINDS:
        if k.lower() in (kind.lower(), kind.lower().rstrip("s")):
            return k
    raise ValidationError(f"unknown Istio kind {kind!r} (accepted: {', '.join(sorted(ISTIO_KINDS))})")


@endpoint("Istio.Delete", write=True)
async def delete(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    key = resource_key(_kind(a.get("kind") or ""), a.get("namespace") or "default", a.get("name") or "")
    if key not in server.store.ext[ISTIO_TABLE]:
        raise ValidationError(f"{key[0]} {key[1]} not found", status=404)
    payload = {"op": "istio", "datacenter": server.config.datacenter, "delete": [list(key)]}
    return {"result": await server.apply(MessageType.CONFIG_ENTRY, payload)}


@endpoint("Istio.List")
async def list_(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Resources as applied, sorted by kind, namespace and name (one kind, or one name)."""
    kind = _kind(a["kind"]) if a.get("kind") else ""
    name = a.get("name") or ""
    ns = a.get("namespace") or ""

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, ISTIO_TABLE)
        rows = []
        for (k, nsname), row in sorted(store.ext[ISTIO_TABLE].items()):
            rns, _, rname = nsname.partition("/")
            if (kind and k != kind) or (name and rname != name) or (ns and rns != ns):
                continue
            rows.append({**row["body"], "CreateIndex": row["create_index"], "ModifyIndex": row["modify_index"]})
        return store.index(ISTIO_TABLE), rows
    return await blocking_read(server, a, q)
