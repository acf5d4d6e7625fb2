"""The Istio apply command in the FSM: one transaction (a refusal leaves nothing behind), and the
applied resources survive a snapshot and restore with the entries they imply."""

from __future__ import annotations

import io
from typing import Any

from lictor.common.commands import MessageType, encode_command
from lictor.server.configentry.entries import StoreView
from lictor.server.fsm import FSM, Rejected
from lictor.server.istio.documents import parse_documents

CANARY = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shipping}
spec:
  host: shipping
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shipping}
spec:
  hosts: [shipping]
  http:
  - route:
    - {destination: {host: shipping, subset: v1}, weight: 90}
    - {destination: {host: shipping, subset: v2}, weight: 10}
"""


def apply(fsm: FSM, index: int, text: str) -> Any:
    resources, _ = parse_documents(text)
    payload = {"op": "istio", "apply": [{"body": r.body, "where": r.where} for r in resources]}
    return fsm.apply(index, encode_command(MessageType.CONFIG_ENTRY, payload, 0.0))


def test_refused_apply_changes_nothing_and_snapshot_keeps_everything() -> None:
    fsm = FSM()
    out = apply(fsm, 1, CANARY)
    assert out["Applied"] == ["DestinationRule/default/shipping", "VirtualService/default/shipping"]
    view = StoreView(fsm.store)
    assert view.get("service-splitter", "shipping") is not None
    before = {name: dict(rows) for name, rows in fsm.store.ext.items()}
    # the second document breaks the first one's graph: the whole command is refused
    bad = CANARY.replace("subset: v2}, weight: 10", "subset: v3}, weight: 10")
    out = apply(fsm, 2, bad)
    assert isinstance(out, Rejected) and "subset 'v3'" in str(out.error)
    assert {name: dict(rows) for name, rows in fsm.store.ext.items()} == before
    buf = io.BytesIO()
    fsm.snapshot().persist(buf)
    other = FSM()
    other.restore(io.BytesIO(buf.getvalue()))
    assert other.store.ext["istio_resources"] == fsm.store.ext["istio_resources"]
    assert StoreView(other.store).get("service-splitter", "shipping") == view.get("service-splitter", "shipping")
