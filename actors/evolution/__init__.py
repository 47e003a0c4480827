"""The evolution application: the engine and its five agents, built on the client only."""

from actors.evolution.engine import EvolutionConfig, EvolutionEngine, EvolutionResult, Progress

__all__ = ["EvolutionConfig", "EvolutionEngine", "EvolutionResult", "Progress"]
