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


_NOT_PART_OF_RESULT = frozenset({"min_index", "wait", "stale", "consistent"})


def _cache_key(name: str, a: dict[str, Any]) -> str:
    return name + repr(sorted((k, v) for k, v in a.items() if k not in _NOT_PART_OF_RESULT))


async def blocking_read(server: Server, a: dict[str, Any],
                        query: Callable[[Store, WatchSet | None], tuple[int, Any]], *,
                        shared: str | None = None) -> dict[str, Any]:
    """Run a read with Consul's consistency and blocking rules.

    ``shared`` names the endpoint for reads expensive enough to share: readers of the same store
    state with the same arguments then get one computed result (see state/query_cache.py), which
    is what makes a thousand blocking queries woken by one change cheap.
    """
    stale, consistent = bool(a.get("stale")), bool(a.get("consistent"))
    meta = await server.check_read(stale=stale, consistent=consistent)
    if shared is not None and a.get("acl_prefilter") is None:  # a per-token result is never shared
        key = _cache_key(shared, a)
        inner = query

        def query(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
            return store.query_cache.run(store, key, inner, ws)
    min_index = int(a.get("min_index") or 0)
    if min_index <= 0:  # not blocking: the hot path of every plain read
        idx, result = query(server.store, None)
        idx = max(idx, 1)
    else:
        opts = BlockingOptions(min_index=min_index, wait=float(a.get("wait") or DEFAULT_WAIT))
        passes = 0

        async def before_pass() -> None:
            # Every pass after the first (checked above): ?consistent confirms leadership again
            # (it may have moved while parked); every mode refreshes KnownLeader/LastContact.
            nonlocal meta, passes
            passes += 1
            if passes > 1:
                meta = (await server.check_read(stale=stale, consistent=True) if consistent
                        else server.read_meta(meta.consistency))

        idx, result = await blocking_query(lambda: server.store, opts, query, before_pass=before_pass,
                                           clock=server.clock)
    return {"index": idx, "known_leader": meta.known_leader, "last_contact": meta.last_contact,
            "consistency": meta.consistency, "result": result}


def make_filter(a: dict[str, Any], schema: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Compile ``a["filter"]`` once, validating selectors against ``schema`` (400 on errors),
    before any blocking starts; returns a function that filters API-shaped rows.

    With ACLs, ``endpoints.call`` puts ``a["acl_prefilter"] = (may_read, report)``: rows the
    token may not read go first, then the user's filter runs on what is left (Consul's order:
    otherwise ``X-Consul-Results-Filtered-By-ACLs`` tells whether a hidden row matched)."""
    expr = a.get("filter")
    if not expr:
        return lambda rows: rows
    f = compile_filter(expr, schema=schema)
    pre = a.get("acl_prefilter")
    if pre is None:
        return lambda rows: [r for r in rows if f.matches(r)]
    may_read, report = pre

    def run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        visible = [r for r in rows if may_read(r)]
        report["dropped"] = len(visible) != len(rows)
        return [r for r in visible if f.matches(r)]
    return run
