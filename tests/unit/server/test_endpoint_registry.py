"""Every RPC endpoint that changes state is declared ``write=True`` where it is registered, and
both callers that must not re-send a write (server forwarding, the client agents' pool) read that
one declaration (issue 16, defect 2: two name-prefix lists disagreed and retried writes).

Which endpoints change state is found by reading their code: an endpoint writes when, through
the functions and classes it calls (followed across lictor's modules), it reaches a Raft
proposal (``server.apply``), a Raft membership or leadership change, or a restore."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import pkgutil
import textwrap
import types
from typing import Any

import pytest

import lictor.server
from lictor.agent import rpcclient
from lictor.common.errors import TransportError
from lictor.server import cluster as cluster_mod
from lictor.server import endpoints

#: Calls that change replicated state or the Raft configuration (the receiver does not matter:
#: ``server.apply``, ``self.server.apply``, ``c.raft.remove_server``, ...).
_PROPOSALS = frozenset({"apply", "remove_server", "add_nonvoter", "promote", "transfer_leadership",
                        "restore"})
#: Receivers whose ``.apply`` is not a proposal (a builtin or a pure helper's name).
_NOT_PROPOSALS = frozenset({"functools", "asyncio"})


def _server_functions() -> dict[str, list[Any]]:
    """Every function and method defined in lictor.server, by name (to follow ``obj.meth()``
    calls whose receiver's type the AST cannot tell)."""
    by_name: dict[str, list[Any]] = {}
    for info in pkgutil.walk_packages(lictor.server.__path__, "lictor.server."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                by_name.setdefault(obj.__name__, []).append(obj)
            elif inspect.isclass(obj):
                for name, meth in vars(obj).items():
                    if inspect.isfunction(meth):
                        by_name.setdefault(name, []).append(meth)
    return by_name


def _direct_proposer(fn: Any) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
               and n.func.attr in _PROPOSALS and _receiver(n.func) not in _NOT_PROPOSALS
               for n in ast.walk(_tree(fn)))


def _receiver(attr: ast.Attribute) -> str:
    v = attr.value
    return v.id if isinstance(v, ast.Name) else ""


def _tree(fn: Any) -> ast.AST:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        return ast.Module(body=[], type_ignores=[])


class _Reach:
    def __init__(self) -> None:
        self.by_name = _server_functions()
        # methods that propose directly: an ``x.meth()`` call with such a name counts
        self.proposing_methods = {name for name, fns in self.by_name.items()
                                  if any(_direct_proposer(f) for f in fns)}
        self.memo: dict[Any, bool] = {}

    def proposes(self, fn: Any) -> bool:
        fn = inspect.unwrap(fn)
        if fn in self.memo:
            return self.memo[fn]
        self.memo[fn] = False  # cycles
        found = self._walk(fn)
        self.memo[fn] = found
        return found

    def _walk(self, fn: Any) -> bool:
        glb = getattr(fn, "__globals__", {})
        for node in ast.walk(_tree(fn)):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Attribute):
                if f.attr in _PROPOSALS and _receiver(f) not in _NOT_PROPOSALS:
                    return True
                if f.attr in self.proposing_methods:
                    return True
                base = glb.get(_receiver(f))
                if isinstance(base, types.ModuleType) and self._follow(getattr(base, f.attr, None)):
                    return True
            elif isinstance(f, ast.Name) and self._follow(glb.get(f.id)):
                return True
        return False

    def _follow(self, obj: Any) -> bool:
        if obj is None or not str(getattr(obj, "__module__", "")).startswith("lictor."):
            return False
        if inspect.isfunction(obj):
            return self.proposes(obj)
        if inspect.isclass(obj):
            return any(self.proposes(m) for m in vars(obj).values() if inspect.isfunction(m))
        return False


