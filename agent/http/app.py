"""Builds the aiohttp application from the route table.

Each route's handler is wrapped once: it receives the agent, and Lictor errors become Consul's
status codes and plain-text bodies via :func:`lictor.agent.http.errors.status_for`. The ACL
issue adds the authorizer here, in the same wrapper, reading ``route.acl``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ROUTES, Handler, Route
from lictor.agent.http.errors import status_for
from lictor.common.errors import LictorError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__ = ["build_app"]

log = logging.getLogger("lictor.http")


def _load_routes() -> None:
    from lictor.agent.http import (agent_endpoints, catalog, event, health, kv, misc,  # noqa: F401
                                   operator, session, snapshot, txn)
    from lictor.agent.http import connect_ca  # noqa: F401
    from lictor.agent.http import config_entries, discovery_chain, intentions, mesh_views  # noqa: F401


def _wrap(r: Route, agent: Agent) -> Handler:
    handler = r.handler

    async def wrapped(req: web.Request) -> web.StreamResponse:
        try:
            return await handler(req, agent)
        except LictorError as exc:
            return web.Response(status=status_for(exc), text=str(exc))
        except web.HTTPException:
            raise
        except Exception:
            log.exception("internal error in %s %s", req.method, req.path)
            return web.Response(status=500, text="Internal error")

    return wrapped  # type: ignore[return-value]


def build_app(agent: Agent) -> web.Application:
    _load_routes()
    app = web.Application(client_max_size=8 << 20)
    app["agent"] = agent
    for r in ROUTES:
        app.router.add_route(r.method, r.path, _wrap(r, agent))  # type: ignore[arg-type]
    return app
