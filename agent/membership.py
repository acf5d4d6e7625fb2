"""The agent's LAN gossip membership: a ``GossipNode`` wired to the rest of the agent.

::

    config (bind, ports.serf_lan, retry_join, encrypt, reconnect_timeout)
      |
      v
    Membership ---- GossipNode (common/gossip) ---- UDP+TCP :8301, tags below
      | member events -> records (kept past the core's forgetting: failed members stay until
      |                  reconnect_timeout, then are "reaped"; left members likewise)
      |   -> servers(): alive role=consul members of our dc  -> ServerPool (client agents' RPC)
      |                                                     -> Cluster formation (servers' Hello
      |                                                        targets, for bootstrap_expect)
      |   -> server.trigger_reconcile() (the leader writes nodes + serfHealth, server/members.py)
      |   -> syncer.trigger_full() when a client first sees a server
      | USER messages (lictor.agent.user_events): user events, force-leave, keyring operations
      | probe acks -> CoordinateKeeper (Vivaldi); our coordinate rides on our acks
      `-- retry_join loop, snapshot of peers for rejoin, graceful leave

retry_join is a gossip join list, as Consul's: LAN gossip addresses (``host``, ``host:port``, DNS
names; port 8301 when none is given), all tried every retry_interval until one member answers.
Servers then find each other in the member tags (``Cluster`` formation says Hello to them on the
RPC port); nothing dials a retry_join entry on the RPC port. The one exception is explicit: an
entry no gossip join reaches is probed once on the RPC protocol (``probe_rpc_port``, after the
connection is accepted), so a legacy entry naming a server's RPC port (``host:8300``) gets one
clear warning and is replaced by that server's gossip address.

A graceful leave of a server is three steps driven by ``Agent.leave``: ``Cluster.prepare_leave``
(hand leadership over), :meth:`Membership.leave` (gossip), ``Cluster.wait_removed`` (until the
leader, seeing this member *left*, has taken it out of the Raft configuration).

Tags (Consul's names): ``role`` consul|node, ``dc``, ``id`` (node id), ``build``, ``vsn``,
``port`` (server RPC port; servers only), ``bootstrap`` = 1 / ``expect`` = n (servers), ``kh``
(short hashes of the installed gossip keys, primary first: how ``keyring -list`` counts the
members holding each key).

Keyring rollout choice: a gossip broadcast (USER message, encrypted with the current primary
key like all gossip), not an RPC fan-out - client agents have no RPC listener, and gossip
already reaches every member. Each member applies the operation, persists its keyring and
re-announces its ``kh`` tag; the operator's agent waits (up to 5 s) until every alive member's
tag shows the result and reports how many members hold each key, as ``consul keyring`` does.

Test knobs: ``LICTOR_GOSSIP_FAST=1`` uses ``SwimConfig.fast`` timings (probe every 0.2 s, failure
declared in about 1-2 s, reconnect every 1 s) for loopback clusters; ``LICTOR_GOSSIP_SUSPICION_MULT``
overrides the suspicion multiplier (a longer confirmation window on an overloaded test box).
Never needed in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lictor.agent.coordinates import CoordinateKeeper
from lictor.agent.events import UserEvent
from lictor.agent.user_events import (
    LamportClock,
    SeenIds,
    decode_intent,
    encode_intent,
    event_from_intent,
    event_intent,
    event_matches,
    new_id,
    validate_filters,
)
from lictor.common.errors import ConfigError, Conflict, ValidationError
from lictor.common.gossip.driver import GossipJoinError, GossipNode, parse_address
from lictor.common.gossip.keyring import Keyring, KeyringError, decode_key, encode_key
from lictor.common.gossip.swim import EventKind, MemberEvent, ProbeAck, SwimConfig
from lictor.common.rpc.conn import format_addr
from lictor.server.cluster import DEFAULT_SERF_LAN_PORT, ProbeVerdict, parse_join_address, probe_rpc_port

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__ = ["MemberRecord", "Membership", "STATUS_CODES"]

log = logging.getLogger("lictor.gossip")

#: Consul's /v1/agent/members Status: none, alive, leaving, left, failed
STATUS_CODES = {"none": 0, "alive": 1, "leaving": 2, "left": 3, "failed": 4}
#: retry_join failures in the first seconds (peers still starting) are logged at INFO only.
JOIN_GRACE = 10.0


@dataclass(slots=True)
class MemberRecord:
    name: str
    host: str
    port: int
    tags: dict[str, str]
    status: str  # alive | failed | left
    since: float  # time.monotonic() of the last status change

    def to_api(self) -> dict[str, Any]:
        return {"Name": self.name, "Addr": self.host, "Port": self.port, "Tags": dict(self.tags),
                "Status": STATUS_CODES.get(self.status, 0),
                "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4}


def key_hash(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass(slots=True)
class _Listeners:
    on_change: list[Callable[[MemberEvent], None]] = field(default_factory=list)


class Membership:
    """LAN gossip for one agent (servers and clients alike). ``start`` after the HTTP API,
    ``stop`` (crash-like) or ``leave`` (graceful) at the end."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        cfg = agent.config
        self.config = cfg
        self.name = cfg.node_name
        self.host = agent.address
        self.is_server = agent.server is not None
        self.node: GossipNode | None = None
        self.records: dict[str, MemberRecord] = {}
        self.reaped: dict[str, float] = {}  # name -> when; reported to the leader as left
        self.history: dict[str, deque[str]] = {}
        self.listeners = _Listeners()
        self.clock = LamportClock()
        self.seen = SeenIds()
        self.leaving = False
        self.left = False
        self.reconnect_timeout = cfg.reconnect_timeout
        self.keyring = self._load_keyring()
        self.coords = CoordinateKeeper(node=self.name, rpc=agent.rpc, cluster_size=self.size)
        self.coords.on_change = self._set_ack_payload
        self.counts: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[Any]] = []
        self._snapshot_dirty = False

    # ---------------------------------------------------------------- config

    def swim_config(self) -> SwimConfig:
        fast = os.environ.get("LICTOR_GOSSIP_FAST", "") not in ("", "0")
        rt = max(self.reconnect_timeout, 1.0)
        over: dict[str, object] = {"reconnect_timeout": rt}
        mult = os.environ.get("LICTOR_GOSSIP_SUSPICION_MULT")  # test knob: slower to declare failure
        if mult:
            over["suspicion_mult"] = max(1, int(mult))
        if fast:
            return SwimConfig.fast(self.name, **over)
        return SwimConfig.lan(self.name, **over)

    def tags(self) -> dict[str, str]:
        cfg, a = self.config, self.agent
        t = {"role": "consul" if self.is_server else "node", "dc": cfg.datacenter, "id": cfg.node_id,
             "build": f"{a.version}:lictor", "vsn": "2", "segment": ""}
        if self.is_server:
            t["port"] = str(cfg.ports.server)
            if cfg.bootstrap or cfg.dev:
                t["bootstrap"] = "1"
            if cfg.bootstrap_expect:
                t["expect"] = str(cfg.bootstrap_expect)
        if self.keyring is not None:
            t["kh"] = ",".join(key_hash(decode_key(k)) for k in self.keyring.list())
        return t

    def _serf_dir(self) -> str | None:
        d = self.config.data_dir
        if not d:
            return None
        path = os.path.join(d, "serf")
        os.makedirs(path, exist_ok=True)
        return path

    def _keyring_path(self) -> str | None:
        d = self._serf_dir()
        return os.path.join(d, "local.keyring") if d else None

    def _load_keyring(self) -> Keyring | None:
        """The persisted keyring wins over ``encrypt`` (as Consul's ``local.keyring``)."""
        path = self._keyring_path()
        try:
            if path and os.path.exists(path):
                with open(path, encoding="ascii") as f:
                    keys = json.load(f)
                if not isinstance(keys, list) or not keys:
                    raise ConfigError(f"{path}: expected a JSON list of base64 keys")
                if self.config.encrypt and decode_key(self.config.encrypt) not in \
                        [decode_key(k) for k in keys]:
                    log.warning("encrypt: ignored, the keyring in %s does not contain it", path)
                return Keyring(keys, primary=keys[0])
            if self.config.encrypt:
                ring = Keyring([self.config.encrypt])
                self._save_keyring(ring)
                return ring
        except KeyringError as exc:
            raise ConfigError(f"encrypt: {exc}") from None
        return None

    def _save_keyring(self, ring: Keyring) -> None:
        path = self._keyring_path()
        if not path:
            return
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            json.dump(ring.list(), f)
        os.replace(tmp, path)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        cfg = self.config
        self.node = GossipNode(config=self.swim_config(), bind=(cfg.bind_addr, cfg.ports.serf_lan),
                               advertise=(self.host, cfg.ports.serf_lan), tags=self.tags(),
                               keyring=self.keyring, on_event=self._on_event,
                               on_user=self._on_user, on_ack=self._on_ack)
        await self.node.start()
        self._set_ack_payload(self.coords.payload())
        self.records[self.name] = MemberRecord(self.name, self.host, self.node.address[1], self.tags(),
                                               "alive", time.monotonic())
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._join_loop(), name="gossip-retry-join"))
        self._tasks.append(loop.create_task(self._maintain(), name="gossip-maintain"))
        self._tasks.append(loop.create_task(self.coords.run(), name="coordinate-sync"))
        log.info("gossip: listening on %s:%d (encrypted: %s)", cfg.bind_addr, self.node.address[1],
                 self.keyring is not None)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._write_snapshot()
        if self.node is not None:
            await self.node.stop()

    async def leave(self) -> bool:
        """Graceful leave: broadcast it and wait until gossiped (bounded); the others then
        report us as left and the leader deregisters this node."""
        if self.node is None or self.left:
            return True
        self.leaving = True
        timeout = 2.0 if os.environ.get("LICTOR_GOSSIP_FAST") else 5.0
        ok = await self.node.leave(timeout)
        self.left = True
        self.records[self.name].status = "left"
        self._write_snapshot()
        log.info("gossip: left the cluster (%s)", "confirmed" if ok else "timed out")
        return ok

    # ---------------------------------------------------------------- joining

    async def join(self, addrs: list[str]) -> int:
        """Join through these gossip addresses (host, host:port, DNS names); returns how many
        answered. GossipJoinError if none did."""
        if self.node is None:
            raise ValidationError("gossip is not running")
        for a in addrs:
            parse_address(a)  # ValueError -> 400 below
        return await self.node.join(addrs, attempts=1)

    def _retry_join_addresses(self) -> list[str]:
        """The configured retry_join entries as gossip ``host:port`` (port 8301 when none is
        given); malformed ones are reported once and left out."""
        out: list[str] = []
        for text in self.config.retry_join:
            try:
                host, port = parse_join_address(text)
            except ValueError as exc:
                log.error("retry_join: %s: ignored", exc)
                continue
            a = format_addr(host, port)
            if a not in out:
                out.append(a)
        return out

    async def _join_loop(self) -> None:
        """Consul's retry_join: a LAN gossip join list, tried (each entry at once) every
        retry_interval until one member answers; gossip then spreads the rest, servers
        included (formation finds them in the member tags). Peers from the rejoin snapshot are
        tried too. An entry no gossip join reaches is probed once on the server RPC protocol
        (``probe_rpc_port``): a legacy entry naming a server's RPC port is replaced by that
        server's gossip address, with one warning saying how to fix the config."""
        cfg = self.config
        configured = self._retry_join_addresses()
        snap = self._read_snapshot()
        peers: list[str] = []
        if snap and (not snap.get("left") or cfg.rejoin_after_leave):
            peers = [a for a in snap.get("peers", []) if isinstance(a, str)]
        elif snap and snap.get("left"):
            log.info("gossip: left the cluster last time; not rejoining previous peers "
                     "(set rejoin_after_leave to do so)")
        if not configured and not peers:
            return
        classified: set[str] = set()  # entries whose protocol is known: never probed again
        started = time.monotonic()
        said: tuple[int, str] = (0, "")
        attempt = 0
        while True:
            attempt += 1
            addrs = configured + [a for a in peers if a not in configured]
            failed = await self._join_each(addrs)
            fixes = await self._classify(configured, failed, classified)
            for old, new in fixes.items():
                i = configured.index(old)
                if new is None or new in configured:
                    del configured[i]
                else:
                    configured[i] = new
            if len(failed) < len(addrs):
                log.info("gossip: joined through %d of %d addresses", len(addrs) - len(failed), len(addrs))
                return
            if any(new is not None for new in fixes.values()):
                continue  # a corrected entry: try it at once
            if not configured and not peers:
                log.error("retry_join: no usable address left")
                return
            if cfg.retry_max and attempt >= cfg.retry_max:
                log.error("retry_join: gave up after %d attempts: could not join %s", attempt,
                          "; ".join(f"{a}: {why}" for a, why in failed.items()))
                return
            # peers still starting are normal for a while: INFO at first, WARNING when it
            # lasts; each distinct failure once
            sentence = "; ".join(f"{a}: {why}" for a, why in failed.items())
            level = logging.WARNING if time.monotonic() - started >= JOIN_GRACE else logging.INFO
            if (level, sentence) != said:
                said = (level, sentence)
                log.log(level, "retry_join: no member answered yet (%s); retrying every %gs",
                        sentence, cfg.retry_interval)
            await asyncio.sleep(cfg.retry_interval * random.uniform(0.9, 1.1))

    async def _join_each(self, addrs: list[str]) -> dict[str, str]:
        """Gossip-join every address at once; {address: why} for those that did not answer."""
        node = self.node

        async def one(a: str) -> str | None:
            if node is None:
                return "gossip is not running"
            try:
                await node.join([a], attempts=1)
            except GossipJoinError as exc:
                return str(exc).removeprefix("could not join: ").removeprefix(f"{a}: ")
            except (OSError, ValueError) as exc:
                return str(exc)
            return None

        results = await asyncio.gather(*(one(a) for a in addrs))
        return {a: why for a, why in zip(addrs, results, strict=True) if why is not None}

    async def _classify(self, configured: list[str], failed: dict[str, str],
                        classified: set[str]) -> dict[str, str | None]:
        """Probe the configured entries gossip could not join (once each, until a connection is
        accepted): {entry: its server's gossip address, or None to drop it} for the entries that
        turned out to be server RPC ports. One message per such entry."""
        todo = [a for a in configured if a in failed and a not in classified]
        if not todo:
            return {}
        tls = self.agent.tls
        ctx = tls.rpc_client_context if tls is not None else None
        hostname = tls.rpc_server_name if ctx is not None and tls is not None else None
        probes = await asyncio.gather(*(probe_rpc_port(a, ssl=ctx, server_hostname=hostname)
                                        for a in todo))
        fixes: dict[str, str | None] = {}
        for a, probe in zip(todo, probes, strict=True):
            if probe.verdict is ProbeVerdict.UNREACHABLE:
                continue  # down or still starting: ask again next round
            classified.add(a)
            if probe.verdict is ProbeVerdict.NOT_RPC:
                continue  # a gossip port (or something else) that did not answer: keep trying
            info = probe.info
            if info is not None and info.serf_addr:
                log.warning("retry_join: %s is the server RPC port of %s, not a gossip address: "
                            "joining its gossip address %s instead. retry_join takes LAN gossip "
                            "addresses (port %d when none is given): change the entry to %s",
                            a, info.node_name, info.serf_addr, DEFAULT_SERF_LAN_PORT, info.serf_addr)
                classified.add(info.serf_addr)
                fixes[a] = info.serf_addr
            else:
                log.error("retry_join: %s answers the server RPC protocol, not gossip: ignoring "
                          "it. retry_join takes LAN gossip addresses (port %d when none is "
                          "given)%s", a, DEFAULT_SERF_LAN_PORT,
                          f" ({probe.detail})" if probe.detail else "")
                fixes[a] = None
        return fixes

    # ---------------------------------------------------------------- snapshot for rejoin

    def _snapshot_path(self) -> str | None:
        d = self._serf_dir()
        return os.path.join(d, "local.snapshot") if d else None

    def _read_snapshot(self) -> dict[str, Any] | None:
        path = self._snapshot_path()
        if not path or not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                v = json.load(f)
            return v if isinstance(v, dict) else None
        except (OSError, ValueError):
            return None

    def _write_snapshot(self) -> None:
        path = self._snapshot_path()
        if not path:
            return
        peers = [format_addr(r.host, r.port) for r in self.records.values()
                 if r.status == "alive" and r.name != self.name]
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump({"peers": peers, "left": self.left}, f)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            log.warning("gossip: cannot write %s: %s", path, exc)
        self._snapshot_dirty = False

    # ---------------------------------------------------------------- events

    def _on_event(self, ev: MemberEvent) -> None:
        m = ev.member
        now = time.monotonic()
        h = self.history.setdefault(m.name, deque(maxlen=32))
        h.append(ev.kind.value)
        self.counts[f"event.{ev.kind.value}"] += 1
        rec = self.records.get(m.name)
        if ev.kind in (EventKind.JOIN, EventKind.ALIVE, EventKind.UPDATE):
            status = "alive"
        elif ev.kind is EventKind.FAILED:
            status = "failed"
        elif ev.kind is EventKind.LEAVE:
            status = "left"
        else:  # SUSPECT: Serf still reports the member alive
            log.info("gossip: member suspect: %s", m.name)
            return
        if rec is None:
            rec = self.records[m.name] = MemberRecord(m.name, m.addr[0], m.addr[1], dict(m.tags), status, now)
        else:
            if rec.status != status:
                rec.since = now
            rec.status, rec.host, rec.port, rec.tags = status, m.addr[0], m.addr[1], dict(m.tags)
        if status == "alive":
            self.reaped.pop(m.name, None)
        else:
            self.coords.client.forget(m.name)
        if ev.kind is not EventKind.UPDATE:
            log.info("gossip: member %s: %s (%s:%d)", ev.kind.value, m.name, m.addr[0], m.addr[1])
        self._snapshot_dirty = True
        for fn in self.listeners.on_change:
            try:
                fn(ev)
            except Exception:  # noqa: BLE001 - a listener bug must not stop gossip
                log.exception("gossip listener failed")

    def _on_ack(self, ack: ProbeAck) -> None:
        self.coords.observe(ack.node, ack.rtt, ack.payload)

    def _set_ack_payload(self, payload: bytes) -> None:
        if self.node is not None and self.node._core is not None:
            self.node.set_ack_payload(payload)

    async def _maintain(self) -> None:
        """Reap failed/left members after reconnect_timeout; persist peers for rejoin."""
        step = min(1.0, max(0.1, self.reconnect_timeout / 10))
        while True:
            await asyncio.sleep(step)
            self.reap(time.monotonic())
            if self._snapshot_dirty:
                self._write_snapshot()

    def reap(self, now: float) -> list[str]:
        out = []
        for name, r in list(self.records.items()):
            if r.status in ("failed", "left") and now - r.since >= self.reconnect_timeout:
                del self.records[name]
                if r.status == "failed":
                    self.reaped[name] = now
                    out.append(name)
                    log.info("gossip: reaped %s: failed for longer than reconnect_timeout", name)
        # remember reaped names long enough for every leader to deregister them
        for name, t in list(self.reaped.items()):
            if now - t > max(600.0, self.reconnect_timeout):
                del self.reaped[name]
        if out:
            self._notify_reconcile()
        return out

    def _notify_reconcile(self) -> None:
        srv = self.agent.server
        if srv is not None:
            srv.trigger_reconcile()

    # ---------------------------------------------------------------- views

    def members(self) -> list[MemberRecord]:
        if self.name in self.records and self.node is not None:
            me = self.records[self.name]
            me.tags = self.tags()
        return sorted(self.records.values(), key=lambda r: r.name)

    def size(self) -> int:
        return max(1, sum(1 for r in self.records.values() if r.status == "alive"))

    def servers(self) -> list[str]:
        """RPC addresses of the alive servers of our datacenter, as gossip knows them."""
        out = []
        for r in self.records.values():
            t = r.tags
            if r.status == "alive" and t.get("role") == "consul" and t.get("dc") == self.config.datacenter:
                try:
                    out.append(format_addr(r.host, int(t.get("port", "8300"))))
                except ValueError:
                    continue
        return sorted(out)

    def stats(self) -> dict[str, str]:
        n = self.node
        st = {"members": str(len(self.records)),
              "failed": str(sum(1 for r in self.records.values() if r.status == "failed")),
              "left": str(sum(1 for r in self.records.values() if r.status == "left")),
              "encrypted": str(self.keyring is not None).lower(),
              "event_time": str(self.clock.time)}
        if n is not None and n._core is not None:
            st["health_score"] = str(n.core.awareness)
            st["member_time"] = str(n.core.incarnation)
            for k, v in n.counters.items():
                st[k] = str(v)
        return st

    # ---------------------------------------------------------------- force-leave

    def force_leave(self, name: str, *, prune: bool = False) -> None:
        if name == self.name:
            raise ValidationError("cannot force-leave this agent itself; use leave")
        rec = self.records.get(name)
        if rec is None and name not in self.reaped:
            raise Conflict(f"agent: No node found with name {name!r}")  # Consul: 500, not 404
        self._apply_force_leave(name, prune)
        self._broadcast({"k": "fl", "id": new_id(), "node": name, "prune": prune})

    def _apply_force_leave(self, name: str, prune: bool) -> None:
        rec = self.records.get(name)
        if self.node is not None:
            self.node.force_leave(name)
        if rec is not None and rec.status != "alive":
            rec.status, rec.since = "left", time.monotonic()
            log.info("gossip: force-leave: %s marked left", name)
        if prune and rec is not None and rec.status != "alive":
            del self.records[name]
            self.reaped[name] = time.monotonic()
        self._notify_reconcile()

    # ---------------------------------------------------------------- user messages

    def _broadcast(self, intent: dict[str, Any]) -> None:
        self.seen.first_time(intent["id"])
        if self.node is not None:
            self.node.broadcast_user(intent["id"], encode_intent(intent))

    def _on_user(self, payload: bytes) -> None:
        v = decode_intent(payload)
        if v is None:
            self.counts["user.bad"] += 1
            return
        if not self.seen.first_time(v["id"]):
            self.counts["user.dup"] += 1
            return
        self.counts[f"user.{v['k']}"] += 1
        if self.node is not None:  # re-gossip first sightings (Serf's rebroadcast)
            self.node.broadcast_user(v["id"], payload)
        kind = v["k"]
        if kind == "ev":
            ev = event_from_intent(v)
            if ev is not None:
                self.clock.witness(ev.ltime)
                self._deliver(ev)
        elif kind == "fl" and isinstance(v.get("node"), str) and v["node"] != self.name:
            self._apply_force_leave(v["node"], bool(v.get("prune")))
        elif kind == "key" and isinstance(v.get("op"), str) and isinstance(v.get("key"), str):
            try:
                self._apply_key_op(v["op"], v["key"])
            except KeyringError as exc:
                log.warning("keyring %s from gossip refused: %s", v["op"], exc)

    def fire_event(self, name: str, payload: bytes | None, *, node_filter: str = "",
                   service_filter: str = "", tag_filter: str = "") -> UserEvent:
        try:
            validate_filters(node_filter, service_filter, tag_filter)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        ev = UserEvent(id=new_id(), name=name, payload=payload, node_filter=node_filter,
                       service_filter=service_filter, tag_filter=tag_filter,
                       ltime=self.clock.increment())
        self._broadcast(event_intent(ev))
        self._deliver(ev)
        return ev

    def _deliver(self, ev: UserEvent) -> None:
        local = self.agent.local
        services = [(str(s.get("service") or s.get("name") or ""), list(s.get("tags") or ()))
                    for s in local.live_services().values()]
        if event_matches(ev, node=self.name, services=services):
            self.agent.events.deliver(ev)
            self.counts["events.delivered"] += 1
        else:
            self.counts["events.filtered"] += 1

    # ---------------------------------------------------------------- keyring

    def _apply_key_op(self, op: str, key: str) -> None:
        ring = self.keyring
        if ring is None:
            raise KeyringError("gossip encryption is not enabled on this agent")
        if op == "install":
            ring.install(key)
        elif op == "use":
            ring.use(key)
        elif op == "remove":
            ring.remove(key)
        else:
            raise KeyringError(f"unknown keyring operation {op!r}")
        self._save_keyring(ring)
        if self.node is not None:
            self.node.update_tags(self.tags())
        log.info("keyring: %s done", op)

    async def keyring_op(self, op: str, key: str, *, wait: float = 5.0) -> dict[str, Any]:
        """install/use/remove here and on every member (gossip); waits until the alive members'
        ``kh`` tags agree (or ``wait``) and returns the list view."""
        if self.keyring is None:
            raise ValidationError("Gossip encryption is not enabled on this agent (no encrypt key)")
        try:
            raw = decode_key(key)
            self._apply_key_op(op, key)
        except KeyringError as exc:
            raise ValidationError(str(exc)) from None
        # the gossip packet is sealed with the primary key; after "use" others may not have
        # switched yet, but they hold the new key (install came first), so they can open it.
        self._broadcast({"k": "key", "id": new_id(), "op": op, "key": encode_key(raw)})
        h = key_hash(raw)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            alive = [r for r in self.members() if r.status == "alive"]
            hashes = [r.tags.get("kh", "").split(",") for r in alive]
            if op == "install" and all(h in x for x in hashes):
                break
            if op == "use" and all(x and x[0] == h for x in hashes):
                break
            if op == "remove" and all(h not in x for x in hashes):
                break
            await asyncio.sleep(0.1)
        return self.keyring_list()

    def keyring_list(self) -> dict[str, Any]:
        if self.keyring is None:
            raise ValidationError("Gossip encryption is not enabled on this agent (no encrypt key)")
        alive = [r for r in self.members() if r.status == "alive"]
        mine = {key_hash(decode_key(k)): k for k in self.keyring.list()}
        keys: Counter[str] = Counter()
        primary: Counter[str] = Counter()
        for r in alive:
            hs = [x for x in r.tags.get("kh", "").split(",") if x]
            for i, x in enumerate(hs):
                label = mine.get(x, f"<unknown key {x}>")
                keys[label] += 1
                if i == 0:
                    primary[label] += 1
        return {"WAN": False, "Datacenter": self.config.datacenter, "Segment": "",
                "Keys": dict(keys), "PrimaryKeys": dict(primary), "NumNodes": len(alive),
                "Messages": {}}
