"""The shared-result cache returns exactly what a re-run would, and keeps watches working."""

from __future__ import annotations

from lictor.common.commands import MessageType as M
from lictor.common.commands import encode_command
from lictor.server.fsm import FSM
from lictor.server.state import catalog
from lictor.server.state.watch import WatchSet


def _fsm() -> FSM:
    fsm = FSM()
    fsm.apply(1, encode_command(M.REGISTER, {"node": "n1", "address": "a", "service": {"service": "web"}}, 0))
    return fsm


def test_hit_only_while_store_unchanged_and_watches_are_shared() -> None:
    fsm = _fsm()
    runs = []

    def q(store, ws):  # type: ignore[no-untyped-def]
        runs.append(1)
        return catalog.health_service_nodes(store, ws, "web")

    cache = fsm.store.query_cache
    ws1, ws2 = WatchSet(), WatchSet()
    idx1, v1 = cache.run(fsm.store, "k", q, ws1)
    idx2, v2 = cache.run(fsm.store, "k", q, ws2)
    assert len(runs) == 1 and v1 is v2 and idx1 == idx2 == 1
    assert len(ws2) == len(ws1) > 0
    # an unrelated write moves latest_index: the next read recomputes, the old watchers still fire
    # only for their own keys
    fsm.apply(2, encode_command(M.KVS, {"op": "set", "key": "x", "value": b""}, 0))
    assert not ws2.fired
    _, v3 = cache.run(fsm.store, "k", q, None)
    assert len(runs) == 2 and v3 is not v1 and v3 == v1
    # a change to the service fires the channels every sharer holds
    fsm.apply(3, encode_command(M.REGISTER, {"node": "n2", "address": "b", "service": {"service": "web"}}, 0))
    assert ws1.fired and ws2.fired
    idx4, v4 = cache.run(fsm.store, "k", q, None)
    assert idx4 == 3 and len(v4) == 2


def test_different_keys_do_not_share() -> None:
    fsm = _fsm()
    cache = fsm.store.query_cache
    _, a = cache.run(fsm.store, "web", lambda st, ws: catalog.health_service_nodes(st, ws, "web"), None)
    _, b = cache.run(fsm.store, "db", lambda st, ws: catalog.health_service_nodes(st, ws, "db"), None)
    assert len(a) == 1 and b == []
