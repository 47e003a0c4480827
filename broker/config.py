"""Store configuration: constructor arguments, or the spec's environment variables.

``CONTEXT_STORE_BACKEND`` (memory|file), ``CONTEXT_STORE_MAX_SIZE`` (max contexts),
``CONTEXT_STORE_TTL`` (seconds), ``CONTEXT_STORE_COMPRESSION`` (true|false),
``CONTEXT_STORE_MAX_PAYLOAD`` (bytes: the largest message, a write or a chunk of one),
``CONTEXT_STORE_MAX_WRITE`` (bytes: the largest write, its JSON decoded),
``CONTEXT_STORE_CHUNK_TIMEOUT`` (seconds: a write in chunks with no chunk for longer is dropped
unfinished), ``CONTEXT_STORE_SYNC`` (always|default),
``CONTEXT_STORE_EXPORT_PATH``, ``CTXSTORE_TENANT``, ``NATS_URL``,
``CONTEXT_STORE_SNAPSHOT_EVERY`` (applied writes between snapshots; ``none`` turns them off),
``CONTEXT_STORE_SNAPSHOT_INTERVAL`` (seconds; a snapshot when writes were applied since the
last one), ``CONTEXT_STORE_REPLICAS`` (copies of every stream, bucket and object store the
store makes: 1, or 3 or 5 on a cluster), ``CONTEXT_STORE_PARTITIONS`` (contexts spread over
this many partitions, each with its own active actor; set when the write stream is created:
see ``broker.streams``), ``CTXSTORE_ROLE`` (the authenticated role this client
writes as, ``ctxstore auth init``), ``CONTEXT_STORE_ENCRYPTION_KEY`` or
``CONTEXT_STORE_ENCRYPTION_KEY_FILE`` (encryption at rest: JetStream's files of an embedded
server, snapshots, and exported bundles when asked), and the ``NATS_*`` sign-in settings of
``broker.auth``.

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

from broker.auth import AUTH_VARIABLES, NatsAuth
from broker.redact import redact
from contracts import (
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_WRITE,
    DEFAULT_TENANT,
    MAX_PARTITIONS,
    WRITER_ROLES,
    ConfigError,
    SubjectError,
    check_token,
)

__all__ = ["Secret", "StoreConfig"]


class Secret:
    """A value that is never shown: ``repr`` and ``str`` give ``***``; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_ENV = {
    "CONTEXT_STORE_BACKEND": "backend",
    "CONTEXT_STORE_MAX_SIZE": "max_contexts",
    "CONTEXT_STORE_TTL": "ttl_seconds",
    "CONTEXT_STORE_COMPRESSION": "compression",
    "CONTEXT_STORE_MAX_PAYLOAD": "max_payload",
    "CONTEXT_STORE_MAX_WRITE": "max_write",
    "CONTEXT_STORE_CHUNK_TIMEOUT": "chunk_timeout",
    "CONTEXT_STORE_SYNC": "sync",
    "CONTEXT_STORE_EXPORT_PATH": "export_path",
    "CONTEXT_STORE_SNAPSHOT_EVERY": "snapshot_every",
    "CONTEXT_STORE_SNAPSHOT_INTERVAL": "snapshot_interval",
    "CTXSTORE_TENANT": "tenant",
    "NATS_URL": "nats_url",
    "CONTEXT_STORE_REPLICAS": "replicas",
    "CONTEXT_STORE_PARTITIONS": "partitions",
    "CTXSTORE_ROLE": "role",
    "CONTEXT_STORE_ENCRYPTION_KEY": "encryption_key",
    "CONTEXT_STORE_ENCRYPTION_KEY_FILE": "encryption_key_file",
}
_VARIABLE = {name: var for var, name in _ENV.items()}
# What configures the store actor and its embedded server (the rest is the client's own).
_SERVER_SETTINGS = (
    "backend",
    "max_contexts",
    "ttl_seconds",
    "compression",
    "max_payload",
    "max_write",
    "chunk_timeout",
    "sync",
    "snapshot_every",
    "snapshot_interval",
    "replicas",
    "partitions",
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
    max_write: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024 * 1024)] = DEFAULT_MAX_WRITE
    chunk_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    sync: Literal["default", "always"] = "default"
    export_path: Path = Path("./contexts")
    tenant: str = DEFAULT_TENANT
    request_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    snapshot_every: Annotated[int, msgspec.Meta(ge=1)] | None = 10_000
    snapshot_interval: Annotated[float, msgspec.Meta(gt=0)] | None = 300.0
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    partitions: Annotated[int, msgspec.Meta(ge=1, le=MAX_PARTITIONS)] = 1
    role: str | None = None
    auth: NatsAuth = msgspec.field(default_factory=NatsAuth)
    encryption_key: Secret | None = None
    encryption_key_file: Path | None = None

    def __repr__(self) -> str:
        # A URL's password or token never shows; the secrets' own reprs hide them.
        fields = (
            f"{f}={redact(v) if f == 'nats_url' and v else v!r}"
            for f in self.__struct_fields__
            if (v := getattr(self, f)) is not None or f == "nats_url"
        )
        return f"StoreConfig({', '.join(fields)})"

    __str__ = __repr__

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
        if "auth" not in overrides or overrides["auth"] is None:
            values["auth"] = NatsAuth.from_env(env)
        return _validated(values)

    @property
    def partition_max_contexts(self) -> int | None:
        """The contexts one partition holds at most: ``max_contexts`` shared evenly (rounded
        up), since each partition's actor prunes only its own."""
        if self.max_contexts is None:
            return None
        return -(-self.max_contexts // self.partitions)

    def replace(self, **changes: Any) -> StoreConfig:
        """A copy with ``changes``, validated like the original."""
        return _validated({**msgspec.structs.asdict(self), **changes})

    @property
    def key(self) -> str | None:
        """The encryption key (``encryption_key``, else the first line of
        ``encryption_key_file``), or None: encryption at rest is off."""
        if self.encryption_key is not None:
            return self.encryption_key.reveal()
        if self.encryption_key_file is None:
            return None
        try:
            text = self.encryption_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"encryption_key_file (CONTEXT_STORE_ENCRYPTION_KEY_FILE): {exc.strerror}: "
                f"{self.encryption_key_file}"
            ) from None
        if not text:
            raise ConfigError(
                f"encryption_key_file (CONTEXT_STORE_ENCRYPTION_KEY_FILE): "
                f"{self.encryption_key_file} is empty"
            )
        return text

    def secret_environment(self) -> dict[str, str]:
        """The secrets a server started by this client needs (never recorded anywhere)."""
        env = {}
        if self.encryption_key is not None:
            env["CONTEXT_STORE_ENCRYPTION_KEY"] = self.encryption_key.reveal()
        if self.encryption_key_file is not None:
            env["CONTEXT_STORE_ENCRYPTION_KEY_FILE"] = str(self.encryption_key_file)
        return env

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
    if type_ is Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str) and value:
            return Secret(value)
        raise ValueError("expected a non-empty string")
    if type_ is NatsAuth and isinstance(value, NatsAuth):
        return value
    raise NotImplementedError


def _validated(values: dict[str, Any]) -> StoreConfig:
    try:
        if isinstance(values.get("auth"), NatsAuth):  # already checked
            values = {**values, "auth": msgspec.structs.asdict(values["auth"])}
        config = msgspec.convert(values, StoreConfig, strict=False, dec_hook=_path)
        check_token(config.tenant, "tenant")
        if config.role is not None and config.role not in WRITER_ROLES:
            raise ConfigError(
                f"invalid store configuration: role (CTXSTORE_ROLE): {config.role!r} is not "
                f"a role that writes; use one of {', '.join(sorted(WRITER_ROLES))}"
            )
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
    var = _VARIABLE.get(name) or next((v for v, n in AUTH_VARIABLES.items() if n == name), None)
    where = f"{name} ({var})" if var else name
    return f"{where}: {_WHERE.sub('', message)}"
