"""Taking messages from a JetStream pull consumer, one interface, two implementations.

``open_intake(...)`` gives an ``Intake``: ``pull()`` sends one pull request and hands every
message it brings to ``handle(delivery)`` (a coroutine function, or a plain one), in stream
order, one at a time; a handler that raises stops the intake (nothing after that message is
handled, and ``pull()`` raises what it raised). ``Delivery`` holds what the store needs of a
message: subject, body, stream position, the writer and recorded-time headers, and the
subject to ack it on.

- ``RawIntake`` reads the protocol's fields straight from nats-py's parser
  (``BusClient.subscribe_raw``): no ``Msg``, header dict, queue or task switch per message.
  At tens of thousands of writes a second that was most of the store actor's CPU. It relies
  on nats-py internals (``Client._process_msg``), so it is used only after
  ``check_raw_delivery`` has seen them work on this connection.
- ``FetchIntake`` uses nats-py's public API only (``pull_subscribe_bind`` and ``fetch``).

``CTXSTORE_INTAKE`` chooses: ``auto`` (the default: raw if its self-check passes, else public,
with an error logged), ``raw`` (raw or fail to start) or ``public``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal, Self

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from broker.connection import BusClient
from broker.delivery import (
    HEARTBEAT,
    NO_RESPONDERS,
    DeliveryError,
    ack_fields,
    header,
    pull_request,
    pull_subject,
    status,
)
from broker.lifecycle import AsyncResource
from contracts import (
    HEADER_CHUNK,
    HEADER_ENCODING,
    HEADER_RECORDED_TIME,
    HEADER_WRITE_ABORT,
    HEADER_WRITER,
    ContextStoreError,
)
from contracts.framing import WritePart, read_part

__all__ = [
    "ConsumerGap",
    "ConsumerPosition",
    "Delivery",
    "FetchIntake",
    "Handle",
    "Intake",
    "IntakeError",
    "IntakeMode",
    "RawIntake",
    "check_raw_delivery",
    "choose_intake",
    "open_intake",
    "raw_part",
]

log = logging.getLogger("ctxstore.intake")

IntakeMode = Literal["auto", "raw", "public"]
_WRITER: Final = HEADER_WRITER.encode()
_RECORDED: Final = HEADER_RECORDED_TIME.encode()
_TIMEOUT: Final = b"408"
# Any of these in a header block: the message has framing (a chunk, an abort, compression).
_CHUNK: Final = HEADER_CHUNK.encode()
_ENCODING: Final = HEADER_ENCODING.encode()
_ABORT: Final = HEADER_WRITE_ABORT.encode()


class IntakeError(ContextStoreError):
    """The chosen intake cannot work with this nats-py."""


@dataclass(slots=True)
class ConsumerPosition:
    """The consumer sequence of the last delivery a reader handled, kept across the intakes it
    opens on one consumer: a delivery lost between two of them (a pull whose answer died with
    a server, then "no responders" while the consumer elected a leader) shows as a jump in the
    next intake's first delivery. A reader that makes its consumer anew starts a new one, and
    then expects the consumer's first delivery (1): one lost before it is a gap too."""

    last: int = 0


class ConsumerGap(RuntimeError):
    """The consumer skipped deliveries: an answer to a pull was lost (a reconnect, a server
    that died) or the consumer was made anew with its state lost. What it skipped will not
    come again in order: the reader must read on from its own position with a new consumer."""


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """One message a consumer delivered. A subject that is not UTF-8 is given with its bad
    bytes replaced: the store rejects it like any invalid subject. (A Struct: one is built per
    message, and a Struct is built several times faster than a frozen dataclass.)"""

    subject: str
    data: bytes
    seq: int
    stamp_ns: int
    pending: int  # messages the consumer still had after this one
    writer: str | None
    recorded: str | None
    ack: str
    consumer_seq: int = 0  # the consumer's sequence of this delivery (0: unknown)
    part: WritePart | None = None  # a chunk of a write, an abort, or a compressed write


# A handler that has nothing to wait for is a plain function: no coroutine per message.
Handle = Callable[[Delivery], Awaitable[None] | None]


