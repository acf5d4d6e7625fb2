"""Leader-side membership policy: what the catalog should say about each gossip member.

The leader's loop (server/server.py) calls ``reconcile_members(store, members, datacenter)``
(server/leader.py) with the list this module builds from the local agent's gossip view
(:class:`lictor.agent.membership.Membership` records):

========================  ================================================================
gossip says               catalog gets
========================  ================================================================
alive (suspect included)  node + ``serfHealth`` passing (+ the ``consul`` service on a server)
failed                    ``serfHealth`` critical: the node's services fail ``?passing`` too
left (graceful, or        node deregistered (services and checks with it)
force-leave)
reaped (failed longer     node deregistered; remembered for a while so a new leader does too
than reconnect_timeout)
========================  ================================================================

A *server* that left gracefully (or was force-left) also leaves the Raft configuration: the
leader's autopilot (``decide_autopilot`` in server/cluster/autopilot.py) removes the servers
:func:`left_servers` names, as Consul's ``handleLeftMember`` does. A failed or reaped server stays
in the configuration here; autopilot's dead-server cleanup decides about it with its own rules.

Node metadata is the agent's (anti-entropy writes it); reconciliation keeps whatever the
catalog has, so the two never fight. Every server runs gossip, so whichever becomes leader has
its own view; failed and left members are kept by the agent (the SWIM core forgets them after
``gossip_to_the_dead_time``) until ``reconnect_timeout`` (72 h by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from lictor.server.leader import Member
from lictor.server.state.store import Store

__all__ = ["GossipRecord", "left_servers", "members_for_reconcile"]


class GossipRecord(Protocol):
    name: str
    host: str
    status: str
    tags: dict[str, str]


def members_for_reconcile(store: Store, records: Iterable[GossipRecord], reaped: Iterable[str], *,
                          local_name: str = "", local_meta: Mapping[str, str] | None = None) -> list[Member]:
    """The member list for ``reconcile_members``: one entry per known member, reaped ones as
    left. ``local_meta`` is used for this server's own node before anti-entropy wrote it."""
    out: list[Member] = []
    seen: set[str] = set()
    for r in records:
        seen.add(r.name)
        node = store.nodes.get(r.name)
        if node is not None:
            meta: dict[str, Any] = dict(node.meta)
        elif r.name == local_name and local_meta is not None:
            meta = dict(local_meta)
        else:
            meta = {}
        status = r.status if r.status in ("alive", "failed", "left") else "alive"
        port = r.tags.get("port", "") if r.tags.get("role") == "consul" else ""
        out.append(Member(name=r.name, address=r.host, status=status, node_id=r.tags.get("id", ""),
                          meta=meta, server_port=int(port) if port.isdigit() else None))
    for name in reaped:
        if name not in seen:
            out.append(Member(name=name, address="", status="left"))
    return out


def left_servers(records: Iterable[GossipRecord], *, datacenter: str) -> frozenset[str]:
    """Node ids of the servers of `datacenter` that gossip reports as *left* (a graceful leave
    or a force-leave): the leader takes them out of the Raft configuration. Failed servers are
    never here."""
    return frozenset(r.tags.get("id", "") for r in records
                     if r.status == "left" and r.tags.get("role") == "consul"
                     and r.tags.get("dc") == datacenter and r.tags.get("id"))
