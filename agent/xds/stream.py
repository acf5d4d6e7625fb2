"""The state of one ADS stream, sans I/O: what Envoy has, what it asked for, what to send next.

The gRPC server (server.py) feeds it two kinds of input and sends what ``responses()`` returns:

* ``set_resources(resources)`` -- the proxy's desired resources (from a new snapshot);
* ``on_request(req)`` -- a DiscoveryRequest (SotW) or DeltaDiscoveryRequest (Delta) from Envoy.

Rules kept here, in one place:

* **Versions and nonces.** Every response carries a fresh nonce. A request whose
  ``response_nonce`` is not the latest for its type is stale and ignored (the xDS protocol).
* **ACK/NACK.** A request answering the pending nonce ACKs it, or NACKs it when it carries
  ``error_detail``: the NACK is recorded (``nacks``, with Envoy's message), the content is not
  sent again, and Envoy keeps its last good config; a later change is sent normally.
* **Ordering.** Responses go out in ``TYPE_ORDER`` (SDS, CDS, EDS, LDS, RDS) and Envoy handles
  them in stream order, so a listener never arrives before the clusters and endpoints it routes
  to. Envoy only asks for a secret, an assignment or a route once a cluster or listener names
  it. A changed cluster (listener) is followed by its endpoints (routes) again: Envoy warms the
  new cluster until they arrive and holds its CDS ACK until then. Removals come after additions:
  a cluster that leaves the snapshot is kept in CDS until Envoy has ACKed the listeners and
  routes that stop using it.
* **Nothing changed, nothing sent.** Each resource is compared by a digest of its deterministic
  encoding; a type whose resources (as Envoy subscribed to them) did not change is not sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message

from envoy.service.discovery.v3 import discovery_pb2

from lictor.agent.xds.common import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPE_ORDER

__all__ = ["Nack", "StreamState"]

WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})


def digest(msg: Message) -> str:
    return hashlib.blake2b(msg.SerializeToString(deterministic=True), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Nack:
    type_url: str
    version: str
    nonce: str
    message: str


@dataclass(slots=True)
class _Type:
    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    sent: dict[str, str] = field(default_factory=dict)  # name -> digest Envoy has (or was sent)
    pending_nonce: str = ""  # a response awaiting its ACK
    last_nonce: str = ""
    version: int = 0
    acked_version: str = ""
    dirty: bool = False  # the subscription changed: SotW must answer even if nothing changed


class StreamState:
    def __init__(self, *, delta: bool) -> None:
        self.delta = delta
        self.types: dict[str, _Type] = {t: _Type() for t in TYPE_ORDER}
        self.desired: dict[str, dict[str, Message]] = {t: {} for t in TYPE_ORDER}
        self.digests: dict[str, dict[str, str]] = {t: {} for t in TYPE_ORDER}
        self.sent_msgs: dict[str, dict[str, Message]] = {t: {} for t in TYPE_ORDER}  # SotW: last sent
        self.nacks: list[Nack] = []
        self.acks = 0
        self.ready = False  # no response before the first snapshot: an empty CDS would drop everything
        self._nonce = 0

    # ----- inputs ------------------------------------------------------------------------------
    def set_resources(self, resources: dict[str, dict[str, Message]]) -> None:
        self.ready = True
        for t in TYPE_ORDER:
            res = resources.get(t, {})
            old = self.digests[t]
            new = {n: (old[n] if n in old and self.desired[t].get(n) is m else digest(m)) for n, m in res.items()}
            self.desired[t] = dict(res)
            self.digests[t] = new

    def on_request(self, req: Any) -> Nack | None:
        """Take one request; returns the Nack it carried, if any."""
        t = req.type_url
        st = self.types.get(t)
        if st is None:
            return None  # a type we do not serve: nothing to send for it
        nonce = req.response_nonce
        if nonce and nonce != st.last_nonce:
            return None  # stale: answers an older response
        nack = None
        if nonce and nonce == st.pending_nonce:
            st.pending_nonce = ""
            if req.HasField("error_detail") and (req.error_detail.code or req.error_detail.message):
                nack = Nack(type_url=t, version=str(getattr(req, "version_info", "") or st.version), nonce=nonce,
                            message=req.error_detail.message)
                self.nacks.append(nack)
            else:
                self.acks += 1
                st.acked_version = str(getattr(req, "version_info", "") or st.version)
        if self.delta:
            self._delta_subscription(st, req)
        else:
            self._sotw_subscription(st, req)
        return nack

    def _sotw_subscription(self, st: _Type, req: discovery_pb2.DiscoveryRequest) -> None:
        names = set(req.resource_names)
        first = not st.requested
        st.requested = True
        wildcard = (not names and (first or st.wildcard) and req.type_url in WILDCARD_TYPES) or "*" in names
        if first or wildcard != st.wildcard or (not wildcard and names != st.names):
            st.dirty = True
        st.wildcard = wildcard
        st.names = set() if wildcard else names

    def _delta_subscription(self, st: _Type, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        first = not st.requested
        st.requested = True
        sub, unsub = set(req.resource_names_subscribe), set(req.resource_names_unsubscribe)
        if first:
            st.sent.update(dict(req.initial_resource_versions))
            if req.type_url in WILDCARD_TYPES and not sub:
                st.wildcard = True
        if "*" in sub:
            st.wildcard = True
            sub.discard("*")
        if "*" in unsub:
            st.wildcard = False
            unsub.discard("*")
        st.names |= sub
        st.names -= unsub
        for n in unsub:
            st.sent.pop(n, None)
        if sub:
            for n in sub:  # (re)subscribing asks for the resource again
                st.sent.pop(n, None)
            st.dirty = True

    # ----- outputs -----------------------------------------------------------------------------
    def _wanted(self, t: str, st: _Type) -> dict[str, str]:
        d = self.digests[t]
        wanted = dict(d) if st.wildcard else {n: d[n] for n in st.names if n in d}
        if t in (CLUSTER, ENDPOINT) and not self._listeners_settled():
            # removals after additions: a cluster (and its endpoints) a listener or route may still
            # send traffic to stays until Envoy has ACKed the listeners and routes that stop using it
            for n, dig in st.sent.items():
                if st.wildcard or n in st.names:
                    wanted.setdefault(n, dig)
        return wanted

    def _listeners_settled(self) -> bool:
        for t in (LISTENER, ROUTE):
            st = self.types[t]
            if not st.requested:
                continue
            if st.pending_nonce or st.dirty:
                return False
            wanted = self._wanted(t, st)
            if self.delta:
                if any(st.sent.get(n) != dig for n, dig in wanted.items()) or \
                        any(n not in wanted for n in st.sent if st.wildcard or n in st.names):
                    return False
            elif wanted != st.sent:
                return False
        return True

    def _msg(self, t: str, name: str) -> Message:
        m = self.desired[t].get(name)
        return m if m is not None else self.sent_msgs[t][name]

    def responses(self) -> list[Any]:
        """What to send now, in ``TYPE_ORDER``; empty when nothing changed."""
        out: list[Any] = []
        if not self.ready:
            return out
        for t in TYPE_ORDER:
            st = self.types[t]
            if not st.requested:
                continue
            resp = self._delta_response(t, st) if self.delta else self._sotw_response(t, st)
            if resp is None:
                continue
            out.append(resp)
            # An updated cluster (listener) warms until Envoy gets its endpoints (routes) again,
            # and Envoy holds the ACK until then: re-send them right after, in the same batch.
            if t == CLUSTER:
                self._resend(ENDPOINT, {r.name for r in resp.resources} if self.delta else None)
            elif t == LISTENER:
                self._resend(ROUTE, None)
        return out

    def _resend(self, t: str, names: set[str] | None) -> None:
        st = self.types[t]
        if not st.requested:
            return
        if self.delta:
            for n in list(st.sent) if names is None else names:
                st.sent.pop(n, None)
        else:
            st.dirty = True

    def _next_nonce(self, st: _Type) -> str:
        self._nonce += 1
        st.pending_nonce = st.last_nonce = str(self._nonce)
        return st.pending_nonce

    def _sotw_response(self, t: str, st: _Type) -> discovery_pb2.DiscoveryResponse | None:
        wanted = self._wanted(t, st)
        if wanted == st.sent and not st.dirty:
            return None
        st.dirty = False
        st.sent = wanted
        st.version += 1
        resp = discovery_pb2.DiscoveryResponse(type_url=t, version_info=str(st.version))
        msgs = {name: self._msg(t, name) for name in sorted(wanted)}
        for m in msgs.values():
            a = resp.resources.add()
            a.Pack(m)
        self.sent_msgs[t] = msgs
        resp.nonce = self._next_nonce(st)
        return resp

    def _delta_response(self, t: str, st: _Type) -> discovery_pb2.DeltaDiscoveryResponse | None:
        wanted = self._wanted(t, st)
        changed = sorted(n for n, d in wanted.items() if st.sent.get(n) != d)
        scope = set(self.digests[t]) | st.names if st.wildcard else st.names
        removed = sorted(n for n in st.sent if n not in wanted and (st.wildcard or n in scope))
        st.dirty = False
        if not changed and not removed:
            return None
        st.version += 1
        resp = discovery_pb2.DeltaDiscoveryResponse(type_url=t, system_version_info=str(st.version))
        for n in changed:
            r = resp.resources.add()
            r.name, r.version = n, wanted[n]
            r.resource.CopyFrom(_pack(self._msg(t, n)))
            st.sent[n] = wanted[n]
        for n in removed:
            resp.removed_resources.append(n)
            st.sent.pop(n, None)
        resp.nonce = self._next_nonce(st)
        return resp

    def acked(self, t: str) -> bool:
        """Has Envoy ACKed (or NACKed) the last response of type ``t``?"""
        return not self.types[t].pending_nonce


def _pack(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a
