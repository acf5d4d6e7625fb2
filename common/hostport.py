"""The one ``host:port`` parser (Go's ``net.SplitHostPort`` rules, plus an optional default port).

Every address Lictor reads — RPC peers, ``retry_join`` entries, gossip joins, TCP/UDP/gRPC/H2
check targets, advertised addresses in ``Cluster.Hello`` — goes through :func:`parse_host_port`,
so they all accept and refuse the same spellings:

* ``host:port``, ``[v6]:port``;
* with ``default_port``: also ``host``, ``[v6]`` and a bare IPv6 address (``fe80::1``);
* an IPv6 address with a port must be bracketed (``::1:8300`` is refused: which colon?);
* the port is 1-65535; the host is non-empty, without whitespace or any of ``/?#@[]``.

``ValueError`` with a message naming ``what`` and the text otherwise. Pure: no DNS, no I/O.
"""

from __future__ import annotations

__all__ = ["format_host_port", "parse_host_port"]

_BAD_HOST_CHARS = frozenset("/?#@[]")


def parse_host_port(text: str, *, default_port: int | None = None, what: str = "address") -> tuple[str, int]:
    t = text.strip()
    if not t:
        raise ValueError(f"empty {what}")
    port_s: str | None = None
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid {what} {text!r}: expected [host]:port")
        if rest:
            port_s = rest[1:]
    elif t.count(":") > 1:
        if default_port is None:
            raise ValueError(f"invalid {what} {text!r}: expected host:port "
                             "(an IPv6 address with a port is written [host]:port)")
        host = t  # a bare IPv6 address
    else:
        host, sep, rest = t.partition(":")
        if sep:
            port_s = rest
    if not host or any(c.isspace() or c in _BAD_HOST_CHARS for c in host):
        raise ValueError(f"invalid {what} {text!r}: bad host")
    if port_s is None:
        if default_port is None:
            raise ValueError(f"invalid {what} {text!r}: expected host:port")
        return host, default_port
    if not port_s:
        raise ValueError(f"invalid {what} {text!r}: missing port after ':'")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"invalid {what} {text!r}: port must be 1-65535")
    return host, int(port_s)


def format_host_port(host: str, port: int) -> str:
    """The inverse: ``[v6]:port`` for an IPv6 host, ``host:port`` otherwise."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
