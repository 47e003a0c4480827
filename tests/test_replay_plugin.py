"""Replay for testing: the shipped pytest plugin, ``store.replay`` and ``ctxstore replay``."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from actors import SharedContextStore, StoreActor
from actors.cli import main
from actors.pytest_plugin import Replay
from broker import EmbeddedServer, StoreConfig, connect
from contracts import EvolutionContext, Stage, Status, WriteKind, write_subject
from contracts.bundle import GENESIS, chain_hash, context_hash

ROOT = Path(__file__).resolve().parent.parent
ANALYSIS: dict[str, Any] = dict(
    files_analyzed=12, metrics={"complexity": 3.5}, issues=[], improvements=[]
)


async def record(store: SharedContextStore, nc: Client) -> tuple[str, str]:
    """A small recorded evolution (with a rejected write); returns its id and bundle path."""
    eid = await store.create_context("./proj", ["documentation"])
    await store.update_phase(Stage.RESEARCH)
    await store.store_original_analysis(**ANALYSIS)
    await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS), b'{"type": "nonsense"}'
    )
    await store.store_improvement_plan([{"id": "t1"}], ["t1"], {}, 0.4)
    await store.update_phase(Stage.COMPLETED)
    return eid, await store.export_context(eid)


def rechain(path: str, target: Path) -> None:
    """A recording whose writes do not lead to its context (as if recorded by a release
    whose state logic differed): edit the analysis body and recompute every hash."""
    doc = json.loads(Path(path).read_bytes())
    for w in doc["writes"]:
        if w["kind"] == "original_analysis" and w["applied"]:
            body = json.loads(w["body"])
            body["files_analyzed"] = 13
            w["body"] = json.dumps(body)
    prev = GENESIS
    for w in doc["writes"]:
        fields = ("seq", "time", "kind", "writer", "body", "body_b64", "applied", "code", "reason")
        canonical = json.dumps(
            [w[k] for k in fields], separators=(",", ":"), ensure_ascii=False
        ).encode()
        prev = w["hash"] = chain_hash(prev, canonical)
    doc["head"] = prev
    doc["context_hash"] = context_hash(prev, msgspec.convert(doc["context"], EvolutionContext))
    target.write_text(json.dumps(doc), encoding="utf-8")


@contextlib.asynccontextmanager
async def another_store(tmp_path: Path) -> AsyncIterator[tuple[SharedContextStore, Client]]:
    """A store on a server of its own, where a recording is made."""
    async with EmbeddedServer(tmp_path / "recording") as server:
        config = StoreConfig.build({}, nats_url=server.url, export_path=tmp_path / "recorded")
        actor_nc = await connect(server.url, name="recording-actor", long_running=True)
        raw = await connect(server.url, name="recording-raw")
        try:
            async with StoreActor(actor_nc, config), SharedContextStore(config=config) as store:
                yield store, raw
        finally:
            await raw.close()
            await actor_nc.close()


async def test_replay_fixture_loads_a_recording_into_a_fresh_store(
    tmp_path: Path,
    ctxstore_store: SharedContextStore,
    ctxstore_replay: Replay,
) -> None:
    async with another_store(tmp_path) as (store, nc):
        eid, path = await record(store, nc)
        recorded = await store.get_context(eid)
        recorded_kinds = [e.kind for e in await store.history(eid)]
        assert ctxstore_store.url != store.url  # its own server
    result = await ctxstore_replay(path)
    assert result.identical, result.changes
    assert result.evolution_id != eid
    assert result.recorded == recorded
    ctx = await ctxstore_store.get_context(result.evolution_id)
    assert ctx == result.context
    assert (ctx.status, ctx.current_phase) == (Status.COMPLETED, Stage.COMPLETED)
    assert ctx.original_analysis == ANALYSIS
    assert ctx.created_at == recorded.created_at
    assert len(ctx.error_log) == 1  # the rejected write, replayed and rejected again
    history = await ctxstore_store.history(result.evolution_id)
    assert [e.kind for e in history] == recorded_kinds


async def test_replay_reports_where_the_result_differs_from_the_recording(
    store: SharedContextStore, nc: Client, tmp_path: Path
) -> None:
    _, path = await record(store, nc)
    forged = tmp_path / "forged.json"
    rechain(path, forged)
    result = await store.replay(forged)
    assert not result.identical
    assert [(c.path, c.op, c.before, c.after) for c in result.changes] == [
        ("original_analysis.files_analyzed", "changed", 12, 13)
    ]


async def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out):
            return main(list(argv))

    return await asyncio.to_thread(call), out.getvalue()


async def test_cli_replay_exit_code_and_report(
    store: SharedContextStore, nc: Client, tmp_path: Path
) -> None:
    _, path = await record(store, nc)
    url = store.url
    assert url is not None
    code, out = await run_cli("--nats-url", url, "replay", path)
    assert code == 0
    assert "identical to the recording" in out

    forged = tmp_path / "forged.json"
    rechain(path, forged)
    code, out = await run_cli("--nats-url", url, "replay", str(forged))
    assert code == 1
    assert "original_analysis.files_analyzed" in out
    code, out = await run_cli("--nats-url", url, "replay", str(forged), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["identical"] is False
    assert report["changes"][0]["path"] == "original_analysis.files_analyzed"


# -- the plugin in a user's project, installed or not -----------------------------------------

USER_TEST = """
import pytest

