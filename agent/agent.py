"""The agent's composition root: builds every component from the config and owns start/stop order.

::

    RuntimeConfig --> Agent
                      |-- Server (in -server / -dev mode): FSM + store + log + leader duties
                      |-- ServiceRegistry: LocalState <-- CheckRunner (local services and checks)
                      |-- StateSyncer (anti-entropy) --rpc--> Server endpoints
                      |-- EventBuffer, LogBroadcaster (monitor), Metrics
                      `-- HTTP API (aiohttp) --rpc / local state--> the above

Start order: server, HTTP listeners (so ``/v1/status/leader`` answers at once), local services
and checks from the config, anti-entropy. Stop order is the reverse. ``rpc(name, args)`` is the one
way the agent asks a server anything: in-process today, over the network for client agents later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any

from aiohttp import web

from lictor import __version__
from lictor.agent.acl_cache import AgentACL, current_token
from lictor.agent.ae import StateSyncer
from lictor.agent.events import EventBuffer
from lictor.agent.membership import Membership
from lictor.agent.rpcclient import ServerPool
from lictor.agent.monitor import LogBroadcaster
from lictor.agent.audit import AuditLog
from lictor.agent.registry import ServiceRegistry
from lictor.common.config import ConfigSource, RuntimeConfig, load_config
from lictor.common.errors import ConfigError, NoLeaderError, NotFound, ValidationError
from lictor.common.fsutil import ensure_private_dir
from lictor.common.servicedef import (CheckDefinition, ServiceDefinition, parse_check_definition,
                                      parse_service_definition)
from lictor.common.tls import TLSManager
from lictor.server import endpoints
from lictor.server.acl.config import configure as configure_acl
from lictor.server.acl.config import parse_acl_config
from lictor.server.cluster import AutopilotConfig, Cluster, ClusterConfig, read_raft_timing_env
from lictor.server.leader import Member
from lictor.server.members import left_servers
from lictor.server.server import Server, ServerConfig
from lictor.common.tasks import cancel_and_wait, spawn

__all__ = ["Agent"]

log = logging.getLogger("lictor.agent")


def _private_ip() -> str:
    """The address this host would use to reach other hosts (no packet is sent); 127.0.0.1 if
    there is no route. Used when bind_addr is 0.0.0.0 and advertise_addr is not set."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _env_float(name: str, lo: float, hi: float) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds") from None
    if not lo <= v <= hi:
        raise ConfigError(f"{name}={raw!r}: must be between {lo} and {hi}")
    return v


def _limit_count(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).strip().isdigit():
        raise ConfigError(f"{what}: expected a non-negative integer, got {v!r}")
    return int(v)


def _limit_seconds(v: Any, what: str) -> float:
    from lictor.common.duration import parse_duration

    try:
        return parse_duration(v, what=what)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None


