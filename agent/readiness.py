"""When a running agent counts as serving, for systemd's ``READY=1`` (lictor.common.sdnotify).

Rules (issue 10): a client agent serves once its HTTP listeners are up, which is true when
``Agent.start()`` returns. A server serves once it knows a leader (itself or another) or has
joined at least one other agent through gossip: a server alone with ``bootstrap_expect = 3``
has neither, and systemd keeps it "activating" with a STATUS line saying what it waits for.

``serving_status`` decides from one look at the agent and returns the sentence for ``STATUS=``;
``notify_until_stopped`` sends ``READY=1`` once, then keeps ``STATUS=`` current.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lictor.common.sdnotify import Notifier

__all__ = ["notify_until_stopped", "serving_status"]


def serving_status(agent: Any) -> tuple[bool, str]:
    """(serving?, one-line status) for ``agent`` (a started lictor.agent.agent.Agent)."""
    alive = agent.membership.size()
    if agent.server is None:
        servers = len(agent.membership.servers())
        return True, f"client agent serving; {alive} members alive, {servers} servers known"
    leader = agent.server.log.leader() or ""
    if leader:
        return True, f"server serving; leader {leader}; {alive} members alive"
    if alive > 1:
        return True, f"server joined {alive} members; no leader yet"
    expect = agent.config.bootstrap_expect
    return False, (f"server waiting for a leader or a peer to join (bootstrap_expect={expect}, "
                   f"retry_join={len(agent.config.retry_join)} addresses)")


async def notify_until_stopped(agent: Any, notifier: Notifier, *, interval: float = 0.1,
                               status_interval: float = 1.0) -> None:
    """Send READY=1 once ``agent`` serves, then STATUS= whenever the sentence changes. Runs until
    cancelled. Does nothing (returns at once) when not under systemd."""
    if not notifier.enabled:
        return
    last = ""
    while True:
        ok, status = serving_status(agent)
        if ok:
            notifier.ready(status)
            last = status
            break
        if status != last:
            notifier.status(status)
            last = status
        await asyncio.sleep(interval)
    while True:
        await asyncio.sleep(status_interval)
        _, status = serving_status(agent)
        if status != last:
            notifier.status(status)
            last = status
