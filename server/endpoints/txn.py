"""Txn.Apply: atomic multi-op writes through the log; read-only op lists answered locally."""

from __future__ import annotations

from typing import Any

from lictor.common.commands import MessageType
from lictor.common.structs import (CheckRow, KVEntry, Node, ServiceRow, check_to_api, kv_to_api,
                                   node_to_api, service_to_agent_api)
from lictor.server.endpoints import endpoint
from lictor.server.server import Server
from lictor.server.state.txn import TxnAborted, is_read_only, txn_read


def _api(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        (kind, row), = r.items()
        if isinstance(row, KVEntry):
            out.append({"KV": kv_to_api(row)})
        elif isinstance(row, Node):
            out.append({"Node": node_to_api(row)})
        elif isinstance(row, ServiceRow):
            out.append({"Service": service_to_agent_api(row)})
        elif isinstance(row, CheckRow):
            out.append({"Check": check_to_api(row)})
        else:
            out.append({kind: row})
    return out


@endpoint("Txn.Apply", write=True, args={"ops": list})
async def apply(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    ops = a["ops"]
    if is_read_only(ops):
        meta = await server.check_read(stale=bool(a.get("stale")), consistent=bool(a.get("consistent")))
        idx, results, errors = txn_read(server.store, ops)
        return {"index": idx, "known_leader": meta.known_leader, "last_contact": meta.last_contact,
                "consistency": meta.consistency,
                "result": {"Results": None if errors else _api(results), "Errors": errors or None}}
    try:
        results = await server.apply(MessageType.TXN, {"ops": ops})
    except TxnAborted as exc:
        return {"result": {"Results": None, "Errors": exc.errors}}
    return {"result": {"Results": _api(results), "Errors": None}}
