"""Proof that the shipped deployments run (issue 10, item 6): 3 servers and 2 clients, each a
separate machine in its own network namespace with its own address on a bridge, each started
from the *wheel install* with the exact command line the deployment gives:

* VMs: ``ExecStart`` of deploy/systemd/lictor.service, the config files deploy/systemd/server.hcl
  and client.hcl with their placeholders filled (address, gossip key, tokens), the install,
  config and data paths substituted, and certificates made by the wheel's ``lictor tls``;
  ``NOTIFY_SOCKET`` as systemd sets it, and a stop as systemd does it (SIGTERM, SIGKILL after
  ``TimeoutStopSec``).
* Kubernetes: the StatefulSet's and DaemonSet's container ``args`` with the downward-API and
  Secret values filled in, the ConfigMaps and Secrets laid out as the projected volume does, the
  headless Service's DNS names answered by each machine's /etc/hosts; the readiness probe and the
  preStop hook run as the kubelet would; and the injector's init container registering a pod's
  service with its node's agent.

What this does not prove: systemd itself starting the unit (the hardening options are checked by
systemd-analyze only), a real kubelet, kube-dns, a CNI, or the container image.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.deployfiles import (DEPLOY, container_args, exec_start_argv, fill_placeholders,
                                           kustomize_documents, read_unit)
from tests.integration.deploynet import DeployNetwork, Host, netns_usable, wait_until
from tests.integration.wheelenv import WheelInstall

pytestmark = pytest.mark.integration

UNIT = DEPLOY / "systemd" / "lictor.service"
EXAMPLE_SERVER_IPS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")


@pytest.fixture
def network() -> Any:
    if not netns_usable():
        pytest.skip("needs root and iproute2 for network namespaces")
    net = DeployNetwork(5)
    try:
        net.setup()
        yield net
    finally:
        net.teardown()


def _env(inst: WheelInstall, home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{inst.venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            **extra}


def _lictor(inst: WheelInstall, cwd: Path, *args: str) -> str:
    res = subprocess.run([str(inst.lictor), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                         env=_env(inst, cwd))
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


class PKI:
    """A CA and agent certificates made with the wheel's own ``lictor tls`` (Consul's file names)."""

    def __init__(self, inst: WheelInstall, root: Path, servers: int, clients: int) -> None:
        self.dir = root / "pki"
        self.dir.mkdir()
        _lictor(inst, self.dir, "tls", "ca", "create")
        for _ in range(servers):
            _lictor(inst, self.dir, "tls", "cert", "create", "-server")
        for _ in range(clients):
            _lictor(inst, self.dir, "tls", "cert", "create", "-client")

    def ca(self) -> Path:
        return self.dir / "consul-agent-ca.pem"

    def server(self, i: int) -> tuple[Path, Path]:
        return self.dir / f"dc1-server-consul-{i}.pem", self.dir / f"dc1-server-consul-{i}-key.pem"

    def client(self, i: int) -> tuple[Path, Path]:
        return self.dir / f"dc1-client-consul-{i}.pem", self.dir / f"dc1-client-consul-{i}-key.pem"


class Notify:
    """One machine's NOTIFY_SOCKET, as systemd's manager holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def ready(self) -> bool:
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except BlockingIOError:
                break
        return any("READY=1" in m.split("\n") for m in self.messages)


def _formed(hosts: list[Host], token: str, leader_among: list[str]) -> bool:
    for h in hosts:
        members = h.try_json("/v1/agent/members", token=token) or []
        if sum(1 for m in members if m["Status"] == 1) != len(hosts):
            return False
        leader = h.try_json("/v1/status/leader")
        if not leader or leader.rsplit(":", 1)[0] not in leader_among:
            return False
    return True


def _seen_everywhere(hosts: list[Host], service: str, token: str) -> bool:
    for h in hosts:
        rows = h.try_json(f"/v1/catalog/service/{service}", token=token)
        if not rows:
            return False
    return True


