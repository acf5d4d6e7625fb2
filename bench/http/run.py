"""HTTP API benchmark of a single-node Lictor (`lictor agent -dev`).

    .venv/bin/python bench/http/run.py                  # default: 5 repeats, ~4 minutes
    .venv/bin/python bench/http/run.py --repeats 3 --duration 5 --scenarios kv16,fanout
    .venv/bin/python bench/http/run.py --profile-only   # one KV GET run under py-spy, top lists

Scenarios (each run of each scenario gets a freshly started agent, stopped afterwards):
  kv16 / kv64  GET /v1/kv/k (100-byte value) with wrk -t1 -c16 / -c64
  health       GET /v1/health/service/web?passing, 100 instances of "web" (100 nodes registered
               with PUT /v1/catalog/register, one passing service check each), wrk -t1 -c16
  fanout       1000 blocking GET /v1/health/service/web?index=N&wait=60s parked, then one
               PUT /v1/catalog/register (a 101st instance); per-query wake-up latency
Repeats run round-robin (the scenario order rotates each round) so drift on the shared 2-core
box spreads over all scenarios. Prints a table of median [min..max] per figure and writes every
raw figure to bench/results/http-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
LUA = HERE / "wrk_report.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
VALUE = b"v" * 100
N_INSTANCES = 100

ALL_SCENARIOS = ["kv16", "kv64", "health", "fanout", "fanout-gzip"]


# ----------------------------------------------------------------------------------------------
# processes: every one started here is tracked by PID and stopped in a finally
# ----------------------------------------------------------------------------------------------
_children: dict[int, subprocess.Popen] = {}


def _spawn(args: list[str], **kw: Any) -> subprocess.Popen:
    p = subprocess.Popen(args, **kw)
    _children[p.pid] = p
    return p


def _stop(p: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process by PID, wait, then SIGKILL it if it is still there."""
    try:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout)
    except ProcessLookupError:
        pass
    finally:
        _children.pop(p.pid, None)


def _stop_all() -> None:
    for p in list(_children.values()):
        _stop(p)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------------------------
# CPU accounting (/proc), so a figure can be read against what else the box was doing
# ----------------------------------------------------------------------------------------------
def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU-seconds of a process."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_s(pid: int) -> float:
    return sum(proc_cpu(pid))


