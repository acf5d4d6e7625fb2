"""Helpers shared by endpoints: consistency checks + blocking query + filtering in one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from lictor.common.filter import compile_filter
from lictor.server.blocking import DEFAULT_WAIT, BlockingOptions, blocking_query
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

__all__ = ["blocking_read", "make_filter"]

T = TypeVar("T")


async def blocking_read(server: Server, a: dict[str, Any],
                        query: Callable[[Store, WatchSet | None], tuple[int, Any]]) -> dict[str, Any]:
    meta = await server.check_read(stale=bool(a.get("stale")), consistent=bool(a.get("consistent")))
    min_index = int(a.get("min_index") or 0)
    if min_index <= 0:  # not blocking: the hot path of every plain read
        idx, result = query(server.store, None)
        idx = max(idx, 1)
    else:
        opts = BlockingOptions(min_index=min_index, wait=float(a.get("wait") or DEFAULT_WAIT))
        idx, result = await blocking_query(lambda: server.store, opts, query)
    return {"index": idx, "known_leader": meta.known_leader, "last_contact": meta.last_contact,
            "consistency": meta.consistency, "result": result}


def make_filter(a: dict[str, Any], schema: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Compile ``a["filter"]`` once, validating selectors against ``schema`` (400 on errors),
    before any blocking starts; returns a function that filters API-shaped rows."""
    expr = a.get("filter")
    if not expr:
        return lambda rows: rows
    f = compile_filter(expr, schema=schema)
    return lambda rows: [r for r in rows if f.matches(r)]
