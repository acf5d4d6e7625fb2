"""Anti-entropy: keep the catalog's view of this node equal to the agent's local state.

"What is out of sync" lives in :class:`~lictor.agent.local.state.LocalState`; this module decides
*when* to push, as a three-state machine (Consul's agent/ae)::

    FULL_SYNC --ok--> PARTIAL_SYNC <--change-- (trigger_changes)
        ^  |fail: wait retry_interval (+jitter), stay FULL_SYNC
        |  +--every interval (scaled with cluster size, jittered)--+
        +----------------------------------------------------------+

A full sync reads the node's services and checks from the catalog, marks whatever differs (or is
missing, or exists only remotely) out of sync, then pushes the changes. A partial sync pushes only
what local changes marked. Per-item errors are collected and do not stop the other items.
Randomness (stagger, jitter) comes from an injected ``rng``; ``pause()``/``resume()`` are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lictor.agent.local.state import LocalState
from lictor.common.structs import CheckRow, ServiceRow, check_to_api, service_to_agent_api

__all__ = ["SyncResult", "SyncState", "StateSyncer", "scale_interval"]

log = logging.getLogger("lictor.ae")

RPC = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
SERF_CHECK_ID = "serfHealth"
CONSUL_SERVICE_ID = "consul"
_SCALE_THRESHOLD = 128
_IGNORED = ("CreateIndex", "ModifyIndex", "ServiceName", "ServiceTags", "Node", "Datacenter")


class SyncState(enum.Enum):
    FULL_SYNC = "full"
    PARTIAL_SYNC = "partial"
    DONE = "done"


def scale_interval(interval: float, nodes: int) -> float:
    """Consul's aeScale: the full-sync interval grows with log2 of the cluster size past 128 nodes."""
    if nodes <= _SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(nodes) - math.log2(_SCALE_THRESHOLD)) + 1
    return interval * multiplier


@dataclass
class SyncResult:
    pushed: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        s = f"synced {self.pushed} items; deregistered {self.deleted}"
        if self.errors:
            s += f"; {len(self.errors)} errors: " + "; ".join(self.errors[:3])
        return s


def _comparable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in _IGNORED}


