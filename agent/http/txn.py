"""/v1/txn: atomic KV, node, service and check operations (Consul's Txn API)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, decode_json_body, json_response, route
from lictor.agent.http.catalog import parse_catalog_check, parse_catalog_service
from lictor.agent.http.decode import Fields, fields
from lictor.agent.http.kv import MAX_VALUE_SIZE
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

MAX_TXN_OPS = 128
KV_VERBS = {"set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock", "get", "get-tree",
            "check-index", "check-session", "check-not-exists"}
CATALOG_VERBS = {"set", "cas", "get", "delete", "delete-cas"}


def _verb(f: Fields, allowed: set[str], what: str, i: int) -> str:
    verb = f.str("Verb")
    if verb not in allowed:
        raise ValidationError(f"Operation {i}: unknown {what} verb {verb!r}")
    return verb


def _parse_op(i: int, op: Any) -> dict[str, Any]:
    f = fields(op, f"[{i}]")
    if (kv := f.obj("KV")) is not None:
        verb = _verb(kv, KV_VERBS, "KV", i)
        value = None
        if kv.has("Value"):
            try:
                value = base64.b64decode(kv.str("Value"), validate=True)
            except (binascii.Error, ValueError):
                raise ValidationError(f"Operation {i}: KV.Value must be base64") from None
            if len(value) > MAX_VALUE_SIZE:
                raise ValidationError(f"Operation {i}: value is too large ({len(value)} bytes, max "
                                      f"{MAX_VALUE_SIZE})", status=413)
        key = kv.str("Key")
        if not key and verb != "get-tree":  # get-tree "" reads every key; nothing else names none
            raise ValidationError(f"Operation {i}: KV.Key must not be empty for verb {verb!r}")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
            raise ValidationError(f"Operation {i}: invalid key {key!r}: control characters are not allowed")
        return {"kind": "kv", "verb": verb, "key": key, "value": value, "flags": kv.uint("Flags"),
                "index": kv.uint("Index"), "session": kv.str("Session")}
    if (n := f.obj("Node")) is not None:
        verb = _verb(n, CATALOG_VERBS, "node", i)
        node = n.obj("Node") or fields({}, "Node")
        return {"kind": "node", "verb": verb, "node": {
            "node": node.str("Node"), "id": node.str("ID"), "address": node.str("Address"),
            "datacenter": node.str("Datacenter"), "tagged_addresses": node.str_map("TaggedAddresses"),
            "meta": node.str_map("Meta"), "modify_index": node.uint("ModifyIndex")}}
    if (s := f.obj("Service")) is not None:
        verb = _verb(s, CATALOG_VERBS, "service", i)
        svc = s.obj("Service") or fields({}, "Service")
        if verb in ("get", "delete", "delete-cas"):
            parsed = {"id": svc.str("ID"), "service": svc.str("Service")}
        else:
            parsed = parse_catalog_service(svc)
        parsed["modify_index"] = svc.uint("ModifyIndex")
        return {"kind": "service", "verb": verb, "node": s.str("Node"), "service": parsed}
    if (c := f.obj("Check")) is not None:
        verb = _verb(c, CATALOG_VERBS, "check", i)
        chk = c.obj("Check") or fields({}, "Check")
        if verb in ("get", "delete", "delete-cas"):
            parsed = {"node": chk.str("Node"), "check_id": chk.str("CheckID")}
        else:
            parsed = parse_catalog_check(chk, chk.str("Node"))
        parsed["modify_index"] = chk.uint("ModifyIndex")
        return {"kind": "check", "verb": verb, "check": parsed}
    raise ValidationError(f"Operation {i}: must contain one of KV, Node, Service or Check")


@route("PUT", "/v1/txn", acl=ACL("key", "write"))
async def txn(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    if not isinstance(body, list):
        raise ValidationError("Request decode failed: the body must be a JSON list of operations")
    if len(body) > MAX_TXN_OPS:
        raise ValidationError(f"Transaction contains too many operations ({len(body)} > {MAX_TXN_OPS})",
                              status=413)
    ops = [_parse_op(i, op) for i, op in enumerate(body)]
    out = await agent.rpc("Txn.Apply", {"ops": ops, "stale": opts.stale, "consistent": opts.consistent})
    result = out["result"]
    meta = out if "index" in out else None
    return json_response(req, result, meta=meta, status=409 if result.get("Errors") else 200)
