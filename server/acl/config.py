"""The agent's ``acl {}`` block, validated (the loader in common/config.py keeps it raw).

::

    acl {
      enabled                  = true
      default_policy           = "deny"          # allow | deny            (default allow)
      down_policy              = "extend-cache"  # allow | deny | extend-cache | async-cache
      token_ttl                = "30s"           # how long agents cache a resolved token
      enable_token_persistence = true            # keep tokens set by /v1/agent/token across restarts
      tokens {
        initial_management = "<secret>"          # created by the leader (legacy: master)
        agent              = "<secret>"          # the agent's own calls (anti-entropy ...)
        default            = "<secret>"          # requests that carry no token
        agent_recovery, replication, config_file_service_registration, dns
      }
    }

Servers keep one :class:`ACLConfig` per :class:`~lictor.server.server.Server` in a weak map
(:func:`configure` / :func:`acl_config`), so the Server class needs no new fields.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lictor.common.duration import parse_duration
from lictor.common.errors import ConfigError

__all__ = ["AGENT_TOKEN_TYPES", "ACLConfig", "acl_config", "configure", "parse_acl_config"]

AGENT_TOKEN_TYPES = ("default", "agent", "agent_recovery", "replication", "config_file_service_registration",
                     "dns")
_LEGACY_TOKENS = {"master": "initial_management", "agent_master": "agent_recovery"}
_KEYS = {"enabled", "default_policy", "down_policy", "token_ttl", "policy_ttl", "role_ttl",
         "enable_token_persistence", "enable_token_replication", "enable_key_list_policy", "tokens",
         "msp_disable_bootstrap"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLConfig:
    enabled: bool = False
    default_policy: str = "allow"
    down_policy: str = "extend-cache"
    token_ttl: float = 30.0
    enable_token_persistence: bool = False
    tokens: Mapping[str, str] = field(default_factory=dict)  # never logged: see __repr__

    @property
    def initial_management(self) -> str:
        return self.tokens.get("initial_management", "")

    def __repr__(self) -> str:
        return (f"ACLConfig(enabled={self.enabled}, default_policy={self.default_policy!r}, "
                f"down_policy={self.down_policy!r}, tokens=<{len(self.tokens)} hidden>)")


def _bool(v: Any, path: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ConfigError(f"expected true or false, got {v!r}", path=path)


def parse_acl_config(raw: Mapping[str, Any] | None) -> ACLConfig:
    raw = dict(raw or {})
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r}", path="acl")
    enabled = _bool(raw.get("enabled", False), "acl.enabled")
    default_policy = raw.get("default_policy", "allow")
    if default_policy not in ("allow", "deny"):
        raise ConfigError(f"invalid value {default_policy!r}: must be allow or deny", path="acl.default_policy")
    down_policy = raw.get("down_policy", "extend-cache")
    if down_policy not in ("allow", "deny", "extend-cache", "async-cache"):
        raise ConfigError(f"invalid value {down_policy!r}: must be allow, deny, extend-cache or async-cache",
                          path="acl.down_policy")
    ttl = raw.get("token_ttl", 30.0)
    try:
        token_ttl = float(ttl) if isinstance(ttl, int | float) else parse_duration(str(ttl), what="acl.token_ttl")
    except Exception as exc:  # noqa: BLE001 - reported as a config error
        raise ConfigError(str(exc), path="acl.token_ttl") from None
    tokens_raw = raw.get("tokens") or {}
    if isinstance(tokens_raw, list):
        merged: dict[str, Any] = {}
        for t in tokens_raw:
            merged.update(t)
        tokens_raw = merged
    if not isinstance(tokens_raw, Mapping):
        raise ConfigError("expected a block", path="acl.tokens")
    tokens: dict[str, str] = {}
    for k, v in tokens_raw.items():
        name = _LEGACY_TOKENS.get(k, k)
        if name not in AGENT_TOKEN_TYPES and name != "initial_management":
            raise ConfigError(f"unknown token type {k!r}", path="acl.tokens")
        if not isinstance(v, str):
            raise ConfigError("expected a string", path=f"acl.tokens.{k}")
        if v:
            tokens[name] = v
    return ACLConfig(enabled=enabled, default_policy=default_policy, down_policy=down_policy, token_ttl=token_ttl,
                     enable_token_persistence=_bool(raw.get("enable_token_persistence", False),
                                                    "acl.enable_token_persistence"),
                     tokens=tokens)


_CONFIGS: weakref.WeakKeyDictionary[Any, ACLConfig] = weakref.WeakKeyDictionary()


def configure(server: Any, config: ACLConfig) -> None:
    """Attach the ACL settings to a server (enforcement is off for servers never configured)."""
    _CONFIGS[server] = config


def acl_config(server: Any) -> ACLConfig | None:
    """The server's ACL settings, or None when ACLs are disabled."""
    cfg = _CONFIGS.get(server)
    return cfg if cfg is not None and cfg.enabled else None
