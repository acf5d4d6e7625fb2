"""RaftCore: the sans-I/O Raft state machine (etcd's raft.go + rawnode.go, in one small shape).

Rules of this module:
- everything that changes the Raft role lives here, in the `_become_*` functions; each logs one
  fixed phrase ("node 1 became candidate at term 4") and asserts that the transition is legal;
- each role handles messages in one function (`_step_leader`, `_step_candidate`,
  `_step_follower`) and ticks in one (`_tick_heartbeat`, `_tick_election`);
- inputs are `tick()`, `step()`, `propose*()`, `campaign()`, `transfer_leadership()`,
  `read_index()`, `report_*()`; outputs come only through `ready()`; nothing here does I/O,
  reads a clock or uses module-level randomness. Logging at DEBUG is the only side effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random  # only the type of the injected rng: no module-level randomness here

from . import quorum
from .log import RaftLog
from .messages import (
    CAMPAIGN_TRANSFER,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogCompactedError,
    Message,
    MessageType,
    NodeID,
    NotLeaderError,
    ProposalDroppedError,
    RaftIndex,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    Term,
)
from .progress import Progress, ProgressState
from .quorum import VoteResult
from .storage import StorageProtocol

__all__ = ["Config", "RaftCore", "Status", "ProgressStatus"]

log = logging.getLogger("lictor.raft")

MT = MessageType


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Construction parameters of a RaftCore. Times are in ticks; the driver defines a tick.

    `voters`/`learners` bootstrap a brand-new cluster (storage empty): the core writes one
    committed ADD_* conf-change entry per member at term 1, as etcd's Bootstrap does, so nodes
    added later learn the initial membership from the log. A node joining an existing cluster
    (and any restarting node) passes no voters: its membership comes from storage and the log.
    """

    id: NodeID
    rng: random.Random = field(compare=False, repr=False)
    voters: tuple[NodeID, ...] = ()
    learners: tuple[NodeID, ...] = ()
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_committed_size_per_ready: int | None = None
    snapshot_chunk_size: int = 1 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    applied: RaftIndex = 0
    """Index the FSM has already applied on restart (0: replay from the snapshot)."""
    record_events: bool = False
    """Keep the transition phrases in `RaftCore.events` (for transcripts and tests)."""

    def validate(self) -> None:
        if self.id <= 0:
            raise ValueError("id must be positive")
        if self.heartbeat_ticks <= 0:
            raise ValueError("heartbeat_ticks must be positive")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must be greater than heartbeat_ticks")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")
        if self.snapshot_chunk_size <= 0:
            raise ValueError("snapshot_chunk_size must be positive")


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    match: RaftIndex
    next: RaftIndex
    state: ProgressState
    recent_active: bool
    is_learner: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the core's state (for the driver, autopilot and tests)."""

    id: NodeID
    role: Role
    term: Term
    vote: NodeID | None
    leader: NodeID | None
    commit: RaftIndex
    applied: RaftIndex
    last_index: RaftIndex
    conf_state: ConfState
    lead_transferee: NodeID | None
    progress: Mapping[NodeID, ProgressStatus]
    """Per-peer replication progress; filled on the leader only."""


@dataclass(slots=True)
class _ReadRequest:
    index: RaftIndex
    src: NodeID
    acks: set[NodeID]


@dataclass(slots=True)
class _OutgoingSnapshot:
    snapshot: Snapshot
    acked: int = 0  # bytes the follower confirmed


