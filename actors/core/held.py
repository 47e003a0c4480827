"""Contexts as the store holds them: each phase as its encoded JSON, compressed past a size.

A context as Python objects costs several times its JSON (dicts, lists, strings: a real
evolution's 80 KB of JSON took about 4.5x that), and the store actor mostly sends contexts
out as JSON. So the state keeps each phase (and the agents' records) as bytes: the phase's
JSON, compressed (zstd) when it is larger than ``HOLD_OVER``; replies are built from those
bytes (``context_reply``) without decoding them, and a caller that wants the objects decodes
the reply, getting objects of its own (``decoded``).

The JSON a context is replied with is byte for byte the JSON of the ``EvolutionContext`` a
client decodes it into: the phase fields are spliced in as they are held.
"""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from typing import Any, Final

import msgspec
import zstandard

from contracts import (
    PHASE_WRITES,
    Comparison,
    Decoders,
    EvolutionContext,
    Phase,
    PhaseWrite,
    Stage,
    Status,
    encode,
)

__all__ = [
    "EMPTY",
    "HOLD_OVER",
    "NO_VERSIONS",
    "PHASES",
    "HeldContext",
    "comparison_reply",
    "context_reply",
    "decoded",
    "hold",
    "holding",
    "measured_after",
    "phase_json",
    "phase_versions",
    "unhold",
    "written_phases",
]

EMPTY: Final = b"{}"
HOLD_OVER: Final = 512  # JSON larger than this is held compressed
# zstd level 3: a sixth of zlib's time on JSON, and 12x faster than zlib on incompressible
# data, which bounds how long a large write holds up the actor. Each phase is compressed on
# its own (a write replaces one phase, never the others), and a phase of a few KB alone has
# little history to refer back to: with a dictionary trained on the engine's phases
# (``phases.zdict``, made by ``python -m bench.phase_dictionary`` from evolutions of projects
# the benchmarks do not measure) a real context's phases take 0.92-0.98x its gzipped JSON,
# against 1.38x without it, at the same speed (about 600 MB/s here).
_LEVEL: Final = 3
_DICTIONARY: Final = zstandard.ZstdCompressionDict(
    files("actors.core").joinpath("phases.zdict").read_bytes()
)
_compressor: Final = zstandard.ZstdCompressor(level=_LEVEL, dict_data=_DICTIONARY)
_decompressor: Final = zstandard.ZstdDecompressor(dict_data=_DICTIONARY)
# Phases held before the dictionary (in older snapshots) are frames without one: decoding
# them with the dictionary loaded would start from its repeat offsets, not the defaults.
_plain_decompressor: Final = zstandard.ZstdDecompressor()
_FRAME_DICT_ID_FLAG: Final = 4  # the frame header descriptor's byte, after the magic
PHASES: Final = tuple(PHASE_WRITES)
_PHASE_INDEX: Final = {p.value: i for i, p in enumerate(PHASES)}
NO_VERSIONS: Final = (0,) * len(PHASES)
Versions = tuple[int, ...]


def hold(json: bytes) -> bytes:
    """``json`` as the state holds it: as it is, or compressed past ``HOLD_OVER``."""
    if len(json) <= HOLD_OVER:
        return EMPTY if json == EMPTY else json
    # A copy: zstandard returns its output in a buffer sized for the worst case (about the
    # input's size), and a bytes object keeps its allocation: 13.6 KiB held per 2-5 KB.
    return bytes(memoryview(_compressor.compress(json)))


def unhold(held: bytes) -> bytes:
    """The JSON of a held value (JSON objects start with ``{``; a zstd frame never does)."""
    if held[:1] == b"{":
        return held
    # The descriptor's two low bits: the size of the frame's dictionary id (0: none).
    if held[_FRAME_DICT_ID_FLAG] & 3:
        return _decompressor.decompress(held)
    return _plain_decompressor.decompress(held)


def holding(value: Any) -> bytes:
    """A decoded value (a phase's or the agents' dict) as the state holds it."""
    return hold(encode(value))


def phase_json(body: PhaseWrite) -> bytes:
    """The phase's JSON for a phase write: its fields without ``type``, in field order, as
    ``phase_data`` gives them (msgspec writes a tagged struct's tag first)."""
    data = encode(body)
    prefix = b'{"type":"' + str(body.__struct_config__.tag).encode() + b'",'
    if data.startswith(prefix):
        return b"{" + data[len(prefix) :]
    return encode(msgspec.structs.asdict(body))  # pragma: no cover - msgspec's layout changed


