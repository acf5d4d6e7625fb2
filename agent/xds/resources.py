"""All of a proxy's Envoy resources from its snapshot: a pure function (no I/O, no clock, no
logger, no hidden inputs), so it is tested by golden files and by ``envoy --mode validate``."""

from __future__ import annotations

from dataclasses import fields

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from lictor.agent.proxycfg.snapshot import ConfigSnapshot, Target, Upstream
from lictor.agent.xds.clusters import clusters_from_snapshot
from lictor.agent.xds.common import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, parse
from lictor.agent.xds.endpoints import endpoints_from_snapshot
from lictor.agent.xds.jwt import jwks_clusters
from lictor.agent.xds.tracing import tracing_clusters
from lictor.agent.xds.listeners import listeners_from_snapshot
from lictor.agent.xds.routes import routes_from_snapshot
from lictor.agent.xds.secrets import secrets_from_snapshot

__all__ = ["Resources", "resources_from_snapshot"]

Resources = dict[str, dict[str, Message]]


_SNAP_FIELDS = tuple(f.name for f in fields(ConfigSnapshot) if f.name != "upstreams")
_UP_FIELDS = tuple(f.name for f in fields(Upstream) if f.name != "targets")
_TARGET_FIELDS = tuple(f.name for f in fields(Target) if f.name != "endpoints")


def _same_but_endpoints(a: ConfigSnapshot, b: ConfigSnapshot) -> bool:
    """Do two snapshots differ at most in their targets' endpoints? (the hot path of a health
    change: field by field, so shared values compare by identity first)"""
    if any(getattr(a, n) != getattr(b, n) for n in _SNAP_FIELDS) or len(a.upstreams) != len(b.upstreams):
        return False
    for ua, ub in zip(a.upstreams, b.upstreams):
        if any(getattr(ua, n) != getattr(ub, n) for n in _UP_FIELDS) or len(ua.targets) != len(ub.targets):
            return False
        for ta, tb in zip(ua.targets, ub.targets):
            if any(getattr(ta, n) != getattr(tb, n) for n in _TARGET_FIELDS):
                return False
    return True


def resources_from_snapshot(snap: ConfigSnapshot,
                            previous: tuple[ConfigSnapshot, Resources] | None = None) -> Resources:
    """``{type_url: {name: message}}`` for every xDS type this proxy uses.

    ``previous`` (the last snapshot and what this function made of it) lets a change of endpoints
    only -- the common case, a health change -- rebuild only the endpoints; the result is the same
    as without it. Returned messages may be shared between calls and proxies: never mutate them."""
    if previous is not None and _same_but_endpoints(previous[0], snap):
        out = dict(previous[1])
        out[ENDPOINT] = {e.cluster_name: e for e in endpoints_from_snapshot(snap)}
        return out
    return {
        SECRET: {s.name: s for s in secrets_from_snapshot(snap)},
        CLUSTER: {c.name: c for c in [*clusters_from_snapshot(snap),
                                     *(parse(cluster_pb2.Cluster, c) for c in [*jwks_clusters(snap), *tracing_clusters(snap)])]},
        ENDPOINT: {e.cluster_name: e for e in endpoints_from_snapshot(snap)},
        LISTENER: {lis.name: lis for lis in listeners_from_snapshot(snap)},
        ROUTE: {r.name: r for r in routes_from_snapshot(snap)},
    }
