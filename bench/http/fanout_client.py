"""Load generator for the blocking-query fan-out scenario (started by bench/http/run.py).

Runs in its own process so the agent's event loop and the client's never share a core's time
slice in one interpreter. It is deliberately light: raw asyncio Protocols (uvloop when
installed), a hand-written HTTP/1.1 request and a minimal response parser; no aiohttp.

    fanout_client.py --port P --agent-pid PID --n 1000 --index N --path /v1/health/service/web
                     --wait 60s --change-file change.json

Steps:
 1. open ``n`` keep-alive connections to 127.0.0.1:port (plus one for the change);
 2. write ``GET <path>?index=N&wait=<wait>`` on each;
 3. wait until they are parked: all requests written, at least ``--settle`` seconds passed, the
    agent's CPU time (/proc/PID/stat) has not advanced for ``--idle`` seconds (it has read,
    run and parked every query), and no query has returned; otherwise report
    ``parked_verified: false``;
 4. t0 = monotonic() just before writing the change (``PUT /v1/catalog/register`` with the body
    from --change-file); t_put = when its response has been read;
 5. record, for each query, the monotonic time its response was complete, its status and its
    X-Consul-Index; wait until all returned (or --timeout).
Prints one JSON object on stdout. CLOCK_MONOTONIC is system-wide, but every time here is taken
in this process anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


class Conn(asyncio.Protocol):
    __slots__ = ("transport", "buf", "done", "t_done", "status", "index", "body_len", "body", "lost",
                 "_hdr_end", "_clen", "keep_body")

    def __init__(self, keep_body: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done = asyncio.get_running_loop().create_future()
        self.t_done = 0.0
        self.status = 0
        self.index = -1
        self.body_len = 0
        self.body = b""
        self.lost: str | None = None
        self._hdr_end = -1
        self._clen = -1
        self.keep_body = keep_body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buf += data
        if self._hdr_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._hdr_end = end + 4
            lines = bytes(self.buf[:end]).split(b"\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self._clen = int(value)
                elif name == b"x-consul-index":
                    self.index = int(value)
            if self._clen < 0:  # chunked or close-delimited: not expected from aiohttp web.Response
                self.lost = "no Content-Length"
        if self._clen >= 0 and len(self.buf) - self._hdr_end >= self._clen and not self.done.done():
            self.t_done = now
            self.body_len = self._clen
            if self.keep_body:
                self.body = bytes(self.buf[self._hdr_end:self._hdr_end + self._clen])
            self.buf = bytearray()
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.lost = f"connection lost: {exc!r}"
            self.t_done = time.monotonic()
            self.done.set_result(None)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


async def main(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    out: dict = {"n": a.n, "index": a.index, "path": a.path, "wait": a.wait}
    host = "127.0.0.1"

    # 1. connect, in batches so the listen backlog never overflows
    conns: list[Conn] = []
    t_c0 = time.monotonic()
    for start in range(0, a.n, 200):
        batch = await asyncio.gather(*(loop.create_connection(lambda: Conn(), host, a.port)
                                       for _ in range(start, min(a.n, start + 200))))
        conns += [p for _, p in batch]
    _, change = await loop.create_connection(lambda: Conn(keep_body=True), host, a.port)
    out["connect_s"] = time.monotonic() - t_c0

    # 2. send the blocking queries
    sep = "&" if "?" in a.path else "?"
    req = (f"GET {a.path}{sep}index={a.index}&wait={a.wait} HTTP/1.1\r\n"
           f"Host: {host}:{a.port}\r\nUser-Agent: lictor-bench-fanout\r\nAccept: */*\r\n"
           + ("Accept-Encoding: gzip\r\n" if a.gzip else "") + "\r\n").encode()
    conns[0].keep_body = True  # one body is kept and decoded to check what the waiters got
    cpu0 = proc_cpu_s(a.agent_pid)
    t_s0 = time.monotonic()
    for c in conns:
        c.transport.write(req)  # type: ignore[union-attr]
    t_sent = time.monotonic()
    out["send_s"] = t_sent - t_s0

    # 3. wait until every query is parked
    verified = False
    last_cpu, last_change = proc_cpu_s(a.agent_pid), time.monotonic()
    deadline = t_sent + a.park_timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now, cpu = time.monotonic(), proc_cpu_s(a.agent_pid)
        if cpu - last_cpu > 1.5 / CLK_TCK:  # more than a tick or so of work: still busy
            last_cpu, last_change = cpu, now
        if any(c.done.done() for c in conns):
            break
        if now - t_sent >= a.settle and now - last_change >= a.idle:
            verified = True
            break
    early = sum(c.done.done() for c in conns)
    out["parked_verified"] = verified and early == 0
    out["returned_before_change"] = early
    out["park_s"] = time.monotonic() - t_sent
    out["agent_cpu_park_s"] = proc_cpu_s(a.agent_pid) - cpu0

    # 4. the change
    with open(a.change_file, "rb") as f:
        body = f.read()
    put = (f"PUT /v1/catalog/register HTTP/1.1\r\nHost: {host}:{a.port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    cpu1 = proc_cpu_s(a.agent_pid)
    t0 = time.monotonic()
    change.transport.write(put)  # type: ignore[union-attr]
    await change.done
    t_put = change.t_done
    out["put_status"] = change.status
    out["put_body"] = change.body.decode(errors="replace")
    out["put_s"] = t_put - t0

    # 5. wait for every parked query
    pending = [c.done for c in conns if not c.done.done()]
    if pending:
        await asyncio.wait(pending, timeout=a.timeout)
    t_end = time.monotonic()
    out["agent_cpu_wake_s"] = proc_cpu_s(a.agent_pid) - cpu1

    returned = [c for c in conns if c.done.done() and c.lost is None]
    ok = [c for c in returned if c.status == 200 and c.index > a.index]
    out["returned"] = len(returned)
    out["not_returned"] = a.n - len(returned) - sum(1 for c in conns if c.lost)
    out["lost"] = sorted({c.lost for c in conns if c.lost})[:5]
    out["lost_count"] = sum(1 for c in conns if c.lost)
    out["non_200"] = sum(1 for c in returned if c.status != 200)
    out["index_not_advanced"] = sum(1 for c in returned if c.index <= a.index)
    out["new_indexes"] = sorted({c.index for c in returned})[:5]
    out["body_lengths"] = sorted({c.body_len for c in returned})[:5]
    out["ok"] = len(ok)
    first = conns[0].body
    out["decoded_len_first"] = len(gzip.decompress(first) if a.gzip and first[:2] == b"\x1f\x8b" else first)
    out["gzip"] = a.gzip
    if returned:
        from_send = [(c.t_done - t0) * 1000 for c in returned]
        from_resp = [(c.t_done - t_put) * 1000 for c in returned]
        out["ms_from_put_sent"] = {"p50": pct(from_send, 50), "p99": pct(from_send, 99), "max": max(from_send),
                                   "min": min(from_send), "mean": statistics.fmean(from_send)}
        out["ms_from_put_response"] = {"p50": pct(from_resp, 50), "p99": pct(from_resp, 99),
                                       "max": max(from_resp), "min": min(from_resp)}
        out["all_returned_ms"] = max(from_send) if len(returned) == a.n else None
    out["waited_ms"] = (t_end - t0) * 1000
    for c in conns + [change]:
        c.transport.close()  # type: ignore[union-attr]
    return out


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gzip", action="store_true", help="send Accept-Encoding: gzip, as Go clients do")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--agent-pid", type=int, required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--path", default="/v1/health/service/web")
    p.add_argument("--wait", default="60s")
    p.add_argument("--change-file", required=True)
    p.add_argument("--settle", type=float, default=1.0, help="min seconds between last send and the change")
    p.add_argument("--idle", type=float, default=0.3, help="agent CPU must be flat this long")
    p.add_argument("--park-timeout", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=30.0, help="max seconds to wait for all to return")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 1024), hard))
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(main(a))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    cli()
