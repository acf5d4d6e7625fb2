"""Render a proxy's xDS resources into one static Envoy bootstrap (for ``envoy --mode validate``
and for debugging): EDS clusters get their load assignment inline, RDS route configurations are
inlined into their listeners, and SDS references point at static secrets. Pure."""

from __future__ import annotations

import copy
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from lictor.agent.xds.common import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

__all__ = ["static_bootstrap", "to_dict"]


def to_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _strip_sds(node: Any) -> None:
    """SDS references without ``sds_config`` name static secrets."""
    if isinstance(node, dict):
        for key in ("tls_certificate_sds_secret_configs",):
            for ref in node.get(key, []) or []:
                ref.pop("sds_config", None)
        ref = node.get("validation_context_sds_secret_config")
        if isinstance(ref, dict):
            ref.pop("sds_config", None)
        for v in node.values():
            _strip_sds(v)
    elif isinstance(node, list):
        for v in node:
            _strip_sds(v)


def _inline_rds(node: Any, routes: dict[str, dict[str, Any]]) -> None:
    if isinstance(node, dict):
        rds = node.get("rds")
        if isinstance(rds, dict) and "route_config_name" in rds:
            node.pop("rds")
            node["route_config"] = routes[rds["route_config_name"]]
        for v in node.values():
            _inline_rds(v, routes)
    elif isinstance(node, list):
        for v in node:
            _inline_rds(v, routes)


def static_bootstrap(resources: dict[str, dict[str, Message]], *, node_id: str = "validate",
                     cluster: str = "validate", admin_port: int = 0) -> dict[str, Any]:
    cla = {name: to_dict(m) for name, m in resources.get(ENDPOINT, {}).items()}
    routes = {name: to_dict(m) for name, m in resources.get(ROUTE, {}).items()}
    clusters = []
    for m in resources.get(CLUSTER, {}).values():
        c = to_dict(m)
        if c.get("type") == "EDS":
            c.pop("eds_cluster_config", None)
            c["type"] = "STATIC"
            c["load_assignment"] = copy.deepcopy(cla.get(c["name"], {"cluster_name": c["name"]}))
        clusters.append(c)
    listeners = [to_dict(m) for m in resources.get(LISTENER, {}).values()]
    _inline_rds(listeners, routes)
    secrets = [to_dict(m) for m in resources.get(SECRET, {}).values()]
    out: dict[str, Any] = {
        "node": {"id": node_id, "cluster": cluster},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"clusters": clusters, "listeners": listeners, "secrets": secrets},
    }
    _strip_sds(out)
    return out
