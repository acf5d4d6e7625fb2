"""A KeyError or TypeError inside an endpoint or an FSM handler is a bug: it surfaces as an
internal error (500) with a server log line, never as the caller's 400 or an FSM ``Rejected``
(issue 16, defect 10). Malformed requests are refused at the boundary instead, by the shape
each endpoint declares, with a message naming the argument."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from lictor.common.commands import MessageType
from lictor.common.errors import RemoteError, ValidationError
from lictor.common.rpc import PeerInfo, RPCClient, RPCServer
from lictor.server import endpoints
from lictor.server.cluster import _Dispatcher
from lictor.server.server import FSMHandlerError, Server, ServerConfig

BUG = "Test.Bug"
PEER = PeerInfo(addr="127.0.0.1:1", conn_id=1, tls=False)


@pytest.fixture
def buggy_endpoint() -> Iterator[None]:
    @endpoint_once(BUG)
    async def bug(server: Server, a: dict[str, Any]) -> dict[str, Any]:
        return {"result": {}["missing"]}
    yield
    endpoints.ENDPOINTS.pop(BUG, None)
    endpoints.SHAPES.pop(BUG, None)


def endpoint_once(name: str) -> Any:
    endpoints.ENDPOINTS.pop(name, None)
    return endpoints.endpoint(name)


class _Cluster:
    peer_policy = None

    def __init__(self, server: Server) -> None:
        self.server = server


def server() -> Server:
    return Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300"))


async def test_endpoint_bug_over_rpc_is_an_internal_error_logged_on_the_server(
        buggy_endpoint: None, caplog: pytest.LogCaptureFixture) -> None:
    s = server()
    srv = RPCServer(_Dispatcher(_Cluster(s)), host="127.0.0.1", port=0)  # type: ignore[arg-type]
    await srv.start()
    client = RPCClient()
    try:
        with caplog.at_level(logging.ERROR):
            with pytest.raises(RemoteError) as exc:
                await client.call(srv.addr, BUG, {})
        assert not isinstance(exc.value, ValidationError)
        assert "InternalError" in str(exc.value)
        assert any("KeyError" in (r.exc_text or "") for r in caplog.records), "no server log line"
    finally:
        await client.close()
        await srv.close()
        await s.close()


async def test_dispatcher_does_not_relabel_a_bug_as_a_validation_error(buggy_endpoint: None) -> None:
    s = server()
    with pytest.raises(KeyError):
        await _Dispatcher(_Cluster(s)).handle(BUG, {}, PEER)  # type: ignore[arg-type]
    await s.close()


@pytest.mark.parametrize("name,args,message", [
    ("KVS.Get", {}, "KVS.Get: missing argument 'key'"),
    ("KVS.Get", {"key": 5}, "KVS.Get: key must be str, got int"),
    ("KVS.Apply", {"key": "k"}, "KVS.Apply: missing argument 'op'"),
    ("KVS.Apply", {"op": "set", "key": "k", "value": "text"}, "KVS.Apply: value must be bytes"),
    ("Health.ServiceNodes", {"service": "web", "min_index": "3"}, "min_index must be int, got str"),
    ("Session.Apply", {"op": "create"}, "create needs a session map"),
    ("Catalog.Register", {"node": "n", "address": "a", "checks": ["x"]}, "each check must be a map"),
    ("Txn.Apply", {"ops": {"a": 1}}, "Txn.Apply: ops must be list, got dict"),
    ("Snapshot.Restore", {}, "missing argument 'archive'"),
    ("KVS.Get", ["key"], "arguments must be a map"),
])
async def test_malformed_requests_are_refused_at_the_boundary(name: str, args: Any, message: str) -> None:
    s = server()
    for call in (lambda: endpoints.call(s, name, args),
                 lambda: _Dispatcher(_Cluster(s)).handle(name, args, PEER)):  # type: ignore[arg-type]
        with pytest.raises(ValidationError) as exc:
            await call()
        assert message in str(exc.value)
    await s.close()


async def test_fsm_handler_bug_is_an_internal_error_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    s = server()
    with caplog.at_level(logging.ERROR, logger="lictor.server"):
        with pytest.raises(FSMHandlerError, match="KVS command at index 1 failed: KeyError"):
            await s.apply(MessageType.KVS, {"key": "k"})  # no "op": only a bug can propose this
    assert any("FSM handler for KVS failed" in r.getMessage() and "apply_kvs" in r.getMessage()
               for r in caplog.records)
    assert not isinstance(FSMHandlerError("x"), ValidationError)
    assert s.store.kvs == {}
    await s.close()
