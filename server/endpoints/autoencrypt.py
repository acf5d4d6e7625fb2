"""Auto-encrypt, the server half: the ``AutoEncrypt.Sign`` RPC endpoint that signs a client
agent's CSR with the Connect CA (the server picks every name), and the watcher that makes the RPC
port trust Connect roots. The whole flow is drawn in :mod:`lictor.agent.autoencrypt`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from lictor.common.errors import (Conflict, NoLeaderError, NotLeaderError, PermissionDeniedError, ValidationError)
from lictor.common.tls import (AUTO_ENCRYPT_METHOD, TLSManager, agent_spiffe_id, client_name, server_name)
from lictor.server.connect import ca, leader, state
from lictor.server.endpoints import endpoint
from lictor.server.server import Server


__all__ = ["ServerRootsWatcher", "install_server", "sign_agent_csr"]


log = logging.getLogger("lictor.autoencrypt")

@dataclass(frozen=True, slots=True, kw_only=True)
class _ServerSettings:
    allowed: bool
    domain: str
    manual_ca_pems: tuple[str, ...]
    verify_server_hostname: bool


_SETTINGS: weakref.WeakKeyDictionary[Server, _ServerSettings] = weakref.WeakKeyDictionary()


def install_server(server: Server, *, allowed: bool, domain: str, manual_ca_pems: Sequence[str] = (),
                   verify_server_hostname: bool = False) -> None:
    """Tell the endpoint how this server is configured (``auto_encrypt.allow_tls``, the domain,
    the operator CA PEMs handed to clients so they can verify servers)."""
    _SETTINGS[server] = _ServerSettings(allowed=allowed, domain=domain, manual_ca_pems=tuple(manual_ca_pems),
                                        verify_server_hostname=verify_server_hostname)


def _is_wildcard_or_server(name: str, forbidden: str) -> bool:
    n = name.lower().rstrip(".")
    return "*" in n or n == forbidden or n.endswith("." + forbidden)


def sign_agent_csr(csr_pem: str, *, node: str, datacenter: str, domain: str, trust_domain: str,
                   signer_key: ca.PrivateKey, signer_cert: x509.Certificate, serial: int, now: dt.datetime,
                   ttl: dt.timedelta) -> x509.Certificate:
    """Pure: check a client agent's CSR and sign its certificate (the server picks the names).
    ``ValidationError`` says exactly what is wrong."""
    try:
        csr = ca.load_csr(csr_pem)
    except ca.CSRError as exc:
        raise ValidationError(str(exc)) from None
    try:
        ok = csr.is_signature_valid
    except (InvalidSignature, ValueError):
        ok = False
    if not ok:
        raise ValidationError("CSR: signature is not valid")
    pub = csr.public_key()
    kind, bits = ca.key_spec(pub)  # type: ignore[arg-type]
    if not ((kind == "ec" and bits in (256, 384)) or (kind == "rsa" and bits >= 2048)):
        raise ValidationError(f"CSR: key {kind}/{bits} is not allowed (EC P-256/P-384 or RSA >= 2048)")
    if not node or len(node) > 128 or any(c in node for c in "/\\ \t\n"):
        raise ValidationError(f"node: invalid node name {node!r}")
    forbidden = server_name(datacenter, domain)
    dns = [client_name(datacenter, domain), "localhost"]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ipaddress.ip_address("127.0.0.1")]
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for d in san.get_values_for_type(x509.DNSName):
            if _is_wildcard_or_server(d, forbidden):
                raise ValidationError(f"CSR: DNS name {d!r} is not allowed for a client agent")
            if d.lower() not in dns:
                dns.append(d.lower())
        for ip in san.get_values_for_type(x509.IPAddress):
            if ip not in ips:
                ips.append(ip)
    uri = agent_spiffe_id(trust_domain, datacenter, node)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    sans += [x509.DNSName(d) for d in dns] + [x509.IPAddress(i) for i in ips]
    return ca.build_leaf(pub, signer_key=signer_key, signer_cert=signer_cert, serial=serial,  # type: ignore[arg-type]
                         common_name=node, sans=sans, now=now, ttl=ttl)


@endpoint(AUTO_ENCRYPT_METHOD, write=True)
async def _sign(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Args: ``csr`` (PEM), ``node``, ``token``. Runs on the leader (a follower forwards)."""
    settings = _SETTINGS.get(server)
    if settings is None or not settings.allowed:
        raise PermissionDeniedError("Permission denied: auto_encrypt.allow_tls is not enabled on this server")
    if not server.log.is_leader():
        cluster = getattr(server, "cluster", None)
        if cluster is not None:
            return await cluster.call(AUTO_ENCRYPT_METHOD, a)  # type: ignore[no-any-return]
        addr = server.log.leader()
        raise NotLeaderError(addr) if addr else NoLeaderError()
    node = a.get("node")
    csr_pem = a.get("csr")
    if not isinstance(node, str) or not isinstance(csr_pem, str):
        raise ValidationError("AutoEncrypt.Sign: node and csr (PEM) are required strings")
    store = server.store
    cfg = store.ext["ca_config"].get("config")
    root = state.active_root(store)
    if cfg is None or root is None:
        raise Conflict("CA is not initialized yet")
    mgr = leader.manager_for(server)
    mgr.admit(cfg)
    (serial,) = await mgr.next_serials(1)
    root = state.active_root(server.store)
    key_pem = state.signing_key_pem(server.store, root.id) if root is not None else None
    if root is None or key_pem is None:
        raise Conflict("CA is not initialized yet")
    dc = server.config.datacenter
    cert = sign_agent_csr(csr_pem, node=node, datacenter=dc, domain=settings.domain,
                          trust_domain=state.trust_domain(cfg.cluster_id),
                          signer_key=ca.load_private_key(key_pem), signer_cert=ca.load_cert(root.root_cert),
                          serial=serial, now=dt.datetime.now(dt.timezone.utc),
                          ttl=dt.timedelta(seconds=cfg.leaf_cert_ttl))
    chain = ca.cert_pem(cert) + "".join(p if p.endswith("\n") else p + "\n" for p in root.intermediate_certs)
    _, roots = state.ca_roots(server.store, None)
    log.info("auto-encrypt: signed a client certificate for agent %s (serial %s)", node, ca.serial_hex(serial))
    return {"IssuedCert": {"CertPEM": chain, "SerialNumber": ca.serial_hex(serial), "Agent": node,
                           "AgentURI": agent_spiffe_id(state.trust_domain(cfg.cluster_id), dc, node),
                           "ValidAfter": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "ValidBefore": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "ConnectCARoots": [r.root_cert for r in roots],
            "ManualCARoots": list(settings.manual_ca_pems),
            "VerifyServerHostname": settings.verify_server_hostname}


# ============================================================================ server side


class ServerRootsWatcher:
    """On every server with ``allow_tls``: keep the Connect roots in the RPC server context's
    trust store (polls the replicated roots table; adding a root is idempotent)."""

    def __init__(self, server: Server, tls: TLSManager, *, interval: float = 1.0) -> None:
        self.server = server
        self.tls = tls
        self.interval = interval
        self._seen_index = -1

    def once(self) -> int:
        store = self.server.store
        idx = store.index("ca_roots")
        if idx == self._seen_index:
            return 0
        self._seen_index = idx
        _, roots = state.ca_roots(store, None)
        added = self.tls.trust_client_cas([r.root_cert for r in roots])
        if added:
            log.info("auto-encrypt: trusting %d new Connect root(s) for RPC client certificates", added)
        return added

    async def run(self) -> None:
        while True:
            try:
                self.once()
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("auto-encrypt: reading the Connect roots failed")
            await asyncio.sleep(self.interval)


# ============================================================================ client side
