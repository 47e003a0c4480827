"""Train the zstd dictionary the store holds phases with (``actors/core/phases.zdict``).

``python -m bench.phase_dictionary`` runs the evolution engine on this repository's own
``actors`` packages (with each focus), folds each evolution as the actor does, and trains a
dictionary on the JSON of the phases and agents' records it holds. Those packages are not
among the projects the benchmarks measure real contexts on (``bench.real.TARGETS``): the
dictionary learns the engine's vocabulary (its keys, agents, messages), not the measured
contexts. A small phase compressed alone gains little (no history to refer back to); with
the dictionary the real contexts' phases took 0.92-0.98x their gzipped JSON at zstd level 3
where they took 1.38x without it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import zstandard

from bench.real import ROOT, build_contexts, real_evolutions

__all__ = ["TRAINING_TARGETS", "train"]

TRAINING_TARGETS: tuple[tuple[Path, tuple[str, ...]], ...] = tuple(
    (ROOT / "actors" / package, focus)
    for package in ("core", "store", "client", "cli", "evolution", "runtime", "console")
    for focus in (("documentation",), ("complexity",))
)
DICT_BYTES = 32 * 1024
DICT_ID = 0x43545801  # fixed, so a frame names which dictionary it needs
OUT = ROOT / "actors" / "core" / "phases.zdict"


async def train(tmp: Path) -> bytes:
    from actors.core.held import PHASES, unhold

    evolutions = await real_evolutions(tmp, TRAINING_TARGETS)
    state = build_contexts(evolutions, len(evolutions))
    fields = [p.value for p in PHASES] + ["agents"]
    samples: list[bytes | bytearray | memoryview] = [
        json
        for ctx in state.contexts.values()
        for name in fields
        if len(json := unhold(getattr(ctx, name))) > 64
    ]
    trained = zstandard.train_dictionary(DICT_BYTES, samples, dict_id=DICT_ID, level=3)
    return trained.as_bytes()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="ctxbench-dict-") as tmp:
        data = uvloop.run(train(Path(tmp)))
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data):,} bytes")
