"""The xDS server: Envoy's Aggregated Discovery Service (SotW and Delta) over grpc.aio, one
:class:`~lictor.agent.xds.stream.StreamState` per stream.

::

    Envoy --ADS stream--> first request: node.id = proxy id, metadata x-consul-token
        refuse: NOT_FOUND when the proxy is not registered on this agent,
                PERMISSION_DENIED when ACLs are on and the token lacks service:write on the
                proxy's destination service
        loop:   new snapshot (SnapshotCell)  -> resources_from_snapshot -> state.set_resources
                request from Envoy           -> state.on_request (ACK / NACK / subscription)
                after either                 -> send state.responses()

A NACK is logged with Envoy's error detail and counted; Envoy keeps its last good config.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from lictor.agent.proxycfg.state import ProxyGone, SnapshotCell
from lictor.agent.xds.resources import resources_from_snapshot
from lictor.agent.xds.stream import StreamState

__all__ = ["XDSServer", "ADSService"]

log = logging.getLogger("lictor.xds")


class ADSService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, manager: Any, acl: Any = None) -> None:
        self.manager = manager
        self.acl = acl
        self.streams = 0
        self.nacks = 0
        self.acks = 0
        self.pushes = 0
        self.refused = 0
        self.connected = 0  # streams open now
        self.push_seconds = 0.0  # snapshot arrival -> its responses handed to gRPC, summed
        self.push_count = 0
        self.push_max = 0.0

    async def StreamAggregatedResources(self, request_iterator: AsyncIterator[Any],  # noqa: N802
                                        context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for resp in self._serve(request_iterator, context, delta=False):
            yield resp

    async def DeltaAggregatedResources(self, request_iterator: AsyncIterator[Any],  # noqa: N802
                                       context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for resp in self._serve(request_iterator, context, delta=True):
            yield resp

    async def _authorize(self, context: grpc.aio.ServicerContext, proxy_id: str) -> SnapshotCell:
        cell = self.manager.cell(proxy_id)
        state = self.manager.get(proxy_id)
        if cell is None or state is None:
            self.refused += 1
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"proxy {proxy_id!r} is not registered on this agent")
        if self.acl is not None and self.acl.enabled:
            token = ""
            for k, v in context.invocation_metadata() or ():
                if k == "x-consul-token":
                    token = str(v)
            try:
                authz = await self.acl.resolve(token)
            except Exception as exc:  # noqa: BLE001 - an unknown token is refused like a weak one
                self.refused += 1
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"ACL not found: {type(exc).__name__}")
            if authz is not None and not authz.allowed("service", "write", state.service):
                self.refused += 1
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"Permission denied: token lacks service:write on {state.service!r}")
        return cell  # type: ignore[return-value]

    async def _serve(self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext, *,
                     delta: bool) -> AsyncIterator[Any]:
        it = request_iterator.__aiter__()
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            return
        proxy_id = first.node.id
        if not proxy_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node.id (the proxy id) is required")
        cell = await self._authorize(context, proxy_id)
        self.streams += 1
        self.connected += 1
        log.info("xds: %s stream opened for proxy %s", "delta" if delta else "sotw", proxy_id)
        state = StreamState(delta=delta)
        version = 0
        previous: Any = None
        pending: Any = first
        req_task: asyncio.Task[Any] | None = None
        snap_task: asyncio.Task[Any] = asyncio.ensure_future(cell.wait_newer(version))
        snap_at = 0.0
        try:
            while True:
                debug = log.isEnabledFor(logging.DEBUG)
                if pending is not None:
                    if debug:
                        log.debug("xds: %s request %s nonce=%r names=%s", proxy_id, pending.type_url.rsplit(".", 1)[-1],
                                  pending.response_nonce, list(getattr(pending, "resource_names", None) or
                                                               getattr(pending, "resource_names_subscribe", ())))
                    nack = state.on_request(pending)
                    if nack is not None:
                        self.nacks += 1
                        log.warning("xds: proxy %s rejected (NACK) %s version %s: %s", proxy_id,
                                    nack.type_url.rsplit(".", 1)[-1], nack.version, nack.message)
                    pending = None
                for resp in state.responses():
                    if debug:
                        log.debug("xds: %s push %s nonce=%s (%d resources)", proxy_id,
                                  resp.type_url.rsplit(".", 1)[-1], resp.nonce, len(resp.resources))
                    self.pushes += 1
                    yield resp
                if snap_at:
                    took = time.monotonic() - snap_at
                    self.push_seconds += took
                    self.push_count += 1
                    self.push_max = max(self.push_max, took)
                    snap_at = 0.0
                if req_task is None:
                    req_task = asyncio.ensure_future(it.__anext__())
                done, _ = await asyncio.wait({req_task, snap_task}, return_when=asyncio.FIRST_COMPLETED)
                if snap_task in done:
                    try:
                        version, snap = snap_task.result()
                        snap_at = time.monotonic()
                    except ProxyGone:
                        await context.abort(grpc.StatusCode.NOT_FOUND,
                                            f"proxy {proxy_id!r} was deregistered from this agent")
                    if self.acl is not None and self.acl.enabled:
                        await self._authorize(context, proxy_id)  # the token may have lost its rights
                    resources = resources_from_snapshot(snap, previous)
                    previous = (snap, resources)
                    state.set_resources(resources)
                    snap_task = asyncio.ensure_future(cell.wait_newer(version))
                if req_task in done:
                    try:
                        pending = req_task.result()
                    except StopAsyncIteration:
                        return
                    req_task = None
        finally:
            self.acks += state.acks  # (counted when the stream ends)
            self.connected -= 1
            for t in (req_task, snap_task):
                if t is not None:
                    t.cancel()
            log.info("xds: stream closed for proxy %s", proxy_id)

    def gauges(self) -> dict[str, float]:
        g = {"lictor.xds.streams_opened": float(self.streams), "lictor.xds.nacks": float(self.nacks),
             "lictor.xds.pushes": float(self.pushes), "lictor.xds.refused": float(self.refused),
             "lictor.xds.connected_proxies": float(self.connected),
             "lictor.xds.push_latency_seconds_sum": self.push_seconds,
             "lictor.xds.push_latency_seconds_count": float(self.push_count),
             "lictor.xds.push_latency_seconds_max": self.push_max}
        gauges = getattr(self.manager, "gauges", None)
        if gauges is not None:
            g.update(gauges())
        return g


def _bind(add: Any, host: str, port: int, *creds: Any) -> None:
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = add(addr, *creds)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for gRPC on {addr}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {addr}: address in use?")


class XDSServer:
    """The agent's gRPC server (ports.grpc, and ports.grpc_tls with ``tls.grpc``)."""

    def __init__(self, manager: Any, *, acl: Any = None) -> None:
        self.service = ADSService(manager, acl)
        self._server: grpc.aio.Server | None = None
        self.started = 0.0

    async def start(self, addresses: list[tuple[str, int]], tls: list[tuple[str, int, Any]] = ()) -> None:  # type: ignore[assignment]
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                          ("grpc.max_send_message_length", 64 << 20),
                                          ("grpc.so_reuseport", 0)])
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.service, server)
        for host, port in addresses:
            _bind(server.add_insecure_port, host, port)
        for host, port, creds in tls:
            _bind(server.add_secure_port, host, port, creds)
        await server.start()
        self._server = server
        self.started = time.time()

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
