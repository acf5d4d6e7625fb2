"""``lictor connect redirect-traffic`` with real iptables in a network namespace this test creates
(issue 13, transparent proxy: the redirection part). The "proxy" in the namespace is a small
recorder that answers with the connection's original destination (SO_ORIGINAL_DST), so each
check shows where the kernel really sent a connection::

    host 10.N.N.1 (+ .3) ==veth== netns 10.N.N.2: recorder on <outbound port>, <public port>, <metrics port>
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import AgentProcess, free_ports
from tests.integration.dataplane import LICTOR

pytestmark = pytest.mark.integration

RECORDER = r"""
import socket, struct, sys, threading
def serve(s, label):
    while True:
        c, _ = s.accept()
        try:
            raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
            dst = "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack(">H", raw[2:4])[0])
        except OSError:
            dst = "?"
        c.sendall(("%s %s\n" % (label, dst)).encode()); c.close()
for arg in sys.argv[1:]:
    label, port = arg.split("=")
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port))); s.listen(16)  # bound before "ready"
    threading.Thread(target=serve, args=(s, label), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

NOBODY = 65534


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=True)


class Host:
    """A listener on the host side answering "host <port>"."""

    def __init__(self, addr: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.sendall(f"host {self.sock.getsockname()[1]}\n".encode())
            c.close()


class NS:
    def __init__(self, root: Path) -> None:
        pid = os.getpid()
        self.name = f"lictor-tp-{pid}"
        self.veth = f"ltp{pid % 100000}h"
        n = pid % 200 + 20
        self.host_ip, self.host_ip2, self.ns_ip = f"10.{n}.77.1", f"10.{n}.77.3", f"10.{n}.77.2"
        (self.outbound, self.public, self.metrics, self.hport, self.hport2, self.app_port) = free_ports(6)
        self.agent = AgentProcess(root).start()
        self.agent.json("PUT", "/v1/agent/service/register", {
            "Name": "app", "ID": "app", "Port": self.app_port,
            "Connect": {"SidecarService": {"Port": self.public, "Proxy": {
                "Mode": "transparent", "TransparentProxy": {"OutboundListenerPort": self.outbound},
                "Config": {"envoy_prometheus_bind_addr": f"0.0.0.0:{self.metrics}"}}}}})
        sh("ip", "netns", "add", self.name)
        self.recorder: subprocess.Popen[str] | None = None
        self.hosts: list[Host] = []
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        sh("ip", "addr", "add", f"{self.host_ip}/29", "dev", self.veth)
        sh("ip", "addr", "add", f"{self.host_ip2}/29", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        sh("ip", "-n", self.name, "link", "set", "lo", "up")
        sh("ip", "-n", self.name, "addr", "add", f"{self.ns_ip}/29", "dev", "eth0")
        sh("ip", "-n", self.name, "link", "set", "eth0", "up")
        sh("ip", "-n", self.name, "route", "add", "default", "via", self.host_ip)
        self.recorder = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-c", RECORDER, f"outbound={self.outbound}",
             f"inbound={self.public}", f"metrics={self.metrics}"], stdout=subprocess.PIPE, text=True)
        assert self.recorder.stdout is not None and self.recorder.stdout.readline().strip() == "ready"
        self.hosts = [Host(self.host_ip, self.hport), Host(self.host_ip, self.hport2), Host(self.host_ip2, self.hport)]

    def redirect(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LICTOR, "connect", "redirect-traffic", "-http-addr", self.agent.addr,
                               "-proxy-id", "app-sidecar-proxy", "-netns", self.name, *extra],
                              capture_output=True, text=True, timeout=30)

    def connect_from_ns(self, host: str, port: int, uid: int = 0) -> str:
        """What a TCP client in the namespace (as ``uid``) reads from host:port ("" if nothing)."""
        code = (f"import os,socket,encodings.idna\nos.setuid({uid})\ns=socket.create_connection(({host!r},{port}),timeout=2)\n"
                "print(s.recv(100).decode().strip())")
        proc = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=20)
        return proc.stdout.strip() or ("ERR " + proc.stderr.strip()[-300:] if proc.stderr.strip() else "")

    def connect_from_host(self, port: int) -> str:
        with socket.create_connection((self.ns_ip, port), timeout=3) as s:
            return s.recv(100).decode().strip()

    def nat(self) -> str:
        return sh("ip", "netns", "exec", self.name, "iptables", "-t", "nat", "-S").stdout

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.kill()
            self.recorder.wait()
            if self.recorder.stdout is not None:
                self.recorder.stdout.close()  # else an unclosed pipe fails a later test's setup
        for h in self.hosts:
            h.sock.close()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        self.agent.stop()


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NS]:
    if subprocess.run(["which", "iptables-restore"], capture_output=True).returncode != 0:
        pytest.fail("iptables-restore is required (apt-get install iptables; .ci/run installs it)")
    m = NS(tmp_path_factory.mktemp("redirect"))
    try:
        r = m.redirect("-proxy-uid", str(NOBODY), "-exclude-outbound-port", str(m.hport2),
                       "-exclude-outbound-cidr", f"{m.host_ip2}/32")
        assert r.returncode == 0, r.stderr
        # the rules went into the test's namespace only, never the host's
        host = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
        assert "LICTOR_PROXY" not in host, "redirect rules leaked into the host namespace"
        yield m
    finally:
        m.stop()