# Not tracked by the garbage collector: it holds bytes, strings and numbers only.
class HeldContext(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An ``EvolutionContext`` as the state holds it: the same fields, but each phase and
    ``agents`` as held JSON bytes (``hold``), and ``phase_versions`` as a tuple in ``PHASES``
    order (0: not written)."""

    evolution_id: str
    created_at: datetime
    target_path: str
    focus_areas: list[str] = []
    original_analysis: bytes = EMPTY
    external_research: bytes = EMPTY
    improvement_plan: bytes = EMPTY
    implementation_log: bytes = EMPTY
    evaluation_results: bytes = EMPTY
    status: Status = Status.PENDING
    current_phase: Stage = Stage.INITIALIZED
    error_log: list[str] = []
    version: int = 0
    updated_at: datetime | None = None
    tenant: str = "default"
    phase_versions: Versions = NO_VERSIONS
    agents: bytes = EMPTY


def phase_versions(versions: Versions, phase: Phase, seq: int) -> Versions:
    at = _PHASE_INDEX[phase.value]
    return (*versions[:at], seq, *versions[at + 1 :])


def written_phases(ctx: HeldContext) -> list[str]:
    return [p.value for p in PHASES if getattr(ctx, p.value) != EMPTY]


class _ContextWire(msgspec.Struct, kw_only=True):
    """``EvolutionContext``'s fields in its order, phases spliced in as JSON."""

    evolution_id: str
    created_at: datetime
    target_path: str
    focus_areas: list[str]
    original_analysis: msgspec.Raw
    external_research: msgspec.Raw
    improvement_plan: msgspec.Raw
    implementation_log: msgspec.Raw
    evaluation_results: msgspec.Raw
    status: Status
    current_phase: Stage
    error_log: list[str]
    version: int
    updated_at: datetime | None
    tenant: str
    phase_versions: dict[str, int]
    agents: msgspec.Raw


class _ComparisonWire(msgspec.Struct, kw_only=True):
    """``Comparison``'s fields in its order."""

    evolution_id: str
    version: int
    before: msgspec.Raw
    plan: msgspec.Raw
    after: msgspec.Raw
    implementation: msgspec.Raw
    research: msgspec.Raw
    status: Status
    current_phase: Stage


def _raw(held: bytes) -> msgspec.Raw:
    return msgspec.Raw(unhold(held))


def _versions(versions: Versions) -> dict[str, int]:
    return {p.value: v for p, v in zip(PHASES, versions, strict=True) if v}


def context_reply(ctx: HeldContext) -> bytes:
    """The JSON of the context, as ``EvolutionContext`` (what ``get`` and ``export`` reply)."""
    return encode(
        _ContextWire(
            evolution_id=ctx.evolution_id,
            created_at=ctx.created_at,
            target_path=ctx.target_path,
            focus_areas=ctx.focus_areas,
            original_analysis=_raw(ctx.original_analysis),
            external_research=_raw(ctx.external_research),
            improvement_plan=_raw(ctx.improvement_plan),
            implementation_log=_raw(ctx.implementation_log),
            evaluation_results=_raw(ctx.evaluation_results),
            status=ctx.status,
            current_phase=ctx.current_phase,
            error_log=ctx.error_log,
            version=ctx.version,
            updated_at=ctx.updated_at,
            tenant=ctx.tenant,
            phase_versions=_versions(ctx.phase_versions),
            agents=_raw(ctx.agents),
        )
    )


def measured_after(implementation_log: dict[str, Any]) -> dict[str, Any]:
    """The state measured after implementation (metrics, the project's test results), which
    the evolution keeps with the implementation log's last rollback point; {} before."""
    points = implementation_log.get("rollback_points")
    for point in reversed(points if isinstance(points, list) else []):
        state = point.get("state") if isinstance(point, dict) else None
        if isinstance(state, dict):
            return state
    return {}


_LOG: Final = msgspec.json.Decoder(dict[str, Any])


def comparison_reply(ctx: HeldContext) -> bytes:
    """The JSON of the context's three-way comparison, as ``Comparison``. The spec's after is
    the current state: measured after implementation, not the evaluator's verdict (which
    ``evaluation_results`` holds)."""
    log = _LOG.decode(unhold(ctx.implementation_log))
    return encode(
        _ComparisonWire(
            evolution_id=ctx.evolution_id,
            version=ctx.version,
            before=_raw(ctx.original_analysis),
            plan=_raw(ctx.improvement_plan),
            after=msgspec.Raw(encode(measured_after(log))),
            implementation=_raw(ctx.implementation_log),
            research=_raw(ctx.external_research),
            status=ctx.status,
            current_phase=ctx.current_phase,
        )
    )


def decoded(ctx: HeldContext) -> EvolutionContext:
    """The context as objects of the caller's own (nothing shared with the state)."""
    return Decoders.context.decode(context_reply(ctx))


def decoded_comparison(ctx: HeldContext) -> Comparison:
    return Decoders.comparison.decode(comparison_reply(ctx))
