"""Status.Leader and Status.Peers."""

from __future__ import annotations

from typing import Any

from lictor.server.endpoints import endpoint
from lictor.server.server import Server


@endpoint("Status.Leader")
async def leader(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    return {"result": server.log.leader() or ""}


@endpoint("Status.Peers")
async def peers(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    return {"result": server.log.peers()}
