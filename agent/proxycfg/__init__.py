"""proxycfg: everything one local Envoy needs, gathered into an immutable ConfigSnapshot.

::

    LocalState (connect-proxy registrations)
        |  Manager.sync(): one ProxyState per local proxy (started/stopped with the registration)
        v
    ProxyState --watches (correlation ids)--> AgentCache (one blocking query per distinct request,
        |                                     shared by every proxy of this agent)
        |   roots, leaf            LeafCertManager (agent/leafcert.py)
        |   intentions             Intention.Match by destination
        |   mesh                   ConfigEntry.Get mesh/mesh
        |   chain:<svc>            DiscoveryChain.Get (own service: protocol; upstreams: targets)
        |   health:<target>        Health.ServiceNodes connect=true for each chain target
        v
    handle_update() -> builder; once builder.valid(): a new frozen ConfigSnapshot, coalesced
        v
    ProxyState.snapshots (a "latest value" cell) --> xDS streams (agent/xds/server.py)

Invariants: a snapshot is only emitted when complete (leaf, roots, every upstream's chain and
its targets' endpoints known); equal inputs give an equal snapshot (the xDS layer sends nothing
for it); the snapshot holds only immutable values (tuples, frozen dataclasses, strings).
"""

from lictor.agent.proxycfg.snapshot import ConfigSnapshot, Endpoint, Target, Upstream

__all__ = ["ConfigSnapshot", "Endpoint", "Target", "Upstream"]
