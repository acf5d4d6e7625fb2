"""Anti-entropy against a real in-process server: what is out of sync, and what a sync does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from lictor.agent.ae import StateSyncer, SyncState, scale_interval
from lictor.agent.local.state import LocalState
from lictor.server import endpoints
from lictor.server.server import Server, ServerConfig


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(fail: set[str] | None = None, *, check_update_interval: float = 300.0,
         real_clock: bool = False) -> tuple[Server, LocalState, StateSyncer, Clock]:
    server = Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300"))
    clock = Clock()
    local = LocalState(node_name="n1", check_update_interval=check_update_interval,
                       clock=time.monotonic if real_clock else clock)
    local.node_address = "10.0.0.1"
    calls: list[tuple[str, dict[str, Any]]] = []

    async def rpc(name: str, args: dict[str, Any]) -> dict[str, Any]:
        calls.append((name, args))
        svc = (args.get("service") or {}).get("id")
        if fail and svc in fail:
            raise RuntimeError(f"injected failure for {svc}")
        return await endpoints.call(server, name, args)

    syncer = StateSyncer(local=local, rpc=rpc, datacenter="dc1")
    syncer.calls = calls  # type: ignore[attr-defined]
    return server, local, syncer, clock


def svc(sid: str, port: int = 80) -> dict[str, Any]:
    return {"id": sid, "service": sid, "port": port, "tags": ()}


def chk(cid: str, sid: str = "", status: str = "passing", output: str = "") -> dict[str, Any]:
    return {"check_id": cid, "name": cid, "status": status, "service_id": sid, "output": output}


async def test_full_sync_registers_node_services_and_checks() -> None:
    server, local, syncer, _ = make()
    local.add_service(svc("web"))
    local.add_check(chk("web-c", "web"))
    res = await syncer.sync_full()
    assert not res.errors and res.pushed >= 1
    st = server.store
    assert ("n1", "web") in st.services and ("n1", "web-c") in st.checks
    assert not local.out_of_sync()
    # a second full sync finds nothing to do
    res = await syncer.sync_full()
    assert res.pushed == 0 and res.deleted == 0


async def test_server_side_change_to_agent_service_is_reverted() -> None:
    server, local, syncer, _ = make()
    local.add_service(svc("web", 80))
    await syncer.sync_full()
    await endpoints.call(server, "Catalog.Register", {"node": "n1", "address": "10.0.0.1",
                                                      "service": svc("web", 9999)})
    assert server.store.services[("n1", "web")].port == 9999
    await syncer.sync_full()
    assert server.store.services[("n1", "web")].port == 80


async def test_remote_only_service_and_check_are_removed_but_serf_health_kept() -> None:
    server, local, syncer, _ = make()
    await endpoints.call(server, "Catalog.Register", {
        "node": "n1", "address": "10.0.0.1", "service": svc("ghost"),
        "checks": [chk("serfHealth"), chk("stray")]})
    await syncer.sync_full()
    st = server.store
    assert ("n1", "ghost") not in st.services and ("n1", "stray") not in st.checks
    assert ("n1", "serfHealth") in st.checks
    assert "ghost" not in local.services and "stray" not in local.checks


async def test_deleted_items_are_deregistered_by_partial_sync() -> None:
    server, local, syncer, _ = make()
    local.add_service(svc("web"))
    local.add_check(chk("web-c", "web"))
    await syncer.sync_full()
    local.remove_service("web")
    assert local.out_of_sync()
    res = await syncer.sync_changes()
    assert res.deleted == 2 and not res.errors
    assert ("n1", "web") not in server.store.services and ("n1", "web-c") not in server.store.checks
    assert not local.services and not local.checks


async def test_one_failing_item_does_not_stop_the_others() -> None:
    server, local, syncer, _ = make(fail={"bad"})
    local.add_service(svc("bad"))
    local.add_service(svc("good"))
    res = await syncer.sync_changes()
    assert len(res.errors) == 1 and "bad" in res.errors[0]
    assert ("n1", "good") in server.store.services
    assert local.services["good"].in_sync is True
    assert local.services["bad"].in_sync is False


async def test_output_only_updates_are_deferred_status_changes_are_not() -> None:
    server, local, syncer, clock = make()
    local.add_check(chk("c", output="v1"))
    await syncer.sync_full()
    writes = server.fsm.last_applied
    local.update_check("c", "passing", "v2")  # output only
    assert not local.out_of_sync()
    await syncer.sync_changes()
    assert server.fsm.last_applied == writes
    clock.t += 301
    assert local.flush_deferred() == 1
    await syncer.sync_changes()
    assert server.store.checks[("n1", "c")].output == "v2"
    local.update_check("c", "critical", "down")  # a status change is pushed at once
    assert local.out_of_sync()
    await syncer.sync_changes()
    assert server.store.checks[("n1", "c")].status == "critical"


async def test_a_full_sync_leaves_a_deferred_output_to_its_interval() -> None:
    # Consul's updateSyncState: while an output waits, the periodic sweep ignores the output
    server, local, syncer, clock = make()
    local.add_check(chk("c", output="v1"))
    await syncer.sync_full()
    local.update_check("c", "passing", "v2")
    res = await syncer.sync_full()
    assert res.pushed == 0 and server.store.checks[("n1", "c")].output == "v1"
    assert local.checks["c"].deferred
    # anything else that differs is still pushed, with the latest output, which ends the wait
    await endpoints.call(server, "Catalog.Register", {"node": "n1", "address": "10.0.0.1",
                                                      "checks": [chk("c", status="critical", output="v1")]})
    res = await syncer.sync_full()
    assert res.pushed == 1
    row = server.store.checks[("n1", "c")]
    assert (row.status, row.output) == ("passing", "v2")
    assert not local.checks["c"].deferred and local.next_deferred_in() is None


async def test_a_push_that_carries_the_latest_output_ends_the_deferral() -> None:
    server, local, syncer, clock = make()
    local.add_service(svc("web"))
    local.add_check(chk("c", "web", output="v1"))
    await syncer.sync_full()
    clock.t += 100
    local.update_check("c", "passing", "v2")
    assert local.next_deferred_in() == 200.0
    local.add_service(svc("web", 81))  # the service push carries its checks
    await syncer.sync_changes()
    assert server.store.checks[("n1", "c")].output == "v2"
    assert local.next_deferred_in() is None
    clock.t += 301
    assert local.flush_deferred() == 0


async def test_an_output_change_made_during_the_push_waits_for_the_interval() -> None:
    # Consul holds the state lock while it syncs, so such an update lands after the push and is
    # deferred; here it lands during the RPC and must not cause a second push straight away.
    server, local, syncer, clock = make()
    local.add_check(chk("c", output="v1"))
    rpc = syncer._rpc

    async def racing(name: str, args: dict[str, Any]) -> dict[str, Any]:
        out = await rpc(name, args)
        if name == "Catalog.Register" and args.get("checks") and local.checks["c"].payload["output"] == "v1":
            local.update_check("c", "passing", "v2")  # arrives while the push is in flight
        return out

    syncer._rpc = racing
    await syncer.sync_full()
    assert server.store.checks[("n1", "c")].output == "v1"
    assert not local.out_of_sync() and local.next_deferred_in() == 300.0
    clock.t += 300
    assert local.flush_deferred() == 1
    await syncer.sync_changes()
    assert server.store.checks[("n1", "c")].output == "v2"
    # a status change during the push is still pushed at once
    local.update_check("c", "passing", "v3")
    clock.t += 300
    local.flush_deferred()

    async def flipping(name: str, args: dict[str, Any]) -> dict[str, Any]:
        out = await rpc(name, args)
        if local.checks["c"].payload["status"] == "passing":
            local.update_check("c", "critical", "down")
        return out

    syncer._rpc = flipping
    await syncer.sync_changes()
    assert local.out_of_sync()
    syncer._rpc = rpc
    await syncer.sync_changes()
    assert server.store.checks[("n1", "c")].status == "critical"


async def test_a_check_removed_during_its_push_is_still_deregistered() -> None:
    server, local, syncer, _ = make()
    local.add_check(chk("c"))
    rpc = syncer._rpc

    async def removing(name: str, args: dict[str, Any]) -> dict[str, Any]:
        out = await rpc(name, args)
        if args.get("checks"):  # the node is pushed first, on its own
            local.remove_check("c")
        return out

    syncer._rpc = removing
    await syncer.sync_changes()
    syncer._rpc = rpc
    assert local.out_of_sync()
    await syncer.sync_changes()
    assert ("n1", "c") not in server.store.checks and "c" not in local.checks


async def test_changes_made_during_a_service_push_are_not_lost() -> None:
    server, local, syncer, _ = make()
    local.add_service(svc("web"))
    local.add_check(chk("web-c", "web"))
    local.add_service(svc("db"))
    rpc = syncer._rpc

    async def racing(name: str, args: dict[str, Any]) -> dict[str, Any]:
        out = await rpc(name, args)
        if (args.get("service") or {}).get("id") == "web":
            local.update_check("web-c", "critical", "down")  # a status change mid-push
        if (args.get("service") or {}).get("id") == "db":
            local.remove_service("db")
        return out

    syncer._rpc = racing
    await syncer.sync_changes()
    syncer._rpc = rpc
    assert local.out_of_sync()
    await syncer.sync_changes()
    assert server.store.checks[("n1", "web-c")].status == "critical"
    assert ("n1", "db") not in server.store.services and "db" not in local.services


async def test_running_syncer_pushes_a_deferred_output_when_its_interval_ends() -> None:
    """Nothing but the interval's end may wake the syncer: no other change, no full sync (60 s)."""
    server, local, syncer, _ = make(check_update_interval=0.5, real_clock=True)
    local.on_change = syncer.trigger_changes
    local.add_check(chk("c", output="v1"))

    def output() -> str | None:
        row = server.store.checks.get(("n1", "c"))
        return row.output if row is not None else None

    async def until(value: str, timeout: float) -> float:
        t0 = time.monotonic()
        while output() != value:
            assert time.monotonic() - t0 < timeout, f"server output {output()!r}, want {value!r}"
            await asyncio.sleep(0.01)
        return time.monotonic() - t0

    task = asyncio.create_task(syncer.run())
    try:
        await until("v1", 5)
        local.update_check("c", "passing", "v2")
        local.update_check("c", "passing", "v3")
        await asyncio.sleep(0.05)
        assert output() == "v1"  # held back
        assert 0 < (local.next_deferred_in() or 0) <= 0.5
        took = await until("v3", 5)  # the latest output, at the interval's end
        assert took > 0.2
        assert local.next_deferred_in() is None and not local.out_of_sync()
        assert syncer.syncs == 1  # pushed by a partial sync, not by a periodic full one
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_critical_services_reaped_after_threshold() -> None:
    _, local, _, clock = make()
    local.add_service(svc("web"))
    local.add_check(chk("c", "web", status="passing"), deregister_after=60.0)
    local.update_check("c", "critical", "x")
    clock.t += 30
    assert local.critical_services_to_reap() == []
    clock.t += 31
    assert local.critical_services_to_reap() == ["web"]
    local.update_check("c", "passing", "ok")
    assert local.critical_services_to_reap() == []


