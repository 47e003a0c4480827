"""The ``stats`` query's reply: a store actor's figures, as its Prometheus endpoint gives them.

Metric families in Prometheus' own terms (a name, a type, a help text and samples with
labels), so that what ``ctxstore stats`` prints and what ``/metrics`` serves are the same
figures, and a client in any language reads them without a Prometheus library.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["ActorRole", "FamilyType", "MetricFamily", "MetricSample", "StatsReply"]

ActorRole = Literal["starting", "leader", "standby"]
FamilyType = Literal["counter", "gauge", "histogram"]


class MetricSample(msgspec.Struct, frozen=True, kw_only=True):
    """One sample: a counter's ``<name>_total``, a gauge's value, or one of a histogram's
    ``<name>_bucket`` (label ``le``: the bucket's upper bound, ``+Inf`` for the last),
    ``<name>_count`` and ``<name>_sum``."""

    name: str
    labels: dict[str, str]
    value: float


class MetricFamily(msgspec.Struct, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(description="The family's name, e.g. ctxstore_queries.")]
    type: FamilyType
    help: str
    samples: list[MetricSample]


class StatsReply(msgspec.Struct, frozen=True, kw_only=True):
    """The figures of the store actor that answered (one of them, when a leader and standbys
    serve the store: ``actor`` and ``role`` say which). Counters count from that actor's
    start; writes are counted by every actor that applies them live, leader or standby, and
    not when an actor replays the stream at start-up."""

    actor: Annotated[
        str, msgspec.Meta(description="The actor's NATS micro service id (as $SRV.INFO).")
    ]
    role: ActorRole
    applied_seq: int
    metrics: list[MetricFamily]
