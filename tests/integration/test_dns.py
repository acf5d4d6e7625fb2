"""DNS end to end: a real ``lictor agent -dev`` answering ``dig`` (Debian's dnsutils) and dnspython
over UDP and TCP: every name form, truncation and the TCP retry, recursors with a real dnsmasq as
the upstream, a critical instance leaving the answers, prepared queries, ACL filtering with the
agent's ``dns`` token, and malformed packets dropped and counted without a crash."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from .conftest import AgentProcess, eventually, free_ports

pytestmark = pytest.mark.integration  # needs dig (dnsutils) and dnsmasq (dnsmasq-base): .ci/run installs them

MGMT = "6c0e7a2b-2222-4222-8333-944445555666"
DNS_TOKEN = "6c0e7a2b-2222-4222-8333-944445555668"
AGENT_TOKEN = "6c0e7a2b-2222-4222-8333-944445555667"


def start_agent(d: Path, config: dict[str, Any]) -> tuple[AgentProcess, int]:
    (dns_port,) = free_ports(1)
    (d / "dns.json").write_text(json.dumps(config))
    a = AgentProcess(d, f"-dns-port={dns_port}", "-config-file", str(d / "dns.json")).start()
    return a, dns_port


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real dnsmasq on loopback answering ``upstream.test`` from a hosts file."""
    exe = shutil.which("dnsmasq")
    assert exe is not None, "dnsmasq is not installed (Debian's dnsmasq-base)"
    d = tmp_path_factory.mktemp("dnsmasq")
    (d / "hosts").write_text("192.0.2.77 upstream.test\n192.0.2.88 ext.test\n")
    (port,) = free_ports(1)
    proc = subprocess.Popen([exe, "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                             f"--addn-hosts={d / 'hosts'}", "--listen-address=127.0.0.1", "--bind-interfaces",
                             f"--port={port}", "--user=root", f"--pid-file={d / 'pid'}", "--log-facility=-"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: answered("upstream.test", port), what="dnsmasq answering")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[tuple[AgentProcess, int]]:
    cfg = {"recursors": [f"127.0.0.1:{upstream}"], "alt_domain": "lictor",
           "dns_config": {"enable_truncate": True, "service_ttl": {"web*": "7s"}, "node_ttl": "3s"},
           "node_meta": {"rack": "r1"}}
    a, port = start_agent(tmp_path_factory.mktemp("dns"), cfg)
    reg = a.json
    reg("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "web1", "Port": 8080, "Tags": ["v1"]})
    reg("PUT", "/v1/agent/service/register", {"Name": "web-proxy", "Kind": "connect-proxy", "Port": 21500,
                                               "Proxy": {"DestinationServiceName": "web"}})
    reg("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "web2", "Port": 8081, "Tags": ["v2"],
                                               "Address": "127.0.0.2"})
    for i in range(20):  # many instances on many nodes: more than a plain UDP answer may carry
        reg("PUT", "/v1/catalog/register", {"Node": f"m{i}", "Address": f"10.20.0.{i + 1}",
                                            "Service": {"Service": "many", "Port": 9000 + i}})
    eventually(lambda: len(a.json("GET", "/v1/catalog/service/web")) == 2, what="web registered")
    yield a, port
    a.stop()


def udp(name: str, qtype: str, port: int, **kw: Any) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, qtype, **kw), "127.0.0.1", port=port, timeout=3)


def answered(name: str, port: int) -> bool:
    try:
        return bool(udp(name, "A", port).answer)
    except dns.exception.Timeout:
        return False


def tcp(name: str, qtype: str, port: int) -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=3)


def dig(port: int, *args: str) -> str:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+time=3", "+tries=1", *args],
                         capture_output=True, text=True, timeout=20)
    return out.stdout


def answers(text: str) -> list[list[str]]:
    """The ANSWER section of ``dig +noall +answer`` output, split into fields."""
    return [line.split() for line in text.splitlines() if line and not line.startswith(";")]


def rrs(msg: dns.message.Message, section: str = "answer") -> list[tuple[str, str]]:
    return sorted((r.name.to_text(), rd.to_text()) for r in getattr(msg, section) for rd in r)


