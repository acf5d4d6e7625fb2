"""The agent's service registry (issue 16, defect 7): a reload swaps the config-file services with
anti-entropy paused, after any pass in flight has finished, so the catalog never sees a config
service removed and re-added; what is registered at start-up is awaited, so errors surface."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from lictor.agent.ae import StateSyncer
from lictor.agent.registry import ServiceRegistry
from lictor.common.errors import ValidationError
from lictor.common.servicedef import parse_check_definition, parse_service_definition
from lictor.server import endpoints
from lictor.server.server import Server, ServerConfig


def _config(**kw: bool) -> Any:
    """The two settings the registry reads from the RuntimeConfig."""
    return SimpleNamespace(**{"enable_script_checks": False, "enable_local_script_checks": False, **kw})


class _Host:
    def __init__(self) -> None:
        self.node_name = "n1"
        self.local: Any = None

    async def rpc(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("no alias checks here")


def _make(cfg: Any = None) -> tuple[Server, ServiceRegistry, StateSyncer, list[tuple[str, Any]]]:
    server = Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300"))
    host = _Host()
    config = cfg or _config()
    reg = ServiceRegistry(host, config=lambda: config, node_name="n1", address="10.0.0.1",
                          check_update_interval=300.0)
    host.local = reg.local
    reg.local.node_address = "10.0.0.1"
    calls: list[tuple[str, Any]] = []

    async def rpc(name: str, args: dict[str, Any]) -> dict[str, Any]:
        calls.append((name, args.get("service_id") or (args.get("service") or {}).get("id")))
        await asyncio.sleep(0)  # a real RPC yields: let a concurrent reload interleave
        return await endpoints.call(server, name, args)

    syncer = StateSyncer(local=reg.local, rpc=rpc, datacenter="dc1")
    reg.local.on_change = syncer.trigger_changes
    return server, reg, syncer, calls


def _web(port: int, name: str = "web") -> Any:
    return parse_service_definition({"Name": name, "Port": port,
                                     "Checks": [{"CheckID": f"{name}-ttl", "TTL": "30s"},
                                                {"CheckID": f"{name}-ttl2", "TTL": "30s"}]})


async def _until(pred: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_reload_never_lets_anti_entropy_see_the_config_services_half_replaced() -> None:
    server, reg, syncer, calls = _make()
    await reg.load_config_definitions([_web(80), _web(90, "api")], [])
    task = asyncio.get_running_loop().create_task(syncer.run())
    try:
        await _until(lambda: ("n1", "api") in server.store.services and not reg.local.out_of_sync())
        calls.clear()
        for port in (81, 82, 83):
            # removing api's checks stops their tasks (a real suspension) after web is removed
            await reg.replace_config_definitions([_web(port), _web(port + 10, "api")], [], syncer=syncer)
            await asyncio.sleep(0.02)
        await _until(lambda: server.store.services[("n1", "web")].port == 83 and not reg.local.out_of_sync())
        assert not [c for c in calls if c[0] == "Catalog.Deregister"], calls
    finally:
        task.cancel()


async def test_a_reload_waits_for_a_sync_pass_in_flight() -> None:
    server, reg, syncer, _ = _make()
    await reg.load_config_definitions([_web(80)], [])
    gate = asyncio.Event()
    entered = asyncio.Event()
    rpc = syncer._rpc

    async def slow(name: str, args: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        await gate.wait()
        return await rpc(name, args)

    syncer._rpc = slow
    task = asyncio.get_running_loop().create_task(syncer.run())
    try:
        await asyncio.wait_for(entered.wait(), 5)
        reload = asyncio.get_running_loop().create_task(
            reg.replace_config_definitions([_web(81)], [], syncer=syncer))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not reload.done() and reg.local.service("web")["port"] == 80  # type: ignore[index]
        gate.set()
        await asyncio.wait_for(reload, 5)
        assert reg.local.service("web")["port"] == 81  # type: ignore[index]
        assert not syncer.paused
    finally:
        task.cancel()


async def test_config_definitions_are_validated_before_anything_changes() -> None:
    _, reg, _, _ = _make()
    script = parse_check_definition({"CheckID": "s", "Name": "s", "Args": ["/bin/true"], "Interval": "10s"})
    with pytest.raises(ValidationError, match="script checks are disabled"):
        reg.validate_config_definitions([], [script], config=_config())
    # awaited registration: an error reaches the caller instead of a task nobody reads
    with pytest.raises(ValidationError, match="script checks is disabled"):
        await reg.load_config_definitions([], [script])