def _working(hosts: list[Host], token: str, key: str) -> None:
    """A write through one agent, read back through every other: the cluster still works."""
    status, _ = hosts[0].http("PUT", f"/v1/kv/{key}", "still-here", token=token)
    assert status == 200, status
    for h in hosts:
        status, rows = h.http("GET", f"/v1/kv/{key}", token=token)
        assert status == 200, (h.name, status, rows)


# ---------------------------------------------------------------------------------------------
# VMs: systemd


def test_systemd_cluster_from_the_wheel(wheel_install: WheelInstall, network: DeployNetwork, tmp_path: Path) -> None:
    net = network
    servers = [Host(net, i, f"server{i + 1}", tmp_path) for i in range(3)]
    clients = [Host(net, 3 + i, f"client{i + 1}", tmp_path) for i in range(2)]
    hosts = [*servers, *clients]
    pki = PKI(wheel_install, tmp_path, servers=3, clients=2)
    token = str(uuid.uuid4())
    values = {"GOSSIP_KEY": _lictor(wheel_install, tmp_path, "keygen").strip(),
              "INITIAL_MANAGEMENT_TOKEN": token, "AGENT_TOKEN": token}
    timeout_stop = float(read_unit(UNIT)["Service"]["TimeoutStopSec"][0])
    notifies: dict[str, Notify] = {}
    try:
        for k, h in enumerate(hosts):
            is_server = h in servers
            etc = h.dir / "lictor.d"
            (etc / "tls").mkdir(parents=True)
            text = (DEPLOY / "systemd" / ("server.hcl" if is_server else "client.hcl")).read_text()
            text = fill_placeholders(text, {**values, "THIS_HOST_IP": h.addr})
            for example, real in zip(EXAMPLE_SERVER_IPS, [s.addr for s in servers]):
                text = text.replace(f'"{example}"', f'"{real}"')
            text = text.replace('"/var/lib/lictor"', f'"{h.dir / "data"}"').replace("/etc/lictor.d/", f"{etc}/")
            (etc / ("server.hcl" if is_server else "client.hcl")).write_text(text)
            # this machine's certificate, under the name its config file expects
            (etc / "tls" / "consul-agent-ca.pem").write_bytes(pki.ca().read_bytes())
            cert, key = pki.server(k) if is_server else pki.client(k - 3)
            kind = "server" if is_server else "client"
            (etc / "tls" / f"dc1-{kind}-consul-0.pem").write_bytes(cert.read_bytes())
            (etc / "tls" / f"dc1-{kind}-consul-0-key.pem").write_bytes(key.read_bytes())
            notifies[h.name] = Notify(h.dir / "notify.sock")
            h.start(exec_start_argv(UNIT, wheel_install.lictor, config_dir=etc),
                    _env(wheel_install, h.dir, NOTIFY_SOCKET=str(notifies[h.name].path)))
        server_ips = [s.addr for s in servers]
        t_form = wait_until(lambda: _formed(hosts, token, server_ips), 90, "5 members alive everywhere and a leader", hosts)
        print(f"formed in {t_form:.1f}s")
        # systemd would now report every unit started
        wait_until(lambda: all(n.ready() for n in notifies.values()), 30, "READY=1 from every machine", hosts)
        for h in hosts:  # gossip is encrypted and RPC is TLS, as the example configs say
            assert "(encrypted: True)" in h.log_text(), h.name
        # ACL default deny: without a token the catalog is not readable
        status, body = clients[0].http("GET", "/v1/catalog/service/consul")
        assert status == 403 and "Permission denied" in body, (status, body)
        # a service registered on a client is seen from every machine
        status, body = clients[0].http("PUT", "/v1/agent/service/register",
                                       {"Name": "web", "Port": 8080, "Address": clients[0].addr}, token=token)
        assert status == 200, body
        wait_until(lambda: _seen_everywhere(hosts, "web", token), 30, "web in every machine's catalog", hosts)
        # stop the leader the way systemd stops the unit
        leader = (servers[0].try_json("/v1/status/leader") or "").rsplit(":", 1)[0]
        [victim] = [s for s in servers if s.addr == leader]
        rc, killed = victim.stop_like_systemd(timeout_stop)
        assert (rc, killed) == (0, False), victim.log_text()[-3000:]
        assert "STOPPING=1" in "\n".join(notifies[victim.name].messages + _drain(notifies[victim.name]))
        rest = [h for h in hosts if h is not victim]
        wait_until(lambda: all((h.try_json("/v1/status/leader") or "").rsplit(":", 1)[0] in
                               {s.addr for s in servers if s is not victim} for h in rest), 30,
                   "a new leader among the remaining servers", rest)
        _working(rest, token, "deploy/after-stop")
        status, body = clients[1].http("PUT", "/v1/agent/service/register",
                                       {"Name": "api", "Port": 9090, "Address": clients[1].addr}, token=token)
        assert status == 200, body
        wait_until(lambda: _seen_everywhere(rest, "api", token), 30, "api in every remaining catalog", rest)
    finally:
        for h in hosts:
            h.kill()
        for n in notifies.values():
            n.sock.close()


