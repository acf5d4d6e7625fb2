"""The agent's side of ACLs: which secret a request or an internal call uses, and secret ->
Authorizer with a cache and the ``down_policy``.

::

    HTTP request --?token | X-Consul-Token | Authorization: Bearer | agent "default" token-->
        AgentACL.resolve(secret)
            server agent: resolved from the local store (authoritative, cached per ACL index)
            client agent: ACLCache --rpc ACL.ResolveToken (stale ok)--> cached for token_ttl
                           servers unreachable -> down_policy: allow | deny | extend-cache | async-cache

``current_token`` (a ContextVar) carries the request's secret into ``Agent.rpc`` so every RPC
made while serving a request is authorized as that request; calls outside a request use the
agent token (``acl.tokens.agent``, else ``default``). Background tasks start in an empty context
(``lictor.common.tasks.spawn``) so they never inherit a requester's secret; work done for a
service or check passes that service's or check's own token explicitly (anti-entropy does).

Secrets are never logged and never used as dictionary keys in the clear (SHA-256 digests are).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lictor.common.errors import ACLNotFoundError, PermissionDeniedError, RPCError, ValidationError
from lictor.server.acl.authorizer import Authorizer
from lictor.server.acl.config import AGENT_TOKEN_TYPES, ACLConfig
from lictor.server.acl.rules import policy_from_dict

__all__ = ["ACLCache", "AgentACL", "current_token", "token_from_request"]

log = logging.getLogger("lictor.acl")

current_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("lictor_acl_token", default=None)

Fetch = Callable[[str], Awaitable[dict[str, Any]]]


def token_from_request(headers: Any, query: Any) -> str:
    """The one place a request's token is read. Consul's order (``parseTokenInternal``):
    ``?token``, then ``X-Consul-Token``, then ``Authorization: Bearer <token>``; "" for none.

    The HTTP layer calls this once per request (``acl_enforce.enforce``) and keeps the answer
    in ``req["lictor_acl_secret"]``; handlers read it back with ``request_token``, so a request
    is authorized with the same token it stores."""
    tok = str(query.get("token", "") or "").strip()
    if tok:
        return tok
    tok = str(headers.get("X-Consul-Token", "") or "").strip()
    if tok:
        return tok
    scheme, _, value = str(headers.get("Authorization", "") or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        parts = value.split()
        return parts[0] if parts else ""
    return ""


@dataclass(slots=True)
class _Entry:
    identity: dict[str, Any] | None  # None: the token was not found
    fetched: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ACLCache:
    """Secret -> Authorizer for an agent that asks servers over RPC.

    A fresh entry (younger than ``ttl``) is used as is. Otherwise the servers are asked; if they
    cannot be reached (an RPCError that is not an ACL answer) the ``down_policy`` decides:
    ``allow`` -> allow everything but ACL management; ``deny`` -> deny everything;
    ``extend-cache`` / ``async-cache`` -> the stale entry if there is one, else deny.
    """

    def __init__(self, *, fetch: Fetch, default_policy: str, down_policy: str, ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self.default_policy = default_policy
        self.down_policy = down_policy
        self.ttl = ttl
        self._clock = clock
        self._wall = wall
        self._entries: dict[str, _Entry] = {}

    def invalidate(self, secret: str | None = None) -> None:
        if secret is None:
            self._entries.clear()
        else:
            self._entries.pop(_digest(secret), None)

    def _build(self, ident: dict[str, Any] | None) -> Authorizer:
        if ident is None:
            raise ACLNotFoundError()
        exp = ident.get("expires")
        if exp is not None and exp <= self._wall():
            raise ACLNotFoundError()
        if ident.get("management"):
            return Authorizer(None, default=self.default_policy, management=True, accessor_id=ident["accessor_id"])
        return Authorizer(policy_from_dict(ident.get("policy") or {}), default=self.default_policy,
                          accessor_id=ident["accessor_id"])

    async def resolve(self, secret: str) -> Authorizer:
        key = _digest(secret)
        ent = self._entries.get(key)
        now = self._clock()
        if ent is not None and now - ent.fetched < self.ttl:
            return self._build(ent.identity)
        try:
            ident: dict[str, Any] | None = (await self._fetch(secret))["result"]
        except (ACLNotFoundError, PermissionDeniedError):
            ident = None
        except RPCError as exc:
            return self._down(ent, exc)
        self._entries[key] = _Entry(ident, now)
        return self._build(ident)

    def _down(self, ent: _Entry | None, exc: Exception) -> Authorizer:
        log.warning("ACL resolution failed, applying down_policy=%s: %s", self.down_policy, type(exc).__name__)
        if self.down_policy == "allow":
            return Authorizer(None, default="allow", accessor_id="")
        if self.down_policy in ("extend-cache", "async-cache") and ent is not None:
            return self._build(ent.identity)
        return Authorizer(None, default="deny", accessor_id="")


class AgentACL:
    """The agent's ACL settings and run-time tokens; resolves secrets to Authorizers."""

    def __init__(self, config: ACLConfig, *, server: Any = None, rpc: Any = None, data_dir: str = "") -> None:
        self.config = config
        self.enabled = config.enabled
        self._server = server
        self.tokens: dict[str, str] = {k: v for k, v in config.tokens.items() if k in AGENT_TOKEN_TYPES}
        self._path = os.path.join(data_dir, "acl-tokens.json") if data_dir and config.enable_token_persistence else ""
        self._load_persisted()
        self.cache = ACLCache(fetch=self._fetch, default_policy=config.default_policy,
                              down_policy=config.down_policy, ttl=config.token_ttl) if rpc is not None else None
        self._rpc = rpc

    def __repr__(self) -> str:
        return f"AgentACL(enabled={self.enabled}, tokens=<{len(self.tokens)} hidden>)"

    async def _fetch(self, secret: str) -> dict[str, Any]:
        assert self._rpc is not None
        return await self._rpc("ACL.ResolveToken", {"token": secret, "stale": True})  # type: ignore[no-any-return]

    # ----- tokens ------------------------------------------------------------------------------
    def default_token(self) -> str:
        return self.tokens.get("default", "")

    def agent_token(self) -> str:
        return self.tokens.get("agent") or self.tokens.get("default", "")

    def set_token(self, kind: str, secret: str) -> None:
        kind = {"acl_token": "default", "acl_agent_token": "agent", "agent_master": "agent_recovery",
                "acl_agent_master_token": "agent_recovery", "acl_replication_token": "replication"}.get(kind, kind)
        if kind not in AGENT_TOKEN_TYPES:
            raise ValidationError(f"Token {kind!r} is unknown")
        if secret:
            self.tokens[kind] = secret
        else:
            self.tokens.pop(kind, None)
        self._persist()
        log.info("updated agent ACL token: %s", kind)  # the kind only, never the secret

    def _load_persisted(self) -> None:
        if not self._path or not os.path.exists(self._path):
            return
        try:
            with open(self._path, encoding="utf-8") as f:
                saved = json.load(f)
            for k, v in saved.items():
                if k in AGENT_TOKEN_TYPES and isinstance(v, str) and v:
                    self.tokens[k] = v
        except (OSError, ValueError) as exc:
            log.warning("could not read persisted ACL tokens: %s", type(exc).__name__)

    def _persist(self) -> None:
        if not self._path:
            return
        tmp = self._path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.tokens, f)
        os.replace(tmp, self._path)

    # ----- resolution --------------------------------------------------------------------------
    async def resolve(self, secret: str) -> Authorizer | None:
        """The Authorizer of ``secret`` ("" = the default token, else anonymous); None when ACLs
        are disabled. Raises ACLNotFoundError for an unknown or expired token."""
        if not self.enabled:
            return None
        secret = secret or self.default_token()
        if self._server is not None:
            from lictor.server.acl.state import resolve_identity

            ident = resolve_identity(self._server.store, secret, now=time.time(),
                                     datacenter=self._server.config.datacenter)
            return ident.authorizer(self.config.default_policy)
        assert self.cache is not None
        return await self.cache.resolve(secret)
