"""Auto-encrypt: client agents get their RPC client certificate from the servers.

Which CA signs? The cluster's **Connect CA** (server/connect), as in Consul. Its key already lives
in the replicated state of every server, so no extra key file has to be copied to servers, and
rotation is the Connect CA's. The operator's TLS CA (``tls.defaults.ca_file``, made with
``lictor tls ca create``) keeps signing the *server* certificates; its key never has to be on a
server at all.

::

    client agent (auto_encrypt { tls = true })                  any server (allow_tls = true)
    ------------------------------------------                  -----------------------------------
    new EC P-256 key, CSR (DNS/IP SANs from auto_encrypt)
    TLS to 8300 *without* a client cert, verifying the   -->   context: client cert *optional*;
    server by ca_file (+ server.<dc>.<domain>)                  RPCPeerPolicy: no cert -> only
    RPC AutoEncrypt.Sign {csr, node, token}                     AutoEncrypt.Sign
                                                                follower -> forwards to the leader
                                                                leader: authorizer(token, node)
                                                                 (ACL hook: node:write), rate limit,
                                                                 the *server* picks every name:
                                                                 URI spiffe://<td>/agent/client/dc/
                                                                 <dc>/id/<node>, DNS client.<dc>.
                                                                 <domain> + localhost + checked CSR
                                                                 names, never server.<dc>.<domain>
                                                                 or a wildcard
    <-- {IssuedCert, ConnectCARoots, ManualCARoots}
    TLSManager.use_auto_cert(cert, key, roots): outgoing RPC now presents it; servers are
    verified with ManualCARoots (their certs come from the operator's CA)

    every server: ServerRootsWatcher adds the Connect roots to the RPC server context's trust
    store, so auto-encrypt certificates pass verify_incoming. RPCPeerPolicy refuses Connect
    certificates that are not agent identities (a service's sidecar leaf cannot call RPCs) and
    keeps Raft/Cluster.* for certificates naming server.<dc>.<domain>.

Without ACLs anyone who reaches the RPC port can obtain a client certificate (Consul's behaviour
too); the ACL issue installs the authorizer (:func:`set_authorizer`) to require ``node:write``.

Client agents do not talk to servers over RPC yet (the agent's ``rpc()`` is in-process only), so
:class:`AutoEncryptClient` is not started by the agent today; it is tested against real servers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lictor.common.errors import (Conflict, LictorError, NoLeaderError, NotLeaderError, PermissionDeniedError,
                                  ValidationError)
from lictor.common.rpc import RPCClient
from lictor.common.tls import (AUTO_ENCRYPT_METHOD, TLSManager, TLSSettings, agent_spiffe_id, build_client_context,
                               client_name, server_name)
from lictor.server.connect import ca, leader, state
from lictor.server.endpoints import ENDPOINTS, endpoint
from lictor.server.server import Server

__all__ = ["AutoEncryptClient", "IssuedAgentCert", "ServerRootsWatcher", "install_server", "request_certificate",
           "set_authorizer", "sign_agent_csr"]

log = logging.getLogger("lictor.autoencrypt")

AutoEncryptAuthorizer = Callable[[Server, str, str], None]
"""``(server, token, node)``: raise ``PermissionDeniedError`` when ``token`` may not get a
certificate for agent ``node``. The default allows all (no ACLs)."""


def _allow_all(server: Server, token: str, node: str) -> None:
    return None


_authorizer: AutoEncryptAuthorizer = _allow_all


def set_authorizer(fn: AutoEncryptAuthorizer | None) -> None:
    global _authorizer
    _authorizer = fn or _allow_all


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
    is_rsa = isinstance(pub, rsa.RSAPublicKey)
    not_after = min(now + ttl, signer_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    sans += [x509.DNSName(d) for d in dns] + [x509.IPAddress(i) for i in ips]
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node[:64])]))
         .issuer_name(signer_cert.subject).public_key(pub)  # type: ignore[arg-type]
         .serial_number(serial).not_valid_before(now - ca.LEAF_BACKDATE).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                                      data_encipherment=False, key_agreement=not is_rsa, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                        critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)  # type: ignore[arg-type]
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                        critical=False)
         .add_extension(x509.SubjectAlternativeName(sans), critical=False))
    algo = hashes.SHA384() if isinstance(signer_key, ec.EllipticCurvePrivateKey) and \
        signer_key.curve.key_size >= 384 else hashes.SHA256()
    return b.sign(signer_key, algo)


if AUTO_ENCRYPT_METHOD not in ENDPOINTS:
    @endpoint(AUTO_ENCRYPT_METHOD)
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
        _authorizer(server, str(a.get("token") or ""), node)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedAgentCert:
    cert_pem: str
    key_pem: str
    connect_roots: tuple[str, ...]
    manual_roots: tuple[str, ...]
    valid_after: dt.datetime
    valid_before: dt.datetime


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


async def request_certificate(*, servers: Sequence[str], node: str, datacenter: str, domain: str = "consul",
                              tls: TLSSettings, token: str = "", dns_san: Sequence[str] = (),
                              ip_san: Sequence[str] = (), timeout: float = 10.0) -> IssuedAgentCert:
    """Ask the servers (in order, until one answers) for a client certificate. The first contact
    verifies the server with ``tls.ca_file`` (and its name when ``verify_server_hostname``);
    with no CA configured it is unverified, as Consul's."""
    key = ca.generate_private_key("ec", 256)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_san]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_san]
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node[:64])]))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr_pem = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    first = TLSSettings(ca_file=tls.ca_file, ca_path=tls.ca_path, verify_outgoing=tls.has_ca,
                        verify_server_hostname=tls.has_ca and tls.verify_server_hostname,
                        tls_min_version=tls.tls_min_version, where=tls.where)
    client = RPCClient(ssl=build_client_context(first), server_hostname=server_name(datacenter, domain),
                       connect_timeout=min(5.0, timeout), request_timeout=timeout)
    errors: list[str] = []
    try:
        for addr in servers:
            try:
                reply = await client.call(addr, AUTO_ENCRYPT_METHOD, {"csr": csr_pem, "node": node, "token": token})
            except LictorError as exc:
                errors.append(f"{addr}: {exc}")
                continue
            issued = reply["IssuedCert"]
            return IssuedAgentCert(cert_pem=issued["CertPEM"], key_pem=ca.private_key_pem(key),
                                   connect_roots=tuple(reply.get("ConnectCARoots") or ()),
                                   manual_roots=tuple(reply.get("ManualCARoots") or ()),
                                   valid_after=_parse_time(issued["ValidAfter"]),
                                   valid_before=_parse_time(issued["ValidBefore"]))
    finally:
        await client.close()
    raise NoLeaderError("auto-encrypt: no server signed a certificate: " + "; ".join(errors))


