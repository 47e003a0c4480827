"""What every long-running part on the bus shares: the actor lifecycle, error replies."""

from actors.runtime.actor import Actor, ActorStopped

__all__ = ["Actor", "ActorStopped"]
