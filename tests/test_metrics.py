"""Monitoring: the store's Prometheus metrics, scraped from /metrics with a real HTTP client,
and the same figures from the ``stats`` query and ``ctxstore stats``."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families
from workload import running_actor

from actors import SharedContextStore, StoreActor
from actors.store.metrics import METRIC_NAMES, MetricsServer, StoreMetrics
from broker import ACTOR_DURABLE, WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import (
    HEADER_RECORDED_TIME,
    ConfigError,
    CreateContext,
    DeleteContext,
    ImportContext,
    Stage,
    StageUpdate,
    Status,
    WriteKind,
    encode,
    write_subject,
)

CLI = [sys.executable, "-m", "actors.cli"]
PATIENCE_S = 15.0

Labels = frozenset[tuple[str, str]]


class Figures:
    """The samples of one scrape, by name and labels."""

    def __init__(self, samples: dict[tuple[str, Labels], float]) -> None:
        self.samples = samples

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]


def parse(text: str) -> Figures:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return Figures(samples)


async def scrape(url: str) -> Figures:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body: bytes = response.read()
            return body.decode()

    return parse(await asyncio.to_thread(get))


async def scraped_until(url: str, holds: Callable[[Figures], bool]) -> Figures:
    """Scrape until ``holds(figures)``, for at most PATIENCE_S."""
    async with asyncio.timeout(PATIENCE_S):
        while True:
            figures = await scrape(url)
            if holds(figures):
                return figures
            await asyncio.sleep(0.05)


async def until(holds: Callable[[], bool]) -> None:
    """Until ``holds()``, checked every 20 ms, for at most PATIENCE_S."""
    async with asyncio.timeout(PATIENCE_S):
        while not holds():  # noqa: ASYNC110 (a condition of the actor's state: no event)
            await asyncio.sleep(0.02)


@pytest.fixture
async def metrics_url(actor: StoreActor) -> AsyncIterator[str]:
    endpoint = MetricsServer(actor.metrics.registry, host="127.0.0.1", port=0)
    endpoint.start()
    yield endpoint.url
    await endpoint.aclose()


async def test_every_metric_is_served_with_the_ctxstore_prefix(metrics_url: str) -> None:
    def get() -> str:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            body: bytes = response.read()
            return body.decode()

    families = {f.name: f for f in text_string_to_metric_families(await asyncio.to_thread(get))}
    assert set(families) == set(METRIC_NAMES)
    for name, family in families.items():
        assert name.startswith("ctxstore_")
        assert family.documentation
        if family.type == "counter":
            assert all(s.name in (f"{name}_total", f"{name}_created") for s in family.samples)
    assert families["ctxstore_phase_duration_seconds"].type == "histogram"
    assert families["ctxstore_lag_writes"].type == "gauge"


async def test_an_evolution_moves_the_spec_figures(
    store: SharedContextStore, metrics_url: str, nc: Client, tmp_path: Path
) -> None:
    before = await scrape(metrics_url)
    assert before("ctxstore_leader") == 1
    assert before("ctxstore_contexts_created_total") == 0
    began = time.monotonic()

    eid = await store.create_context("./p", ["documentation"])
    for stage in ("research", "planning", "completed"):
        await store.update_phase(stage)
    finished_at = store.last_seq
    await store.get_comparison_data()
    await store.get_comparison_data()
    bundle = await store.export_context(eid, tmp_path / "bundle.json")
    copy = await store.import_context(bundle, evolution_id="evo-copy")
    refused = await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.STAGE), b'{"type": "stage", "phase": "nowhere"}'
    )
    await store.get_context(eid)  # the refused write is applied (judged) by now
    elapsed = time.monotonic() - began

    after = await scrape(metrics_url)
    assert after("ctxstore_contexts_created_total") == 2  # the create and the import
    assert after("ctxstore_contexts") == 2
    assert after("ctxstore_bundle_exports_total") == 1
    assert after("ctxstore_bundle_imports_total") == 1
    assert after("ctxstore_queries_total", op="compare") == 2
    assert after("ctxstore_queries_total", op="export") == 1
    # The import re-published the recording's writes: one create and three stage writes.
    assert after("ctxstore_writes_applied_total", kind="create") == 2
    assert after("ctxstore_writes_applied_total", kind="stage") == 6
    assert after("ctxstore_writes_rejected_total", reason="invalid") == 1
    assert after("ctxstore_applied_seq") == refused.seq
    assert after("ctxstore_lag_writes") == 0
    # Phase transitions seen live: initialized -> research -> planning -> completed. The
    # re-published ones of the import are another time's history, not transitions here.
    for phase in ("initialized", "research", "planning"):
        assert after("ctxstore_phase_duration_seconds_count", phase=phase) == 1
    assert after("ctxstore_phase_duration_seconds_count", phase="completed") == 0
    spent = sum(
        after("ctxstore_phase_duration_seconds_sum", phase=p)
        for p in ("initialized", "research", "planning")
    )
    assert 0 < spent <= elapsed
    # Two evolutions finished here: the original, and the copy the import brought in.
    assert after("ctxstore_context_size_bytes_count") == 2
    finished, imported = await store.get_context(eid, at=finished_at), await store.get_context(copy)
    assert imported.status is Status.COMPLETED
    sizes = len(encode(finished)) + len(encode(imported))
    assert after("ctxstore_context_size_bytes_sum") == sizes


async def test_the_lag_is_the_writes_the_actor_has_not_applied(
    actor: StoreActor, store: SharedContextStore, metrics_url: str, nc: Client
) -> None:
    await store.create_context("./p")
    await scraped_until(metrics_url, lambda f: f("ctxstore_lag_writes") == 0)
    # An operator pauses the actor's consumer: writes are stored, none is applied.
    await pause_consumer(nc, datetime.now(UTC) + timedelta(minutes=5))
    js = nc.jetstream()
    for i in range(5):
        await js.publish(
            write_subject("default", f"evo-lag-{i}", WriteKind.CREATE),
            encode(CreateContext(target_path="./lag")),
        )
    applied = actor.state.applied_seq
    lagging = await scraped_until(metrics_url, lambda f: f("ctxstore_lag_writes") == 5)
    assert lagging("ctxstore_applied_seq") == applied
    assert lagging("ctxstore_stream_last_seq") == applied + 5

    await pause_consumer(nc, None)
    caught_up = await scraped_until(metrics_url, lambda f: f("ctxstore_lag_writes") == 0)
    assert caught_up("ctxstore_applied_seq") == applied + 5
    assert caught_up("ctxstore_contexts_created_total") == 6


async def pause_consumer(nc: Client, until: datetime | None) -> None:
    """Pause the actor's durable consumer (server 2.11+), or resume it with None."""
    body = {} if until is None else {"pause_until": until.isoformat().replace("+00:00", "Z")}
    reply = await nc.request(
        f"$JS.API.CONSUMER.PAUSE.{WRITES_STREAM}.{ACTOR_DURABLE}",
        json.dumps(body).encode(),
        timeout=10,
    )
    assert json.loads(reply.data)["paused"] is (until is not None), reply.data