def _drain(n: Notify) -> list[str]:
    n.ready()
    return n.messages


# ---------------------------------------------------------------------------------------------
# Kubernetes: the StatefulSet's and DaemonSet's containers


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [d] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return d


def test_kubernetes_containers_from_the_wheel(wheel_install: WheelInstall, network: DeployNetwork,
                                              tmp_path: Path) -> None:
    net = network
    docs = kustomize_documents()
    sts = _one(docs, "StatefulSet", "lictor-server")
    ds = _one(docs, "DaemonSet", "lictor-client")
    [server_c] = sts["spec"]["template"]["spec"]["containers"]
    [client_c] = ds["spec"]["template"]["spec"]["containers"]
    pods = [Host(net, i, f"lictor-server-{i}", tmp_path) for i in range(3)]
    nodes = [Host(net, 3 + i, f"lictor-client-{i}", tmp_path) for i in range(2)]
    hosts = [*pods, *nodes]
    # the headless Service: each server pod's DNS name answers with its pod IP
    svc = sts["spec"]["serviceName"]
    net.set_hosts({f"{p.name}.{svc}.lictor.svc": p.addr for p in pods})
    pki = PKI(wheel_install, tmp_path, servers=1, clients=1)
    token = str(uuid.uuid4())
    secrets = {"secret:lictor-secrets/gossip-key": _lictor(wheel_install, tmp_path, "keygen").strip(),
               "secret:lictor-secrets/initial-management-token": token,
               "secret:lictor-secrets/server-agent-token": token,
               "secret:lictor-secrets/client-agent-token": token}
    try:
        for h in hosts:
            is_server = h in pods
            c, cm = (server_c, "lictor-server-config") if is_server else (client_c, "lictor-client-config")
            etc = h.dir / "lictor.d"  # the projected volume: ConfigMap at the top, Secrets in tls/
            (etc / "tls").mkdir(parents=True)
            for fname, text in _one(docs, "ConfigMap", cm)["data"].items():
                text = text.replace('"/var/lib/lictor"', f'"{h.dir / "data"}"').replace("/etc/lictor.d/", f"{etc}/")
                (etc / fname).write_text(text)
            cert, key = pki.server(0) if is_server else pki.client(0)
            (etc / "tls" / "ca.pem").write_bytes(pki.ca().read_bytes())
            (etc / "tls" / "tls.crt").write_bytes(cert.read_bytes())
            (etc / "tls" / "tls.key").write_bytes(key.read_bytes())
            field = {"status.podIP": h.addr, "metadata.name": h.name, "metadata.namespace": "lictor",
                     "spec.nodeName": f"node-{h.name[-1]}", **secrets}
            args = [a.replace("/etc/lictor.d", str(etc)) for a in container_args(c, field)]
            # the image's ENTRYPOINT is lictor
            h.start([str(wheel_install.lictor), *args], _env(wheel_install, h.dir))
        pod_ips = [p.addr for p in pods]
        wait_until(lambda: _formed(hosts, token, pod_ips), 90, "5 members alive everywhere and a leader", hosts)
        names = {m["Name"] for m in nodes[0].try_json("/v1/agent/members", token=token)}
        assert names == {"lictor-server-0", "lictor-server-1", "lictor-server-2", "node-0", "node-1"}
        # the readiness probes, run as the kubelet runs them (exec in the container)
        for h, c in [*[(p, server_c) for p in pods], *[(n, client_c) for n in nodes]]:
            probe = c["readinessProbe"]["exec"]["command"]
            res = h.run([str(wheel_install.python) if probe[0] == "python3" else probe[0], *probe[1:]],
                        _env(wheel_install, h.dir))
            assert res.returncode == 0, (h.name, res.stderr)
        # a pod on node-0, injected by `lictor connect inject`: its init container registers the
        # service and its sidecar with the node's agent (the DaemonSet's hostPort 8500)
        _run_injected_init(wheel_install, nodes[0], token, tmp_path)
        wait_until(lambda: _seen_everywhere(hosts, "web", token) and _seen_everywhere(hosts, "web-sidecar-proxy", token),
                   30, "the injected pod's service and sidecar in every catalog", hosts)
        [proxy] = pods[0].try_json("/v1/catalog/service/web-sidecar-proxy", token=token)
        assert proxy["ServiceProxy"]["DestinationServiceName"] == "web"
        assert [u["DestinationName"] for u in proxy["ServiceProxy"]["Upstreams"]] == ["inventory"]
        assert proxy["ServicePort"] == 20000 and proxy["ServiceAddress"] == nodes[0].addr
        # delete a server pod: preStop (graceful leave, with the token from the pod's env), then SIGTERM
        victim = pods[2]
        env = _env(wheel_install, victim.dir, LICTOR_HTTP_TOKEN=token)
        res = victim.run(server_c["lifecycle"]["preStop"]["exec"]["command"], env)
        assert res.returncode == 0, res.stdout + res.stderr
        grace = float(sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        if victim.alive():
            rc, killed = victim.stop_like_systemd(grace)
            assert not killed
        rest = [h for h in hosts if h is not victim]
        wait_until(lambda: len((rest[0].try_json("/v1/status/peers") or [])) == 2, 30,
                   "the left server out of the Raft configuration", rest)
        _working(rest, token, "deploy/after-leave")
    finally:
        for h in hosts:
            h.kill()


def _run_injected_init(inst: WheelInstall, node: Host, token: str, tmp: Path) -> None:
    """The init container `lictor connect inject` adds, run as the kubelet would on ``node``."""
    from lictor.agent.inject import InjectConfig, inject_documents

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "labels": {"app": "web"},
           "annotations": {"lictor.io/connect-service-upstreams": "inventory:9191"}},
           "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}]}}
    [injected], _ = inject_documents([pod], InjectConfig(image="lictor:test"))
    [init] = injected["spec"]["initContainers"]
    mount = tmp / "web-0-lictor-connect"
    mount.mkdir()
    field = {"status.hostIP": node.addr, "status.podIP": node.addr, "metadata.name": "web-0",
             "metadata.namespace": "shop", "secret:lictor-connect-token/token": token}
    env: dict[str, str] = {}
    for e in init["env"]:  # kubelet: $(VAR) in a value refers to variables defined before it
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], e["value"])
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = field[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = field[f"secret:{ref['name']}/{ref['key']}"]
    command = [a.replace("/lictor/connect", str(mount)) for a in init["command"]]
    res = node.run(command, {**_env(inst, node.dir), **env})
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((mount / "service.json").read_text())["service"]["id"] == "web-0-web"
