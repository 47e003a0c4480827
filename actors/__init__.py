"""Everything that runs on the bus, in five parts with one-way dependencies::

    cli ──> evolution ──> client ──> core ──> contracts
     │                      │
     └──> store ──> core    └──> broker ──> contracts
                    runtime

- ``actors.core``: pure logic both sides share (the fold, timelines, bundle checks), no I/O;
- ``actors.store``: the store actor, its snapshots, retention and standby;
- ``actors.client``: ``SharedContextStore``, what agents and tools use;
- ``actors.evolution``: the evolution engine and its five agents, on the client only;
- ``actors.cli``: the ``ctxstore`` command, on top of everything.

Names are loaded on first use, so ``from actors import SharedContextStore`` loads the client
and nothing of the store actor, the agents or the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.client import (
        AgentError,
        BundleError,
        CapacityError,
        ConfigError,
        ConflictError,
        ContextHandle,
        ContextNotFoundError,
        ContextStoreError,
        InvalidWriteError,
        PayloadTooLargeError,
        RequestError,
        SharedContextStore,
        StoreClosedError,
        StoreTimeoutError,
        StoreUnavailableError,
        Watch,
        WriteReceipt,
        default_home,
        get_context_store,
        new_evolution_id,
    )
    from actors.evolution import EvolutionConfig, EvolutionEngine, EvolutionResult
    from actors.store import LocalStack, StoreActor

_WHERE = {
    **dict.fromkeys(
        (
            "AgentError",
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
        ),
        "actors.client",
    ),
    **dict.fromkeys(("EvolutionConfig", "EvolutionEngine", "EvolutionResult"), "actors.evolution"),
    **dict.fromkeys(("LocalStack", "StoreActor"), "actors.store"),
}

__all__ = [
    "AgentError",
    "BundleError",
    "CapacityError",
    "ConfigError",
    "ConflictError",
    "ContextHandle",
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
    "Watch",
    "WriteReceipt",
    "default_home",
    "get_context_store",
    "new_evolution_id",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
