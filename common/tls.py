"""TLS for the agent: Consul's ``tls`` block as values, the live ``ssl.SSLContext``\\ s built from
it, reload in place on SIGHUP, the server RPC port's peer policy, and gRPC credentials.

::

    config files: tls { defaults {...} internal_rpc {...} https {...} grpc {...} }
        -> tls_config_from_raw(...)     TLSConfig: one effective TLSSettings per protocol
                                        (defaults, overridden key by key by the protocol's block)
        -> TLSManager(config, ...)      builds the contexts once; every listener and client keeps
                                        a reference to *the same* context object
             .rpc_server_context        RPCServer(ssl=...)       (server RPC + Raft, port 8300)
             .rpc_client_context        RPCClient(ssl=..., server_hostname=rpc_server_name)
             .https_context             aiohttp TCPSite(ssl_context=...) (port 8501)
             .grpc_credentials()        grpc server credentials (8503), when the xDS server lands
             .reload(new_config)        SIGHUP: build throw-away contexts from the new files first
                                        (any error -> ConfigError, nothing changed); then load the
                                        new cert chain / CAs *into the live contexts*. New
                                        handshakes use the new certificate; established
                                        connections keep theirs (OpenSSL copies the certificate
                                        into each connection), so the cluster is never dropped.

Rules kept here:

* Key material is read by OpenSSL from the files and never held in a Python string by this module
  (auto-encrypt's in-memory key is written to a 0600 temporary file, loaded and unlinked). Errors
  name the configuration key and the file path, never file contents.
* TLS 1.2 is the minimum; ``tls_min_version`` may raise it to TLS 1.3.
* Reload can add trusted CAs but cannot remove one from a live context (OpenSSL has no API for
  that); removing a CA needs a restart. Certificates and keys are replaced.
* :class:`RPCPeerPolicy` decides, per RPC method, whether the verified peer certificate may call
  it: with ``verify_server_hostname`` only certificates naming ``server.<dc>.<domain>`` may speak
  Raft and ``Cluster.*``; a Connect-CA certificate (auto-encrypt) must be an *agent* SPIFFE ID;
  without any certificate only ``AutoEncrypt.Sign`` is allowed, and only when
  ``auto_encrypt.allow_tls`` made the certificate optional.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lictor.common.errors import ConfigError
from lictor.common.rpc.tls import server_name

__all__ = [
    "AUTO_ENCRYPT_METHOD",
    "AutoEncryptConfig",
    "RPCPeerPolicy",
    "SERVER_ONLY_METHODS",
    "TLSConfig",
    "TLSManager",
    "TLSSettings",
    "agent_spiffe_id",
    "auto_encrypt_config_from_raw",
    "client_name",
    "grpc_server_credentials",
    "peer_dns_names",
    "server_name",
    "tls_config_from_raw",
]

#: The one method a peer without a certificate may call (auto-encrypt's first contact).
AUTO_ENCRYPT_METHOD = "AutoEncrypt.Sign"
#: Methods only servers may call on the RPC port (Raft notes arrive as notifications).
SERVER_ONLY_METHODS = frozenset({"Raft.Msgs", "Cluster.Hello", "Cluster.Join"})

_MIN_VERSIONS = {"tlsv1_2": ssl.TLSVersion.TLSv1_2, "tlsv1_3": ssl.TLSVersion.TLSv1_3}
#: Go (Consul) cipher suite names -> OpenSSL names (TLS 1.2 only; TLS 1.3 suites are fixed).
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
PROTOCOLS = ("internal_rpc", "https", "grpc")
_FIELDS = ("ca_file", "ca_path", "cert_file", "key_file", "verify_incoming", "verify_outgoing",
           "verify_server_hostname", "tls_min_version", "tls_cipher_suites", "use_auto_cert")
#: Consul's pre-1.12 top-level keys -> where they go now.
LEGACY_KEYS = {
    "ca_file": "defaults.ca_file", "ca_path": "defaults.ca_path", "cert_file": "defaults.cert_file",
    "key_file": "defaults.key_file", "verify_incoming": "defaults.verify_incoming",
    "verify_outgoing": "defaults.verify_outgoing",
    "verify_server_hostname": "internal_rpc.verify_server_hostname",
    "verify_incoming_rpc": "internal_rpc.verify_incoming",
    "verify_incoming_https": "https.verify_incoming",
    "tls_min_version": "defaults.tls_min_version", "tls_cipher_suites": "defaults.tls_cipher_suites",
}


# ============================================================================= values


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSSettings:
    """One protocol's effective settings (``tls.defaults`` overridden by its own block).
    Paths are shown in ``/v1/agent/self``; the files' contents never are."""

    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    """internal_rpc only: outgoing RPC requires the peer's certificate to name
    ``server.<dc>.<domain>`` (implies verify_outgoing)."""
    tls_min_version: str = "TLSv1_2"
    tls_cipher_suites: tuple[str, ...] = ()
    use_auto_cert: bool = False
    """grpc only (Consul's): serve the auto-encrypt certificate on 8503."""
    where: str = "tls"
    """The key path these came from, for error messages (``tls.internal_rpc``)."""

    @property
    def has_cert(self) -> bool:
        return bool(self.cert_file and self.key_file)

    @property
    def has_ca(self) -> bool:
        return bool(self.ca_file or self.ca_path)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    defaults: TLSSettings = field(default_factory=TLSSettings)
    internal_rpc: TLSSettings = field(default_factory=lambda: TLSSettings(where="tls.internal_rpc"))
    https: TLSSettings = field(default_factory=lambda: TLSSettings(where="tls.https"))
    grpc: TLSSettings = field(default_factory=lambda: TLSSettings(where="tls.grpc"))

    @property
    def enabled(self) -> bool:
        return any(getattr(self, p).has_cert for p in PROTOCOLS)


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoEncryptConfig:
    """Consul's ``auto_encrypt``: ``tls`` on client agents (get the RPC certificate from the
    servers), ``allow_tls`` on servers (sign them, and accept them on the RPC port)."""

    tls: bool = False
    allow_tls: bool = False
    dns_san: tuple[str, ...] = ()
    ip_san: tuple[str, ...] = ()


