"""An error that crosses RPC answers the HTTP client exactly as it would have on the server
(issue 16, defect 5): same status, same text, same stable code, whatever its class.

Each case encodes the server's exception into a real frame, decodes it as a client would and
compares what the HTTP layer makes of both (``status_for``/``text_for``).
"""

from __future__ import annotations

import msgpack
import pytest

from lictor.agent.http.errors import status_for, text_for
from lictor.common.errors import (ACLNotFoundError, CASFailed, LictorError, NotFound, PermissionDeniedError,
                                  RemoteError, ValidationError)
from lictor.common.rpc.errmap import error_code, error_reply, exception_from_reply
from lictor.common.rpc.framing import ErrorReply, FrameDecoder, encode_frame, validate_reply
from lictor.server.acl.authmethod import JWTError
from lictor.server.acl.rules import PolicyParseError
from lictor.server.configentry.chain import ChainError
from lictor.server.connect.leader import RateLimitedError
from lictor.server.state.txn import TxnAborted


def across_the_wire(exc: BaseException) -> LictorError:
    """Server: error_reply -> frame bytes; client: decode -> validate -> rebuild."""
    dec = FrameDecoder()
    (obj,) = dec.feed(encode_frame(error_reply(7, exc).to_wire()))
    reply = validate_reply(obj)
    assert isinstance(reply, ErrorReply)
    return exception_from_reply(reply)


SERVER_ERRORS = [
    pytest.param(ValidationError("Request body too large", status=413), 413, id="413-too-large"),
    pytest.param(ValidationError("ACL support disabled", status=401), 401, id="401-acl-disabled"),
    pytest.param(RateLimitedError(), 429, id="429-rate-limited"),
    pytest.param(PermissionDeniedError("Permission denied: token lacks 'key:write'"), 403, id="403-denied"),
    pytest.param(ACLNotFoundError(), 403, id="403-acl-not-found"),
    pytest.param(JWTError("failed to validate JWT: expired"), 403, id="403-jwt"),
    pytest.param(PolicyParseError("Failed to parse ACL rules: key_prefix \"\" policy 'bogus'"), 400,
                 id="400-policy-parse"),
    pytest.param(ChainError("service-resolver 'web' redirects in a loop"), 400, id="400-chain"),
    pytest.param(NotFound("Node not found"), 404, id="404-not-found"),
    pytest.param(CASFailed("index changed"), 409, id="409-cas"),
    pytest.param(TxnAborted([{"OpIndex": 0, "What": "key 'x' does not exist"}]), 500, id="500-txn-aborted"),
    pytest.param(KeyError("a bug"), 500, id="500-internal"),
]


def _http(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, LictorError):
        return status_for(exc), text_for(exc)
    return 500, "Internal error"  # what agent/http/app.py answers for a bug in-process


@pytest.mark.parametrize(("exc", "status"), SERVER_ERRORS)
def test_client_answers_as_the_server_would(exc: BaseException, status: int) -> None:
    assert _http(exc)[0] == status  # the in-process (server agent) answer
    back = across_the_wire(exc)
    assert _http(back) == _http(exc)


@pytest.mark.parametrize(("exc", "status"), SERVER_ERRORS)
def test_the_error_class_and_code_survive(exc: BaseException, status: int) -> None:
    back = across_the_wire(exc)
    assert error_code(back) == error_code(exc)
    if isinstance(exc, ValidationError):
        assert isinstance(back, ValidationError)  # `except ValidationError` still catches it
    if isinstance(exc, NotFound):
        assert isinstance(back, NotFound)


def test_server_only_classes_have_stable_codes() -> None:
    assert [error_code(e) for e in (RateLimitedError(), PolicyParseError("x"), JWTError("x"), ChainError("x"),
                                    TxnAborted([{"What": "x"}]))] == [
        "RateLimited", "PolicyParse", "JWTInvalid", "ChainInvalid", "TxnAborted"]


def test_passing_an_error_on_keeps_its_origin() -> None:
    """A follower forwarding to the leader, then answering its client: the second hop sends the
    same type, code and status as the first."""
    first = error_reply(1, RateLimitedError())
    second = error_reply(2, exception_from_reply(first))
    assert (second.type, second.code, second.status, second.msg) == (
        "RateLimitedError", "RateLimited", 429, first.msg)
    unknown = exception_from_reply(ErrorReply(id=3, type="FromTheFuture", msg="m", status=418))
    assert isinstance(unknown, RemoteError) and status_for(unknown) == 418
    again = error_reply(4, unknown)
    assert (again.type, again.msg, again.status) == ("FromTheFuture", "m", 418)


def test_an_old_peer_without_the_new_fields_is_understood() -> None:
    frame = msgpack.packb({"t": "err", "id": 1, "e": {"type": "ValidationError", "msg": "bad", "leader": None}})
    (obj,) = FrameDecoder().feed(len(frame).to_bytes(4, "big") + frame)
    back = exception_from_reply(validate_reply(obj))  # type: ignore[arg-type]
    assert isinstance(back, ValidationError) and back.status == 400


@pytest.mark.parametrize("bad", [{"status": "429"}, {"status": 99}, {"status": True}, {"code": 5}, {"base": ""}])
def test_malformed_new_fields_are_refused(bad: dict[str, object]) -> None:
    from lictor.common.errors import RemoteProtocolError

    e = {"type": "ValidationError", "msg": "bad", "leader": None, **bad}
    with pytest.raises(RemoteProtocolError):
        validate_reply({"t": "err", "id": 1, "e": e})
