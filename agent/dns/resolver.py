"""The DNS resolver core: a question in, an answer out, from a catalog view. No I/O.

Answering takes two pure steps with the catalog reads between them::

    plan(qname, qtype, cfg) -> Plan            which name form this is and what it needs (Fetch keys)
      server: results = {fetch: rows | error}  (the agent's cache, RPC with stale reads)
    respond(request, plan, results, cfg, ...) -> dns.message.Message

Consul's semantics (agent/dns.go), kept here:

- names: ``<node>.node[.<dc>].<domain>``, ``[<tag>.]<service>.service[.<dc>].<domain>``, RFC 2782
  ``_<service>._<tag|tcp>.service[.<dc>].<domain>`` (the ``service`` label may be left out of an
  SRV question), ``<service>.connect``, ``<service>.ingress``, ``<service>.virtual``,
  ``<hex-ip>.addr[.<dc>]``, ``<query>.query[.<dc>]``, ``in-addr.arpa``/``ip6.arpa`` PTR, SOA and NS
  of the domain; ``<dc>`` may also be written ``<dc>.dc``;
- NXDOMAIN (SOA in authority) for an unknown name, node, service without healthy instances,
  unknown datacenter or prepared query; NOERROR with the SOA in authority and no answer when the
  name exists but has no record of the asked type (an AAAA question for an IPv4-only service);
- only instances without a critical check (``only_passing``: only passing ones); answers
  shuffled; A/AAAA for the instance's service address, else its node's; SRV targets
  ``<node>.node.<dc>.<domain>`` (the node's address) or ``<hex-ip>.addr.<dc>.<domain>`` (a
  service address) with the address record in Additional, priority 1, weight from
  ``Weights`` (passing/warning); a host name gives a CNAME (or an SRV target as is), followed
  by its A records when the server resolved it (``external_hosts``: our own names by ourselves,
  others with the recursors);
- node metadata as TXT (RFC 1464 ``key=value``; keys starting ``rfc1035-`` as raw values): in
  Answer for TXT/ANY questions, in Additional otherwise (``enable_additional_node_meta_txt``);
- TTLs: ``node_ttl`` for nodes and addresses, ``service_ttl`` (exact name, else longest
  ``prefix*``) for services, a prepared query's own ``DNS.TTL`` first;
- size: over UDP without EDNS at most ``min(8, udp_answer_limit)`` answers, and the message
  within 512 bytes (the EDNS buffer size when the question carries one), over TCP within 64 KiB;
  the TC bit set on a cut answer only with ``enable_truncate``; ``a_record_limit`` caps A/AAAA
  answers on every transport.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from lictor.agent.dns.config import MAX_UDP_ANSWER_LIMIT, DNSConfig

__all__ = ["NXDOMAIN_ERRORS", "Fetch", "Plan", "plan", "respond"]

IN = dns.rdataclass.IN
T = dns.rdatatype
DEFAULT_UDP_SIZE = 512
MAX_UDP_SIZE = 65535 - 68
MAX_TCP_SIZE = 65523
_INVALID_LABEL = re.compile(r"[^A-Za-z0-9\-.]")


@dataclass(frozen=True, slots=True)
class Fetch:
    """One catalog read the answer needs; the server turns it into an RPC (and a cache key).

    kind: ``service`` (Health.ServiceNodes; ``connect``/``ingress`` variants), ``node``
    (Catalog.NodeServices), ``nodes`` (Catalog.ListNodes) and ``service_addr``
    (Catalog.ServicesByAddress) for PTR, ``query`` (PreparedQuery.Execute), ``servers`` (the
    nameservers: instances of service ``consul``, else none), ``coords`` (Coordinate.ListNodes,
    for a prepared query's ``Near``)."""

    kind: str
    name: str = ""
    tag: str = ""
    dc: str = ""
    connect: bool = False
    ingress: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """What a question is. ``form`` is one of: ``service``, ``node``, ``addr``, ``query``, ``ptr``,
    ``soa``, ``ns``, ``virtual``, ``invalid`` (NXDOMAIN), ``notimp``, ``recurse`` (outside the
    domain), ``refused`` (outside the domain, no recursors)."""

    form: str
    domain: str = ""  # the domain the question used (domain or alt_domain), fully qualified
    fetches: tuple[Fetch, ...] = ()
    dc: str = ""
    addr: str = ""  # for ``addr``: the decoded IP
    ptr_ip: str = ""  # for ``ptr``: the IP asked about


# Errors (by class name, as they cross RPC) that mean "this name does not exist" rather than a
# failure: unknown datacenter or prepared query; and a read the DNS token may not make, which
# Consul's ACL filtering turns into an empty result.
NXDOMAIN_ERRORS = frozenset({"NotFound", "PermissionDeniedError", "ACLNotFoundError"})


def _split(qname: str, cfg: DNSConfig) -> tuple[list[str], str] | None:
    """Labels before the domain (lower case) and the domain used; None outside both domains."""
    name = qname.lower()
    if not name.endswith("."):
        name += "."
    best = ""
    for d in (cfg.domain, cfg.alt_domain):
        if d and (name == d or name.endswith("." + d)) and len(d) > len(best):
            best = d
    if not best:
        return None
    rest = name[: -len(best)].rstrip(".")
    return (rest.split(".") if rest else []), best


def _locality(suffixes: list[str], local_dc: str) -> str | None:
    """``[]`` -> local dc; ``[dc]`` or ``[dc, "dc"]`` -> dc; anything else is not a name we serve."""
    if not suffixes:
        return local_dc
    if len(suffixes) == 1:
        return suffixes[0]
    if len(suffixes) == 2 and suffixes[1] == "dc":
        return suffixes[0]
    return None


def _arpa_ip(name: str) -> str | None:
    n = name.lower().rstrip(".")
    try:
        if n.endswith(".in-addr.arpa"):
            parts = n[: -len(".in-addr.arpa")].split(".")
            if len(parts) != 4:
                return None
            return str(ipaddress.IPv4Address(".".join(reversed(parts))))
        if n.endswith(".ip6.arpa"):
            nibbles = n[: -len(".ip6.arpa")].split(".")
            if len(nibbles) != 32 or any(len(x) != 1 for x in nibbles):
                return None
            return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
    except ValueError:
        return None
    return None


def plan(qname: str, qtype: int, cfg: DNSConfig) -> Plan:
    """Classify a question (pure)."""
    lowered = qname.lower()
    if lowered.endswith(".arpa.") or lowered.endswith(".arpa"):
        ip = _arpa_ip(lowered)
        if ip is None:
            return Plan("recurse" if cfg.recursors else "invalid", domain=cfg.domain)
        return Plan("ptr", domain=cfg.domain, ptr_ip=ip,
                    fetches=(Fetch("nodes", dc=cfg.datacenter), Fetch("service_addr", name=ip, dc=cfg.datacenter)))
    split = _split(qname, cfg)
    if split is None:
        return Plan("recurse" if cfg.recursors else "refused")
    labels, domain = split
    if qtype == T.AXFR or qtype == T.IXFR:
        return Plan("notimp", domain=domain)
    if qtype == T.SOA:
        return Plan("soa", domain=domain, fetches=(Fetch("servers", name="consul", dc=cfg.datacenter),))
    if qtype == T.NS:
        return Plan("ns", domain=domain, fetches=(Fetch("servers", name="consul", dc=cfg.datacenter),))
    invalid = Plan("invalid", domain=domain)
    kind, parts, suffixes = "", [], []
    for i in range(len(labels) - 1, -1, -1):
        lab = labels[i]
        if lab in ("service", "connect", "virtual", "ingress", "node", "query", "addr"):
            kind, parts, suffixes = lab, labels[:i], labels[i + 1:]
            break
        if qtype == T.SRV and lab.startswith("_"):
            kind, parts, suffixes = "service", labels[: i + 1], labels[i + 1:]
            break
    if not kind or not parts or any(not p for p in parts):
        return invalid
    dc = _locality(suffixes, cfg.datacenter)
    if dc is None:
        return invalid
    if kind == "service":
        if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
            service, tag = parts[0][1:], parts[1][1:]
            if tag == "tcp":
                tag = ""
        else:
            service, tag = parts[-1], ".".join(parts[:-1])
        if not service:
            return invalid
        return Plan("service", domain=domain, dc=dc, fetches=(Fetch("service", name=service, tag=tag, dc=dc),))
    if kind in ("connect", "ingress"):
        f = Fetch("service", name=parts[-1], dc=dc, connect=kind == "connect", ingress=kind == "ingress")
        return Plan("service", domain=domain, dc=dc, fetches=(f,))
    if kind == "virtual":
        return Plan("virtual", domain=domain, dc=dc)
    if kind == "node":
        return Plan("node", domain=domain, dc=dc, fetches=(Fetch("node", name=".".join(parts), dc=dc),))
    if kind == "query":
        if len(suffixes) > 1:
            return invalid
        n = len(parts)
        if n >= 2 and parts[0].startswith("_") and parts[-1].startswith("_"):
            query = ".".join(parts[:-1])[1:]
        else:
            query = ".".join(parts)
        return Plan("query", domain=domain, dc=dc, fetches=(Fetch("query", name=query, dc=dc),))
    # addr: <hex>.addr[.<dc>]
    if len(parts) != 1:
        return invalid
    try:
        raw = bytes.fromhex(parts[0])
    except ValueError:
        return invalid
    if len(raw) == 4:
        return Plan("addr", domain=domain, dc=dc, addr=str(ipaddress.IPv4Address(raw)))
    if len(raw) == 16:
        return Plan("addr", domain=domain, dc=dc, addr=str(ipaddress.IPv6Address(raw)))
    return invalid


# ----- records ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Out:
    answer: list[tuple[dns.name.Name, int, int, Any]] = field(default_factory=list)  # (name, type, ttl, rdata)
    extra: list[tuple[dns.name.Name, int, int, Any]] = field(default_factory=list)
    authority: list[tuple[dns.name.Name, int, int, Any]] = field(default_factory=list)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _addr_record(qtype: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, Any] | None:
    """Consul's makeARecord: which address record (if any) a question of ``qtype`` gets."""
    if ip.version == 4:
        if qtype in (T.SRV, T.A, T.ANY, T.NS, T.TXT):
            return T.A, A(IN, T.A, str(ip))
        return None
    if qtype in (T.SRV, T.AAAA, T.ANY, T.NS, T.TXT):
        return T.AAAA, AAAA(IN, T.AAAA, str(ip))
    return None


def _fqdn(text: str) -> dns.name.Name:
    return dns.name.from_text(text if text.endswith(".") else text + ".")


def _node_fqdn(node: str, dc: str, domain: str) -> dns.name.Name:
    return _fqdn(f"{node}.node.{dc}.{domain}".lower())


def _addr_fqdn(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, dc: str, domain: str) -> dns.name.Name:
    return _fqdn(f"{ip.packed.hex()}.addr.{dc}.{domain}")


def _rfc1464(key: str, value: str) -> str:
    key = key.replace("`", "``").replace("=", "`=")
    lead = len(key) - len(key.lstrip(" "))
    trail = len(key) - len(key.rstrip(" "))
    if lead:
        key = "` " * lead + key[lead:]
    if trail:
        key = key[: len(key) - trail] + "` " * trail
    return key + "=" + value.replace("`", "``")


def _txt_records(meta: Mapping[str, str]) -> list[Any]:
    out = []
    for k, v in sorted((meta or {}).items()):
        text = v if k.lower().startswith("rfc1035-") else _rfc1464(k, v)
        data = text.encode()[:255]
        out.append(TXT(IN, T.TXT, [data]))
    return out


def _healthy(entry: Mapping[str, Any], only_passing: bool) -> bool:
    for c in entry.get("Checks") or ():
        st = c.get("Status")
        if st == "critical" or st == "maintenance" or (only_passing and st != "passing"):
            return False
    return True


def _weight(entry: Mapping[str, Any]) -> int:
    w = (entry.get("Service") or {}).get("Weights") or {}
    passing, warning = int(w.get("Passing", 1) or 0), int(w.get("Warning", 1) or 0)
    statuses = {c.get("Status") for c in entry.get("Checks") or ()}
    if "critical" in statuses or "maintenance" in statuses:
        return 0
    if "warning" in statuses:
        return max(0, min(warning, 65535))
    return max(0, min(passing, 65535))


def _service_records(entry: Mapping[str, Any], qname: dns.name.Name, qtype: int, ttl: int, dc: str,
                     domain: str) -> tuple[list[tuple[dns.name.Name, int, int, Any]], list[tuple[dns.name.Name, int, int, Any]]]:
    """Consul's makeNodeServiceRecords: (answers, additional) for one healthy instance."""
    node = entry.get("Node") or {}
    svc = entry.get("Service") or {}
    svc_addr, node_addr = str(svc.get("Address") or ""), str(node.get("Address") or "")
    if not svc_addr and not node_addr:
        return [], []
    port = int(svc.get("Port") or 0)
    node_dc = str(node.get("Datacenter") or dc)
    svc_ip, node_ip = _ip(svc_addr) if svc_addr else None, _ip(node_addr)
    if svc_addr and svc_ip is None and _fqdn(svc_addr) == qname and node_ip is not None:
        svc_addr = ""  # the service address names this very question: use the node's
    if not svc_addr and node_ip is not None:
        rec = _addr_record(qtype, node_ip)
        if rec is None:
            return [], []
        if qtype == T.SRV:
            target = _node_fqdn(str(node.get("Node") or ""), node_dc, domain)
            return ([(qname, T.SRV, ttl, SRV(IN, T.SRV, 1, _weight(entry), port, target))],
                    [(target, rec[0], ttl, rec[1])])
        return [(qname, rec[0], ttl, rec[1])], []
    ip = svc_ip if svc_addr else None
    if ip is not None:
        rec = _addr_record(qtype, ip)
        if rec is None:
            return [], []
        if qtype == T.SRV:
            target = _addr_fqdn(ip, dc, domain)
            return ([(qname, T.SRV, ttl, SRV(IN, T.SRV, 1, _weight(entry), port, target))],
                    [(target, rec[0], ttl, rec[1])])
        return [(qname, rec[0], ttl, rec[1])], []
    host = svc_addr or node_addr  # a host name (an external service)
    try:
        target = _fqdn(host)
    except dns.exception.DNSException:
        return [], []
    if qtype == T.SRV:
        return [(qname, T.SRV, ttl, SRV(IN, T.SRV, 1, _weight(entry), port, target))], []
    return [(qname, T.CNAME, ttl, CNAME(IN, T.CNAME, target))], []


def _soa(cfg: DNSConfig, domain: str, now: float) -> tuple[dns.name.Name, int, int, Any]:
    s = cfg.soa
    rd = SOA(IN, T.SOA, _fqdn("ns." + domain), _fqdn("hostmaster." + domain), int(now) & 0xFFFFFFFF,
             s.refresh, s.retry, s.expire, s.min_ttl)
    return (_fqdn(domain), T.SOA, s.min_ttl, rd)


def _result(results: Mapping[Fetch, Any], f: Fetch) -> tuple[Any, int | None]:
    """(rows, None) or (None, rcode) for a failed read."""
    r = results.get(f)
    if isinstance(r, BaseException):
        name = type(r).__name__
        if name in NXDOMAIN_ERRORS:
            return None, dns.rcode.NXDOMAIN
        return None, dns.rcode.SERVFAIL
    return r, None


def _nameservers(results: Mapping[Fetch, Any], fetch: Fetch, cfg: DNSConfig, domain: str, rng: random.Random,
                 out_ns: list[Any], out_extra: list[Any]) -> None:
    rows, _ = _result(results, fetch)
    entries = [e for e in rows or [] if _healthy(e, False)]
    rng.shuffle(entries)
    if not entries and cfg.node_name:
        # Lictor's servers do not register a "consul" service (Consul's do): then the agent that
        # answers is the name server it can vouch for
        entries = [{"Node": {"Node": cfg.node_name, "Address": cfg.node_address, "Datacenter": cfg.datacenter}}]
    for e in entries:
        node = e.get("Node") or {}
        name = str(node.get("Node") or "")
        if not name or _INVALID_LABEL.search(name):
            continue
        target = _node_fqdn(name, str(node.get("Datacenter") or cfg.datacenter), domain)
        out_ns.append((_fqdn(domain), T.NS, cfg.node_ttl, NS(IN, T.NS, target)))
        ip = _ip(str(node.get("Address") or ""))
        if ip is not None:
            rec = _addr_record(T.ANY, ip)
            if rec is not None:
                out_extra.append((target, rec[0], cfg.node_ttl, rec[1]))
        if len(out_ns) >= 3:
            break


def _service_answer(rows: list[Mapping[str, Any]], qname: dns.name.Name, qtype: int, ttl: int, dc: str,
                    domain: str, cfg: DNSConfig, rng: random.Random, out: _Out, *,
                    health_filtered: bool = False) -> None:
    if health_filtered:  # a prepared query's result: filtered, and ordered (shuffled or Near) by the query
        entries = list(rows)
    else:
        entries = [e for e in rows if _healthy(e, cfg.only_passing)]
        rng.shuffle(entries)
    if qtype == T.SRV:
        seen: set[tuple[str, str, int]] = set()
        for e in entries:
            node, svc = e.get("Node") or {}, e.get("Service") or {}
            key = (str(node.get("Node")), str(svc.get("Address") or ""), int(svc.get("Port") or 0))
            if key in seen:
                continue
            seen.add(key)
            ans, extra = _service_records(e, qname, qtype, ttl, dc, domain)
            out.answer += ans
            out.extra += extra
            if cfg.node_meta_txt and ans and node.get("Meta"):
                target = _node_fqdn(str(node.get("Node") or ""), str(node.get("Datacenter") or dc), domain)
                out.extra += [(target, T.TXT, ttl, r) for r in _txt_records(node["Meta"])]
        return
    handled: set[tuple[int, str]] = set()
    cname: list[tuple[dns.name.Name, int, int, Any]] = []
    count = 0
    for e in entries:
        ans, _ = _service_records(e, qname, qtype, ttl, dc, domain)
        if not ans:
            continue
        key = (ans[0][1], ans[0][3].to_text())
        if key in handled:
            continue
        handled.add(key)
        if ans[0][1] == T.CNAME:
            if not cname:
                cname = ans
            continue
        out.answer += ans
        count += 1
        if cfg.a_record_limit and count >= cfg.a_record_limit:
            break
    if not out.answer and cname:
        out.answer = cname


MAX_EXTERNAL_HOSTS = 5


def _outside(host: str, cfg: DNSConfig) -> bool:
    h = host.lower().rstrip(".") + "."
    return not any(d and (h == d or h.endswith("." + d)) for d in (cfg.domain, cfg.alt_domain))


def external_hosts(p: Plan, results: Mapping[Fetch, Any], cfg: DNSConfig) -> list[str]:
    """Host names an answer would point at (an instance or node whose address is a name): the
    server resolves them - names outside the domain with the recursors, names inside it with its
    own answers, one level deep - as Consul does, and passes them to :func:`respond` as
    ``resolved``. At most MAX_EXTERNAL_HOSTS, lower case, fully qualified."""
    if p.form not in ("service", "query", "node") or not p.fetches:
        return []
    rows, err = _result(results, p.fetches[0])
    if err is not None or not rows:
        return []
    if p.form == "node":
        entries = [{"Node": rows.get("Node") or {}, "Service": {}}] if isinstance(rows, dict) else []
    elif p.form == "query":
        entries = list(rows.get("Nodes") or []) if isinstance(rows, dict) else []
    else:
        entries = list(rows)
    out: list[str] = []
    for e in entries:
        svc_addr = str((e.get("Service") or {}).get("Address") or "")
        node_addr = str((e.get("Node") or {}).get("Address") or "")
        host = svc_addr if svc_addr else node_addr
        if host and _ip(host) is None and (not _outside(host, cfg) or cfg.recursors):
            name = host.lower().rstrip(".") + "."
            if name not in out:
                out.append(name)
        if len(out) >= MAX_EXTERNAL_HOSTS:
            break
    return out


def _add_resolved(out: _Out, resolved: Mapping[str, list[str]]) -> None:
    """Address records of external CNAME targets into Answer, of SRV targets into Additional."""
    for _, rtype, ttl, rd in list(out.answer):
        if rtype not in (T.CNAME, T.SRV):
            continue
        target = rd.target
        section = out.answer if rtype == T.CNAME else out.extra
        for text in resolved.get(target.to_text().lower(), ()):
            ip = _ip(text)
            if ip is None:
                continue
            rec = (target, T.A, ttl, A(IN, T.A, text)) if ip.version == 4 else (target, T.AAAA, ttl, AAAA(IN, T.AAAA, text))
            if not any(r[0] == rec[0] and r[1] == rec[1] and r[3] == rec[3] for r in section):
                section.append(rec)


def respond(request: dns.message.Message, p: Plan, results: Mapping[Fetch, Any], cfg: DNSConfig, *,
            rng: random.Random, now: float, tcp: bool,
            resolved: Mapping[str, list[str]] | None = None) -> dns.message.Message:
    """The answer to ``request`` (pure: randomness and clock are parameters). Never raises for a
    question it can classify; ``recurse`` plans are the server's to forward. ``resolved``: the
    addresses of :func:`external_hosts`, looked up by the server."""
    resp = dns.message.make_response(request, recursion_available=bool(cfg.recursors))
    resp.flags |= dns.flags.AA
    resp.flags &= ~dns.flags.TC
    if request.edns >= 0:
        resp.use_edns(0, 0, request.payload)
    else:
        resp.use_edns(False)
    q = request.question[0]
    qname, qtype = q.name, q.rdtype
    out = _Out()
    rcode = dns.rcode.NOERROR
    domain = p.domain or cfg.domain
    if p.form == "refused":
        resp.flags &= ~dns.flags.AA
        resp.set_rcode(dns.rcode.REFUSED)
        return resp
    if p.form == "notimp":
        resp.set_rcode(dns.rcode.NOTIMP)
        return resp
    if p.form == "invalid":
        out.authority.append(_soa(cfg, domain, now))
        rcode = dns.rcode.NXDOMAIN
    elif p.form in ("soa", "ns"):
        ns: list[Any] = []
        extra: list[Any] = []
        _nameservers(results, p.fetches[0], cfg, domain, rng, ns, extra)
        if p.form == "soa":
            out.answer.append(_soa(cfg, domain, now))
            out.authority += ns
        else:
            out.answer += ns
        out.extra += extra
    elif p.form == "addr":  # the datacenter label is not checked (Consul does not either)
        ip = ipaddress.ip_address(p.addr)
        rtype = T.A if ip.version == 4 else T.AAAA
        rd = A(IN, T.A, p.addr) if ip.version == 4 else AAAA(IN, T.AAAA, p.addr)
        (out.answer if qtype in (rtype, T.ANY) else out.extra).append((qname, rtype, cfg.node_ttl, rd))
    elif p.form == "virtual":
        pass  # no virtual IPs are allocated yet: an empty NOERROR, as Consul answers an unknown one
    elif p.form == "ptr":
        rows, err = _result(results, p.fetches[0])
        for n in rows or []:
            if _ip(str(n.get("Address") or "")) == _ip(p.ptr_ip):
                target = _node_fqdn(str(n.get("Node")), str(n.get("Datacenter") or cfg.datacenter), cfg.domain)
                out.answer.append((qname, T.PTR, 0, PTR(IN, T.PTR, target)))
                break
        if not out.answer and len(p.fetches) > 1:  # no node there: an instance's own address?
            svcs, _ = _result(results, p.fetches[1])
            for s in svcs or []:
                if _ip(str(s.get("ServiceAddress") or "")) == _ip(p.ptr_ip):
                    dc = str(s.get("Datacenter") or cfg.datacenter)
                    target = _fqdn(f"{s.get('ServiceName')}.service.{dc}.{cfg.domain}".lower())
                    out.answer.append((qname, T.PTR, 0, PTR(IN, T.PTR, target)))
                    break
        if not out.answer:
            rcode = dns.rcode.NXDOMAIN
            out.authority.append(_soa(cfg, cfg.domain, now))
    elif p.form == "node":
        rcode = _node_answer(p, results, qname, qtype, cfg, domain, out, now)
    elif p.form in ("service", "query"):
        fetch = p.fetches[0]
        rows, err = _result(results, fetch)
        if err is not None:
            rcode = err
        elif p.form == "query":
            rows = rows or {}
            nodes = list(rows.get("Nodes") or [])
            ttl = _query_ttl(rows, cfg)
            if not nodes:
                rcode = dns.rcode.NXDOMAIN
            else:
                # the query already filtered by health (its own OnlyPassing): no second filter
                _service_answer(nodes, qname, qtype, ttl, str(rows.get("Datacenter") or p.dc), domain,
                                cfg, rng, out, health_filtered=True)
        else:
            entries = list(rows or [])
            if not any(_healthy(e, cfg.only_passing) for e in entries):
                rcode = dns.rcode.NXDOMAIN
            else:
                ttl = cfg.service_ttl_for(fetch.name)
                _service_answer(entries, qname, qtype, ttl, p.dc, domain, cfg, rng, out)
        if rcode == dns.rcode.NXDOMAIN or (rcode == dns.rcode.NOERROR and not out.answer):
            out.authority.append(_soa(cfg, domain, now))
    if resolved:
        _add_resolved(out, resolved)
    resp.set_rcode(rcode)
    _fill(resp, out)
    _trim(request, resp, out, cfg, tcp)
    return resp


def _query_ttl(rows: Mapping[str, Any], cfg: DNSConfig) -> int:
    ttl_text = str((rows.get("DNS") or {}).get("TTL") or "")
    if ttl_text:
        from lictor.common.duration import parse_duration

        try:
            return int(parse_duration(ttl_text))
        except Exception:  # noqa: BLE001 - vetted when the query was stored; ignore as Consul does
            return 0
    return cfg.service_ttl_for(str(rows.get("Service") or ""))


def _node_answer(p: Plan, results: Mapping[Fetch, Any], qname: dns.name.Name, qtype: int, cfg: DNSConfig,
                 domain: str, out: _Out, now: float) -> int:
    if qtype not in (T.ANY, T.A, T.AAAA, T.TXT):
        return dns.rcode.NOERROR
    rows, err = _result(results, p.fetches[0])
    if err is not None:
        if err == dns.rcode.NXDOMAIN:
            out.authority.append(_soa(cfg, domain, now))
        return err
    if not rows or not rows.get("Node"):
        out.authority.append(_soa(cfg, domain, now))
        return dns.rcode.NXDOMAIN
    node = rows["Node"]
    ttl = cfg.node_ttl
    if qtype != T.TXT:
        addr = str(node.get("Address") or "")
        ip = _ip(addr)
        if ip is None and addr:
            try:
                out.answer.append((qname, T.CNAME, ttl, CNAME(IN, T.CNAME, _fqdn(addr))))
            except dns.exception.DNSException:
                pass
        elif ip is not None:
            rec = _addr_record(qtype, ip)
            if rec is not None:
                out.answer.append((qname, rec[0], ttl, rec[1]))
    if cfg.node_meta_txt or qtype in (T.TXT, T.ANY):
        target = out.answer if qtype in (T.TXT, T.ANY) else out.extra
        target += [(qname, T.TXT, ttl, r) for r in _txt_records(node.get("Meta") or {})]
    return dns.rcode.NOERROR


def _add(section: list[dns.rrset.RRset], name: dns.name.Name, rtype: int, ttl: int, rd: Any) -> None:
    for rrs in section:
        if rrs.name == name and rrs.rdtype == rtype:
            rrs.add(rd, ttl)
            return
    rrs = dns.rrset.RRset(name, IN, rtype)
    rrs.add(rd, ttl)
    section.append(rrs)


def _fill(resp: dns.message.Message, out: _Out) -> None:
    resp.answer, resp.authority, resp.additional = [], [], []
    for name, rtype, ttl, rd in out.answer:
        _add(resp.answer, name, rtype, ttl, rd)
    for name, rtype, ttl, rd in out.authority:
        _add(resp.authority, name, rtype, ttl, rd)
    for name, rtype, ttl, rd in out.extra:
        _add(resp.additional, name, rtype, ttl, rd)


def _size(resp: dns.message.Message) -> int:
    return len(resp.to_wire(max_size=65535))


def _rebuild(resp: dns.message.Message, out: _Out, n: int) -> None:
    """Keep the first ``n`` answers and only the Additional records their SRV targets need."""
    kept = out.answer[:n]
    targets = {rd.target for _, t, _, rd in kept if t == T.SRV}
    extra = [r for r in out.extra if r[0] in targets] if targets else ([] if out.answer else out.extra)
    resp.answer, resp.additional = [], []
    for name, rtype, ttl, rd in kept:
        _add(resp.answer, name, rtype, ttl, rd)
    for name, rtype, ttl, rd in extra:
        _add(resp.additional, name, rtype, ttl, rd)


def _trim(request: dns.message.Message, resp: dns.message.Message, out: _Out, cfg: DNSConfig, tcp: bool) -> None:
    total = len(out.answer)
    n = total
    if tcp:
        max_size = MAX_TCP_SIZE
    else:
        max_size = DEFAULT_UDP_SIZE
        if request.edns >= 0 and request.payload > max_size:
            max_size = min(request.payload, MAX_UDP_SIZE)
        limit = min(MAX_UDP_ANSWER_LIMIT, cfg.udp_answer_limit)
        if max_size == DEFAULT_UDP_SIZE and n > limit:
            n = limit
            _rebuild(resp, out, n)
        max_size -= 8
    if n > 1 and _size(resp) > max_size:
        resp.authority = []
        lo, hi = 1, n  # the largest count that fits, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            _rebuild(resp, out, mid)
            if _size(resp) <= max_size:
                lo = mid
            else:
                hi = mid - 1
        n = lo
        _rebuild(resp, out, n)
    if n < total and cfg.enable_truncate:
        resp.flags |= dns.flags.TC
