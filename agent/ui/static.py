"""Serves the UI's files: ``/`` redirects to the content path (as Consul does), and every path under
the content path is either an asset file or the single page (``index.html``), whose router reads
the URL fragment.

The files come from the installed package (``lictor/agent/ui/assets``) or from ``ui_config.dir``.
A request can only reach files inside that directory: the path is resolved and checked before it
is opened, and only regular files are served.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, route

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__ = ["ASSETS", "install"]

ASSETS = Path(__file__).resolve().parent / "assets"
_DISABLED = ("Lictor Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration "
             "and restart.")
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
          ".svg": "image/svg+xml", ".json": "application/json", ".ico": "image/x-icon", ".png": "image/png"}


def _enabled(agent: Agent) -> bool:
    return bool(getattr(agent.config, "ui_enabled", False))


def _content_path(agent: Agent) -> str:
    return str(getattr(agent.config, "ui_content_path", "") or "/ui/")


@route("GET", "/", acl=ACL("none", "read"))
async def root(req: web.Request, agent: Agent) -> web.StreamResponse:
    if not _enabled(agent):
        return web.Response(text=_DISABLED)
    raise web.HTTPMovedPermanently(_content_path(agent))


def _index(root: Path, content_path: str) -> web.Response:
    text = (root / "index.html").read_text(encoding="utf-8")
    # the page's <base href> makes every asset URL relative to wherever the UI is mounted
    text = text.replace("{{CONTENT_PATH}}", content_path)
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-cache"})


def install(app: web.Application, agent: Agent) -> None:
    """Add the UI's routes to ``app`` if the UI is enabled."""
    if not _enabled(agent):
        return
    prefix = _content_path(agent)
    root = Path(agent.config.ui_dir).resolve() if getattr(agent.config, "ui_dir", "") else ASSETS

    async def serve(req: web.Request) -> web.StreamResponse:
        tail = req.match_info.get("tail", "")
        if not tail or tail.endswith("/") or "." not in tail.rsplit("/", 1)[-1]:
            return _index(root, prefix)  # the page itself, for any route the client-side router owns
        path = (root / tail).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound(text="Not found")
        if path.name == "index.html":
            return _index(root, prefix)
        ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.Response(body=path.read_bytes(), content_type=ctype, headers={"Cache-Control": "no-cache"})

    async def redirect(req: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(prefix)

    app.router.add_route("GET", prefix.rstrip("/"), redirect)
    app.router.add_route("GET", prefix + "{tail:.*}", serve)
