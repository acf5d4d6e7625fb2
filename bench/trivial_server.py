"""The load generator's ceiling: a trivial HTTP/1.1 server that answers every request at once.

    python bench/trivial_server.py --port P [--body-bytes 216] [--workers 1]

Keep-alive HTTP/1.1 on raw asyncio Protocols (uvloop when installed): it splits requests on the
blank line, skips a Content-Length body, and answers each with one canned `200` of
`--body-bytes` bytes of JSON-ish text. No routing, no parsing beyond that, no allocation per
request beyond the slices. `--workers N` forks N processes sharing the port (SO_REUSEPORT).

The benchmarks run wrk against it with the same arguments and script as against the system under
test, in the same run: the rate wrk reaches here is what the load generator (plus a server that
costs almost nothing) can do on this box right now. If that ceiling is not at least 3x the rate
measured against a real system, the real figure may be the generator's limit, and the benchmark
says so ("SATURATED").

Prints "READY <port>" on stdout once listening. Stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys


class _Proto(asyncio.Protocol):
    __slots__ = ("buf", "need", "transport", "resp")

    def __init__(self, resp: bytes) -> None:
        self.buf = b""
        self.need = 0  # body bytes still to skip
        self.resp = resp
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n_resp = 0
        pos = 0
        while True:
            if self.need:
                take = min(self.need, len(buf) - pos)
                pos += take
                self.need -= take
                if self.need:
                    break
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            head = buf[pos:end]
            pos = end + 4
            i = head.find(b"ontent-Length:")
            if i < 0:
                i = head.find(b"ontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i)
                self.need = int(head[i + 14: j if j >= 0 else len(head)])
            n_resp += 1
        self.buf = buf[pos:]
        if n_resp and self.transport is not None:
            self.transport.write(self.resp * n_resp)


def _serve(sock: socket.socket, resp: bytes) -> None:
    try:
        import uvloop  # type: ignore[import-not-found]
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(lambda: _Proto(resp), sock=sock))
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    loop.run_until_complete(stop.wait())
    server.close()
    loop.close()


def spawn(port: int, body_bytes: int = 64, workers: int = 1, python: str = sys.executable):
    """Start the server as a child process, wait for READY; the caller stops it by PID."""
    import subprocess
    p = subprocess.Popen([python, __file__, "--port", str(port), "--body-bytes", str(body_bytes),
                          "--workers", str(workers)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline() if p.stdout else ""
    if not line.startswith("READY"):
        p.kill()
        p.wait()
        raise RuntimeError(f"trivial server did not start: {line!r}")
    return p


def verdict(ceiling: float | None, measured: float | None, factor: float = 3.0) -> str:
    """'ok' when the generator's ceiling is >= factor x the measured rate, else 'SATURATED'."""
    if not ceiling or not measured:
        return "unknown"
    return "ok" if ceiling >= factor * measured else "SATURATED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--body-bytes", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    body = (b'{"ok":true,"pad":"' + b"x" * max(0, a.body_bytes - 20) + b'"}')[: max(2, a.body_bytes)]
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)
    socks = []
    for _ in range(a.workers):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((a.host, a.port))
        s.listen(4096)
        socks.append(s)
    kids = []
    for s in socks[1:]:
        pid = os.fork()
        if pid == 0:
            _serve(s, resp)
            os._exit(0)
        kids.append(pid)
    print(f"READY {a.port}", flush=True)
    try:
        _serve(socks[0], resp)
    finally:
        for pid in kids:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
