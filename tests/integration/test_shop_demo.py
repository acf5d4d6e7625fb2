"""The online-shop demo end to end: `examples/shop/run` starts the agent, the apps and their Envoy
sidecars and applies the Istio YAML; then each behaviour the YAML asks for is checked through the
real mesh. Stopped with Ctrl-C (SIGINT), as a user would, which must stop everything it started."""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

RUN = Path(__file__).resolve().parents[2] / "examples" / "shop" / "run"


def get(url: str, token: str = "", method: str = "GET") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen[str]) -> list[str]:
    """Ctrl-C the demo (it stops what it started); the PIDs of its children beforehand."""
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    time.sleep(0.5)
    return children


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("shop")
    proc = subprocess.Popen([sys.executable, str(RUN), "--workdir", str(workdir), "--gateway-port", "0"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        proc.stdout.close()
    threading.Thread(target=pump, daemon=True).start()
    ready: dict[str, Any] | None = None
    out: list[str] = []
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and ready is None and proc.poll() is None:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        out.append(line)
        if line.startswith("READY "):
            ready = json.loads(line[6:])
    if ready is None:
        stop(proc)
        logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(workdir.glob("*.log")))
        pytest.fail("the demo did not get ready:\n" + "".join(out) + logs)
    ready["output"] = "".join(out)
    yield ready
    children = stop(proc)
    # Ctrl-C stopped every process the demo started
    assert len(children) == 12 and not [p for p in children if pid_alive(int(p))]


def test_the_demo_prints_what_to_try(shop: Any) -> None:
    assert "Ctrl-C stops everything" in shop["output"]
    assert "config entry service-splitter/shipping written" in shop["output"]


def test_jwt_required_on_booking(shop: Any) -> None:
    status, body = get(shop["front_url"])
    assert status == 403, body            # no token: no request principal, as Istio answers
    status, body = get(shop["front_url"], "e30.e30.e30")
    assert status == 401, body            # a token that does not verify
    status, body = get(shop["front_url"], shop["token"])
    assert status == 200 and json.loads(body)["booking"] == "confirmed"


def test_canary_split_within_binomial_tolerance(shop: Any) -> None:
    n, p = 200, 0.10
    versions = [json.loads(get(shop["front_url"], shop["token"])[1])["shipping"]["version"] for _ in range(n)]
    v2 = versions.count("v2")
    sigma = math.sqrt(n * p * (1 - p))
    assert set(versions) == {"v1", "v2"}
    assert abs(v2 - n * p) <= 4 * sigma, f"v2 got {v2} of {n}"


def test_plaintext_refused_under_strict_mtls(shop: Any) -> None:
    with socket.create_connection(("127.0.0.1", shop["booking_pub"]), timeout=3) as s:
        s.sendall(b"GET /api/v1/booking HTTP/1.1\r\nHost: booking\r\n\r\n")
        try:
            answer = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert b"confirmed" not in answer


def test_one_trace_across_three_services(shop: Any) -> None:
    before = {t[0]["traceId"] for t in json.loads(get(f"http://127.0.0.1:{shop['zipkin']}/api/v2/traces")[1])}
    assert get(shop["front_url"], shop["token"])[0] == 200
    deadline = time.monotonic() + 15
    servers: set[str] = set()
    while time.monotonic() < deadline:
        traces = json.loads(get(f"http://127.0.0.1:{shop['zipkin']}/api/v2/traces")[1])
        new = [t for t in traces if t[0]["traceId"] not in before]
        for t in new:
            servers = {s["localEndpoint"]["serviceName"] for s in t if s.get("kind") == "SERVER"}
            if {"booking-sidecar-proxy", "inventory-sidecar-proxy", "shipping-sidecar-proxy"} <= servers:
                assert len({s["traceId"] for s in t}) == 1
                assert all(s["tags"].get("shop") == "online-shop" for s in t), t  # Telemetry customTags
                return
        time.sleep(0.3)
    pytest.fail(f"no trace with server spans of booking, inventory and shipping (last: {servers})")


# last: inventory stays ejected for 30 s afterwards
def test_failing_inventory_trips_the_breaker(shop: Any) -> None:
    inv = f"http://127.0.0.1:{shop['inventory']}"
    assert get(f"{inv}/admin/fail", method="POST")[0] == 200
    try:
        bodies = [get(shop["front_url"], shop["token"])[1] for _ in range(6)]
    finally:
        assert get(f"{inv}/admin/recover", method="POST")[0] == 200
    assert get(f"{inv}/stock")[0] == 200  # inventory itself answers again ...
    assert "inventory database down" in bodies[0]
    assert "no healthy upstream" in bodies[-1], bodies
    # ... but stays ejected for baseEjectionTime (30s): the breaker is open
    status, body = get(shop["front_url"], shop["token"])
    assert status == 503 and "no healthy upstream" in body, body
