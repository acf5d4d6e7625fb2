"""Errors across the wire, both directions, in one table (sans-I/O).

Server side: :func:`error_reply` turns what a handler raised into an ``err`` frame body.

* a :class:`LictorError` travels as its class name (``type``), its message, a stable error
  ``code`` (the class's ``error_code``, else its name), ``base`` (the nearest class in its MRO
  that both sides know, from :data:`REMOTE_ERRORS`), the HTTP ``status`` it carries (a
  :class:`ValidationError`'s 400/401/403/413/429 ...) and ``leader`` for :class:`NotLeaderError`;
* anything else is a bug on the server: it travels as ``InternalError`` with a generic message
  (the traceback is logged on the server, never sent).

Client side: :func:`exception_from_reply` turns an ``err`` frame back into an exception. A name
in :data:`REMOTE_ERRORS` is rebuilt as its own class (so ``except NotLeaderError as e:
e.leader`` works across the wire); a class only the server knows (``RateLimitedError``,
``PolicyParseError``, ``JWTError``, ``ChainError`` ...) is rebuilt as its ``base`` with the same
message and status, so a client agent answers its HTTP caller exactly as a server agent would
(same status, same text). Without a known ``type`` or ``base`` (``TxnAborted``, a protocol
error) it becomes ``RemoteError("<type>: <msg>")`` with the sender's status and ``remote_msg``
(the HTTP layer answers with that message alone). Either way the rebuilt error keeps
``remote_type`` and ``error_code``, and forwarding it again (server -> leader -> server ->
client) sends the same ``type``/``code``/``status``/``msg``.

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

__all__ = ["INTERNAL_ERROR", "REMOTE_ERRORS", "error_code", "error_reply", "exception_from_reply"]

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

#: The classes of :data:`REMOTE_ERRORS` by name (to find an exception's nearest known base).
_KNOWN: Final[dict[str, type[LictorError]]] = {
    cls.__name__: cls
    for cls in (NotLeaderError, NoLeaderError, NotFound, CASFailed, Conflict, StateError, ValidationError,
                FilterError, PermissionDeniedError, ACLNotFoundError, ConfigError, LeadershipLostError,
                ShutdownError)
}


def error_code(exc: BaseException) -> str:
    """The stable code of ``exc``: what a peer sent, else the class's ``error_code``, else its
    class name (``InternalError`` for a non-Lictor exception)."""
    if not isinstance(exc, LictorError):
        return INTERNAL_ERROR
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) and code else type(exc).__name__


def _base(exc: LictorError) -> str | None:
    for cls in type(exc).__mro__:
        if _KNOWN.get(cls.__name__) is cls:
            return cls.__name__
    return None


def _status(exc: LictorError) -> int | None:
    status = getattr(exc, "status", None)
    return status if type(status) is int and 100 <= status <= 599 else None


def error_reply(mid: int, exc: BaseException) -> ErrorReply:
    """The ``err`` reply for request ``mid`` that failed with ``exc``."""
    if isinstance(exc, LictorError):
        leader = exc.leader if isinstance(exc, NotLeaderError) else None
        remote = getattr(exc, "remote_type", None)  # an error we are passing on keeps its origin
        etype = remote if isinstance(remote, str) and remote else type(exc).__name__
        if isinstance(exc, RemoteError) and remote:  # passing on an error we could not rebuild
            rmsg = getattr(exc, "remote_msg", None)
            msg = rmsg if isinstance(rmsg, str) else str(exc).removeprefix(f"{remote}: ")
            return ErrorReply(id=mid, type=etype, msg=msg, leader=leader, code=error_code(exc),
                              status=_status(exc))
        return ErrorReply(id=mid, type=etype, msg=str(exc), leader=leader, code=error_code(exc),
                          base=_base(exc), status=_status(exc))
    return ErrorReply(id=mid, type=INTERNAL_ERROR, msg=_INTERNAL_MSG, code=INTERNAL_ERROR)


def exception_from_reply(reply: ErrorReply) -> LictorError:
    """The exception a caller sees for an ``err`` reply: the class named by ``type`` if known,
    else its ``base``, else :class:`RemoteError`; with the sender's status and code."""
    build = REMOTE_ERRORS.get(reply.type)
    if build is None and reply.base is not None:
        build = REMOTE_ERRORS.get(reply.base)
    err: LictorError
    marks: dict[str, object] = {"error_code": reply.code or reply.type}
    if build is not None:
        err = build(reply.msg, reply.leader)
    else:
        err = RemoteError(f"{reply.type}: {reply.msg}")
        marks["remote_msg"] = reply.msg  # what the server's HTTP layer would have said
    if reply.status is not None and isinstance(err, (ValidationError, RemoteError)):
        marks["status"] = reply.status
    if type(err).__name__ != reply.type:
        marks["remote_type"] = reply.type
    for name, value in marks.items():  # plain attributes a peer's error carries (see the docstring)
        setattr(err, name, value)
    return err
