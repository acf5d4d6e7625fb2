"""The COORDINATES command and the ``coordinates`` table: network coordinates in the catalog.

``store.ext["coordinates"]``: (node, segment) -> {"Node", "Segment", "Coord", "ModifyIndex"}.
One COORDINATES command carries a batch (``{"updates": [{node, segment, coord}, ...]}``, made by
the leader from many ``Coordinate.Update`` calls). A coordinate lives and dies with its node
(Consul's rule): updates for nodes not in the catalog are skipped, and deregistering a node
deletes its rows in the same transaction (``catalog.node_delete_txn``), bumping the
``coordinates`` index row; a restore drops orphans an older snapshot may carry. So the table only
ever holds coordinates of catalog nodes and reads need no filter. Imported by
``lictor.server.fsm`` through ``EXTENSIONS``.
"""

from __future__ import annotations

import math
from typing import Any

from lictor.common.commands import MessageType
from lictor.server.fsm import register_handler
from lictor.server.state.catalog import COORDINATES
from lictor.server.state.store import Store, WriteTxn, register_row_codec
from lictor.server.state.watch import WatchSet

__all__ = ["TABLE", "apply_coordinates", "coordinate_rows", "valid_coord"]

TABLE = COORDINATES


def valid_coord(c: Any) -> bool:
    if not isinstance(c, dict) or not isinstance(c.get("Vec"), list) or not 1 <= len(c["Vec"]) <= 16:
        return False
    vals = [*c["Vec"], c.get("Error", 0), c.get("Adjustment", 0), c.get("Height", 0)]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals)


def apply_coordinates(tx: WriteTxn, p: dict[str, Any], now: float) -> int:
    store = tx.store
    table = store.ext[TABLE]
    n = 0
    for u in p.get("updates") or []:
        node, seg, coord = u.get("node"), u.get("segment") or "", u.get("coord")
        if not isinstance(node, str) or node not in store.nodes or not valid_coord(coord):
            continue
        row = {"Node": node, "Segment": seg, "Coord": coord, "ModifyIndex": tx.index}
        old = table.get((node, seg))
        if old is not None and old["Coord"] == coord:
            continue
        tx.put(table, (node, seg), row)
        n += 1
    if n:
        tx.bump(TABLE)
    return n


def coordinate_rows(store: Store, ws: WatchSet | None, node: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    store.watch(ws, TABLE)
    rows = [{"Node": r["Node"], "Segment": r["Segment"], "Coord": r["Coord"]}
            for (n, _), r in sorted(store.ext[TABLE].items())
            if node is None or n == node]
    return store.index(TABLE), rows


register_handler(MessageType.COORDINATES, apply_coordinates)
register_row_codec(TABLE, lambda r: r, lambda d: d)
