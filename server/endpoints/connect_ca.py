"""ConnectCA.* endpoints: roots and configuration (blocking reads), configuration writes with
rotation, and leaf signing (leader only; leaves are never written to Raft).

``ConnectCA.Sign`` args: ``csr`` (PEM), ``service`` (the service the caller is allowed to sign
for: the agent passes the service whose leaf it is fetching), ``token`` (for the ACL hook).
Order of work: leader check -> rate limit -> ACL hook -> CSR validation -> serial -> sign.
"""

from __future__ import annotations

import time
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import Conflict, NotLeaderError, NoLeaderError, ValidationError
from lictor.server.connect import ca, leader, state
from lictor.server.connect.state import CAConfig, config_from_api, config_to_api, config_to_payload
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

__all__: list[str] = []


@endpoint("ConnectCA.Roots")
async def roots(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = state.ca_roots(store, ws)
        return idx, state.roots_to_api(store, rows)
    return await blocking_read(server, a, q)


@endpoint("ConnectCA.ConfigurationGet")
async def configuration_get(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, cfg = state.ca_config(store, ws)
        return idx, (config_to_api(cfg) if cfg is not None else None)
    return await blocking_read(server, a, q)


@endpoint("ConnectCA.ApplyConfiguration", write=True)
async def configuration_set(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Args: ``config`` (the API body), optional ``rotate`` (bool: make a new root even if the key
    type is unchanged). A key type/size change always rotates. Returns ``{"result": bool,
    "rotated_to": root ID or ""}``."""
    if not server.log.is_leader():
        raise NotLeaderError(server.log.leader())
    cur: CAConfig | None = server.store.ext["ca_config"].get("config")
    if cur is None:
        raise Conflict("CA is not initialized yet")
    body = a.get("config") or {}
    cfg = config_from_api(body, current=cur)
    if a.get("rotate") or cfg.needs_new_root(cur):
        new_id = await leader.rotate(server, cfg)
        return {"result": True, "rotated_to": new_id}
    ok = await server.apply(MessageType.CONNECT_CA, {"op": "set_config", "config": config_to_payload(cfg)})
    return {"result": bool(ok), "rotated_to": ""}


@endpoint("ConnectCA.Sign", write=True)
async def sign(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    if not server.log.is_leader():
        leader_addr = server.log.leader()
        raise NotLeaderError(leader_addr) if leader_addr else NoLeaderError()
    store = server.store
    cfg: CAConfig | None = store.ext["ca_config"].get("config")
    root = state.active_root(store)
    if cfg is None or root is None:
        raise Conflict("CA is not initialized yet")
    mgr = leader.manager_for(server)
    mgr.admit(cfg)
    mgr.in_flight += 1
    try:
        service = a.get("service") or ""
        if not isinstance(service, str) or not service:
            raise ValidationError("service: the service to sign for is required")
        server.sign_authorizer(server, str(a.get("token") or ""), service)
        csr_pem = a.get("csr")
        if not isinstance(csr_pem, str | bytes) or not csr_pem:
            raise ValidationError("csr: a PEM certificate signing request is required")
        try:
            csr = ca.load_csr(csr_pem if isinstance(csr_pem, str) else csr_pem.decode("ascii", "replace"))
            sid, dns = ca.validate_csr(csr, trust_domain=state.trust_domain(cfg.cluster_id),
                                       datacenter=server.config.datacenter, service=service)
        except ca.CSRError as exc:
            raise ValidationError(str(exc)) from None
        (serial,) = await mgr.next_serials(1)
        store = server.store  # a reservation may have crossed a restore
        root = state.active_root(store)
        if root is None:
            raise Conflict("CA is not initialized yet")
        leaf = mgr.signer.sign(store, root, csr, sid=sid, dns_names=dns, serial=serial, now=time.time(),
                               ttl=cfg.leaf_cert_ttl)
    finally:
        mgr.in_flight -= 1
    # the chain a peer needs to reach either root: the leaf, then the active root's intermediates
    pem = leaf.cert_pem + "".join(p if p.endswith("\n") else p + "\n" for p in root.intermediate_certs)
    idx = store.index("ca_roots")
    return {"result": {
        "SerialNumber": ca.serial_hex(leaf.serial), "CertPEM": pem, "Service": leaf.service,
        "ServiceURI": leaf.uri, "ValidAfter": _rfc3339(leaf.valid_after), "ValidBefore": _rfc3339(leaf.valid_before),
        "RootID": leaf.root_id, "CreateIndex": idx, "ModifyIndex": idx}}


def _rfc3339(t: Any) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