class AutoEncryptClient:
    """Fetch the certificate, hand it to the :class:`TLSManager`, renew at half its lifetime
    (retrying with jittered backoff while servers are unreachable)."""

    def __init__(self, tls: TLSManager, *, servers: Callable[[], Sequence[str]], node: str, token: str = "",
                 rng: random.Random | None = None,
                 on_certificate: Callable[[], Awaitable[None]] | None = None) -> None:
        """``on_certificate`` runs after each certificate is installed, e.g. to drop RPC
        connections that were opened without (or with an older) client certificate."""
        self.tls = tls
        self.on_certificate = on_certificate
        self.servers = servers
        self.node = node
        self.token = token
        self.current: IssuedAgentCert | None = None
        self._rng = rng or random.Random()

    async def renew_once(self) -> IssuedAgentCert:
        ae = self.tls.auto_encrypt
        cert = await request_certificate(servers=list(self.servers()), node=self.node,
                                         datacenter=self.tls.datacenter, domain=self.tls.domain,
                                         tls=self.tls.config.internal_rpc, token=self.token,
                                         dns_san=ae.dns_san, ip_san=ae.ip_san)
        self.tls.use_auto_cert(cert.cert_pem, cert.key_pem, list(cert.manual_roots) + list(cert.connect_roots))
        self.current = cert
        if self.on_certificate is not None:
            await self.on_certificate()
        log.info("auto-encrypt: client certificate valid until %s", cert.valid_before.isoformat())
        return cert

    async def run(self) -> None:
        backoff = 1.0
        while True:
            try:
                cert = await self.renew_once()
                backoff = 1.0
                life = (cert.valid_before - cert.valid_after).total_seconds()
                wait = max(1.0, cert.valid_before.timestamp() - time.time() - life / 2)
            except LictorError as exc:
                log.warning("auto-encrypt: %s (retrying in %.0fs)", exc, backoff)
                wait, backoff = backoff * (0.5 + self._rng.random() / 2), min(backoff * 2, 60.0)
            await asyncio.sleep(wait)