def test_every_endpoint_that_proposes_is_declared_a_write() -> None:
    reach = _Reach()
    proposers = {name for name, fn in endpoints.ENDPOINTS.items() if reach.proposes(fn)}
    # the analysis itself finds what we know writes (else it proves nothing)
    assert {"KVS.Apply", "ACL.TokenSet", "ACL.Bootstrap", "Operator.RaftRemovePeer",
            "Snapshot.Restore", "Coordinate.Update", "ConnectCA.Sign"} <= proposers
    assert "KVS.Get" not in proposers and "Status.Leader" not in proposers
    unmarked = sorted(proposers - endpoints.WRITES)
    assert not unmarked, f"endpoints that change state but are not declared write=True: {unmarked}"


def test_reads_are_not_declared_writes() -> None:
    # a read marked as a write is only never retried; still, the list should stay honest
    for name in ("KVS.Get", "KVS.List", "Catalog.ServiceNodes", "Health.ServiceNodes",
                 "ACL.TokenRead", "Status.Leader", "ConnectCA.Roots", "Snapshot.Save"):
        assert name in endpoints.ENDPOINTS and not endpoints.is_write(name)


@pytest.mark.parametrize("name", ["ACL.TokenSet", "ACL.PolicySet", "ACL.RoleSet", "ACL.Bootstrap",
                                  "ACL.Login", "ACL.Logout", "ACL.PolicyDelete", "ConfigEntry.Delete",
                                  "Coordinate.Update", "ConnectCA.Sign", "Operator.RaftRemovePeer",
                                  "Operator.RaftTransferLeader", "ACL.TokenClone", "Snapshot.Restore"])
def test_both_callers_read_the_registry(name: str) -> None:
    """The writes the two old prefix lists got wrong are writes for both callers now."""
    assert endpoints.is_write(name)
    assert rpcclient.is_write(name)
    assert cluster_mod.is_write(name)


def test_unknown_name_counts_as_a_write() -> None:
    assert endpoints.is_write("Nope.Whatever") and rpcclient.is_write("Nope.Whatever")


class _BrokenAfterSend:
    """An RPC client whose connection breaks after the request left, every time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._endpoints: dict[str, Any] = {}

    async def connect(self, addr: str) -> None:
        return None

    async def call(self, addr: str, name: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        self.calls.append((addr, name))
        raise TransportError("connection lost mid-call")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("name,write", [("ACL.TokenSet", True), ("ACL.Bootstrap", True),
                                        ("ConnectCA.Sign", True), ("KVS.Get", False)])
def test_pool_never_resends_a_write_whose_connection_broke(name: str, write: bool) -> None:
    async def go() -> list[tuple[str, str]]:
        pool = rpcclient.ServerPool(lambda: ["127.0.0.1:1", "127.0.0.1:2"], hold=0.3)
        fake = _BrokenAfterSend()
        pool.rpc = fake  # type: ignore[assignment]
        with pytest.raises(TransportError):
            await pool.call(name, {})
        return fake.calls
    calls = asyncio.run(go())
    if write:
        assert len(calls) == 1, calls
    else:
        assert len(calls) > 1, calls


class _FollowerRaft:
    """A follower that knows the leader (for the server-side Forwarder)."""

    class config:  # noqa: N801 - the attribute names RaftNodeConfig has
        tick_seconds = 0.01
        election_timeout = 0.02

    def is_leader(self) -> bool:
        return False

    def leader(self) -> str:
        return "10.0.0.2:8300"

    def last_contact(self) -> float:
        return 0.0


@pytest.mark.parametrize("name,write", [("ACL.TokenSet", True), ("Coordinate.Update", True),
                                        ("Operator.RaftRemovePeer", True), ("KVS.Get", False)])
def test_forwarding_never_resends_a_write_whose_connection_broke(name: str, write: bool) -> None:
    async def go() -> list[tuple[str, str]]:
        async def local(n: str, a: dict[str, Any]) -> dict[str, Any]:
            raise AssertionError("a follower runs nothing locally")
        rpc = _BrokenAfterSend()
        fwd = cluster_mod.Forwarder(_FollowerRaft(), rpc, rpc_addr="10.0.0.1:8300",  # type: ignore[arg-type]
                                    hold=5.0, local=local)
        with pytest.raises(TransportError):
            await fwd.call(name, {})
        return rpc.calls
    calls = asyncio.run(go())
    assert len(calls) == (1 if write else 3), calls
