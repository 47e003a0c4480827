"""Export/import bundles, the I/O half: files, and re-publishing a bundle's writes.

Import re-publishes the recorded writes in order, raw bodies and writers unchanged, under the
target id, each with ``Ctxstore-Recorded-Time`` (the store takes it as the write's time, so
``created_at``/``updated_at`` are the original ones), after ``actors.core.bundles`` validated
the file in full. Each publish is guarded by the server's expected-last-subject-sequence check
over all of the id's subjects, so no other writer's write can interleave: the first expects
the id to be empty (or the delete that replaces it), each next one expects the previous one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from actors.client.history import load_timeline
from actors.core.bundles import Published, abort_reason, decode_bundle, encode_bundle, raw_body
from actors.core.sealing import SealError, is_sealed, open_sealed, seal
from broker import StoreConfig
from broker.nats_errors import nats_errors
from broker.publish import publish as publish_message
from broker.publish import publish_write, write_id_of
from contracts import (
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    HEADER_MSG_ID,
    HEADER_RECORDED_TIME,
    HEADER_WRITE_ABORT,
    HEADER_WRITE_ID,
    HEADER_WRITER,
    BundleError,
    CapacityError,
    ConflictError,
    Decoders,
    DeleteContext,
    OutcomeRequest,
    Query,
    WriteKind,
    encode,
    error_for,
    query_subject,
    service_error,
    write_filter,
    write_subject,
)
from contracts.bundle import Bundle, BundleWrite

__all__ = ["publish_bundle", "read_bundle", "write_bundle"]


_PURPOSE = b"bundle"


def read_bundle(path: str | os.PathLike[str], key: str | None = None) -> Bundle:
    """A bundle file; an encrypted one (``write_bundle(..., key=...)``) opens with ``key``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from None
    if is_sealed(raw):
        if key is None:
            raise BundleError(
                f"{path} is encrypted: set CONTEXT_STORE_ENCRYPTION_KEY to the key it was "
                "exported with"
            )
        try:
            raw = open_sealed(raw, key, _PURPOSE)
        except SealError as exc:
            raise BundleError(f"{path}: {exc}") from None
    return decode_bundle(raw, source=str(path))


def write_bundle(bundle: Bundle, path: Path, *, compress: bool, key: str | None = None) -> Path:
    """Write ``bundle`` to ``path``; encrypted (AES-256-GCM) with a key derived from ``key``
    if given."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = encode_bundle(bundle, compress=compress)
    if key is not None:
        data = seal(data, key, _PURPOSE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


async def publish_bundle(
    connection: Callable[[], Awaitable[Client]],
    config: StoreConfig,
    bundle: Bundle,
    evolution_id: str,
    *,
    replace: bool,
    msg_prefix: str,
    confirm_first: bool = True,
) -> Published:
    """Re-publish the bundle's writes under ``evolution_id`` (validated beforehand), on the
    connection ``connection()`` gives (a client's, made anew if it was lost)."""
    tenant = config.tenant
    nc = await connection()
    current = await load_timeline(
        nc,
        tenant,
        evolution_id,
        max_write=config.max_write,
        read_timeout=config.request_timeout,
    )
    exists = current.context_at() is not None
    if exists and not replace:
        raise ConflictError(
            f"context {evolution_id} already exists: import with replace=True (--replace) "
            f"or under a new id (--as ID)"
        )
    subject_filter = write_filter(tenant, evolution_id)
    expected = current.last_seq
    max_payload = min(nc.max_payload, config.max_payload)

    async def jetstream() -> JetStreamContext:
        return (await connection()).jetstream(timeout=config.request_timeout)

    async def publish(
        subject: str, data: bytes, headers: dict[str, str], *, whole: bool = True
    ) -> int:
        headers[HEADER_EXPECTED_LAST_SUBJECT_SEQ] = str(expected)
        headers[HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = subject_filter
        send = publish_write if whole else publish_message
        try:
            ack = await send(
                jetstream, subject, data, headers, max_payload=max_payload, what=subject
            )
        except ConflictError:
            raise ConflictError(
                f"another writer wrote to {evolution_id} during the import "
                f"({len(seq_map)} of {len(bundle.writes)} writes were imported)"
            ) from None
        return int(ack.seq)

    seq_map: dict[int, int] = {}
    if exists:
        body = encode(DeleteContext(reason=f"replaced by import of bundle {bundle.head[:16]}"))
        headers = {HEADER_MSG_ID: f"{msg_prefix}-delete", HEADER_WRITER: "ctxstore-import"}
        expected = await publish(
            write_subject(tenant, evolution_id, WriteKind.DELETE, config.role), body, headers
        )
    for i, write in enumerate(bundle.writes):
        headers = {
            HEADER_MSG_ID: f"{msg_prefix}-{write.seq}",
            HEADER_RECORDED_TIME: write.time.isoformat(),
        }
        if write.writer is not None:
            headers[HEADER_WRITER] = write.writer
        subject = write_subject(tenant, evolution_id, write.kind, config.role)
        if write.dropped:  # dropped again, with the reason it was dropped for
            headers[HEADER_WRITE_ID] = write_id_of(headers[HEADER_MSG_ID])
            headers[HEADER_WRITE_ABORT] = abort_reason(write)
            expected = await publish(subject, b"", headers, whole=False)
        else:
            expected = await publish(subject, raw_body(write), headers)
        seq_map[expected] = write.seq
        if i == 0 and confirm_first:
            await _confirm_first(await connection(), config, expected, write)
    return Published(evolution_id, expected, seq_map)


async def _confirm_first(nc: Client, config: StoreConfig, seq: int, write: BundleWrite) -> None:
    """Stop early if the store refused to create the context (e.g. it is full)."""
    with nats_errors("asking the store whether the import's first write applied"):
        msg = await nc.request(
            query_subject(config.tenant, Query.OUTCOME),
            encode(OutcomeRequest(seq=seq, min_seq=seq)),
            timeout=config.request_timeout,
        )
    if service_error(msg.headers, msg.data) is not None:
        return  # the outcome is checked again on the imported context
    outcome = Decoders.outcome.decode(msg.data)
    if not outcome.applied and write.applied:
        error = error_for(outcome.code or "invalid", outcome.reason or "refused")
        if isinstance(error, CapacityError):
            raise CapacityError(f"{outcome.reason}; nothing else of the bundle was imported")
        raise error
