"""Export/import bundles: one file with the context, its write history and a hash chain."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from actors import ConflictError, SharedContextStore, StoreActor
from actors.cli import main
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import BundleError, EvolutionContext, Stage, Status, WriteKind, write_subject
from contracts.bundle import GENESIS, chain_hash
from contracts.history import HistoryEntry

ANALYSIS: dict[str, Any] = dict(
    files_analyzed=12,
    metrics={"complexity": 3.5, "coverage": 75},
    issues=[{"type": "code_smell", "location": "file:42"}],
    improvements=[{"type": "docstring", "priority": "high"}],
)
PLAN: dict[str, Any] = dict(
    tasks=[{"id": "task-1", "action": "add_docstring"}],
    priorities=["task-1"],
    dependencies={},
    estimated_impact=0.7,
)


async def record(store: SharedContextStore, other: SharedContextStore, nc: Client) -> str:
    """An evolution with two writers, a rejected write, an error, and another context's
    writes interleaved (so sequences differ from a fresh store's)."""
    eid = await store.create_context("./proj", ["documentation", "complexity"])
    await other.create_context("./unrelated")
    await store.update_phase(Stage.RESEARCH)
    await other.store_external_research(
        best_practices=["Add docstrings"], references=[], patterns=[], evolution_id=eid
    )
    await store.store_original_analysis(**ANALYSIS)
    await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.IMPROVEMENT_PLAN),
        b'{"type": "improvement_plan", "estimated_impact": 7}',
    )
    await store.update_phase(Stage.PLANNING)
    await store.store_improvement_plan(**PLAN)
    await store.update_phase(Stage.IMPLEMENTATION, status=Status.FAILED, error="refactor crashed")
    return eid


def same_content(copy: EvolutionContext, original: EvolutionContext) -> None:
    """Equal except the id and sequence numbers (version, phase_versions, 'seq N' in the
    error log)."""
    skip = {"evolution_id", "version", "phase_versions", "error_log"}
    a, b = msgspec.to_builtins(copy), msgspec.to_builtins(original)
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }
    unseq = re.compile(r"^seq \d+ ")
    assert [unseq.sub("seq N ", e) for e in copy.error_log] == [
        unseq.sub("seq N ", e) for e in original.error_log
    ]
    assert sorted(copy.phase_versions) == sorted(original.phase_versions)


def same_history(copy: list[HistoryEntry], original: list[HistoryEntry]) -> None:
    def key(e: HistoryEntry) -> tuple[Any, ...]:
        return (e.time, e.kind, e.writer, e.size, e.applied, e.code, e.stage)

    assert [key(e) for e in copy] == [key(e) for e in original]


def read_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


async def last_seq(nc: Client) -> int:
    return int((await nc.jetstream().stream_info(WRITES_STREAM)).state.last_seq)


@contextlib.asynccontextmanager
async def fresh_store(tmp_path: Path, **config: Any) -> AsyncIterator[SharedContextStore]:
    async with EmbeddedServer(tmp_path / "fresh") as server:
        cfg = StoreConfig.build(
            {}, nats_url=server.url, export_path=tmp_path / "fresh-exports", **config
        )
        conn = await connect(server.url, name="fresh-actor", long_running=True)
        try:
            async with StoreActor(conn, cfg), SharedContextStore(config=cfg, name="fresh") as s:
                yield s
        finally:
            await conn.close()