# ============================================================================ parsing

ErrorFactory = Callable[[str, str], ConfigError]
"""``(key path, message) -> ConfigError`` naming the source that set the key (config.py's)."""


def _plain_error(path: str, message: str) -> ConfigError:
    return ConfigError(message, path=path)


def tls_config_from_raw(tls: Mapping[str, Any] | None, legacy: Mapping[str, Any] | None = None, *,
                        server: bool = False, https_port: int = -1, grpc_tls_port: int = -1,
                        error: ErrorFactory = _plain_error,
                        check_files: bool = True) -> tuple[TLSConfig, list[tuple[str, str]]]:
    """Typed ``tls`` block (as config.py's schema checked it) -> :class:`TLSConfig`, plus
    warnings as (key path, message). Cross-key rules, each naming the key path:

    * a certificate needs both ``cert_file`` and ``key_file``;
    * ``verify_incoming`` / ``verify_outgoing`` / ``verify_server_hostname`` need ``ca_file`` or
      ``ca_path``; ``verify_server_hostname`` turns ``verify_outgoing`` on;
    * a server with ``internal_rpc.verify_incoming`` needs a certificate to present;
    * an enabled HTTPS port (``ports.https``) without the https certificate is a warning (not served);
    * ``tls_min_version`` is TLSv1_2 or TLSv1_3; cipher suites are Consul's (Go) names;
    * the files exist and are readable (their contents are checked by :class:`TLSManager`).
    """
    tls = dict(tls or {})
    warnings: list[tuple[str, str]] = []
    defaults = dict(tls.get("defaults") or {})
    blocks: dict[str, dict[str, Any]] = {p: dict(tls.get(p) or {}) for p in PROTOCOLS}
    for key, value in (legacy or {}).items():
        target = LEGACY_KEYS.get(key)
        if target is None:
            continue
        block, _, name = target.partition(".")
        dst = defaults if block == "defaults" else blocks[block]
        if name not in dst:
            dst[name] = value
        warnings.append((key, f"deprecated: use tls.{target} instead"))

    def settings(proto: str) -> TLSSettings:
        merged = {k: v for k, v in defaults.items() if k in _FIELDS}
        merged.update({k: v for k, v in blocks[proto].items() if k in _FIELDS})
        where = f"tls.{proto}"

        def path(key: str) -> str:
            return f"{where}.{key}" if key in blocks[proto] else f"tls.defaults.{key}"

        suites = merged.get("tls_cipher_suites") or ()
        if isinstance(suites, str):
            suites = tuple(s.strip() for s in suites.split(",") if s.strip())
        for s in suites:
            if s not in _CIPHERS:
                raise error(path("tls_cipher_suites"), f"unsupported cipher suite {s!r} (supported: "
                                                       f"{', '.join(sorted(_CIPHERS))})")
        ver = str(merged.get("tls_min_version") or "TLSv1_2")
        if ver.lower() not in _MIN_VERSIONS:
            raise error(path("tls_min_version"), f"invalid TLS version {ver!r}: use TLSv1_2 or TLSv1_3 "
                                                 "(older versions are not supported)")
        s = TLSSettings(
            ca_file=str(merged.get("ca_file") or ""), ca_path=str(merged.get("ca_path") or ""),
            cert_file=str(merged.get("cert_file") or ""), key_file=str(merged.get("key_file") or ""),
            verify_incoming=bool(merged.get("verify_incoming", False)),
            verify_outgoing=bool(merged.get("verify_outgoing", False)),
            verify_server_hostname=proto == "internal_rpc" and bool(blocks[proto].get("verify_server_hostname")),
            tls_min_version=ver, tls_cipher_suites=tuple(suites),
            use_auto_cert=proto == "grpc" and bool(blocks[proto].get("use_auto_cert")), where=where)
        if s.verify_server_hostname and not s.verify_outgoing:
            s = replace(s, verify_outgoing=True)
        if bool(s.cert_file) != bool(s.key_file):
            missing = "key_file" if s.cert_file else "cert_file"
            raise error(path("cert_file" if s.cert_file else "key_file"),
                        f"{missing} is required with {'cert_file' if s.cert_file else 'key_file'}")
        for flag in ("verify_server_hostname", "verify_incoming", "verify_outgoing"):
            if getattr(s, flag) and not s.has_ca:
                raise error(path(flag) if flag != "verify_server_hostname" else f"{where}.{flag}",
                            f"{flag} requires ca_file or ca_path")
        if check_files:
            for key in ("ca_file", "cert_file", "key_file"):
                p = getattr(s, key)
                if p and not os.access(p, os.R_OK):
                    why = "no such file" if not os.path.exists(p) else "not readable"
                    raise error(path(key), f"cannot read {p!r}: {why}")
            if s.ca_path and not os.path.isdir(s.ca_path):
                raise error(path("ca_path"), f"{s.ca_path!r} is not a directory")
        return s

    cfg = TLSConfig(defaults=TLSSettings(where="tls.defaults"), internal_rpc=settings("internal_rpc"),
                    https=settings("https"), grpc=settings("grpc"))
    if server and cfg.internal_rpc.verify_incoming and not cfg.internal_rpc.has_cert:
        raise error("tls.internal_rpc.verify_incoming" if "verify_incoming" in blocks["internal_rpc"]
                    else "tls.defaults.verify_incoming",
                    "a server with verify_incoming needs cert_file and key_file to present")
    if https_port > 0 and not cfg.https.has_cert:
        warnings.append(("ports.https", "no tls.https (or tls.defaults) cert_file and key_file: "
                                        "HTTPS is not served"))
    del grpc_tls_port  # the gRPC server checks tls.grpc when it lands (grpc_server_credentials)
    return cfg, warnings


