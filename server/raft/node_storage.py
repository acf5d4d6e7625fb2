"""NodeStorage: the bridge between the durable stores (logstore.py) and the core's read-only
`StorageProtocol`.

::

    core (reads) ---> NodeStorage.mem (MemoryStorage: snapshot + entries after it, in memory)
    driver (writes) -> NodeStorage.append / set_hard_state / install_snapshot / create_snapshot
                          |-> LogStore (append_async: group commit), StableStore, SnapshotStore
                          '-> mem (only once the durable write is done)

Why a memory mirror: the core reads entries on every AppendEntries it builds; serving those from
the file log would mean a pread + crc check per entry. The mirror holds only what the durable
log holds (snapshot point .. last index), which compaction keeps at about
`snapshot_threshold + trailing_logs` entries.

Rules:
- `load()` rebuilds the mirror from disk: the newest valid snapshot, then the log records after
  it, then the hard state. A log that disagrees with the snapshot (an interrupted install) is cut
  back to the snapshot point; stale log records below it are ignored.
- Entries become visible to the core (mirror) only after `append` has made them durable.
- Snapshot metadata's `conf_state` is stored as {"voters": [...], "learners": [...]} plus the
  address book under "addresses" (informational; ids are the Raft ints).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .logstore import LogRecord, LogStore, SnapshotStore, StableStore
from .messages import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    RaftIndex,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    Term,
)
from .storage import MemoryStorage

__all__ = ["NodeStorage", "conf_to_json", "conf_from_json", "to_record", "to_entry"]

log = logging.getLogger("lictor.raft")


def conf_to_json(cs: ConfState, addresses: Mapping[int, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"voters": sorted(cs.voters), "learners": sorted(cs.learners)}
    if addresses:
        out["addresses"] = {str(k): v for k, v in addresses.items()}
    return out


def conf_from_json(d: Mapping[str, Any]) -> ConfState:
    return ConfState(
        voters=frozenset(int(x) for x in d.get("voters", ())),
        learners=frozenset(int(x) for x in d.get("learners", ())),
    )


def to_record(e: Entry) -> LogRecord:
    return LogRecord(index=e.index, term=e.term, kind=int(e.kind), data=e.data)


def to_entry(r: LogRecord) -> Entry:
    return Entry(r.term, r.index, r.data, EntryKind(r.kind))


class NodeStorage:
    """The core's `StorageProtocol` (via `mem`) plus the durable write side the driver uses."""

    def __init__(self, log_store: LogStore, stable_store: StableStore,
                 snapshot_store: SnapshotStore) -> None:
        self.log_store = log_store
        self.stable_store = stable_store
        self.snapshot_store = snapshot_store
        self.mem = MemoryStorage()
        self.addresses: dict[int, str] = {}
        """Address book found in the newest snapshot's metadata (a restart hint)."""
        self._saved = HardState()

    # ---------------------------------------------------------------- startup

    def load(self) -> Snapshot | None:
        """Rebuild the mirror from disk. Returns the snapshot the FSM must be restored from."""
        snap: Snapshot | None = None
        latest = self.snapshot_store.latest()
        if latest is not None:
            meta, reader = latest
            with reader:
                data = reader.read()
            snap = Snapshot(
                metadata=SnapshotMetadata(index=meta.index, term=meta.term,
                                          conf_state=conf_from_json(meta.conf_state)),
                data=data,
            )
            self.mem.apply_snapshot(snap)
            self.addresses = {int(k): str(v)
                              for k, v in dict(meta.conf_state.get("addresses", {})).items()}
            self._reconcile_log(meta.index, meta.term)
        ls = self.log_store
        lo = max(ls.first_index(), self.mem.last_index() + 1)
        if lo <= ls.last_index():
            self.mem.append([to_entry(r) for r in ls.get_range(lo, ls.last_index() + 1)])
        elif snap is None and ls.first_index() > 1:
            # Compacted log without a snapshot: only possible if the snapshot store was wiped.
            raise RuntimeError("raft log is compacted but no snapshot exists; refusing to start")
        rec = self.stable_store.load()
        vote = int(rec.vote) if rec.vote is not None else None
        commit = min(rec.commit, self.mem.last_index())
        hs = HardState(term=rec.term, vote=vote, commit=commit)
        self.mem.set_hard_state(hs)
        self._saved = hs
        return snap

    def _reconcile_log(self, index: RaftIndex, term: Term) -> None:
        """Make the durable log agree with a snapshot at (index, term)."""
        ls = self.log_store
        if ls.first_index() > index + 1:
            return  # compacted beyond the snapshot: the log starts later (never happens normally)
        if ls.last_index() >= index and index >= ls.first_index() and ls.get(index).term == term:
            return  # the log continues the snapshot
        if index < ls.first_index():
            return
        log.warning("raft log disagrees with snapshot %d/%d: truncating to it", index, term)
        ls.truncate_suffix(ls.first_index())
        ls.compact_prefix(index, term=term)

    # ---------------------------------------------------------------- Ready persistence

    def append(self, entries: Sequence[Entry]) -> asyncio.Future[None]:
        """Start a durable (group-committed) append; call `appended` once the future is done."""
        return self.log_store.append_async([to_record(e) for e in entries])

    def appended(self, entries: Sequence[Entry]) -> None:
        self.mem.append(entries)

    def set_hard_state(self, hs: HardState, *, sync: bool) -> None:
        """Record the hard state. Term/vote changes are saved durably at once; a commit-only
        change (`sync=False`) is saved lazily (`flush`): the commit index can always be
        re-learned from the leader, and saving it would cost fsyncs on every Ready."""
        self.mem.set_hard_state(hs)
        if sync or hs.term != self._saved.term or hs.vote != self._saved.vote:
            self.flush()

    def flush(self) -> None:
        hs = self.mem.hard_state
        if hs != self._saved:
            self.stable_store.save(hs.term, hs.vote, hs.commit)
            self._saved = hs

    def install_snapshot(self, snap: Snapshot, addresses: Mapping[int, str]) -> None:
        """Follower path: a snapshot from the leader replaces the whole log (blocking I/O)."""
        md = snap.metadata
        self.snapshot_store.create(md.index, md.term, conf_to_json(md.conf_state, addresses),
                                   snap.data)
        ls = self.log_store
        if ls.last_index() >= ls.first_index():
            ls.truncate_suffix(ls.first_index())
        ls.compact_prefix(md.index, term=md.term)
        self.mem.apply_snapshot(snap)

    # ---------------------------------------------------------------- local snapshots

    def persist_snapshot(self, index: RaftIndex, term: Term, conf: ConfState,
                         addresses: Mapping[int, str], data: bytes) -> None:
        """Executor-safe part of taking a snapshot: write it to the snapshot store."""
        self.snapshot_store.create(index, term, conf_to_json(conf, addresses), io.BytesIO(data))

    def record_snapshot(self, index: RaftIndex, conf: ConfState, data: bytes,
                        trailing_logs: int) -> bool:
        """Loop part: expose the snapshot to the core and compact both logs, keeping
        `trailing_logs` entries before `index`. False if a newer snapshot won meanwhile."""
        try:
            self.mem.create_snapshot(index, conf, data)
        except SnapshotOutOfDateError:
            return False
        upto = index - trailing_logs
        if upto >= self.mem.first_index():
            self.mem.compact(upto)
        if upto >= self.log_store.first_index():
            self.log_store.compact_prefix(upto)
        return True

    def close(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - closing after a store failure
            log.exception("saving hard state on close failed")
        for store in (self.log_store, self.stable_store, self.snapshot_store):
            try:
                store.close()
            except Exception:  # noqa: BLE001
                log.exception("closing raft store failed")
