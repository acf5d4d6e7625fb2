"""Client TLS contexts for checks (TCP, H2PING): verifying by default, or not at all."""

from __future__ import annotations

import ssl

__all__ = ["client_context"]


def client_context(
    *, skip_verify: bool, base: ssl.SSLContext | None = None, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """A client context. ``base`` (the agent's, with its CA) is used as is when given and
    verification is wanted; ``skip_verify`` builds a context that checks nothing."""
    if skip_verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif base is not None:
        ctx = base
    else:
        ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