def box_cpu() -> tuple[float, float, float, float]:
    """(user+nice, system, irq+softirq, steal) CPU-seconds of all cores since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1]) / CLK_TCK, v[2] / CLK_TCK, (v[5] + v[6]) / CLK_TCK, v[7] / CLK_TCK


def children_cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime, r.ru_stime


class CpuMeter:
    """Agent, load generator (children reaped in the interval) and whole-box CPU over an interval.

    ``other_user_cpu_pct`` is user time of everything else on the box (other processes: the box
    is shared), the cleanest contention signal; ``kernel_cpu_pct`` is system + softirq time of
    all cores, which includes the loopback TCP work charged to no process."""

    def __init__(self, agent_pid: int) -> None:
        self.pid = agent_pid
        self.t, self.a, self.c, self.b = time.monotonic(), proc_cpu(agent_pid), children_cpu(), box_cpu()

    def stop(self) -> dict[str, float]:
        t, a, c, b = time.monotonic(), proc_cpu(self.pid), children_cpu(), box_cpu()
        wall = t - self.t
        au, asys = a[0] - self.a[0], a[1] - self.a[1]
        cu, csys = c[0] - self.c[0], c[1] - self.c[1]
        bu, bs, bi, bst = (x - y for x, y in zip(b, self.b))

        def pc(x: float) -> float:
            return 100 * x / wall
        return {"wall_s": wall, "agent_cpu_pct": pc(au + asys), "agent_sys_pct": pc(asys),
                "loadgen_cpu_pct": pc(cu + csys),
                "box_cpu_pct": pc(bu + bs + bi),  # out of 100 * ncpu
                "other_user_cpu_pct": pc(max(0.0, bu - au - cu)),
                "kernel_cpu_pct": pc(bs + bi), "steal_pct": pc(bst), "agent_cpu_s": au + asys}


# ----------------------------------------------------------------------------------------------
# the agent
# ----------------------------------------------------------------------------------------------
def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def pick_port(preferred: int) -> int:
    if port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class Agent:
    def __init__(self, port: int, log_path: Path, extra_args: list[str]) -> None:
        self.port = port
        self.log_path = log_path
        self.args = [sys.executable, "-m", "lictor.cli.main", "agent", "-dev", f"-http-port={port}",
                     "-dns-port=-1", "-hcl=limits { http_max_conns_per_client = 0 }",  # 1000 conns, one IP
                     *extra_args]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Agent:
        if not port_free(self.port):
            raise RuntimeError(f"port {self.port} is in use; pass --port")
        self._log = open(self.log_path, "ab")
        self.proc = _spawn(self.args, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}; see {self.log_path}")
            try:
                st, _, body = request(self.port, "GET", "/v1/status/leader", timeout=1)
                if st == 200 and json.loads(body):
                    return self
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"agent not ready in 20 s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.rc = self.proc.returncode
        self._log.close()


def put_ok(port: int, path: str, body: bytes) -> None:
    st, _, out = request(port, "PUT", path, body)
    if st != 200 or out.strip() != b"true":
        raise RuntimeError(f"PUT {path}: {st} {out[:200]!r}")


def instance(i: int) -> dict[str, Any]:
    """Catalog registration of instance i of "web": its own node web-node-<i>, one passing check."""
    node = f"web-node-{i}"
    return {
        "Node": node, "Address": f"10.1.{i // 250}.{i % 250 + 1}",  # data only: nothing connects there
        "Service": {"ID": f"web-{i}", "Service": "web", "Port": 8080, "Tags": ["v1"], "Meta": {"i": str(i)}},
        "Check": {"CheckID": f"service:web-{i}", "Name": "web alive", "Status": "passing",
                  "ServiceID": f"web-{i}", "Output": "ok"},
    }


def register_instances(port: int, n: int) -> None:
    c = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        for i in range(n):
            c.request("PUT", "/v1/catalog/register", body=json.dumps(instance(i)).encode(),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            out = r.read()
            if r.status != 200 or out.strip() != b"true":
                raise RuntimeError(f"register {i}: {r.status} {out[:200]!r}")
    finally:
        c.close()


def check_health(port: int, expect: int, path: str = "/v1/health/service/web?passing") -> tuple[int, int]:
    st, h, body = request(port, "GET", path)
    rows = json.loads(body)
    if st != 200 or len(rows) != expect:
        raise RuntimeError(f"GET {path}: status {st}, {len(rows)} instances, expected {expect}")
    if any(c["Status"] != "passing" for r in rows for c in r["Checks"]):
        raise RuntimeError(f"GET {path}: a check is not passing")
    return int(h["x-consul-index"]), len(body)


# ----------------------------------------------------------------------------------------------
# wrk
# ----------------------------------------------------------------------------------------------
def run_wrk(url: str, conns: int, duration: float, timeout_s: float = 5.0) -> dict[str, Any]:
    args = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", f"--timeout={timeout_s:g}s",
            "-s", str(LUA), url]
    p = _spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=duration + 30)
    finally:
        _stop(p)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {out}\n{err}")
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    lat = r["latency_us"]
    non2xx = 0
    for ln in out.splitlines():
        if ln.strip().startswith("Non-2xx or 3xx responses:"):
            non2xx = int(ln.split(":")[1])
    return {"rps": r["requests"] / secs, "requests": r["requests"], "secs": secs,
            "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
            "p999_ms": lat["p999"] / 1000, "max_ms": lat["max"] / 1000, "mean_ms": lat["mean"] / 1000,
            "errors": r["errors"], "non2xx": non2xx, "bytes": r["bytes"]}


def wrk_scenario(agent: Agent, path: str, conns: int, a: argparse.Namespace) -> dict[str, Any]:
    url = f"http://{HOST}:{agent.port}{path}"
    if a.warmup > 0:
        run_wrk(url, conns, a.warmup)
    meter = CpuMeter(agent.pid)
    r = run_wrk(url, conns, a.duration)
    r.update(meter.stop())
    r["agent_cpu_us_per_req"] = r.pop("agent_cpu_s") * 1e6 / max(1, r["requests"])
    return r


# ----------------------------------------------------------------------------------------------
# scenarios
# ----------------------------------------------------------------------------------------------
def sc_kv(agent: Agent, a: argparse.Namespace, conns: int) -> dict[str, Any]:
    put_ok(agent.port, "/v1/kv/k", VALUE)
    st, _, body = request(agent.port, "GET", "/v1/kv/k")
    if st != 200 or len(json.loads(body)) != 1:
        raise RuntimeError(f"GET /v1/kv/k: {st} {body[:200]!r}")
    r = wrk_scenario(agent, "/v1/kv/k", conns, a)
    r["response_bytes"] = len(body)
    return r


def sc_health(agent: Agent, a: argparse.Namespace) -> dict[str, Any]:
    register_instances(agent.port, N_INSTANCES)
    _, size = check_health(agent.port, N_INSTANCES)
    r = wrk_scenario(agent, "/v1/health/service/web?passing", a.health_conns, a)
    r["response_bytes"] = size
    return r


def sc_fanout(agent: Agent, a: argparse.Namespace, tmp: Path, gzip: bool = False) -> dict[str, Any]:
    register_instances(agent.port, N_INSTANCES)
    path = "/v1/health/service/web"
    index, _ = check_health(agent.port, N_INSTANCES, path)
    change = tmp / "change.json"
    change.write_bytes(json.dumps(instance(N_INSTANCES)).encode())  # the 101st instance, new node
    args = [sys.executable, str(HERE / "fanout_client.py"), "--port", str(agent.port), "--agent-pid",
            str(agent.pid), "--n", str(a.fanout_n), "--index", str(index), "--path", path, "--wait", "60s",
            "--change-file", str(change)] + (["--gzip"] if gzip else [])
    meter = CpuMeter(agent.pid)
    p = _spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=120)
    finally:
        _stop(p)
    if p.returncode != 0:
        raise RuntimeError(f"fanout client failed ({p.returncode}): {err[-2000:]}")
    r = json.loads(out)
    r["cpu"] = meter.stop()
    # The change must be visible: 101 passing instances, and the returned queries carried it.
    new_index, size = check_health(agent.port, N_INSTANCES + 1, path)
    r["index_after"] = new_index
    r["bodies_match_final"] = (r["decoded_len_first"] == size and r["new_indexes"] == [new_index]
                               and (gzip or r["body_lengths"] == [size]))
    return r


def run_one(name: str, a: argparse.Namespace, tmp: Path, log_path: Path) -> dict[str, Any]:
    port = pick_port(a.port)
    with Agent(port, log_path, a.agent_args) as agent:
        t0 = time.monotonic()
        if name == "kv16":
            r = sc_kv(agent, a, 16)
        elif name == "kv64":
            r = sc_kv(agent, a, 64)
        elif name == "health":
            r = sc_health(agent, a)
        elif name == "fanout":
            r = sc_fanout(agent, a, tmp)
        elif name == "fanout-gzip":
            r = sc_fanout(agent, a, tmp, gzip=True)
        else:
            raise ValueError(name)
        r["scenario_s"] = time.monotonic() - t0
        r["agent_rss_mb"] = _rss_mb(agent.pid)
    r["loadavg"] = os.getloadavg()[0]
    return r


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return 0.0


# ----------------------------------------------------------------------------------------------
# profile (py-spy)
# ----------------------------------------------------------------------------------------------
def pyspy_path() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    if cand.exists():
        return str(cand)
    from shutil import which
    return which("py-spy")


SYSCALLS = [  # innermost native frame -> kernel category (only seen with py-spy --native)
    ("kernel: socket write() (send + loopback TCP delivery)", ("write (", "writev (", "send (", "sendmsg (")),
    ("kernel: epoll_wait / socket read()", ("epoll_", "read (", "recv (", "readv (")),
]
CATEGORIES = [  # (label, substring of the innermost Python frame "func (file:line)"), first match wins
    ("json encode/decode (stdlib json)", "/json/"),
    ("aiohttp request loop (web_protocol)", "aiohttp/web_protocol.py"),
    ("aiohttp response + headers (web_response)", "aiohttp/web_response.py"),
    ("aiohttp http_writer (incl. transport.write unless split out)", "aiohttp/http_writer.py"),
    ("aiohttp routing (web_urldispatcher, web_app)", "aiohttp/web_urldispatcher.py"),
    ("aiohttp routing (web_urldispatcher, web_app)", "aiohttp/web_app.py"),
    ("aiohttp request object (web_request, query)", "aiohttp/web_request.py"),
    ("aiohttp other", "aiohttp"),
    ("multidict / yarl / propcache", "multidict"),
    ("multidict / yarl / propcache", "yarl"),
    ("multidict / yarl / propcache", "propcache"),
    ("lictor agent/http (handlers, QueryOptions, json_response)", "/work/main/agent/http/"),
    ("lictor server/endpoints (rpc dispatch, blocking_read)", "/work/main/server/endpoints/"),
    ("lictor server/blocking.py", "/work/main/server/blocking.py"),
    ("lictor server/state (store)", "/work/main/server/state/"),
    ("lictor common (structs, to-API conversion)", "/work/main/common/"),
    ("lictor agent (Agent.rpc ...)", "/work/main/agent/"),
    ("lictor other", "/work/main/"),
    ("dataclass-generated __init__ (<string>)", "(<string>"),
    ("abc isinstance checks", "<frozen abc>"),
    ("base64 (KV value encoding)", "base64.py"),
    ("event loop (uvloop run loop, asyncio)", "asyncio/"),
    ("weakref / WeakSet (asyncio task bookkeeping)", "_weakrefset.py"),
]


def _is_python(frame: str) -> bool:
    return ".py:" in frame or "(<string>" in frame or "(<frozen" in frame


def _category(frames: list[str]) -> str:
    leaf = frames[-1]
    if not _is_python(leaf) and ("libc.so" in leaf or "libpthread" in leaf):
        for label, names in SYSCALLS:
            if leaf.startswith(names):
                return label
    py = next((f for f in reversed(frames) if _is_python(f)), leaf)
    return next((lab for lab, sub in CATEGORIES if sub in py), "other: " + _short(py))


_PREFIXES: list[str] = []


def _short(frame: str) -> str:
    """Drop the repo, site-packages and stdlib prefixes from a --full-filenames frame."""
    if not _PREFIXES:
        import sysconfig
        _PREFIXES.extend(sorted({str(REPO) + "/", sysconfig.get_paths()["purelib"] + "/",
                                 sysconfig.get_paths()["platlib"] + "/", sysconfig.get_paths()["stdlib"] + "/"},
                                key=len, reverse=True))
    for pre in _PREFIXES:
        frame = frame.replace(pre, "")
    return frame


def summarise_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by self and by inclusive time, and self time by component, from py-spy's
    collapsed stacks. Inclusive lists Python frames only, without the ones every sample passes
    through (runpy, main, the event loop's run). Components charge C code to its Python caller,
    except libc syscalls (write/read/epoll), which get their own line when sampled --native."""
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    cat_c: Counter[str] = Counter()
    total = 0
    for ln in raw.read_text().splitlines():
        stack, _, n = ln.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            if _is_python(f):
                incl_c[f] += count
        cat_c[_category(frames)] += count

    def pct(c: int) -> float:
        return round(100 * c / total, 1) if total else 0.0
    incl = [(f, c) for f, c in incl_c.most_common() if c < 0.99 * total]
    other = sum(c for k, c in cat_c.items() if k.startswith("other: "))
    cats = [(k, c) for k, c in cat_c.most_common() if not k.startswith("other: ")] + [("other (below)", other)]
    return {"samples": total,
            "self_top": [{"frame": _short(f), "pct": pct(c)} for f, c in self_c.most_common(top)],
            "inclusive_top": [{"frame": _short(f), "pct": pct(c)} for f, c in incl[:top]],
            "categories_self": [{"category": k, "pct": pct(c)} for k, c in sorted(cats, key=lambda x: -x[1])],
            "other_top": [{"frame": k[7:], "pct": pct(c)} for k, c in cat_c.most_common()
                          if k.startswith("other: ")][:8]}