def test_outbound_tcp_goes_to_the_outbound_listener_with_its_original_destination(ns: NS) -> None:
    assert ns.connect_from_ns(ns.host_ip, ns.hport) == f"outbound {ns.host_ip}:{ns.hport}"
    # a virtual IP nobody routes: still captured, original destination kept for the listener
    assert ns.connect_from_ns("240.0.0.5", 80) == "outbound 240.0.0.5:80"


def test_the_proxy_uid_excluded_ports_and_cidrs_and_loopback_are_not_redirected(ns: NS) -> None:
    assert ns.connect_from_ns(ns.host_ip, ns.hport, uid=NOBODY) == f"host {ns.hport}"  # the proxy itself
    assert ns.connect_from_ns(ns.host_ip, ns.hport2) == f"host {ns.hport2}"  # -exclude-outbound-port
    assert ns.connect_from_ns(ns.host_ip2, ns.hport) == f"host {ns.hport}"  # -exclude-outbound-cidr
    # loopback is left alone: the recorder's public port answers as itself
    assert ns.connect_from_ns("127.0.0.1", ns.public) == f"inbound 127.0.0.1:{ns.public}"


def test_inbound_tcp_goes_to_the_public_listener_except_the_metrics_port(ns: NS) -> None:
    assert ns.connect_from_host(ns.app_port) == f"inbound {ns.ns_ip}:{ns.app_port}"
    assert ns.connect_from_host(ns.metrics).startswith("metrics")  # envoy_prometheus_bind_addr: excluded


def test_rerunning_replaces_the_rules(ns: NS) -> None:
    r = ns.redirect("-proxy-uid", str(NOBODY), "-exclude-outbound-port", str(ns.hport2),
                    "-exclude-outbound-cidr", f"{ns.host_ip2}/32")
    assert r.returncode == 0, r.stderr
    rules = ns.nat()
    assert rules.count("-j LICTOR_PROXY_OUTPUT") == 1 and rules.count("-j LICTOR_PROXY_INBOUND") == 1
    assert rules.count(f"--uid-owner {NOBODY}") == 1
    assert ns.connect_from_ns(ns.host_ip, ns.hport) == f"outbound {ns.host_ip}:{ns.hport}"


def test_bad_input_is_refused_and_changes_nothing(ns: NS) -> None:
    before = ns.nat()
    for args, want in [(["-proxy-uid", "nobody"], "-proxy-uid 'nobody': a numeric user ID is required"),
                       (["-proxy-uid", "1", "-exclude-outbound-cidr", "10.0.0.0/99"], "-exclude-outbound-cidr"),
                       (["-proxy-uid", "1", "-exclude-inbound-port", "70000"], "-exclude-inbound-port '70000'")]:
        r = ns.redirect(*args)
        assert r.returncode == 1 and want in r.stderr, (args, r.stderr)
    r = subprocess.run([*LICTOR, "connect", "redirect-traffic", "-http-addr", ns.agent.addr, "-proxy-id", "nope",
                        "-proxy-uid", "1", "-netns", ns.name], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "No proxy registered on this agent with ID 'nope'" in r.stderr
    assert ns.nat() == before
