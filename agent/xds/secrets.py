"""SDS: the proxy's leaf certificate and the CA roots, so a renewal or a root rotation reaches
Envoy without a restart (listeners and clusters reference these by name)."""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from lictor.agent.proxycfg.snapshot import ConfigSnapshot
from lictor.agent.xds.common import LEAF_SECRET, ROOTS_SECRET, parse

__all__ = ["secrets_from_snapshot"]


def secrets_from_snapshot(snap: ConfigSnapshot) -> list[secret_pb2.Secret]:
    roots = "".join(p if p.endswith("\n") else p + "\n" for p in snap.roots_pem)
    leaf = parse(secret_pb2.Secret, {
        "name": LEAF_SECRET,
        "tls_certificate": {"certificate_chain": {"inline_string": snap.leaf.cert_pem},
                            "private_key": {"inline_string": snap.leaf.key_pem}}})
    ca = parse(secret_pb2.Secret, {"name": ROOTS_SECRET, "validation_context": {"trusted_ca": {"inline_string": roots}}})
    return [leaf, ca]  # type: ignore[list-item]
