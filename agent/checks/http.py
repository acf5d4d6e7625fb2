"""HTTP checks: one request per run; 2xx is passing, 429 is warning, anything else critical.

All HTTP checks of an agent share one ``aiohttp.ClientSession`` (one connector, one DNS cache),
built by ``create_check_session()``: the agent owns and closes it, the checks only borrow it.
Like Consul, the connector does not keep connections alive, so every run really connects.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Mapping, Sequence

import aiohttp
from multidict import CIMultiDict

from lictor.common.clock import Clock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus

from .base import (
    DEFAULT_OUTPUT_MAX_SIZE,
    DEFAULT_TIMEOUT,
    IntervalCheck,
    StatusHandler,
    format_seconds,
    truncate_head,
)

__all__ = ["USER_AGENT", "HTTPCheck", "create_check_session"]

USER_AGENT = "Lictor Health Check"
DEFAULT_ACCEPT = "text/plain, text/*, */*"


def create_check_session(*, limit: int = 256) -> aiohttp.ClientSession:
    """The session HTTP checks share. Call from inside the event loop; the caller closes it.

    ``limit`` bounds concurrent connections; a run queued behind it spends its own timeout.
    No cookies are kept (checks must not influence each other) and proxy variables from the
    environment are ignored.
    """
    connector = aiohttp.TCPConnector(limit=limit, force_close=True)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),  # each check enforces its own deadline
    )


class HTTPCheck(IntervalCheck):
    """``http = "https://host/health"``: status from the HTTP response code."""

    def __init__(
        self,
        *,
        handler: StatusHandler,
        session: aiohttp.ClientSession,
        url: str,
        interval: float,
        method: str = "GET",
        header: Mapping[str, Sequence[str]] | None = None,
        body: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tls_skip_verify: bool = False,
        tls_server_name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        disable_redirects: bool = False,
        output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``ssl_context`` carries the agent's CA (``enable_agent_tls_for_checks``); it is
        ignored when ``tls_skip_verify`` is set."""
        super().__init__(handler=handler, interval=interval, timeout=timeout, clock=clock, rng=rng)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"invalid URL {url!r}: scheme must be http or https", path="http")
        if output_max_size < 1:
            raise ConfigError("must be at least 1", path="output_max_size")
        self._session = session
        self._url = url
        self._method = method.upper() or "GET"
        self._body = body
        self._disable_redirects = disable_redirects
        self._output_max_size = output_max_size
        self._server_name = tls_server_name or None
        self._ssl: ssl.SSLContext | bool | None
        if tls_skip_verify:
            self._ssl = False
        else:
            self._ssl = ssl_context  # None: aiohttp's default verifying context
        headers: CIMultiDict[str] = CIMultiDict()
        for name, values in (header or {}).items():
            for value in values:
                headers.add(name, value)
        headers.setdefault("User-Agent", USER_AGENT)
        headers.setdefault("Accept", DEFAULT_ACCEPT)
        self._headers = headers

    def _describe(self) -> str:
        return f"HTTP {self._method} {self._url}"

    def _timeout_output(self) -> str:
        return f"{self._describe()}: timed out after {format_seconds(self._timeout)}"

    async def run_once(self) -> tuple[HealthStatus, str]:
        try:
            async with self._session.request(
                self._method,
                self._url,
                headers=self._headers,
                data=self._body,
                allow_redirects=not self._disable_redirects,
                ssl=self._ssl,
                server_hostname=self._server_name,
            ) as resp:
                body, more = await _read_prefix(resp.content, self._output_max_size)
                code, reason = resp.status, resp.reason or ""
        except (aiohttp.ClientError, OSError) as exc:
            return HealthStatus.CRITICAL, f"{self._describe()}: {_describe_error(exc)}"
        except asyncio.IncompleteReadError as exc:  # pragma: no cover - defensive
            return HealthStatus.CRITICAL, f"{self._describe()}: {exc}"
        text = truncate_head(body, self._output_max_size, more=more)
        output = f"{self._describe()}: {code} {reason} Output: {text}"
        if 200 <= code < 300:
            return HealthStatus.PASSING, output
        if code == 429:  # Too Many Requests: alive but shedding load
            return HealthStatus.WARNING, output
        return HealthStatus.CRITICAL, output


async def _read_prefix(stream: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes; the flag says whether more would have followed."""
    buf = bytearray()
    while len(buf) <= limit:
        chunk = await stream.read(limit + 1 - len(buf))
        if not chunk:
            break
        buf += chunk
    more = len(buf) > limit
    return bytes(buf[:limit]), more


def _describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
