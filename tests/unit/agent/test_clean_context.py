"""Issue 16 defect 6 / issue 18 item 10: background work never runs with a requester's token.

The HTTP layer puts the request's secret in ``current_token`` (a ContextVar) while a handler
runs; a task started by that handler must not inherit it. Each test sets the variable as a
handler would, starts the background work, and records what the work sees."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from lictor.agent.acl_cache import current_token
from lictor.agent.checkrunner import CheckRunner
from lictor.agent.leafcert import LeafCertManager
from lictor.agent.local.state import LocalState
from lictor.common.clock import ManualClock
from lictor.common.servicedef import parse_check_definition
from lictor.common.tasks import spawn


async def _as_request(token: str, work: Any) -> Any:
    """Run ``work()`` the way a handler runs: with ``current_token`` set, reset afterwards."""
    reset = current_token.set(token)
    try:
        return await work()
    finally:
        current_token.reset(reset)


async def test_spawn_starts_with_an_empty_context() -> None:
    seen: list[str | None] = []

    async def bg() -> None:
        await asyncio.sleep(0)
        seen.append(current_token.get())

    async def handler() -> asyncio.Task[None]:
        return spawn(bg(), name="bg")
    task = await _as_request("requester-secret", handler)
    await task
    assert seen == [None]
    # the control: a plain create_task would have carried the secret
    async def leaky() -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(bg())
    await (await _as_request("requester-secret", leaky))
    assert seen == [None, "requester-secret"]


async def test_the_roots_watcher_started_by_a_request_does_not_carry_its_token() -> None:
    seen: list[str | None] = []
    done = asyncio.Event()

    async def rpc(name: str, args: dict[str, Any]) -> dict[str, Any]:
        seen.append(current_token.get())
        done.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    mgr = LeafCertManager(rpc=rpc, datacenter="dc1", clock=ManualClock(), rng=random.Random(1))

    async def handler() -> None:
        mgr._start_roots()
    await _as_request("requester-secret", handler)
    await asyncio.wait_for(done.wait(), 5)
    await mgr.close()
    assert seen == [None]


class _Host:
    """What CheckRunner needs from the agent; ``rpc`` records the token it would send."""

    def __init__(self) -> None:
        self.local = LocalState(node_name="n1")
        self.node_name = "n1"
        self.seen: list[str | None] = []
        self.sent: list[str | None] = []
        self.called = asyncio.Event()

    async def rpc(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(current_token.get())
        self.sent.append(args.get("token"))
        self.called.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_a_check_registered_during_a_request_runs_without_its_token() -> None:
    host = _Host()
    runner = CheckRunner(host)  # type: ignore[arg-type]
    chk = parse_check_definition({"CheckID": "alias", "Name": "alias", "AliasNode": "other"})

    async def handler() -> None:
        runner.add("alias", chk)
    await _as_request("requester-secret", handler)
    await asyncio.wait_for(host.called.wait(), 5)
    await runner.stop_all()
    assert host.seen == [None] and host.sent == [None]  # agent.rpc then adds the agent's token


async def test_an_alias_check_reads_with_its_own_registration_token() -> None:
    host = _Host()
    runner = CheckRunner(host)  # type: ignore[arg-type]
    chk = parse_check_definition({"CheckID": "alias", "Name": "alias", "AliasNode": "other"})

    async def handler() -> None:
        runner.add("alias", chk, token="check-token")
    await _as_request("requester-secret", handler)
    await asyncio.wait_for(host.called.wait(), 5)
    await runner.stop_all()
    assert host.sent == ["check-token"] and host.seen == [None]
