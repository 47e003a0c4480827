"""NATS and JetStream: the embedded server, connections, streams and consumers.

The embedded server (``EmbeddedServer``) is loaded on first use: a client never needs it.
"""

import importlib
from typing import TYPE_CHECKING, Any

from broker.config import StoreConfig
from broker.connection import BusClient, RawHandler, connect
from broker.nats_errors import JSErrorCode
from broker.publish import publish
from broker.redact import redact
from broker.streams import (
    ACTOR_DURABLE,
    DUPLICATE_WINDOW_S,
    EVENTS_STREAM,
    WRITES_STREAM,
    actor_consumer_config,
    actor_durable,
    events_stream_config,
    provision,
    stream_partitions,
    take_over_consumer,
    writes_stream_config,
)
from contracts.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from broker.server import EmbeddedServer, find_server_binary

__all__ = [
    "ACTOR_DURABLE",
    "DUPLICATE_WINDOW_S",
    "EVENTS_STREAM",
    "WRITES_STREAM",
    "BrokerError",
    "BusClient",
    "ConfigError",
    "EmbeddedServer",
    "JSErrorCode",
    "RawHandler",
    "StoreConfig",
    "actor_consumer_config",
    "actor_durable",
    "connect",
    "events_stream_config",
    "find_server_binary",
    "provision",
    "publish",
    "redact",
    "stream_partitions",
    "take_over_consumer",
    "writes_stream_config",
]


def __getattr__(name: str) -> Any:
    if name in ("EmbeddedServer", "find_server_binary"):
        value = getattr(importlib.import_module("broker.server"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'broker' has no attribute {name!r}")