def auto_encrypt_config_from_raw(raw: Mapping[str, Any] | None, *, server: bool,
                                 error: ErrorFactory = _plain_error) -> AutoEncryptConfig:
    raw = raw or {}
    cfg = AutoEncryptConfig(tls=bool(raw.get("tls", False)), allow_tls=bool(raw.get("allow_tls", False)),
                            dns_san=tuple(raw.get("dns_san") or ()), ip_san=tuple(raw.get("ip_san") or ()))
    if cfg.tls and server:
        raise error("auto_encrypt.tls", "is for client agents; servers sign certificates (allow_tls)")
    if cfg.allow_tls and not server:
        raise error("auto_encrypt.allow_tls", "requires server mode")
    for name in cfg.dns_san:
        if "*" in name or not name:
            raise error("auto_encrypt.dns_san", f"invalid DNS name {name!r} (no wildcards)")
    import ipaddress

    for ip in cfg.ip_san:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise error("auto_encrypt.ip_san", f"invalid IP address {ip!r}") from None
    return cfg


# ============================================================================ contexts


def client_name(datacenter: str, domain: str = "consul") -> str:
    """The DNS name client-agent certificates carry (``client.<dc>.<domain>``)."""
    return f"client.{datacenter}.{domain.strip('.')}"


def agent_spiffe_id(trust_domain: str, datacenter: str, node: str) -> str:
    """Consul's SPIFFE ID for a client agent's auto-encrypt certificate."""
    return f"spiffe://{trust_domain}/agent/client/dc/{datacenter}/id/{node}"


