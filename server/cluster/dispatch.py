"""The server RPC port's handler: Raft notes, ``Cluster.*`` formation calls and the endpoints
(run locally; the caller forwarded already). Peers are checked against the TLS policy first."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from lictor.common.errors import NoLeaderError, PermissionDeniedError, RemoteProtocolError, ValidationError
from lictor.common.rpc import PeerInfo
from lictor.server import endpoints
from lictor.server.raft.transport import RAFT_METHOD

if TYPE_CHECKING:
    from lictor.server.cluster.node import Cluster

__all__ = ["RPCDispatcher"]

log = logging.getLogger("lictor.cluster")


class RPCDispatcher:
    """The server RPC port's handler: Raft notes, Cluster.* and the endpoints (run locally)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def handle(self, method: str, args: dict[str, Any], peer: PeerInfo) -> Any:
        c = self.cluster
        if c.peer_policy is not None:
            why = c.peer_policy.denial(method, peer_tls=peer.tls, cert=peer.cert)
            if why is not None:
                log.warning("refused %s from %s: %s", method, peer.addr, why)
                raise PermissionDeniedError(f"Permission denied: {why}")
        if method == "Cluster.Hello":
            return c.handle_hello(args, peer)
        if method == "Cluster.Join":
            return await c.handle_join(args)
        if method == "Cluster.Info":
            return c.info().to_wire()
        if method in endpoints.ENDPOINTS:
            if c.server is None:
                raise NoLeaderError("server is starting")
            # The request's shape is checked against the endpoint's declaration inside
            # endpoints.call (a 400 naming the argument); anything else an endpoint raises
            # that is not a LictorError is a bug: the RPC server logs it and answers
            # InternalError (a 500), it is never passed off as the caller's mistake.
            return await endpoints.call(c.server, method, args)
        raise ValidationError(f"unknown RPC method {method!r}")

    def notify(self, method: str, args: dict[str, Any], peer: PeerInfo) -> None:
        policy = self.cluster.peer_policy
        if policy is not None:
            why = policy.denial(method, peer_tls=peer.tls, cert=peer.cert)
            if why is not None:
                raise RemoteProtocolError(f"refused {method} from {peer.addr}: {why}")  # drops it
        if method == RAFT_METHOD:
            self.cluster.transport.notify(method, args, peer)
        else:
            log.debug("ignoring note %r from %s", method, peer.addr)

