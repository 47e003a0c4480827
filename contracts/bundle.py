"""Export bundles: one file holding a context, its full write history and a hash chain.

File: UTF-8 JSON (gzip-compressed when the exporting store has compression on; readers
detect gzip by its magic bytes ``1f 8b``)::

    {"format": "ctxstore-bundle", "version": 1, "exported_at": ..., "tenant": ...,
     "evolution_id": ..., "count": N, "head": "<hash of the last write>",
     "context_hash": "<sha256(head + context JSON)>", "context": {...},
     "writes": [{"seq", "time", "kind", "writer", "body" | "body_b64", "applied", "code",
                 "reason", "hash"}, ...]}

``body`` is the write's raw message body as text (``body_b64``, base64, when it is not UTF-8).
The hash chain: ``hash_i = sha256(hash_{i-1} + canonical_i)`` as lowercase hex, starting from
``GENESIS``, where ``canonical_i`` is the compact JSON array
``[seq, time, kind, writer, body, body_b64, applied, code, reason]`` (time as RFC 3339 UTC with
``Z``). ``context_hash = sha256(head + compact JSON of the context, keys in file order)``.
The chain detects edits, truncation and reordering; it is integrity, not a signature.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Final

import msgspec

from contracts.context import EvolutionContext
from contracts.vocabulary import Timestamp

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "GENESIS",
    "Bundle",
    "BundleWrite",
    "chain_hash",
    "context_hash",
]

BUNDLE_FORMAT: Final = "ctxstore-bundle"
BUNDLE_VERSION: Final = 1
GENESIS: Final = "0" * 64

Hex64 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
_encoder = msgspec.json.Encoder()


class BundleWrite(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seq: Annotated[int, msgspec.Meta(ge=1)]  # its sequence in the exporting stream
    time: Timestamp  # when it was written
    kind: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    writer: str | None = None
    body: str | None = None
    body_b64: str | None = None
    applied: bool = True
    code: str | None = None
    reason: str | None = None
    hash: Hex64

    def canonical(self) -> bytes:
        return _encoder.encode(
            [
                self.seq,
                self.time,
                self.kind,
                self.writer,
                self.body,
                self.body_b64,
                self.applied,
                self.code,
                self.reason,
            ]
        )


class Bundle(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: int
    exported_at: Timestamp
    tenant: str
    evolution_id: str
    count: Annotated[int, msgspec.Meta(ge=0)]
    head: Hex64
    context_hash: Hex64
    context: EvolutionContext
    writes: list[BundleWrite]


def chain_hash(prev: str, canonical: bytes) -> str:
    return hashlib.sha256(prev.encode("ascii") + canonical).hexdigest()


def context_hash(head: str, context: EvolutionContext) -> str:
    return hashlib.sha256(head.encode("ascii") + _encoder.encode(context)).hexdigest()
