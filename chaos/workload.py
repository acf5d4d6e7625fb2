"""The recorded client workload: a few threads, each bound to one server, issuing KV reads,
writes and CASes on a small keyspace (so operations overlap), lock acquire/release cycles on one
lock key, and catalog register/deregister; every operation is recorded with its call and return
times. Every written value is unique (``p<process>-<n>``), which the checkers rely on.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any

from chaos.history import CATALOG, KV, LOCK, Op
from chaos.systems import Result, System

__all__ = ["Workload", "KEYS", "LOCK_KEY"]

KEYS = ["chaos/k0", "chaos/k1", "chaos/k2"]
LOCK_KEY = "chaos/lock"
LOCK_CLIENTS = 3  # the first N processes also take the lock


class Workload:
    def __init__(self, system: System, *, clients: int, max_ops: int, seed: int, t0: float,
                 think: float = 0.03) -> None:
        self.system = system
        self.clients = clients
        self.max_ops = max_ops
        self.seed = seed
        self.t0 = t0
        self.think = think
        self.history: list[Op] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.owners: dict[int, str] = {}

    def now(self) -> float:
        return time.monotonic() - self.t0

    def prepare(self) -> None:
        members = self.system.initial
        for p in range(min(LOCK_CLIENTS, self.clients)):
            self.owners[p] = self.system.prepare_client(p, members[p % len(members)])

    def start(self) -> None:
        for p in range(self.clients):
            t = threading.Thread(target=self._run, args=(p,), name=f"chaos-client-{p}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def done(self) -> bool:
        return self._stop.is_set() or self.count() >= self.max_ops

    def count(self) -> int:
        with self._lock:
            return len(self.history)

    def record(self, process: int, node: int, kind: str, key: str, f: str, value: Any,
               call: float, res: Result) -> Op:
        op = Op(id=next(self._ids), process=process, node=self.system.servers[node].name, kind=kind,
                key=key, f=f, value=value, call=call, ret=self.now(), status=res.status,
                output=res.output, error=res.error)
        with self._lock:
            self.history.append(op)
        return op

    def invoke(self, process: int, node: int, kind: str, key: str, f: str, value: Any,
               fn: Any, *args: Any) -> tuple[Op, Result]:
        call = self.now()
        res = fn(*args)
        return self.record(process, node, kind, key, f, value, call, res), res

    def _run(self, p: int) -> None:
        sysm = self.system
        rng = random.Random(self.seed * 1000 + p)
        node = sysm.initial[p % len(sysm.initial)]  # clients stay on the initial servers
        seen: dict[str, tuple[Any, Any]] = {}  # key -> (value, meta) from this client's last read
        counter = itertools.count()
        owner = self.owners.get(p)
        while not self.done():
            r = rng.random()
            res: Result
            if owner is not None and r < 0.12:
                _, res = self.invoke(p, node, LOCK, LOCK_KEY, "acquire", owner, sysm.acquire,
                                     node, LOCK_KEY, owner)
                if res.status == "ok" and res.output is True:
                    time.sleep(rng.uniform(0.01, 0.08))
                    _, res = self.invoke(p, node, LOCK, LOCK_KEY, "release", owner, sysm.release,
                                         node, LOCK_KEY, owner)
            elif r < 0.17:
                _, res = self.invoke(p, node, LOCK, LOCK_KEY, "read", None, sysm.lock_read, node, LOCK_KEY)
            elif r < 0.27:
                svc_node, sid = f"chaos-n{p}", f"svc-{rng.randrange(4)}"
                f = rng.choice(["register", "deregister"])
                fn = sysm.register if f == "register" else sysm.deregister
                _, res = self.invoke(p, node, CATALOG, f"{svc_node}/{sid}", f, sid, fn, node, svc_node, sid)
            else:
                key = rng.choice(KEYS)
                r2 = rng.random()
                if r2 < 0.45:
                    _, res = self.invoke(p, node, KV, key, "read", None, sysm.read, node, key)
                    if res.status == "ok":
                        seen[key] = (res.output, res.meta)
                elif r2 < 0.8 or key not in seen:
                    v = f"p{p}-{next(counter)}"
                    _, res = self.invoke(p, node, KV, key, "write", v, sysm.write, node, key, v)
                else:
                    expected, meta = seen.pop(key)
                    v = f"p{p}-{next(counter)}"
                    _, res = self.invoke(p, node, KV, key, "cas", [expected, v], sysm.cas,
                                         node, key, expected, meta, v)
            if res.status != "ok":
                time.sleep(rng.uniform(0.05, 0.2))  # back off from a dead or stuck server
            else:
                time.sleep(rng.uniform(0, 2 * self.think))
