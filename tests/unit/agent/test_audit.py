"""agent/audit.py: the file sink (rotation, fsync policy), the queue in front of it, and the HTTP
hook (what is recorded, what never is)."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lictor.agent.audit import ANONYMOUS_ACCESSOR, AuditEvent, AuditLog, FileSink, audited, should_record
from lictor.agent.http.base import ACL
from lictor.common.audit import AuditConfig, AuditSinkConfig

SECRET = "8f1e2d3c-aaaa-bbbb-cccc-0123456789ab"
ACCESSOR = "11111111-2222-3333-4444-555555555555"


def event(i: int = 0, **kw: Any) -> AuditEvent:
    base: dict[str, Any] = {"time": 1_700_000_000.0 + i, "accessor_id": ACCESSOR, "remote_addr": "127.0.0.1:1",
                            "method": "PUT", "endpoint": f"/v1/kv/k{i}", "status": 200, "duration": 0.001}
    base.update(kw)
    return AuditEvent(**base)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_should_record_writes_and_denials_only() -> None:
    assert should_record("PUT", "allow") and should_record("DELETE", "allow") and should_record("POST", "allow")
    assert not should_record("GET", "allow") and not should_record("HEAD", "allow")
    assert should_record("GET", "deny")


def test_event_shape_is_consul_like_plus_resource_and_duration() -> None:
    j = event(resource_type="key", resource_name="k0", resource_access="write").to_json()
    p = j["payload"]
    assert j["event_type"] == "audit" and p["type"] == "HTTPEvent"
    assert p["auth"] == {"accessor_id": ACCESSOR}
    assert p["request"]["operation"] == "PUT" and p["request"]["endpoint"] == "/v1/kv/k0"
    assert p["request"]["resource"] == {"type": "key", "name": "k0", "access": "write"}
    assert p["response"]["status"] == 200 and p["duration_ms"] == 1.0


def test_rotation_by_size_keeps_rotate_max_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    one = len(event().line())
    sink = FileSink(AuditSinkConfig(name="a", path=str(path), rotate_bytes=3 * one + 10, rotate_max_files=2))
    for i in range(0, 30, 2):  # 15 batches of 2 lines
        sink.write_batch([event(i).line(), event(i + 1).line()])
    sink.close()
    rotated = sink.rotated_files()
    assert len(rotated) == 2, rotated
    assert sink.rotations >= 9
    for p in [*rotated, path]:
        assert p.stat().st_size <= 3 * one + 10
    # the newest events survive, in order, across the kept files
    kept = [e["payload"]["request"]["endpoint"] for p in [*rotated, path] for e in lines(p)]
    assert kept == [f"/v1/kv/k{i}" for i in range(30 - len(kept), 30)]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_rotation_by_duration(tmp_path: Path) -> None:
    now = [1000.0]
    sink = FileSink(AuditSinkConfig(name="a", path=str(tmp_path / "a.json"), rotate_duration=60.0),
                    clock=lambda: now[0])
    sink.write_batch([event().line()])
    now[0] += 30
    sink.write_batch([event(1).line()])
    assert sink.rotations == 0
    now[0] += 31
    sink.write_batch([event(2).line()])
    assert sink.rotations == 1
    sink.close()


@pytest.mark.parametrize("guarantee, per_batch", [("best-effort", 0), ("guaranteed", 1)])
def test_fsync_policy_follows_delivery_guarantee(tmp_path: Path, guarantee: str, per_batch: int) -> None:
    calls: list[int] = []
    sink = FileSink(AuditSinkConfig(name="a", path=str(tmp_path / "a.json"), delivery_guarantee=guarantee),
                    fsync=calls.append)
    for i in range(5):
        sink.write_batch([event(i).line()])
    assert len(calls) == 5 * per_batch
    sink.close()
    assert len(calls) == 5 * per_batch + 1  # close always syncs


async def test_audit_log_batches_in_the_background_and_drops_when_full(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    log = AuditLog(AuditConfig(enabled=True, sinks=(AuditSinkConfig(name="a", path=str(path)),)),
                   flush_interval=0.01, max_queue=5)
    await log.start()
    for i in range(8):
        assert log.record(event(i)) is None  # best-effort: nothing to wait for
    assert log.dropped == 3
    await asyncio.sleep(0.1)
    assert len(lines(path)) == 5
    log.record(event(99))
    await log.close()
    assert len(lines(path)) == 6 and log.written == 6


async def test_guaranteed_record_resolves_after_the_fsync(tmp_path: Path) -> None:
    synced: list[int] = []
    cfg = AuditSinkConfig(name="a", path=str(tmp_path / "a.json"), delivery_guarantee="guaranteed")
    log = AuditLog(AuditConfig(enabled=True, sinks=(cfg,)),
                   sinks=[FileSink(cfg, fsync=synced.append)], flush_interval=5.0)
    await log.start()
    fut = log.record(event())
    assert fut is not None
    await asyncio.wait_for(fut, 2.0)  # woken at once, not after flush_interval
    assert synced and len(lines(tmp_path / "a.json")) == 1
    await log.close()


# ----------------------------------------------------------------------------- the HTTP hook

class FakeAgent:
    def __init__(self, audit: AuditLog | None) -> None:
        self.audit = audit


async def acl_layer(req: web.Request, verdict: dict[str, Any] | None, status: int = 200) -> web.Response:
    if verdict is not None:
        with warnings.catch_warnings():  # aiohttp 3.14 prefers RequestKey; the agreed key is a str
            warnings.simplefilter("ignore")
            req["lictor_acl"] = verdict
    if verdict and verdict["decision"] == "deny":
        return web.Response(status=403, text=f"Permission denied: token with AccessorID '{ACCESSOR}' "
                                             f"lacks permission '{verdict['permission']}'")
    return web.Response(status=status, text="true")


async def test_http_hook_records_writes_and_denials_never_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    log = AuditLog(AuditConfig(enabled=True, sinks=(AuditSinkConfig(name="a", path=str(path)),)),
                   flush_interval=0.01)
    await log.start()
    agent = FakeAgent(log)
    allow = {"accessor_id": ACCESSOR, "decision": "allow", "permission": None}
    deny = {"accessor_id": ACCESSOR, "decision": "deny", "permission": 'key:write "secret/x"'}
    app = web.Application()
    app.router.add_put("/v1/kv/{key:.*}", audited(ACL("key", "write", "key"), agent,
                                                  lambda r: acl_layer(r, allow)))
    app.router.add_get("/v1/kv/{key:.*}", audited(ACL("key", "read", "key"), agent,
                                                  lambda r: acl_layer(r, allow)))
    app.router.add_delete("/v1/kv/{key:.*}", audited(ACL("key", "write", "key"), agent,
                                                     lambda r: acl_layer(r, deny)))
    app.router.add_put("/v1/agent/reload", audited(ACL("agent", "write"), agent, lambda r: acl_layer(r, None)))
    async with TestClient(TestServer(app)) as client:
        h = {"X-Consul-Token": SECRET, "Authorization": f"Bearer {SECRET}"}
        assert (await client.put(f"/v1/kv/app/x?token={SECRET}", data=b"v", headers=h)).status == 200
        assert (await client.get(f"/v1/kv/app/x?token={SECRET}", headers=h)).status == 200
        assert (await client.delete(f"/v1/kv/secret/x?token={SECRET}", headers=h)).status == 403
        assert (await client.put("/v1/agent/reload")).status == 200
    await log.close()
    text = path.read_text()
    assert SECRET not in text
    evs = [e["payload"] for e in lines(path)]
    assert [(e["request"]["operation"], e["request"]["endpoint"], e["response"]["status"]) for e in evs] == [
        ("PUT", "/v1/kv/app/x", 200), ("DELETE", "/v1/kv/secret/x", 403), ("PUT", "/v1/agent/reload", 200)]
    put, denied, anon = evs
    assert put["auth"]["accessor_id"] == ACCESSOR
    assert put["request"]["resource"] == {"type": "key", "name": "app/x", "access": "write"}
    assert put["request"]["remote_addr"].startswith("127.0.0.1:")
    assert denied["response"]["decision"] == "deny" and denied["response"]["permission"] == 'key:write "secret/x"'
    assert anon["auth"]["accessor_id"] == ANONYMOUS_ACCESSOR and anon["response"]["decision"] == "allow"
    assert all(e["duration_ms"] >= 0 for e in evs)


async def test_http_hook_costs_nothing_without_an_audit_log() -> None:
    calls: list[str] = []

    async def inner(req: web.Request) -> web.Response:
        calls.append(req.method)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_put("/x", audited(ACL("none", "write"), FakeAgent(None), inner))
    async with TestClient(TestServer(app)) as client:
        assert (await client.put("/x")).status == 200
    assert calls == ["PUT"]
