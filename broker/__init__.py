"""NATS and JetStream: the embedded server, connections, streams and consumers."""

from broker.config import StoreConfig
from broker.connection import BusClient, RawHandler, connect
from broker.nats_errors import JSErrorCode
from broker.publish import publish
from broker.redact import redact
from broker.server import EmbeddedServer, find_server_binary
from broker.streams import (
    ACTOR_DURABLE,
    DUPLICATE_WINDOW_S,
    EVENTS_STREAM,
    WRITES_STREAM,
    actor_consumer_config,
    events_stream_config,
    provision,
    take_over_consumer,
    writes_stream_config,
)
from contracts.errors import BrokerError, ConfigError

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
    "connect",
    "events_stream_config",
    "find_server_binary",
    "provision",
    "publish",
    "redact",
    "take_over_consumer",
    "writes_stream_config",
]
