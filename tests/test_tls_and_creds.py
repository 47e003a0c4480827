"""Signing in over TLS with a client certificate (mutual TLS), and with a ``.creds`` file
(decentralised auth: operator, account and user JWTs), through the settings every command
and client takes (``NATS_CA``/``NATS_CERT``/``NATS_KEY``, ``NATS_CREDS``): the store works
end to end, and a client without them is refused. Certificates, keys and JWTs are made here."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors import SharedContextStore, StoreActor
from broker import EmbeddedServer, StoreConfig, connect
from broker.server import ServerTLS
from contracts import ContextStoreError

# -- TLS -------------------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _certificate(
    path: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Name:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = issuer if issuer is not None else (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signer, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return subject


def _pki(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(root / "ca.pem", "ctxstore test CA", ca_key, None, ca=True)
    files = {"ca": root / "ca.pem"}
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{who}_key"] = _write_key(root / f"{who}-key.pem", key)
        _certificate(
            root / f"{who}.pem", f"ctxstore {who}", key, (ca, ca_key), server=who == "server"
        )
        files[who] = root / f"{who}.pem"
    return files


async def test_mutual_tls_with_a_client_certificate(tmp_path: Path) -> None:
    pki = _pki(tmp_path / "pki")
    tls = ServerTLS(cert=pki["server"], key=pki["server_key"], ca=pki["ca"], verify=True)
    async with EmbeddedServer(tmp_path / "nats", tls=tls) as server:
        env = {
            "NATS_CA": str(pki["ca"]),
            "NATS_CERT": str(pki["client"]),
            "NATS_KEY": str(pki["client_key"]),
        }
        config = StoreConfig.build(env, nats_url=server.url, export_path=tmp_path / "x")
        assert server.url.startswith("tls://")
        async with (
            running_actor_signed_in(server, config),
            SharedContextStore(config=config, name="agent") as store,
        ):
            eid = await store.create_context("./over-tls")
            assert (await store.get_context(eid)).evolution_id == eid
        # Without a client certificate, the server refuses the connection.
        no_cert = StoreConfig.build({"NATS_CA": str(pki["ca"])}, nats_url=server.url)
        with pytest.raises(ContextStoreError):
            async with SharedContextStore(config=no_cert, name="no-cert") as refused:
                await refused.get_all_contexts()


@contextlib.asynccontextmanager
async def running_actor_signed_in(
    server: EmbeddedServer, config: StoreConfig
) -> AsyncIterator[StoreActor]:
    conn = await connect(server.url, name="actor", long_running=True, auth=config.auth)
    try:
        async with StoreActor(conn, config) as actor:
            yield actor
    finally:
        await conn.close()


# -- .creds ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(claims: dict[str, object], signer: nkeys.KeyPair) -> str:
    claims = {"iat": int(time.time()), **claims}
    claims["jti"] = _b64(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest())
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = signer.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{_b64(signature)}"


def _pair(prefix: int) -> tuple[nkeys.KeyPair, str, bytes]:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    pair = nkeys.from_seed(bytearray(seed))
    return pair, pair.public_key.decode(), seed


def _operator_setup(root: Path) -> tuple[Path, Path]:
    """A server configuration (operator, one account with JetStream) and a user's .creds."""
    operator, op_pub, _ = _pair(nkeys.PREFIX_BYTE_OPERATOR)
    account, acc_pub, _ = _pair(nkeys.PREFIX_BYTE_ACCOUNT)
    _, sys_pub, _ = _pair(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream needs a system account
    _, user_pub, user_seed = _pair(nkeys.PREFIX_BYTE_USER)
    unlimited = {"subs": -1, "conn": -1, "leaf": -1, "imports": -1, "exports": -1}
    unlimited |= {"data": -1, "payload": -1, "wildcards": True}
    unlimited |= {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    op_jwt = _jwt(
        {"iss": op_pub, "sub": op_pub, "name": "op", "nats": {"type": "operator", "version": 2}},
        operator,
    )
    acc_jwt = _jwt(
        {
            "iss": op_pub,
            "sub": acc_pub,
            "name": "ctxstore",
            "nats": {"type": "account", "version": 2, "limits": unlimited},
        },
        operator,
    )
    sys_jwt = _jwt(
        {"iss": op_pub, "sub": sys_pub, "name": "SYS", "nats": {"type": "account", "version": 2}},
        operator,
    )
    user_jwt = _jwt(
        {
            "iss": acc_pub,
            "sub": user_pub,
            "name": "agent",
            "nats": {"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1},
        },
        account,
    )
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "operator.conf"
    conf.write_text(
        f"operator: {op_jwt}\nsystem_account: {sys_pub}\nresolver: MEMORY\n"
        f"resolver_preload: {{\n  {acc_pub}: {acc_jwt}\n  {sys_pub}: {sys_jwt}\n}}\n"
    )
    creds = root / "agent.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user_seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    creds.chmod(0o600)
    return conf, creds


async def test_a_creds_file_signs_in(tmp_path: Path) -> None:
    conf, creds = _operator_setup(tmp_path / "operator")
    async with EmbeddedServer(tmp_path / "nats", include=conf) as server:
        config = StoreConfig.build(
            {"NATS_CREDS": str(creds)}, nats_url=server.url, export_path=tmp_path / "x"
        )
        async with (
            running_actor_signed_in(server, config),
            SharedContextStore(config=config, name="agent") as store,
        ):
            eid = await store.create_context("./with-creds")
            assert (await store.get_context(eid)).evolution_id == eid
        # No credentials: refused.
        anonymous = StoreConfig.build({}, nats_url=server.url)
        with pytest.raises(ContextStoreError):
            async with SharedContextStore(config=anonymous, name="anonymous") as refused:
                await refused.get_all_contexts()
