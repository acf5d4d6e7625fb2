"""The recorded history: one :class:`Op` per client operation, and fault windows.

Status follows Jepsen: ``ok`` (the server answered; for a CAS or an acquire the answer may be
``False``), ``fail`` (definitely not applied: the connection was refused before anything was
sent, or the server rejected the request), ``info`` (unknown: timed out, reset after sending,
or a 5xx that may have been applied). Times are seconds since the start of the run
(``time.monotonic()`` based). ``ret`` is the time the client gave up for ``info`` operations;
the checker treats their completion as open-ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Op", "Fault", "write_jsonl", "read_history"]

#: Key-value register keys, the lock key, and catalog pseudo-keys share one history.
KV, LOCK, CATALOG = "kv", "lock", "catalog"


@dataclass(slots=True)
class Op:
    id: int
    process: int
    node: str  # the server this client addressed
    kind: str  # kv | lock | catalog
    key: str
    f: str  # read | write | cas | acquire | release | register | deregister
    value: Any  # input: value written, [expected, new], session id, service id
    call: float
    ret: float
    status: str = "ok"  # ok | fail | info
    output: Any = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Fault:
    kind: str  # kill | pause | partition | restart-all
    start: float
    end: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r, sort_keys=True) + "\n")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_history(path: Path) -> list[Op]:
    ops = []
    for r in _rows(path):
        if isinstance(r.get("value"), list):
            r["value"] = list(r["value"])
        ops.append(Op(**r))
    return ops


def read_faults(path: Path) -> list[Fault]:
    return [Fault(**r) for r in _rows(path)]
