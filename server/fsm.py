"""The FSM: a dispatch table from command type to an ``apply_*`` handler over the state store.

``apply(index, data)`` is pure: it decodes the command envelope, runs exactly one handler inside
``store.write_txn(index)``, and returns the handler's outcome as a *value*. An outcome that is a
refusal (a check for a missing service, a failed txn) is returned as :class:`Rejected` and the
transaction is rolled back: raft errors are raised by the Raft layer; FSM outcomes are values.
Any other exception from a handler is a bug (request shapes are validated before a command is
proposed): the transaction is rolled back alike on every replica and the outcome is a
:class:`HandlerBug`, which the proposer logs and answers as an internal error (500), never as
the caller's mistake.

An unknown command type stops the process (:class:`UnknownCommandError`) unless its
``IGNORE_UNKNOWN`` bit is set, because skipping it would let this server's state diverge.

Snapshots: :meth:`FSM.snapshot` captures the tables cheaply (shallow copies of dicts of immutable
rows); :meth:`FSMSnapshot.persist` streams them as msgpack off the apply path; :meth:`FSM.restore`
builds a fresh store, swaps it in and abandons the old one so every parked query wakes up.
"""

from __future__ import annotations

import dataclasses
import io
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import msgpack

from lictor.common.commands import IGNORE_UNKNOWN, MessageType, decode_command, encode_command
from lictor.common.errors import LictorError, ValidationError
from lictor.common.structs import CheckRow, KVEntry, Node, ServiceRow, Session
from lictor.server.state import catalog, kvs, sessions, txn
from lictor.server.state.store import Store, WriteTxn, row_codec

__all__ = ["FSM", "FSMSnapshot", "HandlerBug", "Rejected", "UnknownCommandError"]

SNAPSHOT_VERSION = 1


class UnknownCommandError(Exception):
    """A command this server does not understand: stop rather than diverge."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command was applied (it has a log index) but refused by the state store."""

    error: LictorError


@dataclass(frozen=True, slots=True)
class HandlerBug:
    """A handler raised something that is not a refusal: a bug. Rolled back (deterministically,
    on every replica, so state does not diverge); the proposer logs it and answers 500."""

    command: str
    error: str
    """``repr`` of the exception."""
    traceback: str


Handler = Callable[[WriteTxn, dict[str, Any], float], Any]