def _apply_common(ctx: ssl.SSLContext, s: TLSSettings) -> None:
    ctx.minimum_version = _MIN_VERSIONS[s.tls_min_version.lower()]
    if s.tls_cipher_suites:
        ctx.set_ciphers(":".join(_CIPHERS[c] for c in s.tls_cipher_suites))


def _load_ca(ctx: ssl.SSLContext, s: TLSSettings) -> None:
    try:
        if s.ca_file or s.ca_path:
            ctx.load_verify_locations(cafile=s.ca_file or None, capath=s.ca_path or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA from {s.ca_file or s.ca_path!r}: {_why(exc)}",
                          path=f"{s.where}.ca_file") from None


def _load_chain(ctx: ssl.SSLContext, cert_file: str, key_file: str, where: str) -> None:
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load certificate {cert_file!r} with key {key_file!r}: {_why(exc)}",
                          path=f"{where}.cert_file") from None


def _why(exc: BaseException) -> str:
    """An OpenSSL/OS error as a short reason: never file contents (OpenSSL never includes them)."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.__class__.__name__
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    return exc.__class__.__name__


def build_server_context(s: TLSSettings, *, optional_client_cert: bool = False) -> ssl.SSLContext:
    """A server-side context: presents ``cert_file``; ``verify_incoming`` requires a client
    certificate chained to the CA (``optional_client_cert``: verified if given, else allowed,
    for auto-encrypt's first contact; :class:`RPCPeerPolicy` then limits what it may call)."""
    if not s.has_cert:
        raise ConfigError("cert_file and key_file are required to serve TLS", path=s.where)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_common(ctx, s)
    if s.verify_incoming:
        ctx.verify_mode = ssl.CERT_OPTIONAL if optional_client_cert else ssl.CERT_REQUIRED
    _load_ca(ctx, s)
    _load_chain(ctx, s.cert_file, s.key_file, s.where)
    return ctx


def build_client_context(s: TLSSettings) -> ssl.SSLContext:
    """A client-side context: ``verify_outgoing`` checks the server's chain,
    ``verify_server_hostname`` also its name; presents ``cert_file`` when set."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_common(ctx, s)
    verify = s.verify_outgoing or s.verify_server_hostname
    ctx.check_hostname = s.verify_server_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    _load_ca(ctx, s)
    if s.has_cert:
        _load_chain(ctx, s.cert_file, s.key_file, s.where)
    return ctx


def peer_dns_names(cert: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """(DNS SANs, URI SANs) of ``SSLObject.getpeercert()``."""
    if not cert:
        return [], []
    dns, uris = [], []
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            dns.append(str(value).lower())
        elif kind == "URI":
            uris.append(str(value))
    return dns, uris


@dataclass(frozen=True, slots=True, kw_only=True)
class RPCPeerPolicy:
    """Who may call what on the server RPC port (see the module docstring)."""

    tls: bool
    verify_incoming: bool
    verify_server_hostname: bool
    server_name: str
    datacenter: str

    def denial(self, method: str, *, peer_tls: bool, cert: Mapping[str, Any] | None) -> str | None:
        """None when allowed, else the reason (for the caller's error and the log)."""
        if not self.tls or not self.verify_incoming:
            return None
        if not cert:
            if method == AUTO_ENCRYPT_METHOD and peer_tls:
                return None
            return f"{method} requires a client certificate"
        dns, uris = peer_dns_names(cert)
        spiffe = [u for u in uris if u.startswith("spiffe://")]
        if spiffe:
            # issued by the Connect CA (auto-encrypt): only client-agent identities of this DC
            ok = all(f"/agent/client/dc/{self.datacenter}/id/" in u for u in spiffe)
            if not ok:
                return f"certificate {spiffe[0]} is not an agent certificate"
            if method in SERVER_ONLY_METHODS:
                return f"{method} is for servers only"
            return None
        if self.verify_server_hostname and method in SERVER_ONLY_METHODS and self.server_name not in dns:
            return f"{method} is for servers only: the certificate does not name {self.server_name}"
        return None


class TLSManager:
    """The agent's live TLS contexts (see the module docstring for the reload contract)."""

    def __init__(self, config: TLSConfig, *, datacenter: str, domain: str = "consul", server: bool = False,
                 auto_encrypt: AutoEncryptConfig | None = None) -> None:
        self.config = config
        self.datacenter = datacenter
        self.domain = domain
        self.server = server
        self.auto_encrypt = auto_encrypt or AutoEncryptConfig()
        self.rpc_server_name = server_name(datacenter, domain)
        self.reloads = 0
        self.extra_client_cas: list[str] = []
        """PEMs trusted for incoming RPC client certificates besides ca_file (Connect roots)."""
        self.rpc_server_context: ssl.SSLContext | None = None
        self.rpc_client_context: ssl.SSLContext | None = None
        self.https_context: ssl.SSLContext | None = None
        self._auto_cert: tuple[str, str] | None = None
        self._build(config)

    # -- building --------------------------------------------------------------------------

    def _contexts(self, config: TLSConfig) -> dict[str, ssl.SSLContext | None]:
        rpc = config.internal_rpc
        out: dict[str, ssl.SSLContext | None] = {"rpc_server": None, "rpc_client": None, "https": None}
        if self.server and rpc.has_cert:
            out["rpc_server"] = build_server_context(
                rpc, optional_client_cert=self.auto_encrypt.allow_tls and rpc.verify_incoming)
        if rpc.has_cert or rpc.verify_outgoing or self.auto_encrypt.tls:
            out["rpc_client"] = build_client_context(rpc)
        if config.https.has_cert:
            out["https"] = build_server_context(config.https)
        return out

    def _build(self, config: TLSConfig) -> None:
        ctxs = self._contexts(config)
        self.rpc_server_context = ctxs["rpc_server"]
        self.rpc_client_context = ctxs["rpc_client"]
        self.https_context = ctxs["https"]

    @property
    def rpc_enabled(self) -> bool:
        return self.rpc_server_context is not None or self.rpc_client_context is not None

    def rpc_policy(self) -> RPCPeerPolicy:
        rpc = self.config.internal_rpc
        return RPCPeerPolicy(tls=self.rpc_server_context is not None, verify_incoming=rpc.verify_incoming,
                             verify_server_hostname=rpc.verify_server_hostname,
                             server_name=self.rpc_server_name, datacenter=self.datacenter)

    # -- reload ----------------------------------------------------------------------------

    def reload(self, config: TLSConfig) -> list[str]:
        """Load the new files into the live contexts; returns what changed, as sentences.

        Everything is built into throw-away contexts first, so a missing file, a key that does
        not match its certificate or a bad CA raises :class:`ConfigError` with nothing changed.
        Switching TLS on or off for a listener, or changing verify flags, needs a restart: that
        is reported (not silently ignored)."""
        self._contexts(config)  # validation: raises before anything changes
        said: list[str] = []
        old = self.config
        for name, live, new in (("internal_rpc", self.rpc_server_context, config.internal_rpc),
                                ("internal_rpc", self.rpc_client_context, config.internal_rpc),
                                ("https", self.https_context, config.https)):
            was = getattr(old, name)
            if live is None:
                if new.has_cert and not was.has_cert:
                    said.append(f"tls.{name}: TLS was off at start; restart the agent to turn it on")
                continue
            if (was.verify_incoming, was.verify_outgoing, was.verify_server_hostname) != (
                    new.verify_incoming, new.verify_outgoing, new.verify_server_hostname):
                said.append(f"tls.{name}: verify_* changes need a restart (kept the running ones)")
            if new.has_ca:
                _load_ca(live, new)
            if new.has_cert:
                _load_chain(live, new.cert_file, new.key_file, new.where)
            elif self._auto_cert is not None and live is self.rpc_client_context:
                pass  # the auto-encrypt certificate stays
        for pem in self.extra_client_cas:
            if self.rpc_server_context is not None:
                self.rpc_server_context.load_verify_locations(cadata=pem)
        self.config = config
        self.reloads += 1
        said.insert(0, f"TLS certificates reloaded (#{self.reloads})")
        return said

    # -- auto-encrypt ----------------------------------------------------------------------

    def trust_client_cas(self, pems: list[str]) -> int:
        """Trust ``pems`` (Connect roots) for incoming RPC client certificates; returns how
        many were new. Idempotent; roots can be added, never removed, while running."""
        if self.rpc_server_context is None:
            return 0
        n = 0
        for pem in pems:
            if pem not in self.extra_client_cas:
                self.rpc_server_context.load_verify_locations(cadata=pem)
                self.extra_client_cas.append(pem)
                n += 1
        return n

    def use_auto_cert(self, cert_pem: str, key_pem: str, ca_pems: list[str]) -> None:
        """Present an auto-encrypt certificate on outgoing RPC and trust ``ca_pems`` for servers.
        The key passes through a 0600 temporary file (OpenSSL loads chains from files only)."""
        if self.rpc_client_context is None:
            self.rpc_client_context = build_client_context(self.config.internal_rpc)
        ctx = self.rpc_client_context
        for pem in ca_pems:
            ctx.load_verify_locations(cadata=pem)
        fd, path = tempfile.mkstemp(prefix="lictor-auto-", suffix=".pem")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(cert_pem if cert_pem.endswith("\n") else cert_pem + "\n")
                f.write(key_pem)
            _load_chain(ctx, path, path, "auto_encrypt")
        finally:
            os.unlink(path)
        self._auto_cert = (cert_pem, "")

    # -- gRPC ------------------------------------------------------------------------------

    def grpc_credentials(self) -> Any:
        return grpc_server_credentials(self.config.grpc)


def grpc_server_credentials(settings: TLSSettings) -> Any:
    """``grpc.ServerCredentials`` for the gRPC TLS port (8503) from ``tls.grpc``.

    The xDS server does not exist yet; when it lands it calls this for ``ports.grpc_tls``. The
    credentials are *dynamic*: grpc asks the fetcher at each new handshake, and the fetcher
    re-reads the files when their modification time changed, so a SIGHUP-free certificate
    rotation on disk reaches new connections (existing streams keep their session)."""
    import grpc

    if not settings.has_cert:
        raise ConfigError("cert_file and key_file are required for the gRPC TLS port", path=settings.where)
    require = settings.verify_incoming

    def read() -> tuple[Any, tuple[float, ...]]:
        try:
            cert = Path(settings.cert_file).read_bytes()
            key = Path(settings.key_file).read_bytes()
            ca = Path(settings.ca_file).read_bytes() if settings.ca_file else None
            stamp = tuple(os.stat(p).st_mtime for p in (settings.cert_file, settings.key_file))
        except OSError as exc:
            raise ConfigError(f"cannot read TLS files: {_why(exc)}", path=settings.where) from None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca), stamp

    initial, stamp = read()
    last = [stamp]

    def fetch() -> Any:
        try:
            now = tuple(os.stat(p).st_mtime for p in (settings.cert_file, settings.key_file))
        except OSError:
            return None
        if now == last[0]:
            return None  # unchanged: keep the current configuration
        try:
            conf, last[0] = read()
        except ConfigError:
            return None
        return conf

    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=require)