async def test_the_stats_query_gives_the_figures_of_the_endpoint(
    store: SharedContextStore, metrics_url: str, actor: StoreActor
) -> None:
    eid = await store.create_context("./p")
    await store.update_phase("research")
    await store.get_comparison_data(eid)
    scraped = await scrape(metrics_url)
    reply = await store.stats()
    assert reply.role == "leader"
    assert reply.applied_seq == store.last_seq
    assert reply.actor == actor.queries._service.id  # type: ignore[union-attr]
    answered = {
        (s.name, frozenset(s.labels.items())): s.value for f in reply.metrics for s in f.samples
    }
    # The stats request itself is the one figure that moved in between.
    stats = ("ctxstore_queries_total", frozenset({("op", "stats")}))
    assert answered.pop(stats) == scraped.samples.pop(stats) + 1
    assert answered == scraped.samples
    assert {f.name for f in reply.metrics} == set(METRIC_NAMES)


async def test_a_restarted_actor_counts_its_replay_not_the_history_again(
    server: EmbeddedServer, config: StoreConfig
) -> None:
    async with running_actor(server, config) as first:
        async with SharedContextStore(config=config, name="w") as store:
            for _ in range(3):
                await store.create_context("./p")
                await store.update_phase("research")
        assert first.metrics.figures("").applied_seq == 6
    async with running_actor(server, config) as second:
        figures = parse_reply(second.metrics)
        assert figures("ctxstore_replayed_writes_total") == 6
        assert figures("ctxstore_replay_duration_seconds_count") == 1
        assert figures("ctxstore_contexts") == 3
        assert figures("ctxstore_contexts_created_total") == 0
        assert figures("ctxstore_writes_applied_total", kind="create") == 0


