"""The proxycfg manager: one ProxyState per connect-proxy registered on this agent.

It follows the agent's local state (``sync()`` runs, debounced, after every local change): a new
proxy registration starts a ProxyState, a changed one replaces it, a removed one stops it. The
xDS server asks ``get(proxy_id)``; a proxy that is not registered here gets None.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lictor.agent.proxycfg.cache import AgentCache
from lictor.agent.proxycfg.state import ProxyState, SnapshotCell
from lictor.server.configentry.intentions import default_allow

__all__ = ["Manager"]

log = logging.getLogger("lictor.proxycfg")


class _MeshOnly:
    """An EntryView holding only the mesh entry (what ``default_allow`` reads)."""

    def __init__(self, mesh: dict[str, Any] | None) -> None:
        self._mesh = mesh

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self._mesh if kind == "mesh" else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        return [self._mesh] if kind == "mesh" and self._mesh else []


class Manager:
    def __init__(self, agent: Any, *, leafcerts: Any, coalesce: float | None = None) -> None:
        self.agent = agent
        self.leafcerts = leafcerts
        self.cache = AgentCache(agent.rpc)
        self.coalesce = coalesce
        self.states: dict[str, ProxyState] = {}
        self._regs: dict[str, tuple[dict[str, Any], str]] = {}
        self.cells: dict[str, SnapshotCell] = {}
        self._pending = False
        self._published = 0  # snapshots published by cells since closed

    def default_allow(self, mesh: dict[str, Any] | None) -> bool:
        acl = self.agent.acl.config
        return default_allow(_MeshOnly(mesh), acl_enabled=bool(acl.enabled),
                             acl_default_policy=str(acl.default_policy))

    def start(self) -> None:
        local = self.agent.local
        previous = local.on_change

        def on_change() -> None:
            previous()
            self.sync_soon()
        local.on_change = on_change
        self.sync()

    def sync_soon(self) -> None:
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self.sync)

    def sync(self) -> None:
        self._pending = False
        local = self.agent.local
        wanted: dict[str, tuple[dict[str, Any], str]] = {}
        for sid, st in local.services.items():
            if st.deleted or st.payload.get("kind") not in ("connect-proxy", "ingress-gateway"):
                continue
            wanted[sid] = (st.payload, st.token or self.agent.acl.agent_token())
        for sid in list(self.states):
            if sid not in wanted or wanted[sid] != self._regs.get(sid):
                self.states.pop(sid).stop()
                self._regs.pop(sid, None)
                if sid not in wanted:
                    gone = self.cells.pop(sid)
                    self._published += gone.version
                    gone.close()  # its xDS streams end
                log.info("proxycfg: stopped watching proxy %s", sid)
        for sid, (payload, token) in wanted.items():
            if sid in self.states:
                continue
            kw: dict[str, Any] = {} if self.coalesce is None else {"coalesce": self.coalesce}
            st = ProxyState(registration=payload, cache=self.cache, leafcerts=self.leafcerts,
                            datacenter=self.agent.datacenter, token=token, default_allow=self.default_allow,
                            node_address=self.agent.address, cell=self.cells.setdefault(sid, SnapshotCell()),
                            **kw)
            self.states[sid] = st
            self._regs[sid] = (payload, token)
            st.start()
            log.info("proxycfg: watching proxy %s (for %s)", sid, st.service)

    def gauges(self) -> dict[str, float]:
        """proxycfg's figures for /v1/agent/metrics: proxies watched, snapshots published (over
        the agent's life, including replaced states), shared watches and the RPCs they made."""
        return {"lictor.proxycfg.proxies": float(len(self.states)),
                "lictor.proxycfg.snapshots_built": float(self._published + sum(c.version for c in self.cells.values())),
                "lictor.proxycfg.build_errors": float(sum(1 for s in self.states.values() if s.error)),
                "lictor.proxycfg.watches": float(self.cache.watches),
                "lictor.proxycfg.watch_fetches": float(self.cache.fetches)}

    def get(self, proxy_id: str) -> ProxyState | None:
        return self.states.get(proxy_id)

    def cell(self, proxy_id: str) -> SnapshotCell | None:
        return self.cells.get(proxy_id)

    async def close(self) -> None:
        for st in self.states.values():
            st.stop()
        self.states.clear()
        for c in self.cells.values():
            c.close()
        self.cells.clear()
        await self.cache.close()
