"""The spec's usage example, as written (import paths aside), with nothing started by hand:
no NATS_URL, so the store starts an embedded server and store actor in its local directory."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actors import EvolutionConfig, EvolutionEngine, SharedContextStore, get_context_store

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample_project"


def exported_under(path: str, folder: Path) -> bool:
    exported = Path(path)
    return exported.is_file() and exported.resolve().is_relative_to(folder.resolve())


@pytest.fixture
async def local_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("CTXSTORE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SAMPLE, tmp_path / "my-project")
    yield tmp_path
    await get_context_store().aclose()


async def test_the_usage_example_runs_an_evolution_with_nothing_started_by_hand(
    local_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --- the spec's example ---
    engine = EvolutionEngine()
    store = get_context_store()

    config = EvolutionConfig(
        target_path="./my-project", focus_areas=["documentation", "complexity"]
    )
    results = await engine.run_evolution(config)

    context = await store.get_context()
    print(f"Evolution ID: {context.evolution_id}")
    print(f"Files analyzed: {context.original_analysis['files_analyzed']}")
    print(f"Tasks created: {len(context.improvement_plan['tasks'])}")
    print(f"Goals achieved: {context.evaluation_results['goals_achieved']}")

    export_path = await store.export_context()
    print(f"Context exported to: {export_path}")
    # --- end of the example ---
    await engine.aclose()

    assert results.evolution_id == context.evolution_id
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Evolution ID: {results.evolution_id}"
    assert out[1] == "Files analyzed: 8"
    assert out[2] == "Tasks created: 24"
    assert exported_under(export_path, local_only / "contexts")
    # The store kept it in the local directory: a new client finds it there.
    await store.aclose()
    async with SharedContextStore() as again:
        ctx = await again.get_context(results.evolution_id)
    assert ctx.evaluation_results == context.evaluation_results
