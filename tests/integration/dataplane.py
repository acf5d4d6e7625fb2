"""Helpers for data-plane tests: a tiny HTTP app, a sidecar Envoy started with
``lictor connect envoy``, and request outcomes through a sidecar."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.procutil import ManagedProcess

LICTOR = [sys.executable, "-m", "lictor.cli.main"]


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = (f"hello from {self.server.name}\n"  # type: ignore[attr-defined]
                f"path={self.path}\nxfcc={self.headers.get('X-Forwarded-Client-Cert', '')}\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


class App:
    """An HTTP app on 127.0.0.1 (threads in the test process, a real socket)."""

    def __init__(self, name: str, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.name = name  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sidecar(ManagedProcess):
    """``lictor connect envoy -sidecar-for <service>`` (which execs Envoy: same PID)."""

    def __init__(self, workdir: Path, service: str, *, http_addr: str, grpc_port: int, admin_port: int,
                 ads_mode: str = "delta", token: str = "") -> None:
        self.name = f"envoy-{service}"
        self.admin_port = admin_port
        self.url = f"http://127.0.0.1:{admin_port}"
        self.log_path = workdir / f"envoy-{service}.log"
        self.args = [*LICTOR, "connect", "envoy", "-http-addr", http_addr, "-grpc-addr", f"127.0.0.1:{grpc_port}",
                     "-sidecar-for", service, "-admin-bind", f"127.0.0.1:{admin_port}", "-ads-mode", ads_mode]
        if token:
            self.args += ["-token", token]
        self.args += ["--", "--concurrency", "1", "--log-level", "info", "--drain-time-s", "1"]

    def start(self) -> Sidecar:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_http("/ready", 30)
        return self

    def text(self, path: str) -> str:
        status, body = self.request("GET", path)
        assert status == 200, f"{self.name} {path}: {status}"
        return body.decode()

    def stat(self, name: str) -> int:
        """The value of one counter/gauge (exact name), 0 when absent."""
        for line in self.text(f"/stats?filter=^{name}$").splitlines():
            k, _, v = line.partition(": ")
            if k == name:
                return int(v)
        return 0

    def stats(self, pattern: str) -> dict[str, int]:
        out = {}
        for line in self.text(f"/stats?filter={pattern}").splitlines():
            k, _, v = line.partition(": ")
            if v.strip().isdigit():
                out[k] = int(v)
        return out

    def endpoints(self, cluster_prefix: str) -> list[str]:
        """Host addresses Envoy has for clusters starting with ``cluster_prefix``."""
        out = []
        for line in self.text("/clusters").splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0].startswith(cluster_prefix) and parts[2] == "health_flags":
                out.append(parts[1])
        return sorted(out)

    def config_dump(self) -> dict[str, Any]:
        return json.loads(self.text("/config_dump"))


def outcome(port: int, path: str = "/", method: str = "GET", timeout: float = 3.0) -> tuple[str, str]:
    """("200"|"403"|..., body) for an HTTP request to 127.0.0.1:port, or ("closed", why) when the
    connection is refused, reset or closed without an answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=b"x" if method == "POST" else None)
        resp = conn.getresponse()
        return str(resp.status), resp.read().decode(errors="replace")
    except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, socket.timeout) as exc:
        return "closed", type(exc).__name__
    finally:
        conn.close()


def plaintext_answer(port: int) -> bytes:
    """What a plaintext HTTP request to a TLS-only port gets back (b"" when closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            return b""


def held(*requests: Any, hold: float = 20.0) -> Any:
    """A gRPC request iterator that sends ``requests`` and then keeps the stream open (as Envoy
    does) for up to ``hold`` seconds, until the call is cancelled."""
    import time

    yield from requests
    time.sleep(hold)
