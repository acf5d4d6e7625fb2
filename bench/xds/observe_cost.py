"""Cost of observability and JWT in the data plane (issue 13): the same load through Lictor sidecar
pairs that differ in one feature, against the plain pair (the anchor of this benchmark), in the
same run, alternating, against one nginx. Prints added p50/p99 (variant minus plain, same
repetition and point) and Envoy CPU per request (both sidecars), median [min..max].

    wrk --h1--> web-<v> sidecar --mTLS h2--> api-<v> sidecar --h1--> nginx

    plain     no tracing, no access logs, no JWT (the data-plane issue's pair)
    trace1    Tracing zipkin, SamplingPercent 1, on both sidecars (collector in this process)
    trace100  Tracing zipkin, SamplingPercent 100
    jsonlog   AccessLogs JSON (the default format) to a file, on both sidecars
    jwt_rs256 api-<v> requires a JWT (remote JWKS served here), RS256 token on every request
    jwt_es256 the same with an ES256 token

Usage: .venv/bin/python bench/xds/observe_cost.py [--reps 3] [--duration 5] [--points c1,c16]
Needs wrk and nginx (bench/setup.sh). Measured runs hold ``flock /tmp/bench-heavy.lock``.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.xds.common import ANCHOR, LICTOR, REPO, Procs, cpu_seconds, free_ports, http, wait_until  # noqa: E402
from bench.xds.overhead import start_direct  # noqa: E402

LOCK = "/tmp/bench-heavy.lock"
VARIANTS = ("plain", "trace1", "trace100", "jsonlog", "jwt_rs256", "jwt_es256")
POINTS = {"c1": 1, "c16": 16}


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ek = ec.generate_private_key(ec.SECP256R1())
    claims = {"iss": "bench", "sub": "wrk", "iat": int(time.time()), "exp": int(time.time()) + 86400}

    def tok(alg: str, kid: str) -> str:
        si = (_b64u(json.dumps({"alg": alg, "kid": kid}).encode()) + "." + _b64u(json.dumps(claims).encode())).encode()
        if alg == "RS256":
            sig = rk.sign(si, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(ek.sign(si, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return si.decode() + "." + _b64u(sig)

    def n(i: int, size: int = 0) -> str:
        return _b64u(i.to_bytes(size or (i.bit_length() + 7) // 8, "big"))
    rp, ep = rk.public_key().public_numbers(), ek.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "kid": "r", "n": n(rp.n), "e": n(rp.e)},
                     {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "e", "x": n(ep.x, 32), "y": n(ep.y, 32)}]}
    return {"jwks": jwks, "rs256": tok("RS256", "r"), "es256": tok("ES256", "e")}


def _serve(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def start_mesh(procs: Procs, wd: Path, app_port: int, keys: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    hp, sp, serf, grpc, jwks_port, zipkin_port = free_ports(6)
    body = json.dumps(keys["jwks"]).encode()

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    class Zipkin(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while size := int(self.rfile.readline().strip() or b"0", 16):
                    self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass
    servers = [_serve(jwks_port, JWKS), _serve(zipkin_port, Zipkin)]
    procs.start([*LICTOR, "agent", "-dev", "-node", "bench", f"-http-port={hp}", f"-grpc-port={grpc}",
                 f"-server-port={sp}", f"-serf-lan-port={serf}", "-dns-port=-1", "-log-level", "warn"], wd / "agent.log")
    base = f"http://127.0.0.1:{hp}"
    wait_until(lambda: json.loads(http("GET", base + "/v1/status/leader")[1]), 20, "the agent")

    def put(entry: dict[str, Any]) -> None:
        status, raw = http("PUT", base + "/v1/config", entry)
        assert status == 200, raw
    put({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}})
    put({"Kind": "jwt-provider", "Name": "bench", "Issuer": "bench",
         "JSONWebKeySet": {"Remote": {"URI": f"http://127.0.0.1:{jwks_port}/jwks", "CacheDuration": "1h"}}})
    out: dict[str, Any] = {}
    for v in VARIANTS:
        pub, wpub, up, cadm, sadm = free_ports(5)
        extra: dict[str, Any] = {}
        if v.startswith("trace"):
            tracing = {"Provider": "zipkin", "Collector": {"Address": f"127.0.0.1:{zipkin_port}"},
                       "SamplingPercent": 1 if v == "trace1" else 100}
            for svc in (f"api-{v}", f"web-{v}"):
                put({"Kind": "service-defaults", "Name": svc, "Protocol": "http", "Tracing": tracing})
        if v == "jsonlog":
            extra = {"AccessLogs": {"Enabled": True, "Type": "file", "Path": str(wd / "access.log")}}
        if v.startswith("jwt"):
            put({"Kind": "service-intentions", "Name": f"api-{v}", "JWT": {"Providers": [{"Name": "bench"}]},
                 "Sources": [{"Name": f"web-{v}", "Action": "allow"}]})
        else:
            http("PUT", f"{base}/v1/connect/intentions/exact?source=web-{v}&destination=api-{v}", {"Action": "allow"})
        http("PUT", base + "/v1/agent/service/register", {"Name": f"api-{v}", "Port": app_port, "Connect": {
            "SidecarService": {"Port": pub, "Proxy": {**extra}}}})
        http("PUT", base + "/v1/agent/service/register", {"Name": f"web-{v}", "Port": 1, "Connect": {"SidecarService": {
            "Port": wpub, "Proxy": {"Upstreams": [{"DestinationName": f"api-{v}", "LocalBindPort": up}], **extra}}}})
        pids = {}
        for role, svc, adm in (("server", f"api-{v}", sadm), ("client", f"web-{v}", cadm)):
            p = procs.start([*LICTOR, "connect", "envoy", "-http-addr", f"127.0.0.1:{hp}", "-grpc-addr",
                             f"127.0.0.1:{grpc}", "-sidecar-for", svc, "-admin-bind", f"127.0.0.1:{adm}", "--",
                             "--concurrency", "1", "--log-level", "warning"], wd / f"{v}-{role}.log")
            pids[role] = p.pid
        headers = {"Authorization": f"Bearer {keys[v[4:]]}"} if v.startswith("jwt") else {}
        out[v] = {"url": f"http://127.0.0.1:{up}/", "pids": pids, "headers": headers}
    for v, d in out.items():
        def ok(d: dict[str, Any] = d) -> bool:
            import urllib.request
            try:
                with urllib.request.urlopen(urllib.request.Request(d["url"], headers=d["headers"]), timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(ok, 90, f"the {v} pair")
    return out, servers


def measure(v: dict[str, Any], conns: int, duration: int, warmup: int) -> dict[str, Any]:
    cmd = ["wrk", "-t1", "-c", str(conns), "--timeout", "5s", "-s", str(ANCHOR / "wrk_report.lua")]
    for k, val in v["headers"].items():
        cmd += ["-H", f"{k}: {val}"]
    subprocess.run(["flock", LOCK, *cmd, "-d", f"{warmup}s", v["url"]], capture_output=True, check=False)
    c0 = {k: cpu_seconds(p) for k, p in v["pids"].items()}
    cp = subprocess.run(["flock", LOCK, *cmd, "-d", f"{duration}s", v["url"]], capture_output=True, text=True)
    c1 = {k: cpu_seconds(p) for k, p in v["pids"].items()}
    line = next((ln for ln in cp.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {cp.stdout}{cp.stderr}")
    w = json.loads(line[8:])
    errors = sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    reqs = w["requests"]
    return {"rps": reqs / (w["duration_us"] / 1e6), "p50": w["p50_us"], "p99": w["p99_us"], "errors": errors,
            "requests": reqs, "cpu_us_per_req": sum(c1[k] - c0[k] for k in c0) / reqs * 1e6 if reqs else None}


def summary(vals: list[float]) -> str:
    return f"{statistics.median(vals):.0f} [{min(vals):.0f}..{max(vals):.0f}]" if vals else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--points", default="c1,c16")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    a = ap.parse_args()
    for tool in ("wrk", "flock"):
        if not shutil.which(tool):
            print(f"{tool} is required (bench/setup.sh)", file=sys.stderr)
            return 2
    points = a.points.split(",")
    wd = Path(tempfile.mkdtemp(prefix="lictor-bench-observe-"))
    procs = Procs()
    rows: list[dict[str, Any]] = []
    servers: list[Any] = []
    try:
        app_port = free_ports(1)[0]
        start_direct(procs, wd, app_port)
        variants, servers = start_mesh(procs, wd, app_port, _keys())
        for rep in range(a.reps):
            for point in points:
                order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))  # alternate who goes first
                for name in order:
                    r = measure(variants[name], POINTS[point], a.duration, a.warmup)
                    r.update(variant=name, point=point, rep=rep)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        procs.stop_all()
        for s in servers:
            s.shutdown()
            s.server_close()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    out = Path(a.out) / f"xds-observe-cost-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = {(r["rep"], r["point"]): r for r in rows if r["variant"] == "plain"}
    print(f"\nmedian [min..max] over {a.reps} repetitions; µs; added = variant - plain (same rep/point); raw: {out}\n")
    print("| point | variant | req/s | p50 | p99 | +p50 | +p99 | Envoy CPU µs/req | +CPU µs/req | CPU ratio | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for point in points:
        for name in VARIANTS:
            rs = [r for r in rows if r["variant"] == name and r["point"] == point]
            base = [plain[(r["rep"], point)] for r in rs]
            add = {q: [r[q] - b[q] for r, b in zip(rs, base)] for q in ("p50", "p99")}
            cpu_add = [r["cpu_us_per_req"] - b["cpu_us_per_req"] for r, b in zip(rs, base)]
            ratio = [r["cpu_us_per_req"] / b["cpu_us_per_req"] for r, b in zip(rs, base)]
            print(f"| {point} | {name} | {summary([r['rps'] for r in rs])} | {summary([r['p50'] for r in rs])} | "
                  f"{summary([r['p99'] for r in rs])} | {summary(add['p50'])} | {summary(add['p99'])} | "
                  f"{summary([r['cpu_us_per_req'] for r in rs])} | {summary(cpu_add)} | "
                  f"{statistics.median(ratio):.3f} [{min(ratio):.3f}..{max(ratio):.3f}] | {sum(r['errors'] for r in rs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
