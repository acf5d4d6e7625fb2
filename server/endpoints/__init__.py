"""The server's RPC endpoints: ``"KVS.Get"``-style names mapped to async functions.

Each endpoint takes the :class:`~lictor.server.server.Server` and an argument mapping of plain,
msgpack-able values, and returns a plain mapping. Reads return ``{"index", "known_leader",
"last_contact", "consistency", "result"}`` so the HTTP layer can set Consul's headers. This is the
seam that lets a client agent (which has no server) forward the same calls over the network.

Query arguments shared by reads: ``min_index``, ``wait`` (seconds), ``stale``, ``consistent``,
``filter`` (a Consul filter expression, applied to the API-shaped rows here, on the server).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lictor.common.errors import ValidationError
from lictor.server.acl.rpc_rules import acl_row_predicate, authorize_rpc, filter_rpc_result
from lictor.server.server import Server

__all__ = ["ENDPOINTS", "WRITES", "Endpoint", "Shape", "call", "check_args", "endpoint", "is_write"]

Endpoint = Callable[[Server, dict[str, Any]], Awaitable[dict[str, Any]]]
Shape = type | tuple[type, ...]
"""The type(s) an argument may have; ``None`` (or absent) is always allowed for optional ones."""
ENDPOINTS: dict[str, Endpoint] = {}
SHAPES: dict[str, tuple[Mapping[str, Shape], Mapping[str, Shape]]] = {}
"""Per endpoint: (required arguments, optional arguments) and their types, checked by
:func:`check_args` before the endpoint runs. A malformed request is a 400 naming the field; a
KeyError or TypeError inside the endpoint is then a bug, and surfaces as a 500."""
#: Arguments every read shares; their types are checked for every endpoint.
QUERY_ARGS: Mapping[str, Shape] = {"min_index": int, "wait": (int, float), "stale": bool,
                                   "consistent": bool, "token": str, "filter": str}
WRITES: set[str] = set()
"""Endpoints declared ``write=True``: they change state (a Raft proposal, a Raft membership or
leadership change, a signed certificate). Every caller that must know reads it here: the
server's forwarding (lictor.server.cluster) and the client agents' pool (lictor.agent.rpcclient)
never re-send a write whose connection broke after the request left, since it may have run."""


def endpoint(name: str, *, write: bool = False, args: Mapping[str, Shape] | None = None,
             optional: Mapping[str, Shape] | None = None) -> Callable[[Endpoint], Endpoint]:
    """Register an endpoint under `name`; ``write=True`` when it changes anything (tested:
    tests/unit/server/test_endpoint_registry.py finds every endpoint that proposes to Raft).
    ``args`` are required arguments and ``optional`` optional ones, with their types."""
    def register(fn: Endpoint) -> Endpoint:
        if name in ENDPOINTS:
            raise ValueError(f"endpoint {name} registered twice")
        ENDPOINTS[name] = fn
        SHAPES[name] = (dict(args or {}), dict(optional or {}))
        if write:
            WRITES.add(name)
        return fn
    return register


def _type_names(shape: Shape) -> str:
    types = shape if isinstance(shape, tuple) else (shape,)
    return " or ".join("nil" if t is type(None) else t.__name__ for t in types)


def _check(name: str, key: str, value: Any, shape: Shape) -> None:
    types = shape if isinstance(shape, tuple) else (shape,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise ValidationError(f"{name}: {key} must be {_type_names(shape)}, got {type(value).__name__}")


def check_args(name: str, args: Any) -> None:
    """Validate a request's shape against the endpoint's declaration (``ValidationError``, a
    400, naming the argument). The boundary for local callers and the RPC port alike."""
    if not isinstance(args, dict):
        raise ValidationError(f"{name}: arguments must be a map, got {type(args).__name__}")
    required, optional = SHAPES.get(name, ({}, {}))
    for key, shape in required.items():
        if args.get(key) is None:
            raise ValidationError(f"{name}: missing argument {key!r}")
        _check(name, key, args[key], shape)
    for table in (QUERY_ARGS, optional):
        for key, shape in table.items():
            value = args.get(key)
            if value is not None:
                _check(name, key, value, shape)


def is_write(name: str) -> bool:
    """Whether a call to `name` may change state. A name no endpoint registered counts as a
    write: what we cannot classify is never retried."""
    return name in WRITES or name not in ENDPOINTS


async def call(server: Server, name: str, args: dict[str, Any]) -> dict[str, Any]:
    fn = ENDPOINTS.get(name)
    if fn is None:
        raise KeyError(f"unknown RPC endpoint {name}")
    check_args(name, args)
    # ACLs: every call, local or from the RPC port, is checked against RPC_RULES (one table,
    # server/acl/rpc_rules.py) and its list results filtered; a no-op when ACLs are disabled.
    authz = authorize_rpc(server, name, args)
    if authz is None:
        return await fn(server, args)
    may_read = acl_row_predicate(authz, name) if args.get("filter") else None
    if may_read is None:
        return filter_rpc_result(authz, name, await fn(server, args))
    # a user ?filter: ACL filtering goes first, inside the endpoint (make_filter)
    report = {"dropped": False}
    out = filter_rpc_result(authz, name, await fn(server, {**args, "acl_prefilter": (may_read, report)}))
    return {**out, "results_filtered_by_acls": True} if report["dropped"] else out


def _load_all() -> None:
    from lictor.server.endpoints import catalog, kvs, operator, session, status, txn  # noqa: F401
    from lictor.server.endpoints import connect_ca  # noqa: F401
    from lictor.server.endpoints import config_entries, discovery_chain, intentions, mesh_views  # noqa: F401
    from lictor.server.endpoints import acl, autoencrypt  # noqa: F401
    from lictor.server.endpoints import coordinate  # noqa: F401
    from lictor.server.endpoints import internal  # noqa: F401  (the web UI's whole-catalog views)
    from lictor.server.endpoints import prepared_query  # noqa: F401


_load_all()