class RaftCore:
    """A Raft node as a deterministic state machine. See the package docstring for the flow."""

    def __init__(self, config: Config, storage: StorageProtocol) -> None:
        config.validate()
        self.config = config
        self.id: NodeID = config.id
        self._rng = config.rng
        self.log = RaftLog(storage)
        self.events: list[str] | None = [] if config.record_events else None

        self.term: Term = 0
        self.vote: NodeID | None = None
        self.lead: NodeID | None = None
        self.role = Role.FOLLOWER
        self.voters: set[NodeID] = set()
        self.learners: set[NodeID] = set()
        self.prs: dict[NodeID, Progress] = {}
        self.votes: dict[NodeID, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []

        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_ticks
        self.lead_transferee: NodeID | None = None
        self.pending_conf_index: RaftIndex = 0
        self._reads: dict[bytes, _ReadRequest] = {}
        self._read_queue: list[bytes] = []
        self._pending_reads: list[tuple[NodeID, bytes]] = []  # waiting for a current-term commit
        self._snap_out: dict[NodeID, _OutgoingSnapshot] = {}
        self._snap_in: tuple[SnapshotMetadata, bytearray] | None = None

        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        hs, cs = storage.initial_state()
        bootstrap = storage.last_index() == 0 and hs.term == 0 and (config.voters or config.learners)
        self._set_conf(cs)
        if hs != HardState():
            self._load_hard_state(hs)
        if config.applied > 0:
            self.log.applied_to(config.applied)
        self._prev_hard = HardState(term=self.term, vote=self.vote, commit=self.log.committed)
        self._become_follower(self.term, None)
        if bootstrap:
            self._bootstrap(config.voters, config.learners)
        self._prev_soft = SoftState(leader=self.lead, role=self.role)
        self._outstanding: Ready | None = None

    # ================================================================== public API: inputs

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._tick()

    def step(self, m: Message) -> None:
        """Feed one message received from a peer. Messages addressed elsewhere are ignored."""
        if m.dst != self.id:
            return
        if m.term == 0:
            pass  # READ_INDEX forwarded from a follower: term-less, like etcd's local messages
        elif m.term > self.term:
            if m.type is MT.VOTE or m.type is MT.PRE_VOTE:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.config.check_quorum
                    and self.lead is not None
                    and self.election_elapsed < self.config.election_ticks
                )
                if not force and in_lease:
                    # We heard from a live leader recently: a rejoining node must not disrupt it.
                    return
            if m.type is MT.PRE_VOTE:
                pass  # never change term for a pre-vote
            elif m.type is MT.PRE_VOTE_RESP and not m.reject:
                pass  # our term is bumped when the pre-vote is won
            elif m.type is MT.APPEND or m.type is MT.HEARTBEAT or m.type is MT.SNAPSHOT:
                self._become_follower(m.term, m.src)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if (self.config.check_quorum or self.config.pre_vote) and (
                m.type is MT.HEARTBEAT or m.type is MT.APPEND
            ):
                # A stale leader (e.g. behind a partition) learns our term and steps down.
                self._send(MT.APPEND_RESP, m.src)
            elif m.type is MT.PRE_VOTE:
                self._send(MT.PRE_VOTE_RESP, m.src, term=self.term, reject=True)
            return

        if m.type is MT.VOTE or m.type is MT.PRE_VOTE:
            self._handle_vote_request(m)
        else:
            self._step(m)

    def propose(self, data: bytes) -> RaftIndex:
        """Append `data` as a NORMAL entry; returns its index (commit is reported via Ready).

        Raises NotLeaderError (with the known leader) or ProposalDroppedError during a transfer.
        """
        return self._propose_entry(data, EntryKind.NORMAL)

    def propose_many(self, datas: list[bytes]) -> RaftIndex:
        """Append every item of `datas` as NORMAL entries (indexes first, first+1, ...) and
        broadcast once; returns the first index. Same outcome as calling `propose` for each in
        order, with one AppendEntries per peer instead of one per entry (the driver's group
        commit hands a whole batch here). Raises like `propose`, before appending anything."""
        if not datas:
            raise ValueError("nothing to propose")
        self._require_leader()
        if self.lead_transferee is not None:
            raise ProposalDroppedError(f"leadership transfer to {self.lead_transferee} in progress")
        if self.id not in self.prs:
            raise ProposalDroppedError("this leader has been removed from the configuration")
        first = self.log.last_index() + 1
        term = self.term
        normal = EntryKind.NORMAL
        self._append_entries([Entry(term, first + k, d, normal) for k, d in enumerate(datas)])
        self._bcast_append()
        return first

    def propose_conf_change(self, cc: ConfChange) -> RaftIndex:
        """Propose a single-server membership change; it takes effect when applied.

        Only one may be pending (proposed but not applied): otherwise ProposalDroppedError.
        Invalid changes (promote a non-learner, remove the last voter, ...) raise ValueError.
        """
        self._require_leader()
        if self.pending_conf_index > self.log.applied:
            raise ProposalDroppedError(
                f"conf change pending at index {self.pending_conf_index} (applied {self.log.applied})"
            )
        self._validate_conf_change(cc)
        index = self._propose_entry(cc.encode(), EntryKind.CONF_CHANGE)
        self.pending_conf_index = index
        return index

    def campaign(self) -> None:
        """Start an election now (with a pre-vote round if enabled). No-op for non-voters."""
        if self.role is Role.LEADER:
            return
        self._hup(transfer=False)

    def transfer_leadership(self, target: NodeID) -> None:
        """Hand leadership to voter `target` once it has caught up (sends TimeoutNow).

        Proposals are refused until the transfer ends; it is aborted after an election timeout.
        """
        self._require_leader()
        if target == self.id:
            return
        if target not in self.voters:
            raise ValueError(f"transfer target {target} is not a voter")
        if self.lead_transferee == target:
            return
        self._abort_transfer()
        self.election_elapsed = 0
        self.lead_transferee = target
        if self.prs[target].match == self.log.last_index():
            self._send(MT.TIMEOUT_NOW, target)
        else:
            self._maybe_send_append(target)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read; answered as a ReadState(index, ctx) in a later Ready.

        On the leader it waits until an entry of the current term is committed, then confirms
        leadership with a heartbeat round to a quorum. A follower forwards it to its leader.
        Raises NotLeaderError(None) if no leader is known. `ctx` must be unique per request.
        """
        if self.role is Role.LEADER:
            self._leader_read_index(self.id, ctx)
        elif self.lead is not None:
            self._send(MT.READ_INDEX, self.lead, term=0, context=ctx)
        else:
            raise NotLeaderError(None)

    def report_unreachable(self, peer: NodeID) -> None:
        """The transport failed to deliver to `peer`: stop pipelining to it (probe instead)."""
        pr = self.prs.get(peer)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, peer: NodeID, ok: bool) -> None:
        """The snapshot transfer to `peer` finished (ok) or failed; resume probing after it."""
        pr = self.prs.get(peer)
        if self.role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        self._snap_out.pop(peer, None)
        pr.become_probe()
        pr.probe_sent = True  # wait for the next heartbeat response before probing

    # ================================================================== public API: outputs

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        if self.msgs or self.read_states:
            return True
        if self.log.unstable.entries or self.log.unstable.snapshot is not None:
            return True
        if self.log.has_next_committed_entries():
            return True
        if self._hard_state() != self._prev_hard:
            return True
        return SoftState(leader=self.lead, role=self.role) != self._prev_soft

    def ready(self) -> Ready:
        """Take the next batch of work. See `Ready` for the driver's obligations and order."""
        if self._outstanding is not None:
            raise AssertionError("ready() called again before advance()")
        soft = SoftState(leader=self.lead, role=self.role)
        hard = self._hard_state()
        entries = self.log.unstable_entries()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=entries,
            snapshot=self.log.unstable.snapshot,
            committed_entries=self.log.next_committed_entries(
                self.config.max_committed_size_per_ready
            ),
            messages=self.msgs,
            read_states=self.read_states,
            must_sync=bool(entries)
            or hard.term != self._prev_hard.term
            or hard.vote != self._prev_hard.vote,
        )
        self.msgs = []
        self.read_states = []
        self._prev_soft = soft
        self._prev_hard = hard
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied `rd`. Conf changes in it take effect now."""
        if rd is not self._outstanding:
            raise AssertionError("advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        if rd.snapshot is not None:
            self.log.stable_snap_to(rd.snapshot.metadata.index)
            if rd.snapshot.metadata.index > self.log.applied:
                self.log.applied_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            for e in rd.committed_entries:
                if e.kind is EntryKind.CONF_CHANGE:
                    self._apply_conf_change(ConfChange.decode(e.data))
            self.log.applied_to(rd.committed_entries[-1].index)

    def status(self) -> Status:
        progress: dict[NodeID, ProgressStatus] = {}
        if self.role is Role.LEADER:
            for pid, pr in self.prs.items():
                progress[pid] = ProgressStatus(
                    pr.match, pr.next, pr.state, pr.recent_active, pr.is_learner
                )
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.lead,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            conf_state=self.conf_state(),
            lead_transferee=self.lead_transferee,
            progress=progress,
        )

    def conf_state(self) -> ConfState:
        """Membership as of the applied index: what a snapshot taken now must record."""
        return ConfState(voters=frozenset(self.voters), learners=frozenset(self.learners))

    # ================================================================== transitions

    def _reset(self, term: Term) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self._rng.randrange(
            self.config.election_ticks, 2 * self.config.election_ticks
        )
        self.lead_transferee = None
        self.votes = {}
        last = self.log.last_index()
        for pid, pr in self.prs.items():
            is_learner = pr.is_learner
            fresh = Progress(
                next_index=last + 1, max_inflight=self.config.max_inflight_msgs, is_learner=is_learner
            )
            if pid == self.id:
                fresh.match = last
            self.prs[pid] = fresh
        self.pending_conf_index = 0
        self._reads.clear()
        self._read_queue.clear()
        self._pending_reads.clear()
        self._snap_out.clear()

    def _event(self, phrase: str) -> None:
        log.debug(phrase)
        if self.events is not None:
            self.events.append(phrase)

    def _become_follower(self, term: Term, lead: NodeID | None) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER
        self._step = self._step_follower
        self._tick = self._tick_election
        self._event(f"node {self.id} became follower at term {self.term}")

    def _become_pre_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # Pre-vote changes neither term nor vote.
        self._step = self._step_candidate
        self.votes = {}
        self._tick = self._tick_election
        self.lead = None
        self.role = Role.PRE_CANDIDATE
        self._event(f"node {self.id} became pre-candidate at term {self.term}")

    def _become_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._reset(self.term + 1)
        self._step = self._step_candidate
        self._tick = self._tick_election
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._event(f"node {self.id} became candidate at term {self.term}")

    def _become_leader(self) -> None:
        if self.role is Role.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._reset(self.term)
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.role = Role.LEADER
        me = self.prs.get(self.id)
        if me is not None:
            me.become_replicate()
            me.recent_active = True
        # Conservatively forbid conf changes until everything in the log so far is applied.
        self.pending_conf_index = self.log.last_index()
        # The no-op commits the new term, which also commits every earlier entry (Raft §5.4.2).
        self._append_entries([Entry(term=self.term, index=self.log.last_index() + 1, kind=EntryKind.NOOP)])
        self._event(f"node {self.id} became leader at term {self.term}")

    # ================================================================== elections

    def _promotable(self) -> bool:
        return self.id in self.voters

    def _hup(self, *, transfer: bool) -> None:
        if not self._promotable():
            return
        if self.log.unstable.snapshot is not None or self._has_unapplied_conf_change():
            # Etcd refuses too: a pending conf change could change whether we may vote at all.
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _has_unapplied_conf_change(self) -> bool:
        if self.log.committed <= self.log.applied:
            return False
        lo = max(self.log.applied + 1, self.log.first_index())
        try:
            ents = self.log.entries(lo, self.log.committed + 1)
        except LogCompactedError:
            return False
        return any(e.kind is EntryKind.CONF_CHANGE for e in ents)

    def _campaign(self, *, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            vote_type = MT.PRE_VOTE
            term = self.term + 1
        else:
            self._become_candidate()
            vote_type = MT.VOTE
            term = self.term
        self.votes[self.id] = True
        result = quorum.vote_result(self.votes, self.voters)
        if result is VoteResult.WON:
            # Single-voter cluster: no one to ask.
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self._become_leader()
            return
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for v in sorted(self.voters):
            if v == self.id:
                continue
            self._send(vote_type, v, term=term, index=last_index, log_term=last_term, context=ctx)

    def _handle_vote_request(self, m: Message) -> None:
        resp_type = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.lead is None)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Reply in the candidate's term, so a granted pre-vote counts in its round.
            self._send(resp_type, m.src, term=m.term)
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._send(resp_type, m.src, term=self.term, reject=True)

    # ================================================================== ticks

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self._hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                self._become_follower(self.term, None)
                return
            if self.lead_transferee is not None:
                self._abort_transfer()
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _quorum_active(self) -> bool:
        """Check-quorum: did a majority of voters talk to us since the last check? Resets."""
        active = {}
        for pid, pr in self.prs.items():
            if pid == self.id:
                active[pid] = True
                continue
            if not pr.is_learner:
                active[pid] = pr.recent_active
            pr.recent_active = False
        return quorum.vote_result(active, self.voters) is VoteResult.WON

    # ================================================================== role step functions

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is MT.APPEND_RESP:
            self._handle_append_resp(m)
        elif t is MT.HEARTBEAT_RESP:
            self._handle_heartbeat_resp(m)
        elif t is MT.SNAPSHOT_RESP:
            self._handle_snapshot_resp(m)
        elif t is MT.READ_INDEX:
            self._leader_read_index(m.src, m.context)
        # VOTE_RESP / PRE_VOTE_RESP / TIMEOUT_NOW / READ_INDEX_RESP: stale, ignore.

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if t is MT.APPEND:
            self._become_follower(m.term, m.src)
            self._handle_append(m)
        elif t is MT.HEARTBEAT:
            self._become_follower(m.term, m.src)
            self._handle_heartbeat(m)
        elif t is MT.SNAPSHOT:
            self._become_follower(m.term, m.src)
            self._handle_snapshot_chunk(m)
        elif t is my_resp:
            self.votes.setdefault(m.src, not m.reject)
            result = quorum.vote_result(self.votes, self.voters)
            if result is VoteResult.WON:
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self._become_leader()
                    self._bcast_append()
            elif result is VoteResult.LOST:
                self._become_follower(self.term, None)
        # TIMEOUT_NOW while campaigning: ignore.

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is MT.APPEND:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_append(m)
        elif t is MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_heartbeat(m)
        elif t is MT.SNAPSHOT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_snapshot_chunk(m)
        elif t is MT.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif t is MT.READ_INDEX:
            if self.lead is not None:
                self._send(MT.READ_INDEX, self.lead, term=0, context=m.context)
        elif t is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    # ================================================================== follower handlers

    def _handle_append(self, m: Message) -> None:
        rl = self.log
        if m.index < rl.committed:
            self._send(MT.APPEND_RESP, m.src, index=rl.committed)
            return
        last_new = rl.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(MT.APPEND_RESP, m.src, index=last_new)
            return
        # Fast backtracking: tell the leader the last index whose term is <= the probed term.
        hint_index, hint_term = rl.find_conflict_by_term(min(m.index, rl.last_index()), m.log_term)
        self._send(
            MT.APPEND_RESP,
            m.src,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(MT.HEARTBEAT_RESP, m.src, context=m.context)

    def _handle_snapshot_chunk(self, m: Message) -> None:
        meta = m.snapshot_meta
        if meta is None:
            return
        if meta.index <= self.log.committed:
            self._snap_in = None
            self._send(MT.APPEND_RESP, m.src, index=self.log.committed)
            return
        cur = self._snap_in
        if m.offset == 0:
            cur = (meta, bytearray())
        elif cur is None or cur[0] != meta or len(cur[1]) != m.offset:
            held = len(cur[1]) if cur is not None and cur[0] == meta else 0
            self._send(MT.SNAPSHOT_RESP, m.src, index=held, reject=True)
            return
        cur[1].extend(m.data)
        if not m.done:
            self._snap_in = cur
            self._send(MT.SNAPSHOT_RESP, m.src, index=len(cur[1]))
            return
        self._snap_in = None
        snap = Snapshot(metadata=meta, data=bytes(cur[1]))
        if self._restore(snap):
            self._send(MT.APPEND_RESP, m.src, index=self.log.last_index())
        else:
            self._send(MT.APPEND_RESP, m.src, index=self.log.committed)

    def _restore(self, s: Snapshot) -> bool:
        """Install snapshot `s` unless our log already covers it. True if it was installed."""
        meta = s.metadata
        if meta.index <= self.log.committed:
            return False
        if self.role is not Role.FOLLOWER:
            raise AssertionError(f"invalid transition [{self.role.value} -> restore snapshot]")
        if self.log.match_term(meta.index, meta.term):
            # We already have the entries: just fast-forward the commit.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(s)
        self._set_conf(meta.conf_state)
        self._event(f"node {self.id} restored snapshot at index {meta.index} term {meta.term}")
        return True

    # ================================================================== leader handlers

    def _handle_append_resp(self, m: Message) -> None:
        pr = self.prs.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(m.src)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            self._snap_out.pop(m.src, None)
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif old_paused:
            self._maybe_send_append(m.src)
        while self._maybe_send_append(m.src, send_if_empty=False):
            pass
        if m.src == self.lead_transferee and pr.match == self.log.last_index():
            self._send(MT.TIMEOUT_NOW, m.src)

    def _handle_heartbeat_resp(self, m: Message) -> None:
        pr = self.prs.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.state is ProgressState.SNAPSHOT:
            self._send_snapshot_chunk(m.src)  # retransmit a possibly lost chunk
        elif pr.match < self.log.last_index():
            self._maybe_send_append(m.src)
        if m.context:
            self._ack_read(m.src, m.context)

    def _handle_snapshot_resp(self, m: Message) -> None:
        pr = self.prs.get(m.src)
        out = self._snap_out.get(m.src)
        if pr is None or out is None or pr.state is not ProgressState.SNAPSHOT:
            return
        pr.recent_active = True
        if m.reject or m.index > out.acked:
            out.acked = min(m.index, len(out.snapshot.data))
        self._send_snapshot_chunk(m.src)

    def _maybe_commit(self) -> bool:
        match = {pid: pr.match for pid, pr in self.prs.items()}
        mci = quorum.committed_index(match, self.voters)
        if not self.log.maybe_commit(mci, self.term):
            return False
        if self._pending_reads:
            pending, self._pending_reads = self._pending_reads, []
            for src, ctx in pending:
                self._leader_read_index(src, ctx)
        return True

    def _committed_in_current_term(self) -> bool:
        return self.log.match_term(self.log.committed, self.term)

    # ================================================================== sending

    def _send(
        self,
        t: MessageType,
        to: NodeID,
        *,
        term: Term | None = None,
        **fields: object,
    ) -> None:
        self.msgs.append(
            Message(type=t, src=self.id, dst=to, term=self.term if term is None else term, **fields)  # type: ignore[arg-type]
        )

    def _bcast_append(self) -> None:
        for pid in self.prs:
            if pid != self.id:
                self._maybe_send_append(pid)

    def _bcast_heartbeat(self) -> None:
        ctx = self._read_queue[-1] if self._read_queue else b""
        committed = self.log.committed
        for pid, pr in self.prs.items():
            if pid != self.id:
                self._send(MT.HEARTBEAT, pid, commit=min(pr.match, committed), context=ctx)

    def _maybe_send_append(self, to: NodeID, send_if_empty: bool = True) -> bool:
        """Send `to` the entries after its `next`, or a snapshot if they were compacted."""
        pr = self.prs[to]
        if pr.is_paused():
            return False
        rl = self.log
        prev_index = pr.next - 1
        try:
            prev_term = rl.term(prev_index)
            last = rl.last_index()
            ents = (
                rl.entries(pr.next, last + 1, self.config.max_size_per_msg)
                if pr.next <= last
                else []
            )
        except LogCompactedError:
            return self._start_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self._send(
            MT.APPEND, to, index=prev_index, log_term=prev_term, entries=ents, commit=rl.committed
        )
        if ents:
            if pr.state is ProgressState.REPLICATE:
                last_sent = ents[-1].index
                pr.optimistic_update(last_sent)
                pr.inflights.add(last_sent)
            elif pr.state is ProgressState.PROBE:
                pr.probe_sent = True
        return True

    def _start_snapshot(self, to: NodeID, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # don't ship a snapshot to a peer that may be down
        snap = self.log.storage.snapshot()
        if snap.is_empty:
            raise AssertionError("need a snapshot to send but storage has none")
        pr.become_snapshot(snap.metadata.index)
        self._snap_out[to] = _OutgoingSnapshot(snap)
        self._event(f"node {self.id} started snapshot {snap.metadata.index} to node {to}")
        self._send_snapshot_chunk(to)
        return True

    def _send_snapshot_chunk(self, to: NodeID) -> None:
        out = self._snap_out.get(to)
        if out is None:
            return
        data = out.snapshot.data
        lo = out.acked
        hi = min(lo + self.config.snapshot_chunk_size, len(data))
        self._send(
            MT.SNAPSHOT,
            to,
            snapshot_meta=out.snapshot.metadata,
            offset=lo,
            data=data[lo:hi],
            done=hi >= len(data),
        )

    # ================================================================== proposals

    def _require_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)

    def _propose_entry(self, data: bytes, kind: EntryKind) -> RaftIndex:
        self._require_leader()
        if self.lead_transferee is not None:
            raise ProposalDroppedError(f"leadership transfer to {self.lead_transferee} in progress")
        if self.id not in self.prs:
            raise ProposalDroppedError("this leader has been removed from the configuration")
        index = self.log.last_index() + 1
        self._append_entries([Entry(self.term, index, data, kind)])
        self._bcast_append()
        return index

    def _append_entries(self, ents: list[Entry]) -> None:
        li = self.log.append(ents)
        me = self.prs.get(self.id)
        if me is not None:
            me.maybe_update(li)
        self._maybe_commit()

    def _abort_transfer(self) -> None:
        self.lead_transferee = None

    # ================================================================== ReadIndex

    def _leader_read_index(self, src: NodeID, ctx: bytes) -> None:
        if not self._committed_in_current_term():
            self._pending_reads.append((src, ctx))
            return
        index = self.log.committed
        if len(self.voters) == 1 and self.id in self.voters:
            self._answer_read(src, index, ctx)
            return
        if ctx in self._reads:
            return
        self._reads[ctx] = _ReadRequest(index, src, {self.id})
        self._read_queue.append(ctx)
        committed = self.log.committed
        for pid, pr in self.prs.items():
            if pid != self.id:
                self._send(MT.HEARTBEAT, pid, commit=min(pr.match, committed), context=ctx)

    def _ack_read(self, src: NodeID, ctx: bytes) -> None:
        req = self._reads.get(ctx)
        if req is None:
            return
        req.acks.add(src)
        votes = {pid: True for pid in req.acks}
        if quorum.vote_result(votes, self.voters) is not VoteResult.WON:
            return
        # Confirmed: this request and every earlier one in the queue can be answered.
        i = self._read_queue.index(ctx)
        done, self._read_queue = self._read_queue[: i + 1], self._read_queue[i + 1 :]
        for c in done:
            r = self._reads.pop(c)
            self._answer_read(r.src, r.index, c)

    def _answer_read(self, src: NodeID, index: RaftIndex, ctx: bytes) -> None:
        if src == self.id:
            self.read_states.append(ReadState(index, ctx))
        else:
            self._send(MT.READ_INDEX_RESP, src, index=index, context=ctx)

    # ================================================================== membership

    def _set_conf(self, cs: ConfState) -> None:
        self.voters = set(cs.voters)
        self.learners = set(cs.learners)
        last = self.log.last_index()
        members = self.voters | self.learners
        for pid in list(self.prs):
            if pid not in members:
                del self.prs[pid]
                self._snap_out.pop(pid, None)
        for pid in members:
            pr = self.prs.get(pid)
            if pr is None:
                pr = Progress(next_index=last + 1, max_inflight=self.config.max_inflight_msgs)
                if pid == self.id:
                    pr.match = last
                self.prs[pid] = pr
            pr.is_learner = pid in self.learners

    def _validate_conf_change(self, cc: ConfChange) -> None:
        n = cc.node_id
        if n <= 0:
            raise ValueError("node ids are positive")
        t = cc.type
        if t is ConfChangeType.ADD_LEARNER and (n in self.voters or n in self.learners):
            raise ValueError(f"node {n} is already a member")
        if t is ConfChangeType.ADD_VOTER and n in self.voters:
            raise ValueError(f"node {n} is already a voter")
        if t is ConfChangeType.PROMOTE and n not in self.learners:
            raise ValueError(f"node {n} is not a learner")
        if t is ConfChangeType.REMOVE:
            if n not in self.voters and n not in self.learners:
                raise ValueError(f"node {n} is not a member")
            if self.voters == {n}:
                raise ValueError("cannot remove the last voter")

    def _apply_conf_change(self, cc: ConfChange) -> None:
        """Deterministic on every node; invalid changes (validated at proposal) are no-ops."""
        voters, learners = set(self.voters), set(self.learners)
        n = cc.node_id
        t = cc.type
        if t is ConfChangeType.ADD_VOTER:
            learners.discard(n)
            voters.add(n)
        elif t is ConfChangeType.ADD_LEARNER:
            if n not in voters:
                learners.add(n)
        elif t is ConfChangeType.PROMOTE:
            if n in learners:
                learners.discard(n)
                voters.add(n)
        elif t is ConfChangeType.REMOVE:
            if voters != {n}:
                voters.discard(n)
                learners.discard(n)
        self._set_conf(ConfState(voters=frozenset(voters), learners=frozenset(learners)))
        self._event(f"node {self.id} applied conf change {t.name.lower()} {n}")
        if self.role is not Role.LEADER:
            return
        if self.id not in self.voters:
            self._become_follower(self.term, None)  # a removed (or demoted) leader steps down
            return
        if self.lead_transferee is not None and self.lead_transferee not in self.voters:
            self._abort_transfer()
        if self._maybe_commit():
            self._bcast_append()
        else:
            for pid, pr in self.prs.items():
                if pid != self.id and pr.state is ProgressState.PROBE and pr.match == 0:
                    self._maybe_send_append(pid)

    def _bootstrap(self, voters: Iterable[NodeID], learners: Iterable[NodeID]) -> None:
        ccs = [ConfChange(ConfChangeType.ADD_VOTER, v) for v in sorted(voters)]
        ccs += [ConfChange(ConfChangeType.ADD_LEARNER, n) for n in sorted(learners)]
        ents = [
            Entry(1, i + 1, cc.encode(), EntryKind.CONF_CHANGE) for i, cc in enumerate(ccs)
        ]
        self._become_follower(1, None)
        self.log.append(ents)
        self.log.commit_to(len(ents))
        # Apply now so the node can campaign; applying them again later is idempotent.
        for cc in ccs:
            self._apply_conf_change(cc)

    def _load_hard_state(self, hs: HardState) -> None:
        if hs.commit > self.log.last_index():
            raise AssertionError(
                f"hard state commit {hs.commit} beyond last index {self.log.last_index()}"
            )
        self.log.committed = max(hs.commit, self.log.committed)
        self.term = hs.term
        self.vote = hs.vote

    def _hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)