class StateSyncer:
    def __init__(self, *, local: LocalState, rpc: RPC, datacenter: str, interval: float = 60.0,
                 retry_interval: float = 15.0, cluster_size: Callable[[], int] = lambda: 1,
                 rng: random.Random | None = None) -> None:
        self.local = local
        self._rpc = rpc
        self.datacenter = datacenter
        self.interval = interval
        self.retry_interval = retry_interval
        self._cluster_size = cluster_size
        self._rng = rng or random.Random()
        self._full = asyncio.Event()
        self._changes = asyncio.Event()
        self._paused = 0
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._running = asyncio.Lock()  # held while a sync pass runs
        self.state = SyncState.FULL_SYNC
        self.last_result: SyncResult | None = None
        self.syncs = 0

    # ----- triggers -----
    def trigger_full(self) -> None:
        self._full.set()

    def trigger_changes(self) -> None:
        self._changes.set()

    def pause(self) -> None:
        self._paused += 1
        self._resumed.clear()

    def resume(self) -> None:
        if self._paused == 0:
            raise AssertionError("resume() without pause()")
        self._paused -= 1
        if self._paused == 0:
            self._resumed.set()
            self.trigger_changes()

    @contextlib.asynccontextmanager
    async def paused_for_reload(self) -> AsyncIterator[None]:
        """Pause syncing, wait for a pass in flight to end, run the body, resume (Consul pauses
        anti-entropy around a reload): no pass sees local state half-replaced."""
        self.pause()
        try:
            async with self._running:
                yield
        finally:
            self.resume()

    @property
    def paused(self) -> bool:
        return self._paused > 0

    def next_full_delay(self) -> float:
        """The jittered wait before the next periodic full sync."""
        iv = scale_interval(self.interval, self._cluster_size())
        return iv + self._rng.random() * iv / 2 if iv > 0 else 0

    # ----- the loop -----
    async def run(self) -> None:
        while True:
            await self._resumed.wait()
            if self.state is SyncState.FULL_SYNC:
                async with self._running:
                    result = await self.sync_full()
                if result.errors:
                    log.warning("anti-entropy full sync failed: %s", result.sentence())
                    await self._wait(self.retry_interval + self._rng.random() * self.retry_interval)
                    continue
                self.state = SyncState.PARTIAL_SYNC
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.next_full_delay()
            while self.state is SyncState.PARTIAL_SYNC:
                # wake for the next periodic full sync, or earlier when a deferred output falls due
                wait = deadline - loop.time()
                due = self.local.next_deferred_in()
                if due is not None:
                    wait = min(wait, due)
                reason = await self._wait(max(wait, 0.0))
                if reason == "full" or (reason == "timeout" and loop.time() >= deadline):
                    self.state = SyncState.FULL_SYNC
                    break
                await self._resumed.wait()
                async with self._running:
                    if self.paused:
                        continue  # paused while waiting for the lock: resume() triggers a pass
                    self.local.flush_deferred()
                    result = await self.sync_changes()
                if result.errors:
                    log.warning("anti-entropy partial sync: %s", result.sentence())

    async def _wait(self, timeout: float) -> str:
        """Wait for a trigger; returns "full", "changes" or "timeout"."""
        full = asyncio.ensure_future(self._full.wait())
        changes = asyncio.ensure_future(self._changes.wait())
        try:
            done, _ = await asyncio.wait({full, changes}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            full.cancel()
            changes.cancel()
        if self._full.is_set():
            self._full.clear()
            self._changes.clear()
            return "full"
        if self._changes.is_set():
            self._changes.clear()
            return "changes"
        return "timeout"

    # ----- sync work -----
    def _node_args(self) -> dict[str, Any]:
        loc = self.local
        return {"node": loc.node_name, "id": loc.node_id, "address": loc.node_address,
                "datacenter": self.datacenter, "tagged_addresses": loc.tagged_addresses,
                "node_meta": loc.node_meta}

    async def sync_full(self) -> SyncResult:
        """Compare with the catalog, mark differences out of sync, then push them."""
        loc = self.local
        try:
            svc_out = await self._rpc("Catalog.NodeServices", {"node": loc.node_name, "stale": True})
            chk_out = await self._rpc("Health.NodeChecks", {"node": loc.node_name, "stale": True})
        except Exception as exc:  # noqa: BLE001 - reported as a result, retried later
            return SyncResult(errors=[f"reading catalog: {exc}"])
        remote_node = (svc_out["result"] or {}).get("Node")
        remote_services: dict[str, Any] = (svc_out["result"] or {}).get("Services") or {}
        remote_checks = {c["CheckID"]: c for c in chk_out["result"]}

        # as Consul: ID, address, tagged addresses and meta (services are then pushed with
        # SkipNodeUpdate, so a node difference must be found here)
        loc.node_in_sync = bool(remote_node) and remote_node.get("Address") == loc.node_address and (
            remote_node.get("Meta") or {}) == loc.node_meta and remote_node.get("ID", "") == loc.node_id and (
            not loc.tagged_addresses or remote_node.get("TaggedAddresses") == loc.tagged_addresses)
        for sid, remote in remote_services.items():
            if sid == CONSUL_SERVICE_ID:  # the leader registers it on every server node (as Consul)
                continue
            if sid not in loc.services:
                loc.services[sid] = _tombstone_service(sid)
        for sid, st in loc.services.items():
            if st.deleted:
                continue
            remote = remote_services.get(sid)
            mine = service_to_agent_api(ServiceRow(node=loc.node_name, **st.payload))
            st.in_sync = remote is not None and _comparable(remote) == _comparable(mine)
        for cid, remote in remote_checks.items():
            if cid == SERF_CHECK_ID:
                continue
            if cid not in loc.checks:
                loc.checks[cid] = _tombstone_check(cid)
        for cid, st in loc.checks.items():
            if st.deleted:
                continue
            remote = remote_checks.get(cid)
            mine = check_to_api(CheckRow(node=loc.node_name, **st.payload))
            if remote is not None and st.deferred:
                # Consul: a deferred output is pushed when its interval ends, not by this sweep
                remote, mine = remote | {"Output": ""}, mine | {"Output": ""}
            st.in_sync = remote is not None and _comparable(remote) == _comparable(mine)
        self.syncs += 1
        return await self.sync_changes()

    async def sync_changes(self) -> SyncResult:
        """Push what is out of sync. The node first (with the agent token), then each service and
        check with the token it was registered with (Consul's ``serviceToken``/``checkToken``),
        so a service needs only ``service:write`` once the node is in the catalog."""
        loc = self.local
        res = SyncResult()
        node = loc.node_name
        if not loc.node_in_sync:
            try:
                await self._rpc("Catalog.Register", self._node_args())
                loc.node_in_sync = True
                res.pushed += 1
            except Exception as exc:  # noqa: BLE001
                res.errors.append(f"node: {exc}")
        for sid, st in list(loc.services.items()):
            if st.in_sync:
                continue
            try:
                if st.deleted:
                    await self._rpc("Catalog.Deregister", _with_token({"node": node, "service_id": sid}, st.token))
                    del loc.services[sid]
                    res.deleted += 1
                    continue
                # what is pushed, kept apart from the live state: it may change during the RPC
                checks = [(cid, c.payload) for cid, c in loc.checks.items()
                          if not c.deleted and c.payload.get("service_id") == sid]
                args = self._node_args() | {"service": st.payload, "skip_node_update": loc.node_in_sync,
                                            "checks": [dict(p) for _, p in checks]}
                await self._rpc("Catalog.Register", _with_token(args, st.token))
                st.in_sync = not st.deleted
                loc.node_in_sync = True
                for cid, pushed in checks:
                    loc.mark_check_synced(cid, pushed)
                res.pushed += 1
            except Exception as exc:  # noqa: BLE001 - per-item errors do not abort the run
                res.errors.append(f"service {sid}: {exc}")
        for cid, st in list(loc.checks.items()):
            if st.in_sync:
                continue
            try:
                if st.deleted:
                    await self._rpc("Catalog.Deregister", _with_token({"node": node, "check_id": cid}, st.token))
                    del loc.checks[cid]
                    res.deleted += 1
                    continue
                payload = st.payload
                args = self._node_args() | {"checks": [dict(payload)], "skip_node_update": loc.node_in_sync}
                await self._rpc("Catalog.Register", _with_token(args, st.token))
                loc.mark_check_synced(cid, payload)
                loc.node_in_sync = True
                res.pushed += 1
            except Exception as exc:  # noqa: BLE001
                res.errors.append(f"check {cid}: {exc}")
        self.last_result = res
        if res.pushed or res.deleted:
            log.debug("anti-entropy: %s", res.sentence())
        return res


def _with_token(args: dict[str, Any], token: str) -> dict[str, Any]:
    """``args`` with the registration's own token; without one the agent's token is used."""
    return {**args, "token": token} if token else args


def _tombstone_service(sid: str) -> Any:
    from lictor.agent.local.state import ServiceState
    return ServiceState(payload={"id": sid, "service": sid}, in_sync=False, deleted=True)


def _tombstone_check(cid: str) -> Any:
    from lictor.agent.local.state import CheckState
    return CheckState(payload={"check_id": cid}, in_sync=False, deleted=True)
