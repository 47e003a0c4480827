"""The store side: the actor that owns all context state, its snapshots and retention."""

from actors.store.actor import StoreActor
from actors.store.local import LocalStack

__all__ = ["LocalStack", "StoreActor"]
