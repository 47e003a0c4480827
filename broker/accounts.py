"""``ctxstore auth init DIR``: a server configuration of accounts and users, and each user's
credentials, for an authenticated deployment.

One NATS account per tenant: each has its own JetStream (its own ``CTXSTORE_WRITES``...), so a
tenant's users cannot name, let alone read or write, another tenant's data. In each account,
one user per role, signed in with an nkey (the server's configuration holds public keys
only; each seed is a file of its own, readable by its owner):

- ``actor``: everything in its account (streams, consumers, events, snapshots, the lease);
- ``research``, ``analysis``, ``planner``, ``refactor``, ``evaluator``: their own phase's
  writes and their activity records (``contracts.roles.ROLE_KINDS``), on subjects that end in
  their role (the stored writer); queries and watching; serving their agent subject;
- ``admin``: every kind of write (an evolution's engine, imports), queries, watching, asking
  agents for work; not the streams;
- ``viewer``: queries and watching only.

Files written::

    DIR/accounts.conf          include it in a nats-server configuration
    DIR/auth.json              the tenants and each user's public key (no secret)
    DIR/<tenant>/<role>.nk     the user's nkey seed (0600)
    DIR/<tenant>/<role>.env    NATS_NKEY, CTXSTORE_TENANT, CTXSTORE_ROLE for that user
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from broker.auth import NatsAuth
from broker.streams import ACTOR_DURABLE, EVENTS_STREAM, WRITES_STREAM, actor_durable
from contracts import MAX_PARTITIONS, ROLE_KINDS, Role, check_token
from contracts.errors import ConfigError

__all__ = ["ACCOUNTS_FILE", "AuthDirectory", "init_auth", "permissions"]

ACCOUNTS_FILE: Final = "accounts.conf"
_INDEX: Final = "auth.json"
_PREFIX_USER: Final = 20 << 3  # nkeys' prefix byte for a user ('U')


class _Index(msgspec.Struct, frozen=True):
    tenants: dict[str, dict[str, str]]  # tenant -> role -> public key


def _reads(tenant: str) -> list[str]:
    """What every user of a tenant may publish to read: queries, and JetStream's read API on
    the two streams (stream info, direct gets, message gets, ephemeral consumers)."""
    api = "$JS.API"
    subjects = [
        f"ctxstore.query.{tenant}.*",
        f"ctxstore.query.{tenant}.*.*",  # a partition's actors (a partitioned store)
        f"{api}.INFO",
        "$JS.FC.>",
        "$SRV.>",
    ]
    for stream in (WRITES_STREAM, EVENTS_STREAM):
        subjects += [
            f"{api}.STREAM.INFO.{stream}",
            f"{api}.DIRECT.GET.{stream}",
            f"{api}.DIRECT.GET.{stream}.>",
            f"{api}.STREAM.MSG.GET.{stream}",
            f"{api}.CONSUMER.CREATE.{stream}",
            f"{api}.CONSUMER.CREATE.{stream}.>",
            f"{api}.CONSUMER.INFO.{stream}.>",
            f"{api}.CONSUMER.DELETE.{stream}.>",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.>",
        ]
    return subjects


def _never(tenant: str) -> list[str]:
    """Denied to every user but the actor, whatever the allow list says: the actor's own
    consumers (their names in the subject: the store's, and every partition's a store may
    have), and durable consumers at all."""
    api = "$JS.API"
    denied = [f"{api}.CONSUMER.DURABLE.>"]
    for durable in (ACTOR_DURABLE, *(actor_durable(k) for k in range(MAX_PARTITIONS))):
        denied += [
            f"{api}.CONSUMER.*.{WRITES_STREAM}.{durable}",
            f"{api}.CONSUMER.*.{WRITES_STREAM}.{durable}.>",
            f"{api}.CONSUMER.MSG.NEXT.{WRITES_STREAM}.{durable}",
        ]
    return denied


def permissions(tenant: str, role: Role) -> dict[str, object]:
    """The NATS permissions of ``role`` in ``tenant``'s account."""
    if role is Role.ACTOR:
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    publish = _reads(tenant)
    subscribe = ["_INBOX.>", f"ctxstore.event.{tenant}.>", f"ctxstore.error.{tenant}.>"]
    allow_responses = False
    if role is Role.ADMIN:
        publish += [f"ctxstore.write.{tenant}.*.*.{role}", f"ctxstore.agent.{tenant}.*"]
    elif role is not Role.VIEWER:
        publish += [f"ctxstore.write.{tenant}.*.{kind}.{role}" for kind in sorted(ROLE_KINDS[role])]
        subscribe.append(f"ctxstore.agent.{tenant}.{role}")
        allow_responses = True
    found: dict[str, object] = {
        "publish": {"allow": publish, "deny": _never(tenant)},
        "subscribe": {"allow": subscribe},
    }
    if allow_responses:
        found["allow_responses"] = True
    return found


