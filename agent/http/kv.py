"""/v1/kv/*: get (recurse, keys, separator, raw), put (flags, cas, acquire, release), delete."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, json_response, meta_headers, route
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

MAX_VALUE_SIZE = 512 * 1024  # Consul's kv_max_value_size default


def _key(req: web.Request) -> str:
    key = req.match_info.get("key", "")
    for ch in key:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ValidationError(f"Invalid key {key!r}: control characters are not allowed")
    return key


def _uint(req: web.Request, name: str) -> int:
    raw = req.query.get(name, "")
    try:
        v = int(raw)
    except ValueError:
        raise ValidationError(f"Invalid {name} {raw!r}: expected an unsigned integer") from None
    if v < 0 or v > 0xFFFFFFFFFFFFFFFF:
        raise ValidationError(f"Invalid {name} {raw!r}: expected an unsigned integer")
    return v


@route("GET", "/v1/kv/{key:.*}", acl=ACL("key", "read", "key"))
async def kv_get(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    key = _key(req)
    q = req.query
    if "keys" in q:
        out = await agent.rpc("KVS.ListKeys", blocking_args(opts, prefix=key, separator=q.get("separator", "")))
        return json_response(req, out["result"], meta=out, shared=True)
    if "recurse" in q:
        out = await agent.rpc("KVS.List", blocking_args(opts, key=key))
        if not out["result"]:
            return web.Response(status=404, headers=meta_headers(out))
        return json_response(req, out["result"], meta=out, shared=True)
    if not key:
        raise ValidationError("Missing key name")
    out = await agent.rpc("KVS.Get", blocking_args(opts, key=key))
    entry = out["result"]
    if entry is None:
        return web.Response(status=404, headers=meta_headers(out))
    if "raw" in q:
        value = base64.b64decode(entry["Value"]) if entry["Value"] is not None else b""
        return web.Response(body=value, headers=meta_headers(out), content_type="application/octet-stream")
    return json_response(req, [entry], meta=out)


@route("PUT", "/v1/kv/{key:.*}", acl=ACL("key", "write", "key"), max_body=MAX_VALUE_SIZE)
async def kv_put(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    key = _key(req)
    if not key:
        raise ValidationError("Missing key name")
    if req.content_length is not None and req.content_length > MAX_VALUE_SIZE:
        raise ValidationError(
            f"Request body({req.content_length} bytes) too large, max size: {MAX_VALUE_SIZE} bytes", status=413)
    value = await req.read()
    if len(value) > MAX_VALUE_SIZE:
        raise ValidationError(f"Request body({len(value)} bytes) too large, max size: {MAX_VALUE_SIZE} bytes",
                              status=413)
    q = req.query
    args: dict[str, object] = {"op": "set", "key": key, "value": value,
                               "flags": _uint(req, "flags") if "flags" in q else 0}
    present = [n for n in ("cas", "acquire", "release") if n in q]
    if len(present) > 1:
        raise ValidationError(f"Conflicting flags: {', '.join('?' + n for n in present)} cannot be combined")
    if "cas" in q:
        args["op"], args["cas"] = "cas", _uint(req, "cas")
    elif "acquire" in q:
        if not q["acquire"]:
            raise ValidationError("Missing session ID for ?acquire")
        args["op"], args["session"] = "lock", q["acquire"]
    elif "release" in q:
        if not q["release"]:
            raise ValidationError("Missing session ID for ?release")
        args["op"], args["session"] = "unlock", q["release"]
    out = await agent.rpc("KVS.Apply", args)
    return json_response(req, bool(out["result"]))


@route("DELETE", "/v1/kv/{key:.*}", acl=ACL("key", "write", "key"))
async def kv_delete(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    key = _key(req)
    q = req.query
    if "recurse" in q:
        args: dict[str, object] = {"op": "delete-tree", "key": key}
    else:
        if not key:
            raise ValidationError("Missing key name")
        args = {"op": "delete", "key": key}
        if "cas" in q:
            args = {"op": "delete-cas", "key": key, "cas": _uint(req, "cas")}
    out = await agent.rpc("KVS.Apply", args)
    return json_response(req, bool(out["result"]))
