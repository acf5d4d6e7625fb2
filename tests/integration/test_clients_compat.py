"""The request shapes real Consul clients send, replayed against a dev agent.

Prometheus' consul_sd_configs and consul-template (both Go, both using Consul's api package)
send bare ``stale=``, ``wait`` in milliseconds, ``index`` from the previous X-Consul-Index,
``Accept-Encoding: gzip`` and read ``/v1/agent/self`` for the datacenter.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def get(agent: Any, path: str, *, gz: bool = False) -> tuple[int, dict[str, str], Any]:
    headers = {"Accept-Encoding": "gzip"} if gz else {}
    req = urllib.request.Request(agent.url + path, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        if r.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        return r.status, dict(r.headers), json.loads(raw)


def test_prometheus_consul_sd_flow(dev_agent: Any) -> None:
    for i in range(3):
        dev_agent.json("PUT", "/v1/catalog/register", {
            "Node": f"prom-{i}", "Address": f"10.7.0.{i}", "NodeMeta": {"rack": "a"},
            "Service": {"Service": "metrics", "Port": 9100 + i, "Tags": ["prod"]},
            "Check": {"CheckID": "up", "Name": "up", "Status": "passing", "ServiceID": "metrics"}})
    _, _, me = get(dev_agent, "/v1/agent/self")
    dc = me["Config"]["Datacenter"]
    status, headers, services = get(dev_agent, f"/v1/catalog/services?dc={dc}&stale=&index=0&wait=120000ms", gz=True)
    assert status == 200 and services["metrics"] == ["prod"]
    index = headers["X-Consul-Index"]
    _, h2, entries = get(dev_agent, f"/v1/health/service/metrics?dc={dc}&stale=&index=0&wait=120000ms&node-meta=rack:a",
                         gz=True)
    assert sorted(e["Service"]["Port"] for e in entries) == [9100, 9101, 9102]
    assert all(e["Node"]["Meta"] == {"rack": "a"} for e in entries)
    assert h2.get("Content-Encoding") == "gzip"  # 3 entries are over the gzip threshold
    # the watch loop: block on the services index, a new service wakes it
    got: dict[str, Any] = {}

    def watch() -> None:
        got["r"] = get(dev_agent, f"/v1/catalog/services?dc={dc}&stale=&index={index}&wait=10000ms", gz=True)

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    dev_agent.json("PUT", "/v1/catalog/register", {"Node": "prom-new", "Address": "10.7.1.1",
                                                   "Service": {"Service": "other", "Port": 1}})
    t.join(5)
    assert not t.is_alive()
    _, h3, services2 = got["r"]
    assert int(h3["X-Consul-Index"]) > int(index) and "other" in services2


def test_consul_template_kv_watch(dev_agent: Any) -> None:
    dev_agent.request("PUT", "/v1/kv/tmpl/app", b"v1")
    _, headers, rows = get(dev_agent, "/v1/kv/tmpl/app?stale=&index=0")
    index = headers["X-Consul-Index"]
    got: dict[str, Any] = {}

    def watch() -> None:
        got["r"] = get(dev_agent, f"/v1/kv/tmpl/app?stale=&index={index}&wait=60000ms")

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    dev_agent.request("PUT", "/v1/kv/tmpl/app", b"v2")
    t.join(5)
    _, _, rows = got["r"]
    import base64

    assert base64.b64decode(rows[0]["Value"]) == b"v2"
