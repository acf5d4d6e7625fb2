"""Istio resources through a real `lictor agent -dev`: `lictor apply -f` / `get` / `delete -f`
and /v1/istio; all-or-nothing, dry runs, and conflicts with Consul-written entries both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CANARY = ROOT / "examples" / "shop" / "mesh" / "shipping-canary.yaml"


def cli(agent: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent.addr}
    return subprocess.run([sys.executable, "-m", "lictor.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=30, input=stdin)


def test_apply_get_delete_round_trip(dev_agent: Any) -> None:
    a = dev_agent
    r = cli(a, "apply", "-f", str(CANARY), "-dry-run")
    assert r.returncode == 0, r.stderr
    assert "VirtualService/default/shipping configured (dry run)" in r.stdout
    assert a.request("GET", "/v1/config/service-splitter/shipping")[0] == 404
    r = cli(a, "apply", "-f", str(CANARY))
    assert r.returncode == 0, r.stderr
    assert "config entry service-splitter/shipping written" in r.stdout
    split = a.json("GET", "/v1/config/service-splitter/shipping")
    assert [s["Weight"] for s in split["Splits"]] == [90.0, 10.0]
    assert split["Meta"]["lictor-istio"] == "VirtualService/default/shipping"
    got = json.loads(cli(a, "get", "virtualservice", "shipping").stdout)
    assert got["spec"]["http"][0]["route"][0]["weight"] == 90 and got["ModifyIndex"] > 0
    assert [x["kind"] for x in a.json("GET", "/v1/istio")] == ["DestinationRule", "VirtualService"]
    # applying the same file again changes nothing
    assert "nothing changed" in cli(a, "apply", "-f", str(CANARY)).stdout
    # the implied entries are changed only through the Istio resources
    status, body = a.request("PUT", "/v1/config", {"Kind": "service-splitter", "Name": "shipping",
                                                   "Splits": [{"Weight": 100}]})
    assert status == 400 and b"conflicts with the Istio resource(s) VirtualService/default/shipping" in body
    assert a.request("DELETE", "/v1/config/service-resolver/shipping")[0] == 400
    r = cli(a, "delete", "-f", str(CANARY))
    assert r.returncode == 0 and "config entry service-splitter/shipping deleted" in r.stdout, r
    for kind in ("service-splitter", "service-resolver", "service-defaults"):
        assert a.request("GET", f"/v1/config/{kind}/shipping")[0] == 404
    assert a.json("GET", "/v1/istio") == []


def test_all_or_nothing_and_conflict_with_consul_entry(dev_agent: Any) -> None:
    a = dev_agent
    good = CANARY.read_text()
    bad = good + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [web]
  http:
  - route:
    - {destination: {host: web}, weight: 60}
    - {destination: {host: api}, weight: 30}
"""
    r = cli(a, "apply", "-f", "-", stdin=bad)
    assert r.returncode == 1
    assert "document 3 (VirtualService/broken): spec.http[0].route: weights sum to 90, not 100" in r.stderr
    assert a.json("GET", "/v1/istio") == []
    assert a.request("GET", "/v1/config/service-splitter/shipping")[0] == 404
    # a Consul-written entry for the same service: the apply is refused naming both
    assert a.json("PUT", "/v1/config", {"Kind": "service-resolver", "Name": "shipping"}) is True
    status, body = a.request("PUT", "/v1/istio/apply", good.encode())
    assert status == 400
    assert b"document 1 (DestinationRule/shipping): conflicts with the config entry service-resolver 'shipping'" in body
    assert a.json("GET", "/v1/istio") == []
    a.request("DELETE", "/v1/config/service-resolver/shipping")


def test_errors_name_the_file_when_several_are_applied(dev_agent: Any, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(CANARY.read_text())
    (tmp_path / "b.yaml").write_text("""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route:
    - {destination: {host: web, subset: v7}}
""")
    r = cli(dev_agent, "apply", "-f", str(tmp_path))
    assert r.returncode == 1
    assert f"{tmp_path / 'b.yaml'} document 1 (VirtualService/web): spec.http[0].route[0].destination.subset" \
        in r.stderr, r.stderr
    assert dev_agent.json("GET", "/v1/istio") == []
