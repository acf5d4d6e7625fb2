"""Builds the aiohttp application from the route table.

Each route's handler is wrapped once: it receives the agent, and Lictor errors become Consul's
status codes and plain-text bodies via :func:`lictor.agent.http.errors.status_for`. The ACL
issue adds the authorizer here, in the same wrapper, reading ``route.acl``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.audit import audited
from lictor.agent.acl_cache import current_token
from lictor.agent.http.acl_enforce import enforce
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
    from lictor.agent.http import acl  # noqa: F401
    from lictor.agent.http import cluster  # noqa: F401  (issue 4: gossip, coordinates, keyring)
    from lictor.agent.http import istio  # noqa: F401  (issue 14)


def _wrap(r: Route, agent: Agent) -> Handler:
    handler = r.handler

    async def wrapped(req: web.Request) -> web.StreamResponse:
        token_reset = None
        try:
            # ACLs: resolve the request's token, check the route's needs (403 naming the missing
            # permission), arm the list filter; the secret rides into agent.rpc via a ContextVar.
            if await enforce(r, req, agent) is not None:
                token_reset = current_token.set(req["lictor_acl_secret"])
            return await handler(req, agent)
        except LictorError as exc:
            return web.Response(status=status_for(exc), text=str(exc))
        except web.HTTPException:
            raise
        except Exception:
            log.exception("internal error in %s %s", req.method, req.path)
            return web.Response(status=500, text="Internal error")
        finally:
            if token_reset is not None:
                current_token.reset(token_reset)

    return wrapped  # type: ignore[return-value]


def build_app(agent: Agent) -> web.Application:
    _load_routes()
    app = web.Application(client_max_size=8 << 20)
    app["agent"] = agent
    for r in ROUTES:
        # outermost: the audit log records writes and denials after the ACL check + handler ran
        handler = _wrap(r, agent)
        if getattr(agent, "audit", None) is not None:  # set once at construction; off: no extra layer
            handler = audited(r.acl, agent, handler)
        app.router.add_route(r.method, r.path, handler)  # type: ignore[arg-type]
    return app