async def test_export_writes_one_file_with_context_history_and_hash_chain(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await record(store, store_b, nc)
    raw = read_bytes(await store.export_context(eid))
    assert raw[:2] != b"\x1f\x8b"  # compression is off in this store
    doc = json.loads(raw)
    assert (doc["format"], doc["version"]) == ("ctxstore-bundle", 1)
    assert doc["evolution_id"] == eid
    assert doc["context"] == msgspec.to_builtins(await store.get_context(eid))
    history = await store.history(eid)
    assert [w["seq"] for w in doc["writes"]] == [e.seq for e in history]
    assert [w["kind"] for w in doc["writes"]] == [e.kind for e in history]
    assert [w["writer"] for w in doc["writes"]] == [e.writer for e in history]
    assert [w["applied"] for w in doc["writes"]] == [e.applied for e in history]
    assert doc["count"] == len(history) == 8
    rejected = doc["writes"][4]
    assert rejected["body"] == '{"type": "improvement_plan", "estimated_impact": 7}'
    assert rejected["code"] == "invalid"
    # The chain, recomputed by hand from the documented canonical form.
    prev = GENESIS
    for w in doc["writes"]:
        canonical = json.dumps(
            [
                w["seq"],
                w["time"],
                w["kind"],
                w["writer"],
                w["body"],
                w["body_b64"],
                w["applied"],
                w["code"],
                w["reason"],
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        prev = chain_hash(prev, canonical)
        assert w["hash"] == prev
    assert doc["head"] == prev


async def test_import_into_a_fresh_server_reproduces_state_and_history(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client, tmp_path: Path
) -> None:
    eid = await record(store, store_b, nc)
    original, history = await store.get_context(eid), await store.history(eid)
    path = await store.export_context(eid)
    async with fresh_store(tmp_path) as other:
        assert await other.import_context(path) == eid
        copy = await other.get_context(eid)
        assert copy.created_at == original.created_at
        assert copy.updated_at == original.updated_at
        same_content(copy, original)
        copied = await other.history(eid)
        same_history(copied, history)
        assert [e.seq for e in copied] != [e.seq for e in history]  # fresh sequences
        # The copy exports again, and the second bundle imports as well.
        again = await other.export_context(eid, tmp_path / "again.json")
        assert await other.import_context(again, evolution_id="evo-again") == "evo-again"
        same_content(await other.get_context("evo-again"), original)


async def test_import_in_the_same_store_under_a_new_id_or_replacing(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await record(store, store_b, nc)
    original, history = await store.get_context(eid), await store.history(eid)
    path = await store.export_context(eid)
    await store.store_original_analysis(**{**ANALYSIS, "files_analyzed": 99})
    changed = await store.get_context(eid)

    before = await last_seq(nc)
    with pytest.raises(ConflictError, match="already exists"):
        await store.import_context(path)
    assert await last_seq(nc) == before  # nothing written
    assert await store.get_context(eid) == changed

    assert await store.import_context(path, evolution_id="evo-copy") == "evo-copy"
    same_content(await store.get_context("evo-copy"), original)
    same_history(await store.history("evo-copy"), history)

    assert await store.import_context(path, replace=True) == eid
    replaced = await store.get_context(eid)
    same_content(replaced, original)
    assert replaced.original_analysis["files_analyzed"] == 12


async def test_compressed_bundles_when_compression_is_on(
    actor: StoreActor, config: StoreConfig, tmp_path: Path
) -> None:
    cfg = config.replace(**{"compression": True})
    async with SharedContextStore(config=cfg, name="agent-z") as store:
        eid = await store.create_context("./p")
        await store.store_improvement_plan(**PLAN)
        path = Path(await store.export_context())
        assert path.name == f"{eid}.json.gz"
        raw = read_bytes(path)
        assert raw[:2] == b"\x1f\x8b"
        assert json.loads(gzip.decompress(raw))["evolution_id"] == eid
        assert await store.import_context(path, evolution_id="evo-z") == "evo-z"
        assert (await store.get_context("evo-z")).improvement_plan == PLAN


# -- rejected files --------------------------------------------------------------------------

Doc = dict[str, Any]


def _edit_body(doc: Doc) -> None:
    body = json.loads(doc["writes"][3]["body"])
    body["files_analyzed"] = 13
    doc["writes"][3]["body"] = json.dumps(body)


def _edit_writer(doc: Doc) -> None:
    doc["writes"][2]["writer"] = "mallory"


def _drop_middle(doc: Doc) -> None:
    del doc["writes"][2]
    doc["count"] -= 1


def _drop_last(doc: Doc) -> None:
    del doc["writes"][-1]
    doc["count"] -= 1


def _drop_last_keep_count(doc: Doc) -> None:
    del doc["writes"][-1]


def _swap(doc: Doc) -> None:
    w = doc["writes"]
    w[1], w[2] = w[2], w[1]


def _edit_context(doc: Doc) -> None:
    doc["context"]["status"] = "completed"


def _wrong_version(doc: Doc) -> None:
    doc["version"] = 99


def _bad_hash_text(doc: Doc) -> None:
    doc["head"] = "not-a-hash"


def _rechained_forgery(doc: Doc) -> None:
    """Edit a body and recompute every hash: the chain holds, but the writes no longer
    lead to the recorded context."""
    _edit_body(doc)
    prev = GENESIS
    for w in doc["writes"]:
        canonical = json.dumps(
            [w[k] for k in ("seq", "time", "kind", "writer", "body", "body_b64")]
            + [w["applied"], w["code"], w["reason"]],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        prev = w["hash"] = chain_hash(prev, canonical)
    doc["head"] = prev
    from contracts.bundle import context_hash

    ctx = msgspec.convert(doc["context"], EvolutionContext)
    doc["context_hash"] = context_hash(prev, ctx)


EDITS: list[tuple[Callable[[Doc], None], str]] = [
    (_edit_body, "write #4 .*hash chain broken"),
    (_edit_writer, "write #3 .*hash chain broken"),
    (_drop_middle, "write #3 .*hash chain broken"),
    (_drop_last, "head .* does not match"),
    (_drop_last_keep_count, "declares 8 writes but holds 7"),
    (_swap, "write #2 .*reordered"),
    (_edit_context, "context was edited"),
    (_wrong_version, "version 99"),
    (_bad_hash_text, "head"),
    (_rechained_forgery, "does not match its write history"),
]


@pytest.mark.parametrize(("edit", "message"), EDITS, ids=[e.__name__ for e, _ in EDITS])
async def test_a_tampered_bundle_is_rejected_and_writes_nothing(
    store: SharedContextStore,
    store_b: SharedContextStore,
    nc: Client,
    tmp_path: Path,
    edit: Callable[[Doc], None],
    message: str,
) -> None:
    eid = await record(store, store_b, nc)
    doc = json.loads(read_bytes(await store.export_context(eid)))
    edit(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    before = await last_seq(nc)
    with pytest.raises(BundleError, match=message):
        await store.import_context(bad, evolution_id="evo-imported")
    assert await last_seq(nc) == before


def _truncate_gzip(raw: bytes) -> bytes:
    return gzip.compress(raw)[:-20]


def _truncate_json(raw: bytes) -> bytes:
    return raw[: len(raw) * 2 // 3]


def _garbage(raw: bytes) -> bytes:
    return b"\x00\x01not a bundle"


def _not_utf8_gzip(raw: bytes) -> bytes:
    return b"\x1f\x8b" + b"\xff" * 40


CORRUPTIONS: list[tuple[Callable[[bytes], bytes], str]] = [
    (_truncate_gzip, "corrupt or truncated gzip"),
    (_truncate_json, "not valid JSON"),
    (_garbage, "not valid JSON"),
    (_not_utf8_gzip, "gzip"),
]


@pytest.mark.parametrize(
    ("corrupt", "message"), CORRUPTIONS, ids=[c.__name__ for c, _ in CORRUPTIONS]
)
async def test_a_malformed_or_truncated_file_is_rejected_and_writes_nothing(
    store: SharedContextStore,
    nc: Client,
    tmp_path: Path,
    corrupt: Callable[[bytes], bytes],
    message: str,
) -> None:
    await store.create_context("./p")
    await store.store_improvement_plan(**PLAN)
    raw = read_bytes(await store.export_context())
    bad = tmp_path / "bad.bin"
    bad.write_bytes(corrupt(raw))
    before = await last_seq(nc)
    with pytest.raises(BundleError, match=message):
        await store.import_context(bad, evolution_id="evo-imported")
    assert await last_seq(nc) == before


async def test_a_write_over_the_target_stores_limit_is_refused_before_publishing(
    store: SharedContextStore, nc: Client, tmp_path: Path
) -> None:
    await store.create_context("./p")
    big = [{"id": f"t{i}", "note": "x" * 100} for i in range(200)]  # about 24 KB
    await store.store_improvement_plan(big, [], {}, 0.5)
    path = await store.export_context()
    async with fresh_store(tmp_path, max_payload=16 * 1024) as small:
        await small.get_all_contexts()  # connected
        assert small.url is not None
        raw = await connect(small.url, name="test-raw")
        try:
            before = await last_seq(raw)
            with pytest.raises(BundleError, match="over this store's payload limit"):
                await small.import_context(path)
            assert await last_seq(raw) == before
        finally:
            await raw.close()


async def test_an_export_to_a_path_that_cannot_be_written_raises_a_bundle_error(
    store: SharedContextStore, tmp_path: Path
) -> None:
    eid = await store.create_context("./p")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(BundleError, match="cannot write"):
        await store.export_context(eid, blocker / "ctx.json")
    assert blocker.read_text(encoding="utf-8") == "not a directory"


async def test_non_utf8_bodies_round_trip_as_base64(
    store: SharedContextStore, nc: Client, tmp_path: Path
) -> None:
    eid = await store.create_context("./p")
    await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.IMPROVEMENT_PLAN), b"\xff\xfe binary"
    )
    await store.update_phase(Stage.PLANNING)
    doc = json.loads(read_bytes(await store.export_context(eid)))
    binary = doc["writes"][1]
    assert binary["body"] is None
    assert base64.b64decode(binary["body_b64"]) == b"\xff\xfe binary"
    assert binary["applied"] is False
    original = await store.get_context(eid)
    async with fresh_store(tmp_path) as other:
        await other.import_context(Path(store.config.export_path) / f"{eid}.json")
        same_content(await other.get_context(eid), original)


async def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(list(argv))

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def test_cli_export_and_import(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client, tmp_path: Path
) -> None:
    eid = await record(store, store_b, nc)
    url = store.url
    assert url is not None
    target = tmp_path / "out" / "bundle.json"
    code, out, _ = await run_cli("--nats-url", url, "export", eid, "-o", str(target))
    assert code == 0
    assert out.strip() == str(target)
    assert json.loads(target.read_bytes())["evolution_id"] == eid

    code, _, err = await run_cli("--nats-url", url, "import", str(target))
    assert code == 1
    assert "already exists" in err

    code, out, _ = await run_cli("--nats-url", url, "import", str(target), "--as", "evo-cli")
    assert code == 0
    assert "imported evo-cli" in out
    same_content(await store.get_context("evo-cli"), await store.get_context(eid))

    code, out, _ = await run_cli("--nats-url", url, "import", str(target), "--replace")
    assert code == 0
    assert f"imported {eid}" in out

    broken = tmp_path / "broken.json"
    broken.write_bytes(target.read_bytes().replace(b"refactor crashed", b"refactor crashes"))
    before = await last_seq(nc)
    code, _, err = await run_cli("--nats-url", url, "import", str(broken), "--as", "evo-x")
    assert code == 1
    assert "hash" in err or "context was edited" in err
    assert await last_seq(nc) == before
