"""Store configuration: constructor arguments, or the spec's environment variables.

``CONTEXT_STORE_BACKEND`` (memory|file), ``CONTEXT_STORE_MAX_SIZE`` (max contexts),
``CONTEXT_STORE_TTL`` (seconds), ``CONTEXT_STORE_COMPRESSION`` (true|false),
``CONTEXT_STORE_MAX_PAYLOAD`` (bytes), ``CONTEXT_STORE_SYNC`` (always|default),
``CONTEXT_STORE_EXPORT_PATH``, ``CTXSTORE_TENANT``, ``NATS_URL``,
``CONTEXT_STORE_SNAPSHOT_EVERY`` (applied writes between snapshots; ``none`` turns them off),
``CONTEXT_STORE_SNAPSHOT_INTERVAL`` (seconds; a snapshot when writes were applied since the
last one).

``sync``: ``always`` makes an embedded server fsync every write before acknowledging it
(``jetstream { sync_interval: always }``). Without it the server fsyncs every 2 minutes and
acknowledges before that, so an OS crash or power loss can lose acknowledged writes (a killed
server process does not). The cost: awaited publishes fell from about 5k/s to about 2k/s
on the machines this was measured on. A server given by URL has its own setting.

``ttl_seconds``: the store actor deletes a context whose last write is older than this, from
its state (a ``delete`` write in the log) and from the stream (see ``actors.store.retention``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts import DEFAULT_MAX_PAYLOAD, DEFAULT_TENANT, ConfigError, check_token

__all__ = ["ConfigError", "StoreConfig"]

_ENV = {
    "CONTEXT_STORE_BACKEND": "backend",
    "CONTEXT_STORE_MAX_SIZE": "max_contexts",
    "CONTEXT_STORE_TTL": "ttl_seconds",
    "CONTEXT_STORE_COMPRESSION": "compression",
    "CONTEXT_STORE_MAX_PAYLOAD": "max_payload",
    "CONTEXT_STORE_SYNC": "sync",
    "CONTEXT_STORE_EXPORT_PATH": "export_path",
    "CONTEXT_STORE_SNAPSHOT_EVERY": "snapshot_every",
    "CONTEXT_STORE_SNAPSHOT_INTERVAL": "snapshot_interval",
    "CTXSTORE_TENANT": "tenant",
    "NATS_URL": "nats_url",
}


def _describe(loc: tuple[int | str, ...], msg: str, variables: Mapping[str, str]) -> str:
    name = ".".join(str(p) for p in loc)
    var = variables.get(name)
    return f"{name} ({var}): {msg}" if var else f"{name}: {msg}"


class StoreConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nats_url: str | None = None
    backend: Literal["memory", "file"] = "file"
    max_contexts: int | None = Field(default=1000, ge=1)
    ttl_seconds: float | None = Field(default=None, gt=0)
    compression: bool = False
    max_payload: int = Field(default=DEFAULT_MAX_PAYLOAD, ge=1024, le=8 * 1024 * 1024)
    sync: Literal["default", "always"] = "default"
    export_path: Path = Path("./contexts")
    tenant: str = DEFAULT_TENANT
    request_timeout: float = Field(default=5.0, gt=0)
    snapshot_every: int | None = Field(default=10_000, ge=1)
    snapshot_interval: float | None = Field(default=300.0, gt=0)

    @field_validator("tenant")
    @classmethod
    def _tenant_is_token(cls, value: str) -> str:
        return check_token(value, "tenant")

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> StoreConfig:
        """Environment first, then explicit arguments (``None`` means "not given")."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var, name in _ENV.items():
            raw = env.get(var)
            if raw is not None and raw != "":
                values[name] = None if raw.lower() in ("none", "unlimited") else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            variables = {name: var for var, name in _ENV.items()}
            problems = "; ".join(
                _describe(err["loc"], err["msg"], variables) for err in exc.errors()
            )
            raise ConfigError(f"invalid store configuration: {problems}") from None
