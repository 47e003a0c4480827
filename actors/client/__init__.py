"""The client side of the store: what agents and tools use to write, read and watch contexts.

Never imports the store actor, the evolution app or the command line: a program that only
talks to a store loads this package, ``contracts`` and ``broker``. Watches are loaded on
first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

from actors.client.context_store import (
    SharedContextStore,
    get_context_store,
    new_evolution_id,
)
from actors.client.handle import ContextHandle, WriteReceipt
from actors.client.local import default_home
from contracts.errors import (
    AgentError,
    BrokerError,
    BundleError,
    CapacityError,
    ConfigError,
    ConflictError,
    ContextNotFoundError,
    ContextStoreError,
    IncompleteWriteError,
    InvalidWriteError,
    PayloadTooLargeError,
    RequestError,
    StoreClosedError,
    StoreTimeoutError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from actors.client.watch import OutcomeWatch, Watch

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
    "IncompleteWriteError",
    "InvalidWriteError",
    "OutcomeWatch",
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


def __getattr__(name: str) -> Any:
    if name in ("OutcomeWatch", "Watch"):
        value = getattr(importlib.import_module("actors.client.watch"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'actors.client' has no attribute {name!r}")
