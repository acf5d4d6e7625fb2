"""A small datadriven transcript runner (etcd's rafttest/interaction_env, much reduced).

A transcript is a sequence of blocks::

    <directive> <args...>
    ----
    <expected output lines>
    <blank line>

One handler function per directive; output is the transition phrases the cores logged while the
directive ran, plus whatever the directive prints. `LICTOR_REWRITE=1` rewrites the expected
output in place instead of comparing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lictor.server.raft import (
    Config,
    ConfChange,
    ConfChangeType,
    MemoryStorage,
    Message,
    RaftCore,
)

__all__ = ["Env", "run_file", "parse"]


@dataclass
class Env:
    cores: dict[int, RaftCore] = field(default_factory=dict)
    storages: dict[int, MemoryStorage] = field(default_factory=dict)
    queue: list[Message] = field(default_factory=list)
    cut: set[tuple[int, int]] = field(default_factory=set)
    out: list[str] = field(default_factory=list)

    def flush(self) -> None:
        for i, c in self.cores.items():
            while c.has_ready():
                rd = c.ready()
                st = self.storages[i]
                if rd.snapshot is not None:
                    st.apply_snapshot(rd.snapshot)
                st.append(rd.entries)
                if rd.hard_state is not None:
                    st.set_hard_state(rd.hard_state)
                self.queue.extend(rd.messages)
                for e in rd.committed_entries:
                    if e.data and e.kind.name == "NORMAL":
                        self.out.append(f"node {i} applied {e.index}/{e.term} {e.data.decode()}")
                for rs in rd.read_states:
                    self.out.append(f"node {i} read {rs.request_ctx.decode()} at {rs.index}")
                c.advance(rd)
        for c in self.cores.values():
            if c.events:
                self.out.extend(c.events)
                c.events.clear()

    def deliver(self, drop_to: set[int] | None = None) -> None:
        self.flush()
        msgs, self.queue = self.queue, []
        for m in msgs:
            if (m.src, m.dst) in self.cut or (drop_to and m.dst in drop_to):
                continue
            if m.dst in self.cores:
                self.cores[m.dst].step(m)
        self.flush()


Handler = Callable[[Env, list[str]], None]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def reg(f: Handler) -> Handler:
        HANDLERS[name] = f
        return f

    return reg


@handler("add-nodes")
def _add_nodes(env: Env, args: list[str]) -> None:
    n = int(args[0])
    ids = tuple(range(1, n + 1))
    for i in ids:
        env.storages[i] = MemoryStorage()
        env.cores[i] = RaftCore(
            Config(id=i, rng=random.Random(i), voters=ids, record_events=True), env.storages[i]
        )
    for c in env.cores.values():
        assert c.events is not None
        c.events.clear()  # bootstrap noise
    env.flush()
    env.out.clear()


@handler("campaign")
def _campaign(env: Env, args: list[str]) -> None:
    env.cores[int(args[0])].campaign()
    env.flush()


@handler("propose")
def _propose(env: Env, args: list[str]) -> None:
    try:
        idx = env.cores[int(args[0])].propose(args[1].encode())
        env.out.append(f"proposed at {idx}")
    except Exception as e:  # the transcript records refusals too
        env.out.append(f"error: {type(e).__name__}: {e}")
    env.flush()


@handler("stabilize")
def _stabilize(env: Env, args: list[str]) -> None:
    for _ in range(1000):
        env.flush()
        if not env.queue:
            return
        env.deliver()
    raise AssertionError("did not stabilize")


@handler("deliver-msgs")
def _deliver_msgs(env: Env, args: list[str]) -> None:
    drop = {int(a.split("=")[1]) for a in args if a.startswith("drop=")}
    env.deliver(drop_to=drop)


@handler("tick")
def _tick(env: Env, args: list[str]) -> None:
    node, n = int(args[0]), int(args[1]) if len(args) > 1 else 1
    for _ in range(n):
        env.cores[node].tick()
    env.flush()


@handler("isolate")
def _isolate(env: Env, args: list[str]) -> None:
    n = int(args[0])
    for o in env.cores:
        if o != n:
            env.cut |= {(n, o), (o, n)}


@handler("heal")
def _heal(env: Env, args: list[str]) -> None:
    env.cut.clear()


@handler("transfer")
def _transfer(env: Env, args: list[str]) -> None:
    env.cores[int(args[0])].transfer_leadership(int(args[1]))
    env.flush()


@handler("read-index")
def _read_index(env: Env, args: list[str]) -> None:
    env.cores[int(args[0])].read_index(args[1].encode())
    env.flush()


@handler("conf-change")
def _conf_change(env: Env, args: list[str]) -> None:
    node, kind, target = int(args[0]), args[1], int(args[2])
    if target not in env.cores:
        env.storages[target] = MemoryStorage()
        env.cores[target] = RaftCore(
            Config(id=target, rng=random.Random(target), record_events=True), env.storages[target]
        )
    cc = ConfChange(ConfChangeType[kind.upper().replace("-", "_")], target)
    env.cores[node].propose_conf_change(cc)
    env.flush()


@handler("status")
def _status(env: Env, args: list[str]) -> None:
    for i in sorted(env.cores) if not args else [int(args[0])]:
        s = env.cores[i].status()
        env.out.append(
            f"{i}: {s.role.value} term={s.term} lead={s.leader} commit={s.commit}"
            f" voters={sorted(s.conf_state.voters)} learners={sorted(s.conf_state.learners)}"
        )


def parse(text: str) -> list[tuple[str, list[str]]]:
    """Blocks of (directive line, expected output lines)."""
    blocks: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip() or lines[i].startswith("#"):
            i += 1
            continue
        cmd = lines[i]
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"line {i + 2}: expected ---- after {cmd!r}")
        i += 2
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        blocks.append((cmd, out))
    return blocks


def run_file(path: Path, rewrite: bool = False) -> list[str]:
    """Run a transcript; returns mismatch descriptions (or rewrites the file)."""
    env = Env()
    problems: list[str] = []
    rendered: list[str] = []
    for cmd, expected in parse(path.read_text()):
        name, *args = cmd.split()
        env.out = []
        HANDLERS[name](env, args)
        got = env.out or ["ok"]
        rendered.append("\n".join([cmd, "----", *got]))
        if got != expected:
            problems.append(f"{path.name}: {cmd!r}\n  expected: {expected}\n  got:      {got}")
    if rewrite:
        path.write_text("\n\n".join(rendered) + "\n")
        return []
    return problems
