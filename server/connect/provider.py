"""The built-in ("consul") CA provider: key material in the replicated state, signing on the leader.

:func:`new_root` and :func:`rotation_payload` build, on the leader, everything a CONNECT_CA
command carries (fresh key, root certificate, cross-signed intermediate), so the FSM only copies
values. :class:`Signer` signs leaves with the active root's key; it keeps the parsed key and
certificate of the root it last used (parsing a PEM key costs more than signing), and re-reads
them when the active root changes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from lictor.server.connect import ca
from lictor.server.connect.state import CAConfig, CARoot, signing_key_pem
from lictor.server.state.store import Store

__all__ = ["IssuedLeaf", "Signer", "new_cluster_id", "new_root", "rotation_payload"]

ROOT_BACKDATE = dt.timedelta(minutes=1)


def new_cluster_id() -> str:
    return str(uuid.uuid4())


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_root(config: CAConfig, *, cluster_id: str, serial: int, now: float) -> tuple[dict[str, Any], str, ca.PrivateKey, x509.Certificate]:
    """(root row payload, private key PEM, key, cert) for a fresh root of ``config``'s key type."""
    key = ca.generate_private_key(config.private_key_type, config.private_key_bits)
    td = f"{cluster_id}.consul"
    cert = ca.create_root(key, trust_domain=td, serial=serial, not_before=_utc(now) - ROOT_BACKDATE,
                          ttl=dt.timedelta(seconds=config.root_cert_ttl), common_name=f"Lictor CA Primary Cert {serial}")
    row = {
        "id": ca.fingerprint(cert), "name": "Lictor CA Primary Cert", "serial_number": serial,
        "signing_key_id": ca.key_id(key.public_key()), "not_before": _rfc3339(cert.not_valid_before_utc),
        "not_after": _rfc3339(cert.not_valid_after_utc), "root_cert": ca.cert_pem(cert),
        "intermediate_certs": [], "private_key_type": config.private_key_type,
        "private_key_bits": config.private_key_bits,
    }
    return row, ca.private_key_pem(key), key, cert


def rotation_payload(store: Store, old: CARoot, config: CAConfig, *, serials: tuple[int, int],
                     now: float) -> dict[str, Any]:
    """The ``rotate`` command: a new root of ``config``'s key type, cross-signed by ``old``'s key
    (unless ``config.force_without_cross_signing``) with that cross-signed cert in the new root's
    IntermediateCerts."""
    row, key_pem, _key, cert = new_root(config, cluster_id=config.cluster_id, serial=serials[0], now=now)
    if not config.force_without_cross_signing:
        old_pem = signing_key_pem(store, old.id)
        if old_pem is None:
            raise RuntimeError("the active root has no private key in the CA state")
        xc = ca.cross_sign(cert, signer_key=ca.load_private_key(old_pem), signer_cert=ca.load_cert(old.root_cert),
                           serial=serials[1], trust_domain=f"{config.cluster_id}.consul")
        row["intermediate_certs"] = [ca.cert_pem(xc)]
    from lictor.server.connect.state import config_to_payload

    return {"op": "rotate", "old_root_id": old.id, "root": row, "private_key_pem": key_pem,
            "config": config_to_payload(config)}


@dataclass(frozen=True, slots=True)
class IssuedLeaf:
    serial: int
    cert_pem: str
    service: str
    uri: str
    valid_after: dt.datetime
    valid_before: dt.datetime
    root_id: str


class Signer:
    """Signs leaves with the active root's key; caches the parsed key per root ID."""

    def __init__(self) -> None:
        self._root_id = ""
        self._key: ca.PrivateKey | None = None
        self._cert: x509.Certificate | None = None

    def _load(self, store: Store, root: CARoot) -> tuple[ca.PrivateKey, x509.Certificate]:
        if root.id != self._root_id or self._key is None or self._cert is None:
            pem = signing_key_pem(store, root.id)
            if pem is None:
                raise RuntimeError(f"no private key for root {root.id}")
            self._key, self._cert, self._root_id = ca.load_private_key(pem), ca.load_cert(root.root_cert), root.id
        return self._key, self._cert

    def sign(self, store: Store, root: CARoot, csr: x509.CertificateSigningRequest, *, sid: ca.SpiffeService,
             dns_names: list[str], serial: int, now: float, ttl: float) -> IssuedLeaf:
        key, cert = self._load(store, root)
        leaf = ca.sign_leaf(csr, signer_key=key, signer_cert=cert, serial=serial, uri=sid.uri, dns_names=dns_names,
                            now=_utc(now), ttl=dt.timedelta(seconds=ttl))
        return IssuedLeaf(serial=serial, cert_pem=ca.cert_pem(leaf), service=sid.service, uri=sid.uri,
                          valid_after=leaf.not_valid_before_utc, valid_before=leaf.not_valid_after_utc, root_id=root.id)
