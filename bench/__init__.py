"""Benchmarks of SharedContextStore, each figure against a bare-NATS baseline in the same run.

Run ``python -m bench --help``."""
