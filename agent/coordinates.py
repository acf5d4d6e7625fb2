"""Network coordinates: Vivaldi as Serf computes them, carried on gossip probe acks.

::

    every direct probe  A --ping--> B --ack(payload = B's coordinate)--> A
        GossipNode.on_ack(ProbeAck(node=B, rtt, payload)) -> CoordinateKeeper.observe
        -> VivaldiClient.update(B, B's coordinate, rtt)    (median of the last 3 RTTs per node)
    every sync interval (scaled with cluster size, as Consul's sync_coordinate_*):
        Coordinate.Update {node, coord} --rpc--> leader: batched, one COORDINATES command per
        flush (server/endpoints/coordinate.py) -> store.ext["coordinates"]
    reads: /v1/coordinate/* and ?near= sorting use :func:`distance` on stored coordinates.

The maths (``Coordinate``, ``VivaldiClient``) is pure and deterministic given its ``rng``
(only used to pick a direction when two coordinates coincide); it follows
hashicorp/serf ``coordinate/`` with its default configuration: 8 dimensions, error max 1.5,
ce = cc = 0.25, an adjustment window of 20 samples, height min 10 us, gravity rho 150.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

__all__ = [
    "Coordinate",
    "CoordinateKeeper",
    "VivaldiClient",
    "decode_coordinate",
    "distance",
    "encode_coordinate",
    "sort_by_distance",
]

log = logging.getLogger("lictor.coordinates")

DIMENSIONALITY = 8
ERROR_MAX = 1.5
CE = 0.25
CC = 0.25
ADJUSTMENT_WINDOW = 20
HEIGHT_MIN = 10.0e-6
LATENCY_FILTER = 3
GRAVITY_RHO = 150.0
ZERO = 1.0e-6
MAX_RTT = 10.0


@dataclass(frozen=True, slots=True)
class Coordinate:
    vec: tuple[float, ...] = (0.0,) * DIMENSIONALITY
    error: float = ERROR_MAX
    adjustment: float = 0.0
    height: float = HEIGHT_MIN

    def to_api(self) -> dict[str, Any]:
        return {"Vec": list(self.vec), "Error": self.error, "Adjustment": self.adjustment,
                "Height": self.height}

    @classmethod
    def from_api(cls, d: Any) -> Coordinate:
        """From Consul's JSON shape; ValueError if it is not one (wrong dimensions, NaN...)."""
        if not isinstance(d, dict):
            raise ValueError("coordinate must be an object")
        vec = d.get("Vec")
        if not isinstance(vec, list) or len(vec) != DIMENSIONALITY:
            raise ValueError(f"coordinate Vec must have {DIMENSIONALITY} numbers")
        vals = [float(v) for v in vec]
        c = cls(vec=tuple(vals), error=float(d.get("Error", ERROR_MAX)),
                adjustment=float(d.get("Adjustment", 0.0)), height=float(d.get("Height", HEIGHT_MIN)))
        if not c.valid():
            raise ValueError("coordinate has non-finite components")
        return c

    def valid(self) -> bool:
        return all(math.isfinite(x) for x in (*self.vec, self.error, self.adjustment, self.height))

    def raw_distance(self, other: Coordinate) -> float:
        return _magnitude(_diff(self.vec, other.vec)) + self.height + other.height

    def distance(self, other: Coordinate) -> float:
        """Estimated RTT in seconds (Serf's ``DistanceTo``)."""
        d = self.raw_distance(other)
        adjusted = d + self.adjustment + other.adjustment
        return adjusted if adjusted > 0 else d


