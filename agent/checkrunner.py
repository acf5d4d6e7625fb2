"""Runs the agent's health checks: builds one check object per definition and reports results
into the local state (it is the checks' :class:`~lictor.agent.checks.base.CheckNotifier`).

One shared ``CheckHTTPClient`` serves every HTTP check: one bound on concurrent connections
and one set of TLS contexts for a thousand checks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lictor.agent.checks.alias import AliasCheck
from lictor.agent.checks.base import MIN_INTERVAL, Check, StatusHandler
from lictor.agent.checks.grpc import GRPCCheck
from lictor.agent.checks.h2ping import H2PingCheck
from lictor.agent.checks.http import CheckHTTPClient, HTTPCheck
from lictor.agent.checks.script import ScriptCheck
from lictor.agent.checks.tcp import TCPCheck
from lictor.agent.checks.ttl import TTLCheck
from lictor.agent.checks.udp import UDPCheck
from lictor.common.errors import ValidationError
from lictor.common.servicedef import CheckDefinition
from lictor.common.types import HealthStatus

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__ = ["CheckRunner"]

log = logging.getLogger("lictor.checks")


class CheckRunner:
    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._checks: dict[str, Check] = {}
        self._http: CheckHTTPClient | None = None

    # CheckNotifier
    def update_check(self, check_id: str, status: HealthStatus, output: str) -> None:
        self._agent.local.update_check(check_id, str(status), output)

    def _http_client(self) -> CheckHTTPClient:
        if self._http is None or self._http.closed:
            self._http = CheckHTTPClient()
        return self._http

    def add(self, check_id: str, c: CheckDefinition, *, token: str = "") -> None:
        """Start ``c``. ``token`` is the check's registration token: an alias check reads the
        catalog with it (else with the agent's token), never with whoever's request added it."""
        check = self._build(check_id, c, token=token)
        if check is None:
            return
        self._checks[check_id] = check
        check.start()

    async def remove(self, check_id: str) -> None:
        check = self._checks.pop(check_id, None)
        if check is not None:
            await check.stop()

    def ttl_update(self, check_id: str, status: str, output: str) -> None:
        check = self._checks.get(check_id)
        if not isinstance(check, TTLCheck):
            raise ValidationError(f"Check {check_id!r} is not a TTL check")
        check.set_status(HealthStatus(status), output)

    async def stop_all(self) -> None:
        for cid in list(self._checks):
            await self.remove(cid)
        if self._http is not None:
            await self._http.close()

    def __len__(self) -> int:
        return len(self._checks)

    # factory
    def _build(self, check_id: str, c: CheckDefinition, *, token: str = "") -> Check | None:
        handler = StatusHandler(check_id, self, success_before_passing=c.success_before_passing,
                                failures_before_critical=c.failures_before_critical)
        interval = c.interval or 0.0
        if 0 < interval < MIN_INTERVAL:
            log.warning("check %s: interval %.3fs is below the minimum; using %ss", check_id, interval, MIN_INTERVAL)
            interval = MIN_INTERVAL
        common: dict[str, Any] = {"handler": handler, "interval": interval}
        if c.timeout:
            common["timeout"] = c.timeout
        t = c.type
        if t == "ttl":
            return TTLCheck(check_id=check_id, notifier=self, ttl=c.ttl or 0.0,
                            initial_status=HealthStatus(c.status) if c.status else None,
                            output_max_size=c.output_max_size)
        if t == "http":
            return HTTPCheck(client=self._http_client(), url=c.http or "", method=c.method or "GET",
                             header=c.header, body=c.body, tls_skip_verify=c.tls_skip_verify,
                             tls_server_name=c.tls_server_name or None, disable_redirects=c.disable_redirects,
                             output_max_size=c.output_max_size, **common)
        if t == "tcp":
            return TCPCheck(tcp=c.tcp or "", tcp_use_tls=c.tcp_use_tls, tls_skip_verify=c.tls_skip_verify,
                            tls_server_name=c.tls_server_name or None, **common)
        if t == "udp":
            return UDPCheck(udp=c.udp or "", **common)
        if t == "grpc":
            return GRPCCheck(grpc_target=c.grpc or "", grpc_use_tls=c.grpc_use_tls,
                             tls_skip_verify=c.tls_skip_verify, tls_server_name=c.tls_server_name or None, **common)
        if t == "h2ping":
            return H2PingCheck(h2ping=c.h2ping or "", h2ping_use_tls=c.h2ping_use_tls,
                               tls_skip_verify=c.tls_skip_verify, tls_server_name=c.tls_server_name or None,
                               **common)
        if t == "script":
            return ScriptCheck(args=list(c.args), output_max_size=c.output_max_size, **common)
        if t == "alias":
            return AliasCheck(check_id=check_id, notifier=self, source=self._alias_source(c, token),
                              alias_service=c.alias_service or None, alias_node=c.alias_node or None)
        raise ValidationError(f"Check type {t!r} is not supported")

    def _alias_source(self, c: CheckDefinition, token: str) -> Any:
        agent = self._agent
        node = c.alias_node or agent.node_name
        service = c.alias_service or ""
        auth = {"token": token} if token else {}  # else agent.rpc adds the agent's token

        async def source(min_index: int) -> tuple[int, Sequence[HealthStatus] | None]:
            out = await agent.rpc("Health.NodeChecks", {"node": node, "min_index": min_index, "wait": 300.0,
                                                        "stale": True, **auth})
            idx = int(out["index"])
            if service:
                svc = await agent.rpc("Catalog.NodeServices", {"node": node, "stale": True, **auth})
                if not svc["result"] or service not in (svc["result"].get("Services") or {}):
                    return idx, None
                rows = [c for c in out["result"] if c["ServiceID"] == service]
            else:
                nodes = await agent.rpc("Catalog.NodeServices", {"node": node, "stale": True, **auth})
                if not nodes["result"]:
                    return idx, None
                rows = [c for c in out["result"] if not c["ServiceID"]]
            return idx, [HealthStatus(r["Status"]) for r in rows]

        return source
