"""DNS benchmark: dnsperf against a dev agent serving 100 services, and the same load against
dnsmasq answering the same 100 names from a hosts file, alternating in the same run.

Two measurements per round and per target:

* throughput: dnsperf at full speed (``-q`` outstanding queries) for ``--duration`` seconds:
  queries/s and the ratio lictor / dnsmasq;
* latency at a fixed rate: dnsperf ``-Q 1000 -v`` (1,000 q/s) for ``--duration`` seconds; p50 and
  p99 of the per-query latencies dnsperf reports.

Every query is an A lookup of ``svc<i>.service.consul`` (i = 0..99) with a healthy instance. The
agent answers from its DNS cache (kept fresh by blocking queries); dnsmasq from its hosts file.
Prints the median and the spread (min..max) over ``--rounds`` rounds (at least 3). Every process
it starts it stops by PID; traffic goes to 127.0.0.1 only.

    .venv/bin/python bench/dns/run.py [--rounds 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

N_SERVICES = 100


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def http(method: str, url: str, body: object = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10) as r:
        return r.read()


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dnsperf(port: int, datafile: Path, duration: float, *, rate: int = 0) -> tuple[float, list[float]]:
    """(queries/s, per-query latencies in seconds when ``rate`` is set)."""
    args = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile), "-l", str(duration), "-t", "2"]
    args += ["-Q", str(rate), "-v"] if rate else ["-q", "64"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"dnsperf printed no rate:\n{out[-2000:]}")
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if lost and int(lost.group(1)):
        print(f"    (dnsperf: {lost.group(1)} queries lost)", file=sys.stderr)
    codes = re.search(r"Response codes:\s+(.*)", out)
    if codes is None or not codes.group(1).strip().startswith("NOERROR") or "," in codes.group(1):
        # every name exists: anything but 100% NOERROR means the server answered wrongly
        raise RuntimeError(f"port {port}: unexpected response codes: {codes.group(1) if codes else out[-2000:]}")
    lat = [float(line.rsplit(None, 1)[-1]) for line in out.splitlines()
           if line.startswith("> NOERROR") or line.startswith("> NXDOMAIN")]
    return float(m.group(1)), lat


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return f"median {fmt.format(statistics.median(values))} (spread {fmt.format(min(values))}..{fmt.format(max(values))})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=1000, help="fixed rate for the latency runs (q/s)")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("--rounds must be at least 3 (a median and a spread need them)")
    for exe in ("dnsperf", "dnsmasq"):
        if shutil.which(exe) is None:
            sys.exit(f"{exe} is not installed: apt-get install dnsperf dnsmasq-base")
    work = Path(tempfile.mkdtemp(prefix="lictor-bench-dns-"))
    http_port, dns_port, server_port, serf_port, masq_port = free_ports(5)
    agent: subprocess.Popen[bytes] | None = None
    masq: subprocess.Popen[bytes] | None = None
    try:
        agent_log = open(work / "agent.log", "wb")
        agent = subprocess.Popen([sys.executable, "-m", "lictor.cli.main", "agent", "-dev", "-node", "bench",
                                  f"-http-port={http_port}", f"-dns-port={dns_port}", f"-server-port={server_port}",
                                  f"-serf-lan-port={serf_port}", "-log-level=warn"],
                                 stdout=agent_log, stderr=subprocess.STDOUT, cwd=work)
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if json.loads(http("GET", base + "/v1/status/leader")):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or agent.poll() is not None:
                raise RuntimeError("the agent did not start; see " + str(work / "agent.log"))
            time.sleep(0.1)
        hosts = []
        for i in range(N_SERVICES):
            addr = f"10.77.{i // 250}.{i % 250 + 1}"
            http("PUT", base + "/v1/catalog/register", {"Node": f"node{i}", "Address": addr,
                                                        "Service": {"Service": f"svc{i}", "Port": 8000 + i}})
            hosts.append(f"{addr} svc{i}.service.consul")
        (work / "hosts").write_text("\n".join(hosts) + "\n")
        data = work / "queries.txt"
        data.write_text("".join(f"svc{i}.service.consul A\n" for i in range(N_SERVICES)))
        masq = subprocess.Popen(["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                                 f"--addn-hosts={work / 'hosts'}", "--listen-address=127.0.0.1",
                                 "--bind-interfaces", f"--port={masq_port}", "--user=root",
                                 f"--pid-file={work / 'dnsmasq.pid'}", "--log-facility=/dev/null"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        # check that both answer every name the same way before timing anything
        for port in (dns_port, masq_port):
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "svc42.service.consul"],
                                 capture_output=True, text=True, timeout=10).stdout.split()
            if out != ["10.77.0.43"]:
                raise RuntimeError(f"port {port} answered {out!r} for svc42.service.consul")
        dnsperf(dns_port, data, 1.0)  # warm-up: fills the agent's cache
        res: dict[str, dict[str, list[float]]] = {t: {"qps": [], "p50": [], "p99": [], "cpu_us": []}
                                                  for t in ("lictor", "dnsmasq")}
        pids = {"lictor": agent.pid, "dnsmasq": masq.pid}
        ratios: list[float] = []
        for r in range(args.rounds):
            order = [("lictor", dns_port), ("dnsmasq", masq_port)]
            if r % 2:
                order.reverse()
            got: dict[str, float] = {}
            for name, port in order:
                cpu0 = cpu_seconds(pids[name])
                qps, _ = dnsperf(port, data, args.duration)
                # server CPU per answered query: less sensitive to a busy machine than q/s
                res[name]["cpu_us"].append((cpu_seconds(pids[name]) - cpu0) / (qps * args.duration) * 1e6)
                _, lat = dnsperf(port, data, args.duration, rate=args.rate)
                res[name]["qps"].append(qps)
                res[name]["p50"].append(pct(lat, 50) * 1000)
                res[name]["p99"].append(pct(lat, 99) * 1000)
                got[name] = qps
                print(f"round {r + 1} {name:8s} {qps:9.0f} q/s   at {args.rate} q/s: p50 "
                      f"{res[name]['p50'][-1]:.3f} ms, p99 {res[name]['p99'][-1]:.3f} ms ({len(lat)} samples)"
                      f"   CPU {res[name]['cpu_us'][-1]:.1f} us/query"
                      f"   load average {os.getloadavg()[0]:.1f}")
            ratios.append(got["lictor"] / got["dnsmasq"])
        print()
        for name in ("lictor", "dnsmasq"):
            print(f"{name:8s} q/s {spread(res[name]['qps'])};  p99 at {args.rate} q/s "
                  f"{spread(res[name]['p99'], '{:.3f}')} ms;  p50 {spread(res[name]['p50'], '{:.3f}')} ms;  "
                  f"CPU us/query {spread(res[name]['cpu_us'], '{:.1f}')}")
        print(f"ratio lictor/dnsmasq q/s: {spread(ratios, '{:.3f}')}  (goal >= 0.5)")
        cpu_ratio = [m / lc for lc, m in zip(res["lictor"]["cpu_us"], res["dnsmasq"]["cpu_us"])]
        print(f"ratio of CPU per query dnsmasq/lictor: {spread(cpu_ratio, '{:.3f}')}")
        print(f"lictor p99 at {args.rate} q/s: median {statistics.median(res['lictor']['p99']):.3f} ms (goal <= 1 ms)")
        print("(two cores are shared by the agent, dnsmasq, dnsperf and whatever else runs: the load average "
              "above says how quiet the machine was)")
        out_dir = Path(__file__).resolve().parent.parent / "results"
        out_dir.mkdir(exist_ok=True)
        out_file = out_dir / f"dns-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out_file.write_text(json.dumps({"rounds": args.rounds, "duration": args.duration, "rate": args.rate,
                                        "results": res, "ratios": ratios}, indent=1))
        print(f"raw results: {out_file}")
        return 0
    finally:
        stop(masq)
        stop(agent)


if __name__ == "__main__":
    sys.exit(main())
