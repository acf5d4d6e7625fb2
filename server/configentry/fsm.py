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


def apply_config_entry(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    op = p["op"]
    view = StoreView(tx.store)
    dc = p.get("datacenter") or "dc1"
    if op == "upsert":
        body = decode_entry(p["entry"])
        if not _cas_ok(tx, entry_key(body), p.get("cas")):
            return False
        validate_entry(body, view, datacenter=dc)
        return _put_txn(tx, body)
    if op == "delete":
        ns = p.get("namespace") or DEFAULT_NS
        key = key_for(p["kind"], p["name"], ns)
        if not _cas_ok(tx, key, p.get("cas")):
            return False
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
    raise ValidationError(f"unknown config entry operation {op!r}")


register_handler(MessageType.CONFIG_ENTRY, apply_config_entry)
register_row_codec(TABLE, row_encode, row_decode)