class Intake(AsyncResource):
    """``async with`` an intake, then ``pull()`` until ``stopped``."""

    def __init__(
        self, handle: Handle, *, batch: int, position: ConsumerPosition | None = None
    ) -> None:
        self._handle = handle
        self._batch = batch
        self._failure: Exception | None = None
        self._position = position or ConsumerPosition()
        self.stopped = False

    @abstractmethod
    async def pull(self) -> bytes | None:
        """One pull request, until it is over: None once the whole batch came (or ``stop()``
        was called), else the status that ended it (``b"404"``, ``b"408"``,
        ``NO_RESPONDERS`` when the consumer does not exist). Bound it with a timeout: a
        request lost to a reconnect never ends."""

    def stop(self) -> None:
        """Handle nothing more; the current ``pull()`` returns."""
        self.stopped = True

    async def _deliver(self, delivery: Delivery) -> bool:
        """Hand one delivery over; False once the intake stopped."""
        if self.stopped:
            return False
        last = self._position.last
        # From the first delivery on: a consumer made anew delivers 1 first, and deliveries
        # lost before an intake's first one (a pull cancelled with its answer half taken off
        # the connection) are as much a gap as any later.
        if delivery.consumer_seq and delivery.consumer_seq != last + 1:
            # The position stays: until the reader reads again from its own position with a
            # new consumer, every later delivery of this one shows the gap again.
            self._failure = ConsumerGap(
                f"the consumer's delivery {delivery.consumer_seq} came after {last}: "
                f"deliveries were lost (stream seq {delivery.seq})"
            )
            self.stop()
            return False
        try:
            waiting = self._handle(delivery)
            if waiting is not None:
                await waiting
        except Exception as exc:
            self._failure = exc
            self.stop()
            return False
        if delivery.consumer_seq:
            self._position.last = delivery.consumer_seq
        return True

    def raise_failure(self) -> None:
        """Raise what stopped the intake, if a handler failed."""
        if self._failure is not None:
            raise self._failure


