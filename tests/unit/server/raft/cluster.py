"""A tiny synchronous harness for targeted core tests (etcd's `network` in raft_test.go).

Messages are delivered in rounds, in FIFO order, with optional per-link filters. Unlike
tests/sim it has no clock or randomness of its own beyond each core's seeded rng.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from lictor.server.raft import (
    Config,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftCore,
    ReadState,
    Snapshot,
    SnapshotMetadata,
)

Filter = Callable[[Message], bool]  # True = drop


def make_storage(
    voters: Iterable[int],
    terms: Sequence[int] = (),
    *,
    term: int = 0,
    learners: Iterable[int] = (),
    commit: int = 1,
) -> MemoryStorage:
    """A storage whose membership comes from a snapshot at index 1 (term 1), followed by
    entries at indexes 2.. with the given terms."""
    st = MemoryStorage()
    cs = ConfState(voters=frozenset(voters), learners=frozenset(learners))
    st.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=1, term=1, conf_state=cs)))
    st.append([Entry(t, i + 2, b"e%d" % (i + 2)) for i, t in enumerate(terms)])
    st.set_hard_state(HardState(term=max([term, 1, *terms]), vote=None, commit=commit))
    return st


class Cluster:
    def __init__(
        self,
        ids: Sequence[int] | int = 3,
        *,
        storages: dict[int, MemoryStorage] | None = None,
        seed: int = 0,
        **opts: object,
    ) -> None:
        ids = list(range(1, ids + 1)) if isinstance(ids, int) else list(ids)
        self.opts = dict(election_ticks=10, heartbeat_ticks=1, record_events=True)
        self.opts.update(opts)
        self.seed = seed
        self.storages: dict[int, MemoryStorage] = {}
        self.cores: dict[int, RaftCore] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.reads: dict[int, list[ReadState]] = {}
        self.pending: list[Message] = []
        self.sent: list[Message] = []  # every message ever put on the wire (for counting)
        self.filters: list[Filter] = []
        self._cut: set[tuple[int, int]] = set()
        for i in ids:
            st = storages[i] if storages and i in storages else None
            self.add(i, st, voters=() if st is not None else tuple(ids))
        self.flush()

    def add(self, i: int, storage: MemoryStorage | None = None, *, voters: Sequence[int] = ()) -> RaftCore:
        st = storage if storage is not None else MemoryStorage()
        self.storages[i] = st
        cfg = Config(id=i, rng=random.Random(self.seed * 100 + i), voters=tuple(voters), **self.opts)  # type: ignore[arg-type]
        core = RaftCore(cfg, st)
        self.cores[i] = core
        self.applied.setdefault(i, [])
        self.reads.setdefault(i, [])
        return core

    def __getitem__(self, i: int) -> RaftCore:
        return self.cores[i]

    # ---- faults

    def isolate(self, n: int) -> None:
        for o in self.cores:
            if o != n:
                self._cut |= {(n, o), (o, n)}

    def cut(self, a: int, b: int) -> None:
        self._cut |= {(a, b), (b, a)}

    def heal(self) -> None:
        self._cut.clear()
        self.filters.clear()

    # ---- driving

    def flush(self) -> None:
        """Carry out every node's Ready (persist -> queue messages -> apply -> advance)."""
        for i, c in self.cores.items():
            while c.has_ready():
                rd = c.ready()
                st = self.storages[i]
                if rd.snapshot is not None:
                    st.apply_snapshot(rd.snapshot)
                if rd.entries:
                    st.append(rd.entries)
                if rd.hard_state is not None:
                    st.set_hard_state(rd.hard_state)
                self.pending.extend(rd.messages)
                self.applied[i].extend(rd.committed_entries)
                self.reads[i].extend(rd.read_states)
                c.advance(rd)

    def deliver_round(self) -> int:
        self.flush()
        msgs, self.pending = self.pending, []
        n = 0
        for m in msgs:
            self.sent.append(m)
            if (m.src, m.dst) in self._cut or any(f(m) for f in self.filters):
                continue
            if m.dst in self.cores:
                self.cores[m.dst].step(m)
                n += 1
        self.flush()
        return n

    def stabilize(self, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            self.flush()
            if not self.pending:
                return
            self.deliver_round()
        raise AssertionError("cluster did not stabilize")

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.cores[i].tick()
        self.flush()

    def tick_all(self, n: int = 1, *, stabilize: bool = True) -> None:
        for _ in range(n):
            for c in self.cores.values():
                c.tick()
            if stabilize:
                self.stabilize()
            else:
                self.deliver_round()

    def elect(self, i: int) -> RaftCore:
        self.cores[i].campaign()
        self.stabilize()
        return self.cores[i]

    def propose(self, i: int, data: bytes) -> int:
        idx = self.cores[i].propose(data)
        self.stabilize()
        return idx

    def sent_of(self, t: MessageType, *, src: int | None = None, dst: int | None = None) -> list[Message]:
        return [
            m
            for m in self.sent
            if m.type is t and (src is None or m.src == src) and (dst is None or m.dst == dst)
        ]

    def normal_applied(self, i: int) -> list[bytes]:
        return [e.data for e in self.applied[i] if e.kind is EntryKind.NORMAL]
