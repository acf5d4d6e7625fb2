"""All of a proxy's Envoy resources from its snapshot: a pure function (no I/O, no clock, no
logger, no hidden inputs), so it is tested by golden files and by ``envoy --mode validate``."""

from __future__ import annotations

from dataclasses import replace

from google.protobuf.message import Message

from lictor.agent.proxycfg.snapshot import ConfigSnapshot
from lictor.agent.xds.clusters import clusters_from_snapshot
from lictor.agent.xds.common import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from lictor.agent.xds.endpoints import endpoints_from_snapshot
from lictor.agent.xds.listeners import listeners_from_snapshot
from lictor.agent.xds.routes import routes_from_snapshot
from lictor.agent.xds.secrets import secrets_from_snapshot

__all__ = ["Resources", "resources_from_snapshot"]

Resources = dict[str, dict[str, Message]]


def _without_endpoints(snap: ConfigSnapshot) -> ConfigSnapshot:
    return replace(snap, upstreams=tuple(replace(u, targets=tuple(replace(t, endpoints=()) for t in u.targets))
                                         for u in snap.upstreams))


def resources_from_snapshot(snap: ConfigSnapshot,
                            previous: tuple[ConfigSnapshot, Resources] | None = None) -> Resources:
    """``{type_url: {name: message}}`` for every xDS type this proxy uses.

    ``previous`` (the last snapshot and what this function made of it) lets a change of endpoints
    only -- the common case, a health change -- rebuild only the endpoints; the result is the same
    as without it. Returned messages may be shared between calls and proxies: never mutate them."""
    if previous is not None and _without_endpoints(previous[0]) == _without_endpoints(snap):
        out = dict(previous[1])
        out[ENDPOINT] = {e.cluster_name: e for e in endpoints_from_snapshot(snap)}
        return out
    return {
        SECRET: {s.name: s for s in secrets_from_snapshot(snap)},
        CLUSTER: {c.name: c for c in clusters_from_snapshot(snap)},
        ENDPOINT: {e.cluster_name: e for e in endpoints_from_snapshot(snap)},
        LISTENER: {lis.name: lis for lis in listeners_from_snapshot(snap)},
        ROUTE: {r.name: r for r in routes_from_snapshot(snap)},
    }
