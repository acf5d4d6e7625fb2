"""Coordinate.* endpoints. Updates are batched on the leader, as Consul's ``Coordinate.Update``:
each call only records the latest coordinate per node; a flusher proposes one COORDINATES
command per ``coordinate_update_period`` (5 s; ``LICTOR_COORD_UPDATE_PERIOD`` for tests) with at
most 128 x 5 updates, so coordinate churn costs Raft a few entries per period however many
agents there are."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import NotLeaderError, NoLeaderError, ValidationError
from lictor.common.tasks import spawn
from lictor.server.coordinates import coordinate_rows, valid_coord
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

log = logging.getLogger("lictor.coordinates")

MAX_BATCH = 128 * 5


def _period() -> float:
    raw = os.environ.get("LICTOR_COORD_UPDATE_PERIOD")
    return max(0.02, float(raw)) if raw else 5.0


class _Batcher:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}
        self.task: asyncio.Task[None] | None = None
        self.flushed = 0

    def add(self, node: str, segment: str, coord: dict[str, Any]) -> None:
        if len(self.pending) >= MAX_BATCH and (node, segment) not in self.pending:
            return  # Consul drops updates beyond the batch limit too; the agent resends later
        self.pending[(node, segment)] = {"node": node, "segment": segment, "coord": coord}
        if self.task is None or self.task.done():
            self.task = spawn(self._flush_later(), name="coordinate-flush")

    async def _flush_later(self) -> None:
        await asyncio.sleep(_period())
        batch, self.pending = list(self.pending.values()), {}
        if not batch:
            return
        try:
            await self.server.apply(MessageType.COORDINATES, {"updates": batch})
            self.flushed += len(batch)
        except Exception as exc:  # noqa: BLE001 - lost leadership: the agents resend later
            log.debug("coordinate batch of %d dropped: %s", len(batch), exc)


def _batcher(server: Server) -> _Batcher:
    b = server.__dict__.get("_coord_batcher")
    if b is None:
        b = server.__dict__["_coord_batcher"] = _Batcher(server)
    return b


@endpoint("Coordinate.Update", write=True)
async def update(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    node, coord = a.get("node"), a.get("coord")
    if not isinstance(node, str) or not node:
        raise ValidationError("Must provide node")
    if not valid_coord(coord):
        raise ValidationError("invalid coordinate")
    if not server.log.is_leader():
        leader = server.log.leader()
        raise NotLeaderError(leader) if leader else NoLeaderError()
    _batcher(server).add(node, str(a.get("segment") or ""), coord)
    return {"result": True}


@endpoint("Coordinate.ListNodes")
async def list_nodes(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        return coordinate_rows(store, ws)
    return await blocking_read(server, a, q)


@endpoint("Coordinate.Node")
async def node(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        return coordinate_rows(store, ws, node=str(a.get("node") or ""))
    return await blocking_read(server, a, q)


#: A Vivaldi coordinate before any observation (what a new serf node starts from).
ORIGIN_COORD: dict[str, Any] = {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05}


def _server_names(server: Server) -> list[str]:
    """This datacenter's servers: the Raft configuration, and the nodes carrying the ``consul``
    service (the leader registers it on each server)."""
    names = {server.config.node_name}
    c = server.cluster
    if c is not None:
        voters, learners = c.raft.members()
        names.update(c.name_of(p)[0] for p in voters | learners)
    names.update(node for node, _ in server.store.services_by_name.get("consul", ()))
    return sorted(n for n in names if n)


@endpoint("Coordinate.ListDatacenters")
async def datacenters(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Consul's WAN view: one coordinate per server, named ``<node>.<dc>``. Lictor's servers share
    the LAN pool only, so a server's WAN coordinate is its LAN one; a server that has not sent
    one yet is at the origin, as a fresh serf node is, so every server is listed from start-up."""
    dc = server.config.datacenter
    _, rows = coordinate_rows(server.store, None)
    lan = {r["Node"]: r["Coord"] for r in rows if not r["Segment"]}
    coords = [{"Node": f"{name}.{dc}", "Coord": lan.get(name, ORIGIN_COORD)} for name in _server_names(server)]
    return {"result": [{"Datacenter": dc, "AreaID": "wan", "Coordinates": coords}]}
