"""Leadership: which store actor applies writes, through a lease in a JetStream KV bucket.

Exactly one actor per store may consume the durable consumer, ack writes, announce them and
expire contexts: the one holding the lease, the key ``actor`` in the bucket
``ctxstore_leases`` (in a partitioned store, one per partition: ``actor-<k>``). The bucket's
``max_age`` is the lease's time to live: a key that is not renewed disappears on its own.

- ``acquire()`` creates the key; the server refuses it while another holder's key exists
  (create is a write expecting no previous revision), so two actors can never both get it.
- The holder renews it every third of the TTL by compare-and-set on its last revision;
  a failed renewal (another holder, or the key expired) means the lease is lost.
- ``valid`` is judged on the holder's own clock: the lease counts as held for ``TTL -
  margin`` after the last renewal the server confirmed, never longer, so a holder cut off
  from the server stops acting before a standby can take over.
- ``release()`` deletes the key (a clean stop hands over at once).

A standby polls the key and calls ``acquire()`` when it is gone. With the default TTL of
3 s, a killed holder's lease is free at most 3 s after its last renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Final

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

__all__ = ["LEASE_BUCKET", "MARGIN", "Holder", "Lease", "lease_key"]

log = logging.getLogger("ctxstore.lease")

LEASE_BUCKET: Final = "ctxstore_leases"
_KEY: Final = "actor"
_STREAM: Final = f"KV_{LEASE_BUCKET}"
MARGIN: Final = 0.5  # seconds of the TTL a holder never counts on


def lease_key(partition: int | None = None) -> str:
    """The lease's key: the store's, or one partition's."""
    return _KEY if partition is None else f"{_KEY}-{partition}"


class Holder(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds the lease (the key's value)."""

    holder: str
    host: str
    pid: int


class Lease:
    """The leadership lease of one store (``ttl`` seconds)."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        reads: JetStreamContext | None = None,
        ttl: float = 3.0,
        memory: bool = False,
        replicas: int = 1,
        key: str = _KEY,
    ) -> None:
        """``reads``: the context ``holder()`` reads with (default ``js``): a standby polls
        with a short timeout, so that it looks again soon after a look nobody answered.
        ``key``: which lease (``lease_key``)."""
        if ttl <= 2 * MARGIN:
            raise ValueError(f"a lease TTL of {ttl}s leaves no time to hold it")
        self._js = js
        self._reads_js = reads or js
        self.ttl = ttl
        self._memory = memory
        self._replicas = replicas  # the bucket's copies: the lease outlives a lost server
        self.key = key
        self._subject = f"$KV.{LEASE_BUCKET}.{key}"
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self._confirmed = 0.0  # monotonic time of the last write the server confirmed
        self.me = Holder(holder=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())

    @property
    def valid(self) -> bool:
        """Held, and renewed recently enough to act on."""
        return self._revision is not None and time.monotonic() < self._confirmed + self.ttl - MARGIN

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(LEASE_BUCKET)
            except BucketNotFoundError:
                self._kv = await self._js.create_key_value(
                    KeyValueConfig(
                        bucket=LEASE_BUCKET,
                        description="SharedContextStore: which store actor applies writes",
                        history=1,
                        ttl=self.ttl,
                        storage=StorageType.MEMORY if self._memory else StorageType.FILE,
                        replicas=self._replicas,
                    )
                )
        return self._kv

    async def holder(self) -> Holder | None:
        """The current holder, if any: as the bucket's stream leader has it. Not a direct
        get: any replica answers those, the nearest first, and one that lags (or is catching
        up after a server died) answers late, not at all, or with a key already expired."""
        await self._bucket()  # made if need be
        try:
            msg = await self._reads_js.get_last_msg(_STREAM, self._subject)
        except NotFoundError:
            return None
        headers = msg.headers or {}
        if headers.get(KV_OP) in (KV_DEL, KV_PURGE) or not msg.data:
            return None
        try:
            return msgspec.json.decode(msg.data, type=Holder)
        except msgspec.DecodeError:
            return None

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it. False too when the bucket cannot be written
        now (its stream electing a leader after a server died): ask again later. A create
        that timed out may have been stored: then the key expires with the TTL, unrenewed,
        and the next ``acquire`` takes it."""
        started = time.monotonic()
        try:
            kv = await self._bucket()
            self._revision = await kv.create(self.key, msgspec.json.encode(self.me))
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # Held by another; or it expired between nats-py's create and its second look.
            return False
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.warning("taking the lease failed (%r); standing by", exc)
            return False
        self._confirmed = started
        log.info("lease acquired by %s (pid %d)", self.me.holder, self.me.pid)
        return True

    async def renew(self) -> bool:
        """Renew a held lease; False (and no longer held) if somebody else has it now."""
        if self._revision is None:
            return False
        kv = await self._bucket()
        started = time.monotonic()
        try:
            self._revision = await kv.update(
                self.key, msgspec.json.encode(self.me), last=self._revision
            )
        except KeyWrongLastSequenceError:
            log.warning("lease lost: another actor holds it, or it expired")
            self._revision = None
            return False
        self._confirmed = started
        return True

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew every third of the TTL until the lease is lost (then set ``lost``). A
        renewal that fails for a transient reason is retried; the lease stays held only as
        long as ``valid`` says."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                if not await self.renew():
                    lost.set()
                    return
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                log.warning("lease renewal failed: %r", exc)
                if not self.valid:
                    self._revision = None
                    lost.set()
                    return

    async def release(self) -> None:
        """Give the lease up now, if held (a standby takes over without waiting for TTL)."""
        revision, self._revision = self._revision, None
        if revision is None or self._kv is None:
            return
        with contextlib.suppress(Exception):
            await self._kv.delete(self.key, last=revision)
