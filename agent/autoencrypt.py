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
too); with ACLs on, the RPC rules require ``node:write`` on the requesting node.

The server half (the ``AutoEncrypt.Sign`` endpoint, CSR checks, the roots watcher) is
:mod:`lictor.server.endpoints.autoencrypt`; this module is the client agent's half: it runs
:class:`AutoEncryptClient` when ``auto_encrypt.tls`` is set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from lictor.common.errors import LictorError, NoLeaderError
from lictor.common.rpc import RPCClient
from lictor.common.tls import AUTO_ENCRYPT_METHOD, TLSManager, TLSSettings, build_client_context, server_name
from lictor.server.connect import ca


__all__ = ["AutoEncryptClient", "IssuedAgentCert", "request_certificate"]

log = logging.getLogger("lictor.autoencrypt")


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
