"""The client side of the store: what agents and tools use to write, read and watch contexts.

Never imports the store actor, the evolution app or the command line: a program that only
talks to a store loads this package, ``contracts`` and ``broker``.
"""

from actors.client.context_store import (
    SharedContextStore,
    get_context_store,
    new_evolution_id,
)
from actors.client.handle import ContextHandle, WriteReceipt
from actors.client.local import default_home
from actors.client.watch import Watch
from contracts.errors import (
    AgentError,
    BrokerError,
    BundleError,
    CapacityError,
    ConfigError,
    ConflictError,
    ContextNotFoundError,
    ContextStoreError,
    InvalidWriteError,
    PayloadTooLargeError,
    RequestError,
    StoreClosedError,
    StoreTimeoutError,
    StoreUnavailableError,
)

__all__ = [
    "AgentError",
    "BrokerError",
    "BundleError",
    "CapacityError",
    "ConfigError",
    "ConflictError",
    "ContextHandle",
    "ContextNotFoundError",
    "ContextStoreError",
    "InvalidWriteError",
    "PayloadTooLargeError",
    "RequestError",
    "SharedContextStore",
    "StoreClosedError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "Watch",
    "WriteReceipt",
    "default_home",
    "get_context_store",
    "new_evolution_id",
]
