"""/v1/snapshot: GET saves a consistent snapshot archive, PUT restores one on every server.

The archive format is documented in :mod:`lictor.server.snapshot_archive` (Consul's gzip'd tar
with meta.json, state.bin and SHA256SUMS; our own state.bin). A snapshot holds every KV value
and session, so both directions need ``acl:write`` (Consul: a management token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, route
from lictor.common.errors import ValidationError
from lictor.server.snapshot_archive import MAX_ARCHIVE_BYTES

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


@route("GET", "/v1/snapshot", acl=ACL("acl", "write"))
async def snapshot_save(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Snapshot.Save", {"stale": opts.stale})
    return web.Response(body=out["result"], content_type="application/x-gzip",
                        headers={"X-Consul-Index": str(out.get("index", 0))})


@route("PUT", "/v1/snapshot", acl=ACL("acl", "write"), max_body=MAX_ARCHIVE_BYTES)
async def snapshot_restore(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    if req.content_length is not None and req.content_length > MAX_ARCHIVE_BYTES:
        raise ValidationError(f"Snapshot too large ({req.content_length} bytes, limit {MAX_ARCHIVE_BYTES})",
                              status=413)
    data = await req.read()
    if not data:
        raise ValidationError("Snapshot restore failed: the request body is empty")
    await agent.rpc("Snapshot.Restore", {"archive": data})
    return web.Response(status=200)
