"""Network coordinates live and die with their node: deregistering a node deletes its coordinate
rows in the same transaction (Consul's deleteNodeTxn), so reads need no filter and snapshots
carry no orphans."""

from __future__ import annotations

import io

from lictor.common.commands import MessageType as M
from lictor.common.commands import encode_command
from lictor.server.coordinates import TABLE, coordinate_rows
from lictor.server.fsm import FSM, Rejected
from lictor.server.state import catalog
from lictor.server.state.watch import WatchSet

COORD = {"Vec": [0.001] * 8, "Error": 0.2, "Adjustment": 0.0, "Height": 0.00001}


class Log:
    """Feeds commands to an FSM with increasing indexes, as the log would."""

    def __init__(self) -> None:
        self.fsm = FSM()
        self.index = 0

    def apply(self, t: int, payload: dict, now: float = 1000.0):
        self.index += 1
        return self.fsm.apply(self.index, encode_command(t, payload, now))


def cluster_with_coordinates(*nodes: str, segments: tuple[str, ...] = ("",)) -> Log:
    log = Log()
    for n in nodes:
        log.apply(M.REGISTER, {"node": n, "address": "10.0.0.1",
                               "service": {"service": "web", "id": f"web-{n}", "port": 80}})
    log.apply(M.COORDINATES, {"updates": [{"node": n, "segment": seg, "coord": COORD}
                                          for n in nodes for seg in segments]})
    return log


def nodes_with_rows(log: Log) -> set[str]:
    return {n for n, _ in log.fsm.store.ext[TABLE]}


def test_deregistering_a_node_deletes_its_coordinates_in_the_same_write() -> None:
    log = cluster_with_coordinates("a", "b", segments=("", "seg1"))
    st = log.fsm.store
    assert len(st.ext[TABLE]) == 4
    ws = WatchSet()
    coordinate_rows(st, ws)
    log.apply(M.DEREGISTER, {"node": "a"})
    assert sorted(st.ext[TABLE]) == [("b", ""), ("b", "seg1")]  # every segment of "a" went
    assert st.index(TABLE) == log.index  # the coordinates index row moved with the delete
    assert ws.fired
    idx, rows = coordinate_rows(st, None)
    assert idx == log.index and [r["Node"] for r in rows] == ["b", "b"]
    assert coordinate_rows(st, None, node="a")[1] == []


def test_removing_a_service_or_check_keeps_the_coordinate_and_fires_nothing_there() -> None:
    log = cluster_with_coordinates("a")
    log.apply(M.REGISTER, {"node": "a", "address": "10.0.0.1",
                           "checks": [{"check_id": "c1", "name": "c1", "status": "passing"}]})
    st = log.fsm.store
    before = st.index(TABLE)
    ws = WatchSet()
    coordinate_rows(st, ws)
    log.apply(M.DEREGISTER, {"node": "a", "service_id": "web-a"})
    log.apply(M.DEREGISTER, {"node": "a", "check_id": "c1"})
    assert nodes_with_rows(log) == {"a"} and st.index(TABLE) == before and not ws.fired


def test_deregistering_a_node_without_coordinates_leaves_the_index_alone() -> None:
    log = cluster_with_coordinates("a")
    log.apply(M.REGISTER, {"node": "b", "address": "10.0.0.2"})
    before = log.fsm.store.index(TABLE)
    log.apply(M.DEREGISTER, {"node": "b"})
    assert nodes_with_rows(log) == {"a"} and log.fsm.store.index(TABLE) == before


def test_txn_node_delete_takes_the_coordinate_and_a_failed_txn_keeps_it() -> None:
    log = cluster_with_coordinates("a", "b")
    # a failing op later in the same txn rolls the whole write back, coordinates included
    out = log.apply(M.TXN, {"ops": [
        {"kind": "node", "verb": "delete", "node": {"node": "a"}},
        {"kind": "node", "verb": "delete-cas", "node": {"node": "b", "modify_index": 999}},
    ]})
    assert isinstance(out, Rejected)
    assert nodes_with_rows(log) == {"a", "b"} and "a" in log.fsm.store.nodes
    log.apply(M.TXN, {"ops": [{"kind": "node", "verb": "delete", "node": {"node": "a"}}]})
    assert nodes_with_rows(log) == {"b"} and "a" not in log.fsm.store.nodes


def test_an_update_for_a_deregistered_node_is_skipped() -> None:
    log = cluster_with_coordinates("a")
    log.apply(M.DEREGISTER, {"node": "a"})
    log.apply(M.COORDINATES, {"updates": [{"node": "a", "segment": "", "coord": COORD}]})
    assert nodes_with_rows(log) == set()


def test_snapshot_after_a_deregistration_carries_no_coordinate_of_that_node() -> None:
    log = cluster_with_coordinates("a", "b")
    log.apply(M.DEREGISTER, {"node": "a"})
    buf = io.BytesIO()
    log.fsm.snapshot().persist(buf)
    assert b"coordinates" in buf.getvalue()  # b's row is there ...
    other = FSM()
    other.restore(io.BytesIO(buf.getvalue()))
    assert sorted(other.store.ext[TABLE]) == [("b", "")]  # ... and only b's
    assert other.store.index(TABLE) == log.fsm.store.index(TABLE)


def test_restore_drops_orphans_an_older_snapshot_may_carry() -> None:
    log = cluster_with_coordinates("a", "b")
    # what a server before this change left behind: the node gone, its coordinate still there
    st = log.fsm.store
    del st.nodes["a"]
    buf = io.BytesIO()
    log.fsm.snapshot().persist(buf)
    other = FSM()
    other.restore(io.BytesIO(buf.getvalue()))
    assert sorted(other.store.ext[TABLE]) == [("b", "")]
    assert [r["Node"] for r in coordinate_rows(other.store, None)[1]] == ["b"]
    assert catalog.prune_orphan_coordinates(other.store) == 0
