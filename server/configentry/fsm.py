"""The CONFIG_ENTRY command: its FSM handler and the snapshot codec of the config_entries table.

Payload shapes (``MessageType.CONFIG_ENTRY``), all produced by server/endpoints after validation:

* ``{"op": "upsert", "entry": <canonical body>, "cas"?: int, "datacenter"?: str}`` -> bool
  (False: the CAS lost; 0 means "only if it does not exist")
* ``{"op": "delete", "kind", "name", "namespace"?, "cas"?: int}`` -> bool
* ``{"op": "intention-upsert", "destination", "destination_ns", "source": <canonical source>}`` -> True
* ``{"op": "intention-delete", "destination", "destination_ns", "source", "source_ns"}`` -> bool

The handler re-validates against its own transaction's state (``validate_entry`` with a
:class:`StoreView` of ``tx.store``): another write may have landed since the endpoint checked.
A refusal raises ValidationError, which the FSM turns into ``Rejected`` with nothing changed.

Index rows bumped: ``config_entries``, ``config_entries.<kind>``, and ``intentions`` for
service-intentions. Writes that change nothing bump nothing.
"""

from __future__ import annotations

from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import (DEFAULT_NS, SERVICE_INTENTIONS, TABLE, ConfigEntryRow, StoreView,
                                               decode_entry, entry_key, key_for, row_decode, row_encode)
from lictor.server.configentry.intentions import remove_source, upsert_source
from lictor.server.configentry.validate import validate_delete, validate_entry
from lictor.server.fsm import register_handler
from lictor.server.state.store import WriteTxn, register_row_codec

__all__ = ["apply_config_entry"]


def _bump(tx: WriteTxn, kind: str) -> None:
    tx.bump(TABLE, f"{TABLE}.{kind}")
    if kind == SERVICE_INTENTIONS:
        tx.bump("intentions")


def _put_txn(tx: WriteTxn, body: dict[str, Any]) -> bool:
    table = tx.store.ext[TABLE]
    key = entry_key(body)
    old: ConfigEntryRow | None = table.get(key)
    if old is not None and old.body == body:
        return True
    row = ConfigEntryRow(kind=key[0], name=key[1], body=body,
                         create_index=old.create_index if old else tx.index, modify_index=tx.index)
    tx.put(table, key, row)
    _bump(tx, key[0])
    return True


def _delete_txn(tx: WriteTxn, kind: str, name: str, namespace: str) -> bool:
    key = key_for(kind, name, namespace)
    if tx.delete(tx.store.ext[TABLE], key) is None:
        return False
    _bump(tx, kind)
    return True


def _cas_ok(tx: WriteTxn, key: tuple[str, str], cas: Any) -> bool:
    if cas is None:
        return True
    row = tx.store.ext[TABLE].get(key)
    return (row.modify_index if row is not None else 0) == int(cas)


ISTIO_META = "lictor-istio"  # = lictor.server.istio.translate.ISTIO_META (that module imports this one's package)


def _refuse_istio_owned(view: StoreView, kind: str, name: str, ns: str, body: dict[str, Any] | None) -> None:
    """Entries implied by Istio resources are changed only through them, and no other write may
    claim to be one."""
    if body is not None and ISTIO_META in (body.get("Meta") or {}):
        raise ValidationError(f"Meta.{ISTIO_META}: reserved for entries implied by Istio resources")
    old = view.get(kind, name, ns)
    origin = (old.get("Meta") or {}).get(ISTIO_META) if old is not None else None
    if origin:
        raise ValidationError(f"{kind} {name!r} conflicts with the Istio resource(s) {origin} that imply it; "
                              "change or delete those with `lictor apply` / `lictor delete`")


def apply_config_entry(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    op = p["op"]
    view = StoreView(tx.store)
    dc = p.get("datacenter") or "dc1"
    if op == "upsert":
        body = decode_entry(p["entry"])
        if not _cas_ok(tx, entry_key(body), p.get("cas")):
            return False
        _refuse_istio_owned(view, body["Kind"], body["Name"], body.get("Namespace") or DEFAULT_NS, body)
        validate_entry(body, view, datacenter=dc)
        return _put_txn(tx, body)
    if op == "delete":
        ns = p.get("namespace") or DEFAULT_NS
        key = key_for(p["kind"], p["name"], ns)
        if not _cas_ok(tx, key, p.get("cas")):
            return False
        _refuse_istio_owned(view, p["kind"], p["name"], ns, None)
        validate_delete(p["kind"], p["name"], view, namespace=ns, datacenter=dc)
        existed = _delete_txn(tx, p["kind"], p["name"], ns)
        return existed if p.get("cas") is not None else True
    if op == "intention-upsert":
        dns = p.get("destination_ns") or DEFAULT_NS
        body = upsert_source(view.get(SERVICE_INTENTIONS, p["destination"], dns), dns, p["destination"], p["source"])
        validate_entry(body, view, datacenter=dc)
        return _put_txn(tx, body)
    if op == "intention-delete":
        dns = p.get("destination_ns") or DEFAULT_NS
        entry = view.get(SERVICE_INTENTIONS, p["destination"], dns)
        if entry is None:
            return False
        after = remove_source(entry, p.get("source_ns") or DEFAULT_NS, p["source"])
        if after is None:
            validate_delete(SERVICE_INTENTIONS, p["destination"], view, namespace=dns, datacenter=dc)
            return _delete_txn(tx, SERVICE_INTENTIONS, p["destination"], dns)
        if after == entry:
            return False
        validate_entry(after, view, datacenter=dc)
        return _put_txn(tx, after)
    if op == "istio":
        return _istio_txn(tx, p, view, dc)
    raise ValidationError(f"unknown config entry operation {op!r}")


def _istio_txn(tx: WriteTxn, p: dict[str, Any], view: StoreView, dc: str) -> dict[str, Any]:
    """Apply and delete Istio resources and replace the config entries they imply, all in this
    transaction (a refusal raises, and the FSM rolls every change back)."""
    from lictor.server.istio.documents import from_body
    from lictor.server.istio.plan import ISTIO_TABLE, make_plan

    table = tx.store.ext[ISTIO_TABLE]
    apply = [from_body(d["body"], d.get("where") or "") for d in p.get("apply") or []]
    delete = [(k[0], k[1]) for k in p.get("delete") or []]
    plan = make_plan(table, view, apply=apply, delete=delete, datacenter=dc)
    for body in plan.put_entries:
        _put_txn(tx, body)
    for kind, name in plan.delete_entries:
        ns, _, short = name.rpartition("/")
        _delete_txn(tx, kind, short, ns or DEFAULT_NS)
    for r in plan.put_resources:
        old = table.get(r.key)
        tx.put(table, r.key, {"body": r.body, "create_index": old["create_index"] if old else tx.index,
                              "modify_index": tx.index})
    for key in plan.delete_resources:
        tx.delete(table, key)
    if plan.put_resources or plan.delete_resources:
        tx.bump(ISTIO_TABLE)
    return plan.summary()


register_handler(MessageType.CONFIG_ENTRY, apply_config_entry)
register_row_codec(TABLE, row_encode, row_decode)
