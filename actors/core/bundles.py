"""Export/import bundles, the pure half: build, check and compare (no I/O).

The format is documented in ``contracts/bundle.py``. A bundle is built from a context's
``Timeline`` (its writes as stored), so the context in a bundle is exactly the fold of the
writes in it. Before an import publishes anything (``actors.client.bundles``) the file is
validated in full here: gzip and JSON structure, format and version, the hash chain, the
count and head, the context hash, every write's size against the store's limit, and that
folding the writes gives the recorded context.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec

from actors.core.fold import Applied, Limits, Rejected, StoredWrite, StoreState
from actors.core.held import HeldContext, decoded
from actors.core.timeline import Timeline, diff_contexts, history_entry
from contracts import (
    BundleError,
    ContextNotFoundError,
    ContextStoreError,
    ErrorCode,
    EvolutionContext,
    encode,
    write_subject,
)
from contracts.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    BUNDLE_VERSIONS_READ,
    GENESIS,
    Bundle,
    BundleWrite,
    chain_hash,
    context_hash,
)
from contracts.framing import WritePart
from contracts.history import Change

__all__ = [
    "Published",
    "ReplayResult",
    "abort_reason",
    "as_recorded",
    "build_bundle",
    "check_consistent",
    "decode_bundle",
    "describe",
    "encode_bundle",
    "ensure_imported",
    "raw_body",
]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_SEQ_IN_LOG = re.compile(r"^seq (\d+) ")
_decoder: Final = msgspec.json.Decoder(Bundle)


# -- export --------------------------------------------------------------------------------


def build_bundle(timeline: Timeline) -> Bundle:
    """The bundle of a context: its state and every write on its subjects, one entry per
    write (the chunks of a write in chunks make one, with its whole body). A write still
    unfinished at the end is left out, and the context is the one before its chunks."""
    context: HeldContext | None = None
    prev = GENESIS
    writes: list[BundleWrite] = []
    for step in timeline.steps():
        entry = history_entry(step)
        if entry is None:  # a chunk that did not finish its write
            continue
        context = step.context
        outcome = step.outcome
        dropped = isinstance(outcome, Rejected) and _from_chunks(outcome.write)
        write = outcome.write if outcome is not None else step.recorded.write
        body, body_b64 = None, None
        if not dropped:
            try:
                body = write.data.decode("utf-8")
            except UnicodeDecodeError:
                body_b64 = base64.b64encode(write.data).decode("ascii")
        unsigned = BundleWrite(
            seq=entry.seq,
            time=entry.time,
            kind=entry.kind,
            writer=entry.writer,
            body=body if not dropped else "",
            body_b64=body_b64,
            applied=entry.applied,
            code=entry.code,
            reason=entry.reason,
            dropped=dropped,
            hash=GENESIS,
        )
        prev = chain_hash(prev, unsigned.canonical())
        writes.append(msgspec.structs.replace(unsigned, hash=prev))
    if context is None:
        raise ContextNotFoundError(
            f"no context {timeline.evolution_id} in tenant {timeline.tenant}"
        )
    ctx = decoded(context)
    return Bundle(
        format=BUNDLE_FORMAT,
        version=BUNDLE_VERSION,
        exported_at=datetime.now(UTC),
        tenant=timeline.tenant,
        evolution_id=timeline.evolution_id,
        count=len(writes),
        head=prev,
        context_hash=context_hash(prev, ctx),
        context=ctx,
        writes=writes,
    )


def _from_chunks(write: StoredWrite) -> bool:
    """A rejection decided by the chunks (or an abort) of a write, not by its body."""
    return write.part is not None and write.part.write_id is not None


def encode_bundle(bundle: Bundle, *, compress: bool) -> bytes:
    data = msgspec.json.format(encode(bundle), indent=1)
    return gzip.compress(data, mtime=0) if compress else data


# -- validation ----------------------------------------------------------------------------


def decode_bundle(raw: bytes, *, source: str = "bundle") -> Bundle:
    """Parse and check a bundle's structure, hash chain, count, head and context hash."""
    bundle = _parsed(raw, source)
    _check_header(bundle, source)
    head = _check_chain(bundle, source)
    if bundle.head != head:
        raise BundleError(
            f"{source}: head {bundle.head[:12]}... does not match the last write's hash "
            f"{head[:12]}... (writes removed from the end?)"
        )
    if bundle.context_hash != context_hash(bundle.head, bundle.context):
        raise BundleError(f"{source}: the context was edited: its hash does not match")
    return bundle


