"""Background tasks that start clean.

A task created while a request is being served inherits the request's ContextVars, including
the ACL token the HTTP layer put there (``lictor.agent.acl_cache.current_token``): a check, a
leaf-certificate renewal or a watcher started by that request would act with the requester's
secret for as long as it lives. :func:`spawn` starts a task in a fresh, empty context, so
background work carries only the identities it is given explicitly.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

__all__ = ["cancel_and_wait", "spawn"]

T = TypeVar("T")


def spawn(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """``create_task`` on the running loop with an empty ``contextvars.Context``."""
    return asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait for each to finish. What a task raised on its way out is
    dropped: this is for shutting background loops down, whose errors were logged as they
    happened."""
    pending = list(tasks)
    for t in pending:
        t.cancel()
    for t in pending:
        try:
            await t
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
