"""The console's pages: server-rendered HTML, live streams and the GraphQL API in one ASGI
app (Starlette).

Pages: ``/`` (evolutions, filtered by tenant, status, phase and target), and for one
evolution ``/evolutions/ID`` (its timeline), ``.../context?at=SEQ`` (the context at any
point of its history), ``.../compare`` (before / plan / after with the metrics delta) and
``.../diff?a=SEQ&b=SEQ``. Live: ``/live/evolutions`` and ``/live/evolutions/ID``
(server-sent events). API: ``/graphql`` (queries over HTTP, subscriptions over WebSocket).
Every page takes ``?tenant=``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from actors.client import (
    ContextStoreError,
    InvalidWriteError,
    RequestError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from actors.console.graphql import graphql_app
from actors.console.live import list_events, timeline_events
from actors.console.present import environment, side_summaries
from actors.console.reads import Console, EvolutionFilter, EvolutionRow, metric_rows
from contracts import Stage, Status
from contracts.history import HistoryEntry

__all__ = ["PAGE_SIZE", "create_app"]

log = logging.getLogger("ctxstore.console")

PAGE_SIZE: Final = 50
_STREAM_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _bad(message: str) -> InvalidWriteError:
    return InvalidWriteError(message)


_E = TypeVar("_E", Status, Stage)


def _choice(kind: type[_E], value: str | None, what: str) -> _E | None:
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(v.value for v in kind)
        raise _bad(f"{what} {value!r} is none of {allowed}") from None


def _point(value: str | None, what: str) -> int | datetime | None:
    """A version: a stream sequence (digits) or an ISO 8601 time (naive means UTC)."""
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        point = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"{what} {value!r} is neither a sequence number nor an ISO time") from None
    return point if point.tzinfo is not None else point.replace(tzinfo=UTC)


def _int(value: str | None, what: str, default: int, minimum: int = 0) -> int:
    if not value:
        return default
    if not value.isdigit() or int(value) < minimum:
        raise _bad(f"{what} must be a whole number of at least {minimum}, not {value!r}")
    return int(value)


def _examples(where: str) -> list[tuple[str, str]]:
    return [
        (
            "success rate below 0.5",
            f"{{\n  evolutions({where}successRateBelow: 0.5) {{\n"
            "    id targetPath status successRate createdAt\n  }\n}",
        ),
        (
            "running, by target",
            f'{{\n  evolutions({where}status: RUNNING, targetContains: "project") {{\n'
            "    id targetPath currentPhase version\n  }\n}",
        ),
        (
            "one evolution's writes",
            f"{{\n  evolutions({where}limit: 1) {{\n    id\n"
            "    history { seq time kind writer applied code reason }\n"
            "    comparison { metrics { name before after delta } }\n  }\n}",
        ),
    ]


def _status_of(exc: ContextStoreError) -> int:
    match exc:
        case RequestError():
            return exc.code.status
        case StoreTimeoutError():
            return 504
        case StoreUnavailableError():
            return 503
        case _:
            return 500


class _Pages:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.env = environment()

    def render(
        self, template: str, request: Request, code: int = 200, **values: Any
    ) -> HTMLResponse:
        tenant = self.console.tenant(request.query_params.get("tenant"))
        values.setdefault("tenant", tenant)
        values.setdefault("tenant_q", self.tenant_q(tenant))
        html = self.env.get_template(template).render(
            tenants=self.console.tenants, default_tenant=self.console.default_tenant, **values
        )
        return HTMLResponse(html, status_code=code)

    def tenant_q(self, tenant: str) -> dict[str, str]:
        """The query parameters that keep a link in this tenant."""
        return {} if tenant == self.console.default_tenant else {"tenant": tenant}

    def fragment(self, macro: str, *args: Any) -> str:
        """One macro of rows.html, rendered: the rows that live streams send."""
        return str(getattr(self.env.get_template("rows.html").module, macro)(*args))

    # -- the list --------------------------------------------------------------------------

    def _filter(self, request: Request) -> EvolutionFilter:
        q = request.query_params
        return EvolutionFilter(
            status=_choice(Status, q.get("status"), "status"),
            phase=_choice(Stage, q.get("phase"), "phase"),
            target_contains=q.get("target") or None,
        )

    def list_row(self, row: EvolutionRow, tenant_q: dict[str, str]) -> str:
        return self.fragment("evolution_row", row, tenant_q)

    async def evolutions(self, request: Request) -> Response:
        q = request.query_params
        tenant = self.console.tenant(q.get("tenant"))
        where = self._filter(request)
        page = _int(q.get("page"), "page", 1, minimum=1)
        summaries = await self.console.summaries(tenant)
        newest = max((s.version for s in summaries), default=0)
        everything = [EvolutionRow(tenant, s) for s in summaries if where.keeps_summary(s)]
        shown = everything[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        contexts = await self.console.contexts(tenant, [r.evolution_id for r in shown])
        rows = [EvolutionRow(tenant, r.summary, contexts.get(r.evolution_id)) for r in shown]
        filters = {
            "status": q.get("status", ""),
            "phase": q.get("phase", ""),
            "target": q.get("target", ""),
        }
        return self.render(
            "list.html",
            request,
            rows=rows,
            total=len(everything),
            page=page,
            pages=max(1, -(-len(everything) // PAGE_SIZE)),
            filters=filters,
            newest=newest,
            statuses=[s.value for s in Status],
            phases=[s.value for s in Stage],
        )

    async def live_list(self, request: Request) -> Response:
        tenant = self.console.tenant(request.query_params.get("tenant"))
        where = self._filter(request)
        tenant_q = self.tenant_q(tenant)
        after = _int(request.query_params.get("after"), "after", 0)
        resumed = request.headers.get("last-event-id", "")
        if resumed.isdigit():
            after = max(after, int(resumed))
        stream = list_events(
            self.console, tenant, where, after, lambda r: self.list_row(r, tenant_q)
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=_STREAM_HEADERS)

    # -- one evolution ---------------------------------------------------------------------

    def timeline_row(
        self, eid: str, entry: HistoryEntry, previous: int | None, tenant_q: dict[str, str]
    ) -> str:
        return self.fragment("timeline_row", eid, entry, previous, tenant_q)

    async def timeline(self, request: Request) -> Response:
        tenant = self.console.tenant(request.query_params.get("tenant"))
        eid = request.path_params["eid"]
        entries = await self.console.history(tenant, eid)
        ctx = await self.console.context(tenant, eid)
        return self.render(
            "timeline.html",
            request,
            ctx=ctx,
            head=ctx,
            entries=entries,
            rejected=sum(1 for e in entries if not e.applied),
            last_seq=entries[-1].seq if entries else 0,
            tab="timeline",
        )

    async def live_timeline(self, request: Request) -> Response:
        q = request.query_params
        tenant = self.console.tenant(q.get("tenant"))
        eid = request.path_params["eid"]
        self.console.store(tenant).context(eid)  # a bad id is a 400 now, not a broken stream
        after = _int(q.get("after"), "after", 0)
        resumed = request.headers.get("last-event-id", "")
        if resumed.isdigit():
            after = max(after, int(resumed))
        tenant_q = self.tenant_q(tenant)
        stream = timeline_events(
            self.console,
            tenant,
            eid,
            after,
            lambda entry, previous: self.timeline_row(eid, entry, previous, tenant_q),
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=_STREAM_HEADERS)

    async def context(self, request: Request) -> Response:
        q = request.query_params
        tenant = self.console.tenant(q.get("tenant"))
        eid = request.path_params["eid"]
        at = _point(q.get("at"), "at")
        entries = await self.console.history(tenant, eid)
        now = await self.console.context(tenant, eid)
        ctx = now if at is None else await self.console.context(tenant, eid, at)
        return self.render(
            "context.html",
            request,
            ctx=ctx,
            head=now,
            now=now,
            at=at,
            versions=[e for e in entries if e.version],
            tab="context",
        )

    async def compare(self, request: Request) -> Response:
        tenant = self.console.tenant(request.query_params.get("tenant"))
        eid = request.path_params["eid"]
        comparison = await self.console.comparison(tenant, eid)
        ctx = await self.console.context(tenant, eid)
        return self.render(
            "compare.html",
            request,
            ctx=ctx,
            head=ctx,
            comparison=comparison,
            sides=side_summaries(comparison, ctx.evaluation_results),
            metrics=metric_rows(comparison, ctx.evaluation_results),
            tab="compare",
        )

    async def diff(self, request: Request) -> Response:
        q = request.query_params
        tenant = self.console.tenant(q.get("tenant"))
        eid = request.path_params["eid"]
        entries = await self.console.history(tenant, eid)
        ctx = await self.console.context(tenant, eid)
        versions = [e for e in entries if e.version]
        a = _point(q.get("a"), "a")
        b = _point(q.get("b"), "b")
        if a is None:
            a = versions[-2].seq if len(versions) > 1 else (versions[0].seq if versions else 0)
        diff = await self.console.diff(tenant, eid, a, b)
        return self.render(
            "diff.html",
            request,
            ctx=ctx,
            head=ctx,
            diff=diff,
            versions=versions,
            b_given=b is not None,
            tab="diff",
        )

    async def query(self, request: Request) -> Response:
        tenant = self.console.tenant(request.query_params.get("tenant"))
        where = "" if tenant == self.console.default_tenant else f'tenant: "{tenant}", '
        return self.render("query.html", request, examples=_examples(where))

    # -- errors ----------------------------------------------------------------------------

    def error_page(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/live/"):
            return Response(message, status_code=status, media_type="text/plain")
        try:
            return self.render("error.html", request, status, status=status, message=message)
        except ContextStoreError:  # the tenant itself was the problem
            return self.render(
                "error.html",
                Request({**request.scope, "query_string": b""}),
                status,
                status=status,
                message=message,
            )

    async def store_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ContextStoreError)
        status = _status_of(exc)
        if status >= 500:
            log.warning("console: %s %s: %s", request.method, request.url.path, exc)
        return self.error_page(request, status, str(exc))

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.error_page(request, exc.status_code, str(exc.detail))

    async def crash(self, request: Request, exc: Exception) -> Response:
        log.exception("console: %s %s failed", request.method, request.url.path)
        return self.error_page(request, 500, f"internal error: {type(exc).__name__}")


def create_app(console: Console) -> Starlette:
    """The console as an ASGI app over an open ``Console`` (its owner closes it)."""
    pages = _Pages(console)
    api = graphql_app(console)
    routes = [
        Route("/", pages.evolutions),
        Route("/evolutions/{eid}", pages.timeline),
        Route("/evolutions/{eid}/context", pages.context),
        Route("/evolutions/{eid}/compare", pages.compare),
        Route("/evolutions/{eid}/diff", pages.diff),
        Route("/live/evolutions", pages.live_list),
        Route("/live/evolutions/{eid}", pages.live_timeline),
        Route("/query", pages.query),
        Route("/graphql", api, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", api),
        Mount("/static", StaticFiles(packages=[("actors.console", "static")]), name="static"),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ContextStoreError: pages.store_error,
            HTTPException: pages.http_error,
            Exception: pages.crash,
        },
    )
