"""The HTTP/1.1 client behind HTTP checks: one request per connection, nothing else.

An agent runs thousands of HTTP checks, each a single GET every few seconds, and none of them
needs what a general client carries (sessions, cookies, pools, streaming, content decoding).
A request is serialised once, when the check is built (``RequestSpec``); a run is one
``loop.create_connection`` with a small ``asyncio.Protocol`` that writes those bytes, parses the
status line and headers, keeps the first ``max_body`` bytes of the body (decoding chunked
transfer coding) and hangs up. That is about a third of the CPU time per run of a general
client (bench/cluster/checks_cpu.py).

Behaviour follows Go's ``net/http`` client as Consul's checks use it:

- ``Connection: close`` on every request (Consul disables keep-alives for checks);
- redirects are followed up to 10 times (301/302/303 turn the method into GET without a body,
  307/308 keep both); ``Authorization`` and ``Cookie`` headers are dropped when a redirect
  leaves the original host; ``follow_redirects=False`` returns the 3xx itself;
- a ``Host`` header given by the user replaces the URL's host in the request;
- no ``Accept-Encoding`` is sent, so bodies arrive uncompressed;
- proxy variables in the environment are ignored;
- an error while reading the body keeps what was read: the status code decides the result.

Framing headers (``Content-Length``, ``Transfer-Encoding``, ``Connection``) are ours; the same
names given by the user are ignored.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urljoin, urlsplit

from lictor.common.errors import ConfigError

__all__ = ["CheckHTTPClient", "HTTPCheckError", "RequestSpec", "Response", "MAX_REDIRECTS"]

MAX_REDIRECTS = 10
MAX_HEAD_BYTES = 64 * 1024
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "host"})
_CROSS_HOST_DROPPED = frozenset({"authorization", "www-authenticate", "cookie", "cookie2"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class HTTPCheckError(Exception):
    """The exchange failed before a status line arrived (or a redirect could not be followed)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed http(s) URL: where to connect and what to put on the request line."""

    url: str
    tls: bool
    host: str  # without brackets
    port: int
    host_header: str  # host[:port] as the Host header carries it
    path: str  # path?query, never empty

    @classmethod
    def parse(cls, url: str) -> Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"invalid URL {url!r}: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"invalid URL {url!r}: scheme must be http or https")
        host = parts.hostname or ""
        if not host:
            raise ValueError(f"invalid URL {url!r}: no host")
        tls = parts.scheme == "https"
        default = 443 if tls else 80
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port in (None, default) else f"{shown}:{port}"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if any(c in path for c in " \r\n"):
            raise ValueError(f"invalid URL {url!r}: whitespace in the path")
        return cls(url=url, tls=tls, host=host, port=port or default, host_header=host_header,
                   path=path)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    body: bytes  # at most max_body bytes
    more: bool  # the body went on beyond ``body``
    location: str = ""  # the Location header of a 3xx (redirects), else ""


class RequestSpec:
    """Method, URL, headers and body of a check's request, validated and serialised once."""

    __slots__ = ("method", "target", "headers", "body", "_wire", "_host_override")

    def __init__(self, *, method: str, url: str, headers: list[tuple[str, str]],
                 body: bytes | None) -> None:
        method = method.upper() or "GET"
        if not set(method) <= _TOKEN_CHARS:
            raise ConfigError(f"invalid HTTP method {method!r}", path="method")
        try:
            self.target = Target.parse(url)
        except ValueError as exc:
            raise ConfigError(str(exc), path="http") from None
        host_override = None
        kept: list[tuple[str, str]] = []
        for name, value in headers:
            if not name or not set(name) <= _TOKEN_CHARS:
                raise ConfigError(f"invalid header name {name!r}", path="header")
            if "\r" in value or "\n" in value or "\0" in value:
                raise ConfigError(f"header {name!r}: value must not contain CR, LF or NUL",
                                  path=f"header.{name}")
            low = name.lower()
            if low == "host":
                host_override = host_override or value
            elif low not in _FRAMING:
                kept.append((name, value))
        self.method = method
        self.headers = kept
        self.body = body
        self._host_override = host_override
        self._wire = self._serialise(self.method, self.target, kept, body)

    def _serialise(self, method: str, target: Target, headers: list[tuple[str, str]],
                   body: bytes | None) -> bytes:
        lines = [f"{method} {target.path} HTTP/1.1",
                 f"Host: {self._host_override or target.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        return head + body if body else head

    @property
    def wire(self) -> bytes:
        return self._wire

    def redirected(self, status: int, location: str) -> RequestSpec:
        """The request a redirect asks for (Go's rules for method, body and headers)."""
        url = urljoin(self.target.url, location)
        method, body = self.method, self.body
        if status in (301, 302, 303) and method != "HEAD":
            method, body = "GET", None
        try:
            new_target = Target.parse(url)
        except ValueError as exc:
            raise HTTPCheckError(f"redirect to {location!r}: {exc}") from None
        headers = self.headers
        if new_target.host != self.target.host:
            headers = [(k, v) for k, v in headers if k.lower() not in _CROSS_HOST_DROPPED]
        spec = object.__new__(RequestSpec)
        spec.method, spec.target, spec.headers, spec.body = method, new_target, headers, body
        # Go keeps an explicit Host header only while the request stays on the same host
        spec._host_override = self._host_override if new_target.host == self.target.host else None
        spec._wire = spec._serialise(method, new_target, headers, body)
        return spec


class _Exchange(asyncio.Protocol):
    """One request/response on a fresh connection; ``done`` resolves to a ``Response``."""

    __slots__ = ("_request", "_head_only", "_max", "done", "_buf", "_status", "_reason",
                 "_headers", "_mode", "_remaining", "_body", "_more", "_transport")

    def __init__(self, request: bytes, *, head_only: bool, max_body: int,
                 done: asyncio.Future[Response]) -> None:
        self._request = request
        self._head_only = head_only
        self._max = max_body
        self.done = done
        self._buf = bytearray()
        self._status = 0
        self._reason = ""
        self._headers: dict[str, str] = {}
        self._mode = "head"  # head | length | chunked | close | done
        self._remaining = 0
        self._body = bytearray()
        self._more = False
        self._transport: asyncio.BaseTransport | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self._buf += data
        try:
            if self._mode == "head":
                self._parse_head()
            if self._mode not in ("head", "done") and not self.done.done():
                self._parse_body()
        except HTTPCheckError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self._mode == "head":
            self._fail(HTTPCheckError(f"connection closed before a response: {exc}" if exc else
                                      "connection closed before a response (EOF)"))
            return
        # "close" mode ends here by definition; a short length/chunked body keeps what we have
        self._finish()

    # -- parsing --------------------------------------------------------------------------------

    def _parse_head(self) -> None:
        while self._mode == "head":
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD_BYTES:
                    raise HTTPCheckError(f"response header larger than {MAX_HEAD_BYTES} bytes")
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[:end + 4]
            lines = head.split("\r\n")
            status_line = lines[0]
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (
                    len(parts[1]) == 3 and parts[1].isdigit()):
                raise HTTPCheckError(f"malformed HTTP response: {status_line[:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                continue  # an interim response (100 Continue, 103 Early Hints): the real one follows
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep or not name or name != name.strip():
                    raise HTTPCheckError(f"malformed response header line: {line[:80]!r}")
                key = name.lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            self._status = status
            self._reason = parts[2].strip() if len(parts) > 2 else ""
            self._headers = headers
            self._choose_body_mode()

    def _choose_body_mode(self) -> None:
        h = self._headers
        if self._head_only or self._status in (101, 204, 304):
            self._mode = "done"
            self._finish()
            return
        te = h.get("transfer-encoding", "")
        if te:
            if te.lower().rsplit(",", 1)[-1].strip() != "chunked":
                self._mode = "close"
                return
            self._mode = "chunked"
            self._remaining = -1  # -1: expecting a chunk-size line
            return
        cl = h.get("content-length")
        if cl is not None:
            values = {v.strip() for v in cl.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise HTTPCheckError(f"invalid Content-Length {cl!r}")
            self._mode = "length"
            self._remaining = int(next(iter(values)))
            if self._remaining == 0:
                self._finish()
            return
        self._mode = "close"

    def _take(self, data: bytes | bytearray) -> bool:
        """Keep body bytes; True once we hold more than ``max_body`` (then stop reading)."""
        room = self._max - len(self._body)
        if len(data) > room:
            self._body += data[:room]
            self._more = True
            return True
        self._body += data
        return False

    def _parse_body(self) -> None:
        if self._mode == "chunked":
            self._parse_chunks()
            return
        data = self._buf
        if self._mode == "length":
            data = self._buf[:self._remaining]
            self._remaining -= len(data)
        full = self._take(data)
        self._buf.clear()
        if full or (self._mode == "length" and self._remaining <= 0):
            self._finish()

    def _parse_chunks(self) -> None:
        buf = self._buf
        while True:
            if self._remaining == -1:  # chunk-size line
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > 4096:
                        raise HTTPCheckError("malformed chunked body: chunk-size line too long")
                    return
                size_text = bytes(buf[:eol]).split(b";", 1)[0].strip()
                del buf[:eol + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HTTPCheckError(f"malformed chunked body: bad chunk size {size_text[:20]!r}") from None
                if size < 0:
                    raise HTTPCheckError("malformed chunked body: negative chunk size")
                if size == 0:
                    self._finish()  # trailers, if any, are not needed
                    return
                self._remaining = size
            if self._remaining > 0:
                part = buf[:self._remaining]
                del buf[:len(part)]
                self._remaining -= len(part)
                if self._take(part):
                    self._finish()
                    return
                if self._remaining > 0:
                    return
            # the CRLF after a chunk's data
            if len(buf) < 2:
                self._remaining = 0
                return
            if buf[:2] != b"\r\n":
                raise HTTPCheckError("malformed chunked body: missing CRLF after chunk data")
            del buf[:2]
            self._remaining = -1

    def _finish(self) -> None:
        if not self.done.done():
            location = self._headers.get("location", "") if 300 <= self._status < 400 else ""
            self.done.set_result(Response(self._status, self._reason, bytes(self._body), self._more,
                                          location))
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]


class CheckHTTPClient:
    """Shared by every HTTP check of an agent: bounds concurrent connections (a run queued
    behind the bound spends its own timeout) and holds the TLS contexts. The agent owns it."""

    def __init__(self, *, limit: int = 256) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._sem = asyncio.Semaphore(limit)
        self._default_tls: ssl.SSLContext | None = None
        self._insecure_tls: ssl.SSLContext | None = None
        self.closed = False

    def tls_context(self, *, skip_verify: bool, base: ssl.SSLContext | None) -> ssl.SSLContext:
        """The context for an https check: ``base`` (the agent's CA) when verifying and given,
        else a shared default or a shared non-verifying one."""
        if skip_verify:
            if self._insecure_tls is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self._insecure_tls = ctx
            return self._insecure_tls
        if base is not None:
            return base
        if self._default_tls is None:
            self._default_tls = ssl.create_default_context()
        return self._default_tls

    async def close(self) -> None:
        self.closed = True

    async def fetch(self, spec: RequestSpec, *, max_body: int, follow_redirects: bool = True,
                    tls: ssl.SSLContext | None = None, server_name: str | None = None) -> Response:
        """Send ``spec`` (following redirects unless told not to) and return the response.

        Raises ``OSError`` (connect, TLS) or ``HTTPCheckError``; the caller's timeout cancels.
        """
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._exchange(spec, max_body=max_body, tls=tls, server_name=server_name)
            if not follow_redirects or resp.status not in (301, 302, 303, 307, 308):
                return resp
            location = resp.location
            if not location:
                return resp  # Go returns a 3xx without Location as the response
            spec = spec.redirected(resp.status, location)
        raise HTTPCheckError(f"stopped after {MAX_REDIRECTS} redirects")

    async def _exchange(self, spec: RequestSpec, *, max_body: int, tls: ssl.SSLContext | None,
                        server_name: str | None) -> Response:
        loop = asyncio.get_running_loop()
        target = spec.target
        done: asyncio.Future[Response] = loop.create_future()

        def factory() -> _Exchange:
            return _Exchange(spec.wire, head_only=spec.method == "HEAD", max_body=max_body, done=done)

        ctx: ssl.SSLContext | None = None
        if target.tls:
            ctx = tls if tls is not None else self.tls_context(skip_verify=False, base=None)
        async with self._sem:
            transport, _ = await loop.create_connection(
                factory, target.host, target.port, ssl=ctx,
                server_hostname=(server_name or target.host) if ctx is not None else None)
            try:
                return await done
            finally:
                transport.close()


def reason_phrase(status: int, reason: str) -> str:
    """The server's reason phrase, or the standard one when it sent none."""
    if reason:
        return reason
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
