"""RaftNode: the asyncio driver that turns the sans-I/O `RaftCore` into a `Replicator`.

::

       apply(data) ---------+        transport handler --> inbox       ticker (Clock) --> ticks
       verify_leader() -----+--> queues ---------------------+------------------------------+
       add_nonvoter/...  ---+                                v                              |
                                        _run(): wait for wake-up, _feed() the core (step inbox,
                                        tick, propose queued data, run queued ops), then
                                        while core.has_ready(): _handle_ready(core.ready())
                                                                 |
      _handle_ready(rd), THE ORDER (messages.Ready), in this one function:
        1. persist   snapshot (store + FSM.restore), entries (LogStore.append_async: group
                     commit), hard state (StableStore; term/vote at once, commit lazily)
        2. send      rd.messages -> transport (only after 1 is durable; a leader whose term and
                     vote are unchanged sends before its own fsync: it counts itself only
                     once advance() reports the entries durable)
        3. apply     committed entries -> FSM in order; resolve apply() futures by (index, term);
                     serve read_states; note leadership changes
        4. advance   core.advance(rd); maybe start a background snapshot

Rules:
- Only `_run` touches the core's inputs (step/tick/propose/...), and never between `ready()` and
  `advance()`. Everything else enqueues and sets `_wake`. While one Ready is being persisted,
  new proposals pile up and go into the next Ready together: that is the group commit.
- Raft errors are raised (`NotLeaderError(address)`, `LeadershipLostError`, `ShutdownError`,
  `NoLeaderError`); FSM outcomes are returned as values (STYLE P9).
- An exception inside the Ready loop is fatal: the node logs it, fails every waiter with
  `ShutdownError`, stops ticking and sending. It does not limp on with state it cannot trust.
- A proposal's future is keyed by (index, term): if the entry committed at that index has another
  term, the proposal was overwritten -> `LeadershipLostError`. Stepping down fails every pending
  proposal with `LeadershipLostError` (outcome unknown, as hashicorp/raft's ErrLeadershipLost).

Snapshots: after `snapshot_threshold` entries applied since the last snapshot (or on
`snapshot_now()`), `FSM.snapshot()` captures the tables on the loop (cheap), `persist()` and the
snapshot-store write run in the default executor, then the loop exposes the bytes to the core
(which ships them in chunks to followers) and compacts both logs, keeping `trailing_logs`.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import os
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import (
    LeadershipLostError,
    NoLeaderError,
    NotLeaderError,
    ShutdownError,
)
from lictor.common.fsutil import PRIVATE_FILE_MODE

from .core import Config, RaftCore
from .faults import FaultClock
from .faults import installed as _fault_hook
from .fsm import FSMProtocol
from .logstore import (
    LogStore,
    MemoryLogStore,
    MemorySnapshotStore,
    MemoryStableStore,
    SnapshotStore,
    StableStore,
)
from .messages import (
    ConfChange,
    ConfChangeType,
    EntryKind,
    Message,
    NodeID,
    ProposalDroppedError,
    RaftIndex,
    Ready,
    Role,
    Snapshot,
    SoftState,
)
from .messages import NotLeaderError as CoreNotLeaderError
from .node_storage import NodeStorage
from .transport import RaftTransportProtocol

__all__ = ["RaftNode", "RaftNodeConfig"]

log = logging.getLogger("lictor.raft")

_Result = tuple[int, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftNodeConfig:
    """How to run one Raft server.

    Timing: one tick lasts `tick_interval * raft_multiplier` seconds (Consul's
    `performance.raft_multiplier` scales every Raft timeout the same way). With the defaults a
    follower starts an election after 10-20 ticks without a leader (1-2 s) and the leader
    heartbeats every tick.
    """

    node_id: NodeID
    address: str
    """This server's Raft/RPC address (`host:port`), advertised to peers."""
    bootstrap: Mapping[NodeID, str] = field(default_factory=dict)
    """Voters (id -> address, including this node) of a brand-new cluster. Ignored when the
    data dir already holds state; empty for a node joining an existing cluster."""
    data_dir: str | os.PathLike[str] | None = None
    """Where the file stores live (`<data_dir>/raft/{log,stable,snapshots,peers.json}`). None:
    in-memory stores (dev mode, tests) unless stores are passed to `RaftNode` directly."""
    tick_interval: float = 0.1
    raft_multiplier: int = 1
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    snapshot_threshold: int = 16384
    """Entries applied since the last snapshot before taking a new one (Consul's
    `raft_snapshot_threshold` default, 16384)."""
    trailing_logs: int = 10240
    """Entries kept in the log before a snapshot's index (so slightly lagging followers catch up
    from the log rather than with a whole snapshot)."""
    snapshot_chunk_size: int = 1 << 20
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_committed_size_per_ready: int | None = 8 << 20
    snapshot_retain: int = 2
    seed: int | None = None
    """Seed of the core's election-jitter RNG (None: from os.urandom)."""
    verify_timeout: float | None = None
    """How long `verify_leader()` waits for a quorum (default: one max election timeout)."""

    @property
    def tick_seconds(self) -> float:
        return self.tick_interval * self.raft_multiplier

    @property
    def election_timeout(self) -> float:
        """The longest randomized election timeout, in seconds."""
        return 2 * self.election_ticks * self.tick_seconds


