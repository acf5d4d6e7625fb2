"""LocalState: the truth for this node's services and checks, with per-item sync flags.

Each service and check carries ``in_sync`` (the catalog has exactly this) and ``deleted`` (the
catalog must forget it). Mutations flip the flags and call ``on_change``; the anti-entropy
syncer (agent/ae.py) decides *when* to push. :meth:`LocalState.update_check` keeps check output
updates from flooding the servers: when only the output changed, the item stays in sync until
``check_update_interval`` has passed since the last push of that check (Consul's deferred sync),
while a status change is pushed at once. A check that starts deferring calls ``on_change`` once so
the syncer can plan to wake at :meth:`LocalState.next_deferred_in` and :meth:`flush_deferred` it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lictor.common.types import HealthStatus

__all__ = ["CheckState", "LocalState", "ServiceState"]


@dataclass(slots=True)
class ServiceState:
    payload: dict[str, Any]  # ServiceRow kwargs (snake_case), what the catalog should hold
    in_sync: bool = False
    deleted: bool = False
    token: str = ""


@dataclass(slots=True)
class CheckState:
    payload: dict[str, Any]  # CheckRow kwargs (snake_case)
    in_sync: bool = False
    deleted: bool = False
    token: str = ""
    critical_since: float | None = None
    deregister_after: float | None = None  # seconds; deregister the service when critical this long
    last_synced: float = 0.0
    deferred: bool = False  # an output-only change waits for check_update_interval


@dataclass
class LocalState:
    node_name: str
    check_update_interval: float = 300.0
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[], None] = lambda: None
    services: dict[str, ServiceState] = field(default_factory=dict)
    checks: dict[str, CheckState] = field(default_factory=dict)
    node_in_sync: bool = False
    # node-level data pushed with every registration
    node_address: str = ""
    node_id: str = ""
    node_meta: dict[str, str] = field(default_factory=dict)
    tagged_addresses: dict[str, str] = field(default_factory=dict)

    # ----- services -----
    def add_service(self, payload: dict[str, Any], *, token: str = "") -> None:
        self.services[payload["id"]] = ServiceState(payload=payload, token=token)
        self.on_change()

    def remove_service(self, service_id: str) -> bool:
        st = self.services.get(service_id)
        if st is None or st.deleted:
            return False
        st.deleted = True
        st.in_sync = False
        for cid, c in self.checks.items():
            if c.payload.get("service_id") == service_id and not c.deleted:
                c.deleted = True
                c.in_sync = False
        self.on_change()
        return True

    def service(self, service_id: str) -> dict[str, Any] | None:
        st = self.services.get(service_id)
        return None if st is None or st.deleted else st.payload

    def live_services(self) -> dict[str, dict[str, Any]]:
        return {sid: st.payload for sid, st in self.services.items() if not st.deleted}

    # ----- checks -----
    def add_check(self, payload: dict[str, Any], *, token: str = "", deregister_after: float | None = None) -> None:
        old = self.checks.get(payload["check_id"])
        st = CheckState(payload=payload, token=token, deregister_after=deregister_after)
        if payload.get("status") == HealthStatus.CRITICAL:
            st.critical_since = old.critical_since if old and old.critical_since else self.clock()
        self.checks[payload["check_id"]] = st
        self.on_change()

    def remove_check(self, check_id: str) -> bool:
        st = self.checks.get(check_id)
        if st is None or st.deleted:
            return False
        st.deleted = True
        st.in_sync = False
        self.on_change()
        return True

    def check(self, check_id: str) -> dict[str, Any] | None:
        st = self.checks.get(check_id)
        return None if st is None or st.deleted else st.payload

    def live_checks(self) -> dict[str, dict[str, Any]]:
        return {cid: st.payload for cid, st in self.checks.items() if not st.deleted}

    def update_check(self, check_id: str, status: str, output: str) -> bool:
        """Record a check result. Returns False for an unknown or deleted check."""
        st = self.checks.get(check_id)
        if st is None or st.deleted:
            return False
        old = st.payload
        if old.get("status") == status and old.get("output") == output:
            return True
        now = self.clock()
        if status == HealthStatus.CRITICAL:
            if st.critical_since is None:
                st.critical_since = now
        else:
            st.critical_since = None
        st.payload = {**old, "status": status, "output": output}
        if old.get("status") == status and self.check_update_interval > 0 and st.in_sync:
            # output only: defer unless the interval since the last push has passed
            if now - st.last_synced < self.check_update_interval:
                if not st.deferred:
                    st.deferred = True
                    self.on_change()  # not to push now: so the syncer learns when this falls due
                return True
        st.in_sync = False
        st.deferred = False
        self.on_change()
        return True

    def next_deferred_in(self) -> float | None:
        """Seconds until the first deferred output update falls due (0 if one is due); None if none waits."""
        due = [st.last_synced + self.check_update_interval for st in self.checks.values()
               if st.deferred and not st.deleted]
        return max(min(due) - self.clock(), 0.0) if due else None

    def flush_deferred(self) -> int:
        """Mark deferred output updates whose interval has passed as out of sync."""
        now = self.clock()
        n = 0
        for st in self.checks.values():
            if st.deferred and not st.deleted and now - st.last_synced >= self.check_update_interval:
                st.deferred = False
                st.in_sync = False
                n += 1
        if n:
            self.on_change()
        return n

    def critical_services_to_reap(self) -> list[str]:
        """Services with a check critical for longer than its deregister_critical_service_after."""
        now = self.clock()
        out = []
        for st in self.checks.values():
            sid = st.payload.get("service_id")
            if (not st.deleted and sid and st.deregister_after is not None and st.critical_since is not None
                    and now - st.critical_since > st.deregister_after):
                out.append(sid)
        return sorted(set(out))

    # ----- sync bookkeeping -----
    def out_of_sync(self) -> bool:
        return (not self.node_in_sync or any(not s.in_sync for s in self.services.values())
                or any(not c.in_sync for c in self.checks.values()))

    def mark_check_synced(self, check_id: str, payload: dict[str, Any]) -> None:
        """The catalog now holds ``payload`` for this check. A change made while it was being pushed
        keeps the check out of sync, except an output-only one: that waits for the interval, as if
        it had come just after the push (Consul holds its lock while syncing, so it would have)."""
        st = self.checks.get(check_id)
        if st is None or st.deleted:
            return
        if st.payload is payload:
            st.deferred = False  # the push carried the latest output
        elif self.check_update_interval > 0 and _without_output(st.payload) == _without_output(payload):
            st.deferred = True  # the syncer looks at next_deferred_in() after every sync
        else:
            return
        st.in_sync = True
        st.last_synced = self.clock()

    def replace_payload(self, check_id: str, **changes: Any) -> None:
        st = self.checks.get(check_id)
        if st is not None:
            st.payload = {**st.payload, **changes}
            st.in_sync = False
            self.on_change()


def _without_output(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "output"}
