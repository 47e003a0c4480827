"""Live updates for the pages: server-sent events fed by the client's ``watch_outcomes()``.

A stream subscribes first and reads second, so nothing falls between what a page showed and
what the stream sends. The watch only wakes the stream: what it sends is read from the
store (a timeline's entries from the history, a list's rows from the summaries), so a live
row is the row a reload would show. Each event carries an ``id`` (a timeline's write
sequence), and a browser that reconnects sends it back as ``Last-Event-ID``: the stream goes
on after it, with nothing lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Final, Self

from actors.client import ContextNotFoundError, ContextStoreError, OutcomeWatch
from actors.console.reads import Console, EvolutionFilter, EvolutionRow
from contracts import EvolutionContext, WriteApplied, WriteRejected
from contracts.history import HistoryEntry

__all__ = ["KEEPALIVE_S", "list_events", "sse", "timeline_events"]

log = logging.getLogger("ctxstore.console")

KEEPALIVE_S: Final = 15.0
"""A comment line this often keeps idle connections (and proxies) open."""
RETRY_MS: Final = 2000
"""How soon a browser reconnects after losing the stream."""


def sse(event: str, data: Any, *, id: int | None = None) -> str:
    """One server-sent event; ``data`` as JSON on one line."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class _Pump:
    """Owns the task that reads a watch; ``wait`` returns once something happened (True),
    or after the keepalive interval or when the console closes (False)."""

    def __init__(self, watch: OutcomeWatch, closing: asyncio.Event) -> None:
        self._watch = watch
        self._closing = closing
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.changed: dict[str, WriteApplied | WriteRejected] = {}
        self.failure: ContextStoreError | None = None

    async def __aenter__(self) -> Self:
        await self._watch.open()  # subscribed before the caller reads anything
        self._task = asyncio.create_task(self._run(), name="console-live-watch")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._watch.aclose()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            async for event in self._watch:
                self.changed[event.evolution_id] = event
                self._wake.set()
        except ContextStoreError as exc:
            self.failure = exc
            self._wake.set()

    def take(self) -> dict[str, WriteApplied | WriteRejected]:
        changed, self.changed = self.changed, {}
        self._wake.clear()
        return changed

    async def wait(self) -> bool:
        waiters = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._closing.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self._wake.is_set() and not self._closing.is_set()


def _state(source: EvolutionContext | WriteApplied) -> dict[str, Any]:
    status = source.status
    phase = source.current_phase
    return {
        "status": None if status is None else status.value,
        "phase": None if phase is None else phase.value,
        "version": source.version,
    }


async def timeline_events(
    console: Console,
    tenant: str,
    evolution_id: str,
    after: int,
    render_entry: Callable[[HistoryEntry, int | None], str],
) -> AsyncIterator[str]:
    """One evolution's writes after sequence ``after``, as they are judged: ``entry``
    events (``{seq, html}``, id = the sequence) and ``state`` events (status, phase,
    version); a ``gone`` event (``{message}``) if the evolution does not exist."""
    yield f"retry: {RETRY_MS}\n\n"
    try:
        async for chunk in _timeline(console, tenant, evolution_id, after, render_entry):
            yield chunk
    except ContextNotFoundError as exc:
        yield sse("gone", {"message": str(exc)})
    except ContextStoreError as exc:
        # The store is away or slow: end here, and the browser reconnects after RETRY_MS.
        log.info("live timeline of %s ends: %s", evolution_id, exc)
    except Exception:  # a bug ends this stream only, never the console
        log.exception("live timeline of %s failed", evolution_id)


async def _timeline(
    console: Console,
    tenant: str,
    evolution_id: str,
    after: int,
    render_entry: Callable[[HistoryEntry, int | None], str],
) -> AsyncIterator[str]:
    async with _Pump(console.watch(tenant, evolution_id), console.closing) as pump:
        last = after
        first = True
        while True:
            # Taken before reading: a write announced while reading wakes the next round.
            changed = pump.take()
            entries = await console.history(tenant, evolution_id)
            fresh = [e for e in entries if e.seq > last]
            previous = max((e.seq for e in entries if e.seq <= last), default=None)
            for entry in fresh:
                html = render_entry(entry, previous)
                yield sse("entry", {"seq": entry.seq, "html": html}, id=entry.seq)
                previous = last = entry.seq
            event = changed.get(evolution_id)
            if isinstance(event, WriteApplied):
                yield sse("state", _state(event))
            elif fresh and first:
                # Caught up on writes no event of this stream told about: read the state.
                yield sse("state", _state(await console.context(tenant, evolution_id)))
            first = False
            if pump.failure is not None:
                log.info("live timeline of %s ends: %s", evolution_id, pump.failure)
                return  # the browser reconnects and goes on after the last id
            while not await pump.wait():
                if console.closing.is_set():
                    return
                yield ": keepalive\n\n"


async def list_events(
    console: Console,
    tenant: str,
    where: EvolutionFilter,
    after: int,
    render_row: Callable[[EvolutionRow], str],
) -> AsyncIterator[str]:
    """Rows of the evolutions list that changed after version ``after`` (the newest
    version the page knew of): ``row`` events (``{id, html}``; ``html`` null when the
    evolution no longer passes the filter or is gone), their id the newest version seen."""
    yield f"retry: {RETRY_MS}\n\n"
    try:
        async for chunk in _list(console, tenant, where, after, render_row):
            yield chunk
    except ContextStoreError as exc:
        log.info("live list of %s ends: %s", tenant, exc)
    except Exception:  # a bug ends this stream only, never the console
        log.exception("live list of %s failed", tenant)


async def _list(
    console: Console,
    tenant: str,
    where: EvolutionFilter,
    after: int,
    render_row: Callable[[EvolutionRow], str],
) -> AsyncIterator[str]:
    async with _Pump(console.watch(tenant), console.closing) as pump:
        last = after
        while True:
            # Every context written after `last` (a rejected write moves a version too),
            # and those the watch told of that are gone from the list.
            told = pump.take()
            summaries = {s.evolution_id: s for s in await console.summaries(tenant)}
            moved = [eid for eid, s in summaries.items() if s.version > last]
            gone = [eid for eid in told if eid not in summaries]
            last = max([last, *(s.version for s in summaries.values())])
            contexts = await console.contexts(tenant, moved)
            for eid in [*moved, *gone]:
                summary = summaries.get(eid)
                ctx = contexts.get(eid)
                html = None
                if (
                    summary is not None
                    and ctx is not None
                    and where.keeps_summary(summary)
                    and where.keeps_context(ctx)
                ):
                    html = render_row(EvolutionRow(tenant, summary, ctx))
                yield sse("row", {"id": eid, "html": html}, id=last)
            if pump.failure is not None:
                log.info("live list of %s ends: %s", tenant, pump.failure)
                return
            while not await pump.wait():
                if console.closing.is_set():
                    return
                yield ": keepalive\n\n"
