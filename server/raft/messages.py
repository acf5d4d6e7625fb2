"""Raft value types: entries, states, messages, snapshots, conf changes and the `Ready` batch.

Every type here is a frozen, slotted dataclass or an enum (STYLE P18). Nothing in this module
does I/O or keeps mutable state. The one contract that drivers must follow, the order in which a
`Ready` is carried out, is written down once, on `Ready` itself.

Node ids are positive integers; `None` means "no node" (no leader known, no vote cast).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "NodeID",
    "Term",
    "RaftIndex",
    "EntryKind",
    "Entry",
    "HardState",
    "Role",
    "SoftState",
    "ConfState",
    "SnapshotMetadata",
    "Snapshot",
    "EMPTY_SNAPSHOT",
    "ConfChangeType",
    "ConfChange",
    "MessageType",
    "Message",
    "ReadState",
    "Ready",
    "RaftError",
    "NotLeaderError",
    "ProposalDroppedError",
    "LogCompactedError",
    "LogUnavailableError",
    "SnapshotOutOfDateError",
    "entry_size",
    "CAMPAIGN_TRANSFER",
]

# Plain aliases rather than NewType: the core does arithmetic on these in its hot paths, and a
# NewType would force a wrapping call on every `index + 1`. The names still carry the meaning.
NodeID: TypeAlias = int
Term: TypeAlias = int
RaftIndex: TypeAlias = int

#: `Message.context` of a Vote sent because of a leadership transfer (TimeoutNow). Such a vote
#: bypasses the lease check that otherwise makes followers ignore votes while a leader is alive.
CAMPAIGN_TRANSFER = b"CampaignTransfer"


# --------------------------------------------------------------------------------------- errors


class RaftError(Exception):
    """Root of the errors the Raft core raises to its caller."""


class NotLeaderError(RaftError):
    """The operation needs the leader and this node is not it.

    `leader` is the leader this node currently knows of (None if none), so a caller can redirect.
    """

    def __init__(self, leader: NodeID | None) -> None:
        super().__init__(f"not the leader (known leader: {leader})")
        self.leader = leader


class ProposalDroppedError(RaftError):
    """The leader refused a proposal: a leadership transfer is in progress, or a configuration
    change is still pending. The caller may retry later (possibly against another node)."""


class LogCompactedError(RaftError):
    """The requested index lies at or below the storage's compaction point."""


class LogUnavailableError(RaftError):
    """The requested index lies beyond the last index in storage."""


class SnapshotOutOfDateError(RaftError):
    """A snapshot older than the one storage already holds was offered."""


# -------------------------------------------------------------------------------------- entries


class EntryKind(enum.IntEnum):
    """What an entry carries. NOOP is the empty entry a new leader appends to commit its term."""

    NORMAL = 0
    CONF_CHANGE = 1
    NOOP = 2


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. `data` is opaque to Raft except for CONF_CHANGE (an encoded ConfChange)."""

    term: Term
    index: RaftIndex
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL


_ENTRY_OVERHEAD = 16


def entry_size(e: Entry) -> int:
    """Approximate wire size of an entry, used for `max_size_per_msg` batching."""
    return len(e.data) + _ENTRY_OVERHEAD


# -------------------------------------------------------------------------------------- states


@dataclass(frozen=True, slots=True)
class HardState:
    """The state a node must persist before sending any message that depends on it."""

    term: Term = 0
    vote: NodeID | None = None
    commit: RaftIndex = 0


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, useful to the driver (leader changes) but never persisted."""

    leader: NodeID | None
    role: Role


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: voters count for quorum; learners only receive the log."""

    voters: frozenset[NodeID] = frozenset()
    learners: frozenset[NodeID] = frozenset()


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    index: RaftIndex = 0
    term: Term = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An application snapshot covering every entry up to and including `metadata.index`."""

    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    @property
    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


# --------------------------------------------------------------------------------- conf changes


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0
    ADD_LEARNER = 1
    PROMOTE = 2  # learner -> voter
    REMOVE = 3


