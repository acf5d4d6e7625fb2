"""State store: index stamping, exact watch firing, rollback, tombstones, sessions, snapshots."""

from __future__ import annotations

import asyncio
import io

import pytest

from lictor.common.commands import MessageType as M
from lictor.common.commands import encode_command
from lictor.common.errors import Conflict, NotFound, ValidationError
from lictor.server.blocking import BlockingOptions, blocking_query
from lictor.server.fsm import FSM, Rejected, UnknownCommandError
from lictor.server.state import catalog, kvs, sessions
from lictor.server.state.store import Store
from lictor.server.state.watch import SOFT_LIMIT, Channel, WatchSet


def reg(node: str = "n1", service: dict | None = None, checks: list | None = None) -> dict:
    out = {"node": node, "address": "10.0.0.1"}
    if service:
        out["service"] = service
    if checks:
        out["checks"] = checks
    return out


class Log:
    """Feeds commands to an FSM with increasing indexes, as the log would."""

    def __init__(self) -> None:
        self.fsm = FSM()
        self.index = 0

    def apply(self, t: int, payload: dict, now: float = 1000.0):
        self.index += 1
        return self.fsm.apply(self.index, encode_command(t, payload, now))

    @property
    def store(self) -> Store:
        return self.fsm.store


def test_rows_and_index_rows_carry_the_raft_index() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(service={"service": "web", "port": 80}))
    log.apply(M.KVS, {"op": "set", "key": "a", "value": b"1"})
    st = log.store
    assert st.nodes["n1"].create_index == 1 and st.nodes["n1"].modify_index == 1
    assert st.services[("n1", "web")].modify_index == 1
    assert st.kvs["a"].create_index == 2
    assert st.index("nodes") == 1 and st.index("service.web") == 1 and st.index("kvs") == 2
    log.apply(M.KVS, {"op": "set", "key": "a", "value": b"2"})
    assert st.kvs["a"].create_index == 2 and st.kvs["a"].modify_index == 3


def test_write_that_changes_nothing_fires_nothing_and_keeps_indexes() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(service={"service": "web", "port": 80}))
    ws = WatchSet()
    idx, _ = catalog.health_service_nodes(log.store, ws, "web")
    log.apply(M.REGISTER, reg(service={"service": "web", "port": 80}))
    assert not ws.fired
    assert log.store.index("service.web") == idx == 1


def test_watch_fires_only_for_the_keys_a_commit_changed() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(service={"service": "web", "port": 80}))
    log.apply(M.REGISTER, reg(service={"service": "db", "port": 5432}))
    ws_web, ws_db, ws_key = WatchSet(), WatchSet(), WatchSet()
    catalog.health_service_nodes(log.store, ws_web, "web")
    catalog.health_service_nodes(log.store, ws_db, "db")
    kvs.kvs_get(log.store, ws_key, "k")
    log.apply(M.REGISTER, reg(service={"service": "db", "port": 5433}))
    assert ws_db.fired and not ws_web.fired and not ws_key.fired
    log.apply(M.KVS, {"op": "set", "key": "other", "value": b""})
    assert not ws_key.fired
    log.apply(M.KVS, {"op": "set", "key": "k", "value": b""})
    assert ws_key.fired


def test_node_level_check_changes_every_service_view_on_that_node() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(service={"service": "web"}, checks=[{"check_id": "serfHealth", "status": "passing"}]))
    ws = WatchSet()
    _, rows = catalog.health_service_nodes(log.store, ws, "web")
    assert [c.check_id for c in rows[0][2]] == ["serfHealth"]
    log.apply(M.REGISTER, reg(checks=[{"check_id": "serfHealth", "status": "critical"}]))
    assert ws.fired
    _, rows = catalog.health_service_nodes(log.store, None, "web")
    assert rows[0][2][0].status == "critical"


