"""Confirming writes from the actor's events rather than asking for each outcome.

The actor announces each write right after applying it: ``WriteApplied`` on
``ctxstore.event.<tenant>.<id>.<kind>``, ``WriteRejected`` on ``ctxstore.error.<tenant>.<id>.
<kind>``. A client listening on the subjects of the evolutions it writes learns the outcome
as soon as the actor knows it, so a confirmed write costs one round trip (the JetStream
acknowledgement) instead of two (that, then an outcome request).

Events reach a listener as plain NATS messages, so one can be missed (a reconnect, a slow
consumer, an evolution whose listener was dropped for a newer one). Whoever waits gives up
after a short grace and asks the actor, whose answer is authoritative.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Final

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts import Decoders, WriteApplied, WriteRejected, error_filter, event_filter

__all__ = ["Confirmations", "Outcome"]

Outcome = WriteApplied | WriteRejected

_EVOLUTIONS: Final = 64  # listeners kept, the most recently written evolutions
_REMEMBERED: Final = 4096  # outcomes kept for writes nobody waits for yet


class Confirmations:
    """Outcomes of writes, by stream sequence, for the evolutions a client listens to."""

    def __init__(
        self,
        nc: Client,
        tenant: str,
        *,
        evolutions: int = _EVOLUTIONS,
        remembered: int = _REMEMBERED,
    ) -> None:
        self._nc = nc
        self._tenant = tenant
        self._evolutions = evolutions
        self._remembered = remembered
        self._listeners: OrderedDict[str, tuple[Subscription, Subscription]] = OrderedDict()
        self._outcomes: OrderedDict[int, Outcome] = OrderedDict()
        self._waiting: dict[int, asyncio.Future[Outcome]] = {}
        self._closed = False

    async def listen(self, evolution_id: str) -> None:
        """Hear the outcomes of writes to ``evolution_id`` published after this call on the
        same connection (no flush needed: the server reads the subscription before them)."""
        if evolution_id in self._listeners:
            self._listeners.move_to_end(evolution_id)
            return
        applied = await self._nc.subscribe(
            event_filter(self._tenant, evolution_id), cb=self._on_event
        )
        rejected = await self._nc.subscribe(
            error_filter(self._tenant, evolution_id), cb=self._on_event
        )
        self._listeners[evolution_id] = (applied, rejected)
        while len(self._listeners) > self._evolutions:
            _, old = self._listeners.popitem(last=False)
            await _unsubscribe(old)

    async def outcome(self, seq: int, grace: float) -> Outcome | None:
        """The outcome of the write at ``seq``, if its event comes within ``grace`` seconds
        (``None`` at once once closed: the connection it listened on is gone)."""
        known = self._outcomes.pop(seq, None)
        if known is not None or self._closed:
            return known
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = fut
        try:
            async with asyncio.timeout(grace):
                return await fut
        except TimeoutError:
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if fut.cancelled() and task is not None and not task.cancelling():
                return None  # closed while waiting, not a cancellation of the caller
            raise
        finally:
            self._waiting.pop(seq, None)

    async def aclose(self) -> None:
        self._closed = True
        listeners, self._listeners = list(self._listeners.values()), OrderedDict()
        for pair in listeners:
            await _unsubscribe(pair)
        for fut in self._waiting.values():
            fut.cancel()

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = Decoders.event.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # not the actor's: nothing to confirm with it
        if not isinstance(event, WriteApplied | WriteRejected):
            return  # a pruned context is no write's outcome
        fut = self._waiting.pop(event.seq, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(event)
            return
        self._outcomes[event.seq] = event  # it may come before its writer asks
        while len(self._outcomes) > self._remembered:
            self._outcomes.popitem(last=False)


async def _unsubscribe(pair: tuple[Subscription, Subscription]) -> None:
    for sub in pair:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