def parse_reply(metrics: StoreMetrics) -> Figures:
    reply = metrics.figures("")
    return Figures(
        {(s.name, frozenset(s.labels.items())): s.value for f in reply.metrics for s in f.samples}
    )


async def test_leadership_is_a_gauge_each_actor_reports_for_itself(
    server: EmbeddedServer, config: StoreConfig
) -> None:
    conns = [await connect(server.url, name=f"actor-{i}", long_running=True) for i in range(2)]
    first = StoreActor(conns[0], config)
    second = StoreActor(conns[1], config)
    try:
        await first.start()
        await second.start()
        async with asyncio.timeout(PATIENCE_S):
            await second.wait_role("standby")
        assert parse_reply(first.metrics)("ctxstore_leader") == 1
        assert parse_reply(second.metrics)("ctxstore_leader") == 0
        async with SharedContextStore(config=config, name="w") as store:
            await store.create_context("./p")
            last = store.last_seq
        await until(lambda: second.state.applied_seq >= last)  # a standby applies them too
        standby = parse_reply(second.metrics)
        assert standby("ctxstore_contexts_created_total") == 1
        assert standby("ctxstore_leadership_acquired_total") == 0

        await first.aclose()  # hands the lease over
        async with asyncio.timeout(PATIENCE_S):
            await second.wait_role("leader")
        leading = parse_reply(second.metrics)
        assert leading("ctxstore_leader") == 1
        assert leading("ctxstore_leadership_acquired_total") == 1
    finally:
        await first.aclose()
        await second.aclose()
        for conn in conns:
            await conn.close()


