"""Writes in chunks, put back together as the fold meets them (pure, no I/O).

The wire format is ``contracts.framing``. ``Chunks.take`` is told each chunk in stream order
and says what it makes of it: nothing yet (``None``: held, or ignored), the whole write
(``Assembled``, at its last chunk), or why the write cannot be applied (``Refused``, at its
last chunk, or at once when there is no write to refuse later). Everything it decides
depends on the chunks of one write alone, and on the other unfinished writes of the same
context, so the store and a context's history (folded from that context's messages only)
decide alike.

Rules:
- a first chunk opens the write (again, if its id was open: a writer starting over);
- a context holds at most ``MAX_OPEN_PER_CONTEXT`` unfinished writes: one more is refused;
- a write declaring more than the store's ``max_write`` bytes is refused, and so is one whose
  chunks come out of order, hold more bytes than declared, or end with the wrong digest:
  the refusal is kept (without the data) and reported at the last chunk, once;
- a chunk of a write that is not open is ignored, and reported at its last chunk;
- an abort (``Ctxstore-Write-Abort``) closes the write; the store records it as rejected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import msgspec

from contracts import ErrorCode
from contracts.framing import WritePart

__all__ = ["MAX_OPEN_PER_CONTEXT", "Assembled", "Chunks", "OpenWrite", "Refused", "to_drop"]

MAX_OPEN_PER_CONTEXT: Final = 8
Key = tuple[str, str]  # (subject, write id)


class OpenWrite(msgspec.Struct, kw_only=True):
    """An unfinished write: the chunks so far (none once refused) and what it declared."""

    subject: str
    write_id: str
    count: int
    size: int
    encoding: str | None
    first_seq: int
    last_seq: int
    last_time: float  # the stream's time of its latest chunk, in seconds since the epoch
    received: int = 0  # chunks so far
    stored: int = 0  # bytes so far
    parts: list[bytes] = []
    refused_code: ErrorCode | None = None
    refused_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Assembled:
    data: bytes  # the joined chunk bodies
    encoding: str | None
    size: int  # the declared size of the JSON body


@dataclass(frozen=True, slots=True)
class Refused:
    code: ErrorCode
    reason: str


def _bound(size: int) -> int:
    """Most bytes the chunks of a write of ``size`` decoded bytes may hold: zlib grows
    incompressible data by a few bytes per 16 KB block."""
    return size + size // 1000 + 1024


class Chunks:
    """The unfinished writes of a store, and the chunks they have had."""

    def __init__(self, open_writes: list[OpenWrite] | None = None) -> None:
        self.open: dict[Key, OpenWrite] = {}
        self.bytes = 0
        self._per_context: dict[str, int] = {}
        for w in open_writes or ():
            self._add(w)

    def _add(self, w: OpenWrite) -> None:
        self.open[(w.subject, w.write_id)] = w
        self.bytes += w.stored
        context = _context_of(w.subject)
        self._per_context[context] = self._per_context.get(context, 0) + 1

    def close(self, subject: str, write_id: str) -> OpenWrite | None:
        w = self.open.pop((subject, write_id), None)
        if w is not None:
            self.bytes -= w.stored
            context = _context_of(subject)
            left = self._per_context[context] - 1
            if left:
                self._per_context[context] = left
            else:
                del self._per_context[context]
        return w

    def close_context(self, context_prefix: str) -> None:
        """Forget the unfinished writes of a context that is gone (deleted or pruned)."""
        for subject, write_id in [k for k in self.open if _context_of(k[0]) == context_prefix]:
            self.close(subject, write_id)

    def take(
        self, subject: str, part: WritePart, data: bytes, seq: int, stamp: float, max_write: int
    ) -> Assembled | Refused | None:
        """One chunk (``part``, body ``data``) of the write stream at ``seq``, stream time
        ``stamp`` (seconds)."""
        assert part.write_id is not None
        assert part.abort is None
        if part.first:
            self.close(subject, part.write_id)  # a writer starting over
            return self._open(subject, part, data, seq, stamp, max_write)
        w = self.open.get((subject, part.write_id))
        if w is None:
            if not part.last:
                return None
            return Refused(
                ErrorCode.INCOMPLETE,
                f"chunk {part.index}/{part.count} of write {part.write_id} ends a write the "
                "store does not hold: its first chunks were never stored, or it was dropped",
            )
        w.last_seq, w.last_time = seq, stamp
        if w.refused_code is None:
            if part.index != w.received + 1 or part.count != w.count:
                self._refuse(
                    w,
                    ErrorCode.INCOMPLETE,
                    f"write {w.write_id}: chunk {part.index}/{part.count} came where "
                    f"{w.received + 1}/{w.count} was due",
                )
            else:
                self._append(w, data)
        w.received += 1
        if not part.last:
            return None
        self.close(subject, w.write_id)
        return _finished(w, part)

    def _open(
        self, subject: str, part: WritePart, data: bytes, seq: int, stamp: float, max_write: int
    ) -> Assembled | Refused | None:
        assert part.write_id is not None
        assert part.size is not None
        context = _context_of(subject)
        if self._per_context.get(context, 0) >= MAX_OPEN_PER_CONTEXT:
            # Not kept: its later chunks are ignored, and its last one is refused.
            return Refused(
                ErrorCode.INCOMPLETE,
                f"write {part.write_id}: its context has {MAX_OPEN_PER_CONTEXT} unfinished "
                "writes in chunks already",
            )
        w = OpenWrite(
            subject=subject,
            write_id=part.write_id,
            count=part.count,
            size=part.size,
            encoding=part.encoding,
            first_seq=seq,
            last_seq=seq,
            last_time=stamp,
            received=1,
        )
        if part.size > max_write:
            w.refused_code = ErrorCode.TOO_LARGE
            w.refused_reason = (
                f"write {part.write_id} of {part.size} bytes exceeds the limit of {max_write} bytes"
            )
        else:
            self._append(w, data)
        if part.last:  # a write of one chunk
            return _finished(w, part)
        self._add(w)
        return None

    def _append(self, w: OpenWrite, data: bytes) -> None:
        if w.stored + len(data) > _bound(w.size):
            self._refuse(
                w,
                ErrorCode.INCOMPLETE,
                f"write {w.write_id}: its chunks hold more than the {w.size} bytes it declared",
            )
            return
        w.parts.append(data)
        w.stored += len(data)
        if (w.subject, w.write_id) in self.open:
            self.bytes += len(data)

    def _refuse(self, w: OpenWrite, code: ErrorCode, reason: str) -> None:
        if (w.subject, w.write_id) in self.open:
            self.bytes -= w.stored
        w.refused_code, w.refused_reason = code, reason
        w.parts, w.stored = [], 0

    def oldest(self) -> list[OpenWrite]:
        """The unfinished writes, oldest (by first chunk) first."""
        return sorted(self.open.values(), key=lambda w: w.first_seq)


def _finished(w: OpenWrite, last: WritePart) -> Assembled | Refused:
    if w.refused_code is not None:
        return Refused(w.refused_code, w.refused_reason or "refused")
    data = b"".join(w.parts)
    if last.digest is not None and hashlib.sha256(data).hexdigest() != last.digest:
        return Refused(
            ErrorCode.INCOMPLETE,
            f"write {w.write_id}: its {w.count} chunk(s) do not match the digest of the last",
        )
    return Assembled(data, w.encoding, w.size)


def _context_of(subject: str) -> str:
    """``ctxstore.write.<tenant>.<id>.`` of a write subject: what its context's writes share."""
    return subject[: subject.rfind(".") + 1]


def to_drop(
    open_writes: list[OpenWrite], *, now: float, idle: float, budget: int
) -> list[tuple[OpenWrite, str]]:
    """The unfinished writes to drop, and why: those with no chunk for ``idle`` seconds of
    stream time (``now``, the time of the stream's latest write), and the oldest while the
    rest hold more than ``budget`` bytes. ``open_writes`` oldest first."""
    held = sum(w.stored for w in open_writes)
    out: list[tuple[OpenWrite, str]] = []
    for w in open_writes:
        done = f"write {w.write_id} dropped unfinished after {w.received} of {w.count} chunks"
        if now - w.last_time > idle:
            out.append((w, f"{done}: no chunk for more than {idle:g}s"))
            held -= w.stored
        elif held > budget:
            out.append((w, f"{done}: unfinished writes held more than {budget} bytes"))
            held -= w.stored
    return out
