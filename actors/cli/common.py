"""What the ``ctxstore`` commands share: the client they use, tables, signals, points."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from actors.client import SharedContextStore
from broker import StoreConfig
from broker.auth import NatsAuth

__all__ = ["client", "dump", "parse_point", "stop_signals", "store_config", "table"]


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def dump(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=False)


def store_config(args: argparse.Namespace, **overrides: Any) -> StoreConfig:
    """The configuration the command line and the environment give (sign-in options on the
    command line win over ``NATS_*`` variables)."""
    auth = NatsAuth.from_env(
        os.environ,
        creds=args.creds,
        nkey_seed=args.nkey,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    return StoreConfig.build(nats_url=args.nats_url, auth=auth, **overrides)


def client(args: argparse.Namespace) -> SharedContextStore:
    return SharedContextStore(config=store_config(args), home=args.home, name="ctxstore-cli")


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM from the moment this is entered: enter it before
    telling anyone the process is ready, so that a signal sent at once stops it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def parse_point(text: str) -> int | datetime:
    """A stream sequence (digits) or an ISO 8601 time (naive means UTC)."""
    if text.isdigit():
        return int(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a sequence number nor an ISO time (2025-08-17T12:00:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
