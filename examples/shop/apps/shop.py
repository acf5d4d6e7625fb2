"""The online shop's three services, one aiohttp app each (pick one with the first argument).

    shop.py booking   --port P --inventory 127.0.0.1:I --shipping 127.0.0.1:S
    shop.py inventory --port P
    shop.py shipping  --port P --version v1|v2

booking answers GET /api/v1/booking by asking inventory (GET /stock) and shipping (GET /quote)
through its sidecar's upstream ports. inventory fails with 500 while failing is switched on
(POST /admin/fail, POST /admin/recover), to trip the circuit breaker. Tracing headers are passed on.
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

TRACE_HEADERS = ("traceparent", "tracestate", "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                 "x-b3-sampled", "x-b3-flags", "b3")


def booking(args: argparse.Namespace) -> web.Application:
    app = web.Application()

    async def book(req: web.Request) -> web.Response:
        headers = {h: req.headers[h] for h in TRACE_HEADERS if h in req.headers}
        out: dict[str, object] = {"booking": "confirmed"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            for name, addr, path in (("inventory", args.inventory, "/stock"), ("shipping", args.shipping, "/quote")):
                try:
                    async with s.get(f"http://{addr}{path}", headers=headers) as r:
                        body = await r.text()
                        if r.status != 200:
                            return web.json_response({"booking": "failed", "failed": name, "status": r.status,
                                                      "detail": body[:200]}, status=503)
                        out[name] = await r.json(content_type=None)
                except aiohttp.ClientError as exc:
                    return web.json_response({"booking": "failed", "failed": name, "detail": str(exc)}, status=503)
        return web.json_response(out)

    app.router.add_get("/api/v1/booking", book)
    return app


def inventory(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    state = {"failing": False}

    async def stock(req: web.Request) -> web.Response:
        if state["failing"]:
            return web.json_response({"error": "inventory database down"}, status=500)
        return web.json_response({"item": "sofa", "stock": 7})

    async def fail(req: web.Request) -> web.Response:
        state["failing"] = True
        return web.json_response(state)

    async def recover(req: web.Request) -> web.Response:
        state["failing"] = False
        return web.json_response(state)

    app.router.add_get("/stock", stock)
    app.router.add_post("/admin/fail", fail)
    app.router.add_post("/admin/recover", recover)
    return app


def shipping(args: argparse.Namespace) -> web.Application:
    app = web.Application()

    async def quote(req: web.Request) -> web.Response:
        return web.json_response({"version": args.version, "price": 49 if args.version == "v1" else 39})

    app.router.add_get("/quote", quote)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("service", choices=["booking", "inventory", "shipping"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--inventory", default="")
    p.add_argument("--shipping", default="")
    p.add_argument("--version", default="v1")
    args = p.parse_args()
    app = {"booking": booking, "inventory": inventory, "shipping": shipping}[args.service](args)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
