"""The CONNECT_CA command: one handler dispatching on ``payload["op"]``, plus the row codecs that
let FSM snapshots carry CA rows. Imported by ``lictor.server.fsm`` through ``EXTENSIONS``.

Ops (all inputs produced on the leader before proposing; see connect/leader.py):

* ``initialize`` {cluster_id, config, root, private_key_pem, serial_next} -> bool
* ``set_config`` {config, cas?} -> bool (False when the CAS lost)
* ``rotate`` {old_root_id, root, private_key_pem, config?} -> bool
* ``reserve_serials`` {count} -> first serial of the block
* ``prune`` {root_ids} -> number of roots removed
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import ValidationError
from lictor.server.connect import state
from lictor.server.fsm import register_handler
from lictor.server.state.store import WriteTxn, register_row_codec

__all__ = ["apply_connect_ca"]


def apply_connect_ca(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    op = p.get("op")
    if op == "initialize":
        return state.initialize_txn(tx, p)
    if op == "set_config":
        return state.set_config_txn(tx, p)
    if op == "rotate":
        return state.rotate_txn(tx, p, now)
    if op == "reserve_serials":
        return state.reserve_serials_txn(tx, p)
    if op == "prune":
        return state.prune_txn(tx, p)
    raise ValidationError(f"unknown CA operation {op!r}")


def _decode_root(d: dict[str, Any]) -> state.CARoot:
    return state.CARoot(**{**d, "intermediate_certs": tuple(d.get("intermediate_certs") or ())})


register_handler(MessageType.CONNECT_CA, apply_connect_ca)
register_row_codec("ca_roots", dataclasses.asdict, _decode_root)
register_row_codec("ca_config", dataclasses.asdict, lambda d: state.CAConfig(**d))
