"""Intention.* endpoints: intentions as the sources of service-intentions config entries.

``Intention.Apply`` with ``op`` "upsert" or "delete" addresses one intention by its exact source
and destination (Consul's ``/v1/connect/intentions/exact``); the FSM edits the destination's
service-intentions entry atomically (no read-modify-write race between two writers).
"""

from __future__ import annotations

from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import ValidationError
from lictor.server.acl.config import acl_config
from lictor.server.configentry.entries import MESH, SERVICE_INTENTIONS, TABLE, StoreView
from lictor.server.configentry.intentions import (all_intentions, default_allow, intention_decision,
                                                  intention_to_api, intentions_of_entry, match_intentions,
                                                  parse_service_ref, remove_source, source_from_api,
                                                  upsert_source)
from lictor.server.configentry.validate import validate_delete, validate_entry
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read, make_filter
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

_WATCH = ("intentions", f"{TABLE}.{MESH}")


def _default(server: Server, store: Store) -> bool:
    """The default policy for a pair no intention matches: the ACL default policy when ACLs are
    enabled (else allow), turned to deny by the mesh entry or the server's setting."""
    acl = acl_config(server)
    return default_allow(store, acl_enabled=acl is not None,
                         acl_default_policy=acl.default_policy if acl is not None else "allow",
                         config_default=getattr(server.config, "default_intention_policy", "") or "")


@endpoint("Intention.List")
async def list_(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, None)

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, "intentions")
        return store.index("intentions"), filtered([intention_to_api(ix) for ix in all_intentions(store)])
    return await blocking_read(server, a, q, shared="Intention.List")


@endpoint("Intention.Get")
async def get(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    sns, src = parse_service_ref(a.get("source", ""), "source")
    dns, dst = parse_service_ref(a.get("destination", ""), "destination")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, "intentions")
        found = next((ix for ix in all_intentions(store) if (ix.source_ns, ix.source_name, ix.destination_ns,
                                                              ix.destination_name) == (sns, src, dns, dst)), None)
        return store.index("intentions"), (intention_to_api(found) if found else None)
    return await blocking_read(server, a, q)


@endpoint("Intention.Apply", write=True)
async def apply(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    sns, src = parse_service_ref(a.get("source", ""), "source")
    dns, dst = parse_service_ref(a.get("destination", ""), "destination")
    view = StoreView(server.store)
    dc = server.config.datacenter
    op = a.get("op")
    if op == "upsert":
        source = source_from_api(a.get("intention") or {}, source_ns=sns, source_name=src)
        body = upsert_source(view.get(SERVICE_INTENTIONS, dst, dns), dns, dst, source)
        validate_entry(body, view, datacenter=dc)  # the FSM repeats this on its own state
        payload = {"op": "intention-upsert", "destination": dst, "destination_ns": dns, "source": source,
                   "datacenter": dc}
    elif op == "delete":
        entry = view.get(SERVICE_INTENTIONS, dst, dns)
        if entry is not None:
            after = remove_source(entry, sns, src)
            if after is None:
                validate_delete(SERVICE_INTENTIONS, dst, view, namespace=dns, datacenter=dc)
            else:
                validate_entry(after, view, datacenter=dc)
        payload = {"op": "intention-delete", "destination": dst, "destination_ns": dns, "source": src,
                   "source_ns": sns, "datacenter": dc}
    else:
        raise ValidationError(f"Invalid intention operation {op!r}")
    return {"result": bool(await server.apply(MessageType.CONFIG_ENTRY, payload))}


@endpoint("Intention.Match")
async def match(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    by = a.get("by", "")
    if by not in ("source", "destination"):
        raise ValidationError(f"Invalid 'by' value {by!r}: must be source or destination")
    names = list(a.get("names") or [])
    if not names:
        raise ValidationError("Missing 'name' to match")
    refs = [(n, *parse_service_ref(n, "name")) for n in names]

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, "intentions")
        ixs = all_intentions(store)
        return store.index("intentions"), {text: [intention_to_api(ix) for ix in match_intentions(ixs, by, ns, name)]
                                           for text, ns, name in refs}
    return await blocking_read(server, a, q)


@endpoint("Intention.Check")
async def check(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    sns, src = parse_service_ref(a.get("source", ""), "source")
    dns, dst = parse_service_ref(a.get("destination", ""), "destination")
    if a.get("source_type", "consul") not in ("", "consul"):
        raise ValidationError(f"Invalid source-type {a.get('source_type')!r}: only consul is supported")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, *_WATCH)
        d = intention_decision(store, src, dst, source_ns=sns, destination_ns=dns, default=_default(server, store))
        return store.index(*_WATCH), {"Allowed": d.allowed, "Reason": d.reason}
    return await blocking_read(server, a, q)


@endpoint("Intention.DestinationView")
async def destination_view(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """What an agent needs to decide ``/v1/agent/connect/authorize`` for one destination on its
    own (Consul's IntentionMatch cache): the service-intentions entries with an intention that
    applies to the destination (its own and wildcard ones), and the default policy. Blocking on
    intentions and the mesh entry, so an agent's watch sees every change."""
    dns, dst = parse_service_ref(a.get("destination", ""), "destination")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, *_WATCH)
        entries = [body for body in StoreView(store).list(SERVICE_INTENTIONS)
                   if match_intentions(intentions_of_entry(body), "destination", dns, dst)]
        return store.index(*_WATCH), {"Entries": entries, "DefaultAllow": _default(server, store),
                                      "ACLsEnabled": _acls_enabled(server)}
    return await blocking_read(server, a, q)


def _acls_enabled(server: Server) -> bool:
    return acl_config(server) is not None
