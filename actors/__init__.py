"""Everything that runs on the bus: the store actor, the client agents use, the CLI."""

from actors.client import SharedContextStore, WriteReceipt, get_context_store, new_evolution_id
from actors.engine import EvolutionConfig, EvolutionEngine, EvolutionResult
from actors.errors import (
    CapacityError,
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
from actors.local import LocalStack, default_home
from actors.store_actor import StoreActor

__all__ = [
    "CapacityError",
    "ConflictError",
    "ContextNotFoundError",
    "ContextStoreError",
    "EvolutionConfig",
    "EvolutionEngine",
    "EvolutionResult",
    "InvalidWriteError",
    "LocalStack",
    "PayloadTooLargeError",
    "RequestError",
    "SharedContextStore",
    "StoreActor",
    "StoreClosedError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "WriteReceipt",
    "default_home",
    "get_context_store",
    "new_evolution_id",
]
