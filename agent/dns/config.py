"""The DNS interface's settings: Consul's ``domain``, ``alt_domain``, ``recursors`` and
``dns_config { ... }`` keys, typed and checked once, with Consul's defaults.

Two defaults differ from Consul's, on purpose (the brief of issue 15): ``use_cache`` is true, so
a DNS storm is answered from the agent's cache and never becomes a Raft storm; with
``cache_max_age = 0`` (the default) a cached answer is kept fresh by a blocking query rather than
aged out. ``allow_stale`` is true as in Consul.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lictor.common.duration import parse_duration
from lictor.common.errors import ConfigError, ValidationError

__all__ = ["DNSConfig", "SOAConfig", "dns_config_from_runtime", "parse_dns_config"]

# Consul: "UDP can fit ~25 A records in a 512B response ... limit further"
MAX_UDP_ANSWER_LIMIT = 8


@dataclass(frozen=True, slots=True)
class SOAConfig:
    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DNSConfig:
    domain: str = "consul."  # lower case, fully qualified
    alt_domain: str = ""  # "" or lower case, fully qualified
    datacenter: str = "dc1"
    node_name: str = ""
    node_address: str = ""  # this agent's address (NS glue when no "consul" service is registered)
    allow_stale: bool = True
    max_stale: float = 87600 * 3600.0
    node_ttl: int = 0  # seconds
    service_ttl: Mapping[str, int] = field(default_factory=dict)  # name or "prefix*" -> seconds
    udp_answer_limit: int = 3
    a_record_limit: int = 0  # 0 = no limit
    enable_truncate: bool = False
    only_passing: bool = False
    recursors: tuple[tuple[str, int], ...] = ()
    recursor_strategy: str = "sequential"  # or "random"
    recursor_timeout: float = 2.0
    node_meta_txt: bool = True
    soa: SOAConfig = field(default_factory=SOAConfig)
    use_cache: bool = True
    cache_max_age: float = 0.0  # 0: cached entries are refreshed by blocking queries, never aged out

    def service_ttl_for(self, service: str) -> int:
        """Consul's rule: an exact name wins, else the longest ``prefix*`` that matches, else 0."""
        exact = self.service_ttl.get(service)
        if exact is not None:
            return exact
        best, best_len = 0, -1
        for key, ttl in self.service_ttl.items():
            if key.endswith("*") and service.startswith(key[:-1]) and len(key) - 1 > best_len:
                best, best_len = ttl, len(key) - 1
        return best


def _fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _recursor(text: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353`` -> (ip, port). Consul also accepts host
    names; Lictor asks for an IP so the DNS server never depends on another resolver to start."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"invalid recursor address {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"invalid recursor address {text!r}")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"invalid recursor address {text!r}: expected an IP address with an optional port") from None
    if not 0 < port < 65536:
        raise ValueError(f"invalid recursor address {text!r}: port out of range")
    return host, port


def _seconds(value: Any, path: str) -> float:
    try:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else parse_duration(value)
    except (ValidationError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid duration: {exc}", path=path) from None


def parse_dns_config(raw: Mapping[str, Any], *, domain: str = "consul", alt_domain: str = "",
                     recursors: tuple[str, ...] | list[str] = (), datacenter: str = "dc1",
                     node_name: str = "") -> DNSConfig:
    """Typed settings from the checked ``dns_config`` map; a ConfigError names the bad key."""
    d = dict(raw or {})
    kw: dict[str, Any] = {}
    for key in ("allow_stale", "enable_truncate", "only_passing", "use_cache"):
        if key in d:
            kw[key] = bool(d[key])
    if "enable_additional_node_meta_txt" in d:
        kw["node_meta_txt"] = bool(d["enable_additional_node_meta_txt"])
    for key in ("max_stale", "recursor_timeout", "cache_max_age"):
        if key in d:
            v = _seconds(d[key], f"dns_config.{key}")
            if v < 0:
                raise ConfigError(f"cannot be negative, got {d[key]!r}", path=f"dns_config.{key}")
            kw[key] = v
    if "recursor_timeout" in kw and kw["recursor_timeout"] <= 0:
        raise ConfigError("must be positive", path="dns_config.recursor_timeout")
    if "node_ttl" in d:
        v = _seconds(d["node_ttl"], "dns_config.node_ttl")
        if v < 0:
            raise ConfigError(f"cannot be negative, got {d['node_ttl']!r}", path="dns_config.node_ttl")
        kw["node_ttl"] = int(v)
    for key in ("udp_answer_limit", "a_record_limit"):
        if key in d:
            v = int(d[key])
            if v < 0:
                raise ConfigError(f"cannot be negative, got {v}", path=f"dns_config.{key}")
            kw[key] = v
    if "service_ttl" in d:
        ttls: dict[str, int] = {}
        st = d["service_ttl"]
        if not isinstance(st, Mapping):
            raise ConfigError("expected an object of service name -> duration", path="dns_config.service_ttl")
        for name, value in st.items():
            v = _seconds(value, f"dns_config.service_ttl.{name}")
            if v < 0:
                raise ConfigError(f"cannot be negative, got {value!r}", path=f"dns_config.service_ttl.{name}")
            ttls[str(name)] = int(v)
        kw["service_ttl"] = ttls
    if "recursor_strategy" in d:
        strategy = str(d["recursor_strategy"]).strip().lower()
        if strategy not in ("sequential", "random"):
            raise ConfigError(f"expected \"sequential\" or \"random\", got {d['recursor_strategy']!r}",
                              path="dns_config.recursor_strategy")
        kw["recursor_strategy"] = strategy
    if "soa" in d:
        soa = dict(d["soa"] or {})
        for k, v in soa.items():
            if int(v) < 0 or int(v) > 0xFFFFFFFF:
                raise ConfigError(f"out of range: {v}", path=f"dns_config.soa.{k}")
        kw["soa"] = SOAConfig(**{k: int(v) for k, v in soa.items()})
    rec = []
    for i, r in enumerate(recursors):
        try:
            rec.append(_recursor(r))
        except ValueError as exc:
            raise ConfigError(str(exc), path=f"recursors[{i}]") from None
    alt = _fqdn(alt_domain) if alt_domain else ""
    if not domain.strip().strip("."):
        raise ConfigError("cannot be empty", path="domain")
    return DNSConfig(domain=_fqdn(domain), alt_domain=alt, datacenter=datacenter, node_name=node_name,
                     recursors=tuple(rec), **kw)


def dns_config_from_runtime(config: Any) -> DNSConfig:
    """From a :class:`lictor.common.config.RuntimeConfig`."""
    return parse_dns_config(config.dns_config, domain=config.domain, alt_domain=config.alt_domain,
                            recursors=config.recursors, datacenter=config.datacenter, node_name=config.node_name)
