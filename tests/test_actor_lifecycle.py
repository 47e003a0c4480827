"""The lifecycle every actor shares: a task the actor owns that fails stops the actor, and
whoever waits on it learns why (the store's command line exits on it, so a supervisor
restarts the actor instead of leaving it idle)."""

from __future__ import annotations

import asyncio

import pytest

from actors.runtime.actor import Actor, ActorStopped
from actors.runtime.cancel import cancel_until_done


class Worker(Actor):
    actor_name = "worker"

    def __init__(self, fail_with: Exception | None = None) -> None:
        super().__init__()
        self.fail_with = fail_with
        self.stopped = False
        self.go = asyncio.Event()

    async def on_start(self) -> None:
        self.spawn(self._work(), name="work")

    async def on_stop(self) -> None:
        self.stopped = True

    async def _work(self) -> None:
        await self.go.wait()
        if self.fail_with is not None:
            raise self.fail_with
        await asyncio.Event().wait()


async def test_a_failing_task_stops_the_actor_and_wait_raises_it() -> None:
    worker = Worker(fail_with=ValueError("a bug"))
    await worker.start()
    assert worker.running
    worker.go.set()
    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.timeout(5):
            await worker.wait()
    assert caught.group_contains(ValueError, match="a bug")
    assert worker.stopped
    assert not worker.running
    with pytest.raises(ActorStopped):
        worker.spawn(asyncio.sleep(0), name="late")
    with pytest.raises(ExceptionGroup):  # closing it reports the failure again
        await worker.aclose()
    assert worker.stopped


async def test_wait_returns_when_the_actor_is_closed() -> None:
    worker = Worker()
    await worker.start()
    waiting = asyncio.create_task(worker.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    await worker.aclose()
    async with asyncio.timeout(5):
        await waiting
    assert worker.stopped


async def _swallowing(times: int, swallowed: list[int]) -> None:
    """Waits for ever, going on after the first ``times`` cancellations: what a task does
    when Python 3.11's ``asyncio.wait_for`` (inside nats-py) swallows one."""
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if len(swallowed) >= times:
                raise
            swallowed.append(1)


async def test_a_task_that_swallows_cancellations_is_cancelled_until_it_ends() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(_swallowing(2, swallowed))
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await cancel_until_done([task])
    assert task.cancelled()
    assert len(swallowed) == 2


async def test_an_actor_whose_task_swallows_a_cancellation_still_stops() -> None:
    swallowed: list[int] = []

    class Stubborn(Actor):
        actor_name = "stubborn"

        async def on_start(self) -> None:
            self.spawn(_swallowing(1, swallowed), name="stubborn")

        async def on_stop(self) -> None:
            pass

    actor = Stubborn()
    await actor.start()
    async with asyncio.timeout(10):
        await actor.aclose()
    assert not actor.running
    assert swallowed == [1]
