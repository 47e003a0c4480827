"""What the JetStream server answers to a write published with a reply subject (a JetStream
publish). The server, not the store actor, sends these; they are here so that the wire
documents (``contracts.schema``) describe every reply a writer can get."""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "ERR_MESSAGE_TOO_LARGE",
    "ERR_WRONG_LAST_SEQUENCE",
    "JetStreamError",
    "PubAck",
    "PubError",
]

ERR_WRONG_LAST_SEQUENCE: Final = 10071
ERR_MESSAGE_TOO_LARGE: Final = 10054


class PubAck(msgspec.Struct, frozen=True, kw_only=True):
    """The write is stored at ``seq``: durable from now on. ``duplicate`` (present only when
    true) says a write with the same ``Nats-Msg-Id`` was stored at ``seq`` within the duplicate
    window, and this one was dropped. Stored is not applied: the store actor's verdict comes
    as an event, or from the ``outcome`` query."""

    stream: str
    seq: int
    duplicate: bool = False
    domain: str | None = None


class JetStreamError(msgspec.Struct, frozen=True, kw_only=True):
    """``err_code`` 10071: a ``Nats-Expected-Last-Subject-Sequence`` guard failed (the create's
    evolution id exists, or the context moved past the expected version; the description says
    ``wrong last sequence: N``, N being the current one). A guarded write retried after it was
    stored gets this too (the guard is checked before the duplicate window): read the write at
    N to see whether it is yours (its ``Nats-Msg-Id``). 10054: the write is larger than the
    stream's maximum message size (the store's max_payload)."""

    code: int
    err_code: int
    description: str


class PubError(msgspec.Struct, frozen=True, kw_only=True):
    """The server refused the write: nothing was stored."""

    error: JetStreamError
    stream: str | None = None
    seq: int = 0
