"""``ssl.SSLContext`` builders for server RPC, with Consul's three switches.

* ``verify_incoming``  (server side): require a client certificate signed by our CA.
* ``verify_outgoing``  (client side): require the server's certificate to chain to our CA.
* ``verify_server_hostname`` (client side, implies ``verify_outgoing``): also require the
  server certificate to name :func:`server_name` (``server.<dc>.<domain>``), so a client-only
  certificate from the same CA cannot pose as a server. Pass that name as the
  ``server_hostname`` of :class:`~lictor.common.rpc.conn.RPCClient`.

TLS 1.2 is the minimum. Files are read once, when the context is built; reloading on change
belongs to whoever owns the files (rebuild the context and the server/client).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from lictor.common.errors import ConfigError

__all__ = ["client_context", "server_context", "server_name"]


def server_name(datacenter: str, domain: str = "consul") -> str:
    """The DNS name every server certificate of ``datacenter`` carries."""
    return f"server.{datacenter}.{domain.strip('.')}"


def _load(ctx: ssl.SSLContext, *, ca_file: str | Path | None, cert_file: str | Path | None,
          key_file: str | Path | None) -> None:
    try:
        if ca_file is not None:
            ctx.load_verify_locations(cafile=str(ca_file))
        if cert_file is not None:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files: {exc}", source="tls") from exc


def server_context(*, ca_file: str | Path | None, cert_file: str | Path, key_file: str | Path,
                   verify_incoming: bool = True) -> ssl.SSLContext:
    """Context for :class:`~lictor.common.rpc.conn.RPCServer` (``ssl=``)."""
    if verify_incoming and ca_file is None:
        raise ConfigError("verify_incoming requires ca_file", source="tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED if verify_incoming else ssl.CERT_NONE
    _load(ctx, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
    return ctx


def client_context(*, ca_file: str | Path | None, cert_file: str | Path | None = None,
                   key_file: str | Path | None = None, verify_outgoing: bool = True,
                   verify_server_hostname: bool = False) -> ssl.SSLContext:
    """Context for :class:`~lictor.common.rpc.conn.RPCClient` (``ssl=``).

    ``cert_file``/``key_file`` are the client's own certificate, needed when servers run with
    ``verify_incoming``.
    """
    verify = verify_outgoing or verify_server_hostname
    if verify and ca_file is None:
        raise ConfigError("verify_outgoing requires ca_file", source="tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = verify_server_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    _load(ctx, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
    return ctx
