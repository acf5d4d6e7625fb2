"""A small blocking JSON client for the agent's HTTP API, for the CLI's client commands.

Address: ``-http-addr``, else ``$LICTOR_HTTP_ADDR``, else ``$CONSUL_HTTP_ADDR``, else
``http://127.0.0.1:8500``; ``host:port`` without a scheme means http (https when
``$CONSUL_HTTP_SSL``/``$LICTOR_HTTP_SSL`` is true). Token: ``-token``, ``-token-file``,
``$LICTOR_HTTP_TOKEN``, ``$CONSUL_HTTP_TOKEN``; sent as ``X-Consul-Token``. ``-datacenter`` adds
``?dc=`` and ``-stale`` adds ``?stale`` to reads.

Uses ``http.client`` directly (not urllib) so that proxy environment variables never reroute a
loopback call. Failures raise :class:`APIError` (the agent answered with a non-2xx status; its
text is Consul's ``Unexpected response code: 500 (body)``) or :class:`ConnectError`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from lictor.cli.flags import FlagSet, Parsed

__all__ = [
    "DEFAULT_ADDR",
    "APIError",
    "ClientError",
    "ConnectError",
    "HTTPClient",
    "Response",
    "add_http_flags",
    "client_from_flags",
]

DEFAULT_ADDR = "http://127.0.0.1:8500"
HTTP_SECTION = "HTTP API Options"


class ClientError(Exception):
    """Talking to the agent failed."""


class ConnectError(ClientError):
    """The agent could not be reached."""


class APIError(ClientError):
    """The agent answered with a non-2xx status."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"Unexpected response code: {status} ({body.strip()})")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "t", "true", "yes")


class HTTPClient:
    def __init__(self, addr: str = DEFAULT_ADDR, *, token: str = "", datacenter: str = "", stale: bool = False,
                 timeout: float = 30.0, https: bool = False) -> None:
        if addr.startswith("unix://"):
            raise ClientError(f"unix socket addresses are not supported yet: {addr}")
        if "://" not in addr:
            addr = ("https://" if https else "http://") + addr
        parts = urlsplit(addr)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"invalid HTTP address {addr!r} (use host:port or http://host:port)")
        self.addr = f"{parts.scheme}://{parts.netloc}"
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.token = token
        self.datacenter = datacenter
        self.stale = stale
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, query: Sequence[tuple[str, str | None]] = (),
                body: bytes | None = None, *, read: bool = False, ok_404: bool = False) -> Response:
        """Send one request. ``query`` items with value ``None`` are bare flags (``?recurse``).
        ``read`` adds ``dc``/``stale``; writes add only ``dc``. ``ok_404`` returns 404s."""
        params = list(query)
        if self.datacenter:
            params.append(("dc", self.datacenter))
        if read and self.stale:
            params.append(("stale", None))
        target = path
        if params:
            target += "?" + "&".join(k if v is None else f"{k}={quote(str(v), safe='')}" for k, v in params)
        headers = {"User-Agent": "lictor-cli", "Accept": "application/json"}
        if self.token:
            headers["X-Consul-Token"] = self.token
        conn = self._connection()
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except ConnectionRefusedError:
            raise ConnectError(f"cannot connect to the agent at {self.addr}: connection refused "
                               "(is the agent running? set -http-addr or CONSUL_HTTP_ADDR)") from None
        except (TimeoutError, socket.timeout):
            raise ConnectError(f"no answer from the agent at {self.addr} within {self.timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectError(f"cannot talk to the agent at {self.addr}: {exc}") from None
        finally:
            conn.close()
        if resp.status == 404 and ok_404:
            return Response(resp.status, dict(resp.headers.items()), data)
        if not 200 <= resp.status < 300:
            raise APIError(resp.status, data.decode("utf-8", "replace"))
        return Response(resp.status, dict(resp.headers.items()), data)

    def get_json(self, path: str, query: Sequence[tuple[str, str | None]] = (), *, ok_404: bool = False) -> Any:
        """GET and decode; ``None`` for a 404 when ``ok_404``."""
        resp = self.request("GET", path, query, read=True, ok_404=ok_404)
        if resp.status == 404:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ClientError(f"the agent sent invalid JSON: {exc}") from None

    def put(self, path: str, query: Sequence[tuple[str, str | None]] = (), body: bytes | None = None) -> Response:
        return self.request("PUT", path, query, body if body is not None else b"")

    def put_json(self, path: str, payload: Any, query: Sequence[tuple[str, str | None]] = ()) -> Response:
        return self.request("PUT", path, query, json.dumps(payload).encode())


def kv_path(key: str) -> str:
    return "/v1/kv/" + quote(key, safe="/")


def add_http_flags(fs: FlagSet, *, server: bool = True) -> None:
    """The flags every client command takes; ``server`` adds -datacenter and -stale."""
    fs.string("http-addr", "Address of the agent's HTTP API with the port, e.g. 127.0.0.1:8500 or "
                           "http://host:8500. Defaults to $LICTOR_HTTP_ADDR, then $CONSUL_HTTP_ADDR, then "
                           f"{DEFAULT_ADDR}.", metavar="address", section=HTTP_SECTION)
    fs.string("token", "ACL token for the request, sent as X-Consul-Token. Defaults to $LICTOR_HTTP_TOKEN, "
                       "then $CONSUL_HTTP_TOKEN.", metavar="value", section=HTTP_SECTION)
    fs.string("token-file", "File holding the ACL token (used when -token is not given).",
              metavar="path", section=HTTP_SECTION)
    fs.string("timeout", "Seconds to wait for the agent's answer (default 30).", default="30",
              metavar="seconds", section=HTTP_SECTION)
    if server:
        fs.string("datacenter", "Datacenter to query (?dc=). Defaults to the agent's datacenter.",
                  metavar="name", section=HTTP_SECTION)
        fs.bool("stale", "Allow any server to answer reads, not only the leader (?stale).", section=HTTP_SECTION)


def client_from_flags(parsed: Parsed, env: Mapping[str, str] | None = None) -> HTTPClient:
    env = os.environ if env is None else env
    addr = parsed["http-addr"] or env.get("LICTOR_HTTP_ADDR") or env.get("CONSUL_HTTP_ADDR") or DEFAULT_ADDR
    token = parsed["token"]
    if not token and parsed["token-file"]:
        try:
            with open(parsed["token-file"], encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ClientError(f"cannot read -token-file {parsed['token-file']}: {exc.strerror or exc}") from None
    token = token or env.get("LICTOR_HTTP_TOKEN") or env.get("CONSUL_HTTP_TOKEN") or ""
    try:
        timeout = float(parsed["timeout"])
    except ValueError:
        raise ClientError(f"invalid -timeout {parsed['timeout']!r}: expected a number of seconds") from None
    https = _truthy(env.get("LICTOR_HTTP_SSL")) or _truthy(env.get("CONSUL_HTTP_SSL"))
    values = parsed.values
    return HTTPClient(addr, token=token, datacenter=values.get("datacenter") or "",
                      stale=bool(values.get("stale")), timeout=timeout, https=https)