pytestmark = pytest.mark.asyncio


async def test_uses_the_fixtures(ctxstore_store, ctxstore_server, ctxstore_replay):
    assert ctxstore_store.url == ctxstore_server.url
    eid = await ctxstore_store.create_context("./x")
    path = await ctxstore_store.export_context(eid)
    result = await ctxstore_replay(path)
    assert result.identical
    assert result.context.target_path == "./x"
"""

CONFTEST = """
from actors.pytest_plugin import ensure_registered


def pytest_configure(config):
    ensure_registered(config)
"""


def installed() -> bool:
    """Whether this environment has the package installed (its pytest11 entry point)."""
    return any(ep.name == "ctxstore" for ep in entry_points(group="pytest11"))


async def run_pytest(
    project: Path, *args: str, extra_path: Path | None = None, autoload: bool = True
) -> tuple[int, str]:
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    if not autoload:
        # As in a checkout that is not installed: no entry points, whatever this venv has.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        args = ("-p", "pytest_asyncio.plugin", *args)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *args,
        cwd=str(project),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def fake_install(site: Path) -> None:
    """What ``pip install`` leaves for the entry point: a dist-info with entry_points.txt."""
    info = site / "ctxstore_plugin_probe-0.0.0.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: ctxstore-plugin-probe\nVersion: 0.0.0\n")
    write(info / "entry_points.txt", "[pytest11]\nctxstore = actors.pytest_plugin\n")


async def test_plugin_from_a_checkout_with_dash_p(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "test_user.py", USER_TEST)
    code, out = await run_pytest(tmp_path / "proj", "-p", "actors.pytest_plugin", autoload=False)
    assert code == 0, out
    assert "1 passed" in out


async def test_plugin_installed_with_and_without_a_registering_conftest(tmp_path: Path) -> None:
    site = tmp_path / "site"
    if not installed():  # a real install already provides the entry point
        fake_install(site)
    write(tmp_path / "plain" / "test_user.py", USER_TEST)
    code, out = await run_pytest(tmp_path / "plain", extra_path=site)
    assert code == 0, out
    assert "1 passed" in out
    # Entry point and a conftest that registers it too: no double registration.
    write(tmp_path / "both" / "test_user.py", USER_TEST)
    write(tmp_path / "both" / "conftest.py", CONFTEST)
    code, out = await run_pytest(tmp_path / "both", extra_path=site)
    assert code == 0, out
    assert "1 passed" in out


async def test_without_the_plugin_the_fixtures_are_missing(tmp_path: Path) -> None:
    """The check above can fail: with no registration, the fixtures do not exist."""
    write(tmp_path / "none" / "test_user.py", USER_TEST)
    code, out = await run_pytest(tmp_path / "none", autoload=False)
    assert code != 0
    assert "fixture 'ctxstore_store' not found" in out
