"""The HTTP API's plumbing: a route table in which every handler declares the ACL it needs,
Consul's query options, response headers and JSON encoding.

Every handler is ``async def handler(req: web.Request, agent) -> web.StreamResponse`` and is
registered with :func:`route`, naming the ACL resource and access level it needs
(``key:read``, ``service:write``, ``operator:read`` ...). Today nothing enforces them; the ACL
issue plugs an authorizer into :mod:`lictor.agent.http.app` that reads ``Route.acl`` for each
request, so no handler needs to change.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.common.duration import parse_duration
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__ = [
    "ACL",
    "ROUTES",
    "QueryOptions",
    "Route",
    "blocking_args",
    "DEFAULT_MAX_BODY",
    "MAX_JSON_DEPTH",
    "decode_json_body",
    "json_response",
    "meta_headers",
    "parse_json_body",
    "read_body",
    "route",
]

Handler = Callable[[web.Request, "Agent"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ACL:
    """The permission a route needs: ``resource`` (key, service, node, session, agent, operator,
    event, acl, keyring, mesh, query, intention, none) at ``access`` (read, write, list).
    ``segment`` names the path parameter that identifies the object (e.g. "key", "service")."""

    resource: str
    access: str
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    acl: ACL
    max_body: int | None = None  # bytes; None: DEFAULT_MAX_BODY


ROUTES: list[Route] = []


def route(method: str, path: str, *, acl: ACL, max_body: int | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append(Route(method, path, fn, acl, max_body))
        return fn
    return register


def _flag(req: web.Request, name: str) -> bool:
    """Consul treats a bare ``?stale`` as true; ``?stale=false`` is false."""
    if name not in req.query:
        return False
    v = req.query.get(name, "")
    return v.lower() not in ("false", "0")


@dataclass(frozen=True, slots=True)
class QueryOptions:
    index: int
    wait: float
    stale: bool
    consistent: bool
    filter: str
    pretty: bool
    node_meta: dict[str, str]

    @classmethod
    def parse(cls, req: web.Request, *, local_dc: str) -> QueryOptions:
        q = req.query
        if not q:
            return _NO_OPTIONS
        dc = q.get("dc", "")
        if dc and dc != local_dc:
            raise ValidationError(f"No path to datacenter {dc!r}", status=500)
        index = 0
        if "index" in q:
            try:
                index = int(q["index"])
            except ValueError:
                raise ValidationError(f"Invalid index {q['index']!r}: expected an unsigned integer") from None
            if not 0 <= index < 1 << 64:  # Consul parses it as a uint64
                raise ValidationError(f"Invalid index {q['index']!r}: expected an unsigned integer")
        wait = 0.0
        if "wait" in q:
            wait = parse_duration(q["wait"], what="wait")
        stale, consistent = _flag(req, "stale"), _flag(req, "consistent")
        if stale and consistent:
            raise ValidationError("Cannot specify ?stale with ?consistent, conflicting semantics.")
        meta: dict[str, str] = {}
        for item in q.getall("node-meta", []):
            k, sep, v = item.partition(":")
            if not sep:
                raise ValidationError(f"Invalid node-meta {item!r}: expected key:value")
            meta[k] = v
        return cls(index=index, wait=wait, stale=stale, consistent=consistent, filter=q.get("filter", ""),
                   pretty="pretty" in q, node_meta=meta)


_NO_OPTIONS = QueryOptions(index=0, wait=0.0, stale=False, consistent=False, filter="", pretty=False,
                           node_meta={})


def blocking_args(opts: QueryOptions, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"min_index": opts.index, "stale": opts.stale, "consistent": opts.consistent}
    if opts.wait:
        args["wait"] = opts.wait
    if opts.filter:
        args["filter"] = opts.filter
    if opts.node_meta:
        args["node_meta"] = opts.node_meta
    args.update(extra)
    return args


def meta_headers(meta: dict[str, Any]) -> dict[str, str]:
    """Consul's query-meta headers from an endpoint's read result."""
    h = {"X-Consul-Index": str(meta.get("index", 0))}
    if meta.get("results_filtered_by_acls"):  # the server dropped rows the token may not read
        h["X-Consul-Results-Filtered-By-ACLs"] = "true"
    if "known_leader" in meta:
        h["X-Consul-KnownLeader"] = "true" if meta["known_leader"] else "false"
        h["X-Consul-LastContact"] = str(int(meta.get("last_contact", 0) * 1000))
        h["X-Consul-Effective-Consistency"] = meta.get("consistency", "leader")
    return h


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_pretty = json.JSONEncoder(indent=4, ensure_ascii=False).encode


GZIP_MIN_SIZE = 1400  # below about one packet, compressing saves nothing


class _EncodedCache:
    """The JSON bytes (and their gzip) of recently encoded *shared* results, by object identity.

    Endpoints that share one result among readers of the same store state (see
    server/state/query_cache.py) hand the same object to every waiter a change wakes; encoding
    (and compressing) it once instead of once per waiter is most of what makes blocking-query
    fan-out cheap. The entry keeps a reference to the object, so its id cannot be reused while
    cached.
    """

    def __init__(self, size: int = 64) -> None:
        self._entries: dict[tuple[int, bool, bool], tuple[Any, bytes]] = {}
        self._size = size

    def encode(self, data: Any, pretty: bool, gzipped: bool) -> bytes:
        key = (id(data), pretty, gzipped)
        ent = self._entries.get(key)
        if ent is not None and ent[0] is data:
            return ent[1]
        body = self.encode(data, pretty, False) if gzipped else (
            ((_pretty(data) + "\n") if pretty else _compact(data)).encode())
        if gzipped:
            body = gzip.compress(body, compresslevel=6, mtime=0)
        if len(self._entries) >= self._size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (data, body)
        return body


_encoded = _EncodedCache()


def json_response(req: web.Request, data: Any, *, meta: dict[str, Any] | None = None,
                  status: int = 200, shared: bool = False) -> web.Response:
    """A JSON response with Consul's query-meta headers. ``shared`` marks ``data`` as a shared,
    immutable query result whose encoding may be reused by identity."""
    pretty = "pretty" in req.query
    headers = meta_headers(meta) if meta is not None else {}
    if meta is not None and "results_filtered_by_acls" in meta:
        shared = False  # the server filtered a shared result for this token: a fresh object
    acl_filter = req.get("lictor_acl_filter")
    if acl_filter is not None:  # ACLs: drop what the token may not read (a new object, never shared)
        data, dropped = acl_filter(data)
        shared = False
        if dropped:
            headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    if shared:
        body = _encoded.encode(data, pretty, False)
        # Like Consul, answer clients that accept gzip (Go's HTTP client asks by default) with a
        # compressed body; shared results are compressed once for every reader.
        if len(body) >= GZIP_MIN_SIZE and "gzip" in req.headers.get("Accept-Encoding", ""):
            body = _encoded.encode(data, pretty, True)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
    else:
        body = ((_pretty(data) + "\n") if pretty else _compact(data)).encode()
    return web.Response(body=body, status=status, headers=headers or None, content_type="application/json")


#: The largest request body any route accepts unless it declares its own ``max_body``; also the
#: aiohttp application's ``client_max_size``, so a body without a Content-Length (chunked) is
#: refused while it streams in, once it passes the route's limit, never buffered whole.
DEFAULT_MAX_BODY = 4 << 20
#: JSON nesting refused with a 400 before anything walks it (Python's parser and our walkers
#: recurse; Consul's own bodies nest a handful of levels).
MAX_JSON_DEPTH = 128


def _refuse_constant(name: str) -> Any:
    raise ValidationError(f"Request decode failed: {name} is not valid JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValidationError(f"Request decode failed: number {text[:40]} is out of range")
    return v


def _check_tree(value: Any) -> None:
    """Iteratively: nesting at most MAX_JSON_DEPTH; every string and key valid Unicode."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            _valid_text(v)
            continue
        if isinstance(v, dict):
            items: Any = v.items()
        elif isinstance(v, list):
            items = ((None, x) for x in v)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValidationError(f"Request decode failed: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        for k, x in items:
            if k is not None:
                _valid_text(k)
            if isinstance(x, (dict, list, str)):
                stack.append((x, depth + 1))


def _valid_text(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            f"Request decode failed: string {s[:40].encode('utf-8', 'backslashreplace').decode()!r} "
            "is not valid Unicode (lone surrogate)") from None


def parse_json_body(raw: bytes) -> Any:
    """Bytes -> JSON value, refusing what Go's decoder refuses and what we cannot store: NaN and
    infinities, numbers that overflow, lone surrogates, and nesting past :data:`MAX_JSON_DEPTH`.
    Every refusal is a :class:`ValidationError` (400), never a RecursionError (500)."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(f"Request decode failed: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, int digit limits
        raise ValidationError(f"Request decode failed: {exc}") from None
    # cheap scans first: deep nesting needs many brackets; a surrogate arrives escaped or as raw
    # UTF-8 bytes ED A0..BF (json.loads decodes bytes with surrogatepass)
    if (raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH or b"\\u" in raw or b"\\U" in raw
            or b"\xed" in raw):
        _check_tree(value)
    return value


async def read_body(req: web.Request, *, max_bytes: int = DEFAULT_MAX_BODY) -> bytes:
    """The request body, refused with 413 by its declared length before a byte is read, and
    while streaming (aiohttp's per-route ``client_max_size``, set in app.py) when it has none."""
    declared = req.content_length
    if declared is not None and declared > max_bytes:
        raise ValidationError(f"Request body too large ({declared} bytes, limit {max_bytes})", status=413)
    raw = await req.read()
    if len(raw) > max_bytes:
        raise ValidationError(f"Request body too large ({len(raw)} bytes, limit {max_bytes})", status=413)
    return raw


async def decode_json_body(req: web.Request, *, required: bool = True, max_bytes: int = DEFAULT_MAX_BODY) -> Any:
    raw = await read_body(req, max_bytes=max_bytes)
    if not raw.strip():
        if required:
            raise ValidationError("Request decode failed: request body is empty")
        return None
    return parse_json_body(raw)
