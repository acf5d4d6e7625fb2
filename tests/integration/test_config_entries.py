"""Config entries, intentions, discovery chains and mesh views against a real `lictor agent -dev`,
through HTTP, py-consul and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def cli(agent: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent.addr}
    env.pop("LICTOR_HTTP_ADDR", None)
    return subprocess.run([sys.executable, "-m", "lictor.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=30)


def test_config_crud_cas_and_rejected_write(dev_agent: Any) -> None:
    a = dev_agent
    assert a.json("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "ce-web", "Protocol": "http"}) is True
    got = a.json("GET", "/v1/config/service-defaults/ce-web")
    assert got["Protocol"] == "http" and got["ModifyIndex"] > 0
    assert a.json("PUT", "/v1/config?cas=0", {"Kind": "service-defaults", "Name": "ce-web"}) is False
    assert a.json("PUT", f"/v1/config?cas={got['ModifyIndex']}",
                  {"Kind": "service-defaults", "Name": "ce-web", "Protocol": "http2"}) is True
    # a rejected write changes nothing
    status, body = a.request("PUT", "/v1/config", {"Kind": "service-splitter", "Name": "ce-web",
                                                   "Splits": [{"Weight": 70}, {"Weight": 20, "Service": "x"}]})
    assert status == 400 and b"Splits: the sum of all split weights must be 100, not 90" in body
    assert a.request("GET", "/v1/config/service-splitter/ce-web")[0] == 404
    status, body = a.request("PUT", "/v1/config", {"Kind": "nope", "Name": "x"})
    assert status == 400 and b"invalid config entry kind" in body
    names = [e["Name"] for e in a.json("GET", "/v1/config/service-defaults")]
    assert "ce-web" in names
    cur = a.json("GET", "/v1/config/service-defaults/ce-web")
    assert a.json("DELETE", f"/v1/config/service-defaults/ce-web?cas={cur['ModifyIndex'] + 5}") is False
    assert a.json("DELETE", f"/v1/config/service-defaults/ce-web?cas={cur['ModifyIndex']}") is True
    assert a.json("DELETE", "/v1/config/service-defaults/ce-web") == {}


def test_blocking_query_on_a_kind(dev_agent: Any) -> None:
    import threading
    a = dev_agent
    a.json("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "ce-block", "Protocol": "tcp"})
    import urllib.request
    with urllib.request.urlopen(a.url + "/v1/config/service-resolver", timeout=5) as resp:
        idx = int(resp.headers["X-Consul-Index"])
    result: dict[str, Any] = {}

    def block() -> None:
        result["r"] = a.request("GET", f"/v1/config/service-resolver?index={idx}&wait=5s")
    t = threading.Thread(target=block)
    t.start()
    a.json("PUT", "/v1/config", {"Kind": "service-resolver", "Name": "ce-block", "ConnectTimeout": "2s"})
    t.join(10)
    assert [e["Name"] for e in json.loads(result["r"][1]) if e["Name"] == "ce-block"] == ["ce-block"]


def test_intentions_http_and_py_consul(dev_agent: Any, consul_client: Any) -> None:
    c = consul_client
    assert c.connect.intentions.upsert("ix-web", "ix-db", action="allow") is True
    assert c.connect.intentions.upsert("*", "ix-db", action="deny") is True
    assert c.connect.intentions.check("ix-web", "ix-db") is True
    assert c.connect.intentions.check("ix-other", "ix-db") is False
    got = c.connect.intentions.read("ix-web", "ix-db")
    assert (got["Action"], got["Precedence"]) == ("allow", 9)
    match = c.connect.intentions.match("destination", "ix-db")
    assert [(i["SourceName"], i["Precedence"]) for i in match["ix-db"]] == [("ix-web", 9), ("*", 8)]
    entry = dev_agent.json("GET", "/v1/config/service-intentions/ix-db")
    assert sorted(s["Name"] for s in entry["Sources"]) == ["*", "ix-web"]
    status, body = dev_agent.request("PUT", "/v1/connect/intentions/exact?source=a&destination=ix-db",
                                     {"Action": "allow", "JWT": {}})
    assert status == 400
    assert c.connect.intentions.delete("ix-web", "ix-db") is True
    assert dev_agent.request("GET", "/v1/connect/intentions/exact?source=ix-web&destination=ix-db")[0] == 404
    c.connect.intentions.delete("*", "ix-db")
    assert dev_agent.request("GET", "/v1/config/service-intentions/ix-db")[0] == 404


def test_discovery_chain_and_py_consul_config(dev_agent: Any, consul_client: Any) -> None:
    c = consul_client
    c.config.set("service-defaults", "dc-web", {"Protocol": "http"})
    c.config.set("service-resolver", "dc-web", {"Subsets": {"v1": {"Filter": "Service.Meta.version == v1"},
                                                            "v2": {"Filter": "Service.Meta.version == v2"}},
                                                "DefaultSubset": "v1"})
    c.config.set("service-splitter", "dc-web", {"Splits": [{"Weight": 90, "ServiceSubset": "v1"},
                                                           {"Weight": 10, "ServiceSubset": "v2"}]})
    chain = c.discovery_chain.get("dc-web")["Chain"]
    assert chain["Protocol"] == "http" and chain["StartNode"] == "splitter:dc-web.default.default"
    assert set(chain["Targets"]) == {"v1.dc-web.default.default.dc1", "v2.dc-web.default.default.dc1"}
    assert chain["Targets"]["v1.dc-web.default.default.dc1"]["SNI"].endswith(".consul")
    over = dev_agent.json("POST", "/v1/discovery-chain/dc-tcp", {"OverrideProtocol": "http",
                                                                 "OverrideConnectTimeout": "9s"})["Chain"]
    assert over["Protocol"] == "http" and over["Targets"]["dc-tcp.default.default.dc1"]["ConnectTimeout"] == "9s"
    # a subset that does not exist is refused, naming the field
    status, body = dev_agent.request("PUT", "/v1/config", {"Kind": "service-router", "Name": "dc-web", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/c"}}, "Destination": {"ServiceSubset": "canary"}}]})
    assert status == 400 and b"Routes[0].Destination.ServiceSubset" in body


def test_gateway_services_ingress_health_and_merge_central_config(dev_agent: Any) -> None:
    a = dev_agent
    a.json("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global", "Config": {"local_connect_timeout_ms": 1000}})
    a.json("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "gw-api", "Protocol": "http"})
    a.json("PUT", "/v1/agent/service/register", {"Name": "gw-api", "Port": 9000, "Meta": {"version": "v1"}})
    a.json("PUT", "/v1/agent/service/register", {"Name": "gw-ingress", "Kind": "ingress-gateway", "Port": 8443})
    a.json("PUT", "/v1/agent/service/register", {"Name": "gw-api-sidecar-proxy", "Kind": "connect-proxy",
                                                 "Port": 21000, "Proxy": {"DestinationServiceName": "gw-api",
                                                                          "Config": {"local_connect_timeout_ms": 5}}})
    assert a.json("PUT", "/v1/config", {"Kind": "ingress-gateway", "Name": "gw-ingress", "Listeners": [
        {"Port": 8080, "Protocol": "http", "Services": [{"Name": "gw-api", "Hosts": ["api.example.com"]}]}]}) is True
    gs = a.json("GET", "/v1/catalog/gateway-services/gw-ingress")
    assert [(g["Service"]["Name"], g["GatewayKind"], g["Port"], g["Hosts"]) for g in gs] == [
        ("gw-api", "ingress-gateway", 8080, ["api.example.com"])]
    from tests.integration.conftest import eventually  # noqa: PLC0415 - shared helper

    eventually(lambda: a.json("GET", "/v1/health/ingress/gw-api"), what="ingress health")
    rows = a.json("GET", "/v1/health/ingress/gw-api")
    assert [r["Service"]["Service"] for r in rows] == ["gw-ingress"]
    eventually(lambda: a.json("GET", "/v1/catalog/service/gw-api-sidecar-proxy"), what="proxy in catalog")
    merged = a.json("GET", "/v1/catalog/service/gw-api-sidecar-proxy?merge-central-config")
    assert merged[0]["ServiceProxy"]["Config"] == {"local_connect_timeout_ms": 5, "protocol": "http"}
    plain = a.json("GET", "/v1/catalog/service/gw-api-sidecar-proxy")
    assert plain[0]["ServiceProxy"]["Config"] == {"local_connect_timeout_ms": 5}
    health = a.json("GET", "/v1/health/service/gw-api-sidecar-proxy?merge-central-config")
    assert health[0]["Service"]["Proxy"]["Config"]["protocol"] == "http"


def test_cli_config_and_intention(dev_agent: Any, tmp_path: Path) -> None:
    f = tmp_path / "r.hcl"
    f.write_text('Kind = "service-resolver"\nName = "cli-db"\nconnect_timeout = "3s"\n'
                 'subsets = { v1 = { filter = "Service.Meta.version == v1" } }\n')
    r = cli(dev_agent, "config", "write", str(f))
    assert r.returncode == 0 and "Config entry written: service-resolver/cli-db" in r.stdout, r.stderr
    r = cli(dev_agent, "config", "read", "-kind", "service-resolver", "-name", "cli-db")
    assert r.returncode == 0 and json.loads(r.stdout)["ConnectTimeout"] == "3s"
    assert "cli-db" in cli(dev_agent, "config", "list", "-kind", "service-resolver").stdout.split()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Kind": "service-resolver", "Name": "cli-db", "DefaultSubset": "v9",
                               "Subsets": {"v1": {}}}))
    r = cli(dev_agent, "config", "write", str(bad))
    assert r.returncode == 1 and "DefaultSubset" in r.stderr
    idx = json.loads(cli(dev_agent, "config", "read", "-kind", "service-resolver", "-name", "cli-db").stdout)["ModifyIndex"]
    r = cli(dev_agent, "config", "delete", "-kind", "service-resolver", "-name", "cli-db", "-cas", f"-modify-index={idx + 1}")
    assert r.returncode == 1
    r = cli(dev_agent, "config", "delete", "-kind", "service-resolver", "-name", "cli-db")
    assert r.returncode == 0 and "Config entry deleted: service-resolver/cli-db" in r.stdout

    assert cli(dev_agent, "intention", "create", "-deny", "cli-a", "cli-b").returncode == 0
    r = cli(dev_agent, "intention", "create", "cli-a", "cli-b")
    assert r.returncode == 1 and "already exists" in r.stderr
    assert cli(dev_agent, "intention", "create", "-replace", "-allow", "cli-a", "cli-b").returncode == 0
    r = cli(dev_agent, "intention", "check", "cli-a", "cli-b")
    assert (r.returncode, r.stdout.strip()) == (0, "Allowed")
    assert cli(dev_agent, "intention", "create", "-deny", "*", "cli-b").returncode == 0
    r = cli(dev_agent, "intention", "check", "cli-z", "cli-b")
    assert (r.returncode, r.stdout.strip()) == (2, "Denied")
    r = cli(dev_agent, "intention", "match", "cli-b")
    assert r.stdout.splitlines() == ["cli-a => cli-b (allow)", "* => cli-b (deny)"]
    r = cli(dev_agent, "intention", "get", "cli-a", "cli-b")
    assert "Precedence:" in r.stdout and "allow" in r.stdout
    assert "cli-a" in cli(dev_agent, "intention", "list").stdout
    assert cli(dev_agent, "intention", "delete", "cli-a", "cli-b").returncode == 0
    assert cli(dev_agent, "intention", "get", "cli-a", "cli-b").returncode == 1
