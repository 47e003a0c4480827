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

Validated by msgspec, as every message is: one validation library on every path, and a
client that starts in a few milliseconds (pydantic's import alone cost 100 ms of each
``ctxstore`` command).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from contracts import DEFAULT_MAX_PAYLOAD, DEFAULT_TENANT, ConfigError, SubjectError, check_token

__all__ = ["StoreConfig"]

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
_VARIABLE = {name: var for var, name in _ENV.items()}
# What configures the store actor and its embedded server (the rest is the client's own).
_SERVER_SETTINGS = (
    "backend",
    "max_contexts",
    "ttl_seconds",
    "compression",
    "max_payload",
    "sync",
    "snapshot_every",
    "snapshot_interval",
)
_WHERE = re.compile(r" - at `\$\.([A-Za-z_]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


class StoreConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nats_url: str | None = None
    backend: Literal["memory", "file"] = "file"
    max_contexts: Annotated[int, msgspec.Meta(ge=1)] | None = 1000
    ttl_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    compression: bool = False
    max_payload: Annotated[int, msgspec.Meta(ge=1024, le=8 * 1024 * 1024)] = DEFAULT_MAX_PAYLOAD
    sync: Literal["default", "always"] = "default"
    export_path: Path = Path("./contexts")
    tenant: str = DEFAULT_TENANT
    request_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    snapshot_every: Annotated[int, msgspec.Meta(ge=1)] | None = 10_000
    snapshot_interval: Annotated[float, msgspec.Meta(gt=0)] | None = 300.0

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
        return _validated(values)

    def replace(self, **changes: Any) -> StoreConfig:
        """A copy with ``changes``, validated like the original."""
        return _validated({**msgspec.structs.asdict(self), **changes})

    def server_environment(self) -> dict[str, str]:
        """The store actor's and embedded server's settings as the environment variables
        ``build`` reads: how a client hands its configuration to a server it starts."""
        env = {}
        for name in _SERVER_SETTINGS:
            value = getattr(self, name)
            match value:
                case None:
                    text = "none"
                case bool():
                    text = "true" if value else "false"
                case _:
                    text = str(value)
            env[_VARIABLE[name]] = text
        return env


def _path(type_: type, value: Any) -> Any:
    if type_ is Path and isinstance(value, str | os.PathLike):
        return Path(value)
    raise NotImplementedError


def _validated(values: dict[str, Any]) -> StoreConfig:
    try:
        config = msgspec.convert(values, StoreConfig, strict=False, dec_hook=_path)
        check_token(config.tenant, "tenant")
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid store configuration: {_described(str(exc))}") from None
    except SubjectError as exc:
        raise ConfigError(f"invalid store configuration: tenant (CTXSTORE_TENANT): {exc}") from None
    return config


def _described(message: str) -> str:
    """msgspec's message, led by the setting and its environment variable."""
    found = _WHERE.search(message) or _UNKNOWN.search(message)
    if found is None:
        return message
    name = found.group(1)
    var = _VARIABLE.get(name)
    where = f"{name} ({var})" if var else name
    return f"{where}: {_WHERE.sub('', message)}"
