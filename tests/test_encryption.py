"""Encryption at rest (``CONTEXT_STORE_ENCRYPTION_KEY``): what a context holds is in no file
under the store directory (JetStream's files, snapshots, an encrypted export), reads back after
a restart, and a snapshot that is not sealed under the key is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actors import SharedContextStore
from actors.client.bundles import read_bundle
from actors.core.sealing import open_sealed
from actors.store.local import LocalStack
from actors.store.snapshots import SNAPSHOT_BUCKET
from broker import StoreConfig, connect
from contracts import BundleError, Stage

_SNAPSHOT_EVERY = 20


def _config(home: Path, key: str | None) -> StoreConfig:
    env = {"CONTEXT_STORE_SNAPSHOT_EVERY": str(_SNAPSHOT_EVERY)}
    if key is not None:
        env["CONTEXT_STORE_ENCRYPTION_KEY"] = key
    return StoreConfig.build(env, export_path=home / "exports")


def _files_holding(root: Path, marker: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and marker in p.read_bytes()]


async def _write_marked(stack: LocalStack, config: StoreConfig, marker: str) -> tuple[str, Path]:
    """A context whose every phase holds ``marker``, a snapshot taken after it, and an export
    (encrypted when there is a key) in the store directory."""
    async with SharedContextStore(config=config.replace(nats_url=stack.url)) as store:
        eid = await store.create_context(f"./{marker}")
        await store.store_external_research([marker], [], [], evolution_id=eid)
        seq = (await store.get_context(eid)).version  # a snapshot after it holds the marker
        for n in range(_SNAPSHOT_EVERY):
            await store.update_phase(Stage.RESEARCH, eid, error=f"{marker}-{n}")
        assert stack.actor is not None
        assert stack.actor.snapshots is not None
        await stack.actor.snapshots.wait_saved(seq)
        exported = await store.export_context(eid, encrypt=config.key is not None)
    return eid, Path(exported)


@pytest.mark.parametrize("encrypted", [True, False], ids=["with-key", "without-key"])
async def test_what_a_context_holds_is_in_no_file_under_the_store_directory(
    tmp_path: Path, encrypted: bool
) -> None:
    home = tmp_path / "store"
    key = os.urandom(32).hex() if encrypted else None
    config = _config(home, key)
    marker = f"MARKER{os.urandom(8).hex()}"
    async with LocalStack(home, config) as stack:
        eid, exported = await _write_marked(stack, config, marker)
    assert exported.is_relative_to(home)
    holding = _files_holding(home, marker.encode())
    if not encrypted:  # the scan itself finds it where nothing is encrypted
        assert exported in holding
        assert any("jetstream" in p.parts for p in holding)
        return
    assert holding == []
    # Read back: after a restart (from the snapshot and the stream), and the export with the key.
    async with LocalStack(home, config) as stack:
        assert stack.actor is not None
        assert stack.actor.snapshot_loaded is not None
        assert stack.actor.snapshot_loaded.state is not None  # the sealed snapshot loaded
        async with SharedContextStore(config=config.replace(nats_url=stack.url)) as store:
            ctx = await store.get_context(eid)
    assert ctx.external_research["best_practices"] == [marker]
    assert ctx.error_log[-1] == f"{marker}-{_SNAPSHOT_EVERY - 1}"
    bundle = read_bundle(exported, key)
    assert bundle.context.evolution_id == eid
    with pytest.raises(BundleError, match="encrypted"):
        read_bundle(exported)
    with pytest.raises(BundleError, match="authentication failed"):
        read_bundle(exported, os.urandom(32).hex())


async def test_a_snapshot_not_sealed_under_the_key_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "store"
    key = os.urandom(32).hex()
    config = _config(home, key)
    async with LocalStack(home, config) as stack:
        eid, _ = await _write_marked(stack, config, "m")
        nc = await connect(stack.url, name="planter")
        try:
            bucket = await nc.jetstream().object_store(SNAPSHOT_BUCKET)
            names = sorted(i.name for i in await bucket.list(ignore_deletes=True))
            newest = names[-1]
            sealed = (await bucket.get(newest)).data or b""
            # Planted: the very snapshot, unsealed, named as a newer one; and the newest one
            # with one byte of its ciphertext changed.
            seq = int(newest.removeprefix("snapshot-"))
            planted = f"snapshot-{seq + 1:020d}"
            await bucket.put(planted, open_sealed(sealed, key, b"snapshot"))
            await bucket.put(newest, sealed[:-1] + bytes([sealed[-1] ^ 1]))
        finally:
            await nc.close()
    async with LocalStack(home, config) as stack:
        assert stack.actor is not None
        loaded = stack.actor.snapshot_loaded
        assert loaded is not None
        assert loaded.name != planted
        assert loaded.name != newest
        assert f"{planted}: not encrypted, and encryption is on: refused" in loaded.skipped
        assert any(s.startswith(f"{newest}: authentication failed") for s in loaded.skipped)
        async with SharedContextStore(config=config.replace(nats_url=stack.url)) as store:
            assert (await store.get_context(eid)).error_log[-1] == f"m-{_SNAPSHOT_EVERY - 1}"
