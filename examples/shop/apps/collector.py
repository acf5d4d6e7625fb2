"""A small Zipkin-compatible span collector for the demo (in memory).

    collector.py --port P

POST /api/v2/spans takes Zipkin v2 JSON spans (what Envoy's Zipkin tracer sends); GET
/api/v2/traces answers every trace as a list of span lists, newest last; GET
/api/v2/trace/{traceId} one trace.
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    traces: dict[str, list[dict[str, object]]] = {}

    async def spans(req: web.Request) -> web.Response:
        body = await req.read()
        try:
            items = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="expected Zipkin v2 JSON spans")
        for s in items if isinstance(items, list) else []:
            if isinstance(s, dict) and isinstance(s.get("traceId"), str):
                traces.setdefault(s["traceId"], []).append(s)
        return web.Response(status=202)

    async def all_traces(req: web.Request) -> web.Response:
        return web.json_response(list(traces.values()))

    async def one(req: web.Request) -> web.Response:
        t = traces.get(req.match_info["trace_id"])
        return web.json_response(t) if t is not None else web.Response(status=404)

    app = web.Application(client_max_size=16 << 20)
    app.router.add_post("/api/v2/spans", spans)
    app.router.add_get("/api/v2/traces", all_traces)
    app.router.add_get("/api/v2/trace/{trace_id}", one)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
