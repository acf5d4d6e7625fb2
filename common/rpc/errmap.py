"""Errors across the wire, both directions, in one table (sans-I/O).

Server side: :func:`error_reply` turns what a handler raised into an ``err`` frame body.

* a :class:`LictorError` travels as its class name and message (plus ``leader`` for
  :class:`NotLeaderError`);
* anything else is a bug on the server: it travels as ``InternalError`` with a generic message
  (the traceback is logged on the server, never sent).

Client side: :func:`exception_from_reply` turns an ``err`` frame back into an exception. Only the
names in :data:`REMOTE_ERRORS` are rebuilt as their own class (so ``except NotLeaderError as e:
e.leader`` works across the wire); every other name becomes ``RemoteError("<type>: <msg>")``.
The table is an explicit allowlist: a peer can never make us instantiate an arbitrary class.

Transport-level names (``TransportError``, ``TLSError``) are deliberately *not* rebuilt: a server
that failed to reach the leader must not look, to its caller, like the caller's own connection
failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from lictor.common.errors import (
    ACLNotFoundError,
    CASFailed,
    ConfigError,
    Conflict,
    FilterError,
    LeadershipLostError,
    LictorError,
    NoLeaderError,
    NotFound,
    NotLeaderError,
    PermissionDeniedError,
    RemoteError,
    ShutdownError,
    StateError,
    ValidationError,
)
from lictor.common.rpc.framing import ErrorReply

__all__ = ["INTERNAL_ERROR", "REMOTE_ERRORS", "error_reply", "exception_from_reply"]

#: The ``type`` sent for an exception that is not a LictorError.
INTERNAL_ERROR: Final = "InternalError"
_INTERNAL_MSG: Final = "internal server error (see the server log)"

#: Wire ``type`` -> how to rebuild it on the client from (msg, leader).
REMOTE_ERRORS: Final[dict[str, Callable[[str, str | None], LictorError]]] = {
    "NotLeaderError": lambda msg, leader: NotLeaderError(leader),
    "NoLeaderError": lambda msg, leader: NoLeaderError(msg),
    "NotFound": lambda msg, leader: NotFound(msg),
    "CASFailed": lambda msg, leader: CASFailed(msg),
    "Conflict": lambda msg, leader: Conflict(msg),
    "StateError": lambda msg, leader: StateError(msg),
    "ValidationError": lambda msg, leader: ValidationError(msg),
    "FilterError": lambda msg, leader: FilterError(msg),
    "PermissionDeniedError": lambda msg, leader: PermissionDeniedError(msg),
    "ACLNotFoundError": lambda msg, leader: ACLNotFoundError(msg),
    "ConfigError": lambda msg, leader: ConfigError(msg),
    "LeadershipLostError": lambda msg, leader: LeadershipLostError(msg),
    "ShutdownError": lambda msg, leader: ShutdownError(msg),
}


def error_reply(mid: int, exc: BaseException) -> ErrorReply:
    """The ``err`` reply for request ``mid`` that failed with ``exc``."""
    if isinstance(exc, LictorError):
        leader = exc.leader if isinstance(exc, NotLeaderError) else None
        return ErrorReply(id=mid, type=type(exc).__name__, msg=str(exc), leader=leader)
    return ErrorReply(id=mid, type=INTERNAL_ERROR, msg=_INTERNAL_MSG)


def exception_from_reply(reply: ErrorReply) -> LictorError:
    """The exception a caller sees for an ``err`` reply."""
    build = REMOTE_ERRORS.get(reply.type)
    if build is not None:
        return build(reply.msg, reply.leader)
    err = RemoteError(f"{reply.type}: {reply.msg}")
    err.remote_type = reply.type  # type: ignore[attr-defined]
    return err
