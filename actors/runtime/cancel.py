"""Cancelling tasks so that they do stop.

On Python 3.11, ``asyncio.wait_for`` (which nats-py uses for its requests and for
``next_msg``) swallows a cancellation that arrives just as its future completes: the task
goes on as if nothing had been asked. A loop that awaits nats-py all the time (a standby
following the stream, the lease keeper) then never ends, and whoever waits for it waits for
ever. ``cancel_until_done`` asks again until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_until_done"]

RECANCEL_AFTER_S = 0.5


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks``, and again those still running ``RECANCEL_AFTER_S`` later, until
    every one has ended. Their results and exceptions are left to their owner."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
