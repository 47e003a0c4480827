"""How a client proves who it is to NATS, and how it checks the server: every entry point
takes the same settings, from arguments or the environment variables the ``nats`` tool reads.

=====================  ==============================================================
``NATS_URL``           one URL or several, comma-separated (a cluster's members); a
                       ``user:password@`` or ``token@`` in a URL is used for that server
``NATS_USER``          user name, with ``NATS_PASSWORD``
``NATS_TOKEN``         an authentication token
``NATS_NKEY``          a file holding an nkey seed (``SU...``)
``NATS_CREDS``         a ``.creds`` file (a user JWT and its seed, decentralised auth)
``NATS_CA``            CA certificate(s) to verify the server with (PEM)
``NATS_CERT``          client certificate (PEM), with ``NATS_KEY``: its private key
``NATS_TLS_HOSTNAME``  the name the server's certificate must carry, if not the URL's host
=====================  ==============================================================

A ``NatsAuth`` never shows its secrets: its ``repr`` says which settings are set, not their
values, and nothing here logs them.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from contracts.errors import ConfigError

__all__ = ["AUTH_VARIABLES", "NatsAuth", "split_servers"]

AUTH_VARIABLES: Final = {
    "NATS_USER": "user",
    "NATS_PASSWORD": "password",
    "NATS_TOKEN": "token",
    "NATS_NKEY": "nkey_seed",
    "NATS_CREDS": "creds",
    "NATS_CA": "tls_ca",
    "NATS_CERT": "tls_cert",
    "NATS_KEY": "tls_key",
    "NATS_TLS_HOSTNAME": "tls_hostname",
}
_SECRET: Final = frozenset({"password", "token"})


class NatsAuth(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed: str | None = None  # a file's path
    creds: str | None = None  # a file's path
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hostname: str | None = None

    def __repr__(self) -> str:
        shown = [
            f"{f}={'***' if f in _SECRET else repr(v)}"
            for f in self.__struct_fields__
            if (v := getattr(self, f)) is not None
        ]
        return f"NatsAuth({', '.join(shown)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str], **given: str | None) -> NatsAuth:
        """The environment's settings, overridden by those ``given`` (None: not given)."""
        values = {name: env[var] for var, name in AUTH_VARIABLES.items() if env.get(var)}
        values.update({k: v for k, v in given.items() if v is not None})
        auth = cls(**values)
        auth.check()
        return auth

    def check(self) -> None:
        """A ``ConfigError`` naming what is inconsistent or missing (never a secret)."""
        if (self.password is None) != (self.user is None):
            raise ConfigError("NATS_USER and NATS_PASSWORD go together: one is missing")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("NATS_CERT and NATS_KEY go together: one is missing")
        if self.nkey_seed is not None and self.creds is not None:
            raise ConfigError("NATS_NKEY and NATS_CREDS are two ways to sign in: give one")
        for what, path in (
            ("NATS_NKEY", self.nkey_seed),
            ("NATS_CREDS", self.creds),
            ("NATS_CA", self.tls_ca),
            ("NATS_CERT", self.tls_cert),
            ("NATS_KEY", self.tls_key),
        ):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{what}: no such file: {path}")

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for these settings, or None (nats-py's default for ``tls://``)."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert is not None and self.tls_key is not None:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS settings (NATS_CA, NATS_CERT, NATS_KEY): {exc}") from None
        return context

    def connect_options(self) -> dict[str, Any]:
        """nats-py's ``connect()`` keyword arguments for these settings."""
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"] = self.user
            options["password"] = self.password
        if self.token is not None:
            options["token"] = self.token
        if self.nkey_seed is not None:
            options["nkeys_seed"] = self.nkey_seed
        if self.creds is not None:
            options["user_credentials"] = self.creds
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        if self.tls_hostname is not None:
            options["tls_hostname"] = self.tls_hostname
        return options


def split_servers(url: str) -> list[str]:
    """The server URLs of ``NATS_URL``-style text: one URL, or several separated by commas."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ConfigError("NATS_URL: no server URL given")
    return servers
