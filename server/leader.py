"""Leader duties: the work only the leader does, each routine deciding from one view of the store.

* :func:`reconcile_members` compares the members the cluster knows (gossip, or just this node in
  dev mode) with the catalog and returns the registrations to write: each live member is a node
  with a passing ``serfHealth`` check. It returns a :class:`Decision` that says what it did.
* :class:`SessionTimers` expires TTL sessions: a session with TTL t is destroyed when it has not
  been renewed for 2t (Consul's grace), by proposing a destroy command. Timers live only on the
  leader and are rebuilt from the store when leadership is gained.
* Tombstones are reaped once older than ``tombstone_ttl`` by proposing a reap command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lictor.common.clock import Clock
from lictor.common.duration import parse_duration
from lictor.common.tasks import spawn
from lictor.server.state.store import Store

__all__ = ["Decision", "Member", "SessionTimers", "reconcile_members"]

log = logging.getLogger("lictor.leader")

SERF_CHECK_ID = "serfHealth"
CONSUL_SERVICE_ID = "consul"


def consul_service(port: int) -> dict[str, Any]:
    """The ``consul`` service the leader registers on each server's node (Consul's shape)."""
    return {"id": CONSUL_SERVICE_ID, "service": CONSUL_SERVICE_ID, "kind": "", "tags": [], "address": "",
            "tagged_addresses": {}, "meta": {"raft_version": "3", "serf_protocol_current": "2",
                                             "serf_protocol_min": "1", "serf_protocol_max": "5"},
            "port": port, "socket_path": "", "weights": {"Passing": 1, "Warning": 1},
            "enable_tag_override": False, "proxy": {}, "connect": {}}


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    name: str
    address: str
    status: str = "alive"  # alive | failed | left
    node_id: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    server_port: int | None = None  # a server's RPC port: its node carries the ``consul`` service


@dataclass(frozen=True, slots=True)
class Decision:
    """What one leader routine decided: the commands to propose and a sentence for the log."""

    commands: list[tuple[int, dict[str, Any]]]
    summary: str


def reconcile_members(store: Store, members: list[Member], *, datacenter: str) -> Decision:
    from lictor.common.commands import MessageType

    cmds: list[tuple[int, dict[str, Any]]] = []
    registered = deregistered = 0
    for m in members:
        if m.status == "left":
            if m.name in store.nodes:
                cmds.append((MessageType.DEREGISTER, {"node": m.name}))
                deregistered += 1
            continue
        status = "passing" if m.status == "alive" else "critical"
        output = "Agent alive and reachable" if status == "passing" else "Agent not live or unreachable"
        node = store.nodes.get(m.name)
        check = store.checks.get((m.name, SERF_CHECK_ID))
        consul = store.services.get((m.name, CONSUL_SERVICE_ID))
        service_ok = m.server_port is None or (consul is not None and consul.port == m.server_port)
        if (node is not None and node.address == m.address and node.meta == m.meta and check is not None
                and check.status == status and service_ok):
            continue
        payload: dict[str, Any] = {
            "node": m.name, "id": m.node_id, "address": m.address, "datacenter": datacenter,
            "node_meta": m.meta,
            "checks": [{"check_id": SERF_CHECK_ID, "name": "Serf Health Status", "status": status,
                        "output": output, "type": ""}],
        }
        if m.server_port is not None:  # Consul's leader registers every server as the ``consul`` service
            payload["service"] = consul_service(m.server_port)
        cmds.append((MessageType.REGISTER, payload))
        registered += 1
    return Decision(cmds, f"reconciled {registered} members; deregistered {deregistered}")


Propose = Callable[[int, dict[str, Any]], Awaitable[Any]]


class SessionTimers:
    """TTL expiry for sessions, run on the leader only. Without a ``clock``, timers are the
    loop's own (cheap, one handle per session); with one (a test's ManualClock), each timer
    sleeps on it."""

    def __init__(self, propose: Propose, *, clock: Clock | None = None) -> None:
        self._propose = propose
        self._clock = clock
        self._timers: dict[str, asyncio.TimerHandle | asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def reset(self, session_id: str, ttl: str) -> None:
        """(Re)start the timer: the session expires 2*TTL from now unless renewed."""
        self.clear(session_id)
        if not ttl:
            return
        seconds = parse_duration(ttl, what="TTL")
        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._timers[session_id] = loop.call_later(2 * seconds, self._expire, session_id)
        else:
            self._timers[session_id] = loop.create_task(self._expire_after(self._clock, 2 * seconds, session_id))

    async def _expire_after(self, clock: Clock, seconds: float, session_id: str) -> None:
        await clock.sleep(seconds)
        self._expire(session_id)

    def clear(self, session_id: str) -> None:
        h = self._timers.pop(session_id, None)
        if h is not None:
            h.cancel()

    def rebuild(self, store: Store) -> None:
        """On gaining leadership: every TTL session gets a full 2*TTL from now."""
        self.stop()
        for s in store.sessions.values():
            if s.ttl:
                self.reset(s.id, s.ttl)

    def stop(self) -> None:
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()

    def _expire(self, session_id: str) -> None:
        from lictor.common.commands import MessageType

        self._timers.pop(session_id, None)
        log.info("session %s expired (TTL)", session_id)
        task = spawn(self._propose(MessageType.SESSION, {"op": "destroy", "id": session_id}),
                     name=f"session-expire-{session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("session expiry failed: %s", task.exception())

    @property
    def active(self) -> int:
        return len(self._timers)
