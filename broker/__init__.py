"""NATS and JetStream: the embedded server, connections, streams and consumers."""

from broker.config import StoreConfig
from broker.connection import BusClient, RawHandler, connect
from broker.redact import redact
from broker.server import EmbeddedServer, find_server_binary
from broker.streams import (
    ACTOR_DURABLE,
    EVENTS_STREAM,
    WRITES_STREAM,
    actor_consumer_config,
    events_stream_config,
    provision,
    writes_stream_config,
)
from contracts.errors import BrokerError, ConfigError

__all__ = [
    "ACTOR_DURABLE",
    "EVENTS_STREAM",
    "WRITES_STREAM",
    "BrokerError",
    "BusClient",
    "ConfigError",
    "EmbeddedServer",
    "RawHandler",
    "StoreConfig",
    "actor_consumer_config",
    "connect",
    "events_stream_config",
    "find_server_binary",
    "provision",
    "redact",
    "writes_stream_config",
]
