"""The ``lictor`` CLI against a real dev agent: exit codes, output, and what reached the agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def cli(agent: Any, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "CONSUL_HTTP_ADDR": agent.addr, **(env or {})}
    e.pop("LICTOR_HTTP_ADDR", None)
    return subprocess.run([sys.executable, "-m", "lictor.cli.main", *args], input=stdin, capture_output=True,
                          text=True, env=e, timeout=30)


def test_kv_put_get_delete_export_import(dev_agent: Any, tmp_path: Path) -> None:
    r = cli(dev_agent, "kv", "put", "cli/a", "hello")
    assert r.returncode == 0 and "Success! Data written to: cli/a" in r.stdout
    r = cli(dev_agent, "kv", "get", "cli/a")
    assert r.returncode == 0 and r.stdout.strip() == "hello"
    r = cli(dev_agent, "kv", "get", "cli/missing")
    assert r.returncode == 1 and "No key exists at: cli/missing" in r.stderr
    exported = cli(dev_agent, "kv", "export", "cli/")
    assert exported.returncode == 0
    data = json.loads(exported.stdout)
    assert data == [{"key": "cli/a", "flags": 0, "value": "aGVsbG8="}]
    assert cli(dev_agent, "kv", "delete", "cli/a").returncode == 0
    assert dev_agent.request("GET", "/v1/kv/cli/a")[0] == 404
    f = tmp_path / "dump.json"
    f.write_text(exported.stdout)
    r = cli(dev_agent, "kv", "import", f"@{f}")
    assert r.returncode == 0
    assert cli(dev_agent, "kv", "get", "cli/a").stdout.strip() == "hello"


def test_kv_cas_via_cli(dev_agent: Any) -> None:
    cli(dev_agent, "kv", "put", "cli/cas", "1")
    index = dev_agent.json("GET", "/v1/kv/cli/cas")[0]["ModifyIndex"]
    r = cli(dev_agent, "kv", "put", "-cas", f"-modify-index={index + 100}", "cli/cas", "2")
    assert r.returncode == 1
    r = cli(dev_agent, "kv", "put", "-cas", f"-modify-index={index}", "cli/cas", "2")
    assert r.returncode == 0
    assert cli(dev_agent, "kv", "get", "cli/cas").stdout.strip() == "2"


def test_services_register_file_and_catalog(dev_agent: Any, tmp_path: Path) -> None:
    f = tmp_path / "svc.hcl"
    f.write_text('service {\n  name = "cli-web"\n  port = 8088\n  tags = ["blue"]\n'
                 '  check {\n    ttl = "30s"\n  }\n}\n')
    r = cli(dev_agent, "services", "register", str(f))
    assert r.returncode == 0, r.stderr
    services = dev_agent.json("GET", "/v1/agent/services")
    assert services["cli-web"]["Port"] == 8088 and services["cli-web"]["Tags"] == ["blue"]
    import time

    deadline = time.monotonic() + 5
    out = ""
    while time.monotonic() < deadline:
        out = cli(dev_agent, "catalog", "services", "-tags").stdout
        if "cli-web" in out:
            break
        time.sleep(0.1)
    assert "cli-web" in out and "blue" in out
    nodes = cli(dev_agent, "catalog", "nodes")
    assert nodes.returncode == 0 and "lictor-test" in nodes.stdout
    r = cli(dev_agent, "services", "deregister", str(f))
    assert r.returncode == 0, r.stderr
    assert "cli-web" not in dev_agent.json("GET", "/v1/agent/services")


def test_reload_and_unreachable_agent(dev_agent: Any) -> None:
    r = cli(dev_agent, "reload")
    assert r.returncode == 0 and "reload" in r.stdout.lower()
    r = subprocess.run([sys.executable, "-m", "lictor.cli.main", "kv", "get", "-http-addr=127.0.0.1:1", "x"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "127.0.0.1:1" in r.stderr


def test_leave_stops_the_agent(agent_factory: Any) -> None:
    a = agent_factory()
    r = cli(a, "leave")
    assert r.returncode == 0 and "Graceful leave complete" in r.stdout
    assert a.proc.wait(10) == 0
