"""An HTTP app for traffic-management tests: it says which instance answered and what it saw,
and can be told to be slow or to fail.

    GET /anything          200 "instance=<name>\\npath=/anything\\nx-...=..." (+ header x-instance)
    ?ms=N                  answer after N milliseconds
    ?fail=once:<key>       503 the first time <key> is seen, 200 after
    ?fail=always           503
    app.failing = True     every request 503 (an instance going bad)

``app.count`` counts requests (the mirror target's copies), ``app.paths`` keeps the paths seen."""

from __future__ import annotations

import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def _answer(self) -> None:
        app: TrafficApp = self.server.app  # type: ignore[attr-defined]
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        with app.lock:
            app.count += 1
            app.paths.append(self.path)
        if q.get("ms"):
            time.sleep(int(q["ms"][0]) / 1000.0)
        status = 200
        fail = (q.get("fail") or [""])[0]
        if app.failing or fail == "always":
            status = 503
        elif fail.startswith("once:"):
            with app.lock:
                if fail not in app.seen:
                    app.seen.add(fail)
                    status = 503
        seen_headers = "".join(f"{k.lower()}={v}\n" for k, v in self.headers.items() if k.lower().startswith("x-"))
        body = f"instance={app.name}\nstatus={status}\npath={self.path}\n{seen_headers}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-instance", app.name)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PUT = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


class TrafficApp:
    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.count = 0
        self.paths: list[str] = []
        self.seen: set[str] = set()
        self.failing = False
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.app = self  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