class RawIntake(Intake):
    """Pull requests on a raw subscription; the handler runs inside the connection's read
    loop, so it must not wait for a reply on the same connection."""

    def __init__(
        self,
        nc: BusClient,
        stream: str,
        consumer: str,
        handle: Handle,
        *,
        batch: int,
        max_bytes: int,
        expires: float,
        position: ConsumerPosition | None = None,
    ) -> None:
        super().__init__(handle, batch=batch, position=position)
        self._nc = nc
        self._subject = pull_subject(stream, consumer)
        self._request = pull_request(batch, expires=expires, max_bytes=max_bytes)
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._ended = asyncio.Event()
        self._received = 0
        self._code: bytes | None = None

    async def open(self) -> Self:
        self._sub = await self._nc.subscribe_raw(self._inbox, self._on_message)
        return self

    async def aclose(self) -> None:
        self.stop()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await self._nc.unsubscribe_raw(sub)

    def stop(self) -> None:
        super().stop()
        self._ended.set()

    async def pull(self) -> bytes | None:
        if not self.stopped:
            self._ended.clear()
            self._received = 0
            self._code = None
            await self._nc.publish(self._subject, self._request, reply=self._inbox)
            await self._ended.wait()
        self.raise_failure()
        return self._code

    async def _on_message(
        self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if self.stopped:
            return
        code = status(headers)
        if code is not None:
            if code != HEARTBEAT:
                self._code = code
                self._ended.set()
            return
        self._received += 1
        try:
            seq, stamp, pending, delivered = ack_fields(reply)
        except DeliveryError:
            log.error("not a JetStream delivery on the intake's inbox: %r", subject[:200])
            return
        delivery = Delivery(
            subject=subject.decode("utf-8", "replace"),
            data=data,
            seq=seq,
            stamp_ns=stamp,
            pending=pending,
            writer=header(headers, _WRITER),
            # Only re-published writes carry it: one test spares most a lookup.
            recorded=header(headers, _RECORDED) if headers and _RECORDED in headers else None,
            ack=reply.decode("ascii", "replace"),
            consumer_seq=delivered,
            part=raw_part(headers),
        )
        if await self._deliver(delivery) and self._received >= self._batch:
            self._ended.set()


class FetchIntake(Intake):
    """Pull requests through nats-py's public ``pull_subscribe_bind`` and ``fetch``."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        consumer: str,
        handle: Handle,
        *,
        batch: int,
        expires: float,
        position: ConsumerPosition | None = None,
    ) -> None:
        super().__init__(handle, batch=batch, position=position)
        self._js = js
        self._stream = stream
        self._consumer = consumer
        self._expires = expires
        self._psub: JetStreamContext.PullSubscription | None = None

    async def open(self) -> Self:
        self._psub = await self._js.pull_subscribe_bind(durable=self._consumer, stream=self._stream)
        return self

    async def aclose(self) -> None:
        self.stop()
        psub, self._psub = self._psub, None
        if psub is not None:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def pull(self) -> bytes | None:
        assert self._psub is not None
        if self.stopped:
            self.raise_failure()
            return None
        try:
            msgs = await self._psub.fetch(self._batch, timeout=self._expires)
        except nats.errors.TimeoutError:
            return _TIMEOUT
        except nats.errors.NoRespondersError:
            return NO_RESPONDERS
        except nats.js.errors.NotFoundError:
            return NO_RESPONDERS
        except nats.js.errors.ServiceUnavailableError:
            return NO_RESPONDERS
        for msg in msgs:
            if not await self._deliver(_from_msg(msg)):
                break
        self.raise_failure()
        return None if len(msgs) >= self._batch or self.stopped else _TIMEOUT


def _from_msg(msg: Msg) -> Delivery:
    meta = msg.metadata
    headers = msg.headers or {}
    return Delivery(
        subject=msg.subject,
        data=msg.data,
        seq=meta.sequence.stream,
        stamp_ns=int(meta.timestamp.timestamp() * 1_000_000_000),
        pending=meta.num_pending,
        writer=headers.get(HEADER_WRITER),
        recorded=headers.get(HEADER_RECORDED_TIME),
        ack=msg.reply,
        consumer_seq=meta.sequence.consumer,
        part=read_part(headers.get),
    )


def raw_part(headers: bytes | None) -> WritePart | None:
    """The framing of a message from its raw header block (most messages have none)."""
    # Not any() over the names: a generator per message costs more than the three tests.
    if not headers or (
        _CHUNK not in headers and _ENCODING not in headers and _ABORT not in headers
    ):
        return None
    return read_part(lambda name: header(headers, name.encode()))


def _mode_from_env() -> IntakeMode:
    value = os.environ.get("CTXSTORE_INTAKE", "auto").strip().lower() or "auto"
    if value not in ("auto", "raw", "public"):
        raise IntakeError(f"CTXSTORE_INTAKE={value!r}: use auto, raw or public")
    return value  # type: ignore[return-value]


async def check_raw_delivery(nc: BusClient, patience: float = 2.0) -> bool:
    """Whether raw subscriptions work with this nats-py: a message published to a raw
    subscription of this connection reaches its handler, with its fields as sent."""
    inbox = nc.new_inbox()
    probe = os.urandom(16)
    got: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()

    async def on_probe(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if not got.done():
            got.set_result((subject, data))

    try:
        sub = await nc.subscribe_raw(inbox, on_probe)
    except Exception as exc:
        log.error("raw intake self-check: cannot subscribe: %r", exc)
        return False
    try:
        async with asyncio.timeout(patience):
            await nc.publish(inbox, probe)
            subject, data = await got
    except Exception as exc:
        log.error("raw intake self-check: the probe did not arrive: %r", exc)
        return False
    finally:
        with contextlib.suppress(Exception):
            await nc.unsubscribe_raw(sub)
    return subject == inbox.encode() and data == probe


async def choose_intake(nc: BusClient, mode: IntakeMode | None = None) -> Literal["raw", "public"]:
    """Which intake to use on ``nc`` (``mode`` None: ``CTXSTORE_INTAKE``)."""
    wanted = _mode_from_env() if mode is None else mode
    if wanted == "public":
        return "public"
    if nc.raw_delivery_ok is None:
        nc.raw_delivery_ok = await check_raw_delivery(nc)
    if nc.raw_delivery_ok:
        return "raw"
    if wanted == "raw":
        raise IntakeError(
            "the raw intake's self-check failed: this nats-py does not deliver raw "
            "subscriptions as expected (set CTXSTORE_INTAKE=public to use its public API)"
        )
    log.error(
        "the raw intake's self-check failed with this nats-py: using the public intake "
        "(slower); set CTXSTORE_INTAKE=public to silence this"
    )
    return "public"


def open_intake(
    nc: BusClient,
    kind: Literal["raw", "public"],
    stream: str,
    consumer: str,
    handle: Handle,
    *,
    batch: int,
    max_bytes: int,
    expires: float,
    position: ConsumerPosition | None = None,
) -> Intake:
    """``position``: of the reader on ``consumer``, kept across its intakes (see
    ``ConsumerPosition``); None for a consumer only this intake reads."""
    if kind == "raw":
        return RawIntake(
            nc,
            stream,
            consumer,
            handle,
            batch=batch,
            max_bytes=max_bytes,
            expires=expires,
            position=position,
        )
    return FetchIntake(
        nc.jetstream(), stream, consumer, handle, batch=batch, expires=expires, position=position
    )
