"""HTTP checks: one request per run; 2xx is passing, 429 is warning, anything else critical.

All HTTP checks of an agent share one ``CheckHTTPClient`` (httpclient.py: a connection bound
and the TLS contexts), which the agent owns and closes; the checks only borrow it. Like Consul,
every run opens a new connection. The request is validated and serialised when the check is
built, so a bad method, URL or header is a configuration error naming the field.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Mapping, Sequence

from lictor.common.clock import Clock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus

from .base import (
    DEFAULT_OUTPUT_MAX_SIZE,
    DEFAULT_TIMEOUT,
    IntervalCheck,
    StatusHandler,
    describe_error,
    format_seconds,
    truncate_head,
)
from .httpclient import CheckHTTPClient, HTTPCheckError, RequestSpec, reason_phrase

__all__ = ["USER_AGENT", "HTTPCheck", "CheckHTTPClient"]

USER_AGENT = "Lictor Health Check"
DEFAULT_ACCEPT = "text/plain, text/*, */*"


class HTTPCheck(IntervalCheck):
    """``http = "https://host/health"``: status from the HTTP response code."""

    def __init__(
        self,
        *,
        handler: StatusHandler,
        client: CheckHTTPClient,
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
        if output_max_size < 1:
            raise ConfigError("must be at least 1", path="output_max_size")
        headers: list[tuple[str, str]] = []
        for name, values in (header or {}).items():
            for value in values:
                headers.append((name, value))
        given = {name.lower() for name, _ in headers}
        if "user-agent" not in given:
            headers.append(("User-Agent", USER_AGENT))
        if "accept" not in given:
            headers.append(("Accept", DEFAULT_ACCEPT))
        self._spec = RequestSpec(method=method, url=url, headers=headers,
                                 body=body.encode() if body is not None else None)
        self._client = client
        self._url = url
        self._describe_text = f"HTTP {self._spec.method} {url}"
        self._follow = not disable_redirects
        self._output_max_size = output_max_size
        self._server_name = tls_server_name or None
        # the context for an https URL, and for https redirect targets of an http URL
        self._tls = client.tls_context(skip_verify=tls_skip_verify, base=ssl_context)

    def _timeout_output(self) -> str:
        return f"{self._describe_text}: timed out after {format_seconds(self._timeout)}"

    async def run_once(self) -> tuple[HealthStatus, str]:
        try:
            resp = await self._client.fetch(self._spec, max_body=self._output_max_size,
                                            follow_redirects=self._follow, tls=self._tls,
                                            server_name=self._server_name)
        except (OSError, HTTPCheckError) as exc:  # OSError includes ssl.SSLError, refused, DNS
            return HealthStatus.CRITICAL, f"{self._describe_text}: {describe_error(exc)}"
        code = resp.status
        text = truncate_head(resp.body, self._output_max_size, more=resp.more)
        output = f"{self._describe_text}: {code} {reason_phrase(code, resp.reason)} Output: {text}"
        if 200 <= code < 300:
            return HealthStatus.PASSING, output
        if code == 429:  # Too Many Requests: alive but shedding load
            return HealthStatus.WARNING, output
        return HealthStatus.CRITICAL, output
