"""lictor.server.raft: a sans-I/O Raft core (etcd-raft's shape) and its storage seam.

Flow (one driver loop; the core never does I/O itself)::

     peers --Message--> core.step(m)          driver clock --> core.tick()
     client --> core.propose(data) / propose_conf_change(cc) / read_index(ctx)
                              |
                              v
                   +---------------------+   reads only   +------------------+
                   |      RaftCore       | <------------- | StorageProtocol  |
                   | roles, log, progress|                | (MemoryStorage)  |
                   +---------------------+                +------------------+
                              | core.has_ready() / core.ready() -> Ready      ^
                              v                                               | writes
      1. persist  Ready.snapshot, Ready.entries, Ready.hard_state  ------------+
      2. send     Ready.messages            (only after 1 is durable)
      3. apply    Ready.committed_entries -> FSM; serve Ready.read_states
      4. core.advance(ready)                (conf changes take effect here)

Modules: messages (values, Ready contract), quorum (pure majority maths), progress (per-follower
replication state), log (stable + unstable log), storage (read-only protocol + MemoryStorage),
core (RaftCore: the only place roles change).

Invariants the core keeps (and tests/sim checks after every step):
- Election safety: at most one leader per term.
- Log matching: two logs with an entry of the same index and term agree on all earlier entries.
- Leader completeness: an entry committed in term T is in the log of every leader of a term > T.
  (A leader only commits entries of its own term by counting replicas; it appends a no-op on
  election to commit earlier ones: Raft's Figure 8 rule.)
- State-machine safety: no two nodes apply different entries at the same index.
- applied <= committed <= last index; committed never decreases within a node's lifetime.
- Membership changes are single-server, one pending at a time, effective when applied; new
  servers join as learners and are promoted later.
- Pre-vote + check-quorum: a node that heard from a leader within an election timeout ignores
  (pre-)votes, pre-votes never bump terms, and a leader without a live quorum steps down.

The Ready contract (what the driver must do with each field) lives on `messages.Ready`.
"""

from .core import Config, ProgressStatus, RaftCore, Status
from .messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMetadata,
    SoftState,
)
from .storage import MemoryStorage, StorageProtocol

__all__ = [
    "Config",
    "RaftCore",
    "Status",
    "ProgressStatus",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "Message",
    "MessageType",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftError",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "MemoryStorage",
    "StorageProtocol",
]