_CC = struct.Struct(">BQ")


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-server membership change. It takes effect when its entry is *applied*."""

    type: ConfChangeType
    node_id: NodeID

    def encode(self) -> bytes:
        return _CC.pack(int(self.type), self.node_id)

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        t, n = _CC.unpack(data)
        return cls(ConfChangeType(t), n)


# ------------------------------------------------------------------------------------- messages


class MessageType(enum.IntEnum):
    VOTE = 1
    VOTE_RESP = 2
    PRE_VOTE = 3
    PRE_VOTE_RESP = 4
    APPEND = 5  # AppendEntries
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9  # InstallSnapshot, one chunk
    SNAPSHOT_RESP = 10  # chunk acknowledgement (the final install is answered by APPEND_RESP)
    TIMEOUT_NOW = 11
    READ_INDEX = 12
    READ_INDEX_RESP = 13


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One Raft message; which fields matter depends on `type`:

    - VOTE / PRE_VOTE: `index`/`log_term` = candidate's last entry; `context` = CAMPAIGN_TRANSFER
      for a transfer. PRE_VOTE carries the term the sender *would* campaign at (its term + 1).
    - *_VOTE_RESP: `reject`.
    - APPEND: `index`/`log_term` = entry preceding `entries`; `commit` = leader's commit.
    - APPEND_RESP: accepted -> `index` = follower's last matching index. Rejected -> `index` =
      the rejected APPEND's `index`, and the fast-backtracking hint: `reject_hint` = an index at
      which the follower's log has term `log_term` <= the probed term; the leader can skip every
      entry above the last of its own entries with a term <= `log_term`.
    - HEARTBEAT: `commit` = min(follower's match, leader commit); `context` = ReadIndex ctx.
    - HEARTBEAT_RESP: echoes `context`.
    - SNAPSHOT: `snapshot_meta` with the chunk `data` at byte `offset`; `done` on the last chunk.
    - SNAPSHOT_RESP: `index` = bytes the follower holds so far; `reject` = restart at `index`.
    - READ_INDEX: `context` = request ctx. READ_INDEX_RESP: `index` = read index, `context`.

    `entries` and `data` must be treated as immutable by whoever receives them.
    """

    type: MessageType
    src: NodeID
    dst: NodeID
    term: Term = 0
    log_term: Term = 0
    index: RaftIndex = 0
    entries: Sequence[Entry] = ()
    commit: RaftIndex = 0
    reject: bool = False
    reject_hint: RaftIndex = 0
    context: bytes = b""
    snapshot_meta: SnapshotMetadata | None = None
    offset: int = 0
    data: bytes = b""
    done: bool = False


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local FSM has applied `index`.

    `request_ctx` is the caller's `read_index(ctx)` argument, so it can find its waiter.
    """

    index: RaftIndex
    request_ctx: bytes


# ---------------------------------------------------------------------------------------- Ready


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """A batch of work the driver must carry out, in this order, then hand back to `advance()`.

    THE DRIVER ORDER (the one place it is written down):

      1. persist: if `snapshot` is set, install it in storage (`MemoryStorage.apply_snapshot`)
         and restore the FSM from it; append `entries` to storage (truncating any conflicting
         suffix); save `hard_state` if set. If `must_sync`, fsync before step 2.
      2. send: transmit `messages` (best effort; loss is tolerated by the protocol).
      3. apply: apply `committed_entries` to the FSM in order (CONF_CHANGE entries need no FSM
         action: the core applies them itself in step 4). Serve `read_states` once applied.
      4. advance: call `core.advance(ready)` with this very object.

    No other `ready()` may be taken before `advance()`. Between `ready()` and `advance()` the
    driver may not step/tick the core (the synchronous drivers in this repo never do).
    """

    soft_state: SoftState | None = None
    """Leader/role if they changed since the last Ready, else None. Informational only."""

    hard_state: HardState | None = None
    """Term/vote/commit if changed since the last Ready, else None. Persist before sending."""

    entries: Sequence[Entry] = ()
    """New log entries. Persist BEFORE sending `messages`; they may replace a conflicting tail."""

    snapshot: Snapshot | None = None
    """A snapshot received from the leader. Persist (and restore the FSM) before anything else."""

    committed_entries: Sequence[Entry] = ()
    """Entries known committed, contiguous from applied+1. Apply to the FSM in order, after
    persisting (they may overlap `entries`)."""

    messages: Sequence[Message] = ()
    """Messages to send AFTER the persistence above has completed."""

    read_states: Sequence[ReadState] = ()
    """Linearizable reads that are confirmed; answer each once applied >= its index."""

    must_sync: bool = False
    """True if the entries or hard state (term/vote) must be fsynced before sending."""