def test_scale_interval_grows_with_log_of_cluster_size() -> None:
    assert scale_interval(60, 1) == 60
    assert scale_interval(60, 128) == 60
    assert scale_interval(60, 129) == 120
    assert scale_interval(60, 256) == 120
    assert scale_interval(60, 257) == 180
    assert scale_interval(60, 4096) == 360


async def test_pause_resume_are_counted() -> None:
    _, _, syncer, _ = make()
    syncer.pause()
    syncer.pause()
    syncer.resume()
    assert syncer.paused
    syncer.resume()
    assert not syncer.paused
    with pytest.raises(AssertionError):
        syncer.resume()
    assert syncer.state is SyncState.FULL_SYNC


async def test_each_service_and_check_is_pushed_with_its_own_token_and_the_node_first() -> None:
    # issue 18 item 9: Consul syncs a service with the token it was registered with
    server, local, syncer, _ = make()
    local.add_service(svc("web"), token="web-token")
    local.add_check(chk("web-c", "web"), token="web-token")
    local.add_check(chk("node-c"), token="node-token")
    local.add_service(svc("plain"))
    await syncer.sync_full()
    registers = [(a.get("service", {}).get("id"), [c["check_id"] for c in a.get("checks") or []],
                  a.get("token"), a.get("skip_node_update"))
                 for n, a in syncer.calls if n == "Catalog.Register"]  # type: ignore[attr-defined]
    assert registers[0] == (None, [], None, None)  # the node alone, with the agent's token
    assert ("web", ["web-c"], "web-token", True) in registers
    assert (None, ["node-c"], "node-token", True) in registers
    assert ("plain", [], None, True) in registers  # no token of its own: the agent's
    local.remove_service("web")
    syncer.calls.clear()  # type: ignore[attr-defined]
    await syncer.sync_changes()
    deregs = [a for n, a in syncer.calls if n == "Catalog.Deregister"]  # type: ignore[attr-defined]
    assert {(a.get("service_id") or a.get("check_id"), a.get("token")) for a in deregs} == {
        ("web", "web-token"), ("web-c", "web-token")}


async def test_a_changed_tagged_address_puts_the_node_out_of_sync() -> None:
    server, local, syncer, _ = make()
    local.tagged_addresses = {"lan": "10.0.0.1", "wan": "10.0.0.1"}
    await syncer.sync_full()
    assert server.store.nodes["n1"].tagged_addresses == local.tagged_addresses
    await endpoints.call(server, "Catalog.Register", {"node": "n1", "address": "10.0.0.1",
                                                      "tagged_addresses": {"lan": "6.6.6.6"}})
    await syncer.sync_full()
    assert server.store.nodes["n1"].tagged_addresses == local.tagged_addresses
