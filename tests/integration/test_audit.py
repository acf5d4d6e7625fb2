"""The audit log of a real `lictor agent -dev` (issue 7): a write and a denial with the accessor
ID and never the secret (real ACL enforcement), rotation by size keeping rotate_max_files."""

from __future__ import annotations

import json

from pathlib import Path
from typing import Any

import pytest

from .conftest import eventually

pytestmark = pytest.mark.integration

SECRET = "aaaaaaaa-1111-2222-3333-444444444444"


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x)["payload"] for x in path.read_text().splitlines() if x.strip()]


def test_audit_records_a_write_and_a_denial_with_the_accessor_id_and_no_secret(agent_factory: Any,
                                                                               tmp_path: Path) -> None:
    log = tmp_path / "audit" / "audit.json"
    a = agent_factory(
        "-hcl", f'acl {{ enabled = true\n default_policy = "deny"\n tokens {{ initial_management = "{SECRET}" }} }}',
        "-hcl", f'audit {{ enabled = true\n sink "file" {{ type = "file"\n format = "json"\n path = "{log}" }} }}')
    me = a.json("GET", "/v1/acl/token/self", headers={"X-Consul-Token": SECRET})
    accessor = me["AccessorID"]
    assert accessor and accessor != SECRET
    status, body = a.request("PUT", "/v1/kv/audit/denied", b"x")
    assert status == 403, body
    assert a.request("PUT", f"/v1/kv/audit/allowed?token={SECRET}", b"x")[0] == 200
    assert a.request("PUT", "/v1/kv/audit/header", b"x", headers={"X-Consul-Token": SECRET})[0] == 200
    assert a.request("GET", "/v1/kv/audit/header", headers={"X-Consul-Token": SECRET})[0] == 200  # a read

    def recorded() -> list[dict[str, Any]]:
        evs = [e for e in events(log) if e["request"]["endpoint"].startswith("/v1/kv/audit/")]
        return evs if len(evs) >= 3 else []

    evs = eventually(recorded, 10, "three audit events")
    by_path = {e["request"]["endpoint"]: e for e in evs}
    assert set(by_path) == {"/v1/kv/audit/denied", "/v1/kv/audit/allowed", "/v1/kv/audit/header"}
    denied = by_path["/v1/kv/audit/denied"]
    assert denied["response"]["status"] == 403 and denied["response"]["decision"] == "deny"
    assert denied["auth"]["accessor_id"] == "00000000-0000-0000-0000-000000000002"  # anonymous
    assert "key:write" in (denied["response"]["permission"] or "")
    for p in ("/v1/kv/audit/allowed", "/v1/kv/audit/header"):
        e = by_path[p]
        assert e["auth"]["accessor_id"] == accessor and e["response"]["status"] == 200
        assert e["request"]["operation"] == "PUT" and e["request"]["resource"]["type"] == "key"
        assert e["request"]["remote_addr"].startswith("127.0.0.1:") and e["duration_ms"] >= 0
    assert SECRET not in log.read_text()
    assert SECRET not in a.log_text()


def test_audit_rotation_by_size_keeps_rotate_max_files(agent_factory: Any, tmp_path: Path) -> None:
    log = tmp_path / "rot" / "audit.json"
    a = agent_factory("-hcl", f'audit {{ enabled = true\n sink "file" {{ path = "{log}"\n rotate_bytes = 2000\n'
                              f' rotate_max_files = 3\n delivery_guarantee = "guaranteed" }} }}')
    for i in range(60):  # ~500 bytes per event: ~15 rotations
        assert a.request("PUT", f"/v1/kv/rot/{i}", b"v")[0] == 200
    # "guaranteed": each reply left after its line was written and fsynced
    rotated = sorted(log.parent.glob("audit-*.json"))
    assert len(rotated) == 3, rotated
    sizes = [p.stat().st_size for p in [*rotated, log]]
    assert all(0 < s <= 2000 for s in sizes), sizes
    kept = [e["request"]["endpoint"] for p in [*rotated, log] for e in events(p)]
    assert kept == [f"/v1/kv/rot/{i}" for i in range(60 - len(kept), 60)]

