"""One local store directory, one server: concurrent commands, killed users, killed servers.

Processes are found through /proc (Linux), which is where these guarantees are made: the
embedded nats-server dies with its parent there (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest
from nats.js.api import StorageType

from actors import SharedContextStore, StoreTimeoutError, StoreUnavailableError
from actors.store import LocalStack
from actors.store import local as local_stack
from broker import WRITES_STREAM, BrokerError, StoreConfig, connect
from broker.home import read_record

CLI = [sys.executable, "-m", "actors.cli"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


# How long a started server outlives its last user: short, so tests need not wait long.
GRACE = "0.3"


def local_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["CTXSTORE_HOME"] = str(home)
    env["CTXSTORE_SERVER_GRACE"] = GRACE
    return env


def nats_servers_of(home: Path) -> list[int]:
    """Pids of the nats-server processes whose configuration lies under ``home``."""
    found = []
    under = str(home.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"nats-server"):
            continue
        if any(arg.decode(errors="replace").startswith(under) for arg in argv[1:]):
            found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    try:
        # A zombie has exited: only its parent has not reaped it yet.
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (processes: /proc has nothing to wait on); bound it by the caller."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def ctxstore(home: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=local_env(home),
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    if check:
        assert proc.returncode == 0, err.decode()
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    """A fresh local store directory; at the end, no server of it may be left running."""
    path = tmp_path / "home"
    monkeypatch.setenv("CTXSTORE_SERVER_GRACE", GRACE)
    yield path
    leftover = nats_servers_of(path)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert leftover == []


async def no_server_left(home: Path) -> None:
    """Within 30 s, no nats-server of ``home`` runs."""
    try:
        async with asyncio.timeout(30):
            await wait_until(lambda: not nats_servers_of(home))
    except TimeoutError:
        raise AssertionError(f"nats-server {nats_servers_of(home)} still runs") from None


# -- one directory, one server -------------------------------------------------------------


async def test_six_demos_at_once_on_one_directory_lose_no_acknowledged_write(home: Path) -> None:
    results = await asyncio.gather(*(ctxstore(home, "demo", check=False) for _ in range(6)))
    for code, _, err in results:
        assert code == 0, err
    created = sorted(
        line.split()[1]
        for _, out, _ in results
        for line in out.splitlines()
        if line.startswith("created ")
    )
    assert len(created) == 6

    _, out, _ = await ctxstore(home, "list", "--json")
    listed = json.loads(out)
    assert sorted(c["evolution_id"] for c in listed) == created
    for c in listed:
        assert (c["status"], c["current_phase"], len(c["phases"])) == ("completed", "completed", 5)
    # The last user gone, the server goes too.
    await no_server_left(home)
    assert not (home / "server.json").exists()


async def test_a_directory_is_served_by_one_server_however_many_clients(home: Path) -> None:
    config = StoreConfig.build({})
    stores = [SharedContextStore(config=config, home=home, name=f"c{i}") for i in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert len({s.url for s in stores}) == 1
        assert len(nats_servers_of(home)) == 1
        eid = await stores[0].create_context("./p")
        assert (await stores[3].get_context(eid)).evolution_id == eid
    finally:
        await asyncio.gather(*(s.aclose() for s in stores))
    await no_server_left(home)


def an_old_big_log(home: Path) -> None:
    home.mkdir()
    (home / "server.log").write_bytes(b"an old line\n" * 100_000)  # past the rotation size


async def test_back_to_back_clients_reuse_the_running_server(home: Path) -> None:
    an_old_big_log(home)
    async with SharedContextStore(home=home) as first:
        eid = await first.create_context("./p")
        url = first.url
    async with SharedContextStore(home=home) as second:
        assert second.url == url  # within the grace period: the same server
        assert (await second.get_context(eid)).evolution_id == eid
    await no_server_left(home)
    # The server that started found server.log too big: it moved it aside.
    assert (home / "server.log.1").read_bytes().startswith(b"an old line\n")
    log = (home / "server.log").read_text()
    assert "an old line" not in log
    assert "no client left: stopping" in log


async def test_a_client_arriving_while_the_server_stops_gets_a_new_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No grace: a server stops as soon as its user leaves. Its first step is to remove
    # server.json; the next client comes then, while it stops, waits for it to be gone and
    # starts a new one, which has every earlier write.
    monkeypatch.setenv("CTXSTORE_SERVER_GRACE", "0")
    created: list[str] = []
    servers = set()
    for _ in range(3):
        async with SharedContextStore(home=home) as store:
            created.append(await store.create_context("./p"))
            listed = await store.get_all_contexts()
            record = read_record(home)
            assert record is not None
            servers.add(record.pid)
        assert sorted(c["evolution_id"] for c in listed) == sorted(created)
        async with asyncio.timeout(10):
            await wait_until(lambda: not (home / "server.json").exists())
    assert len(servers) == 3
    await no_server_left(home)


async def test_the_first_clients_settings_are_the_servers_and_a_later_ones_are_not(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = SharedContextStore(home=home, backend="memory")
    second = SharedContextStore(home=home, ttl=60)
    async with first, second:  # in this order: the first one starts the server
        assert second.url == first.url
        assert first.url is not None
        nc = await connect(first.url, name="inspect")
        try:
            info = await nc.jetstream().stream_info(WRITES_STREAM)
        finally:
            await nc.close()
    assert info.config.storage == StorageType.MEMORY
    [warning] = [r for r in caplog.records if "other settings" in r.getMessage()]
    assert "(CONTEXT_STORE_BACKEND, CONTEXT_STORE_TTL)" in warning.getMessage()
    await no_server_left(home)


async def test_a_server_that_cannot_start_is_reported_with_its_log(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_SERVER_BIN", str(home / "no-such-nats-server"))
    with pytest.raises(StoreUnavailableError, match="cannot run nats-server at") as raised:
        await SharedContextStore(home=home).open()
    assert "server.log" in str(raised.value)


async def test_an_in_process_local_stack_holds_the_directory(home: Path) -> None:
    config = StoreConfig.build({})
    async with LocalStack(home, config) as stack:
        with pytest.raises(BrokerError, match=f"pid {os.getpid()}"):
            await LocalStack(home, config).start()
        # A URL-less client finds it and starts nothing of its own.
        async with SharedContextStore(home=home) as store:
            assert store.url == stack.url
            assert nats_servers_of(home) == [stack.server.pid]


async def test_serve_on_a_directory_already_served_says_by_whom(home: Path) -> None:
    async with LocalStack(home, StoreConfig.build({})) as stack:
        code, _, err = await ctxstore(home, "serve", check=False)
        assert code == 1
        assert f"is already served by pid {os.getpid()} at {stack.url}" in err


# -- nothing left behind ---------------------------------------------------------------------


async def test_kill_9_of_a_client_that_started_the_server_leaves_no_nats_server(
    home: Path,
) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from actors import SharedContextStore

        async def main():
            store = SharedContextStore()
            await store.create_context("./p")
            print("ready", flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, env=local_env(home)
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        assert (await proc.stdout.readline()).strip() == b"ready"
    assert nats_servers_of(home)
    proc.kill()
    await proc.wait()
    await no_server_left(home)


async def test_a_script_that_never_closes_its_store_leaves_no_nats_server(home: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from actors import get_context_store

        async def main():
            store = get_context_store()
            print(await store.create_context("./p"), flush=True)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, env=local_env(home)
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    eid = out.decode().strip()
    await no_server_left(home)
    # What it wrote was kept.
    async with LocalStack(home, StoreConfig.build({})), SharedContextStore(home=home) as store:
        assert (await store.get_context(eid)).evolution_id == eid


# -- supervision -------------------------------------------------------------------------------


async def test_serve_restarts_its_nats_server_after_kill_9(home: Path) -> None:
    serve = await asyncio.create_subprocess_exec(
        *CLI, "serve", stdout=asyncio.subprocess.PIPE, env=local_env(home)
    )
    try:
        assert serve.stdout is not None
        async with asyncio.timeout(30):
            line = (await serve.stdout.readline()).decode()
        url = line.split()[3]
        async with SharedContextStore(url) as store:
            eid = await store.create_context("./p")
        [first] = nats_servers_of(home)

        os.kill(first, signal.SIGKILL)
        async with asyncio.timeout(10):
            await wait_until(lambda: not is_running(first))

        async def served() -> bool:
            try:
                async with SharedContextStore(url, timeout=2) as store:
                    return (await store.get_context(eid)).evolution_id == eid
            except (StoreUnavailableError, StoreTimeoutError):
                return False

        async with asyncio.timeout(30):
            while True:
                if await served():
                    break
                await asyncio.sleep(0.1)
        # And it takes writes again.
        async with SharedContextStore(url) as store:
            await store.update_phase("research", eid)
            assert (await store.get_context(eid)).current_phase == "research"
        assert serve.returncode is None
        [second] = nats_servers_of(home)
        assert second != first
    finally:
        if serve.returncode is None:
            serve.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await serve.wait()
    assert code == 0
    await no_server_left(home)


def _restarted_or_stopped(stack: LocalStack, restarts: int) -> bool:
    # Restarted means the server and its new actor serve: killing the new server while its
    # actor still starts would be a third death, not the second.
    return stack.restarts > restarts or not stack.running


async def test_a_nats_server_that_keeps_dying_is_given_up_on(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_stack, "_MAX_RESTARTS", 1)
    async with LocalStack(home, StoreConfig.build({})) as stack:
        for _ in range(2):
            pid, restarts = stack.server.pid, stack.restarts
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            async with asyncio.timeout(30):
                await wait_until(partial(_restarted_or_stopped, stack, restarts))
        with pytest.raises(ExceptionGroup) as raised:
            async with asyncio.timeout(30):
                await stack.wait()
    [failure] = raised.value.exceptions
    assert isinstance(failure, BrokerError)
    assert "nats-server died 2 times within 60s; not restarting it again" in str(failure)
    assert stack.restarts == 1


async def test_kill_9_of_serve_takes_its_nats_server_with_it(home: Path) -> None:
    serve = await asyncio.create_subprocess_exec(
        *CLI, "serve", stdout=asyncio.subprocess.PIPE, env=local_env(home)
    )
    assert serve.stdout is not None
    async with asyncio.timeout(30):
        await serve.stdout.readline()
    assert nats_servers_of(home)
    serve.kill()
    await serve.wait()
    await no_server_left(home)
    # The next command starts afresh, although server.json was left behind.
    _, out, _ = await ctxstore(home, "list")
    assert "no contexts" in out
    await no_server_left(home)
