"""DiscoveryChain.Get: the compiled chain of one service (blocking on any config entry change)."""

from __future__ import annotations

from typing import Any

from lictor.common.duration import format_duration, parse_duration
from lictor.server.configentry.chain import compile_chain
from lictor.server.configentry.entries import DEFAULT_NS, TABLE
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet


def trust_domain(store: Store) -> str:
    """The CA's trust domain (``<cluster-id>.consul``), or "" before the CA is initialised."""
    cfg = store.ext.get("ca_config", {}).get("config")
    cluster_id = getattr(cfg, "cluster_id", "") or (cfg.get("cluster_id", "") if isinstance(cfg, dict) else "")
    return f"{cluster_id}.consul" if cluster_id else ""


@endpoint("DiscoveryChain.Get", args={"name": str})
async def get(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    name = a["name"]
    dc = a.get("compile_dc") or server.config.datacenter
    timeout = a.get("override_connect_timeout") or ""
    if timeout:
        timeout = format_duration(parse_duration(timeout, what="OverrideConnectTimeout"))
    protocol = a.get("override_protocol") or ""

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, TABLE, "ca_config")
        chain = compile_chain(store, name, namespace=a.get("namespace") or DEFAULT_NS, datacenter=dc,
                              trust_domain=trust_domain(store), override_protocol=protocol,
                              override_connect_timeout=timeout)
        return store.index(TABLE), chain
    return await blocking_read(server, a, q, shared="DiscoveryChain.Get")
