"""One client agent running 1,000 HTTP checks at a 10 s interval against a local HTTP server:
the agent's CPU share of one core and its RSS, sampled over 10-second windows for 60 s after the
checks have settled (median and spread). Goal: < 5% of a core and < 80 MB.

    .venv/bin/python bench/cluster/checks_cpu.py [-checks 1000] [-seconds 60]

Processes: 1 server (bootstrap) + the measured client agent, both real `lictor agent`
processes, and an aiohttp server (its own process) answering the checks. Only the client agent's
own /proc/<pid>/stat utime+stime and VmRSS are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.integration.meshproc import Mesh, free_port  # noqa: E402

HTTP_SERVER = """
import sys
from aiohttp import web
async def ok(_): return web.Response(text="ok")
app = web.Application(); app.router.add_get("/health/{n}", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-checks", type=int, default=1000)
    ap.add_argument("-seconds", type=int, default=60)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lictor-checks-"))
    port = free_port()
    web = subprocess.Popen([sys.executable, "-c", HTTP_SERVER, str(port)])
    cfg = root / "checks.json"
    cfg.write_text(json.dumps({"checks": [
        {"id": f"hc{i}", "name": f"hc{i}", "http": f"http://127.0.0.1:{port}/health/{i}", "interval": "10s",
         "timeout": "2s"} for i in range(args.checks)]}))
    m = Mesh(root, servers=1, clients=1, distinct_hosts=False)
    client = m.clients[0]
    client.extra = ("-config-file", str(cfg))
    try:
        m.start(timeout=90)
        assert client.proc is not None
        pid = client.proc.pid
        # settle: every check has run once and anti-entropy has pushed them
        m.wait(lambda: sum(1 for c in client.json("GET", "/v1/agent/checks").values()
                           if c["Status"] == "passing") == args.checks, 60, "all checks passing", step=1.0)
        m.wait(lambda: len(m.servers[0].json("GET", f"/v1/health/node/{client.name}")) == args.checks + 1,
               60, "synced", step=1.0)
        time.sleep(10)
        shares, rss = [], []
        for _ in range(max(1, args.seconds // 10)):
            c0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(10)
            shares.append(100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0))
            rss.append(rss_mb(pid))
        print(json.dumps({"checks": args.checks, "windows": len(shares),
                          "cpu_pct_median": round(statistics.median(shares), 2),
                          "cpu_pct_min": round(min(shares), 2), "cpu_pct_max": round(max(shares), 2),
                          "rss_mb_median": round(statistics.median(rss), 1), "rss_mb_max": round(max(rss), 1),
                          "load_avg": open("/proc/loadavg").read().split()[:3]}))
    finally:
        m.stop()
        web.terminate()
        web.wait(10)


if __name__ == "__main__":
    main()
