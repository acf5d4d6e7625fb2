"""Issue 16 defect 7: services and checks from the config files are registered before the agent
reports itself started, and an error among them stops the start with a message naming it
(they used to run in untracked tasks whose errors vanished while the agent ran without them)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _refused(agent_factory: Any, hcl: str) -> str:
    """Run an agent with ``hcl``; it must exit with 1 (the HTTP API may answer for a moment
    while the start is still under way). Returns its output."""
    a = agent_factory("-hcl", hcl, start=False)
    out = subprocess.run(a.args, capture_output=True, text=True, timeout=30, cwd=a.workdir)
    assert out.returncode == 1, out.stderr[-2000:]
    return out.stderr


def test_a_config_check_the_agent_may_not_run_stops_the_start(agent_factory: Any) -> None:
    err = _refused(agent_factory, 'check { id = "cfg-script"\n name = "cfg-script"\n args = ["/bin/true"]\n'
                                  ' interval = "10s" }')
    assert "Error starting agent" in err and "script checks are disabled" in err


def test_a_check_for_a_service_that_does_not_exist_stops_the_start(agent_factory: Any) -> None:
    err = _refused(agent_factory, 'check { id = "orphan"\n name = "orphan"\n service_id = "no-such-service"\n'
                                  ' ttl = "30s" }')
    assert "Error starting agent" in err and "no-such-service" in err


def test_config_services_are_there_once_the_agent_answers(agent_factory: Any) -> None:
    a = agent_factory("-hcl", 'service { name = "cfg-web"\n port = 80\n check { id = "cfg-web-ttl"\n ttl = "30s" } }')
    status, body = a.request("GET", "/v1/agent/services")
    assert status == 200 and b"cfg-web" in body
    status, body = a.request("GET", "/v1/agent/checks")
    assert status == 200 and b"cfg-web-ttl" in body