def cluster_config(config: RuntimeConfig, address: str) -> ClusterConfig:
    """Server-mode settings from the agent config. Hidden knobs for tests and benchmarks (read
    from the environment, never needed in production):

    * ``LICTOR_RAFT_TICK_INTERVAL`` seconds per Raft tick before ``raft_multiplier`` (default
      0.1; an election times out after 10-20 ticks, the leader heartbeats every tick);
    * ``LICTOR_RPC_FRAME_TIMEOUT`` seconds a peer may leave a frame half-sent on the server RPC
      port before its connection is dropped (default 30);
    * ``LICTOR_RPC_HOLD_TIMEOUT`` how long a forwarded call waits for a leader (default 7).
    """
    try:
        tick = read_raft_timing_env(os.environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    frame_timeout = _env_float("LICTOR_RPC_FRAME_TIMEOUT", 0.1, 3600.0)
    hold = _env_float("LICTOR_RPC_HOLD_TIMEOUT", 0.1, 600.0)
    bind = config.bind_addr
    ap = AutopilotConfig(**dict(config.autopilot))
    from lictor.common.rpc.conn import format_addr

    return ClusterConfig(
        node_name=config.node_name, node_id=config.node_id, datacenter=config.datacenter,
        rpc_addr=format_addr(address, config.ports.server), bind=(bind, config.ports.server),
        serf_addr=format_addr(address, config.ports.serf_lan),
        data_dir=config.data_dir, bootstrap=config.bootstrap,
        bootstrap_expect=config.bootstrap_expect, retry_interval=config.retry_interval,
        tick_interval=tick if tick is not None else 0.1, raft_multiplier=config.raft_multiplier,
        autopilot=ap, forward_hold=hold if hold is not None else 7.0,
        rpc_frame_timeout=frame_timeout if frame_timeout is not None else 30.0)


class Agent:
    def __init__(self, config: RuntimeConfig, *, source: ConfigSource | None = None,
                 broadcaster: LogBroadcaster | None = None) -> None:
        self.config = config
        self.source = source
        self.node_name = config.node_name
        self.datacenter = config.datacenter
        self.address = config.advertise_addr or config.bind_addr
        self.started = time.time()
        self.version = __version__
        self.broadcaster = broadcaster or LogBroadcaster()
        self.server: Server | None = None
        self.cluster: Cluster | None = None
        # TLS and the audit log (issue 7): lictor.common.tls, lictor.agent.audit. Bad TLS files
        # raise ConfigError here, naming the key path, so the agent refuses to start.
        self.tls: TLSManager | None = None
        if config.tls.enabled or config.auto_encrypt.tls:
            self.tls = TLSManager(config.tls, datacenter=config.datacenter, domain=config.domain,
                                  server=config.server and not config.dev, auto_encrypt=config.auto_encrypt)
        self.audit: AuditLog | None = AuditLog(config.audit) if config.audit.enabled else None
        if config.data_dir:  # Raft log, snapshots, tokens: private, tightened (with a warning) if wider
            ensure_private_dir(config.data_dir, log=log)
        if self.address in ("0.0.0.0", "::", "") and not config.dev:
            self.address = _private_ip()  # clients too: gossip and the catalog need a real address
        if config.server and not config.dev:
            # Server mode: a Raft cluster member. -dev keeps the in-memory LocalLog (ready at once).
            if self.address in ("0.0.0.0", "::", ""):
                self.address = _private_ip()
            self.cluster = Cluster(cluster_config(config, self.address), tls=self.tls)
            self.cluster.rpc_server.set_limits(  # Consul's limits on the RPC port
                max_conns_per_client=_limit_count(config.limits.get("rpc_max_conns_per_client", 100),
                                                  "limits.rpc_max_conns_per_client"),
                handshake_timeout=_limit_seconds(config.limits.get("rpc_handshake_timeout", "5s"),
                                                 "limits.rpc_handshake_timeout"))
            self.server = Server(ServerConfig(datacenter=config.datacenter, node_name=config.node_name,
                                              rpc_address=self.cluster.config.rpc_addr),
                                 replicator=self.cluster.raft, members=self._members)
            self.cluster.attach(self.server)
        elif config.dev:
            self.server = Server(ServerConfig(datacenter=config.datacenter, node_name=config.node_name,
                                              rpc_address=f"{self.address}:{config.ports.server}"),
                                 members=self._members)
        # ACLs: the validated `acl {}` block goes to the server (enforcement on RPC) and to the
        # agent's resolver (HTTP enforcement, agent tokens); see lictor.agent.acl_cache.
        acl_config = parse_acl_config(config.acl)
        if self.server is not None:
            configure_acl(self.server, acl_config)
        self.acl = AgentACL(acl_config, server=self.server, rpc=None if self.server else self.rpc,
                            data_dir=config.data_dir or "")
        # local services and checks (lictor.agent.registry): the LocalState anti-entropy pushes
        # and the CheckRunner that feeds it
        self.registry = ServiceRegistry(self, config=lambda: self.config, node_name=config.node_name,
                                        address=self.address, check_update_interval=config.check_update_interval)
        self.local = self.registry.local
        self.checks = self.registry.checks
        self.local.node_address = self.address
        self.local.node_id = config.node_id
        self.local.node_meta = dict(config.node_meta)
        self.local.tagged_addresses = {"lan": self.address, "lan_ipv4": self.address,
                                       "wan": self.address, "wan_ipv4": self.address}
        self.syncer = StateSyncer(local=self.local, rpc=self.rpc, datacenter=config.datacenter)
        self.local.on_change = self.syncer.trigger_changes
        self.events = EventBuffer()
        self._runners: list[web.AppRunner] = []
        self.http_guard: Any = None  # lictor.agent.http.conn_guard.ConnGuard, set when HTTP starts
        self._tasks: list[asyncio.Task[Any]] = []
        self.shutdown_requested = asyncio.Event()
        self.left = False
        # LAN gossip (issue 4, lictor.agent.membership) for servers and clients; client agents
        # reach the servers it finds through a ServerPool (lictor.agent.rpcclient).
        self.membership = Membership(self)
        self.pool: ServerPool | None = None
        if self.server is None:
            self.pool = ServerPool(self.membership.servers,
                                   ssl=self.tls.rpc_client_context if self.tls is not None else None,
                                   server_hostname=self.tls.rpc_server_name if self.tls is not None else None)
        self.syncer._cluster_size = self.membership.size
        self.membership.listeners.on_change.append(self._on_member_change)

    # ----- rpc ------------------------------------------------------------------------------
    async def rpc(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if self.acl.enabled and "token" not in args:
            # the request being served (set by the HTTP layer), else the agent's own token
            tok = current_token.get()
            args = {**args, "token": tok if tok is not None else self.acl.agent_token()}
        if self.server is None:
            if self.pool is None:
                raise NoLeaderError("No known Consul servers")
            return await self.pool.call(name, args)
        if self.cluster is not None:
            return await self.cluster.call(name, args)
        return await endpoints.call(self.server, name, args)

    def _members(self) -> list[Member]:
        if self.membership.node is not None and self.server is not None:
            from lictor.server.members import members_for_reconcile

            return members_for_reconcile(self.server.store, self.membership.members(), self.membership.reaped,
                                         local_name=self.node_name, local_meta=dict(self.config.node_meta))
        status = "left" if self.left else "alive"
        return [Member(name=self.node_name, address=self.address, status=status, node_id=self.config.node_id,
                       meta=dict(self.config.node_meta),
                       server_port=self.config.ports.server if self.server is not None else None)]

    def _on_member_change(self, ev: Any) -> None:
        """Gossip saw a member change: the leader reconciles at once; a client that sees its
        first server syncs at once; servers look at new servers for formation."""
        if self.server is not None:
            self.server.trigger_reconcile()
        if ev.member.tags.get("role") == "consul":
            if self.cluster is not None:
                self.cluster.wake()
            elif self.pool is not None and ev.kind.value in ("join", "alive"):
                self.syncer.trigger_full()

    def member_info(self) -> dict[str, Any]:
        rec = self.membership.records.get(self.node_name)
        if rec is not None and self.membership.node is not None:
            info = rec.to_api()
            info["Tags"] = self.membership.tags()
            info["Tags"].pop("kh", None)
            if self.left:
                info["Status"] = 3
            return info
        c = self.config
        return {
            "Name": self.node_name, "Addr": self.address, "Port": c.ports.serf_lan,
            "Tags": {"role": "consul" if self.server else "node", "dc": self.datacenter,
                     "port": str(c.ports.server), "build": f"{self.version}:lictor", "vsn": "2",
                     "vsn_min": "2", "vsn_max": "3", "id": c.node_id, "segment": "",
                     "bootstrap": "1" if c.bootstrap or c.dev else "0"} if self.server else
                    {"role": "node", "dc": self.datacenter, "build": f"{self.version}:lictor", "vsn": "2",
                     "vsn_min": "2", "vsn_max": "3", "id": c.node_id, "segment": ""},
            "Status": 3 if self.left else 1,
            "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
            "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
        }

    # ----- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        if self.cluster is not None:
            await self.cluster.start()
        if self.server is not None:
            await self.server.start()
        await self._start_security()
        await self._start_http()
        await self._start_dns()
        await self._start_gossip()
        await self._start_xds()
        try:  # awaited: an error here stops the start instead of vanishing in a task
            defs, chks = self._config_definitions(self.config)
            await self.registry.load_config_definitions(defs, chks)
        except (ValidationError, NotFound) as exc:
            raise ConfigError(f"registering services and checks from the config files: {exc}") from None
        self._tasks.append(spawn(self.syncer.run(), name="anti-entropy"))
        self._tasks.append(spawn(self.registry.reap_critical(), name="critical-reaper"))
        log.info("agent started: node=%s datacenter=%s server=%s http=%s", self.node_name, self.datacenter,
                 self.server is not None, self.http_addresses())

    async def _start_gossip(self) -> None:
        from lictor.common.errors import TransportError

        try:
            await self.membership.start()
        except TransportError as exc:
            if not self.config.dev:
                raise
            log.warning("gossip disabled in -dev mode: %s", exc)
            return
        if self.cluster is not None:
            # servers find each other through gossip (retry_join is a gossip join list), and the
            # leader takes servers gossip reports as left out of the Raft configuration
            membership, dc = self.membership, self.datacenter
            self.cluster.gossip_servers = membership.servers
            self.cluster.left_servers = lambda: left_servers(membership.records.values(), datacenter=dc)

    async def _start_xds(self) -> None:
        """proxycfg (one snapshot per local connect-proxy) and the xDS server on ports.grpc
        (and ports.grpc_tls with ``tls.grpc``): lictor.agent.proxycfg, lictor.agent.xds."""
        c = self.config
        plain = [(a, c.ports.grpc) for a in c.bind_addresses("grpc")] if c.ports.grpc > 0 else []
        tls_ports: list[tuple[str, int, Any]] = []
        if c.ports.grpc_tls > 0 and c.tls.grpc.has_cert:
            from lictor.common.tls import grpc_server_credentials

            creds = grpc_server_credentials(c.tls.grpc)
            tls_ports = [(a, c.ports.grpc_tls, creds) for a in c.bind_addresses("grpc_tls")]
        if not plain and not tls_ports:
            return
        from lictor.agent.http.connect_ca import leaf_manager
        from lictor.agent.proxycfg.manager import Manager
        from lictor.agent.xds.server import XDSServer

        self.proxycfg = Manager(self, leafcerts=leaf_manager(self))
        self.proxycfg.start()
        self.xds = XDSServer(self.proxycfg, acl=self.acl)
        try:
            await self.xds.start(plain, tls_ports)
        except OSError as exc:
            if not c.dev:
                raise ConfigError(str(exc)) from None
            log.warning("xDS server disabled in -dev mode: %s", exc)  # as gossip: -dev keeps going
            return
        log.info("xDS server listening on %s", [f"{h}:{p}" for h, p in plain] + [f"{h}:{p} (tls)" for h, p, _ in tls_ports])

    def http_addresses(self) -> list[str]:
        port = self.config.ports.http
        return [f"{a}:{port}" for a in self.config.bind_addresses("http")] if port >= 0 else []

    async def _start_security(self) -> None:
        """The audit log's files, and on servers the auto-encrypt endpoint's settings plus the
        watcher that trusts Connect roots for auto-encrypt client certificates."""
        if self.audit is not None:
            await self.audit.start()
        from lictor.agent import autoencrypt
        from lictor.server.endpoints import autoencrypt as autoencrypt_server

        if self.server is None:
            # A client agent with auto_encrypt.tls asks the servers gossip finds for its RPC
            # certificate; until it has one its RPC pool cannot pass verify_incoming, and the
            # client's loop retries with backoff until servers are known.
            if self.tls is not None and self.config.auto_encrypt.tls:
                pool = self.pool
                client = autoencrypt.AutoEncryptClient(
                    self.tls, servers=self.membership.servers, node=self.node_name,
                    token=self.acl.agent_token(), on_certificate=pool.reconnect_all if pool is not None else None)
                self.auto_encrypt_client = client
                self._tasks.append(spawn(client.run(), name="auto-encrypt"))
            return

        c = self.config
        manual: list[str] = []
        if c.tls.internal_rpc.ca_file:
            with open(c.tls.internal_rpc.ca_file, encoding="ascii", errors="replace") as f:
                manual.append(f.read())  # a CA certificate: public
        autoencrypt_server.install_server(self.server, allowed=c.auto_encrypt.allow_tls, domain=c.domain,
                                   manual_ca_pems=manual,
                                   verify_server_hostname=c.tls.internal_rpc.verify_server_hostname)
        if c.auto_encrypt.allow_tls and self.tls is not None:
            watcher = autoencrypt_server.ServerRootsWatcher(self.server, self.tls)
            self._tasks.append(spawn(watcher.run(), name="auto-encrypt-roots"))

    async def _start_http(self) -> None:
        from lictor.agent.http.app import build_app
        from lictor.agent.http.conn_guard import DEFAULT_HEADER_TIMEOUT, ConnGuard, GuardedTCPSite

        port = self.config.ports.http
        https_port = self.config.ports.https
        https_ctx = self.tls.https_context if self.tls is not None else None
        if port < 0 and (https_port < 0 or https_ctx is None):
            return
        # Parked blocking queries would hold shutdown for up to their wait: give them 1 s.
        runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        # limits.http_max_conns_per_client and a request-header deadline, shared by 8500 and 8501
        # (LICTOR_HTTP_HEADER_TIMEOUT: a hidden knob for tests, like LICTOR_RPC_FRAME_TIMEOUT)
        header_timeout = _env_float("LICTOR_HTTP_HEADER_TIMEOUT", 0.1, 3600.0)
        self.http_guard = ConnGuard(
            max_conns_per_client=_limit_count(self.config.limits.get("http_max_conns_per_client", 200),
                                              "limits.http_max_conns_per_client"),
            header_timeout=header_timeout if header_timeout is not None else DEFAULT_HEADER_TIMEOUT)
        for addr in self.config.bind_addresses("http") if port >= 0 else ():
            site = GuardedTCPSite(runner, addr, port, guard=self.http_guard, reuse_address=True, backlog=1024)
            await site.start()
        if https_port > 0 and https_ctx is not None:
            # the same app on 8501; the context is reloaded in place on SIGHUP
            for addr in self.config.bind_addresses("https"):
                site = GuardedTCPSite(runner, addr, https_port, guard=self.http_guard, ssl_context=https_ctx,
                                      reuse_address=True, backlog=1024)
                await site.start()
        self._runners.append(runner)

    async def _start_dns(self) -> None:
        """DNS on ports.dns (UDP and TCP; -1 disables), answered from the agent's cache (issue 15)."""
        self.dns = None
        if self.config.ports.dns < 0:
            return
        from lictor.agent.dns.config import dns_config_from_runtime
        from lictor.agent.dns.server import DNSServer

        acl = self.acl
        # a bad dns_config stops the start (ConfigError)
        dns_cfg = dataclasses.replace(dns_config_from_runtime(self.config), node_address=self.address)

        def token() -> str | None:  # read per question: tokens can be set at run time
            return (acl.tokens.get("dns") or acl.default_token()) if acl.enabled else None

        self.dns = DNSServer(dns_cfg, self.rpc, token)
        await self.dns.start(self.config.bind_addresses("dns"), self.config.ports.dns)

    async def stop(self) -> None:
        if getattr(self, "dns", None) is not None:
            await self.dns.stop()
        await self.membership.stop()
        if self.pool is not None:
            await self.pool.close()
        await cancel_and_wait(self._tasks)
        await self.registry.stop()
        if getattr(self, "xds", None) is not None:
            await self.xds.stop()
            await self.proxycfg.close()
        leafcerts = getattr(self, "leafcerts", None)
        if leafcerts is not None:
            await leafcerts.close()
        intentions = getattr(self, "intentions", None)  # /v1/agent/connect/authorize's watches
        if intentions is not None:
            await intentions.close()
        for r in self._runners:
            await r.cleanup()
        if self.audit is not None:
            await self.audit.close()
        if self.server is not None:
            await self.server.close()
        if self.cluster is not None:
            await self.cluster.close()
        log.info("agent stopped")

    async def leave(self) -> None:
        """Graceful leave, then shut down: the others see this node *left* (not failed) and the
        leader deregisters it. A server also leaves the Raft configuration, as Consul's
        ``Server.Leave``: it hands leadership over if it leads, leaves gossip (the leader then
        removes it, shrinking the quorum) and waits, bounded, until it is out."""
        self.left = True
        cluster = self.cluster
        if cluster is not None:
            sentence = await cluster.prepare_leave()
            log.info("leave: %s", sentence)
        await self.membership.leave()
        if cluster is not None:
            await cluster.wait_removed()
        if self.server is not None:
            self.server.trigger_reconcile()
            await asyncio.sleep(0)
        self.shutdown_requested.set()

    # ----- config and reload ----------------------------------------------------------------
    def _config_definitions(self, config: RuntimeConfig) -> tuple[list[ServiceDefinition], list[CheckDefinition]]:
        """The config files' service and check definitions, parsed and validated (nothing changes)."""
        defs = [parse_service_definition(i.data, where=f"{i.source}: {i.path}") for i in config.services]
        chks = [parse_check_definition(i.data, where=f"{i.source}: {i.path}") for i in config.checks]
        self.registry.validate_config_definitions(defs, chks, config=config)
        return defs, chks

    async def reload(self) -> list[str]:
        """Re-read the config sources; replace the services and checks that came from config files.

        The new config is validated completely before anything changes: a broken file leaves the
        running agent as it was and the error is raised to the caller. The swap itself runs with
        anti-entropy paused (``ServiceRegistry.replace_config_definitions``).
        """
        if self.source is None:
            return []
        result = load_config(self.source)
        new = result.config
        defs, chks = self._config_definitions(new)
        from lictor.agent.dns.config import dns_config_from_runtime

        # DNS settings apply on reload, as in Consul (checked here, before anything changes)
        dns_cfg = dataclasses.replace(dns_config_from_runtime(new), node_address=self.address)
        if self.tls is not None:  # certificates: new files into the live contexts (or ConfigError)
            for sentence in self.tls.reload(new.tls):
                log.info("%s", sentence)
        self.config = new
        await self.registry.replace_config_definitions(defs, chks, syncer=self.syncer)
        if getattr(self, "dns", None) is not None:
            self.dns.reload(dns_cfg)
        log.info("configuration reloaded: %d services, %d checks from config", len(defs), len(chks))
        return list(result.warnings)