def run_profile(a: argparse.Namespace, stamp: str, log_path: Path) -> dict[str, Any]:
    """KV GET -c16 on a fresh agent, sampled by py-spy in three passes of --duration each:
    Python frames (collapsed stacks: the top lists), the same as a flamegraph SVG, and --native
    (C frames too, so the write()/read() syscalls separate from aiohttp's Python code)."""
    spy = pyspy_path()
    if spy is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    passes = [("python", "raw", RESULTS / f"profile-kv16-{stamp}.txt", []),
              ("flamegraph", "flamegraph", RESULTS / f"profile-kv16-{stamp}.svg", []),
              ("native", "raw", RESULTS / f"profile-kv16-{stamp}-native.txt", ["--native"])]
    port = pick_port(a.port)
    out: dict[str, Any] = {}
    with Agent(port, log_path, a.agent_args) as agent:
        put_ok(port, "/v1/kv/k", VALUE)
        url = f"http://{HOST}:{port}/v1/kv/k"
        run_wrk(url, 16, a.warmup or 1)
        for name, fmt, dest, extra in passes:
            rate = "100" if extra else "200"  # --native unwinding costs more per sample
            spy_p = _spawn([spy, "record", "--pid", str(agent.pid), "--function", "--full-filenames",
                            "--rate", rate, *extra, "--format", fmt, "--output", str(dest),
                            "--duration", str(round(a.duration) + 1)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                time.sleep(0.5)  # let py-spy attach
                w = run_wrk(url, 16, a.duration)
                spy_out, _ = spy_p.communicate(timeout=a.duration + 30)
            finally:
                _stop(spy_p)
            out[f"rps_under_pyspy_{name}"] = round(w["rps"])
            out[f"pyspy_{name}_output"] = spy_out.strip().splitlines()[-2:]
    out["python"] = summarise_profile(passes[0][2])
    out["native"] = summarise_profile(passes[2][2])
    out["files"] = [str(p[2].relative_to(REPO)) for p in passes if p[2].exists()]
    return out


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def med_range(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _get(r: dict[str, Any], key: str) -> float | None:
    cur: Any = r
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


FIGURES = {
    "kv16": [("req/s", "rps", 0), ("p50 ms", "p50_ms", 2), ("p99 ms", "p99_ms", 2),
             ("agent CPU %", "agent_cpu_pct", 0), ("agent CPU us/req", "agent_cpu_us_per_req", 0),
             ("wrk CPU %", "loadgen_cpu_pct", 0), ("other processes user CPU %", "other_user_cpu_pct", 0),
             ("hypervisor steal %", "steal_pct", 0)],
    "fanout": [("wake p50 ms (from PUT sent)", "ms_from_put_sent.p50", 1),
               ("wake p99 ms (from PUT sent)", "ms_from_put_sent.p99", 1),
               ("wake max ms = all returned", "ms_from_put_sent.max", 1),
               ("wake p50 ms (from PUT response)", "ms_from_put_response.p50", 1),
               ("wake p99 ms (from PUT response)", "ms_from_put_response.p99", 1),
               ("PUT round trip ms", "put_s", 1),
               ("agent CPU s to wake all", "agent_cpu_wake_s", 2),
               ("park time s (sent -> verified idle)", "park_s", 2)],
}
FIGURES["fanout-gzip"] = FIGURES["fanout"]
FIGURES["kv64"] = FIGURES["kv16"]
FIGURES["health"] = FIGURES["kv16"]
TITLES = {"kv16": "GET /v1/kv/k  (wrk -t1 -c16)", "kv64": "GET /v1/kv/k  (wrk -t1 -c64)",
          "health": "GET /v1/health/service/web?passing, 100 instances  (wrk -t1 -c{c})",
          "fanout": "{n} blocking queries /v1/health/service/web?index=N&wait=60s, one register",
          "fanout-gzip": "{n} blocking queries as above, sending Accept-Encoding: gzip (as Go clients do)"}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        s: dict[str, Any] = {}
        for label, key, _ in FIGURES[name]:
            vals = [v for r in ok if (v := _get(r, key)) is not None]
            if key == "put_s":
                vals = [v * 1000 for v in vals]
            if vals:
                s[key] = med_range(vals)
        if name.startswith("fanout"):
            s["checks"] = {
                "parked_verified": [r.get("parked_verified") for r in ok],
                "ok_of_n": [f"{r.get('ok')}/{r.get('n')}" for r in ok],
                "non_200": sum(r.get("non_200", 0) for r in ok),
                "index_not_advanced": sum(r.get("index_not_advanced", 0) for r in ok),
                "lost": sum(r.get("lost_count", 0) for r in ok),
                "bodies_match_final": [r.get("bodies_match_final") for r in ok]}
        else:
            errs: Counter[str] = Counter()
            for r in ok:
                errs.update(r["errors"])
            s["checks"] = {"socket_errors_total": dict(errs), "non2xx_total": sum(r["non2xx"] for r in ok),
                           "response_bytes": sorted({r.get("response_bytes") for r in ok})}
        s["failed_runs"] = [r["error"] for r in rs if "error" in r]
        out[name] = s
    return out


def print_table(summary: dict[str, Any], a: argparse.Namespace) -> None:
    for name, s in summary.items():
        print()
        print(TITLES[name].format(c=a.health_conns, n=a.fanout_n))
        for label, key, nd in FIGURES[name]:
            if key not in s:
                continue
            m = s[key]
            print(f"  {label:38s} {m['median']:>10.{nd}f}   [{m['min']:.{nd}f} .. {m['max']:.{nd}f}]  n={m['n']}")
        print(f"  checks: {json.dumps(s['checks'])}")
        if s["failed_runs"]:
            print(f"  FAILED RUNS: {s['failed_runs']}")


def env_info() -> dict[str, Any]:
    def cmd(*args: str) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=10).stdout.strip()
        except OSError:
            return ""
    try:
        import aiohttp
        aio = aiohttp.__version__
    except ImportError:
        aio = None
    try:
        import uvloop
        uvl = uvloop.__version__
    except ImportError:
        uvl = None
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "aiohttp": aio, "uvloop": uvl,
            "wrk": wrk_v[0] if wrk_v else "", "git_head": cmd("git", "rev-parse", "--short", "HEAD"),
            "git_dirty": bool(cmd("git", "status", "--porcelain")), "loadavg_start": os.getloadavg()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--duration", type=float, default=8.0, help="seconds of measured wrk load per run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured wrk load before each run")
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help=f"comma list of {ALL_SCENARIOS}")
    p.add_argument("--health-conns", type=int, default=16)
    p.add_argument("--fanout-n", type=int, default=1000)
    p.add_argument("--port", type=int, default=18500, help="agent HTTP port (a free one is picked if busy)")
    p.add_argument("--agent-arg", dest="agent_args", action="append", default=[],
                   help="extra flag for `lictor agent -dev`, e.g. --agent-arg=-log-level=info")
    p.add_argument("--profile", action="store_true", help="after the runs, one KV GET run under py-spy")
    p.add_argument("--profile-only", action="store_true", help="only the py-spy profile run")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/http-<ts>.json)")
    a = p.parse_args()
    scenarios = [s for s in a.scenarios.split(",") if s]
    bad = set(scenarios) - set(ALL_SCENARIOS)
    if bad:
        p.error(f"unknown scenarios {sorted(bad)}")
    from shutil import which
    if which("wrk") is None:
        print("wrk not found: run bench/setup.sh (apt-get install -y wrk)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.fanout_n * 2 + 512  # the agent inherits this: one socket per parked query
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = a.out or RESULTS / f"http-{stamp}.json"
    log_path = RESULTS / f"http-{stamp}-agent.log"
    signal.signal(signal.SIGTERM, _on_sigterm)
    result: dict[str, Any] = {"env": env_info(), "config": {k: (str(v) if isinstance(v, Path) else v)
                                                           for k, v in vars(a).items()}}
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
    t_start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="lictor-bench-") as tmpdir:
            if not a.profile_only:
                for rnd in range(a.repeats):
                    order = scenarios[rnd % len(scenarios):] + scenarios[:rnd % len(scenarios)]
                    for name in order:
                        try:
                            r = run_one(name, a, Path(tmpdir), log_path)
                        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                            r = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                        r["round"] = rnd
                        runs[name].append(r)
                        brief = (f"rps={r['rps']:.0f} p50={r['p50_ms']:.2f}ms p99={r['p99_ms']:.2f}ms "
                                 f"agent={r['agent_cpu_pct']:.0f}% wrk={r['loadgen_cpu_pct']:.0f}% "
                                 f"other-user={r['other_user_cpu_pct']:.0f}% kernel={r['kernel_cpu_pct']:.0f}%" if "rps" in r else
                                 f"p50={r['ms_from_put_sent']['p50']:.1f}ms p99={r['ms_from_put_sent']['p99']:.1f}ms "
                                 f"all={r['ms_from_put_sent']['max']:.1f}ms ok={r['ok']}/{r['n']} "
                                 f"parked={r['parked_verified']}" if "ms_from_put_sent" in r else r.get("error"))
                        print(f"[{time.monotonic() - t_start:6.1f}s] round {rnd + 1}/{a.repeats} {name:7s} {brief}",
                              flush=True)
            result["runs"] = runs
            result["summary"] = summarise(runs) if not a.profile_only else {}
            if a.profile or a.profile_only:
                result["profile"] = run_profile(a, stamp, log_path)
    except KeyboardInterrupt:
        print("interrupted; stopping processes", file=sys.stderr)
        result["interrupted"] = True
        result.setdefault("runs", runs)
        return 130
    finally:
        _stop_all()
        result["env"]["loadavg_end"] = os.getloadavg()
        result["total_s"] = time.monotonic() - t_start
        out_path.write_text(json.dumps(result, indent=1, default=str))
    if result.get("summary"):
        print_table(result["summary"], a)
    if "profile" in result:
        pr = result["profile"]
        py, nat = pr["python"], pr["native"]
        print(f"\nprofile: KV GET -c16 under py-spy, {py['samples']} samples (Python frames; "
              f"{pr['rps_under_pyspy_python']} req/s while sampled), {nat['samples']} samples --native "
              f"({pr['rps_under_pyspy_native']} req/s while sampled); files: {', '.join(pr['files'])}")
        print("  self time (Python frames; C code and syscalls charged to the calling Python function):")
        for e in py["self_top"]:
            print(f"    {e['pct']:5.1f}%  {e['frame']}")
        print("  inclusive time (Python frames):")
        for e in py["inclusive_top"]:
            print(f"    {e['pct']:5.1f}%  {e['frame']}")
        print("  self time by component (--native pass: syscalls split out):")
        for e in nat["categories_self"]:
            print(f"    {e['pct']:5.1f}%  {e['category']}")
        print("  'other' (--native pass), largest:")
        for e in nat["other_top"]:
            print(f"    {e['pct']:5.1f}%  {e['frame']}")
    print(f"\nresults: {out_path.relative_to(REPO) if out_path.is_relative_to(REPO) else out_path}"
          f"  (total {result['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
