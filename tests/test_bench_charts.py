"""The benchmark's charts and peers (``bench/``), without running a benchmark: the charts are
drawn from the committed results, and a peer that cannot be had is skipped and said so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
CHARTS = ("latency", "writes", "memory", "startup")
PNG = b"\x89PNG\r\n\x1a\n"


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_every_chart_is_drawn_from_the_committed_results(tmp_path: Path) -> None:
    got = _python("-m", "bench.charts", str(RESULTS), "--out", str(tmp_path))
    assert got.returncode == 0, got.stderr
    for name in CHARTS:
        png = tmp_path / f"{name}.png"
        assert f"{name}: {png}" in got.stdout, got.stdout
        assert png.read_bytes()[:8] == PNG
    # The committed charts are the ones these results draw (same names, same sizes of image).
    for name in CHARTS:
        committed = ROOT / "bench" / "results" / f"{name}.png"
        assert committed.read_bytes()[16:24] == (tmp_path / f"{name}.png").read_bytes()[16:24]


def test_a_partial_run_draws_what_it_holds_and_says_what_it_skipped(tmp_path: Path) -> None:
    doc = json.loads(RESULTS.read_text(encoding="utf-8"))
    doc["figures"] = [f for f in doc["figures"] if f.get("bench") == "latency"]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(doc), encoding="utf-8")
    got = _python("-m", "bench.charts", str(partial))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "latency.png").read_bytes()[:8] == PNG
    for name in ("writes", "memory", "startup"):
        assert f"{name}: skipped" in got.stdout
        assert not (tmp_path / f"{name}.png").exists()


def test_peers_that_cannot_be_had_are_skipped_with_the_reason(tmp_path: Path) -> None:
    script = """
import asyncio, json, sys
from pathlib import Path
sys.modules["langgraph"] = None  # as if langgraph-checkpoint-sqlite were not installed
from bench.peers import open_peers

async def main() -> None:
    async with open_peers(Path(sys.argv[1])) as peers:
        assert peers.redis is None and peers.langgraph is None
        assert await peers.hold("ctx", b"{}", None) == {}
        print(json.dumps(peers.skipped))

asyncio.run(main())
"""
    # No redis-server on this PATH: only the interpreter's own folder.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    got = _python("-c", script, str(tmp_path), env=env)
    assert got.returncode == 0, got.stderr
    skipped = json.loads(got.stdout)
    assert "redis-server not found" in skipped["redis"]
    assert "langgraph-checkpoint-sqlite not installed" in skipped["langgraph"]
