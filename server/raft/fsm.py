"""What the Raft driver needs from the state machine it replicates (hashicorp/raft's ``FSM``).

The driver (``driver.RaftNode``) depends on this protocol only, never on Lictor's concrete FSM
(``lictor.server.fsm.FSM``): any object with these methods can be replicated, which is what
lets tests run the driver over a tiny counter and keeps the Raft package free of the catalog.
"""

from __future__ import annotations

from typing import IO, Any, Protocol

__all__ = ["FSMProtocol", "FSMSnapshotProtocol"]


class FSMSnapshotProtocol(Protocol):
    """An immutable capture of the state, taken on the loop; written out off the loop."""

    def persist(self, sink: IO[bytes]) -> None:
        """Write the captured state to `sink` (runs in an executor thread)."""


class FSMProtocol(Protocol):
    """A deterministic state machine fed committed log entries in index order."""

    last_applied: int
    """The index of the last entry applied (set by the driver after a snapshot restore)."""

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed entry; the returned value is the proposer's result (FSM
        outcomes are values: refusals are returned, not raised)."""

    def snapshot(self) -> FSMSnapshotProtocol:
        """Capture the state cheaply (called on the loop, between applies)."""

    def restore(self, stream: IO[bytes]) -> None:
        """Replace the whole state with the one `stream` holds (as ``persist`` wrote it)."""

    def check_snapshot(self, data: bytes) -> None:
        """Raise ``ValueError`` unless `data` could be restored (runs off the loop, on a
        scratch copy: nothing changes)."""

    def restore_command(self, data: bytes, now: float) -> bytes:
        """The log entry that, once applied on every server, restores the state in `data`
        (an operator's snapshot restore travels through the log like any other write)."""
