"""Server-side enforcement: one call per endpoint.

::

    args["token"] --resolve (store, cached per ACL index)--> Identity --+ default_policy--> Authorizer
    authorize(server, args, "key", key, "write")   raises PermissionDeniedError naming the permission
    filter_allowed(server, args, rows, "service", lambda r: r["ServiceName"])   new list, never in place

When ACLs are disabled (no ``acl { enabled = true }``) every helper is a no-op returning None.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from lictor.common.errors import PermissionDeniedError
from lictor.server.acl.authorizer import Authorizer
from lictor.server.acl.config import acl_config
from lictor.server.acl.state import resolve_identity

__all__ = ["authorize", "authorizer_for", "denied", "filter_allowed", "require"]

T = TypeVar("T")


def authorizer_for(server: Any, token: str | None) -> Authorizer | None:
    """The Authorizer for ``token`` on this server, or None when ACLs are disabled. Raises
    ACLNotFoundError for an unknown or expired token."""
    cfg = acl_config(server)
    if cfg is None:
        return None
    secret = token or cfg.tokens.get("default", "")
    ident = resolve_identity(server.store, secret, now=time.time(), datacenter=server.config.datacenter)
    return ident.authorizer(cfg.default_policy)


def denied(authz: Authorizer, resource: str, access: str, name: str | None = None) -> PermissionDeniedError:
    perm = f"{resource}:{access}"
    on = f' on "{name}"' if name is not None else ""
    exc = PermissionDeniedError(f"Permission denied: token with AccessorID '{authz.accessor_id}' "
                                f"lacks permission '{perm}'{on}")
    exc.permission = perm  # type: ignore[attr-defined]
    return exc


def require(authz: Authorizer | None, resource: str, access: str, name: str | None = None) -> None:
    if authz is not None and not authz.allowed(resource, access, name or ""):
        raise denied(authz, resource, access, name)


def authorize(server: Any, args: dict[str, Any], resource: str, name: str | None, access: str) -> Authorizer | None:
    """Resolve ``args["token"]`` and require ``resource:access`` on ``name`` (None for resources
    without names). Returns the authorizer (None when ACLs are off) for further checks."""
    authz = authorizer_for(server, args.get("token"))
    require(authz, resource, access, name)
    return authz


def authorize_sign(server: Any, token: str, service: str) -> None:
    """The Connect CA's signing check: a leaf for ``service`` needs service:write on it
    (Consul's ConnectCA.Sign rule). The default ``Server.sign_authorizer``."""
    authorize(server, {"token": token}, "service", service, "write")


def filter_allowed(authz: Authorizer | None, rows: Iterable[T], resource: str,
                   name_of: Callable[[T], str], access: str = "read") -> list[T]:
    """The rows the authorizer may read, as a new list (shared results are never mutated)."""
    if authz is None:
        return rows if isinstance(rows, list) else list(rows)
    return [r for r in rows if authz.allowed(resource, access, name_of(r))]
