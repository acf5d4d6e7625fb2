"""The error hierarchy of Lictor: one root per layer, local vs remote, mapped at the boundary.

::

    LictorError
     +-- ConfigError              a config file, flag or definition is invalid (names file and key path)
     +-- ValidationError          an input from outside (HTTP body, query, RPC frame) is invalid
     |    +-- FilterError         a ?filter= expression does not parse or does not fit the data
     |    +-- PermissionDeniedError  the request's ACL token lacks a permission (403; names it)
     |    +-- ACLNotFoundError    the request's ACL token does not exist or has expired (403)
     +-- StateError               the state store refused an operation
     |    +-- NotFound            the thing named does not exist
     |    +-- CASFailed           a check-and-set lost
     |    +-- Conflict            the operation contradicts existing state (e.g. session invalid)
     +-- RPCError                 talking to a server failed
     |    +-- NotLeaderError      this server is not the leader; carries the leader's address if known
     |    +-- NoLeaderError       no leader is known (cluster without quorum)
     |    +-- TransportError      the connection failed (wraps OSError)
     |    +-- RemoteError         the remote side answered with an error
     +-- RaftError                the replicated log refused or lost an apply
     |    +-- LeadershipLostError leadership was lost before the entry committed (outcome unknown)
     |    +-- ShutdownError       the node is shutting down
     +-- ProtocolError            a peer broke a wire protocol
          +-- LocalProtocolError  we were asked to send something invalid
          +-- RemoteProtocolError the peer sent something invalid: drop that connection only

HTTP handlers turn these into Consul's status codes in one table (``lictor.agent.http.errors``).
Raft errors are raised; FSM outcomes (a failed CAS, a lock not acquired) are values, never errors.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping

__all__ = [
    "CASFailed",
    "ConfigError",
    "Conflict",
    "FilterError",
    "LeadershipLostError",
    "LictorError",
    "LocalProtocolError",
    "NoLeaderError",
    "NotFound",
    "NotLeaderError",
    "PermissionDeniedError",
    "ACLNotFoundError",
    "ProtocolError",
    "RPCError",
    "RaftError",
    "RemoteError",
    "RemoteProtocolError",
    "ShutdownError",
    "StateError",
    "TLSError",
    "TransportError",
    "ValidationError",
    "map_exceptions",
]


class LictorError(Exception):
    """Root of every error Lictor raises on purpose."""


class ConfigError(LictorError):
    """Invalid configuration. The message names the source (file or flag) and the key path."""

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None) -> None:
        self.source = source
        self.path = path
        prefix = ""
        if source:
            prefix += f"{source}: "
        if path:
            prefix += f"{path}: "
        super().__init__(prefix + message)


class ValidationError(LictorError):
    """An input from outside is invalid. ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class FilterError(ValidationError):
    """A ``?filter=`` expression is invalid; ``position`` is the 0-based offset of the error."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        self.position = position
        super().__init__(message)


class PermissionDeniedError(ValidationError):
    """The token may not do this. The message names the accessor (never the secret) and the
    missing permission, as Consul's does."""

    status = 403


class ACLNotFoundError(ValidationError):
    """The token named by the request does not exist or has expired (Consul: "ACL not found")."""

    status = 403

    def __init__(self, message: str = "ACL not found") -> None:
        super().__init__(message)


class StateError(LictorError):
    """The state store refused an operation."""


class NotFound(StateError):
    """The named object does not exist."""


class CASFailed(StateError):
    """A check-and-set lost against a newer ModifyIndex."""


class Conflict(StateError):
    """The operation contradicts existing state."""


class RPCError(LictorError):
    """Talking to a server failed."""


class NotLeaderError(RPCError):
    """This server is not the leader."""

    def __init__(self, leader: str | None = None) -> None:
        self.leader = leader
        super().__init__(f"not the leader (leader is {leader})" if leader else "not the leader")


class NoLeaderError(RPCError):
    """No cluster leader is known."""

    def __init__(self, message: str = "No cluster leader") -> None:
        super().__init__(message)


class TransportError(RPCError):
    """A connection failed; wraps the OSError that caused it."""


class TLSError(TransportError):
    """A TLS handshake or verification failed."""


class RemoteError(RPCError):
    """The remote side answered with an error message."""


class RaftError(LictorError):
    """The replicated log refused or lost an apply."""


class LeadershipLostError(RaftError):
    """Leadership was lost before the entry committed; the outcome is unknown."""


class ShutdownError(RaftError):
    """The node is shutting down."""


class ProtocolError(LictorError):
    """A wire protocol was broken."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; only that connection is dropped."""


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[LictorError]]) -> Iterator[None]:
    """Re-raise low-level exceptions as Lictor errors at an I/O boundary.

    ``with map_exceptions({OSError: TransportError, ssl.SSLError: TLSError}): ...``
    The most specific match wins (``ssl.SSLError`` is an ``OSError``).
    """
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - re-raised below
        best: type[LictorError] | None = None
        best_depth = -1
        for src, dst in mapping.items():
            if isinstance(exc, src):
                depth = len(src.__mro__)
                if depth > best_depth:
                    best, best_depth = dst, depth
        if best is None:
            raise
        raise best(str(exc) or type(exc).__name__) from exc


DEFAULT_IO_ERRORS: Mapping[type[BaseException], type[LictorError]] = {
    OSError: TransportError,
    ssl.SSLError: TLSError,
}
