"""The broker layer: the embedded nats-server, stream provisioning, configuration."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import StorageType
from nats.js.errors import NotFoundError

from actors import SharedContextStore, StoreActor
from broker import (
    ACTOR_DURABLE,
    EVENTS_STREAM,
    WRITES_STREAM,
    BrokerError,
    ConfigError,
    EmbeddedServer,
    StoreConfig,
    connect,
    provision,
)
from contracts import DEFAULT_MAX_PAYLOAD, WriteKind, write_subject


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fake_binary(folder: Path, script: str) -> Path:
    path = folder / "fake-nats-server"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# -- the embedded server -----------------------------------------------------------------


async def test_embedded_server_starts_on_a_free_port_and_serves_jetstream(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats")
    with pytest.raises(BrokerError):
        _ = server.url  # not running yet
    async with server:
        assert server.port is not None
        assert server.port > 0
        assert server.url == f"nats://127.0.0.1:{server.port}"
        assert "Server is ready" in server.log_tail
        nc = await connect(server.url, name="probe")
        try:
            info = await nc.jetstream().account_info()
            assert info.streams == 0
        finally:
            await nc.close()


async def test_two_servers_at_once_get_different_ports(tmp_path: Path) -> None:
    async with EmbeddedServer(tmp_path / "a") as a, EmbeddedServer(tmp_path / "b") as b:
        assert a.port != b.port
        for srv in (a, b):
            nc = await connect(srv.url, name="probe")
            assert nc.is_connected
            await nc.close()


async def test_stop_is_clean_and_idempotent(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats")
    await server.start()
    pid = server.pid
    assert pid is not None
    assert is_running(pid)
    with pytest.raises(BrokerError, match="already started"):
        await server.start()
    await server.stop()
    assert not is_running(pid)
    assert server.pid is None
    assert server.port is None
    await server.stop()  # again: nothing to do, no error
    with pytest.raises(BrokerError):
        _ = server.url


async def test_kill_ends_the_process(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats")
    await server.start()
    pid = server.pid
    assert pid is not None
    await server.kill()
    assert not is_running(pid)
    await server.kill()  # idempotent too


async def test_jetstream_data_survives_a_restart_on_the_same_directory(tmp_path: Path) -> None:
    config = StoreConfig.build({})
    async with EmbeddedServer(tmp_path / "nats") as first:
        nc = await connect(first.url, name="probe")
        await provision(nc.jetstream(), config)
        ack = await nc.jetstream().publish(
            write_subject("default", "evo-1", WriteKind.CREATE), b'{"type": "create"}'
        )
        await nc.close()
    async with EmbeddedServer(tmp_path / "nats") as second:
        nc = await connect(second.url, name="probe")
        info = await nc.jetstream().stream_info(WRITES_STREAM)
        assert info.state.last_seq == ack.seq
        await nc.close()


async def test_a_missing_binary_gives_broker_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_SERVER_BIN", str(tmp_path / "no-such-nats-server"))
    with pytest.raises(BrokerError):
        await EmbeddedServer(tmp_path / "nats").start()


async def test_a_binary_that_exits_gives_broker_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = fake_binary(tmp_path, 'echo "not a nats server" >&2; exit 3')
    monkeypatch.setenv("NATS_SERVER_BIN", str(binary))
    server = EmbeddedServer(tmp_path / "nats")
    with pytest.raises(BrokerError, match="exited with code 3") as raised:
        await server.start()
    assert "not a nats server" in str(raised.value)
    assert server.pid is None


async def test_a_binary_that_never_gets_ready_gives_broker_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = fake_binary(tmp_path, "exec sleep 30")
    monkeypatch.setenv("NATS_SERVER_BIN", str(binary))
    server = EmbeddedServer(tmp_path / "nats", startup_timeout=0.5)
    with pytest.raises(BrokerError, match="not ready"):
        await server.start()
    assert server.pid is None  # the stuck child was stopped


# -- provisioning ------------------------------------------------------------------------


async def snapshot(nc: Client) -> tuple[object, ...]:
    js = nc.jetstream()
    writes = await js.stream_info(WRITES_STREAM)
    events = await js.stream_info(EVENTS_STREAM)
    try:
        consumer = await js.consumer_info(WRITES_STREAM, ACTOR_DURABLE)
    except NotFoundError:  # provisioning leaves the consumer to the leading actor
        return (writes.config, writes.state.messages, writes.created, events.config)
    return (
        writes.config,
        writes.state.messages,
        writes.created,
        events.config,
        events.created,
        consumer.config,
        consumer.created,
        consumer.delivered.stream_seq if consumer.delivered else None,
    )


async def test_provision_twice_changes_nothing(nc: Client, config: StoreConfig) -> None:
    js = nc.jetstream()
    await provision(js, config)
    await js.publish(write_subject("default", "evo-1", WriteKind.CREATE), b"{}")
    first = await snapshot(nc)
    await provision(js, config)
    await provision(js, config)
    assert await snapshot(nc) == first
    writes = await js.stream_info(WRITES_STREAM)
    assert writes.config.max_msg_size == config.max_payload
    assert writes.config.subjects == ["ctxstore.write.*.>"]
    assert writes.config.allow_direct is True
    assert writes.config.storage == StorageType.FILE


async def test_provision_while_an_actor_runs_changes_nothing(
    store: SharedContextStore, actor: StoreActor, nc: Client, config: StoreConfig
) -> None:
    await store.create_context("./p")
    first = await snapshot(nc)
    await provision(nc.jetstream(), config)
    assert await snapshot(nc) == first
    await store.store_original_analysis(1, {}, [], [])  # and the actor still applies writes
    assert (await store.get_context()).original_analysis["files_analyzed"] == 1


async def test_provision_aligns_limits_but_keeps_storage_and_data(
    nc: Client, config: StoreConfig
) -> None:
    js = nc.jetstream()
    await provision(js, config)
    await js.publish(write_subject("default", "evo-1", WriteKind.CREATE), b"{}")
    changed = config.replace(**{"max_payload": 128 * 1024, "backend": "memory"})
    await provision(js, changed)
    info = await js.stream_info(WRITES_STREAM)
    assert info.config.max_msg_size == 128 * 1024
    assert info.config.storage == StorageType.FILE  # never switched under stored data
    assert info.state.messages == 1


# -- configuration -----------------------------------------------------------------------


def test_config_defaults() -> None:
    config = StoreConfig.build({})
    assert config.backend == "file"
    assert config.max_contexts == 1000
    assert config.ttl_seconds is None
    assert config.compression is False
    assert config.max_payload == DEFAULT_MAX_PAYLOAD
    assert config.tenant == "default"
    assert config.nats_url is None


def test_config_reads_the_spec_environment_variables() -> None:
    config = StoreConfig.build(
        {
            "CONTEXT_STORE_BACKEND": "memory",
            "CONTEXT_STORE_MAX_SIZE": "50",
            "CONTEXT_STORE_TTL": "86400",
            "CONTEXT_STORE_COMPRESSION": "true",
            "CONTEXT_STORE_MAX_PAYLOAD": "131072",
            "CONTEXT_STORE_EXPORT_PATH": "/tmp/ctx",
            "CTXSTORE_TENANT": "team-a",
            "NATS_URL": "nats://127.0.0.1:4222",
        }
    )
    assert config.backend == "memory"
    assert config.max_contexts == 50
    assert config.ttl_seconds == 86400
    assert config.compression is True
    assert config.max_payload == 131072
    assert config.export_path == Path("/tmp/ctx")
    assert config.tenant == "team-a"
    assert config.nats_url == "nats://127.0.0.1:4222"
    assert StoreConfig.build({"CONTEXT_STORE_MAX_SIZE": "unlimited"}).max_contexts is None
    assert StoreConfig.build({"CONTEXT_STORE_BACKEND": ""}).backend == "file"


def test_arguments_override_the_environment() -> None:
    env = {"CONTEXT_STORE_BACKEND": "memory", "CONTEXT_STORE_MAX_SIZE": "5"}
    config = StoreConfig.build(env, backend="file", max_contexts=None)
    assert config.backend == "file"
    assert config.max_contexts == 5  # None means "not given"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"CONTEXT_STORE_BACKEND": "bogus"}, "backend"),
        ({"CONTEXT_STORE_MAX_SIZE": "lots"}, "max_contexts"),
        ({"CONTEXT_STORE_MAX_SIZE": "0"}, "max_contexts"),
        ({"CONTEXT_STORE_TTL": "-5"}, "ttl_seconds"),
        ({"CONTEXT_STORE_COMPRESSION": "perhaps"}, "compression"),
        ({"CONTEXT_STORE_MAX_PAYLOAD": "10"}, "max_payload"),
        ({"CTXSTORE_TENANT": "a.b"}, "tenant"),
    ],
)
def test_invalid_configuration_names_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        StoreConfig.build(env)


def test_unknown_argument_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="colour"):
        StoreConfig.build({}, colour="red")


def test_the_client_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXT_STORE_BACKEND", "bogus")
    with pytest.raises(ConfigError, match="backend"):
        SharedContextStore()
    monkeypatch.setenv("CONTEXT_STORE_BACKEND", "memory")
    monkeypatch.setenv("CONTEXT_STORE_MAX_SIZE", "7")
    store = SharedContextStore(enable_compression=True)
    assert store.config.backend == "memory"
    assert store.config.max_contexts == 7
    assert store.config.compression is True
