"""Queries in a partitioned store: getting each to the actors of the partition it concerns.

Every actor of every partition serves the store's query subjects
(``ctxstore.query.<tenant>.<op>``: the wire contract, which names no partition) and its own
partition's (``ctxstore.query.<tenant>.<op>.p<k>``). A query about one context that another
partition holds is relayed to that partition's subject; ``list`` and ``stats`` are asked of
every partition at once, and their replies merged; ``outcome`` goes to the partition the
write at its sequence is stored in. The Python client computes the partition itself and asks
its actors directly, so a read costs one hop; any other client pays one more, through here.

A relay listens on an inbox of its own and passes each reply message on (a reply in chunks
too): a request published with the requester's own reply subject would leave it waiting
out its timeout when the partition has no actor, where the relay hears "no responders" at
once and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.micro.request import Request

from actors.runtime.replies import reply_error
from broker import WRITES_STREAM, BusClient
from broker.chunks import request_in_chunks
from contracts import (
    HEADER_CHUNK,
    ActorRole,
    ContextList,
    ContextNotFoundError,
    Decoders,
    ErrorCode,
    ListRequest,
    MetricFamily,
    MetricSample,
    Query,
    StatsReply,
    StoreTimeoutError,
    StoreUnavailableError,
    encode,
    error_for,
    partition_of,
    query_subject,
    service_error,
    stored_partition,
)

__all__ = ["Router", "merge_lists", "merge_stats"]

log = logging.getLogger("ctxstore.routing")

_NO_RESPONDERS: Final = "503"


class Router:
    """Where the queries of a store of ``partitions`` partitions go, seen from ``partition``'s
    actor; ``patience``: how long a partition may take to answer."""

    def __init__(self, nc: BusClient, *, partition: int, partitions: int, patience: float) -> None:
        self._nc = nc
        self.partition = partition
        self.partitions = partitions
        self._patience = patience

    def owner(self, tenant: str, evolution_id: str) -> int:
        return partition_of(tenant, evolution_id, self.partitions)

    async def relay(
        self, req: Request, tenant: str, op: Query, partition: int, data: bytes | None = None
    ) -> None:
        """Ask ``partition``'s actors ``req`` (or ``data`` instead of its body) and pass their
        reply, every message of it, to ``req``'s requester."""
        reply_to = req._msg.reply  # nats-py's Request has no public reply subject
        if not reply_to:
            return
        subject = query_subject(tenant, op, partition)
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        try:
            await self._nc.publish(
                subject, req.data if data is None else data, reply=inbox, headers=req.headers
            )
            while True:
                try:
                    msg = await sub.next_msg(timeout=self._patience)
                except nats.errors.TimeoutError:
                    await reply_error(
                        req,
                        ErrorCode.TIMEOUT,
                        f"partition {partition} did not answer {op} within {self._patience:g}s",
                    )
                    return
                if _no_responders(msg):
                    await _no_actor(req, partition)
                    return
                await self._nc.publish(reply_to, msg.data, headers=msg.headers)
                if _last(msg):
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def gather(self, tenant: str, op: Query, body: msgspec.Struct) -> list[bytes]:
        """Every partition's reply to ``body`` (asked with chunks accepted), in partition
        order. An error reply from any is raised (a merge of the others would be a lie)."""
        data = encode(msgspec.structs.replace(body, accept_chunks=True))

        async def ask(partition: int) -> bytes:
            subject = query_subject(tenant, op, partition)
            try:
                answer = await request_in_chunks(self._nc, subject, data, patience=self._patience)
            except StoreUnavailableError:
                raise StoreUnavailableError(_unserved(partition)) from None
            except StoreTimeoutError:
                raise StoreTimeoutError(
                    f"partition {partition} did not answer {op} within {self._patience:g}s"
                ) from None
            err = service_error(answer.headers, answer.data)
            if err is not None:
                raise error_for(err.code, err.message)
            return answer.data

        return list(await asyncio.gather(*(ask(k) for k in range(self.partitions))))

    async def owner_of_seq(self, seq: int) -> int | None:
        """The partition of the write stored at ``seq`` (None: no such write stored)."""
        js = self._nc.jetstream(timeout=self._patience)
        try:
            msg = await js.get_msg(WRITES_STREAM, seq)
        except nats.js.errors.NotFoundError:
            return None
        return stored_partition(msg.subject or "")

    async def newest(self, tenant: str, min_seq: int) -> str:
        """The id of the tenant's most recently created context, in whichever partition."""
        lists = [
            Decoders.context_list.decode(d)
            for d in await self.gather(tenant, Query.LIST, ListRequest(min_seq=min_seq))
        ]
        summaries = [s for listing in lists for s in listing.contexts]
        if not summaries:
            raise ContextNotFoundError(f"no context in tenant {tenant}")
        return max(summaries, key=lambda s: (s.created_at, s.version)).evolution_id


def merge_lists(replies: list[bytes]) -> bytes:
    """One ``ContextList`` of every partition's: oldest first, as one actor lists them; its
    ``applied_seq`` is the least that every partition had seen."""
    lists = [Decoders.context_list.decode(d) for d in replies]
    summaries = sorted(
        (s for listing in lists for s in listing.contexts),
        key=lambda s: (s.created_at, s.version),
    )
    seen = min((listing.applied_seq for listing in lists), default=0)
    return encode(ContextList(contexts=summaries, applied_seq=seen))


def merge_stats(replies: list[bytes]) -> bytes:
    """One ``StatsReply`` of every partition's: each family holds every partition's samples,
    labelled ``partition`` (as Prometheus would scrape several actors); ``actor`` lists the
    actors that answered, ``role`` is the least of theirs, ``applied_seq`` the least."""
    stats = [Decoders.stats_reply.decode(d) for d in replies]
    families: dict[str, MetricFamily] = {}
    for k, reply in enumerate(stats):
        for family in reply.metrics:
            samples = [
                MetricSample(name=s.name, labels={**s.labels, "partition": str(k)}, value=s.value)
                for s in family.samples
            ]
            known = families.get(family.name)
            families[family.name] = (
                msgspec.structs.replace(family, samples=samples)
                if known is None
                else msgspec.structs.replace(known, samples=[*known.samples, *samples])
            )
    roles = {s.role for s in stats}
    role: ActorRole = (
        "leader" if roles == {"leader"} else "starting" if "starting" in roles else "standby"
    )
    return encode(
        StatsReply(
            actor=",".join(s.actor for s in stats),
            role=role,
            applied_seq=min((s.applied_seq for s in stats), default=0),
            metrics=list(families.values()),
        )
    )


def _no_responders(msg: Msg) -> bool:
    headers = msg.headers or {}
    return headers.get("Status") == _NO_RESPONDERS and not msg.data


def _last(msg: Msg) -> bool:
    """Whether ``msg`` ends a reply: one in a single message, or the last chunk."""
    value = (msg.headers or {}).get(HEADER_CHUNK)
    if value is None:
        return True
    index, _, count = value.partition("/")
    return index == count or not (index.isdecimal() and count.isdecimal())


def _unserved(partition: int) -> str:
    return f"no store actor serves partition {partition}"


async def _no_actor(req: Request, partition: int) -> None:
    await reply_error(req, ErrorCode.INTERNAL, _unserved(partition), status=503)
