"""One table from Lictor errors to Consul's HTTP status codes and plain-text bodies."""

from __future__ import annotations

from lictor.common.errors import (CASFailed, Conflict, LictorError, NoLeaderError, NotFound, NotLeaderError,
                                  RPCError, ValidationError)

__all__ = ["INTERNAL_ERROR_TEXT", "status_for", "text_for"]

#: The body of a 500 for a bug (ours, or a server's that reached us over RPC as ``InternalError``).
INTERNAL_ERROR_TEXT = "Internal error"

_TABLE: list[tuple[type[LictorError], int]] = [
    (NotFound, 404),
    (CASFailed, 409),
    (Conflict, 500),  # Consul answers contradictions (e.g. a critical check on session create) with 500
    (NoLeaderError, 500),
    (NotLeaderError, 500),
    (RPCError, 500),
]


def status_for(exc: LictorError) -> int:
    if isinstance(exc, ValidationError):
        return exc.status
    status = getattr(exc, "status", None)  # an error rebuilt from RPC keeps the server's status
    if type(status) is int:
        return status
    for cls, status in _TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def text_for(exc: LictorError) -> str:
    """The plain-text body: the error's message; a server's internal error (reached over RPC)
    reads as this agent's own would, so client and server agents answer alike."""
    if getattr(exc, "error_code", None) == "InternalError":
        return INTERNAL_ERROR_TEXT
    remote_msg = getattr(exc, "remote_msg", None)  # a RemoteError: the server's own words
    return remote_msg if isinstance(remote_msg, str) else str(exc)
