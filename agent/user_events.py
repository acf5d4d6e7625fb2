"""User events over gossip (Consul's ``/v1/event/fire``), and the other agent intents that ride
the same gossip USER message: force-leave and keyring operations.

Envelope (msgpack map, at most 1 KiB): ``{"k": kind, "id": str, ...}``

* ``ev``  {id, name, payload, nf, sf, tf, lt}: a user event with its Lamport time ``lt``;
* ``fl``  {id, node, prune}: force-leave ``node`` (everyone marks it left);
* ``key`` {id, op, key}: install / use / remove a gossip key.

Delivery (as Serf's): a member that sees an id for the first time handles it and re-broadcasts
it (bounded retransmits in the core); later copies are dropped. Ids are remembered in a bounded
LRU. Filters are applied by each receiver: the node filter is a regular expression searched in
the node name; the service filter in the names of the node's services, and the tag filter (only
with a service filter) in those services' tags - Go's ``regexp.MatchString`` semantics, so an
unanchored search.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

from lictor.agent.events import UserEvent
from lictor.common.regex import RegexError, compile_pattern

__all__ = ["LamportClock", "SeenIds", "decode_intent", "encode_intent", "event_matches", "new_id"]

MAX_INTENT = 1024


def new_id() -> str:
    return str(uuid.uuid4())


class LamportClock:
    def __init__(self) -> None:
        self.time = 0

    def increment(self) -> int:
        self.time += 1
        return self.time

    def witness(self, t: int) -> None:
        if t >= self.time:
            self.time = t + 1


class SeenIds:
    def __init__(self, size: int = 4096) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def first_time(self, i: str) -> bool:
        if i in self._ids:
            return False
        self._ids[i] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


def encode_intent(d: Mapping[str, Any]) -> bytes:
    data = msgpack.packb(dict(d), use_bin_type=True)
    if len(data) > MAX_INTENT:
        raise ValueError(f"gossip message too large ({len(data)} > {MAX_INTENT} bytes)")
    return data


def decode_intent(data: bytes) -> dict[str, Any] | None:
    try:
        v = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:  # noqa: BLE001 - network junk
        return None
    if not isinstance(v, dict) or not isinstance(v.get("k"), str) or not isinstance(v.get("id"), str):
        return None
    return v


def event_from_intent(v: Mapping[str, Any]) -> UserEvent | None:
    try:
        payload = v.get("payload")
        return UserEvent(id=str(v["id"]), name=str(v["name"]),
                         payload=bytes(payload) if payload else None,
                         node_filter=str(v.get("nf") or ""), service_filter=str(v.get("sf") or ""),
                         tag_filter=str(v.get("tf") or ""), ltime=int(v.get("lt") or 0))
    except (KeyError, TypeError, ValueError):
        return None


def event_intent(ev: UserEvent) -> dict[str, Any]:
    return {"k": "ev", "id": ev.id, "name": ev.name, "payload": ev.payload or b"", "nf": ev.node_filter,
            "sf": ev.service_filter, "tf": ev.tag_filter, "lt": ev.ltime}


def validate_filters(node: str, service: str, tag: str) -> None:
    """Raise ValueError (with Consul's wording) for a filter that is not a regular expression."""
    for what, expr in (("node", node), ("service", service), ("tag", tag)):
        if expr:
            try:
                compile_pattern(expr)
            except RegexError as exc:
                raise ValueError(f"Invalid {what} filter: {exc}") from None
    if tag and not service:
        raise ValueError("Cannot provide tag filter without service filter")


def event_matches(ev: UserEvent, *, node: str,
                  services: Iterable[tuple[str, Iterable[str]]]) -> bool:
    """Consul's ``shouldProcessUserEvent``: should this node (with these (name, tags) services)
    deliver ``ev``? Bad regular expressions never match."""
    try:
        if ev.node_filter and not compile_pattern(ev.node_filter).search(node):
            return False
        if not ev.service_filter:
            return True
        srv = compile_pattern(ev.service_filter)
        tag = compile_pattern(ev.tag_filter) if ev.tag_filter else None
    except RegexError:
        return False
    for name, tags in services:
        if not srv.search(name):
            continue
        if tag is None or any(tag.search(t) for t in tags):
            return True
    return False