F = TypeVar("F", bound=FSMProtocol)


class RaftNode(Generic[F]):
    """A Raft server: implements `lictor.server.replication.Replicator` for a cluster. It
    replicates any state machine that satisfies `FSMProtocol` (`server/raft/fsm.py`)."""

    def __init__(
        self,
        config: RaftNodeConfig,
        fsm: F,
        transport: RaftTransportProtocol,
        *,
        log_store: LogStore | None = None,
        stable_store: StableStore | None = None,
        snapshot_store: SnapshotStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.id = config.node_id
        self.fsm = fsm
        self.transport = transport
        faults = _fault_hook()  # None unless a chaos test enabled the test-only hook
        if faults is not None and (clock is None or isinstance(clock, SystemClock)):
            clock = FaultClock(faults)  # the real clock, shifted by the hook (a test's stays)
        self._clock: Clock = clock or SystemClock()
        self._fsync_seam: dict[str, Any] = {"fsync": faults.fsync} if faults else {}
        self._raft_dir: Path | None = None
        if config.data_dir is not None:
            self._raft_dir = Path(config.data_dir) / "raft"
        log_store, stable_store, snapshot_store = self._open_stores(
            log_store, stable_store, snapshot_store
        )
        self.storage = NodeStorage(log_store, stable_store, snapshot_store)
        self.core: RaftCore | None = None

        # inputs, drained by _feed()
        self._wake = asyncio.Event()
        self._inbox: deque[Message] = deque()
        self._ticks = 0
        self._proposals: deque[tuple[bytes, asyncio.Future[_Result]]] = deque()
        self._ops: deque[Callable[[RaftCore], None]] = deque()
        # waiters
        self._pending: dict[RaftIndex, tuple[int, asyncio.Future[_Result]]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._apply_waiters: list[tuple[RaftIndex, asyncio.Future[int]]] = []
        self._read_ids = itertools.count(1)
        self._subscribers: list[asyncio.Queue[bool]] = []
        self._listeners: list[Callable[[bool], None]] = []
        # state
        self._applied: RaftIndex = 0
        self._snap_index: RaftIndex = 0
        self._snapshot_task: asyncio.Task[RaftIndex] | None = None
        self._snap_lock = asyncio.Lock()
        self._role = Role.FOLLOWER
        self._persisted_tv: tuple[int, Any] | None = None  # (term, vote) last handed to storage
        self._leader_id: NodeID | None = None
        self._contact: dict[NodeID, float] = {}
        self._started_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._failed: BaseException | None = None
        self.metrics: dict[str, int] = {"readies": 0, "entries_persisted": 0, "appends": 0, "sent_before_own_fsync": 0,
                                        "snapshots_taken": 0, "snapshots_installed": 0}

    # ================================================================ lifecycle

    def _open_stores(
        self, ls: LogStore | None, st: StableStore | None, ss: SnapshotStore | None
    ) -> tuple[LogStore, StableStore, SnapshotStore]:
        if self._raft_dir is not None:
            from .filestore import FileLogStore, FileSnapshotStore, FileStableStore

            d = self._raft_dir
            kw = self._fsync_seam
            ls = ls or FileLogStore(d / "log", **kw)
            st = st or FileStableStore(d / "stable", **kw)
            ss = ss or FileSnapshotStore(d / "snapshots", retain=self.config.snapshot_retain, **kw)
        return (ls or MemoryLogStore(), st or MemoryStableStore(),
                ss or MemorySnapshotStore(retain=self.config.snapshot_retain))

    async def start(self) -> None:
        """Rebuild state from the stores, restore the FSM, start the transport and the loops."""
        cfg = self.config
        snap = self.storage.load()
        if snap is not None:
            self._restore_fsm(snap)
        for pid, addr in self._initial_peers().items():
            self.transport.set_peer(pid, addr)
        self._save_peers()
        rng = random.Random(cfg.seed if cfg.seed is not None else os.urandom(8))
        self.core = RaftCore(
            Config(
                id=self.id, rng=rng, voters=tuple(sorted(cfg.bootstrap)),
                election_ticks=cfg.election_ticks, heartbeat_ticks=cfg.heartbeat_ticks,
                max_size_per_msg=cfg.max_size_per_msg, max_inflight_msgs=cfg.max_inflight_msgs,
                max_committed_size_per_ready=cfg.max_committed_size_per_ready,
                snapshot_chunk_size=cfg.snapshot_chunk_size,
            ),
            self.storage.mem,
        )
        self._applied = self.core.log.applied
        self._snap_index = self.storage.mem.snapshot().metadata.index
        self._started_at = self._clock.monotonic()
        self.transport.set_handler(self._on_messages)
        self.transport.set_unreachable_handler(self._on_unreachable)
        await self.transport.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name=f"raft-{self.id}-ready"),
            loop.create_task(self._ticker(), name=f"raft-{self.id}-ticker"),
        ]
        self._wake.set()
        log.info("raft node %d started: applied %d, last index %d, term %d", self.id,
                 self._applied, self.core.log.last_index(), self.core.term)

    async def close(self) -> None:
        """Stop ticking and the Ready loop, fail every waiter (ShutdownError), close the
        transport and the stores. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stop_tasks()
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        self._fail_all(ShutdownError("raft node is shutting down"))
        await self.transport.close()
        self.storage.close()
        self._notify_leadership(False)

    async def _stop_tasks(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _fatal(self, exc: BaseException) -> None:
        log.critical("raft node %d stopped by a fatal error: %r", self.id, exc, exc_info=exc)
        self._failed = exc
        err = ShutdownError(f"raft node stopped after a fatal error: {exc!r}")
        err.__cause__ = exc
        self._fail_all(err)
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        asyncio.get_running_loop().create_task(self.transport.close())
        self._notify_leadership(False)

    @property
    def failed(self) -> BaseException | None:
        """The fatal error that stopped the Ready loop, if any."""
        return self._failed

    # ================================================================ Replicator API

    async def apply(self, data: bytes) -> _Result:
        """Replicate `data`; return (index, FSM outcome) once committed and applied here."""
        self._check_open()
        if self._role is not Role.LEADER:
            raise NotLeaderError(self.leader())
        fut: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._proposals.append((data, fut))
        self._wake.set()
        return await fut

    def campaign(self) -> None:
        """Start an election now (with a pre-vote round) unless this node leads already. Always
        safe; used right after a fresh bootstrap so the cluster need not wait out a whole
        election timeout before its first leader."""
        self._check_open()
        self._ops.append(lambda core: core.campaign())
        self._wake.set()

    def is_leader(self) -> bool:
        return self._usable() and self._role is Role.LEADER

    def leader(self) -> str | None:
        if not self._usable() or self._leader_id is None:
            return None
        return self.transport.peer_address(self._leader_id)

    def leader_id(self) -> NodeID | None:
        return self._leader_id if self._usable() else None

    def last_contact(self) -> float:
        """Seconds since this node last heard from the leader (0 on the leader; time since start
        when it never heard from one)."""
        if self._role is Role.LEADER:
            return 0.0
        now = self._clock.monotonic()
        seen = self._contact.get(self._leader_id) if self._leader_id is not None else None
        return now - (seen if seen is not None else self._started_at)

    async def verify_leader(self) -> None:
        """Confirm leadership with a quorum (ReadIndex) and wait until this node has applied
        the read index: a linearizable read may then be served from the local state store."""
        self._check_open()
        if self._role is not Role.LEADER:
            raise self._no_leader_error()
        loop = asyncio.get_running_loop()
        ctx = b"%d:%d" % (self.id, next(self._read_ids))
        fut: asyncio.Future[int] = loop.create_future()
        self._reads[ctx] = fut

        def op(core: RaftCore) -> None:
            if fut.done():
                return
            try:
                core.read_index(ctx)
            except CoreNotLeaderError:
                fut.set_exception(self._no_leader_error())

        self._ops.append(op)
        self._wake.set()
        timeout = self.config.verify_timeout or self.config.election_timeout
        try:
            if not await self._within(fut, timeout):
                raise self._no_leader_error() from None
            fut.result()
        finally:
            self._reads.pop(ctx, None)

    async def _within(self, fut: asyncio.Future[Any], timeout: float) -> bool:
        """Wait for `fut` at most `timeout` seconds of this node's clock; False on timeout."""
        timer = asyncio.ensure_future(self._clock.sleep(timeout))
        try:
            await asyncio.wait((fut, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return fut.done()

    def peers(self) -> list[str]:
        """Addresses of the voters (Consul's Status.Peers), this node included."""
        if self.core is None:
            return []
        out = []
        for pid in sorted(self.core.voters):
            addr = self.transport.peer_address(pid)
            if addr is not None:
                out.append(addr)
        return out

    def stats(self) -> dict[str, Any]:
        core = self._core()
        return {
            "id": self.id,
            "role": self._role.value,
            "term": core.term,
            "leader": self._leader_id,
            "commit_index": core.log.committed,
            "applied_index": self._applied,
            "last_index": core.log.last_index(),
            "first_index": self.storage.mem.first_index(),
            "last_snapshot_index": self._snap_index,
            "last_contact": self.last_contact(),
            "num_peers": len(core.voters) - (1 if self.id in core.voters else 0),
            "failed": repr(self._failed) if self._failed else None,
            **self.metrics,
        }

    @property
    def applied_index(self) -> RaftIndex:
        return self._applied

    @property
    def started(self) -> bool:
        return self.core is not None

    def has_state(self) -> bool:
        """Whether the stores hold any Raft state (a term, a log entry or a snapshot): such a
        server restarts with its data and ignores any bootstrap configuration."""
        st = self.storage
        if st.log_store.last_index() > 0:
            return True
        latest = st.snapshot_store.latest()
        if latest is not None:
            latest[1].close()
            return True
        return st.stable_store.load().term > 0

    def peer_last_contact(self, node: NodeID) -> float | None:
        """Seconds since a message from `node` last arrived here (None: never since start)."""
        seen = self._contact.get(node)
        return None if seen is None else self._clock.monotonic() - seen

    def members(self) -> tuple[frozenset[NodeID], frozenset[NodeID]]:
        """(voters, learners) of the current configuration; empty before `start`."""
        if self.core is None:
            return frozenset(), frozenset()
        cs = self.core.conf_state()
        return frozenset(cs.voters), frozenset(cs.learners)

    def term(self) -> int:
        return self.core.term if self.core is not None else 0

    def last_index(self) -> RaftIndex:
        return self.core.log.last_index() if self.core is not None else 0

    def commit_index(self) -> RaftIndex:
        return self.core.log.committed if self.core is not None else 0

    # ---------------------------------------------------------------- leadership events

    def add_leadership_listener(self, callback: Callable[[bool], None]) -> None:
        """`callback(True)` when this node becomes leader, `callback(False)` when it stops
        (or closes). Called from the Ready loop: it must not block."""
        self._listeners.append(callback)

    async def leadership_changes(self) -> AsyncIterator[bool]:
        """Async iterator of leadership transitions (True: became leader). Yields the current
        state first. Ends when the node closes."""
        q: asyncio.Queue[bool] = asyncio.Queue()
        self._subscribers.append(q)
        try:
            yield self.is_leader()
            while not self._closed or not q.empty():
                v = await q.get()
                yield v
                if self._closed and q.empty():
                    return
        finally:
            self._subscribers.remove(q)

    def _notify_leadership(self, is_leader: bool) -> None:
        for q in self._subscribers:
            q.put_nowait(is_leader)
        for cb in list(self._listeners):
            try:
                cb(is_leader)
            except Exception:  # noqa: BLE001 - a listener must not break the Ready loop
                log.exception("leadership listener failed")

    # ---------------------------------------------------------------- membership

    def set_peer(self, node: NodeID, address: str) -> None:
        """Record a peer's address (from gossip, join, or the operator). Persisted."""
        if node == self.id:
            return
        if self.transport.peer_address(node) != address:
            self.transport.set_peer(node, address)
            self._save_peers()

    def configuration(self) -> list[dict[str, Any]]:
        """Members as Consul's operator API lists them: id, address, voter, leader."""
        core = self._core()
        cs = core.conf_state()
        return [
            {"id": pid, "address": self.transport.peer_address(pid),
             "voter": pid in cs.voters, "leader": pid == self._leader_id}
            for pid in sorted(cs.voters | cs.learners)
        ]

    def progress(self) -> dict[NodeID, int]:
        """On the leader: each member's match index (for autopilot's "caught up" decision)."""
        core = self._core()
        return {pid: p.match for pid, p in core.status().progress.items()}

    async def add_nonvoter(self, node: NodeID, address: str, *, timeout: float | None = None) -> None:
        """Add `node` as a learner (it receives the log but does not vote). Idempotent."""
        self.set_peer(node, address)
        cs = self._core().conf_state()
        if node in cs.voters or node in cs.learners:
            return
        await self._conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node), timeout)

    async def promote(self, node: NodeID, *, timeout: float | None = None) -> None:
        """Make learner `node` a voter. Idempotent for a voter."""
        if node in self._core().conf_state().voters:
            return
        await self._conf_change(ConfChange(ConfChangeType.PROMOTE, node), timeout)

    async def remove_server(self, node: NodeID, *, timeout: float | None = None) -> None:
        """Remove `node` from the configuration. Idempotent for a non-member."""
        cs = self._core().conf_state()
        if node not in cs.voters and node not in cs.learners:
            return
        await self._conf_change(ConfChange(ConfChangeType.REMOVE, node), timeout)

    async def _conf_change(self, cc: ConfChange, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = self._clock.monotonic() + (timeout or 5 * self.config.election_timeout)
        while True:
            self._check_open()
            if self._role is not Role.LEADER:
                raise NotLeaderError(self.leader())
            fut: asyncio.Future[_Result] = loop.create_future()

            def op(core: RaftCore, fut: asyncio.Future[_Result] = fut) -> None:
                if fut.done():
                    return
                try:
                    idx = core.propose_conf_change(cc)
                except CoreNotLeaderError as exc:
                    fut.set_exception(NotLeaderError(self._address(exc.leader)))
                except (ProposalDroppedError, ValueError) as exc:
                    fut.set_exception(exc)
                else:
                    self._pending[idx] = (core.term, fut)

            self._ops.append(op)
            self._wake.set()
            try:
                await fut
                return
            except ProposalDroppedError:
                # Another change is pending (or the new leader has not applied its log yet).
                if self._clock.monotonic() >= deadline:
                    raise LeadershipLostError(f"conf change {cc} kept being dropped") from None
                await self._clock.sleep(self.config.tick_seconds)

    async def transfer_leadership(self, target: NodeID | None = None) -> NodeID:
        """Hand leadership to `target` (default: the most caught-up voter); returns the new
        leader's id. Raises LeadershipLostError if no transfer happened within an election
        timeout (the old leader then resumes accepting proposals)."""
        self._check_open()
        core = self._core()
        if self._role is not Role.LEADER:
            raise NotLeaderError(self.leader())
        if target is None:
            prog = core.status().progress
            cands = [(p.match, pid) for pid, p in prog.items()
                     if pid != self.id and pid in core.voters]
            if not cands:
                raise ValueError("no other voter to transfer leadership to")
            target = max(cands)[1]
        loop = asyncio.get_running_loop()
        err: asyncio.Future[None] = loop.create_future()

        def op(core: RaftCore) -> None:
            try:
                core.transfer_leadership(target)
                err.set_result(None)
            except (CoreNotLeaderError, ValueError) as exc:
                err.set_exception(exc if isinstance(exc, ValueError)
                                  else NotLeaderError(self.leader()))

        self._ops.append(op)
        self._wake.set()
        await err
        deadline = self._clock.monotonic() + self.config.election_timeout
        while self._clock.monotonic() < deadline:
            self._check_open()
            if self._leader_id is not None and self._leader_id != self.id:
                return self._leader_id
            await self._clock.sleep(self.config.tick_seconds)
        raise LeadershipLostError(f"leadership transfer to {target} timed out")

    # ---------------------------------------------------------------- snapshots

    async def snapshot_now(self) -> RaftIndex:
        """Take a snapshot now (waits for one already running); returns its index."""
        self._check_open()
        if self._snapshot_task is not None:
            await asyncio.shield(self._snapshot_task)
        if self._applied <= self._snap_index:
            return self._snap_index
        self._snapshot_task = asyncio.get_running_loop().create_task(self._take_snapshot())
        return await asyncio.shield(self._snapshot_task)

    async def restore_user_snapshot(self, stream: IO[bytes]) -> RaftIndex:
        """Hook for `PUT /v1/snapshot` (operator restore): make every server's FSM hold the
        state in `stream` (an FSM snapshot stream, as `FSMSnapshot.persist` writes it).

        How: the stream is first loaded into a scratch FSM off the loop (garbage is refused with
        `ValueError` before anything is replicated), then proposed as one RESTORE command. Every
        server applies that entry at the same index by swapping its store for the restored one
        (`FSM.apply` -> `FSM.restore`, which abandons the old store so parked queries wake), so
        the cluster agrees on the result exactly as on any other write, and later Raft
        snapshots/compaction carry it. Unlike hashicorp/raft's `Restore` the term is not bumped
        and the log is not rewritten: entries before the restore stay and are simply superseded.
        The state travels in a single log entry, so its size is bounded by the RPC frame limit
        (callers cap it; see `lictor.server.snapshot_archive.MAX_STATE_BYTES`).
        Returns the index of the RESTORE entry. Raises NotLeaderError on a follower."""
        self._check_open()
        if self._role is not Role.LEADER:
            raise NotLeaderError(self.leader())
        data = stream.read()

        await asyncio.get_running_loop().run_in_executor(None, self.fsm.check_snapshot, data)
        import time

        index, _ = await self.apply(self.fsm.restore_command(data, time.time()))
        log.info("raft node %d restored a user snapshot (%d bytes) at index %d", self.id,
                 len(data), index)
        return index

    def _maybe_snapshot(self) -> None:
        if (self._snapshot_task is None and not self._closed
                and self._applied - self._snap_index >= self.config.snapshot_threshold):
            self._snapshot_task = asyncio.get_running_loop().create_task(self._take_snapshot())

    async def _take_snapshot(self) -> RaftIndex:
        try:
            async with self._snap_lock:
                core = self._core()
                index = self._applied
                if index <= self._snap_index:
                    return self._snap_index
                # Capture FSM, term and membership together, synchronously: they must agree on
                # `index` (no Ready runs between these lines).
                term = self.storage.mem.term(index)
                conf = core.conf_state()
                fsnap = self.fsm.snapshot()
                addrs = self._address_book()

                def write() -> bytes:
                    buf = io.BytesIO()
                    fsnap.persist(buf)
                    data = buf.getvalue()
                    self.storage.persist_snapshot(index, term, conf, addrs, data)
                    return data

                data = await asyncio.get_running_loop().run_in_executor(None, write)
                if self._closed:
                    return index
                if self.storage.record_snapshot(index, conf, data, self.config.trailing_logs):
                    self._snap_index = max(self._snap_index, index)
                    self.metrics["snapshots_taken"] += 1
                    log.info("raft node %d took snapshot at index %d (first index now %d)",
                             self.id, index, self.storage.mem.first_index())
                return index
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed snapshot is retried next threshold
            # Not fatal: the log simply is not compacted. (A failed *log* write is fatal.)
            log.error("raft node %d failed to take a snapshot: %r", self.id, exc)
            return self._snap_index
        finally:
            if asyncio.current_task() is self._snapshot_task:
                self._snapshot_task = None

    # ================================================================ inputs

    def _on_messages(self, msgs: list[Message]) -> None:
        if self._closed or self._failed is not None:
            return
        now = self._clock.monotonic()
        for m in msgs:
            self._contact[m.src] = now
        self._inbox.extend(msgs)
        self._wake.set()

    def _on_unreachable(self, peer: NodeID, snapshot_failed: bool) -> None:
        if self._closed or self._failed is not None:
            return

        def op(core: RaftCore) -> None:
            core.report_unreachable(peer)
            if snapshot_failed:
                core.report_snapshot(peer, False)

        self._ops.append(op)
        self._wake.set()

    async def _ticker(self) -> None:
        interval = self.config.tick_seconds
        while True:
            await self._clock.sleep(interval)
            self._ticks += 1
            self._wake.set()

    # ================================================================ the Ready loop

    async def _run(self) -> None:
        core = self._core()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._feed(core)
                while core.has_ready():
                    await self._handle_ready(core, core.ready())
                    self._feed(core)  # what arrived meanwhile goes into the next Ready
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - fatal by design (module rules)
            self._fatal(exc)

    def _feed(self, core: RaftCore) -> None:
        """Hand everything queued to the core. Only called outside ready()/advance()."""
        inbox = self._inbox
        while inbox:
            core.step(inbox.popleft())
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            core.tick()
        ops = self._ops
        while ops:
            ops.popleft()(core)
        props = self._proposals
        if not props:
            return
        batch = [(d, f) for d, f in props if not f.done()]  # skip callers that gave up
        props.clear()
        if not batch:
            return
        try:
            first = core.propose_many([d for d, _ in batch])
        except CoreNotLeaderError as exc:
            addr = self._address(exc.leader)
            for _, fut in batch:
                fut.set_exception(NotLeaderError(addr))
        except ProposalDroppedError as exc:
            for _, fut in batch:
                fut.set_exception(LeadershipLostError(str(exc)))
        else:
            term = core.term
            pending = self._pending
            for k, (_, fut) in enumerate(batch, first):
                pending[k] = (term, fut)

    async def _handle_ready(self, core: RaftCore, rd: Ready) -> None:
        """Carry out one Ready: persist -> send -> apply -> advance (see the module doc)."""
        self.metrics["readies"] += 1
        # 1. persist
        if rd.snapshot is not None:
            await self._install_snapshot(rd.snapshot)
        appended = None
        # A leader that stays leader (same term and vote as already persisted) may send while its
        # own write is in flight: the core counts its copy towards the quorum only after
        # advance(), i.e. once it is durable, so nothing commits on a write that might be lost.
        # Votes, acks and anything from a new term still wait for the fsync.
        hs = rd.hard_state
        early = (bool(rd.messages) and rd.snapshot is None and core.role is Role.LEADER
                 and self._persisted_tv is not None
                 and (hs is None or (hs.term, hs.vote) == self._persisted_tv))
        if rd.entries:
            appended = self.storage.append(rd.entries)
        if hs is not None:
            self.storage.set_hard_state(hs, sync=False)
            self._persisted_tv = (hs.term, hs.vote)
        if early:
            self.transport.send(rd.messages)
            self.metrics["sent_before_own_fsync"] += 1
        if appended is not None:
            await appended
            self.storage.appended(rd.entries)
            self.metrics["appends"] += 1
            self.metrics["entries_persisted"] += len(rd.entries)
        # 2. send
        if rd.messages and not early:
            self.transport.send(rd.messages)
        # 3. apply
        if rd.committed_entries:
            self._apply_entries(rd)
        for rs in rd.read_states:
            fut = self._reads.get(rs.request_ctx)
            if fut is not None and not fut.done():
                if self._applied >= rs.index:
                    fut.set_result(rs.index)
                else:
                    self._apply_waiters.append((rs.index, fut))
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        # 4. advance
        core.advance(rd)
        self._maybe_snapshot()

    def _apply_entries(self, rd: Ready) -> None:
        fsm = self.fsm
        pending = self._pending
        for e in rd.committed_entries:
            result: Any = None
            if e.kind is EntryKind.NORMAL and e.data:
                result = fsm.apply(e.index, e.data)
            self._applied = e.index
            if pending:
                p = pending.pop(e.index, None)
                if p is not None:
                    term, fut = p
                    if fut.done():
                        pass
                    elif term == e.term:
                        fut.set_result((e.index, result))
                    else:
                        fut.set_exception(LeadershipLostError(
                            f"entry {e.index} was overwritten (proposed in term {term}, "
                            f"committed in term {e.term})"))
        if self._apply_waiters:
            keep = []
            for idx, waiter in self._apply_waiters:
                if waiter.done():
                    continue
                if idx <= self._applied:
                    waiter.set_result(idx)
                else:
                    keep.append((idx, waiter))
            self._apply_waiters = keep

    def _on_soft_state(self, ss: SoftState) -> None:
        was_leader = self._role is Role.LEADER
        self._role = ss.role
        if ss.leader != self._leader_id:
            self._leader_id = ss.leader
            if ss.leader is not None:
                # Count the leader as "heard from" now, so last_contact starts from zero.
                self._contact[ss.leader] = self._clock.monotonic()
        is_leader = ss.role is Role.LEADER
        if was_leader and not is_leader:
            log.info("raft node %d lost leadership (leader now %s)", self.id, ss.leader)
            self._fail_pending(LeadershipLostError("leadership lost"))
            self._fail_reads()
            self._notify_leadership(False)
        elif is_leader and not was_leader:
            log.info("raft node %d became leader at term %d", self.id, self._core().term)
            self._notify_leadership(True)

    async def _install_snapshot(self, snap: Snapshot) -> None:
        """Follower path: persist a snapshot from the leader, then restore the FSM from it."""
        addrs = self._address_book()
        async with self._snap_lock:
            await asyncio.get_running_loop().run_in_executor(
                None, self.storage.install_snapshot, snap, addrs
            )
        self._restore_fsm(snap)
        self._snap_index = max(self._snap_index, snap.metadata.index)
        self.metrics["snapshots_installed"] += 1
        for idx in [i for i in self._pending if i <= snap.metadata.index]:
            _, fut = self._pending.pop(idx)
            if not fut.done():
                fut.set_exception(LeadershipLostError("log replaced by a snapshot"))
        log.info("raft node %d installed snapshot at index %d", self.id, snap.metadata.index)

    def _restore_fsm(self, snap: Snapshot) -> None:
        self.fsm.restore(io.BytesIO(snap.data))
        self.fsm.last_applied = snap.metadata.index
        self._applied = snap.metadata.index

    # ================================================================ helpers

    def _core(self) -> RaftCore:
        if self.core is None:
            raise ShutdownError("raft node is not started")
        return self.core

    def _usable(self) -> bool:
        return not self._closed and self._failed is None and self.core is not None

    def _check_open(self) -> None:
        if self._closed or self._failed is not None:
            raise ShutdownError("raft node is shut down")
        if self.core is None:
            # a server waiting for bootstrap_expect: up, but no cluster (leader) exists yet.
            # Consul answers this "No cluster leader", which callers already hold and retry on.
            raise NoLeaderError()

    def _address(self, node: NodeID | None) -> str | None:
        return None if node is None else self.transport.peer_address(node)

    def _no_leader_error(self) -> Exception:
        addr = self.leader()
        if addr is not None and self._leader_id != self.id:
            return NotLeaderError(addr)
        return NoLeaderError()

    def _address_book(self) -> dict[NodeID, str]:
        book = self.transport.peers()
        book[self.id] = self.config.address
        return book

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for _, fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
        while self._proposals:
            _, fut = self._proposals.popleft()
            if not fut.done():
                fut.set_exception(exc)

    def _fail_reads(self) -> None:
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(self._no_leader_error())
        for _, fut in self._apply_waiters:
            if not fut.done():
                fut.set_exception(self._no_leader_error())
        self._apply_waiters = []

    def _fail_all(self, exc: Exception) -> None:
        self._fail_pending(exc)
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        for _, fut in self._apply_waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._apply_waiters = []
        self._ops.clear()
        self._inbox.clear()

    def _initial_peers(self) -> dict[NodeID, str]:
        peers: dict[NodeID, str] = {}
        peers.update(self.storage.addresses)
        if self._raft_dir is not None:
            try:
                raw = json.loads((self._raft_dir / "peers.json").read_text())
                peers.update({int(k): str(v) for k, v in raw.items()})
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable peers.json: %s", exc)
        peers.update(self.config.bootstrap)
        peers.pop(self.id, None)
        return peers

    def _save_peers(self) -> None:
        if self._raft_dir is None:
            return
        path = self._raft_dir / "peers.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)  # owner-only, as the log
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({str(k): v for k, v in self.transport.peers().items()}))
        os.replace(tmp, path)

