"""cancel_and_wait: every task is cancelled and finished before it returns; what a task raises
on its way out does not escape."""

from __future__ import annotations

import asyncio

from lictor.common.tasks import cancel_and_wait


async def test_cancels_and_waits_for_every_task() -> None:
    cleaned: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that needs a turn of the loop
            cleaned.append(name)

    async def raises_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("broke while stopping") from None

    tasks = [asyncio.create_task(loop("a")), asyncio.create_task(raises_on_cancel()), asyncio.create_task(loop("b"))]
    await asyncio.sleep(0)
    await cancel_and_wait(t for t in tasks)  # a generator is enough
    assert all(t.done() for t in tasks)
    assert sorted(cleaned) == ["a", "b"]
    assert isinstance(tasks[1].exception(), RuntimeError)
