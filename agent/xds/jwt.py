"""jwt-provider entries -> Envoy's ``jwt_authn`` HTTP filter (and a cluster per remote JWKS). Pure.

The filter only *verifies*: a token that is present but invalid (bad signature, wrong issuer or
audience, expired, ``alg: none``, JWKS unavailable) is refused with 401 by Envoy. Who may pass is
decided by the RBAC filter after it (agent/xds/rbac.py), which reads each provider's verified
payload from the dynamic metadata ``jwt_payload_<provider>`` (claims, ``iss``, ``sub``).

A missing token is refused with 401 too when no request can be allowed without one: every
intention of the destination carries an entry-level ``JWT`` requirement and the default is deny.
Otherwise a request without a token passes this filter and RBAC answers 403 where a JWT is needed.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2  # noqa: F401  (registers the type)

from lictor.agent.proxycfg.snapshot import ConfigSnapshot
from lictor.agent.xds.common import fmt_duration

__all__ = ["JWT_FILTER", "jwt_authn_filter", "jwks_clusters", "metadata_key", "referenced_providers"]

JWT_FILTER = "envoy.filters.http.jwt_authn"


def metadata_key(provider: str) -> str:
    return f"jwt_payload_{provider}"


def jwks_cluster_name(provider: str) -> str:
    return f"jwks_cluster_{provider}"


def referenced_providers(snap: ConfigSnapshot) -> list[str]:
    names: set[str] = set()
    for ix in snap.intentions:
        for p in (ix.jwt or {}).get("Providers") or []:
            names.add(str(p.get("Name", "")))
        for perm in ix.permissions:
            for p in (perm.get("JWT") or {}).get("Providers") or []:
                names.add(str(p.get("Name", "")))
    return sorted(n for n in names if n)


def _entries(snap: ConfigSnapshot) -> dict[str, dict[str, Any]]:
    want = set(referenced_providers(snap))
    return {name: json.loads(text) for name, text in snap.jwt_providers if name in want}


def _seconds(value: Any, default: float) -> float:
    if value in (None, "", 0):
        return default
    if isinstance(value, (int, float)):
        return float(value) / 1e9  # a decoded duration in nanoseconds
    text = str(value).strip()
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, mult in units:
        if text.endswith(suffix) and text[:-len(suffix)].replace(".", "", 1).isdigit():
            return float(text[:-len(suffix)]) * mult
    return default


def _provider(name: str, e: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {"payload_in_metadata": metadata_key(name)}
    if e.get("Issuer"):
        p["issuer"] = e["Issuer"]
    if e.get("Audiences"):
        p["audiences"] = list(e["Audiences"])
    ks = e.get("JSONWebKeySet") or {}
    if ks.get("Local"):
        local = ks["Local"]
        if local.get("JWKS"):
            p["local_jwks"] = {"inline_string": base64.b64decode(local["JWKS"]).decode()}
        else:
            p["local_jwks"] = {"filename": local["Filename"]}
    else:
        r = ks["Remote"]
        remote: dict[str, Any] = {"http_uri": {
            "uri": r["URI"], "cluster": jwks_cluster_name(name),
            "timeout": fmt_duration(max(int(r.get("RequestTimeoutMs") or 1000), 1) / 1000.0)}}
        if r.get("CacheDuration"):
            remote["cache_duration"] = fmt_duration(_seconds(r["CacheDuration"], 300.0))
        if r.get("FetchAsynchronously"):
            remote["async_fetch"] = {}
        rp = r.get("RetryPolicy") or {}
        if rp.get("NumRetries"):
            retry: dict[str, Any] = {"num_retries": int(rp["NumRetries"])}
            bo = rp.get("RetryPolicyBackOff") or {}
            if bo.get("BaseInterval"):
                retry["retry_back_off"] = {"base_interval": fmt_duration(_seconds(bo["BaseInterval"], 1.0))}
                if bo.get("MaxInterval"):
                    retry["retry_back_off"]["max_interval"] = fmt_duration(_seconds(bo["MaxInterval"], 10.0))
            remote["retry_policy"] = retry
        p["remote_jwks"] = remote
    headers, params, cookies = [], [], []
    forward = False
    for loc in e.get("Locations") or []:
        if loc.get("Header"):
            h = loc["Header"]
            item = {"name": h["Name"]}
            if h.get("ValuePrefix"):
                item["value_prefix"] = h["ValuePrefix"]
            headers.append(item)
            forward = forward or bool(h.get("Forward"))
        elif loc.get("QueryParam"):
            params.append(loc["QueryParam"]["Name"])
        elif loc.get("Cookie"):
            cookies.append(loc["Cookie"]["Name"])
    if headers:
        p["from_headers"] = headers
    if params:
        p["from_params"] = params
    if cookies:
        p["from_cookies"] = cookies
    if forward:
        p["forward"] = True
    fw = e.get("Forwarding") or {}
    if fw.get("HeaderName"):
        p["forward_payload_header"] = fw["HeaderName"]
        if fw.get("PadForwardPayloadHeader"):
            p["pad_forward_payload_header"] = True
    if e.get("ClockSkewSeconds"):
        p["clock_skew_seconds"] = int(e["ClockSkewSeconds"])
    if (e.get("CacheConfig") or {}).get("Size"):
        p["jwt_cache_config"] = {"jwt_cache_size": int(e["CacheConfig"]["Size"])}
    return p


def _strict(snap: ConfigSnapshot) -> bool:
    """No request can be allowed without a token: 401 for a missing one."""
    return (not snap.default_allow and bool(snap.intentions)
            and all((ix.jwt or {}).get("Providers") for ix in snap.intentions))


def jwt_authn_filter(snap: ConfigSnapshot) -> dict[str, Any] | None:
    entries = _entries(snap)
    if not entries:
        return None
    providers = {name: _provider(name, e) for name, e in sorted(entries.items())}
    reqs: list[dict[str, Any]] = [{"provider_name": n} for n in providers]
    if not _strict(snap):
        reqs.append({"allow_missing": {}})
    requires = reqs[0] if len(reqs) == 1 else {"requires_any": {"requirements": reqs}}
    return {"name": JWT_FILTER, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": providers, "rules": [{"match": {"prefix": "/"}, "requires": requires}]}}


def jwks_clusters(snap: ConfigSnapshot) -> list[dict[str, Any]]:
    """One cluster per remote JWKS URI the referenced providers fetch."""
    import ipaddress

    out = []
    for name, e in sorted(_entries(snap).items()):
        r = (e.get("JSONWebKeySet") or {}).get("Remote")
        if not r:
            continue
        u = urlsplit(r["URI"])
        host = u.hostname or ""
        port = u.port or (443 if u.scheme == "https" else 80)
        try:
            ipaddress.ip_address(host)
            kind = "STATIC"
        except ValueError:
            kind = "STRICT_DNS"
        cluster_cfg = r.get("JWKSCluster") or {}
        c: dict[str, Any] = {
            "name": jwks_cluster_name(name), "type": kind,
            "connect_timeout": fmt_duration(_seconds(cluster_cfg.get("ConnectTimeout"), 5.0)),
            "load_assignment": {"cluster_name": jwks_cluster_name(name), "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}
        if kind == "STRICT_DNS":
            c["dns_lookup_family"] = "V4_PREFERRED"
        if u.scheme == "https":
            tls: dict[str, Any] = {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}
            ca = (cluster_cfg.get("TLSCertificates") or {}).get("TrustedCA") or {}
            if ca.get("Filename"):
                tls["common_tls_context"] = {"validation_context": {"trusted_ca": {"filename": ca["Filename"]}}}
            elif ca.get("InlineString"):
                tls["common_tls_context"] = {"validation_context": {"trusted_ca": {
                    "inline_string": ca["InlineString"]}}}
            if r.get("UseSNI"):
                tls["sni"] = host
            c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
        out.append(c)
    return out
