"""The web console over HTTP: pages, live streams (server-sent events), the GraphQL API and
its WebSocket subscription, the command, against a real store. The browser test is in
test_console_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from consolekit import console_for, record_evolution, reject_write, served_console
from nats.aio.client import Client

from actors import SharedContextStore
from actors.console import Console, ConsoleServer, create_app
from broker import EmbeddedServer, StoreConfig
from contracts import EvolutionContext, Stage

__all__ = ["served_console"]  # the fixture, imported for pytest

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 10.0


@pytest.fixture
async def http(served_console: tuple[Console, str]) -> AsyncIterator[httpx.AsyncClient]:
    _, url = served_console
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
        yield client


def rows_of(html: str, prefix: str) -> list[str]:
    return re.findall(rf'<tr id="{prefix}([^"]+)"', html)


async def graphql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    reply = await http.post("/graphql", json={"query": query, "variables": variables})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any, str | None]]:
    """(event, data, id) of a server-sent event stream, comments skipped."""
    event, data, last_id = "message", "", None
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, json.loads(data), last_id
            event, data, last_id = "message", "", None
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line.startswith("id: "):
            last_id = line[4:]


async def next_event(
    stream: AsyncIterator[tuple[str, Any, str | None]], kind: str
) -> tuple[Any, str | None]:
    async with asyncio.timeout(WAIT_S):
        async for event, data, event_id in stream:
            if event == kind:
                return data, event_id
    raise AssertionError(f"the stream ended before a {kind!r} event")


# -- pages ---------------------------------------------------------------------------------


async def test_list_shows_evolutions_newest_first_and_filters_them(
    http: httpx.AsyncClient, store: SharedContextStore, nc: Client, config: StoreConfig
) -> None:
    done = await record_evolution(store, nc, "/src/alpha", success_rate=0.3)
    running = await record_evolution(store, nc, "/src/beta", success_rate=0.9, complete=False)
    async with SharedContextStore(config=config.replace(tenant="other")) as other:
        elsewhere = await other.create_context("/src/alpha")

    page = await http.get("/")
    assert page.status_code == 200
    assert rows_of(page.text, "row-") == [running.evolution_id, done.evolution_id]
    assert "30.0%" in page.text  # the completed one's success rate
    assert rows_of((await http.get("/?status=completed")).text, "row-") == [done.evolution_id]
    assert rows_of((await http.get("/?phase=planning")).text, "row-") == [running.evolution_id]
    assert rows_of((await http.get("/?target=BETA")).text, "row-") == [running.evolution_id]
    assert rows_of((await http.get("/?tenant=other")).text, "row-") == [elsewhere]
    # Links keep the tenant.
    assert f'href="/evolutions/{elsewhere}?tenant=other"' in (await http.get("/?tenant=other")).text

    bad = await http.get("/?status=finished")
    assert bad.status_code == 400
    assert "status 'finished' is none of pending, running, completed, failed" in unescape(bad.text)
    assert (await http.get("/?tenant=no.dots")).status_code == 400
    assert (await http.get("/?page=0")).status_code == 400


async def test_timeline_lists_every_write_with_who_when_and_why_rejected(
    http: httpx.AsyncClient, store: SharedContextStore, nc: Client
) -> None:
    rec = await record_evolution(store, nc, "/src/alpha", success_rate=0.3)
    history = await store.history(rec.evolution_id)

    page = await http.get(f"/evolutions/{rec.evolution_id}")
    assert page.status_code == 200
    assert rows_of(page.text, "w") == [str(e.seq) for e in history]
    row = page.text.split(f'<tr id="w{rec.rejected_seq}"', 1)[1].split("</tr>", 1)[0]
    assert 'class="rejected"' in page.text.split(f'<tr id="w{rec.rejected_seq}"', 1)[1][:30]
    assert "<code>invalid</code>" in row
    assert "files_analyzed" in row  # the reason
    assert "agent-a" in page.text  # the writer
    assert f"{len(history)}</span> writes" in page.text


async def test_context_page_shows_the_context_at_any_version(
    http: httpx.AsyncClient, store: SharedContextStore, nc: Client
) -> None:
    rec = await record_evolution(store, nc, "/src/alpha", success_rate=0.3)
    history = await store.history(rec.evolution_id)
    planning = next(e for e in history if e.stage == Stage.PLANNING)
    then: EvolutionContext = await store.get_context(rec.evolution_id, at=planning.seq)

    page = await http.get(f"/evolutions/{rec.evolution_id}/context?at={planning.seq}")
    assert page.status_code == 200
    assert f"The context as it was at <strong>version {planning.seq}</strong>" in page.text
    assert "status running, phase planning" in page.text
    assert 'id="phase-improvement_plan">' in page.text  # closed: not written then
    assert "not written" in page.text.split('id="phase-improvement_plan"', 1)[1][:300]
    assert then.error_log[0] in unescape(page.text)  # the rejection, logged before planning
    # The header is the evolution now; the same page without ?at= is the context now.
    now = await http.get(f"/evolutions/{rec.evolution_id}/context")
    assert "The context as it was" not in now.text
    assert '"success_rate": 0.3' in unescape(now.text)
    # A time works as a version too.
    at_time = planning.time.isoformat().replace("+00:00", "Z")
    by_time = await http.get(f"/evolutions/{rec.evolution_id}/context", params={"at": at_time})
    assert f"version {planning.seq}</strong>" in by_time.text

    assert (await http.get(f"/evolutions/{rec.evolution_id}/context?at=soon")).status_code == 400
    assert (
        await http.get(f"/evolutions/{rec.evolution_id}/context?at=2000-01-01T00:00:00")
    ).status_code == 404
    assert (await http.get("/evolutions/evo-none/context")).status_code == 404


async def test_comparison_page_shows_three_sides_and_the_metrics_delta(
    http: httpx.AsyncClient, store: SharedContextStore, nc: Client
) -> None:
    rec = await record_evolution(store, nc, "/src/alpha", success_rate=0.3)
    page = await http.get(f"/evolutions/{rec.evolution_id}/compare")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    assert "<dt>files analysed</dt><dd>3</dd>" in text
    assert "<dt>tasks</dt><dd>1</dd>" in text
    assert "<dt>estimated impact</dt><dd>0.6</dd>" in text
    assert "<dt>tests</dt><dd>7 passed, 0 failed</dd>" in text  # measured after implementation
    assert "<dt>goals achieved</dt><dd>0 of 1</dd>" in text
    assert "<dt>success rate</dt><dd>30.0%</dd>" in text
    metrics = text.split('id="metrics"', 1)[1]
    assert re.search(
        r"<code>docstring_coverage</code></td> ?<td class=\"num\">0.25</td> ?"
        r"<td class=\"num\">0.75</td> ?<td class=\"num delta up\">\+0.5</td>",
        metrics,
    ), metrics[:2000]
    assert re.search(r"<code>complexity</code>.*?delta down\">-0.5<", metrics)

    # Before the evaluation: the analysis's metrics alone, and an empty 'after'.
    early = await record_evolution(store, nc, "/src/beta", success_rate=0.0, complete=False)
    page = await http.get(f"/evolutions/{early.evolution_id}/compare")
    assert "not written yet" in page.text
    assert "<code>lines</code>" in page.text


async def test_diff_page_lists_what_changed_between_two_versions(
    http: httpx.AsyncClient, store: SharedContextStore, nc: Client
) -> None:
    rec = await record_evolution(store, nc, "/src/alpha", success_rate=0.3)
    history = [e for e in await store.history(rec.evolution_id) if e.applied]
    a, b = history[2].seq, history[6].seq
    expected = await store.diff(rec.evolution_id, a, b)

    page = await http.get(f"/evolutions/{rec.evolution_id}/diff?a={a}&b={b}")
    assert page.status_code == 200
    assert f"Version {a} → {b}: {len(expected.changes)} changes." in page.text
    shown = re.findall(r'<td class="path"><code>([^<]+)</code>', page.text)
    assert shown == [c.path for c in expected.changes]
    # Default: the version before the last against now.
    default = await http.get(f"/evolutions/{rec.evolution_id}/diff")
    assert f"Version {history[-2].seq} → {history[-1].seq}:" in default.text
    assert (await http.get(f"/evolutions/{rec.evolution_id}/diff?a=x")).status_code == 400


async def test_errors_are_pages_with_the_reason(http: httpx.AsyncClient) -> None:
    missing = await http.get("/evolutions/evo-missing")
    assert missing.status_code == 404
    assert "no context evo-missing" in missing.text
    bad = await http.get("/evolutions/not%20a%20token")
    assert bad.status_code == 400
    assert (await http.get("/nowhere")).status_code == 404
    assert (await http.get("/live/evolutions/not%20a%20token")).status_code == 400


async def test_a_store_that_cannot_be_reached_is_a_503_page_not_a_crash() -> None:
    config = StoreConfig.build({}, nats_url="nats://127.0.0.1:1")
    console = console_for(config)
    try:
        async with (
            ConsoleServer(create_app(console), "127.0.0.1", 0) as server,
            httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as http,
        ):
            page = await http.get("/")
            assert page.status_code == 503
            assert "cannot reach NATS at nats://127.0.0.1:1" in page.text
            assert (await http.get("/static/console.css")).status_code == 200  # still serving
    finally:
        await console.aclose()


# -- live ------------------------------------------------------------------------------


async def test_live_timeline_sends_new_writes_and_resumes_after_the_last_id(
    served_console: tuple[Console, str], store: SharedContextStore, nc: Client
) -> None:
    _, url = served_console
    rec = await record_evolution(store, nc, "/src/alpha", success_rate=0.3, complete=False)
    last = (await store.history(rec.evolution_id))[-1].seq
    live = f"{url}live/evolutions/{rec.evolution_id}?after={last}"
    async with httpx.AsyncClient(timeout=WAIT_S) as http, http.stream("GET", live) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = sse_events(response)
        receipt = await store.context(rec.evolution_id).update_phase(Stage.IMPLEMENTATION)
        entry, event_id = await next_event(stream, "entry")
        assert (entry["seq"], event_id) == (receipt.seq, str(receipt.seq))
        assert "<code>stage</code>" in entry["html"]
        assert "implementation" in entry["html"]
        assert f"a={last}&amp;b={receipt.seq}" in entry["html"]  # diff with the write before
        state, _ = await next_event(stream, "state")
        assert state == {
            "status": "running",
            "phase": "implementation",
            "version": receipt.seq,
        }
        rejected = await reject_write(nc, rec.evolution_id)
        entry, _ = await next_event(stream, "entry")
        assert entry["seq"] == rejected
        assert 'class="rejected"' in entry["html"]
        assert "files_analyzed" in entry["html"]

    # A browser that reconnects sends the last id it saw: the stream goes on after it.
    headers = {"Last-Event-ID": str(receipt.seq)}
    async with (
        httpx.AsyncClient(timeout=WAIT_S) as http,
        http.stream("GET", live, headers=headers) as response,
    ):
        entry, _ = await next_event(sse_events(response), "entry")
        assert entry["seq"] == rejected


async def test_live_timeline_of_an_unknown_evolution_says_it_is_gone(
    served_console: tuple[Console, str],
) -> None:
    _, url = served_console
    async with (
        httpx.AsyncClient(timeout=WAIT_S) as http,
        http.stream("GET", f"{url}live/evolutions/evo-missing") as response,
    ):
        gone, _ = await next_event(sse_events(response), "gone")
    assert "evo-missing" in gone["message"]


async def test_live_list_sends_changed_rows_that_pass_the_filter(
    served_console: tuple[Console, str], store: SharedContextStore, nc: Client
) -> None:
    _, url = served_console
    before = await store.create_context("/src/alpha")
    newest = max(s.version for s in await store.get_all_contexts())
    live = f"{url}live/evolutions?status=running&after={newest}"
    async with httpx.AsyncClient(timeout=WAIT_S) as http, http.stream("GET", live) as response:
        stream = sse_events(response)
        eid = await store.create_context("/src/gamma")  # pending: not listed
        row, event_id = await next_event(stream, "row")
        assert row == {"id": eid, "html": None}
        receipt = await store.context(eid).update_phase(Stage.RESEARCH)  # running now
        row, event_id = await next_event(stream, "row")
        assert row["id"] == eid
        assert f'<tr id="row-{eid}"' in row["html"]
        assert "s-running" in row["html"]
        assert event_id == str(receipt.seq)
    # A reconnecting browser gets what changed after the last id it saw.
    await store.context(before).update_phase(Stage.RESEARCH)
    headers = {"Last-Event-ID": str(receipt.seq)}
    async with (
        httpx.AsyncClient(timeout=WAIT_S) as http,
        http.stream("GET", live, headers=headers) as response,
    ):
        row, _ = await next_event(sse_events(response), "row")
        assert row["id"] == before
        assert "s-running" in row["html"]


# -- GraphQL ---------------------------------------------------------------------------------


async def test_graphql_finds_evolutions_of_a_target_below_a_success_rate(
    http: httpx.AsyncClient, store: SharedContextStore, nc: Client
) -> None:
    low = await record_evolution(store, nc, "/src/alpha", success_rate=0.3)
    await record_evolution(store, nc, "/src/alpha", success_rate=0.8)
    await record_evolution(store, nc, "/src/beta", success_rate=0.1)
    unevaluated = await record_evolution(store, nc, "/src/alpha", success_rate=0, complete=False)

    body = await graphql(
        http,
        """query($t: String!) { evolutions(target: $t, successRateBelow: 0.5) {
            id targetPath status successRate } }""",
        t="/src/alpha",
    )
    assert body == {
        "data": {
            "evolutions": [
                {
                    "id": low.evolution_id,
                    "targetPath": "/src/alpha",
                    "status": "COMPLETED",
                    "successRate": 0.3,
                }
            ]
        }
    }
    body = await graphql(
        http, '{ evolutions(targetContains: "ALPHA", status: RUNNING) { id successRate } }'
    )
    assert body["data"]["evolutions"] == [{"id": unevaluated.evolution_id, "successRate": None}]
    body = await graphql(http, "{ evolutions(successRateAtLeast: 0.8) { targetPath } }")
    assert body["data"]["evolutions"] == [{"targetPath": "/src/alpha"}]
    body = await graphql(http, "{ evolutions(limit: 2, offset: 1) { id } }")
    assert len(body["data"]["evolutions"]) == 2
    body = await graphql(http, "{ evolutions(limit: 0) { id } }")
    assert body["errors"][0]["message"] == "limit must be 1-1000, not 0"


async def test_graphql_reads_one_evolution_history_context_comparison_and_diff(
    http: httpx.AsyncClient, store: SharedContextStore, nc: Client
) -> None:
    rec = await record_evolution(store, nc, "/src/alpha", success_rate=0.3)
    history = await store.history(rec.evolution_id)
    planning = next(e for e in history if e.stage == Stage.PLANNING)
    body = await graphql(
        http,
        """query($id: String!, $at: Int!, $a: Int!) { evolution(id: $id) {
            id errors errorLog
            history { seq kind writer applied code reason stage }
            then: context(at: $at)
            comparison { metrics { name before after delta } }
            diff(a: $a) { a b changes { path op } } } }""",
        id=rec.evolution_id,
        at=planning.seq,
        a=planning.seq,
    )
    assert "errors" not in body, body
    evo = body["data"]["evolution"]
    assert evo["errors"] == 1
    assert "files_analyzed" in evo["errorLog"][0]
    assert [h["seq"] for h in evo["history"]] == [e.seq for e in history]
    rejected = next(h for h in evo["history"] if not h["applied"])
    assert (rejected["seq"], rejected["code"]) == (rec.rejected_seq, "invalid")
    assert evo["then"]["current_phase"] == "planning"
    assert evo["then"]["improvement_plan"] == {}
    assert {"name": "lines", "before": 120, "after": 131, "delta": 11} in evo["comparison"][
        "metrics"
    ]
    expected = await store.diff(rec.evolution_id, planning.seq)
    assert evo["diff"]["changes"] == [{"path": c.path, "op": c.op} for c in expected.changes]

    body = await graphql(http, '{ evolution(id: "evo-none") { id } }')
    assert body == {"data": {"evolution": None}}
    body = await graphql(http, '{ evolution(id: "a b") { id } }')
    assert "evolution_id" in body["errors"][0]["message"]


async def test_graphql_subscription_streams_applied_and_rejected_writes(
    served_console: tuple[Console, str], store: SharedContextStore, nc: Client
) -> None:
    _, url = served_console
    eid = await store.create_context("/src/alpha")
    ws_url = url.replace("http://", "ws://") + "graphql"
    query = """subscription($id: String!) { events(evolutionId: $id) {
        evolutionId seq kind writer applied status currentPhase code reason } }"""
    async with (
        asyncio.timeout(WAIT_S),
        websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws,  # type: ignore[list-item]
    ):
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"id": eid}},
                }
            )
        )
        # The subscription is live once its watch is open: write until it sees one.
        first: dict[str, Any] | None = None
        while first is None:
            receipt = await store.context(eid).update_phase(Stage.RESEARCH)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    first = json.loads(await ws.recv())
        assert first["type"] == "next"
        event = first["payload"]["data"]["events"]
        assert event["kind"] == "stage"
        assert event["applied"] is True
        assert event["currentPhase"] == "RESEARCH"
        assert event["seq"] <= receipt.seq
        seq = await reject_write(nc, eid)
        while True:
            event = json.loads(await ws.recv())["payload"]["data"]["events"]
            if event["seq"] == seq:
                break
        assert event["applied"] is False
        assert event["code"] == "invalid"
        assert "files_analyzed" in event["reason"]
        await ws.send(json.dumps({"id": "1", "type": "complete"}))


# -- the console itself --------------------------------------------------------------------


async def test_context_fetches_are_bounded(
    actor: object, config: StoreConfig, store: SharedContextStore
) -> None:
    """Cross-evolution reads fetch whole contexts at most `concurrency` at a time."""
    in_flight = 0
    most = 0

    class Counting(SharedContextStore):
        async def get_context(self, *args: Any, **kwargs: Any) -> EvolutionContext:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await super().get_context(*args, **kwargs)
            finally:
                in_flight -= 1

    for i in range(12):
        await store.create_context(f"/src/{i}")
    console = Console(lambda t: Counting(config=config.replace(tenant=t)), concurrency=3)
    try:
        contexts = await console.contexts(None, [s.evolution_id for s in await console.summaries()])
    finally:
        await console.aclose()
    assert len(contexts) == 12
    assert most == 3


def test_console_imports_the_client_only() -> None:
    code = (
        "import sys, actors.console, actors.cli.console\n"
        "bad = [m for m in sys.modules if m.startswith(('actors.store', 'actors.evolution'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


async def test_ctxstore_console_serves_until_interrupted(
    server: EmbeddedServer, actor: object, store: SharedContextStore, tmp_path: Path
) -> None:
    eid = await store.create_context("/src/alpha")
    env = {**os.environ, "CTXSTORE_HOME": str(tmp_path / "home")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "actors.cli", "console", "--port", "0", "--nats-url", server.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT_S):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("CONSOLE_URL=http://127.0.0.1:"), line
        url = line.strip().split("=", 1)[1]
        async with httpx.AsyncClient(timeout=WAIT_S) as http:
            page = await http.get(url)
            assert eid in page.text
            # A live stream open while stopping does not hold the console up.
            async with http.stream("GET", f"{url}live/evolutions/{eid}") as live:
                assert live.status_code == 200
                proc.send_signal(signal.SIGINT)
                async with asyncio.timeout(WAIT_S):
                    code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0


def test_ctxstore_console_without_a_store_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "CTXSTORE_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [sys.executable, "-m", "actors.cli", "console", "--port", "0",
         "--nats-url", "nats://127.0.0.1:1"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith("ctxstore: cannot reach NATS"), out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_ctxstore_console_on_a_busy_port_says_so(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        env = {**os.environ, "CTXSTORE_HOME": str(tmp_path / "home")}
        out = subprocess.run(
            [sys.executable, "-m", "actors.cli", "console", "--port", str(port)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
