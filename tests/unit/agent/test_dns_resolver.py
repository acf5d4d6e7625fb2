"""The pure DNS resolver: name forms, rcodes, records, TTLs, limits and truncation, without I/O."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype as T
import pytest

from lictor.agent.dns.config import parse_dns_config
from lictor.agent.dns.resolver import Fetch, plan, respond
from lictor.common.errors import ConfigError, PermissionDeniedError, RemoteError

CFG = parse_dns_config({}, datacenter="dc1", node_name="n1")


def entry(node: str, addr: str, *, svc: str = "web", port: int = 80, svc_addr: str = "", status: str = "passing",
          tags: tuple[str, ...] = (), meta: dict[str, str] | None = None, weights: dict[str, int] | None = None):
    return {"Node": {"Node": node, "Address": addr, "Datacenter": "dc1", "Meta": meta or {}},
            "Service": {"Service": svc, "Address": svc_addr, "Port": port, "Tags": list(tags),
                        "Weights": weights or {"Passing": 1, "Warning": 1}},
            "Checks": [{"CheckID": "c", "Status": status}]}


def ask(name: str, qtype: str, results=None, cfg=CFG, *, tcp=False, edns: int | None = None):
    q = dns.message.make_query(name, qtype, use_edns=0 if edns else False, payload=edns or 512)
    q = dns.message.from_wire(q.to_wire())
    p = plan(q.question[0].name.to_text(), q.question[0].rdtype, cfg)
    r = respond(q, p, results or {}, cfg, rng=random.Random(1), now=1000.0, tcp=tcp)
    return p, dns.message.from_wire(r.to_wire())


def records(msg, section="answer"):
    return [(rrs.name.to_text(), T.to_text(rrs.rdtype), rrs.ttl, rd.to_text())
            for rrs in getattr(msg, section) for rd in rrs]


@pytest.mark.parametrize("name,qtype,form,fetch", [
    ("web.service.consul.", T.A, "service", Fetch("service", name="web", dc="dc1")),
    ("v1.web.service.consul.", T.A, "service", Fetch("service", name="web", tag="v1", dc="dc1")),
    ("web.service.dc2.consul.", T.A, "service", Fetch("service", name="web", dc="dc2")),
    ("web.service.dc2.dc.consul.", T.A, "service", Fetch("service", name="web", dc="dc2")),
    ("_web._tcp.service.consul.", T.SRV, "service", Fetch("service", name="web", dc="dc1")),
    ("_web._v1.service.consul.", T.SRV, "service", Fetch("service", name="web", tag="v1", dc="dc1")),
    ("_web._tcp.consul.", T.SRV, "service", Fetch("service", name="web", dc="dc1")),
    ("WEB.Service.CONSUL.", T.A, "service", Fetch("service", name="web", dc="dc1")),
    ("web.connect.consul.", T.A, "service", Fetch("service", name="web", dc="dc1", connect=True)),
    ("web.ingress.consul.", T.A, "service", Fetch("service", name="web", dc="dc1", ingress=True)),
    ("n1.node.consul.", T.A, "node", Fetch("node", name="n1", dc="dc1")),
    ("my.host.node.dc1.consul.", T.A, "node", Fetch("node", name="my.host", dc="dc1")),
    ("q1.query.consul.", T.A, "query", Fetch("query", name="q1", dc="dc1")),
    ("_q.1._tcp.query.consul.", T.SRV, "query", Fetch("query", name="q.1", dc="dc1")),
])
def test_name_forms(name, qtype, form, fetch):
    p = plan(name, qtype, CFG)
    assert p.form == form and p.fetches == (fetch,)


@pytest.mark.parametrize("name", ["service.consul.", "consul.", "foo.consul.", "web.service.a.b.c.consul.",
                                  "zz.addr.consul.", "0102.addr.consul.", "web.bogus.consul."])
def test_unknown_names_are_nxdomain_with_soa(name):
    p, r = ask(name, "A")
    assert p.form == "invalid"
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert [x[1] for x in records(r, "authority")] == ["SOA"]
    assert r.flags & dns.flags.AA


def test_outside_domain_without_recursors_is_refused_and_with_them_forwarded():
    assert ask("example.com.", "A")[1].rcode() == dns.rcode.REFUSED
    cfg = parse_dns_config({}, recursors=["127.0.0.1:5353"])
    assert plan("example.com.", T.A, cfg).form == "recurse"
    assert cfg.recursors == (("127.0.0.1", 5353),)


def test_service_a_answer_excludes_critical_and_keeps_warning():
    rows = [entry("a", "10.0.0.1"), entry("b", "10.0.0.2", status="warning"), entry("c", "10.0.0.3", status="critical")]
    _, r = ask("web.service.consul.", "A", {Fetch("service", name="web", dc="dc1"): rows})
    assert sorted(x[3] for x in records(r)) == ["10.0.0.1", "10.0.0.2"]
    cfg = parse_dns_config({"only_passing": True})
    _, r = ask("web.service.consul.", "A", {Fetch("service", name="web", dc="dc1"): rows}, cfg)
    assert [x[3] for x in records(r)] == ["10.0.0.1"]


def test_service_all_critical_is_nxdomain_and_missing_type_is_nodata():
    rows = [entry("c", "10.0.0.3", status="critical")]
    _, r = ask("web.service.consul.", "A", {Fetch("service", name="web", dc="dc1"): rows})
    assert r.rcode() == dns.rcode.NXDOMAIN and records(r, "authority")[0][1] == "SOA"
    _, r = ask("web.service.consul.", "AAAA", {Fetch("service", name="web", dc="dc1"): [entry("a", "10.0.0.1")]})
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert records(r, "authority")[0][1] == "SOA"


def test_srv_targets_and_additional():
    rows = [entry("a", "10.0.0.1", port=81, meta={"rack": "r1"}),
            entry("b", "10.0.0.2", port=82, svc_addr="192.168.1.9", weights={"Passing": 7, "Warning": 1})]
    _, r = ask("web.service.consul.", "SRV", {Fetch("service", name="web", dc="dc1"): rows})
    ans = sorted(x[3] for x in records(r))
    assert ans == ["1 1 81 a.node.dc1.consul.", "1 7 82 c0a80109.addr.dc1.consul."]
    extra = set((x[0], x[1], x[3]) for x in records(r, "additional"))
    assert ("a.node.dc1.consul.", "A", "10.0.0.1") in extra
    assert ("c0a80109.addr.dc1.consul.", "A", "192.168.1.9") in extra
    assert ("a.node.dc1.consul.", "TXT", '"rack=r1"') in extra


def test_warning_instance_gets_warning_weight():
    rows = [entry("a", "10.0.0.1", status="warning", weights={"Passing": 10, "Warning": 2})]
    _, r = ask("web.service.consul.", "SRV", {Fetch("service", name="web", dc="dc1"): rows})
    assert records(r)[0][3].startswith("1 2 80 ")


def test_service_ttl_exact_beats_prefix_and_node_ttl():
    cfg = parse_dns_config({"service_ttl": {"*": "5s", "web*": "7s", "web": "9s"}, "node_ttl": "3s"})
    assert (cfg.service_ttl_for("web"), cfg.service_ttl_for("webapp"), cfg.service_ttl_for("db")) == (9, 7, 5)
    _, r = ask("webapp.service.consul.", "A", {Fetch("service", name="webapp", dc="dc1"): [entry("a", "10.0.0.1")]}, cfg)
    assert records(r)[0][2] == 7
    _, r = ask("n1.node.consul.", "A", {Fetch("node", name="n1", dc="dc1"): {"Node": entry("n1", "10.1.1.1")["Node"]}},
               cfg)
    assert records(r) == [("n1.node.consul.", "A", 3, "10.1.1.1")]


def test_duplicate_addresses_answered_once():
    rows = [entry("a", "10.0.0.1", port=1), entry("a", "10.0.0.1", port=2)]
    _, r = ask("web.service.consul.", "A", {Fetch("service", name="web", dc="dc1"): rows})
    assert [x[3] for x in records(r)] == ["10.0.0.1"]


def test_hostname_address_gives_cname():
    rows = [entry("a", "10.0.0.1", svc_addr="db.example.com")]
    _, r = ask("web.service.consul.", "A", {Fetch("service", name="web", dc="dc1"): rows})
    assert records(r) == [("web.service.consul.", "CNAME", 0, "db.example.com.")]


def test_external_hosts_are_named_for_the_server_and_their_addresses_added():
    from lictor.agent.dns.resolver import external_hosts

    cfg = parse_dns_config({}, recursors=["127.0.0.1"])
    rows = {Fetch("service", name="web", dc="dc1"): [entry("a", "10.0.0.1", svc_addr="Db.Example.com"),
                                                     entry("b", "host.node.consul"), entry("c", "10.0.0.3")]}
    p = plan("web.service.consul.", T.A, cfg)
    assert external_hosts(p, rows, cfg) == ["db.example.com.", "host.node.consul."]
    assert external_hosts(p, rows, CFG) == ["host.node.consul."]  # no recursors: only our own names
    q = dns.message.from_wire(dns.message.make_query("web.service.consul", "SRV").to_wire())
    r = respond(q, plan("web.service.consul.", T.SRV, cfg), rows, cfg, rng=random.Random(1), now=0, tcp=True,
                resolved={"db.example.com.": ["192.0.2.1"]})
    assert ("db.example.com.", "A", 0, "192.0.2.1") in [(n.lower(), *rest) for n, *rest in records(r, "additional")]


def test_node_records_meta_txt_and_unknown_node():
    node = {"Node": {"Node": "n1", "Address": "10.1.1.1", "Meta": {"env": "prod", "rfc1035-raw": "x y"}}}
    f = {Fetch("node", name="n1", dc="dc1"): node}
    _, r = ask("n1.node.consul.", "A", f)
    assert records(r) == [("n1.node.consul.", "A", 0, "10.1.1.1")]
    assert sorted(x[3] for x in records(r, "additional")) == ['"env=prod"', '"x y"']
    _, r = ask("n1.node.consul.", "TXT", f)
    assert sorted(x[3] for x in records(r)) == ['"env=prod"', '"x y"']
    _, r = ask("n1.node.consul.", "AAAA", f)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    _, r = ask("n2.node.consul.", "A", {Fetch("node", name="n2", dc="dc1"): None})
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_addr_and_ptr():
    _, r = ask("7f000001.addr.dc1.consul.", "A")
    assert records(r) == [("7f000001.addr.dc1.consul.", "A", 0, "127.0.0.1")]
    _, r = ask("20010db8000000000000000000000001.addr.consul.", "AAAA")
    assert records(r)[0][3] == "2001:db8::1"
    nodes = [{"Node": "n1", "Address": "10.1.1.1", "Datacenter": "dc1"}]
    _, r = ask("1.1.1.10.in-addr.arpa.", "PTR", {Fetch("nodes", dc="dc1"): nodes})
    assert records(r) == [("1.1.1.10.in-addr.arpa.", "PTR", 0, "n1.node.dc1.consul.")]
    _, r = ask("2.1.1.10.in-addr.arpa.", "PTR", {Fetch("nodes", dc="dc1"): nodes})
    assert r.rcode() == dns.rcode.NXDOMAIN
    svcs = [{"ServiceName": "db", "ServiceAddress": "10.1.1.2", "Datacenter": "dc1"}]
    _, r = ask("2.1.1.10.in-addr.arpa.", "PTR", {Fetch("nodes", dc="dc1"): nodes,
                                                 Fetch("service_addr", name="10.1.1.2", dc="dc1"): svcs})
    assert records(r) == [("2.1.1.10.in-addr.arpa.", "PTR", 0, "db.service.dc1.consul.")]


def test_soa_and_ns():
    servers = {Fetch("servers", name="consul", dc="dc1"): [entry("s1", "10.9.9.9", svc="consul")]}
    _, r = ask("consul.", "SOA", servers)
    assert records(r)[0][:2] == ("consul.", "SOA")
    assert records(r)[0][3].startswith("ns.consul. hostmaster.consul. 1000 3600 600 86400 0")
    assert records(r, "authority") == [("consul.", "NS", 0, "s1.node.dc1.consul.")]
    _, r = ask("consul.", "NS", servers)
    assert records(r) == [("consul.", "NS", 0, "s1.node.dc1.consul.")]
    assert records(r, "additional") == [("s1.node.dc1.consul.", "A", 0, "10.9.9.9")]


def test_alt_domain_answers_in_the_domain_asked():
    cfg = parse_dns_config({}, alt_domain="lictor")
    rows = {Fetch("service", name="web", dc="dc1"): [entry("a", "10.0.0.1")]}
    _, r = ask("web.service.lictor.", "SRV", rows, cfg)
    assert records(r)[0][3] == "1 1 80 a.node.dc1.lictor."


def test_errors_map_to_rcodes():
    f = Fetch("service", name="web", dc="dc1")
    _, r = ask("web.service.consul.", "A", {f: PermissionDeniedError("denied")})
    assert r.rcode() == dns.rcode.NXDOMAIN
    _, r = ask("web.service.consul.", "A", {f: RemoteError("boom")})
    assert r.rcode() == dns.rcode.SERVFAIL


def many(n):
    return {Fetch("service", name="web", dc="dc1"): [entry(f"n{i}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(n)]}


def test_udp_answer_limit_and_truncate_flag():
    _, r = ask("web.service.consul.", "A", many(20))
    assert len(records(r)) == 3 and not r.flags & dns.flags.TC  # Consul's default: cut, no TC
    cfg = parse_dns_config({"enable_truncate": True, "udp_answer_limit": 5})
    _, r = ask("web.service.consul.", "A", many(20), cfg)
    assert len(records(r)) == 5 and r.flags & dns.flags.TC
    _, r = ask("web.service.consul.", "A", many(20), cfg, tcp=True)
    assert len(records(r)) == 20 and not r.flags & dns.flags.TC


def test_edns_raises_the_udp_limit_and_size_is_respected():
    cfg = parse_dns_config({"enable_truncate": True})
    _, r = ask("web.service.consul.", "SRV", many(300), cfg, edns=1232)
    assert 3 < len(records(r)) < 300 and r.flags & dns.flags.TC
    assert len(r.to_wire()) <= 1232
    targets = {x[3].split()[-1] for x in records(r)}
    assert {x[0] for x in records(r, "additional") if x[1] == "A"} == targets  # extra follows the answers


def test_a_record_limit_applies_on_tcp_too():
    cfg = parse_dns_config({"a_record_limit": 2})
    _, r = ask("web.service.consul.", "A", many(10), cfg, tcp=True)
    assert len(records(r)) == 2


@pytest.mark.parametrize("raw,path", [
    ({"recursor_strategy": "fastest"}, "dns_config.recursor_strategy"),
    ({"udp_answer_limit": -1}, "dns_config.udp_answer_limit"),
    ({"service_ttl": {"web": "-1s"}}, "dns_config.service_ttl.web"),
])
def test_bad_settings_name_the_key(raw, path):
    with pytest.raises(ConfigError) as ei:
        parse_dns_config(raw)
    assert path in str(ei.value)


def test_bad_recursor_is_refused():
    with pytest.raises(ConfigError, match="recursors"):
        parse_dns_config({}, recursors=["dns.example.com"])