def test_service_and_node_forms_with_dig(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent
    a_recs = answers(dig(port, "web.service.consul", "A", "+noall", "+answer"))
    assert sorted(r[4] for r in a_recs) == ["127.0.0.1", "127.0.0.2"] and {r[1] for r in a_recs} == {"7"}
    assert [r[4] for r in answers(dig(port, "v2.web.service.consul", "+noall", "+answer"))] == ["127.0.0.2"]
    srv = answers(dig(port, "_web._v1.service.dc1.consul", "SRV", "+noall", "+answer"))
    assert [r[4:] for r in srv] == [["1", "1", "8080", "lictor-test.node.dc1.consul."]]
    out = dig(port, "web.service.consul", "SRV", "+noall", "+answer", "+additional")
    assert "7f000002.addr.dc1.consul. 7 IN A 127.0.0.2" in " ".join(out.split())
    assert "lictor-test.node.dc1.consul. 7 IN A 127.0.0.1" in " ".join(out.split())
    assert '"rack=r1"' in out  # node metadata as TXT in Additional
    node = answers(dig(port, "lictor-test.node.consul", "+noall", "+answer"))
    assert node == [["lictor-test.node.consul.", "3", "IN", "A", "127.0.0.1"]]
    # the sidecar under .connect, the alternative domain, .addr, PTR
    sidecar = answers(dig(port, "web.connect.consul", "SRV", "+noall", "+answer"))
    assert [r[4:7] for r in sidecar] == [["1", "1", "21500"]]
    assert answers(dig(port, "web.service.lictor", "SRV", "+noall", "+answer"))[0][7].endswith(".dc1.lictor.")
    assert answers(dig(port, "0a010203.addr.dc1.consul", "+noall", "+answer"))[0][4] == "10.1.2.3"
    assert answers(dig(port, "-x", "10.20.0.3", "+noall", "+answer"))[0][4] == "m2.node.dc1.consul."
    assert answers(dig(port, "-x", "127.0.0.2", "+noall", "+answer"))[0][4] == "web.service.dc1.consul."
    soa = udp("consul", "SOA", port)
    assert soa.answer[0].rdtype == 6 and soa.flags & dns.flags.AA
    ns = udp("consul", "NS", port)
    assert rrs(ns) == [("consul.", "lictor-test.node.dc1.consul.")]
    assert rrs(ns, "additional") == [("lictor-test.node.dc1.consul.", "127.0.0.1")]


def test_nxdomain_and_nodata_as_consul_answers(agent: tuple[AgentProcess, int]) -> None:
    _, port = agent
    for name in ("nope.service.consul", "nope.node.consul", "web.service.dc9.consul", "x.bogus.consul"):
        r = udp(name, "A", port)
        assert r.rcode() == dns.rcode.NXDOMAIN, name
        assert r.authority and r.authority[0].rdtype == 6, name  # the SOA
    r = udp("web.service.consul", "AAAA", port)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority[0].rdtype == 6


def test_truncation_then_dig_retries_over_tcp(agent: tuple[AgentProcess, int]) -> None:
    _, port = agent
    r = udp("many.service.consul", "A", port)
    assert r.flags & dns.flags.TC and len(rrs(r)) == 3
    assert len(rrs(tcp("many.service.consul", "A", port))) == 20
    # dig sees TC and asks again over TCP by itself: the whole answer
    out = dig(port, "many.service.consul", "A", "+noedns")
    assert "Truncated, retrying in TCP mode" in out
    assert len(answers(dig(port, "many.service.consul", "A", "+noedns", "+noall", "+answer"))) == 20
    assert len(answers(dig(port, "many.service.consul", "A", "+noedns", "+ignore", "+noall", "+answer"))) == 3
    # a larger EDNS buffer holds more than 3 over UDP
    big = udp("many.service.consul", "A", port, use_edns=0, payload=4096)
    assert len(rrs(big)) == 20 and not big.flags & dns.flags.TC


def test_recursors_forward_names_outside_the_domain(agent: tuple[AgentProcess, int]) -> None:
    _, port = agent
    assert answers(dig(port, "upstream.test", "+noall", "+answer"))[0][4] == "192.0.2.77"
    r = tcp("upstream.test", "A", port)
    assert rrs(r) == [("upstream.test.", "192.0.2.77")]
    # dnsmasq refuses a name it has no upstream for; a refusal is not an answer, and when no
    # recursor answers, Consul answers SERVFAIL
    assert udp("missing.test", "A", port).rcode() == dns.rcode.SERVFAIL


def test_external_service_names_are_resolved_with_the_recursors(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent
    a.json("PUT", "/v1/catalog/register", {"Node": "extnode", "Address": "ext.test",
                                            "Service": {"Service": "ext", "Port": 443}})
    eventually(lambda: udp("ext.service.consul", "A", port).answer, what="ext answered")
    got = rrs(udp("ext.service.consul", "A", port))
    assert got == [("ext.service.consul.", "ext.test."), ("ext.test.", "192.0.2.88")]  # CNAME, then its A
    srv = udp("ext.service.consul", "SRV", port)
    assert rrs(srv) == [("ext.service.consul.", "1 1 443 ext.test.")]
    assert rrs(srv, "additional") == [("ext.test.", "192.0.2.88")]
    # a name in our own domain is answered by ourselves
    a.json("PUT", "/v1/agent/service/register", {"Name": "alias", "Port": 1, "Address": "lictor-test.node.consul"})
    eventually(lambda: udp("alias.service.consul", "A", port).answer, what="alias answered")
    assert rrs(udp("alias.service.consul", "A", port)) == [("alias.service.consul.", "lictor-test.node.consul."),
                                                            ("lictor-test.node.consul.", "127.0.0.1")]


def test_critical_instance_leaves_the_answers(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent
    for i in (1, 2):
        a.json("PUT", "/v1/agent/service/register", {"Name": "api", "ID": f"api{i}", "Port": 7000 + i,
                                                      "Address": f"127.0.1.{i}", "Check": {"TTL": "60s"}})
        a.json("PUT", f"/v1/agent/check/pass/service:api{i}")
    eventually(lambda: len(rrs(udp("api.service.consul", "A", port))) == 2, what="both api instances")
    a.json("PUT", "/v1/agent/check/fail/service:api2")
    eventually(lambda: rrs(udp("api.service.consul", "A", port)) == [("api.service.consul.", "127.0.1.1")],
               what="the critical instance gone")
    a.json("PUT", "/v1/agent/check/fail/service:api1")
    eventually(lambda: udp("api.service.consul", "A", port).rcode() == dns.rcode.NXDOMAIN, what="NXDOMAIN")


def test_prepared_queries_over_dns(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent
    a.json("POST", "/v1/query", {"Name": "web-v2", "Service": {"Service": "web", "Tags": ["v2"]},
                                 "DNS": {"TTL": "11s"}})
    a.json("POST", "/v1/query", {"Name": "svc-", "Template": {"Type": "name_prefix_match"},
                                 "Service": {"Service": "${name.suffix}"}})
    got = answers(dig(port, "web-v2.query.consul", "+noall", "+answer"))
    assert [(r[1], r[4]) for r in got] == [("11", "127.0.0.2")]
    srv = udp("svc-many.query.consul", "SRV", port, use_edns=0, payload=4096)
    assert len(rrs(srv)) == 20
    assert udp("nothing-here.query.consul", "A", port).rcode() == dns.rcode.NXDOMAIN


def _send_udp(port: int, data: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def test_malformed_packets_are_dropped_and_counted(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent

    def malformed() -> float:
        gauges = a.json("GET", "/v1/agent/metrics")["Gauges"]
        return next(g["Value"] for g in gauges if g["Name"] == "lictor.dns.malformed")

    before = malformed()
    good = dns.message.make_query("web.service.consul", "A").to_wire()
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    loop = header + b"\xc0\x0c" + struct.pack("!HH", 1, 1)  # a name that points at itself
    packets = [os.urandom(64), b"\x00" * 5, good[:-3], loop, header + b"\x3f" + b"a" * 10,
               header + b"\x01a" * 3000]  # garbage, short, truncated, compression loop, bad label, oversized
    for p in packets:
        assert _send_udp(port, p) is None
    # and over TCP: a frame that claims 60 KB, then a garbage frame: the connection is closed
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(struct.pack("!H", 60000) + b"x" * 100)
        assert s.recv(10) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(struct.pack("!H", 40) + os.urandom(40) + struct.pack("!H", len(good)) + good)
        head = s.recv(2)
        assert len(head) == 2  # the garbage frame got nothing; the good one its answer
    assert malformed() - before >= len(packets) + 2
    assert rrs(udp("web.service.consul", "A", port))  # still answering
    assert a.alive()


def test_acl_dns_token_decides_what_dns_reveals(tmp_path: Path) -> None:
    cfg = {"acl": {"enabled": True, "default_policy": "deny",
                   "tokens": {"initial_management": MGMT, "agent": AGENT_TOKEN, "dns": DNS_TOKEN}}}
    a, port = start_agent(tmp_path, cfg)
    try:
        h = {"X-Consul-Token": MGMT}
        eventually(lambda: a.request("GET", "/v1/acl/token/self", headers=h)[0] == 200, what="ACL bootstrap")
        p = a.json("PUT", "/v1/acl/policy", {"Name": "agent", "Rules": 'node_prefix "" { policy = "write" }\n'
                                              'service_prefix "" { policy = "write" }'}, headers=h)
        a.json("PUT", "/v1/acl/token", {"SecretID": AGENT_TOKEN, "Policies": [{"ID": p["ID"]}]}, headers=h)
        p = a.json("PUT", "/v1/acl/policy", {"Name": "dns", "Rules": 'node_prefix "" { policy = "read" }\n'
                                              'service "public" { policy = "read" }'}, headers=h)
        a.json("PUT", "/v1/acl/token", {"SecretID": DNS_TOKEN, "Policies": [{"ID": p["ID"]}]}, headers=h)
        for name in ("public", "secret"):
            a.json("PUT", "/v1/agent/service/register", {"Name": name, "Port": 80}, headers=h)
        eventually(lambda: {"public", "secret"} <= set(a.json("GET", "/v1/catalog/services", headers=h)), what="registered")
        eventually(lambda: rrs(udp("public.service.consul", "A", port)) == [("public.service.consul.", "127.0.0.1")],
                   what="public answered")
        assert udp("secret.service.consul", "A", port).rcode() == dns.rcode.NXDOMAIN
        assert rrs(udp("lictor-test.node.consul", "A", port))
        # prepared queries: query:write on the name to create one; its Token hidden from readers
        # without acl:read; executed with its own token, so it may reveal what its token reads
        body = {"Name": "sq", "Token": MGMT, "Service": {"Service": "secret"}}
        status, raw = a.request("POST", "/v1/query", body, headers={"X-Consul-Token": DNS_TOKEN})
        assert status == 403 and b"query:write" in raw
        qid = a.json("POST", "/v1/query", body, headers=h)["ID"]
        assert a.request("GET", f"/v1/query/{qid}", headers={"X-Consul-Token": DNS_TOKEN})[0] == 403
        assert a.json("GET", f"/v1/query/{qid}", headers=h)[0]["Token"] == MGMT
        eventually(lambda: rrs(udp("sq.query.consul", "A", port)) == [("sq.query.consul.", "127.0.0.1")],
                   what="the query's own token reads the service")
    finally:
        a.stop()


def test_reload_applies_new_dns_settings(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent
    path = a.workdir / "dns.json"
    before = path.read_text()
    cfg = json.loads(before)
    cfg["dns_config"]["service_ttl"] = {"web*": "13s"}
    try:
        path.write_text(json.dumps(cfg))
        a.json("PUT", "/v1/agent/reload")
        assert {r[1] for r in answers(dig(port, "web.service.consul", "+noall", "+answer"))} == {"13"}
        cfg["dns_config"]["udp_answer_limit"] = -1
        path.write_text(json.dumps(cfg))
        status, raw = a.request("PUT", "/v1/agent/reload")
        assert status >= 400 and b"dns_config.udp_answer_limit" in raw  # refused, nothing changed
        assert {r[1] for r in answers(dig(port, "web.service.consul", "+noall", "+answer"))} == {"13"}
    finally:
        path.write_text(before)
        a.json("PUT", "/v1/agent/reload")


def test_ingress_gateways_for_a_service(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent
    a.json("PUT", "/v1/config", {"Kind": "ingress-gateway", "Name": "ig", "Listeners": [
        {"Port": 8888, "Protocol": "tcp", "Services": [{"Name": "web"}]}]})
    a.json("PUT", "/v1/agent/service/register", {"Name": "ig", "Kind": "ingress-gateway", "Port": 8888,
                                                  "Address": "127.0.0.9"})
    eventually(lambda: rrs(udp("web.ingress.consul", "A", port)) == [("web.ingress.consul.", "127.0.0.9")],
               what="the gateway answering for web")
    assert udp("api.ingress.consul", "A", port).rcode() == dns.rcode.NXDOMAIN


def test_a_storm_is_answered_from_the_cache(agent: tuple[AgentProcess, int]) -> None:
    a, port = agent

    def gauge(name: str) -> float:
        return next(g["Value"] for g in a.json("GET", "/v1/agent/metrics")["Gauges"] if g["Name"] == name)

    udp("storm.service.consul", "A", port)  # the first question fills the cache (one read)
    before = gauge("lictor.dns.cache_rpcs")
    for i in range(300):
        assert udp("web.service.consul" if i % 2 else "storm.service.consul", "A", port).rcode() in (0, 3)
    assert gauge("lictor.dns.cache_rpcs") - before <= 1  # web was cached by earlier tests, storm now


def test_prepared_query_api_through_py_consul(agent: tuple[AgentProcess, int]) -> None:
    import consul

    a, port = agent
    c = consul.Consul(host="127.0.0.1", port=a.http_port)
    created = c.query.create("web", name="pc-web", tags=["v1"], onlypassing=True)
    qid = created["ID"]
    assert [q["Name"] for q in c.query.list() if q["ID"] == qid] == ["pc-web"]
    got = c.query.get(qid)[0]
    assert got["Service"]["Tags"] == ["v1"] and got["Service"]["OnlyPassing"] is True
    out = c.query.execute("pc-web")
    assert out["Service"] == "web" and [n["Service"]["ID"] for n in out["Nodes"]] == ["web1"]
    assert c.query.explain("pc-web-anything")["Query"]["ID"] == qid  # py-consul makes prefix templates
    c.query.update(qid, "web", name="pc-web", tags=["v2"])
    assert [n["Service"]["ID"] for n in c.query.execute(qid)["Nodes"]] == ["web2"]
    assert rrs(udp("pc-web.query.consul", "A", port)) == [("pc-web.query.consul.", "127.0.0.2")]
    assert c.query.execute(qid, limit=1)["Nodes"]
    c.query.delete(qid)
    assert all(q["ID"] != qid for q in c.query.list())
    status, raw = a.request("GET", f"/v1/query/{qid}")
    assert status == 404 and b"Query not found" in raw
    status, raw = a.request("POST", "/v1/query", {"Name": "x", "Service": {"Service": "web"}, "DNS": {"TTL": "x"}})
    assert status == 400 and b"Bad DNS TTL" in raw
    status, raw = a.request("GET", "/v1/query/nope/execute?limit=-1")
    assert status == 400


def test_a_client_agent_answers_through_its_servers(tmp_path: Path) -> None:
    """DNS on a client agent: catalog reads go to the server over RPC (stale), and the blocking
    refresh over that connection brings a health change into the answers."""
    from .meshproc import MeshAgent, free_port

    server = MeshAgent(tmp_path, "s1", server=True, host="127.0.0.1", distinct_ports=True, join=[], expect=1)
    dns_port = free_port()
    client = MeshAgent(tmp_path, "c1", server=False, host="127.0.0.1", distinct_ports=True,
                       join=[server.serf_addr], extra=(f"-dns-port={dns_port}",))
    try:
        server.spawn().wait_http()
        client.spawn().wait_http()
        client.json("PUT", "/v1/agent/service/register", {"Name": "cweb", "Port": 80, "Address": "127.0.3.1",
                                                           "Check": {"TTL": "60s"}})
        client.json("PUT", "/v1/agent/check/pass/service:cweb")
        eventually(lambda: rrs(udp("cweb.service.consul", "A", dns_port)) == [("cweb.service.consul.", "127.0.3.1")],
                   timeout=30, what="the client's DNS answering from the servers")
        assert rrs(udp("c1.node.consul", "A", dns_port)) == [("c1.node.consul.", "127.0.0.1")]
        client.json("PUT", "/v1/agent/check/fail/service:cweb")
        eventually(lambda: udp("cweb.service.consul", "A", dns_port).rcode() == dns.rcode.NXDOMAIN,
                   timeout=15, what="the critical instance gone from the client's answers")
    finally:
        client.stop()
        server.stop()
