"""The server: FSM + state store behind a replicated log, the RPC endpoints, and leader duties.

Every write goes through :meth:`Server.apply`, which stamps the command with the leader's clock,
hands it to the :class:`~lictor.server.replication.Replicator` and turns an FSM refusal back into
the error it carries. Reads go straight to :attr:`store` (for ``?stale`` or the default mode on
the leader) after the consistency checks in :meth:`Server.check_read`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lictor.common.clock import Clock
from lictor.common.commands import MessageType, encode_command
from lictor.common.errors import NoLeaderError, NotLeaderError
from lictor.server.fsm import FSM, HandlerBug, Rejected
from lictor.server.acl.enforce import authorize_sign
from lictor.server.acl.leader import acl_leader_duties
from lictor.server.connect.leader import ca_leader_duties
from lictor.server.leader import Member, SessionTimers, reconcile_members
from lictor.server.replication import LocalLog, Replicator
from lictor.server.state import kvs
from lictor.server.state.store import Store

__all__ = ["FSMHandlerError", "QueryMeta", "Server", "ServerConfig", "SignAuthorizer"]


class FSMHandlerError(RuntimeError):
    """An FSM handler failed with a bug (not a refusal): an internal error, a 500. Deliberately
    not a LictorError, so no layer mistakes it for the caller's fault."""

SignAuthorizer = Callable[["Server", str, str], None]
"""``(server, token, service)``: raise (a PermissionDenied error) if ``token`` may not get a
leaf certificate for ``service``."""

log = logging.getLogger("lictor.server")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    datacenter: str
    node_name: str
    rpc_address: str
    tombstone_ttl: float = 15 * 60.0
    reconcile_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class QueryMeta:
    index: int
    known_leader: bool
    last_contact: float  # seconds
    consistency: str  # "leader" | "stale" | "consistent"