def _diff(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def _magnitude(v: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _unit_vector_at(a: Sequence[float], b: Sequence[float], rng: random.Random) -> tuple[list[float], float]:
    ret = _diff(a, b)
    mag = _magnitude(ret)
    if mag > ZERO:
        return [x / mag for x in ret], mag
    ret = [rng.random() - 0.5 for _ in ret]
    mag = _magnitude(ret)
    if mag > ZERO:
        return [x / mag for x in ret], 0.0
    return [0.0] * len(ret), 0.0


def _apply_force(c: Coordinate, force: float, other: Coordinate, rng: random.Random) -> Coordinate:
    unit, mag = _unit_vector_at(c.vec, other.vec, rng)
    vec = tuple(x + u * force for x, u in zip(c.vec, unit, strict=True))
    height = c.height
    if mag > ZERO:
        height = max((c.height + other.height) * force / mag + c.height, HEIGHT_MIN)
    return Coordinate(vec=vec, error=c.error, adjustment=c.adjustment, height=height)


@dataclass(slots=True)
class VivaldiClient:
    """One node's view: its coordinate, per-node latency filters, the adjustment window."""

    rng: random.Random = field(default_factory=random.Random)
    coord: Coordinate = field(default_factory=Coordinate)
    _origin: Coordinate = field(default_factory=Coordinate)
    _samples: dict[str, list[float]] = field(default_factory=dict)
    _adjust: list[float] = field(default_factory=lambda: [0.0] * ADJUSTMENT_WINDOW)
    _adjust_i: int = 0
    updates: int = 0
    rejected: int = 0

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """Fold one RTT sample to ``node`` (at ``other``) in; returns the new coordinate.
        Samples outside (0, 10 s] and invalid coordinates are rejected (counted)."""
        if not (0 <= rtt <= MAX_RTT) or not other.valid():
            self.rejected += 1
            return self.coord
        window = self._samples.setdefault(node, [])
        window.append(rtt)
        if len(window) > LATENCY_FILTER:
            del window[0]
        rtt = statistics.median(window)
        before = self.coord
        self._update_vivaldi(other, rtt)
        self._update_adjustment(other, rtt)
        self._update_gravity()
        if not self.coord.valid():  # never let a bad sample poison the coordinate
            self.coord = before
            self.rejected += 1
        else:
            self.updates += 1
        return self.coord

    def forget(self, node: str) -> None:
        self._samples.pop(node, None)

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        c = self.coord
        dist = c.distance(other)
        rtt = max(rtt, ZERO)
        wrongness = abs(dist - rtt) / rtt
        total = max(c.error + other.error, ZERO)
        weight = c.error / total
        error = min(CE * weight * wrongness + c.error * (1.0 - CE * weight), ERROR_MAX)
        force = CC * weight * (rtt - dist)
        moved = _apply_force(c, force, other, self.rng)
        self.coord = Coordinate(vec=moved.vec, error=error, adjustment=c.adjustment, height=moved.height)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        self._adjust[self._adjust_i] = rtt - self.coord.raw_distance(other)
        self._adjust_i = (self._adjust_i + 1) % ADJUSTMENT_WINDOW
        c = self.coord
        self.coord = Coordinate(vec=c.vec, error=c.error, height=c.height,
                                adjustment=sum(self._adjust) / (2.0 * ADJUSTMENT_WINDOW))

    def _update_gravity(self) -> None:
        d = self._origin.distance(self.coord)
        force = -1.0 * (d / GRAVITY_RHO) ** 2
        self.coord = _apply_force(self.coord, force, self._origin, self.rng)


# -- the ack payload ----------------------------------------------------------------------------

def encode_coordinate(c: Coordinate) -> bytes:
    """[vec..., error, adjustment, height] as msgpack float32s: 8 + 3 floats, 59 bytes."""
    return msgpack.packb([*c.vec, c.error, c.adjustment, c.height], use_single_float=True)


def decode_coordinate(data: bytes) -> Coordinate | None:
    """None for an empty or malformed payload (a peer without coordinates)."""
    if not data:
        return None
    try:
        v = msgpack.unpackb(data, raw=True, strict_map_key=True)
    except Exception:  # noqa: BLE001 - anything from the network may be junk
        return None
    if not isinstance(v, list) or len(v) != DIMENSIONALITY + 3 or \
            not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return None
    c = Coordinate(vec=tuple(float(x) for x in v[:DIMENSIONALITY]), error=float(v[-3]),
                   adjustment=float(v[-2]), height=float(v[-1]))
    return c if c.valid() else None


# -- reads --------------------------------------------------------------------------------------

def distance(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float:
    """RTT estimate between two API-shaped coordinates; +inf if either is missing/invalid."""
    if not a or not b:
        return math.inf
    try:
        return Coordinate.from_api(a).distance(Coordinate.from_api(b))
    except (ValueError, TypeError):
        return math.inf


def sort_by_distance(rows: list[Any], near: dict[str, Any] | None, coords: dict[str, dict[str, Any]],
                     node_of: Callable[[Any], str]) -> list[Any]:
    """Rows ordered by estimated RTT from ``near`` (stable; rows without coordinates last)."""
    if near is None:
        return rows
    return sorted(rows, key=lambda r: distance(near, coords.get(node_of(r))))


# -- the agent side -----------------------------------------------------------------------------

def sync_interval(cluster_size: int) -> float:
    """Consul's rate-limited coordinate sync: at least 15 s, more in big clusters (64 updates/s
    cluster-wide). ``LICTOR_COORD_SYNC_INTERVAL`` (seconds) overrides it for tests."""
    raw = os.environ.get("LICTOR_COORD_SYNC_INTERVAL")
    if raw:
        return max(0.05, float(raw))
    return max(15.0, cluster_size / 64.0)


class CoordinateKeeper:
    """The agent's coordinate: fed by probe acks, put on our own acks, synced to the servers."""

    def __init__(self, *, node: str, rpc: Callable[[str, dict[str, Any]], Any],
                 cluster_size: Callable[[], int], rng: random.Random | None = None) -> None:
        self.node = node
        self.client = VivaldiClient(rng=rng or random.Random())
        self._rpc = rpc
        self._cluster_size = cluster_size
        self.on_change: Callable[[bytes], None] | None = None  # new ack payload
        self.synced = 0
        self.sync_errors = 0

    @property
    def coord(self) -> Coordinate:
        return self.client.coord

    def payload(self) -> bytes:
        return encode_coordinate(self.client.coord)

    def observe(self, node: str, rtt: float, payload: bytes) -> None:
        other = decode_coordinate(payload)
        if other is None:
            return
        self.client.update(node, other, rtt)
        if self.on_change is not None:
            self.on_change(self.payload())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(sync_interval(self._cluster_size()) * random.uniform(0.9, 1.1))
            if self.client.updates == 0:
                continue
            try:
                await self._rpc("Coordinate.Update", {"node": self.node, "coord": self.coord.to_api(),
                                                      "segment": ""})
                self.synced += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried next round
                self.sync_errors += 1
                log.debug("coordinate sync failed: %s", exc)