def _parsed(raw: bytes, source: str) -> Bundle:
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise BundleError(f"{source}: corrupt or truncated gzip data ({exc})") from None
    if not raw.strip():
        raise BundleError(f"{source} is empty")
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise BundleError(f"{source} is not a valid {BUNDLE_FORMAT}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BundleError(f"{source} is not valid JSON (truncated?): {exc}") from None


def _check_header(bundle: Bundle, source: str) -> None:
    if bundle.format != BUNDLE_FORMAT:
        raise BundleError(f"{source} is a {bundle.format!r} file, not a {BUNDLE_FORMAT}")
    if bundle.version not in BUNDLE_VERSIONS_READ:
        raise BundleError(
            f"{source} has {BUNDLE_FORMAT} version {bundle.version}; this store reads versions "
            f"{', '.join(map(str, sorted(BUNDLE_VERSIONS_READ)))}"
        )
    if bundle.count != len(bundle.writes):
        raise BundleError(
            f"{source} declares {bundle.count} writes but holds {len(bundle.writes)} (truncated?)"
        )
    if bundle.context.evolution_id != bundle.evolution_id:
        raise BundleError(
            f"{source}: the context is {bundle.context.evolution_id}, "
            f"the bundle says {bundle.evolution_id}"
        )


def _check_chain(bundle: Bundle, source: str) -> str:
    """The hash of the last write, once every write is in order, whole and chained."""
    prev, last_seq = GENESIS, 0
    for i, write in enumerate(bundle.writes):
        where = f"{source}: write #{i + 1} (seq {write.seq})"
        if write.seq <= last_seq:
            raise BundleError(f"{where} is out of order: it follows seq {last_seq}")
        last_seq = write.seq
        if (write.body is None) == (write.body_b64 is None):
            raise BundleError(f"{where} must have exactly one of body and body_b64")
        expected = chain_hash(prev, write.canonical())
        if write.hash != expected:
            raise BundleError(
                f"{where}: hash chain broken: the write was edited, removed or reordered "
                f"(hash {write.hash[:12]}..., expected {expected[:12]}...)"
            )
        prev = write.hash
        raw_body(write, where)
    return prev


def raw_body(write: BundleWrite, where: str = "write") -> bytes:
    """A recorded write's body as it was published."""
    if write.body is not None:
        return write.body.encode("utf-8")
    try:
        return base64.b64decode(write.body_b64 or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleError(f"{where}: body_b64 is not valid base64 ({exc})") from None


def abort_reason(write: BundleWrite) -> str:
    """What an import's abort of a dropped write says: the reason recorded, so the store
    logs the same error as the one exported."""
    return (write.reason or "dropped unfinished").replace("\r", " ").replace("\n", " ")


def _stored(bundle: Bundle, write: BundleWrite) -> StoredWrite:
    subject = write_subject(bundle.tenant, bundle.evolution_id, write.kind)
    if write.dropped:
        part = WritePart(write_id=f"bundle-{write.seq}", abort=abort_reason(write))
        return StoredWrite(write.seq, write.time, subject, b"", write.writer, part=part)
    return StoredWrite(
        seq=write.seq,
        time=write.time,
        subject=subject,
        data=raw_body(write),
        writer=write.writer,
    )


def check_consistent(bundle: Bundle, *, max_write: int) -> None:
    """Strict check: folding the bundle's writes gives its context and its outcomes, and
    every write fits this store's limit on a write."""
    for write in bundle.writes:
        size = len(raw_body(write))
        if size > max_write:
            raise BundleError(
                f"write seq {write.seq} ({write.kind}) is {size} bytes, over this store's "
                f"limit on a write of {max_write} bytes"
            )
    state = StoreState(Limits(max_write=max_write, max_contexts=None))
    for write in bundle.writes:
        if not write.applied and write.code == ErrorCode.CAPACITY:
            state.applied_seq = write.seq  # refused for a full store: changed nothing
            continue
        outcome = state.apply(_stored(bundle, write))
        applied = isinstance(outcome, Applied)
        if applied != write.applied:
            said = "applied" if write.applied else "rejected"
            raise BundleError(
                f"write seq {write.seq} ({write.kind}) is recorded as {said}, but replaying the "
                f"history does not give that"
            )
    folded = state.get(bundle.tenant, bundle.evolution_id)
    if folded is None:
        raise BundleError("the bundle's writes do not create its context")
    changes = diff_contexts(folded, bundle.context, ignore=())
    if changes:
        raise BundleError(
            "the context does not match its write history: " + describe(changes, limit=3)
        )


def describe(changes: Iterable[Change], *, limit: int | None = None) -> str:
    items = list(changes)
    shown = items if limit is None else items[:limit]
    text = "; ".join(f"{c.path} {c.op}" for c in shown)
    if limit is not None and len(items) > limit:
        text += f"; and {len(items) - limit} more"
    return text


# -- import --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    evolution_id: str
    last_seq: int
    seq_map: dict[int, int]  # new sequence -> recorded sequence


def as_recorded(ctx: EvolutionContext, bundle: Bundle, published: Published) -> EvolutionContext:
    """The imported context in the recording's terms: its id, tenant and sequences mapped
    back to the recorded ones, so it can be compared with the bundle's context."""
    seq_map = published.seq_map

    def seq(value: int) -> int:
        return seq_map.get(value, value)

    def entry(text: str) -> str:
        match = _SEQ_IN_LOG.match(text)
        if match is not None:
            text = f"seq {seq(int(match.group(1)))} " + text[match.end() :]
        return text.replace(published.evolution_id, bundle.evolution_id)

    return msgspec.structs.replace(
        ctx,
        evolution_id=bundle.evolution_id,
        tenant=bundle.tenant,
        version=seq(ctx.version),
        phase_versions={k: seq(v) for k, v in ctx.phase_versions.items()},
        error_log=[entry(e) for e in ctx.error_log],
    )


def ensure_imported(ctx: EvolutionContext, bundle: Bundle, published: Published) -> None:
    changes = diff_contexts(as_recorded(ctx, bundle, published), bundle.context, ignore=())
    if changes:
        raise ContextStoreError(
            f"imported as {published.evolution_id}, but the store's result differs from the "
            f"bundle: {describe(changes, limit=5)}"
        )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A recorded evolution re-applied under ``evolution_id``: the resulting ``context``,
    the ``recorded`` one, and where they differ (sequences mapped back to the recording's)."""

    evolution_id: str
    context: EvolutionContext
    recorded: EvolutionContext
    changes: list[Change]

    @property
    def identical(self) -> bool:
        return not self.changes