def test_failed_txn_changes_nothing() -> None:
    log = Log()
    log.apply(M.KVS, {"op": "set", "key": "keep", "value": b"v"})
    before = dict(log.store.indexes)
    ws = WatchSet()
    kvs.kvs_list(log.store, ws, "")
    out = log.apply(M.TXN, {"ops": [
        {"kind": "kv", "verb": "set", "key": "new", "value": b"1"},
        {"kind": "kv", "verb": "delete", "key": "keep"},
        {"kind": "kv", "verb": "cas", "key": "keep", "index": 999, "value": b"x"},
    ]})
    assert isinstance(out, Rejected)
    assert out.error.errors == [{"OpIndex": 2, "What": 'failed to set key "keep", index is stale'}]  # type: ignore[attr-defined]
    st = log.store
    assert "new" not in st.kvs and st.kvs["keep"].value == b"v"
    assert list(st.kv_keys) == ["keep"] and not st.tombstones
    assert st.indexes == before
    assert not ws.fired


def test_successful_txn_applies_all_ops_at_one_index() -> None:
    log = Log()
    out = log.apply(M.TXN, {"ops": [
        {"kind": "kv", "verb": "set", "key": "a", "value": b"1"},
        {"kind": "kv", "verb": "set", "key": "b", "value": b"2"},
        {"kind": "kv", "verb": "get", "key": "a"},
    ]})
    assert [r["KV"].key for r in out] == ["a", "b", "a"]
    assert log.store.kvs["a"].modify_index == log.store.kvs["b"].modify_index == 1


def test_delete_leaves_tombstone_so_prefix_index_never_goes_back() -> None:
    log = Log()
    log.apply(M.KVS, {"op": "set", "key": "p/a", "value": b""})
    log.apply(M.KVS, {"op": "set", "key": "p/b", "value": b""})
    idx1, rows = kvs.kvs_list(log.store, None, "p/")
    assert idx1 == 2 and [e.key for e in rows] == ["p/a", "p/b"]
    log.apply(M.KVS, {"op": "delete", "key": "p/b"})
    idx2, rows = kvs.kvs_list(log.store, None, "p/")
    assert [e.key for e in rows] == ["p/a"] and idx2 == 3
    log.apply(M.TOMBSTONE_REAP, {"index": 3})
    assert not log.store.tombstones


def test_cas_semantics() -> None:
    log = Log()
    assert log.apply(M.KVS, {"op": "cas", "key": "k", "value": b"1", "cas": 0}) is True
    assert log.apply(M.KVS, {"op": "cas", "key": "k", "value": b"2", "cas": 0}) is False
    assert log.apply(M.KVS, {"op": "cas", "key": "k", "value": b"2", "cas": 7}) is False
    assert log.apply(M.KVS, {"op": "cas", "key": "k", "value": b"2", "cas": 1}) is True
    assert log.store.kvs["k"].value == b"2"
    assert log.apply(M.KVS, {"op": "delete-cas", "key": "k", "cas": 1}) is False
    assert log.apply(M.KVS, {"op": "delete-cas", "key": "k", "cas": 4}) is True


def test_keys_with_separator_fold() -> None:
    log = Log()
    for k in ("a/1", "a/2/x", "a/2/y", "a/3", "b"):
        log.apply(M.KVS, {"op": "set", "key": k, "value": b""})
    _, keys = kvs.kvs_keys(log.store, None, "a/", "/")
    assert keys == ["a/1", "a/2/", "a/3"]
    _, keys = kvs.kvs_keys(log.store, None, "", "/")
    assert keys == ["a/", "b"]


def _session(log: Log, **kw) -> str:
    s = {"id": f"s{log.index}", "node": "n1", "node_checks": ["serfHealth"], **kw}
    assert log.apply(M.SESSION, {"op": "create", "session": s}) == s["id"]
    return s["id"]


def test_locks_and_session_invalidation_by_critical_check() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(checks=[{"check_id": "serfHealth", "status": "passing"}]))
    s1 = _session(log, lock_delay=10.0)
    s2 = _session(log)
    assert log.apply(M.KVS, {"op": "lock", "key": "L", "value": b"a", "session": s1}) is True
    assert log.apply(M.KVS, {"op": "lock", "key": "L", "value": b"b", "session": s2}) is False
    assert log.store.kvs["L"].lock_index == 1
    assert log.apply(M.KVS, {"op": "unlock", "key": "L", "value": b"a", "session": s2}) is False
    # serfHealth goes critical: both sessions are invalidated, the lock is released with lock-delay
    log.apply(M.REGISTER, reg(checks=[{"check_id": "serfHealth", "status": "critical"}]), now=5000.0)
    st = log.store
    assert not st.sessions
    assert st.kvs["L"].session == "" and st.kvs["L"].value == b"a"
    assert kvs.kvs_lock_delay(st, "L") == 5010.0


