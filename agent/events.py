"""User events kept on this node (/v1/event/fire, /v1/event/list).

Events fired on any agent arrive through gossip (lictor.agent.user_events) and ``deliver``. The buffer keeps
the last 256 events, like Consul's, and a watch channel for blocking lists. The blocking index of
an event list is the event's sequence number (Consul hashes the event ID; any index that only
grows serves the same purpose).
"""

from __future__ import annotations

import base64
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from lictor.server.state.watch import Channel, WatchSet

__all__ = ["EventBuffer", "UserEvent"]


@dataclass(frozen=True, slots=True)
class UserEvent:
    id: str
    name: str
    payload: bytes | None
    node_filter: str
    service_filter: str
    tag_filter: str
    ltime: int

    def to_api(self) -> dict[str, Any]:
        return {"ID": self.id, "Name": self.name,
                "Payload": base64.b64encode(self.payload).decode() if self.payload else None,
                "NodeFilter": self.node_filter, "ServiceFilter": self.service_filter,
                "TagFilter": self.tag_filter, "Version": 1, "LTime": self.ltime}


class EventBuffer:
    def __init__(self, size: int = 256) -> None:
        self._events: deque[UserEvent] = deque(maxlen=size)
        self._ltime = 0
        self._channel = Channel()

    def fire(self, name: str, payload: bytes | None, *, node_filter: str = "", service_filter: str = "",
             tag_filter: str = "") -> UserEvent:
        self._ltime += 1
        ev = UserEvent(id=str(uuid.uuid4()), name=name, payload=payload, node_filter=node_filter,
                       service_filter=service_filter, tag_filter=tag_filter, ltime=self._ltime)
        self._events.append(ev)
        ch, self._channel = self._channel, Channel()
        ch.fire()
        return ev

    def deliver(self, ev: UserEvent) -> None:
        """Add an event fired elsewhere (gossip); the list's index still only grows."""
        self._ltime += 1
        self._events.append(ev)
        ch, self._channel = self._channel, Channel()
        ch.fire()

    def list(self, ws: WatchSet | None, name: str = "") -> tuple[int, list[UserEvent]]:
        if ws is not None:
            ws.add(self._channel)
        rows = [e for e in self._events if not name or e.name == name]
        return self._ltime, rows