async def test_writes_of_any_client_count_imports_removals_and_rejections(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    """A client in another language: raw JetStream publishes of the wire's writes."""
    js = nc.jetstream()
    recorded = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    async def write(eid: str, body: object, **headers: str) -> int:
        kind = WriteKind(str(body.__struct_config__.tag))  # type: ignore[attr-defined]
        ack = await js.publish(write_subject("default", eid, kind), encode(body), headers=headers)
        return int(ack.seq)

    capped = config.replace(max_contexts=3, ttl_seconds=60.0)
    async with running_actor(server, capped) as actor:
        await write("evo-new", CreateContext(target_path="./a"))
        # An import as a bundle's re-publishing does it: the recording's create, with the
        # time it was recorded.
        await write(
            "evo-copy", CreateContext(target_path="./b"), **{HEADER_RECORDED_TIME: recorded}
        )
        await write("evo-copy", StageUpdate(phase=Stage.COMPLETED))
        # An import write: a whole context in one.
        await write(
            "evo-whole",
            ImportContext(
                target_path="./c",
                created_at=datetime.now(UTC) - timedelta(days=2),
                status=Status.FAILED,
                current_phase=Stage.IMPLEMENTATION,
            ),
        )
        await write("evo-twice", CreateContext(target_path="./d"))  # full: prunes evo-copy
        await write("evo-new", DeleteContext(reason="done"))
        await write("evo-none", StageUpdate(phase=Stage.RESEARCH))  # not_found
        last = await write("evo-new", CreateContext(target_path="./a"))
        await until(lambda: actor.state.applied_seq >= last)
        figures = parse_reply(actor.metrics)
    assert figures("ctxstore_contexts_created_total") == 5
    assert figures("ctxstore_bundle_imports_total") == 2
    assert figures("ctxstore_contexts_removed_total", reason="pruned") == 1
    assert figures("ctxstore_contexts_removed_total", reason="deleted") == 1
    assert figures("ctxstore_writes_rejected_total", reason="not_found") == 1
    assert figures("ctxstore_contexts") == 3
    # Two evolutions finished: the re-published one (completed) and the imported (failed).
    assert figures("ctxstore_context_size_bytes_count") == 2
    # No live transition: the one stage write was re-published.
    assert figures("ctxstore_phase_duration_seconds_count", phase="initialized") == 0


async def test_a_context_expired_by_ttl_counts_as_expired(
    server: EmbeddedServer, config: StoreConfig
) -> None:
    async with running_actor(server, config.replace(ttl_seconds=0.2)) as actor:
        async with SharedContextStore(config=config, name="w") as store:
            await store.create_context("./p")
        await until(lambda: parse_reply(actor.metrics)("ctxstore_contexts") == 0)
        figures = parse_reply(actor.metrics)
    assert figures("ctxstore_contexts_removed_total", reason="expired") == 1
    assert figures("ctxstore_contexts_removed_total", reason="deleted") == 0


async def test_snapshots_are_timed(server: EmbeddedServer, config: StoreConfig) -> None:
    cadence = config.replace(snapshot_every=4, snapshot_interval=None)
    async with running_actor(server, cadence) as actor:
        async with SharedContextStore(config=config, name="w") as store:
            await store.create_context("./p")
            for stage in ("research", "planning", "implementation"):  # 4 writes, 1 context
                await store.update_phase(stage)
        await until(
            lambda: parse_reply(actor.metrics)("ctxstore_snapshot_duration_seconds_count") > 0
        )
        figures = parse_reply(actor.metrics)
    assert figures("ctxstore_snapshot_duration_seconds_sum") > 0
    assert figures("ctxstore_snapshot_failures_total") == 0


async def test_a_metrics_port_in_use_is_a_clear_error(actor: StoreActor) -> None:
    taken = MetricsServer(actor.metrics.registry, host="127.0.0.1", port=0)
    taken.start()
    try:
        again = MetricsServer(actor.metrics.registry, host="127.0.0.1", port=taken.port)
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{taken.port}"):
            again.start()
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            MetricsServer(actor.metrics.registry, host="127.0.0.1", port=70000).start()
    finally:
        await taken.aclose()


async def ctxstore(home: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["CTXSTORE_HOME"] = str(home)
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    if check:
        assert proc.returncode == 0, err.decode()
    return proc.returncode, out.decode(), err.decode()


async def test_serve_with_a_metrics_port_and_stats_against_its_url(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    args = ["--nats-url", server.url, "serve", "--metrics-port", "0"]
    serve = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert serve.stdout is not None
        async with asyncio.timeout(30):
            first = (await serve.stdout.readline()).decode()
            second = (await serve.stdout.readline()).decode()
        assert first.startswith("Prometheus metrics on http://127.0.0.1:"), first
        assert second.startswith("store actor serving"), second
        url = first.split(" on ")[1].strip()

        await ctxstore(home, "--nats-url", server.url, "demo")
        scraped = await scrape(url)
        assert scraped("ctxstore_contexts_created_total") == 1
        assert scraped("ctxstore_leader") == 1

        _, out, _ = await ctxstore(home, "--nats-url", server.url, "stats", "--json")
        reply = json.loads(out)
        assert reply["role"] == "leader"
        samples = {
            (s["name"], frozenset(s["labels"].items())): s["value"]
            for f in reply["metrics"]
            for s in f["samples"]
        }
        assert samples[("ctxstore_contexts_created_total", frozenset())] == 1
        assert samples[("ctxstore_queries_total", frozenset({("op", "compare")}))] >= 1

        _, out, _ = await ctxstore(home, "--nats-url", server.url, "stats")
        lines = out.splitlines()
        assert lines[0].startswith("actor ")
        assert "(leader)" in lines[0]
        assert row(lines, "ctxstore_contexts_created_total") == ["1"]
        assert row(lines, "ctxstore_leader") == ["1"]
        assert row(lines, "ctxstore_queries_total", "op=compare")
        size = row(lines, "ctxstore_context_size_bytes")
        assert size[:3] == ["count", "1,", "avg"], size
    finally:
        serve.terminate()
        async with asyncio.timeout(10):
            await serve.wait()
    assert serve.returncode == 0


def row(lines: list[str], metric: str, labels: str = "") -> list[str]:
    """The VALUE cells of the table row of ``metric`` (and ``labels``)."""
    for line in lines:
        cells = line.split()
        if cells and cells[0] == metric:
            if not labels and (len(cells) < 2 or "=" not in cells[1]):
                return cells[1:]
            if labels and len(cells) > 1 and cells[1] == labels:
                return cells[2:]
    raise AssertionError(f"no row {metric} {labels} in:\n" + "\n".join(lines))


async def test_stats_of_the_local_store_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    await ctxstore(home, "demo")
    _, out, _ = await ctxstore(home, "stats")
    lines = out.splitlines()
    assert "(leader)" in lines[0]
    assert row(lines, "ctxstore_contexts") == ["1"]


async def test_serve_fails_clearly_when_the_metrics_port_is_taken(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--nats-url", server.url, "serve", "--metrics-port", str(port)]
        code, _, err = await ctxstore(tmp_path / "home", *args, check=False)
    assert code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err


async def test_an_export_too_large_for_one_message_counts_once(tmp_path: Path) -> None:
    """The client asks again for a reply in chunks: still one export."""
    async with EmbeddedServer(tmp_path / "small", max_payload=64 * 1024) as srv:
        config = StoreConfig.build(
            {}, nats_url=srv.url, max_payload=16 * 1024, export_path=tmp_path / "x"
        )
        async with running_actor(srv, config) as actor, SharedContextStore(config=config) as store:
            eid = await store.create_context("./p")
            filler = ["y" * 1000] * 15  # about 15 KB a phase, 75 KB in all
            await store.store_external_research(filler, [], [])
            await store.store_original_analysis(1, {}, [{"n": f} for f in filler], [])
            await store.store_improvement_plan([{"n": f} for f in filler], [], {}, 0.5)
            await store.store_implementation_log(filler, [], [])
            await store.store_evaluation_results(filler, {}, 0.5)
            assert len(encode(await store.get_context(eid))) > 64 * 1024
            await store.export_context(eid, tmp_path / "bundle.json")
            figures = parse_reply(actor.metrics)
    assert figures("ctxstore_queries_total", op="export") == 2  # whole, then in chunks
    assert figures("ctxstore_bundle_exports_total") == 1


async def test_scrapes_during_writes_only_see_figures_move_forward(
    store: SharedContextStore, metrics_url: str
) -> None:
    """The HTTP server reads from its own thread while the actor counts."""
    done = asyncio.Event()

    async def write() -> None:
        try:
            for _ in range(30):
                await store.create_context("./p")
                for stage in ("research", "planning", "completed"):
                    await store.update_phase(stage)
        finally:
            done.set()

    writer = asyncio.create_task(write())
    seen: list[Figures] = []
    while not done.is_set():
        seen.append(await scrape(metrics_url))
    await writer
    seen.append(await scrape(metrics_url))
    for earlier, later in itertools.pairwise(seen):
        for key, value in earlier.samples.items():
            if key[0].endswith(("_total", "_count", "_sum", "_bucket")) or key[0] == (
                "ctxstore_applied_seq"
            ):
                assert later.samples[key] >= value, key
    last = seen[-1]
    assert last("ctxstore_contexts_created_total") == 30
    assert last("ctxstore_context_size_bytes_count") == 30
    assert last("ctxstore_phase_duration_seconds_count", phase="planning") == 30
    assert last("ctxstore_phase_duration_seconds_bucket", phase="planning", le="+Inf") == 30
    assert len(seen) > 2
