"""No password or token of a NATS URL reaches the terminal or a log."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker import EmbeddedServer, redact

CLI = [sys.executable, "-m", "actors.cli"]
SECRET = "s3cret-Pa55"
TOKEN = "t0ken-XYZ"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        (f"nats://u:{SECRET}@127.0.0.1:4222", "nats://u:***@127.0.0.1:4222"),
        (f"tls://{TOKEN}@host:4443/", "tls://***@host:4443/"),
        (f"nats://u:p@ss{SECRET}@h:1", "nats://u:***@h:1"),
        (
            f"nats://a:{SECRET}@h1:4222,nats://b:{SECRET}@h2:4222",
            "nats://a:***@h1:4222,nats://b:***@h2:4222",
        ),
        (
            f"cannot reach NATS at ws://{TOKEN}@h:80: refused (user@example.com)",
            "cannot reach NATS at ws://***@h:80: refused (user@example.com)",
        ),
    ],
)
def test_redact_hides_passwords_and_tokens(text: str, shown: str) -> None:
    assert redact(text) == shown


class AuthServer(EmbeddedServer):
    """An embedded server that wants a user and password."""

    def _write_config(self) -> Path:
        conf = super()._write_config()
        with conf.open("a", encoding="utf-8") as f:
            f.write(f'authorization {{\n  user: "u"\n  password: "{SECRET}"\n}}\n')
        return conf


@pytest.fixture
async def auth_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with AuthServer(tmp_path / "auth-nats") as srv:
        yield srv


def env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    values["CTXSTORE_HOME"] = str(tmp_path / "home")
    return values


async def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env(tmp_path),
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_serve_agent_and_logs_show_no_password(
    auth_server: EmbeddedServer, tmp_path: Path
) -> None:
    url = f"nats://u:{SECRET}@127.0.0.1:{auth_server.port}"
    shown = f"nats://u:***@127.0.0.1:{auth_server.port}"
    serve = await asyncio.create_subprocess_exec(
        *CLI,
        "-v",
        "serve",
        "--nats-url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(tmp_path),
    )
    agent = None
    try:
        assert serve.stdout is not None
        async with asyncio.timeout(30):
            printed = [(await serve.stdout.readline()).decode() for _ in range(2)]
        assert printed[0].startswith(f"store actor serving {shown} ")
        assert printed[1].strip() == f"agents connect with: NATS_URL={shown}"

        agent = await asyncio.create_subprocess_exec(
            *CLI,
            "--nats-url",
            url,
            "-v",
            "agent",
            "research",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env(tmp_path),
        )
        assert agent.stdout is not None
        async with asyncio.timeout(30):
            line = (await agent.stdout.readline()).decode()
        assert line.strip() == f"agent research serving on {shown}"

        code, out = await run(tmp_path, "-v", "--nats-url", url, "demo")
        assert code == 0, out
        assert SECRET not in out
    finally:
        outputs = []
        for proc in (agent, serve):
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                stdout, stderr = await proc.communicate()
            outputs.append((stdout + stderr).decode())
    assert SECRET not in "".join(outputs)
    assert f"disconnected from {shown}" in outputs[-1]  # the -v log, with the URL redacted


async def test_refused_credentials_are_not_echoed(
    auth_server: EmbeddedServer, tmp_path: Path
) -> None:
    port = auth_server.port
    urls = [
        f"nats://u:wrong-{SECRET}@127.0.0.1:{port}",
        f"nats://{TOKEN}@127.0.0.1:{port}",
        f"nats://u:{SECRET}@127.0.0.1:{port}",  # accepted, but no store actor answers
    ]
    # At once: each takes its connection attempts' time to fail.
    results = await asyncio.gather(*(run(tmp_path, "-v", "--nats-url", u, "list") for u in urls))
    for code, out in results:
        assert code == 1
        assert SECRET not in out
        assert TOKEN not in out
    assert "ctxstore: cannot reach NATS at nats://u:***@127.0.0.1" in results[0][1]
    assert f"ctxstore: cannot reach NATS at nats://***@127.0.0.1:{port}" in results[1][1]
    assert (
        f"no store actor is serving tenant 'default' on nats://u:***@127.0.0.1:{port}"
        in (results[2][1])
    )
