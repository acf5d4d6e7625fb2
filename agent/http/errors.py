"""One table from Lictor errors to Consul's HTTP status codes and plain-text bodies."""

from __future__ import annotations

from lictor.common.errors import (CASFailed, Conflict, LictorError, NoLeaderError, NotFound, NotLeaderError,
                                  RPCError, ValidationError)

__all__ = ["status_for"]

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
    for cls, status in _TABLE:
        if isinstance(exc, cls):
            return status
    return 500
