"""Logging setup: stdlib loggers per subsystem (lictor.raft, lictor.http, ...) rendered by structlog,
as console lines or JSON (``-log-json``), one event per line.

Secrets never reach a log line: :func:`redact` masks values whose key looks secret, and the
processor chain applies it to every event's key/values.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["LEVELS", "configure_logging", "redact"]

LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR}
logging.addLevelName(5, "TRACE")

_SECRET_WORDS = ("token", "secret", "password", "encrypt", "private_key", "key_pem")


def redact(key: str, value: Any) -> Any:
    k = key.lower()
    if any(w in k for w in _SECRET_WORDS) and value:
        return "<hidden>"
    return value


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k in list(event.keys()):
        if k != "event":
            event[k] = redact(k, event[k])
    return event


def configure_logging(level: str = "info", *, json_format: bool = False,
                      extra_handlers: list[logging.Handler] | None = None) -> None:
    pre = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
           structlog.processors.TimeStamper(fmt="iso", utc=True), _redact_processor]
    renderer: Any = (structlog.processors.JSONRenderer() if json_format
                     else structlog.dev.ConsoleRenderer(colors=False))
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=pre, processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler] + list(extra_handlers or [])
    root.setLevel(LEVELS.get(level, logging.INFO))
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(processors=pre + [structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
                        logger_factory=structlog.stdlib.LoggerFactory(), cache_logger_on_first_use=True)