def test_session_needs_node_and_healthy_checks() -> None:
    log = Log()
    out = log.apply(M.SESSION, {"op": "create", "session": {"id": "x", "node": "nope"}})
    assert isinstance(out, Rejected) and isinstance(out.error, Conflict)  # Consul: 500, not 404
    log.apply(M.REGISTER, reg(checks=[{"check_id": "serfHealth", "status": "critical"}]))
    out = log.apply(M.SESSION, {"op": "create", "session": {"id": "x", "node": "n1"}})
    assert isinstance(out, Rejected) and "critical" in str(out.error)
    assert not log.store.sessions


def test_delete_behavior_deletes_held_keys_on_destroy() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(checks=[{"check_id": "serfHealth", "status": "passing"}]))
    sid = _session(log, behavior="delete")
    log.apply(M.KVS, {"op": "lock", "key": "eph", "value": b"1", "session": sid})
    log.apply(M.SESSION, {"op": "destroy", "id": sid})
    assert "eph" not in log.store.kvs and "eph" in log.store.tombstones


def test_deregistering_a_node_removes_its_services_checks_and_sessions() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(service={"service": "web"}, checks=[{"check_id": "serfHealth", "status": "passing"},
                                                                   {"check_id": "c1", "service_id": "web",
                                                                    "status": "passing"}]))
    _session(log)
    log.apply(M.DEREGISTER, {"node": "n1"})
    st = log.store
    assert not st.nodes and not st.services and not st.checks and not st.sessions
    assert not st.services_by_name and not st.checks_by_node and not st.sessions_by_node
    # the service's index row moved forward, so a blocked health query returns
    assert st.index("service.web") == log.index


def test_check_for_unknown_service_is_refused_and_nothing_is_written() -> None:
    log = Log()
    out = log.apply(M.REGISTER, reg(checks=[{"check_id": "c", "service_id": "missing", "status": "passing"}]))
    assert isinstance(out, Rejected) and isinstance(out.error, NotFound)
    assert not log.store.nodes and not log.store.indexes


def test_invalid_status_is_a_validation_error() -> None:
    log = Log()
    out = log.apply(M.REGISTER, reg(checks=[{"check_id": "c", "status": "fine"}]))
    assert isinstance(out, Rejected) and isinstance(out.error, ValidationError)


def test_unknown_command_stops_unless_ignorable() -> None:
    fsm = FSM()
    with pytest.raises(UnknownCommandError):
        fsm.apply(1, encode_command(42, {}, 0))
    assert fsm.apply(2, encode_command(0x80 | 42, {}, 0)) is None


def test_snapshot_restore_round_trip_and_abandon_wakes_watchers() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(service={"service": "web", "tags": ["a"]},
                              checks=[{"check_id": "serfHealth", "status": "passing"}]))
    log.apply(M.KVS, {"op": "set", "key": "x/y", "value": b"\x00\x01"})
    sid = _session(log, ttl="30s")
    log.apply(M.KVS, {"op": "lock", "key": "L", "value": b"", "session": sid})
    log.apply(M.KVS, {"op": "delete", "key": "x/y"})
    snap = log.fsm.snapshot()
    buf = io.BytesIO()
    snap.persist(buf)
    old = log.store
    ws = WatchSet()
    kvs.kvs_get(old, ws, "nothing")
    ws.add(old.abandoned)
    other = FSM()
    buf.seek(0)
    other.restore(io.BytesIO(buf.getvalue()))
    buf.seek(0)
    log.fsm.restore(buf)
    assert ws.fired
    new = log.store
    assert new is not old
    for st in (new, other.store):
        assert st.services[("n1", "web")].tags == ("a",)
        assert st.kvs["L"].session == sid and st.session_locks[sid] == {"L"}
        assert st.tombstones == {"x/y": 5}
        assert st.indexes == old.indexes
        assert st.session_checks[("n1", "serfHealth")] == {sid}


