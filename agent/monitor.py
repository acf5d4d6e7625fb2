"""Fan-out of log lines to /v1/agent/monitor subscribers, each at its own level.

A subscriber gets a bounded queue; when a slow reader lets it fill, further lines are dropped for
that reader (and counted) rather than block the agent or grow without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

__all__ = ["LogBroadcaster", "Subscription"]


class Subscription:
    def __init__(self, level: int, json_format: bool, maxsize: int = 512) -> None:
        self.level = level
        self.json_format = json_format
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0


class LogBroadcaster(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self._subs: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, level: int, json_format: bool = False) -> Subscription:
        self._loop = asyncio.get_running_loop()
        sub = Subscription(level, json_format)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def emit(self, record: logging.LogRecord) -> None:
        if not self._subs:
            return
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the agent
            msg = str(record.msg)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        text = f"{ts}Z [{record.levelname}] {record.name}: {msg}"
        as_json = json.dumps({"@timestamp": ts + "Z", "@level": record.levelname.lower(),
                              "@module": record.name, "@message": msg})
        for sub in list(self._subs):
            if record.levelno < sub.level:
                continue
            line = as_json if sub.json_format else text
            try:
                sub.queue.put_nowait(line)
            except asyncio.QueueFull:
                sub.dropped += 1
