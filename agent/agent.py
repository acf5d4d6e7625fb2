"""The agent's composition root: builds every component from the config and owns start/stop order.

::

    RuntimeConfig --> Agent
                      |-- Server (in -server / -dev mode): FSM + store + log + leader duties
                      |-- LocalState <-- CheckRunner (health checks report here)
                      |-- StateSyncer (anti-entropy) --rpc--> Server endpoints
                      |-- EventBuffer, LogBroadcaster (monitor), Metrics
                      `-- HTTP API (aiohttp) --rpc / local state--> the above

Start order: server, HTTP listeners (so ``/v1/status/leader`` answers at once), local services
and checks from the config, anti-entropy. Stop order is the reverse. ``rpc(name, args)`` is the one
way the agent asks a server anything: in-process today, over the network for client agents later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from aiohttp import web

from lictor import __version__
from lictor.agent.acl_cache import AgentACL, current_token
from lictor.agent.ae import StateSyncer
from lictor.agent.checkrunner import CheckRunner
from lictor.agent.events import EventBuffer
from lictor.agent.local.state import LocalState
from lictor.agent.membership import Membership
from lictor.agent.rpcclient import ServerPool
from lictor.agent.monitor import LogBroadcaster
from lictor.agent.audit import AuditLog
from lictor.common.config import ConfigSource, RuntimeConfig, load_config
from lictor.common.errors import ConfigError, NoLeaderError, NotFound, ValidationError
from lictor.common.servicedef import (CheckDefinition, ServiceDefinition, check_row_payload, expand_sidecar,
                                      parse_check_definition, parse_service_definition, service_row_payload)
from lictor.common.tls import TLSManager
from lictor.common.types import HealthStatus
from lictor.server import endpoints
from lictor.server.acl.config import configure as configure_acl
from lictor.server.acl.config import parse_acl_config
from lictor.server.cluster import AutopilotConfig, Cluster, ClusterConfig, read_raft_timing_env
from lictor.server.leader import Member
from lictor.server.members import left_servers
from lictor.server.server import Server, ServerConfig

__all__ = ["Agent"]

log = logging.getLogger("lictor.agent")

NODE_MAINT_CHECK_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
DEFAULT_MAINT_REASON = "Maintenance mode is enabled for this {what}, but no reason was provided. This is a default message."


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
        if self.address in ("0.0.0.0", "::", "") and not config.dev:
            self.address = _private_ip()  # clients too: gossip and the catalog need a real address
        if config.server and not config.dev:
            # Server mode: a Raft cluster member. -dev keeps the in-memory LocalLog (ready at once).
            if self.address in ("0.0.0.0", "::", ""):
                self.address = _private_ip()
            self.cluster = Cluster(cluster_config(config, self.address), tls=self.tls)
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
        self.local = LocalState(node_name=config.node_name, check_update_interval=config.check_update_interval)
        self.local.node_address = self.address
        self.local.node_id = config.node_id
        self.local.node_meta = dict(config.node_meta)
        self.local.tagged_addresses = {"lan": self.address, "lan_ipv4": self.address,
                                       "wan": self.address, "wan_ipv4": self.address}
        self.syncer = StateSyncer(local=self.local, rpc=self.rpc, datacenter=config.datacenter)
        self.local.on_change = self.syncer.trigger_changes
        self.checks = CheckRunner(self)
        self.events = EventBuffer()
        self.config_services: set[str] = set()
        self.config_checks: set[str] = set()
        self._runners: list[web.AppRunner] = []
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
                       meta=dict(self.config.node_meta))]

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
        await self._start_gossip()
        await self._start_xds()
        self._load_config_definitions(self.config)
        self._tasks.append(asyncio.get_running_loop().create_task(self.syncer.run(), name="anti-entropy"))
        self._tasks.append(asyncio.get_running_loop().create_task(self._reaper(), name="critical-reaper"))
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
                self._tasks.append(asyncio.get_running_loop().create_task(client.run(), name="auto-encrypt"))
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
            self._tasks.append(asyncio.get_running_loop().create_task(watcher.run(), name="auto-encrypt-roots"))

    async def _start_http(self) -> None:
        from lictor.agent.http.app import build_app

        port = self.config.ports.http
        https_port = self.config.ports.https
        https_ctx = self.tls.https_context if self.tls is not None else None
        if port < 0 and (https_port < 0 or https_ctx is None):
            return
        # Parked blocking queries would hold shutdown for up to their wait: give them 1 s.
        runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        for addr in self.config.bind_addresses("http") if port >= 0 else ():
            site = web.TCPSite(runner, addr, port, reuse_address=True, backlog=1024)
            await site.start()
        if https_port > 0 and https_ctx is not None:
            # the same app on 8501; the context is reloaded in place on SIGHUP
            for addr in self.config.bind_addresses("https"):
                site = web.TCPSite(runner, addr, https_port, ssl_context=https_ctx, reuse_address=True,
                                   backlog=1024)
                await site.start()
        self._runners.append(runner)

    async def stop(self) -> None:
        await self.membership.stop()
        if self.pool is not None:
            await self.pool.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self.checks.stop_all()
        if getattr(self, "xds", None) is not None:
            await self.xds.stop()
            await self.proxycfg.close()
        leafcerts = getattr(self, "leafcerts", None)
        if leafcerts is not None:
            await leafcerts.close()
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

    async def _reaper(self) -> None:
        """Deregister services whose checks stayed critical past deregister_critical_service_after."""
        while True:
            await asyncio.sleep(1.0)
            for sid in self.local.critical_services_to_reap():
                log.info("deregistering service %s: critical for longer than deregister_critical_service_after", sid)
                await self.remove_service(sid)

    # ----- services and checks --------------------------------------------------------------
    def _used_sidecar_ports(self) -> set[int]:
        return {int(p.get("port") or 0) for p in self.local.live_services().values()}

    async def register_service(self, defn: ServiceDefinition, *, token: str = "",
                               replace_existing_checks: bool = False, from_config: bool = False) -> None:
        """Add or replace a service (and its sidecar and checks) in the local state."""
        if defn.checks:
            for c in defn.checks:
                self._check_allowed(c, from_config=from_config)
        sidecar = expand_sidecar(defn, used_ports=self._used_sidecar_ports() - {self._port_of(defn.id)},
                                 node_address=self.address)
        services = [defn.without_sidecar() if sidecar is not None else defn]
        if sidecar is not None:
            services.append(sidecar)
        for svc in services:
            payload = service_row_payload(svc)
            existing = {cid for cid, c in self.local.live_checks().items() if c.get("service_id") == svc.id}
            self.local.add_service(payload, token=token)
            wanted = []
            for c in svc.checks:
                row = check_row_payload(c, service_id=svc.id)
                wanted.append(row["check_id"])
                await self._add_check(c, row, token=token)
            if replace_existing_checks:
                for cid in existing - set(wanted):
                    await self.remove_check(cid)
            if from_config:
                self.config_services.add(svc.id)

    def _port_of(self, sid: str) -> int:
        p = self.local.service(sid)
        return int(p.get("port") or 0) if p else 0

    def _check_allowed(self, c: CheckDefinition, *, from_config: bool) -> None:
        if c.type == "script":
            allowed = self.config.enable_script_checks or (from_config and self.config.enable_local_script_checks)
            if not allowed:
                raise ValidationError("Scheduling script checks is disabled: set enable_script_checks "
                                      "(or enable_local_script_checks for checks from config files)")

    async def register_check(self, c: CheckDefinition, *, token: str = "", from_config: bool = False) -> str:
        self._check_allowed(c, from_config=from_config)
        if c.service_id and self.local.service(c.service_id) is None:
            raise NotFound(f"ServiceID {c.service_id!r} does not exist")
        row = check_row_payload(c, service_id=c.service_id)
        await self._add_check(c, row, token=token)
        if from_config:
            self.config_checks.add(row["check_id"])
        return str(row["check_id"])

    async def _add_check(self, c: CheckDefinition, row: dict[str, Any], *, token: str) -> None:
        cid = row["check_id"]
        await self.checks.remove(cid)
        old = self.local.check(cid)
        if old is not None and c.type != "ttl":
            # keep the last known status across a re-registration, as Consul does
            row = {**row, "status": old.get("status", row["status"]), "output": old.get("output", "")}
        self.local.add_check(row, token=token, deregister_after=c.deregister_critical_service_after)
        self.checks.add(cid, c)

    async def remove_check(self, check_id: str) -> bool:
        await self.checks.remove(check_id)
        return self.local.remove_check(check_id)

    async def remove_service(self, service_id: str) -> bool:
        for cid, c in list(self.local.live_checks().items()):
            if c.get("service_id") == service_id:
                await self.checks.remove(cid)
        return self.local.remove_service(service_id)

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        if self.local.check(check_id) is None:
            raise NotFound(f"Unknown check ID {check_id!r}. Ensure that the check ID is passed, not the check name.")
        self.checks.ttl_update(check_id, status, output)

    # ----- maintenance ----------------------------------------------------------------------
    def enable_node_maintenance(self, reason: str) -> None:
        self.local.add_check({"check_id": NODE_MAINT_CHECK_ID, "name": "Node Maintenance Mode",
                              "notes": reason or DEFAULT_MAINT_REASON.format(what="node"),
                              "status": HealthStatus.CRITICAL.value,
                              "type": "maintenance", "output": "", "service_id": ""})

    def disable_node_maintenance(self) -> None:
        self.local.remove_check(NODE_MAINT_CHECK_ID)

    def enable_service_maintenance(self, service_id: str, reason: str) -> None:
        if self.local.service(service_id) is None:
            raise NotFound(f"No service registered with ID {service_id!r}")
        self.local.add_check({"check_id": SERVICE_MAINT_PREFIX + service_id, "name": "Service Maintenance Mode",
                              "notes": reason or DEFAULT_MAINT_REASON.format(what="service"),
                              "status": HealthStatus.CRITICAL.value, "type": "maintenance", "output": "",
                              "service_id": service_id})

    def disable_service_maintenance(self, service_id: str) -> None:
        if self.local.service(service_id) is None:
            raise NotFound(f"No service registered with ID {service_id!r}")
        self.local.remove_check(SERVICE_MAINT_PREFIX + service_id)

    # ----- config and reload ----------------------------------------------------------------
    def _load_config_definitions(self, config: RuntimeConfig) -> list[str]:
        """Register the services and checks of the config files; returns warnings."""
        warnings: list[str] = []
        loop = asyncio.get_running_loop()
        pending = []
        for item in config.services:
            defn = parse_service_definition(item.data, where=f"{item.source}: {item.path}")
            warnings += list(getattr(defn, "warnings", ()))
            pending.append(self.register_service(defn, token=defn.token or "", from_config=True))
        for item in config.checks:
            chk = parse_check_definition(item.data, where=f"{item.source}: {item.path}")
            pending.append(self.register_check(chk, from_config=True))
        for coro in pending:
            loop.create_task(coro)
        return warnings

    async def reload(self) -> list[str]:
        """Re-read the config sources; replace the services and checks that came from config files.

        The new config is validated completely before anything changes: a broken file leaves the
        running agent as it was and the error is raised to the caller.
        """
        if self.source is None:
            return []
        result = load_config(self.source)
        new = result.config
        # validate every definition before touching local state
        defs = [parse_service_definition(i.data, where=f"{i.source}: {i.path}") for i in new.services]
        chks = [parse_check_definition(i.data, where=f"{i.source}: {i.path}") for i in new.checks]
        if self.tls is not None:  # certificates: new files into the live contexts (or ConfigError)
            for sentence in self.tls.reload(new.tls):
                log.info("%s", sentence)
        for sid in list(self.config_services):
            await self.remove_service(sid)
        for cid in list(self.config_checks):
            await self.remove_check(cid)
        self.config_services.clear()
        self.config_checks.clear()
        self.config = new
        for d in defs:
            await self.register_service(d, token=d.token or "", from_config=True)
        for c in chks:
            await self.register_check(c, from_config=True)
        log.info("configuration reloaded: %d services, %d checks from config", len(defs), len(chks))
        return list(result.warnings)
