"""``ctxstore`` as a user runs it: separate processes, the local store directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from actors import StoreActor
from broker import EmbeddedServer

CLI = [sys.executable, "-m", "actors.cli"]


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


async def test_contexts_persist_across_commands_with_nothing_started(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _, out, _ = await ctxstore(home, "demo")
    eid = next(line.split()[1] for line in out.splitlines() if line.startswith("created "))

    _, out, _ = await ctxstore(home, "list", "--json")
    listed = json.loads(out)
    assert [c["evolution_id"] for c in listed] == [eid]
    assert listed[0]["status"] == "completed"

    _, out, _ = await ctxstore(home, "show", eid, "--json")
    ctx = json.loads(out)
    assert ctx["original_analysis"]["files_analyzed"] == 10
    assert ctx["external_research"]["patterns"] == [{"name": "Factory", "applicability": 0.8}]

    _, out, _ = await ctxstore(home, "show", eid)
    assert f"evolution   {eid}" in out
    assert "original_analysis   files_analyzed: 10" in out


async def test_show_of_an_unknown_id_fails_clearly(tmp_path: Path) -> None:
    code, _, err = await ctxstore(tmp_path / "home", "show", "evo-nope", check=False)
    assert code == 1
    assert "no context evo-nope" in err


async def test_serve_runs_until_sigterm_and_other_commands_use_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["CTXSTORE_HOME"] = str(home)
    serve = await asyncio.create_subprocess_exec(
        *CLI, "serve", stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert serve.stdout is not None
        async with asyncio.timeout(30):
            first = (await serve.stdout.readline()).decode()
            second = (await serve.stdout.readline()).decode()
        assert first.startswith("ctxstore serving on nats://127.0.0.1:")
        url = second.strip().split("NATS_URL=")[1]
        record = json.loads((home / "server.json").read_text())
        assert record["url"] == url

        _, out, _ = await ctxstore(home, "demo")
        _, out, _ = await ctxstore(home, "--nats-url", url, "list", "--json")
        assert len(json.loads(out)) == 1
    finally:
        serve.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await serve.wait()
    assert code == 0
    assert not (home / "server.json").exists()
    # Stopped: the next command starts its own server on the same directory, data intact.
    _, out, _ = await ctxstore(home, "list", "--json")
    assert len(json.loads(out)) == 1


@pytest.mark.parametrize("argv", [["--nats-url", "nats://127.0.0.1:1", "list"]])
async def test_an_unreachable_server_is_reported(tmp_path: Path, argv: list[str]) -> None:
    code, _, err = await ctxstore(tmp_path / "home", *argv, check=False)
    assert code == 1
    assert "cannot reach NATS" in err


# -- options, signals ----------------------------------------------------------------------


def url_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["CTXSTORE_HOME"] = str(home)
    return env


async def test_global_options_work_after_the_command_too(
    server: EmbeddedServer, actor: StoreActor, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _, out, _ = await ctxstore(home, "demo", "--nats-url", server.url)
    eid = out.split()[1]
    _, out, _ = await ctxstore(home, "list", "--json", "--nats-url", server.url, "-v")
    assert [c["evolution_id"] for c in json.loads(out)] == [eid]
    # Before the command still works, and a value after it wins.
    _, out, _ = await ctxstore(
        home, "--nats-url", "nats://127.0.0.1:1", "show", eid, "--nats-url", server.url
    )
    assert f"evolution   {eid}" in out
    # Nothing ran on the local directory.
    assert not (home / "server.json").exists()


async def test_serve_takes_the_readmes_nats_url_after_the_command(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    serve = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--nats-url",
        server.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=url_env(tmp_path / "home"),
    )
    try:
        assert serve.stdout is not None
        async with asyncio.timeout(30):
            line = (await serve.stdout.readline()).decode()
        assert line.startswith(f"store actor serving {server.url}"), line
    finally:
        serve.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await serve.communicate()
    assert serve.returncode == 0, err.decode()


async def test_ctrl_c_stops_watch_quietly(
    server: EmbeddedServer, actor: StoreActor, tmp_path: Path
) -> None:
    watch = await asyncio.create_subprocess_exec(
        *CLI,
        "--nats-url",
        server.url,
        "watch",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=url_env(tmp_path / "home"),
    )
    try:
        assert watch.stderr is not None
        assert watch.stdout is not None
        async with asyncio.timeout(30):
            first = (await watch.stderr.readline()).decode()
        assert first.startswith("watching "), first
        _, out, _ = await ctxstore(tmp_path / "home", "--nats-url", server.url, "demo")
        eid = out.split()[1]
        async with asyncio.timeout(30):
            seen = (await watch.stdout.readline()).decode()
        assert eid in seen
        watch.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await watch.communicate()
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    assert watch.returncode == 0
    assert err.decode() == ""