def apply_register(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    catalog.ensure_registration_txn(tx, p, now=now)
    return True


def apply_deregister(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    node = p.get("node") or ""
    if not node:
        raise ValidationError("Must provide node")
    if p.get("service_id"):
        catalog.service_delete_txn(tx, node, p["service_id"], now=now)
    elif p.get("check_id"):
        catalog.check_delete_txn(tx, node, p["check_id"], now=now)
    else:
        catalog.node_delete_txn(tx, node, now=now)
    return True


def apply_kvs(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    op, key = p["op"], p.get("key", "")
    value, flags = p.get("value"), int(p.get("flags") or 0)
    if op == "set":
        return kvs.kvs_set_txn(tx, key, value, flags)
    if op == "cas":
        return kvs.kvs_set_cas_txn(tx, key, value, flags, int(p["cas"]))
    if op == "lock":
        return kvs.kvs_lock_txn(tx, key, value, flags, p["session"])
    if op == "unlock":
        return kvs.kvs_unlock_txn(tx, key, value, flags, p["session"])
    if op == "delete":
        return kvs.kvs_delete_txn(tx, key)
    if op == "delete-cas":
        return kvs.kvs_delete_cas_txn(tx, key, int(p["cas"]))
    if op == "delete-tree":
        return kvs.kvs_delete_tree_txn(tx, key)
    raise ValidationError(f"unknown KV operation {op!r}")


def apply_session(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    if p["op"] == "create":
        sessions.session_create_txn(tx, p["session"])
        return p["session"]["id"]
    if p["op"] == "destroy":
        return sessions.session_destroy_txn(tx, p["id"], now=now)
    raise ValidationError(f"unknown session operation {p['op']!r}")


def apply_txn(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    return txn.txn_apply_txn(tx, p["ops"], now=now)


def apply_tombstone_reap(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    return kvs.tombstone_reap_txn(tx, int(p["index"]))


def apply_noop(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    return None


HANDLERS: dict[int, Handler] = {
    MessageType.REGISTER: apply_register,
    MessageType.DEREGISTER: apply_deregister,
    MessageType.KVS: apply_kvs,
    MessageType.SESSION: apply_session,
    MessageType.TXN: apply_txn,
    MessageType.TOMBSTONE_REAP: apply_tombstone_reap,
    MessageType.NOOP: apply_noop,
}


def register_handler(msg_type: int, handler: Handler) -> None:
    """Add the apply handler of a feature's command type (called when its module is imported)."""
    if msg_type in HANDLERS and HANDLERS[msg_type] is not handler:
        raise ValueError(f"a handler for command type {msg_type} is already registered")
    HANDLERS[msg_type] = handler


# Modules that register command handlers and row codecs for the extension tables. They are
# imported once, below, so that every server that can apply a command type knows it.
EXTENSIONS: tuple[str, ...] = ("lictor.server.connect.fsm", "lictor.server.configentry.fsm",
                               "lictor.server.acl.fsm", "lictor.server.coordinates",
                               "lictor.server.autopilot_config", "lictor.server.prepared_query")


def _load_extensions() -> None:
    import importlib

    for name in EXTENSIONS:
        importlib.import_module(name)


class FSM:
    """Applies committed commands to the current :class:`Store`."""

    def __init__(self) -> None:
        self.store = Store()
        self.last_applied = 0

    def apply(self, index: int, data: bytes) -> Any:
        cmd = decode_command(data)
        if cmd.type == MessageType.RESTORE:
            self.restore(io.BytesIO(cmd.payload["state"]))
            self.last_applied = index
            return None
        handler = HANDLERS.get(cmd.type)
        self.last_applied = index
        if handler is None:
            if cmd.type & IGNORE_UNKNOWN:
                return None
            raise UnknownCommandError(f"unknown command type {cmd.type} at index {index}")
        try:
            with self.store.write_txn(index, cmd.now) as tx:
                return handler(tx, cmd.payload, cmd.now)
        except txn.TxnAborted as exc:
            return Rejected(exc)
        except LictorError as exc:
            return Rejected(exc)
        except Exception as exc:  # noqa: BLE001 - a bug, reported as a value (see HandlerBug)
            # Deterministic: every server raises the same error on the same entry and the undo
            # log leaves the store unchanged, so rolling back is safe; raising would stop every
            # replica on the same entry.
            return HandlerBug(command=_type_name(cmd.type), error=repr(exc),
                              traceback="".join(traceback.format_exception(exc)))

    # ----- snapshots ------------------------------------------------------------------------
    def snapshot(self) -> FSMSnapshot:
        s = self.store
        return FSMSnapshot(
            index=self.last_applied,
            nodes=list(s.nodes.values()), services=list(s.services.values()),
            checks=list(s.checks.values()), kvs=list(s.kvs.values()),
            tombstones=dict(s.tombstones), tombstone_times=dict(s.tombstone_times), sessions=list(s.sessions.values()),
            lock_delay=dict(s.lock_delay), indexes=dict(s.indexes),
            ext={name: dict(rows) for name, rows in s.ext.items() if rows},
        )

    def restore(self, stream: IO[bytes]) -> None:
        new = _load(stream)
        old, self.store = self.store, new
        self.last_applied = new.latest_index
        old.abandon()

    def check_snapshot(self, data: bytes) -> None:
        """Raise ``ValueError`` unless `data` loads (into a scratch store: nothing changes)."""
        _load(io.BytesIO(data))

    def restore_command(self, data: bytes, now: float) -> bytes:
        """The RESTORE log entry that swaps every server's store for the state in `data`."""
        return encode_command(MessageType.RESTORE, {"state": data}, now)


@dataclass(frozen=True, slots=True)
class FSMSnapshot:
    """An immutable capture of the tables; ``persist`` writes it as a msgpack stream."""

    index: int
    nodes: list[Node]
    services: list[ServiceRow]
    checks: list[CheckRow]
    kvs: list[KVEntry]
    tombstones: dict[str, int]
    tombstone_times: dict[str, float]
    sessions: list[Session]
    lock_delay: dict[str, float]
    indexes: dict[str, int]
    ext: dict[str, dict[Any, Any]] = dataclasses.field(default_factory=dict)

    def persist(self, sink: IO[bytes]) -> None:
        pack = msgpack.Packer(use_bin_type=True).pack
        sink.write(pack({"version": SNAPSHOT_VERSION, "index": self.index}))
        for table, rows in (("node", self.nodes), ("service", self.services), ("check", self.checks),
                            ("kv", self.kvs), ("session", self.sessions)):
            for row in rows:
                sink.write(pack([table, dataclasses.asdict(row)]))
        sink.write(pack(["tombstones", self.tombstones]))
        sink.write(pack(["tombstone_times", self.tombstone_times]))
        sink.write(pack(["lock_delay", self.lock_delay]))
        sink.write(pack(["indexes", self.indexes]))
        for name, table_rows in self.ext.items():
            encode = row_codec(name)[0]
            for key, ext_row in table_rows.items():
                sink.write(pack(["ext", [name, key, encode(ext_row)]]))
        sink.write(pack(["end", None]))


_ROW_TYPES: dict[str, type] = {"node": Node, "service": ServiceRow, "check": CheckRow, "kv": KVEntry,
                               "session": Session}


def _mk(cls: type, d: dict[str, Any]) -> Any:
    for k in ("tags", "service_tags", "node_checks"):
        if k in d and isinstance(d[k], list):
            d[k] = tuple(d[k])
    if cls is Session and isinstance(d.get("service_checks"), list):
        d["service_checks"] = tuple(d["service_checks"])
    return cls(**d)


def _load(stream: IO[bytes]) -> Store:
    unpacker = msgpack.Unpacker(stream, raw=False, strict_map_key=False, max_buffer_size=1 << 30)
    header = next(unpacker)
    if not isinstance(header, dict) or header.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported snapshot header {header!r}")
    st = Store()
    ended = False
    for table, data in unpacker:
        if table == "end":
            ended = True
            break
        if table in _ROW_TYPES:
            row = _mk(_ROW_TYPES[table], data)
            _insert(st, table, row)
        elif table == "tombstones":
            st.tombstones.update(data)
            st.tombstone_keys.update(data.keys())
        elif table == "tombstone_times":
            st.tombstone_times.update(data)
        elif table == "lock_delay":
            st.lock_delay.update(data)
        elif table == "indexes":
            st.indexes.update(data)
        elif table == "ext":
            name, key, value = data
            if name not in st.ext:
                raise ValueError(f"unknown extension table {name!r} in snapshot")
            st.ext[name][_tuplify(key)] = row_codec(name)[1](value)
        else:
            raise ValueError(f"unknown snapshot table {table!r}")
    if not ended:
        raise ValueError("snapshot stream is truncated")
    # Snapshots written before a node's deregistration took its coordinates along may carry
    # orphans; drop them here so no read needs to filter (catalog.node_delete_txn).
    catalog.prune_orphan_coordinates(st)
    st.latest_index = max(st.indexes.values(), default=0)
    return st


def _type_name(t: int) -> str:
    try:
        return MessageType(t).name
    except ValueError:
        return str(t)


def _tuplify(key: Any) -> Any:
    return tuple(_tuplify(k) for k in key) if isinstance(key, list) else key


def _insert(st: Store, table: str, row: Any) -> None:
    """Insert a row and its secondary-index entries, outside any transaction (restore only)."""
    if table == "node":
        st.nodes[row.node] = row
    elif table == "service":
        key = (row.node, row.id)
        st.services[key] = row
        st.services_by_name.setdefault(row.service, set()).add(key)
        st.services_by_node.setdefault(row.node, set()).add(row.id)
    elif table == "check":
        st.checks[(row.node, row.check_id)] = row
        st.checks_by_node.setdefault(row.node, set()).add(row.check_id)
        if row.service_id:
            st.checks_by_service.setdefault((row.node, row.service_id), set()).add(row.check_id)
    elif table == "kv":
        st.kvs[row.key] = row
        st.kv_keys.add(row.key)
        if row.session:
            st.session_locks.setdefault(row.session, set()).add(row.key)
    elif table == "session":
        st.sessions[row.id] = row
        st.sessions_by_node.setdefault(row.node, set()).add(row.id)
        for cid in list(row.node_checks) + [c["ID"] for c in row.service_checks if c.get("ID")]:
            st.session_checks.setdefault((row.node, cid), set()).add(row.id)


_load_extensions()
