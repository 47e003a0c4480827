"""Encryption at rest of what the store writes itself: snapshots and exported bundles.

JetStream encrypts its own files (``jetstream { cipher: chachapoly, key: ... }``); snapshots
(in an object store, so in JetStream's files too) and bundles (files anywhere) are sealed here
as well, with AES-256-GCM from ``cryptography``: authenticated, so a sealed file that was
changed, or sealed under another key, is refused, never read.

Every key is derived from the configured one (``CONTEXT_STORE_ENCRYPTION_KEY``) with
HKDF-SHA256 and a purpose, and every sealed item has a random salt of its own, so no two
items share a key. Frame::

    b"CTXSEAL1" | salt (16) | nonce (12) | AES-GCM(ciphertext + tag), the purpose as AAD

Use a random key (``openssl rand -hex 32``): HKDF stretches nothing.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["MAGIC", "SealError", "is_sealed", "jetstream_key", "open_sealed", "seal"]

MAGIC: Final = b"CTXSEAL1"
_SALT: Final = 16
_NONCE: Final = 12


class SealError(ValueError):
    """A sealed item that cannot be opened: changed, truncated, or sealed under another key."""


def _key(key: str, salt: bytes, purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"ctxstore " + purpose)
    return hkdf.derive(key.encode())


def seal(data: bytes, key: str, purpose: bytes) -> bytes:
    salt, nonce = os.urandom(_SALT), os.urandom(_NONCE)
    sealed = AESGCM(_key(key, salt, purpose)).encrypt(nonce, data, MAGIC + purpose)
    return MAGIC + salt + nonce + sealed


def is_sealed(data: bytes) -> bool:
    return data.startswith(MAGIC)


def open_sealed(data: bytes, key: str, purpose: bytes) -> bytes:
    head = len(MAGIC) + _SALT + _NONCE
    if not is_sealed(data) or len(data) < head + 16:
        raise SealError("not a sealed item (bad frame)")
    salt, nonce = data[len(MAGIC) : len(MAGIC) + _SALT], data[len(MAGIC) + _SALT : head]
    try:
        return AESGCM(_key(key, salt, purpose)).decrypt(nonce, data[head:], MAGIC + purpose)
    except InvalidTag:
        raise SealError("authentication failed: changed, or sealed under another key") from None


def jetstream_key(key: str) -> str:
    """The key an embedded server's JetStream encrypts its files with: derived from the
    configured one for this purpose only (hex)."""
    return hashlib.sha256(b"ctxstore jetstream\0" + key.encode()).hexdigest()