class Server:
    def __init__(self, config: ServerConfig, *, replicator: Replicator | None = None,
                 members: Callable[[], list[Member]] | None = None,
                 wall: Callable[[], float] = time.time,
                 clock: Clock | None = None,
                 sign_authorizer: SignAuthorizer = authorize_sign) -> None:
        self.config = config
        self.sign_authorizer = sign_authorizer
        """Decides who may have a leaf signed (ConnectCA.Sign); the ACL rule by default. A
        field of this server, so nothing global can swap it for every server at once."""
        self.wall = wall
        """The leader's wall clock (seconds since the epoch): stamped into every command it
        proposes (TTLs, tombstone times) and read by the tombstone reaper. Injected in tests."""
        self.fsm = replicator.fsm if replicator is not None else FSM()
        self.log: Replicator = replicator or LocalLog(self.fsm, address=config.rpc_address)
        self._members = members or (lambda: [])
        self.clock = clock
        """Schedules the leader's timers (session TTLs); None: the event loop's own clock."""
        self.session_timers = SessionTimers(self.apply, clock=clock)
        self._leader_task: asyncio.Task[None] | None = None
        self._reconcile_now = asyncio.Event()
        self._undated_tombstones: dict[str, float] = {}
        self.established = False
        """True while this server is leader *and* has passed the leadership barrier (its FSM
        has applied everything committed before its term): leader routines run only then."""
        self.cluster: Any = None
        """The `lictor.server.cluster.Cluster` in server mode (None in -dev): operator endpoints
        read membership and autopilot state from it."""

    @property
    def store(self) -> Store:
        return self.fsm.store

    # ----- writes -----------------------------------------------------------------------------
    async def apply(self, msg_type: int, payload: dict[str, Any]) -> Any:
        """Replicate one command and return the FSM's value; FSM refusals are raised here."""
        data = encode_command(msg_type, payload, self.wall())
        index, outcome = await self.log.apply(data)
        if isinstance(outcome, Rejected):
            raise outcome.error
        if isinstance(outcome, HandlerBug):
            log.error("FSM handler for %s failed at index %d (rolled back on every server): %s\n%s",
                      outcome.command, index, outcome.error, outcome.traceback.rstrip())
            raise FSMHandlerError(f"{outcome.command} command at index {index} failed: {outcome.error}")
        return outcome

    # ----- reads ------------------------------------------------------------------------------
    async def check_read(self, *, stale: bool, consistent: bool) -> QueryMeta:
        """Decide whether this server may answer a read, and describe it for the response headers."""
        leader = self.log.leader()
        if consistent:
            await self.log.verify_leader()
            mode = "consistent"
        elif stale:
            mode = "stale"
        else:
            if not self.log.is_leader():
                if leader is None:
                    raise NoLeaderError()
                raise NotLeaderError(leader)
            mode = "leader"
        return QueryMeta(index=0, known_leader=leader is not None,
                         last_contact=self.log.last_contact(), consistency=mode)

    def read_meta(self, mode: str) -> QueryMeta:
        """The response headers' view now (KnownLeader, LastContact), without any check."""
        return QueryMeta(index=0, known_leader=self.log.leader() is not None,
                         last_contact=self.log.last_contact(), consistency=mode)

    # ----- leader duties ----------------------------------------------------------------------
    async def start(self) -> None:
        listen = getattr(self.log, "add_leadership_listener", None)
        if listen is not None:
            listen(self._on_leadership)
        self._leader_task = asyncio.get_running_loop().create_task(self._leader_loop())

    def trigger_reconcile(self) -> None:
        self._reconcile_now.set()

    def _on_leadership(self, is_leader: bool) -> None:
        """Leadership listener (called from the Raft loop; must not block)."""
        if not is_leader:
            self._revoke_leadership()
        self._reconcile_now.set()

    def _revoke_leadership(self) -> None:
        if self.established:
            log.info("revoking leadership: session timers stopped")
        self.established = False
        self.session_timers.stop()

    async def _establish_leadership(self) -> bool:
        """The leadership barrier: confirm leadership with a quorum and wait until this server
        has applied everything committed before its term (ReadIndex), then start the leader-only
        state (session TTL timers rebuilt from the store). False if leadership was lost."""
        try:
            await self.log.verify_leader()
        except Exception as exc:  # noqa: BLE001 - not leader any more, or no quorum yet
            log.info("leadership barrier failed: %s", exc)
            return False
        if not self.log.is_leader():
            return False
        self.session_timers.rebuild(self.store)
        self.established = True
        log.info("established leadership: %d session timers rebuilt", len(self.store.sessions))
        return True

    async def _leader_loop(self) -> None:
        """While leader: reconcile members, keep session timers, reap old tombstones. Reacts to
        leadership changes: establishes (barrier, timers) on gaining, revokes on losing."""
        reaped_upto = 0
        while True:
            try:
                if not self.log.is_leader():
                    if self.established:
                        self._revoke_leadership()
                elif not self.established and not await self._establish_leadership():
                    await asyncio.sleep(0.05)
                    continue
                if self.established and self.log.is_leader():
                    decision = reconcile_members(self.store, self._members(), datacenter=self.config.datacenter)
                    for msg_type, payload in decision.commands:
                        await self.apply(msg_type, payload)
                    if decision.commands:
                        log.info(decision.summary)
                    reaped_upto = await self._reap_tombstones(reaped_upto)
                    await ca_leader_duties(self)  # Connect CA: initialize once, prune expired roots
                    await acl_leader_duties(self)  # ACLs: builtin policy, anonymous + initial tokens, reap expired
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a leader routine must not die
                log.warning("leader routine failed: %s", exc)
            self._reconcile_now.clear()
            try:
                await asyncio.wait_for(self._reconcile_now.wait(), self.config.reconcile_interval)
            except TimeoutError:
                pass

    async def _reap_tombstones(self, reaped_upto: int) -> int:
        """Reap the tombstones older than ``tombstone_ttl``, each by its own time (the leader's
        clock carried in the delete's command), oldest first and never past a younger one."""
        store = self.store
        if not store.tombstones:
            self._undated_tombstones.clear()
            return reaped_upto
        now = self.wall()
        # tombstones restored from a snapshot that carried no times: dated when first seen here
        undated = self._undated_tombstones
        for key in store.tombstones.keys() - store.tombstone_times.keys():
            undated.setdefault(key, now)
        for key in undated.keys() - store.tombstones.keys():
            del undated[key]
        upto = kvs.tombstones_older_than(store, now - self.config.tombstone_ttl, undated)
        if upto <= 0:
            return reaped_upto
        await self.apply(MessageType.TOMBSTONE_REAP, {"index": upto})
        return upto

    async def close(self) -> None:
        if self._leader_task is not None:
            self._leader_task.cancel()
            try:
                await self._leader_task
            except asyncio.CancelledError:
                pass
        self.session_timers.stop()
        await self.log.close()
