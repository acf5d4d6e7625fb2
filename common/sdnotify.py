"""systemd's notify protocol (``sd_notify(3)``), without libsystemd: one datagram per message.

systemd starts a ``Type=notify`` service with ``NOTIFY_SOCKET`` set to an ``AF_UNIX`` datagram
socket (a path, or ``@name`` for the abstract namespace). The service sends newline-separated
``KEY=VALUE`` assignments to it: ``READY=1`` once it serves, ``RELOADING=1`` (with
``MONOTONIC_USEC``) then ``READY=1`` around a reload, ``STOPPING=1`` when it begins to shut down,
``STATUS=...`` as a one-line human-readable status shown by ``systemctl status``.

Without ``NOTIFY_SOCKET`` (not under systemd) every call is a no-op that returns False. A send
that fails (systemd gone, socket full) is logged once and never raised: notification is advice to
the supervisor, not a reason to stop serving.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier", "format_message"]

log = logging.getLogger("lictor.sdnotify")


def format_message(**fields: str | int) -> bytes:
    """``READY=1\\nSTATUS=...`` from keyword fields (keys upper-cased). A value may not contain a
    newline: STATUS is one line, and a newline would start a forged assignment."""
    lines = []
    for key, value in fields.items():
        text = str(value)
        if "\n" in text:
            raise ValueError(f"sd_notify {key.upper()}: a value may not contain a newline")
        lines.append(f"{key.upper()}={text}")
    return "\n".join(lines).encode()


class Notifier:
    """Sends to the socket named by ``NOTIFY_SOCKET`` in ``env`` (default: this process's)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        raw = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        self._addr: str | bytes | None = None
        if raw.startswith("@"):
            self._addr = b"\0" + raw[1:].encode()  # abstract namespace
        elif raw.startswith("/"):
            self._addr = raw
        elif raw:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor @abstract; not notifying systemd", raw)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message; True if systemd's socket took it."""
        if self._addr is None:
            return False
        data = format_message(**fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(data, self._addr)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify failed (further failures are not logged): %s", exc)
            return False

    def ready(self, status: str) -> bool:
        return self.send(ready=1, status=status)

    def reloading(self, status: str = "reloading configuration") -> bool:
        # MONOTONIC_USEC lets systemd >= 253 tell this reload from an earlier one
        return self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000,
                         status=status)

    def stopping(self, status: str = "shutting down") -> bool:
        return self.send(stopping=1, status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)
