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
from lictor.agent.http.acl_enforce import enforce, note_denial
from lictor.agent.http.base import DEFAULT_MAX_BODY, ROUTES, Handler, Route
from lictor.agent.http.errors import INTERNAL_ERROR_TEXT, status_for, text_for
from lictor.agent.ui.static import install as install_ui
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
    from lictor.agent.ui import api, static  # noqa: F401  (issue 15: /, the web UI's endpoints)
    from lictor.agent.http import prepared_query  # noqa: F401  (issue 15: /v1/query)


def _too_large(size: int | None, limit: int) -> web.Response:
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    resp = web.Response(status=413, text=f"Request body too large ({what}, limit {limit})")
    resp.force_close()  # do not read (or linger over) the rest of a body we refused
    return resp


async def _read_limited(req: web.Request, limit: int) -> bytes | None:
    """The whole body if it is at most ``limit`` bytes, else None as soon as it passes it.

    Read here, in the StreamReader's own small pieces, rather than by ``req.read()``: that raises
    the reader's buffer to the app's ``client_max_size`` and, once it refuses a body, lingers
    reading the rest; a stream of refused chunked bodies then grew RSS without bound.
    """
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await req.content.readany()
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)


def _wrap(r: Route, agent: Agent) -> Handler:
    handler = r.handler
    max_body = r.max_body if r.max_body is not None else DEFAULT_MAX_BODY

    async def wrapped(req: web.Request) -> web.StreamResponse:
        token_reset = None
        if req.body_exists:
            # Bounded before anything reads: a declared length over the route's limit is refused
            # unread; any other body is read here, up to the route's limit, and refused the moment
            # it passes it. Later ``req.read()`` calls (ACL checks, handlers) get these bytes.
            declared = req.content_length
            if declared is not None and declared > max_body:
                return _too_large(declared, max_body)
            raw = await _read_limited(req, max_body)
            if raw is None:
                return _too_large(None, max_body)
            req._read_bytes = raw  # aiohttp's cache of the body (read() returns it from now on)
        try:
            # ACLs: resolve the request's token, check the route's needs (403 naming the missing
            # permission), arm the list filter; the secret rides into agent.rpc via a ContextVar.
            if await enforce(r, req, agent) is not None:
                token_reset = current_token.set(req["lictor_acl_secret"])
            return await handler(req, agent)
        except LictorError as exc:
            note_denial(req, exc)  # a denial by the server's rules, for the audit log
            return web.Response(status=status_for(exc), text=text_for(exc))
        except web.HTTPException:
            raise
        except Exception:
            log.exception("internal error in %s %s", req.method, req.path)
            return web.Response(status=500, text=INTERNAL_ERROR_TEXT)
        finally:
            if token_reset is not None:
                current_token.reset(token_reset)

    return wrapped  # type: ignore[return-value]


def build_app(agent: Agent) -> web.Application:
    _load_routes()
    app = web.Application(client_max_size=DEFAULT_MAX_BODY)
    app["agent"] = agent
    for r in ROUTES:
        # outermost: the audit log records writes and denials after the ACL check + handler ran
        handler = _wrap(r, agent)
        if getattr(agent, "audit", None) is not None:  # set once at construction; off: no extra layer
            handler = audited(r.acl, agent, handler)
        app.router.add_route(r.method, r.path, handler)  # type: ignore[arg-type]
    install_ui(app, agent)  # the UI's files at ui_config.content_path, when the UI is enabled
    return app
