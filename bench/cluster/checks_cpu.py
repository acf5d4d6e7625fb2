"""One client agent running 1,000 HTTP checks at a 10 s interval against a local HTTP server:
the agent's CPU share of one core and its RSS, sampled over 10-second windows for 60 s after the
checks have settled (median and spread). Goal: < 5% of a core and < 80 MB.

    .venv/bin/python bench/cluster/checks_cpu.py [-checks 1000] [-seconds 60] [-profile 20]

``-profile S`` then samples the client agent with py-spy for S seconds and prints the top
functions by self and inclusive time (bench/http/run.py's summary).

Processes: 1 server (bootstrap; the harness's fast test timings) + the measured client agent
(production gossip and coordinate timings), both real `lictor agent` processes, and an aiohttp server (its own process) answering the checks. Only the client agent's
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


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(parts[11]) / tick, int(parts[12]) / tick


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def profile(pid: int, seconds: int, out: Path, *, native: bool = False) -> None:
    from bench.http.run import pyspy_path, summarise_profile
    spy = pyspy_path()
    if spy is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
                    "--format", "raw", "--full-filenames", "--output", str(out)] + (["--native"] if native else []),
                   check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = summarise_profile(out, top=25)
    print(f"py-spy: {summary['samples']} samples ({out})")
    for key in ("self_top", "inclusive_top"):
        print(f"-- {key}")
        for row in summary[key]:
            print(f"{row['pct']:6.1f}%  {row['frame']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-checks", type=int, default=1000)
    ap.add_argument("-seconds", type=int, default=60)
    ap.add_argument("-profile", type=int, default=0, help="then py-spy the client agent for S seconds")
    ap.add_argument("-native", action="store_true", help="py-spy --native (C frames too)")
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
    # the measured agent runs production timings (SWIM probe every 1 s, coordinate sync every
    # 15 s); the harness's fast test timings would put ~5x the gossip load on it
    client.env = {"LICTOR_GOSSIP_FAST": "0", "LICTOR_COORD_SYNC_INTERVAL": ""}
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
        shares, user, rss = [], [], []
        for _ in range(max(1, args.seconds // 10)):
            (u0, s0), t0 = cpu_times(pid), time.monotonic()
            time.sleep(10)
            (u1, s1), dt = cpu_times(pid), time.monotonic() - t0
            shares.append(100 * (u1 - u0 + s1 - s0) / dt)
            user.append(100 * (u1 - u0) / dt)
            rss.append(rss_mb(pid))
        print(json.dumps({"checks": args.checks, "windows": len(shares),
                          "cpu_pct_median": round(statistics.median(shares), 2),
                          "cpu_pct_min": round(min(shares), 2), "cpu_pct_max": round(max(shares), 2),
                          "user_pct_median": round(statistics.median(user), 2),
                          "rss_mb_median": round(statistics.median(rss), 1), "rss_mb_max": round(max(rss), 1),
                          "load_avg": open("/proc/loadavg").read().split()[:3]}))
        if args.profile:
            profile(pid, args.profile, root / "profile.txt", native=args.native)
    finally:
        m.stop()
        web.terminate()
        web.wait(10)


if __name__ == "__main__":
    main()
