"""AliasCheck with a scripted blocking-query source and a ManualClock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from lictor.agent.checks.alias import AliasCheck, aggregate_alias
from lictor.agent.checks.testing import RecordingNotifier
from lictor.common.clock import ManualClock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus

P, W, C, M = (
    HealthStatus.PASSING,
    HealthStatus.WARNING,
    HealthStatus.CRITICAL,
    HealthStatus.MAINTENANCE,
)

Answer = tuple[int, Sequence[HealthStatus] | None] | Exception


class ScriptedSource:
    """Answers blocking queries from a queue; records the min_index of every call."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Answer] = asyncio.Queue()
        self.asked: list[int] = []

    async def __call__(self, min_index: int) -> tuple[int, Sequence[HealthStatus] | None]:
        self.asked.append(min_index)
        answer = await self.queue.get()
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (None, (C, "gone")),
        ([], (P, "No checks found.")),
        ([P, P], (P, "All checks passing.")),
        ([P, W], (W, "Aliased checks failing: 0 critical, 1 warning of 2")),
        ([W, C, P], (C, "Aliased checks failing: 1 critical, 1 warning of 3")),
        ([M, P], (C, "Aliased checks failing: 1 critical, 0 warning of 2")),
    ],
)
def test_aggregate(
    statuses: list[HealthStatus] | None, expected: tuple[HealthStatus, str]
) -> None:
    assert aggregate_alias(statuses, not_found="gone") == expected


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_follows_the_source_with_increasing_indexes(notifier: RecordingNotifier) -> None:
    source = ScriptedSource()
    c = AliasCheck(check_id="a", notifier=notifier, source=source, alias_service="web")
    c.start()
    await source.queue.put((5, [P]))
    await settle()
    assert notifier.status("a") == P
    await source.queue.put((9, [P, C]))
    await settle()
    assert notifier.status("a") == C
    await source.queue.put((9, [P, C]))  # a blocking query that timed out: nothing new
    await settle()
    assert notifier.updates("a") == 2
    await source.queue.put((3, None))  # the index went backwards (e.g. a restored snapshot)
    await settle()
    assert notifier.last("a").status == C  # type: ignore[union-attr]
    assert notifier.output("a") == "Service web could not be found"
    await c.stop()
    assert source.asked == [0, 5, 9, 9, 0]


async def test_errors_back_off_exponentially_on_the_clock(notifier: RecordingNotifier) -> None:
    source = ScriptedSource()
    clock = ManualClock()
    c = AliasCheck(
        check_id="a",
        notifier=notifier,
        source=source,
        alias_node="n1",
        clock=clock,
        backoff_min=1,
        backoff_max=4,
    )
    c.start()
    for _ in range(4):
        await source.queue.put(RuntimeError("no leader"))
    await source.queue.put((7, None))
    await settle()
    assert len(source.asked) == 1
    for calls, wait in [(2, 1), (3, 2), (4, 4), (5, 4)]:  # doubling, capped at backoff_max
        await clock.advance(wait - 0.01)
        assert len(source.asked) == calls - 1
        await clock.advance(0.01)
        assert len(source.asked) >= calls
    # The fifth call succeeded, so the check went straight on to block at index 7.
    assert source.asked == [0, 0, 0, 0, 0, 7]
    assert notifier.status("a") == C
    assert notifier.output("a") == "Node n1 could not be found"
    await c.stop()


def test_needs_a_target(notifier: RecordingNotifier) -> None:
    with pytest.raises(ConfigError):
        AliasCheck(check_id="a", notifier=notifier, source=ScriptedSource())
