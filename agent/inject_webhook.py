"""The HTTPS server of ``lictor connect inject``: a thin shell around :func:`lictor.agent.inject.review`.

Routes (deploy/k8s/injector.yaml's MutatingWebhookConfiguration points at them):

* ``POST /mutate`` - pods of namespaces *not* labelled ``lictor-injection=enabled``: injected only
  when annotated ``lictor.io/connect-inject: "true"``;
* ``POST /mutate/namespace-enabled`` - pods of labelled namespaces (the API server matched the
  label): injected unless annotated ``"false"``;
* ``GET /healthz`` - readiness.

Bodies are refused by their declared length above ``MAX_BODY`` before they are read. Every
request gets an AdmissionReview back (status 200), whatever it held.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from lictor.agent.inject import InjectConfig, allow_unchanged, review

__all__ = ["MAX_BODY", "build_app", "serve"]

log = logging.getLogger("lictor.inject")

#: the API server's own limit for a request body is 3 MiB; an AdmissionReview carries the object
#: twice at most (object, oldObject)
MAX_BODY = 8 * 1024 * 1024


def build_app(config: InjectConfig) -> web.Application:
    async def mutate(request: web.Request, *, namespace_enabled: bool) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            msg = f"not injected: request body of {request.content_length} bytes exceeds {MAX_BODY}"
            return web.json_response(allow_unchanged("", msg))
        body = await request.read()
        answer = review(body, config, namespace_enabled=namespace_enabled)
        resp = answer["response"]
        log.info("admission %s: %s", resp.get("uid") or "-", resp["status"]["message"])
        return web.json_response(answer)

    async def mutate_opt_in(request: web.Request) -> web.Response:
        return await mutate(request, namespace_enabled=False)

    async def mutate_namespace(request: web.Request) -> web.Response:
        return await mutate(request, namespace_enabled=True)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/mutate", mutate_opt_in)
    app.router.add_post("/mutate/namespace-enabled", mutate_namespace)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(config: InjectConfig, *, host: str, port: int, ssl_context: ssl.SSLContext | None,
                stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    runner = web.AppRunner(build_app(config), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        log.info("injector listening on %s:%d (%s)", host, port, "https" if ssl_context else "http")
        await stop.wait()
    finally:
        await runner.cleanup()
