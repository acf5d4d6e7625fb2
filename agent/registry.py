"""The agent's local services and checks: registration, maintenance and the config-file set.

::

    HTTP /v1/agent/service|check/*  --decoded, authorized-->  ServiceRegistry
    config files (start, reload)    --parsed-------------->      |-- LocalState (what anti-entropy pushes)
                                                                 `-- CheckRunner (runs checks, reports into LocalState)

A registration is planned first (:meth:`ServiceRegistry.plan_service` expands the sidecar and
returns every service row it will write), then authorized by the caller against that plan, then
applied: what is authorized is exactly what is executed. Each service and check keeps the token
it was registered with; anti-entropy syncs it with that token.

Config-file definitions are tracked (``config_services``/``config_checks``) so a reload replaces
exactly them. A reload validates every new definition first, then swaps the set with
anti-entropy paused, so the catalog never sees the services removed half-way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lictor.agent.checkrunner import CheckRunner
from lictor.agent.local.state import LocalState
from lictor.common.errors import NotFound, ValidationError
from lictor.common.servicedef import (CheckDefinition, ServiceDefinition, check_row_payload, expand_sidecar,
                                      service_row_payload)
from lictor.common.types import HealthStatus

if TYPE_CHECKING:
    from lictor.agent.ae import StateSyncer
    from lictor.common.config import RuntimeConfig

__all__ = ["NODE_MAINT_CHECK_ID", "SERVICE_MAINT_PREFIX", "ServiceRegistry"]

log = logging.getLogger("lictor.agent")

NODE_MAINT_CHECK_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
DEFAULT_MAINT_REASON = "Maintenance mode is enabled for this {what}, but no reason was provided. This is a default message."


class ServiceRegistry:
    """Owns the agent's LocalState and CheckRunner. ``host`` is what the check runner needs from
    the agent (``local``, ``node_name``, ``rpc`` for alias checks); ``config`` returns the live
    RuntimeConfig (script-check switches)."""

    def __init__(self, host: Any, *, config: Callable[[], RuntimeConfig], node_name: str, address: str,
                 check_update_interval: float) -> None:
        self._config = config
        self.node_name = node_name
        self.address = address
        self.local = LocalState(node_name=node_name, check_update_interval=check_update_interval)
        self.checks = CheckRunner(host)
        self.config_services: set[str] = set()
        self.config_checks: set[str] = set()

    # ----- services -----------------------------------------------------------------------------
    def plan_service(self, defn: ServiceDefinition) -> list[ServiceDefinition]:
        """The service rows registering ``defn`` writes: the service itself, then its sidecar
        (with its final name, ID, port and proxy destination). Nothing changes yet."""
        used = {int(p.get("port") or 0) for p in self.local.live_services().values()}
        own = self.local.service(defn.id)
        sidecar = expand_sidecar(defn, used_ports=used - {int(own.get("port") or 0) if own else 0},
                                 node_address=self.address)
        services = [defn.without_sidecar() if sidecar is not None else defn]
        if sidecar is not None:
            services.append(sidecar)
        return services

    async def register_service(self, defn: ServiceDefinition, *, token: str = "",
                               replace_existing_checks: bool = False, from_config: bool = False) -> None:
        """Plan and apply (no authorization: config files and internal callers)."""
        await self.apply_services(self.plan_service(defn), token=token,
                                  replace_existing_checks=replace_existing_checks, from_config=from_config)

    async def apply_services(self, services: Sequence[ServiceDefinition], *, token: str = "",
                             replace_existing_checks: bool = False, from_config: bool = False) -> None:
        """Add or replace the planned services and their checks in the local state."""
        for svc in services:
            for c in svc.checks:
                self._check_allowed(c, from_config=from_config)
        for svc in services:
            payload = service_row_payload(svc)
            existing = {cid for cid, c in self.local.live_checks().items() if c.get("service_id") == svc.id}
            self.local.add_service(payload, token=token)
            wanted = []
            for c in svc.checks:
                row = check_row_payload(c, service_id=svc.id)
                wanted.append(row["check_id"])
                await self._add_check(c, row, token=token)
            if replace_existing_checks:
                for cid in existing - set(wanted):
                    await self.remove_check(cid)
            if from_config:
                self.config_services.add(svc.id)

    async def reap_critical(self, period: float = 1.0) -> None:
        """Deregister services whose checks stayed critical past deregister_critical_service_after."""
        while True:
            await asyncio.sleep(period)
            for sid in self.local.critical_services_to_reap():
                log.info("deregistering service %s: critical for longer than deregister_critical_service_after", sid)
                await self.remove_service(sid)

    async def remove_service(self, service_id: str) -> bool:
        for cid, c in list(self.local.live_checks().items()):
            if c.get("service_id") == service_id:
                await self.checks.remove(cid)
        return self.local.remove_service(service_id)

    # ----- checks -------------------------------------------------------------------------------
    def _check_allowed(self, c: CheckDefinition, *, from_config: bool) -> None:
        if c.type == "script":
            cfg = self._config()
            allowed = cfg.enable_script_checks or (from_config and cfg.enable_local_script_checks)
            if not allowed:
                raise ValidationError("Scheduling script checks is disabled: set enable_script_checks "
                                      "(or enable_local_script_checks for checks from config files)")

    def plan_check(self, c: CheckDefinition) -> dict[str, Any]:
        """The check row registering ``c`` writes (nothing changes yet). Whether its service
        exists is checked on registration, after authorization: a refused caller learns nothing."""
        return check_row_payload(c, service_id=c.service_id)

    async def register_check(self, c: CheckDefinition, *, token: str = "", from_config: bool = False,
                             row: dict[str, Any] | None = None) -> str:
        self._check_allowed(c, from_config=from_config)
        if c.service_id and self.local.service(c.service_id) is None:
            raise NotFound(f"ServiceID {c.service_id!r} does not exist")
        row = row if row is not None else self.plan_check(c)
        await self._add_check(c, row, token=token)
        if from_config:
            self.config_checks.add(row["check_id"])
        return str(row["check_id"])

    async def _add_check(self, c: CheckDefinition, row: dict[str, Any], *, token: str) -> None:
        cid = row["check_id"]
        await self.checks.remove(cid)
        old = self.local.check(cid)
        if old is not None and c.type != "ttl":
            # keep the last known status across a re-registration, as Consul does
            row = {**row, "status": old.get("status", row["status"]), "output": old.get("output", "")}
        self.local.add_check(row, token=token, deregister_after=c.deregister_critical_service_after)
        self.checks.add(cid, c, token=token)

    async def remove_check(self, check_id: str) -> bool:
        await self.checks.remove(check_id)
        return self.local.remove_check(check_id)

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        if self.local.check(check_id) is None:
            raise NotFound(f"Unknown check ID {check_id!r}. Ensure that the check ID is passed, not the check name.")
        self.checks.ttl_update(check_id, status, output)

    async def stop(self) -> None:
        await self.checks.stop_all()

    # ----- maintenance --------------------------------------------------------------------------
    def enable_node_maintenance(self, reason: str, *, token: str = "") -> None:
        self.local.add_check({"check_id": NODE_MAINT_CHECK_ID, "name": "Node Maintenance Mode",
                              "notes": reason or DEFAULT_MAINT_REASON.format(what="node"),
                              "status": HealthStatus.CRITICAL.value,
                              "type": "maintenance", "output": "", "service_id": ""}, token=token)

    def disable_node_maintenance(self) -> None:
        self.local.remove_check(NODE_MAINT_CHECK_ID)

    def enable_service_maintenance(self, service_id: str, reason: str, *, token: str = "") -> None:
        if self.local.service(service_id) is None:
            raise NotFound(f"No service registered with ID {service_id!r}")
        self.local.add_check({"check_id": SERVICE_MAINT_PREFIX + service_id, "name": "Service Maintenance Mode",
                              "notes": reason or DEFAULT_MAINT_REASON.format(what="service"),
                              "status": HealthStatus.CRITICAL.value, "type": "maintenance", "output": "",
                              "service_id": service_id}, token=token)

    def disable_service_maintenance(self, service_id: str) -> None:
        if self.local.service(service_id) is None:
            raise NotFound(f"No service registered with ID {service_id!r}")
        self.local.remove_check(SERVICE_MAINT_PREFIX + service_id)

    # ----- config files -------------------------------------------------------------------------
    async def load_config_definitions(self, services: Sequence[ServiceDefinition],
                                      checks: Sequence[CheckDefinition]) -> None:
        """Register the config files' services and checks, awaited in order: an error (a bad
        sidecar port range, a script check while they are disabled) reaches the caller."""
        for d in services:
            await self.register_service(d, token=d.token or "", from_config=True)
        for c in checks:
            await self.register_check(c, token=c.token or "", from_config=True)

    def validate_config_definitions(self, services: Sequence[ServiceDefinition],
                                    checks: Sequence[CheckDefinition], *, config: RuntimeConfig) -> None:
        """Refuse, before anything changes, definitions ``config`` would not let us register."""
        for c in [*checks, *(c for d in services for c in d.checks),
                  *(c for d in services if d.sidecar_service is not None for c in d.sidecar_service.checks)]:
            if c.type == "script" and not (config.enable_script_checks or config.enable_local_script_checks):
                raise ValidationError(f"check {c.id or c.name!r}: script checks are disabled: set "
                                      "enable_local_script_checks (or enable_script_checks)")

    async def replace_config_definitions(self, services: Sequence[ServiceDefinition],
                                         checks: Sequence[CheckDefinition], *, syncer: StateSyncer) -> None:
        """Swap the config-file services and checks for new ones, with anti-entropy paused (and
        any sync in flight finished first) so the catalog sees only the before and the after."""
        async with syncer.paused_for_reload():
            for sid in list(self.config_services):
                await self.remove_service(sid)
            for cid in list(self.config_checks):
                await self.remove_check(cid)
            self.config_services.clear()
            self.config_checks.clear()
            await self.load_config_definitions(services, checks)