@dataclass(frozen=True, slots=True)
class AuthDirectory:
    """What ``init_auth`` wrote, read back."""

    path: Path

    @property
    def accounts(self) -> Path:
        return self.path / ACCOUNTS_FILE

    def tenants(self) -> list[str]:
        try:
            index = msgspec.json.decode((self.path / _INDEX).read_bytes(), type=_Index)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ConfigError(
                f"{self.path} is not a directory made by 'ctxstore auth init': {exc}"
            ) from None
        return sorted(index.tenants)

    def seed(self, tenant: str, role: Role | str) -> Path:
        return self.path / tenant / f"{role}.nk"

    def auth(self, tenant: str, role: Role | str) -> NatsAuth:
        """Sign-in settings of ``role`` in ``tenant``."""
        return NatsAuth(nkey_seed=str(self.seed(tenant, role)))


def _new_user() -> tuple[bytes, str]:
    import nkeys  # nats-py's own nkeys support

    seed = nkeys.encode_seed(os.urandom(32), _PREFIX_USER)
    return seed, nkeys.from_seed(bytearray(seed)).public_key.decode()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def init_auth(directory: Path, tenants: list[str], *, force: bool = False) -> AuthDirectory:
    """Write the accounts, users and credentials of ``tenants`` into ``directory``."""
    directory = Path(directory).resolve()
    if (directory / ACCOUNTS_FILE).exists() and not force:
        raise ConfigError(f"{directory} already holds {ACCOUNTS_FILE}: give --force to replace it")
    if not tenants:
        raise ConfigError("give at least one tenant")
    index: dict[str, dict[str, str]] = {}
    blocks = []
    for tenant in tenants:
        check_token(tenant, "tenant")
        users = []
        index[tenant] = {}
        for role in Role:
            seed, public = _new_user()
            _write_private(directory / tenant / f"{role}.nk", seed + b"\n")
            env = [f"NATS_NKEY={directory / tenant / f'{role}.nk'}", f"CTXSTORE_TENANT={tenant}"]
            if ROLE_KINDS[role] and role is not Role.ACTOR:
                env.append(f"CTXSTORE_ROLE={role}")
            _write_private(directory / tenant / f"{role}.env", ("\n".join(env) + "\n").encode())
            index[tenant][str(role)] = public
            user = {"nkey": public, "permissions": permissions(tenant, role)}
            users.append(f"      {json.dumps(user)}")
        blocks.append(
            f"  {json.dumps(tenant)}: {{\n    jetstream: enabled\n    users: [\n"
            + "\n".join(users)
            + "\n    ]\n  }"
        )
    conf = "# ctxstore auth init: one account per tenant, one user per role\naccounts {\n"
    conf += "\n".join(blocks) + "\n}\n"
    _write_private(directory / ACCOUNTS_FILE, conf.encode())
    _write_private(directory / _INDEX, msgspec.json.encode(_Index(index)))
    return AuthDirectory(directory)
