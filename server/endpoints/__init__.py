"""The server's RPC endpoints: ``"KVS.Get"``-style names mapped to async functions.

Each endpoint takes the :class:`~lictor.server.server.Server` and an argument mapping of plain,
msgpack-able values, and returns a plain mapping. Reads return ``{"index", "known_leader",
"last_contact", "consistency", "result"}`` so the HTTP layer can set Consul's headers. This is the
seam that lets a client agent (which has no server) forward the same calls over the network.

Query arguments shared by reads: ``min_index``, ``wait`` (seconds), ``stale``, ``consistent``,
``filter`` (a Consul filter expression, applied to the API-shaped rows here, on the server).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lictor.server.acl.rpc_rules import authorize_rpc, filter_rpc_result
from lictor.server.server import Server

__all__ = ["ENDPOINTS", "Endpoint", "call", "endpoint"]

Endpoint = Callable[[Server, dict[str, Any]], Awaitable[dict[str, Any]]]
ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(name: str) -> Callable[[Endpoint], Endpoint]:
    def register(fn: Endpoint) -> Endpoint:
        if name in ENDPOINTS:
            raise ValueError(f"endpoint {name} registered twice")
        ENDPOINTS[name] = fn
        return fn
    return register


async def call(server: Server, name: str, args: dict[str, Any]) -> dict[str, Any]:
    fn = ENDPOINTS.get(name)
    if fn is None:
        raise KeyError(f"unknown RPC endpoint {name}")
    # ACLs: every call, local or from the RPC port, is checked against RPC_RULES (one table,
    # server/acl/rpc_rules.py) and its list results filtered; a no-op when ACLs are disabled.
    authz = authorize_rpc(server, name, args)
    if authz is None:
        return await fn(server, args)
    return filter_rpc_result(authz, name, await fn(server, args))


def _load_all() -> None:
    from lictor.server.endpoints import catalog, kvs, operator, session, status, txn  # noqa: F401
    from lictor.server.endpoints import connect_ca  # noqa: F401
    from lictor.server.endpoints import config_entries, discovery_chain, intentions, mesh_views  # noqa: F401
    from lictor.server.endpoints import acl, autoencrypt  # noqa: F401
    from lictor.server.endpoints import coordinate  # noqa: F401
    from lictor.server.endpoints import istio  # noqa: F401  (issue 14)


_load_all()
