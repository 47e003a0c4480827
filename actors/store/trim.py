"""Retention of the write log, on the operator's request only (``ctxstore trim``).

The write stream is the record: nothing is ever removed from it by a limit. An operator may
drop history that is older than the newest *verified* snapshot (one that loads, for this very
stream and these limits) and older than ``max_age`` seconds or beyond ``max_bytes``: the
state at that snapshot holds it, so no state is lost, but time travel (``get_context(at=)``,
``diff``, history, exports) before the cut is given up. The cut is recorded in the stream's
metadata (``ctxstore_trimmed_before``) before the purge, and an actor that cannot load a
snapshot covering it refuses to start rather than rebuild a state without those writes. In
a partitioned store every partition's newest verified snapshot must cover the cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from actors.core.fold import Limits
from actors.store.snapshots import Snapshots
from broker import WRITES_STREAM, StoreConfig
from contracts.errors import ConfigError

__all__ = ["TRIMMED_BEFORE", "Trimmed", "trim_history", "trimmed_before"]

TRIMMED_BEFORE: Final = "ctxstore_trimmed_before"


@dataclass(frozen=True, slots=True)
class Trimmed:
    snapshot_seq: int  # the verified snapshot the cut may not pass
    cut: int  # writes before this sequence are gone
    removed: int


def trimmed_before(config: StreamConfig) -> int:
    """The sequence before which a trim removed the stream's writes (0: never trimmed)."""
    try:
        return int((config.metadata or {}).get(TRIMMED_BEFORE, "0"))
    except ValueError:
        return 0


async def trim_history(
    js: JetStreamContext,
    config: StoreConfig,
    *,
    max_age: float | None = None,
    max_bytes: int | None = None,
) -> Trimmed:
    if max_age is None and max_bytes is None:
        raise ConfigError("say what to keep: --max-age SECONDS and/or --max-bytes N")
    info = await js.stream_info(WRITES_STREAM)
    state = info.state
    limits = Limits(config.max_write, config.partition_max_contexts)
    partitions: list[int | None] = (
        [None] if config.partitions == 1 else list(range(config.partitions))
    )
    covered: int | None = None  # the newest sequence every partition's snapshot covers
    for partition in partitions:
        loaded = await Snapshots(js, config, partition=partition).load(
            limits, info.created, state.last_seq
        )
        if loaded.state is None:
            which = "" if partition is None else f" for partition {partition}"
            raise ConfigError(
                f"no verified snapshot of this stream{which}: nothing may be trimmed (the "
                "store actor takes snapshots; see CONTEXT_STORE_SNAPSHOT_EVERY)"
            )
        covered = loaded.seq if covered is None else min(covered, loaded.seq)
    assert covered is not None
    first = state.first_seq
    cut = covered + 1
    if max_bytes is not None and state.messages:
        average = max(state.bytes // state.messages, 1)
        cut = min(cut, first + max(state.messages - max_bytes // average, 0))
    if max_age is not None:
        cut = min(cut, await _first_newer(js, first, cut, time.time() - max_age))
    if cut <= first:
        return Trimmed(covered, first, 0)
    updated = StreamConfig.from_response(info.config.as_dict())
    updated.metadata = {**(info.config.metadata or {}), TRIMMED_BEFORE: str(cut)}
    await js.update_stream(updated)
    await js.purge_stream(WRITES_STREAM, seq=cut)  # (nats-py returns success, not a count)
    after = (await js.stream_info(WRITES_STREAM)).state
    # The stream holds only writes: what is missing now, counting writes stored meanwhile.
    removed = state.messages + (after.last_seq - state.last_seq) - after.messages
    return Trimmed(covered, cut, max(removed, 0))


async def _first_newer(js: JetStreamContext, low: int, high: int, oldest: float) -> int:
    """The first sequence in [low, high) stored at or after ``oldest`` (epoch seconds), else
    ``high``: a binary search by each message's stored time."""
    while low < high:
        middle = (low + high) // 2
        try:
            msg = await js.get_msg(WRITES_STREAM, middle, next=True)
        except Exception:
            return low
        seq = msg.seq or middle
        stored = msg.time.timestamp() if msg.time is not None else 0.0
        if stored >= oldest:
            high = min(seq, middle)
        else:
            low = seq + 1
    return low
