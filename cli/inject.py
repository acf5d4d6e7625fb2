"""``lictor connect inject``: the Kubernetes sidecar injector (lictor.agent.inject does the work).

Two modes, one transformation:

* ``lictor connect inject -f deployment.yaml`` (``-f -`` reads stdin) prints the manifests with
  the sidecar injected, as ``istioctl kube-inject`` does: Deployment, StatefulSet, DaemonSet,
  ReplicaSet, Job, CronJob and bare Pods, multi-document YAML; other kinds pass through. A
  document that cannot be injected is named on stderr, exit 1, and nothing is printed.
* ``lictor connect inject -tls-cert-file ... -tls-key-file ...`` serves the mutating admission
  webhook over HTTPS (deploy/k8s/injector.yaml) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from typing import Any

from lictor.cli.base import err, parse
from lictor.cli.flags import FlagSet
from lictor.agent.inject import InjectConfig, InjectError, inject_documents

__all__ = ["cmd_inject"]


def _default_image() -> str:
    try:
        from importlib.metadata import version

        return f"lictor:{version('lictor')}"
    except Exception:  # noqa: BLE001 - running from a checkout
        from lictor import __version__

        return f"lictor:{__version__}"


def _flags() -> FlagSet:
    fs = FlagSet("lictor connect inject [options]",
                 "Injects the Lictor Envoy sidecar into Kubernetes pods: with -f, into the workloads of a\n"
                 "manifest file (printed to stdout); otherwise serves the mutating admission webhook over\n"
                 "HTTPS. Pods are injected when annotated lictor.io/connect-inject: \"true\" or when their\n"
                 "namespace is labelled lictor-injection=enabled; \"false\" opts a pod out.")
    fs.string("f", "Manifest file to inject (\"-\" reads stdin); prints the result instead of serving.",
              metavar="path")
    fs.string("listen", "Address the webhook listens on.", default="0.0.0.0:8443", metavar="host:port")
    fs.string("tls-cert-file", "Webhook serving certificate (PEM).", metavar="path")
    fs.string("tls-key-file", "Webhook serving key (PEM).", metavar="path")
    fs.string("sidecar-image", "Image of the init and sidecar containers (default lictor:<this version>).",
              metavar="image")
    fs.int("agent-http-port", "The node agent's HTTP port on the host (client DaemonSet hostPort).", default=8500)
    fs.int("agent-grpc-port", "The node agent's gRPC/xDS port on the host.", default=8502)
    fs.int("proxy-port", "The sidecar's public listener port in the pod.", default=20000)
    fs.string("token-secret", "Secret (key \"token\") in the pod's namespace holding the ACL token the "
                              "sidecar uses; optional.", default="lictor-connect-token", metavar="name")
    return fs


def _config(p: Any) -> InjectConfig | None:
    for flag in ("agent-http-port", "agent-grpc-port", "proxy-port"):
        if not 1 <= int(p[flag]) <= 65535:
            err(f"Error! -{flag}: {p[flag]} is not a port 1-65535")
            return None
    return InjectConfig(image=p["sidecar-image"] or _default_image(), agent_http_port=p["agent-http-port"],
                        agent_grpc_port=p["agent-grpc-port"], proxy_port=p["proxy-port"],
                        token_secret=p["token-secret"])


def cmd_inject(argv: list[str]) -> int:
    p = parse(_flags(), argv)
    if p.args:
        err(f"Error! Unexpected arguments: {' '.join(p.args)}")
        return 1
    config = _config(p)
    if config is None:
        return 1
    if p.given("f"):
        return _offline(p["f"], config)
    return _serve(p, config)


def _offline(path: str, config: InjectConfig) -> int:
    import yaml

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        err(f"Error! Cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
        return 1
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        err(f"Error! {path} is not valid YAML: {exc}")
        return 1
    try:
        out, notes = inject_documents(docs, config)
    except InjectError as exc:
        err(f"Error! {path}: {exc}")
        return 1
    for note in notes:
        err(f"==> {note}")
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False))
    return 0


def _serve(p: Any, config: InjectConfig) -> int:
    from lictor.agent.inject_webhook import serve

    host, sep, port_text = str(p["listen"]).rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        err(f"Error! -listen={p['listen']!r}: expected host:port")
        return 1
    cert, key = p["tls-cert-file"], p["tls-key-file"]
    if not cert or not key:
        err("Error! The webhook needs -tls-cert-file and -tls-key-file (the API server only calls "
            "webhooks over HTTPS); use -f to inject a file offline")
        return 1
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        err(f"Error! Cannot load -tls-cert-file {cert} / -tls-key-file {key}: {exc}")
        return 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, host=host.strip("[]") or "0.0.0.0", port=int(port_text), ssl_context=ctx, stop=stop)

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    try:
        asyncio.run(main())
    except OSError as exc:
        err(f"Error! Cannot listen on {p['listen']}: {exc.strerror or exc}")
        return 1
    return 0