def test_watchset_soft_limit_falls_back_to_table_channel() -> None:
    ws = WatchSet()
    fallback = Channel()
    chans = [Channel() for _ in range(SOFT_LIMIT + 10)]
    for ch in chans:
        ws.add_with_limit(ch, fallback)
    assert len(ws) == SOFT_LIMIT + 1
    chans[-1].fire()
    assert not ws.fired
    fallback.fire()
    assert ws.fired


async def test_blocking_query_returns_on_change_and_on_timeout() -> None:
    log = Log()
    log.apply(M.KVS, {"op": "set", "key": "k", "value": b"1"})
    store_of = lambda: log.store  # noqa: E731
    q = lambda st, ws: kvs.kvs_get(st, ws, "k")  # noqa: E731
    idx, _ = await blocking_query(store_of, BlockingOptions(0), q)
    assert idx == 1
    task = asyncio.create_task(blocking_query(store_of, BlockingOptions(idx, 30.0), q))
    await asyncio.sleep(0.01)
    assert not task.done()
    log.apply(M.KVS, {"op": "set", "key": "k", "value": b"2"})
    idx2, entry = await asyncio.wait_for(task, 1.0)
    assert idx2 == 2 and entry.value == b"2"
    # nothing changes: returns the same index after the wait
    t0 = asyncio.get_running_loop().time()
    idx3, _ = await blocking_query(store_of, BlockingOptions(2, 0.05), q)
    assert idx3 == 2 and asyncio.get_running_loop().time() - t0 >= 0.05


async def test_blocking_query_returns_at_once_on_index_reset() -> None:
    log = Log()
    log.apply(M.KVS, {"op": "set", "key": "k", "value": b"1"})
    idx, _ = await asyncio.wait_for(
        blocking_query(lambda: log.store, BlockingOptions(500, 30.0), lambda st, ws: kvs.kvs_get(st, ws, "k")), 1.0)
    assert idx == 1


async def test_index_never_below_one() -> None:
    idx, _ = await blocking_query(lambda: Store(), BlockingOptions(0), lambda st, ws: kvs.kvs_get(st, ws, "k"))
    assert idx == 1


def test_session_list_and_node_queries() -> None:
    log = Log()
    log.apply(M.REGISTER, reg(checks=[{"check_id": "serfHealth", "status": "passing"}]))
    a = _session(log)
    b = _session(log)
    assert [s.id for s in sessions.session_list(log.store, None)[1]] == [a, b]
    assert [s.id for s in sessions.session_node(log.store, None, "n1")[1]] == [a, b]
    assert sessions.session_node(log.store, None, "n2")[1] == []


def test_extension_tables_round_trip_through_snapshots_with_their_codec() -> None:
    import dataclasses as dc

    from lictor.server.state import store as store_mod

    @dc.dataclass(frozen=True)
    class Root:
        id: str
        pem: str

    saved = dict(store_mod._CODECS)
    store_mod.register_row_codec("ca_roots", dc.asdict, lambda d: Root(**d))
    try:
        _ext_round_trip(Root)
    finally:
        store_mod._CODECS.clear()
        store_mod._CODECS.update(saved)


def _ext_round_trip(Root: type) -> None:  # noqa: N803 - a class passed in
    log = Log()
    with log.store.write_txn(1) as tx:
        tx.put(log.store.ext["ca_roots"], "r1", Root(id="r1", pem="PEM"))
        tx.put(log.store.ext["config_entries"], ("service-defaults", "web"), {"Protocol": "http"})
        tx.bump("ca_roots", "config_entries")
    buf = io.BytesIO()
    log.fsm.snapshot().persist(buf)
    buf.seek(0)
    other = FSM()
    other.restore(buf)
    assert other.store.ext["ca_roots"] == {"r1": Root(id="r1", pem="PEM")}
    assert other.store.ext["config_entries"] == {("service-defaults", "web"): {"Protocol": "http"}}
    assert other.store.index("ca_roots") == 1
